//! The fields of Pulsar's protobuf messages (`PulsarApi.proto`) that entries are decoded with,
//! declared for prost. Unknown fields are skipped, as protobuf readers do.

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MessageMetadata {
    #[prost(string, tag = "1")]
    pub producer_name: String,
    #[prost(uint64, tag = "2")]
    pub sequence_id: u64,
    #[prost(uint64, tag = "3")]
    pub publish_time: u64,
    #[prost(message, repeated, tag = "4")]
    pub properties: Vec<KeyValue>,
    #[prost(string, optional, tag = "6")]
    pub partition_key: Option<String>,
    /// NONE = 0, LZ4 = 1, ZLIB = 2, ZSTD = 3, SNAPPY = 4.
    #[prost(int32, optional, tag = "8")]
    pub compression: Option<i32>,
    #[prost(uint32, optional, tag = "9")]
    pub uncompressed_size: Option<u32>,
    /// Present when the payload is a batch.
    #[prost(int32, optional, tag = "11")]
    pub num_messages_in_batch: Option<i32>,
    #[prost(uint64, optional, tag = "12")]
    pub event_time: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SingleMessageMetadata {
    #[prost(message, repeated, tag = "1")]
    pub properties: Vec<KeyValue>,
    #[prost(string, optional, tag = "2")]
    pub partition_key: Option<String>,
    #[prost(int32, tag = "3")]
    pub payload_size: i32,
    #[prost(uint64, optional, tag = "5")]
    pub event_time: Option<u64>,
    #[prost(uint64, optional, tag = "8")]
    pub sequence_id: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BrokerEntryMetadata {
    #[prost(uint64, optional, tag = "1")]
    pub broker_timestamp: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub index: Option<u64>,
}
