//! Prometheus metrics, served as text at the admin endpoint's `/metrics`.
//!
//! One registry for the process; every module that counts something holds the `Arc<Metrics>`
//! and updates its fields directly (they are atomics).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct Metrics {
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_evictions: Counter,
    pub cache_bytes: Gauge,
    pub disk_cache_hits: Counter,
    pub disk_cache_evictions: Counter,
    pub disk_cache_bytes: Gauge,
    pub get_requests: Counter,
    pub get_bytes: Counter,
    pub get_errors: Counter,
    pub get_latency: Histogram,
    pub checksum_failures: Counter,
    pub readahead_resets: Counter,
    pub readahead_next_segments: Counter,
    pub readahead_streams: Counter,
    pub hydrations: Counter,
    pub memory_in_use: Gauge,
    pub offloads: Counter,
    pub offload_bytes: Counter,
    pub offload_errors: Counter,
    pub offload_duration: Histogram,
    pub segments_deleted: Counter,
    pub deletion_errors: Counter,
    pub catalog_requests: Counter,
    pub catalog_refreshes: Counter,
    pub catalog_bytes_written: Counter,
    pub catalog_seq: Gauge,
    pub catalog_segments: Gauge,
    registry: Registry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tierfs");
        let m = Self {
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_evictions: Counter::default(),
            cache_bytes: Gauge::default(),
            disk_cache_hits: Counter::default(),
            disk_cache_evictions: Counter::default(),
            disk_cache_bytes: Gauge::default(),
            get_requests: Counter::default(),
            get_bytes: Counter::default(),
            get_errors: Counter::default(),
            get_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            checksum_failures: Counter::default(),
            readahead_resets: Counter::default(),
            readahead_next_segments: Counter::default(),
            readahead_streams: Counter::default(),
            hydrations: Counter::default(),
            memory_in_use: Gauge::default(),
            offloads: Counter::default(),
            offload_bytes: Counter::default(),
            offload_errors: Counter::default(),
            offload_duration: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            segments_deleted: Counter::default(),
            deletion_errors: Counter::default(),
            catalog_requests: Counter::default(),
            catalog_refreshes: Counter::default(),
            catalog_bytes_written: Counter::default(),
            catalog_seq: Gauge::default(),
            catalog_segments: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "cache_hits",
            "Block reads served by the memory cache",
            m.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Block reads the memory cache could not serve",
            m.cache_misses.clone(),
        );
        registry.register(
            "cache_evictions",
            "Blocks evicted from the memory cache",
            m.cache_evictions.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes held by the memory cache",
            m.cache_bytes.clone(),
        );
        registry.register(
            "disk_cache_hits",
            "Block reads served by the disk cache",
            m.disk_cache_hits.clone(),
        );
        registry.register(
            "disk_cache_evictions",
            "Blocks evicted from the disk cache",
            m.disk_cache_evictions.clone(),
        );
        registry.register(
            "disk_cache_bytes",
            "Bytes held by the disk cache",
            m.disk_cache_bytes.clone(),
        );
        registry.register(
            "store_get_requests",
            "Ranged GETs sent to the object store",
            m.get_requests.clone(),
        );
        registry.register(
            "store_get_bytes",
            "Bytes received from ranged GETs",
            m.get_bytes.clone(),
        );
        registry.register(
            "store_get_errors",
            "Ranged GETs that failed after the client's retries",
            m.get_errors.clone(),
        );
        registry.register(
            "store_get_latency_seconds",
            "Latency of ranged GETs",
            m.get_latency.clone(),
        );
        registry.register(
            "checksum_failures",
            "Fetched blocks that failed their CRC32C check",
            m.checksum_failures.clone(),
        );
        registry.register(
            "readahead_resets",
            "Read-ahead windows reset by a non-sequential read",
            m.readahead_resets.clone(),
        );
        registry.register(
            "readahead_next_segments",
            "Next segments fetched ahead for a sequential reader reaching the end of one",
            m.readahead_next_segments.clone(),
        );
        registry.register(
            "readahead_streams",
            "Streamed read-ahead GETs opened for sequential readers",
            m.readahead_streams.clone(),
        );
        registry.register(
            "segment_hydrations",
            "Segments fetched whole in the background for a reader reading them at random",
            m.hydrations.clone(),
        );
        registry.register(
            "read_memory_bytes",
            "Memory held for reads: cached blocks plus fetches in flight",
            m.memory_in_use.clone(),
        );
        registry.register("offloads", "Segments offloaded", m.offloads.clone());
        registry.register("offload_bytes", "Bytes offloaded", m.offload_bytes.clone());
        registry.register(
            "offload_errors",
            "Segment offloads that failed",
            m.offload_errors.clone(),
        );
        registry.register(
            "segments_deleted",
            "Segments deleted everywhere (retention, truncate, topic deletion)",
            m.segments_deleted.clone(),
        );
        registry.register(
            "deletion_errors",
            "Deletions that failed and wait to be retried",
            m.deletion_errors.clone(),
        );
        registry.register(
            "offload_duration_seconds",
            "Time to offload one segment",
            m.offload_duration.clone(),
        );
        registry.register(
            "catalog_requests",
            "Requests made to the bucket's catalog (head, journal, checkpoints)",
            m.catalog_requests.clone(),
        );
        registry.register(
            "catalog_refreshes",
            "Refreshes of the bucket's catalog by a read-only mount",
            m.catalog_refreshes.clone(),
        );
        registry.register(
            "catalog_bytes_written",
            "Bytes of catalog objects written (journal records, checkpoints, heads)",
            m.catalog_bytes_written.clone(),
        );
        registry.register(
            "catalog_sequence",
            "The catalog's last applied journal sequence number",
            m.catalog_seq.clone(),
        );
        registry.register(
            "catalog_segments",
            "Segments the bucket's catalog records",
            m.catalog_segments.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.cache_hits.inc();
        m.get_latency.observe(0.01);
        let text = m.render();
        assert!(text.contains("tierfs_cache_hits_total 1"), "{text}");
        assert!(
            text.contains("tierfs_store_get_latency_seconds_bucket"),
            "{text}"
        );
    }
}
