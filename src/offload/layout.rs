//! Where a topic's objects live in the store, readable by any S3 tool:
//!
//! ```text
//! <prefix>/<tenant>/<namespace>/<topic>/<segment-id:020>-<uuid>.seg   the segment's bytes
//! <prefix>/<tenant>/<namespace>/<topic>/<segment-id:020>-<uuid>.idx   its index object
//! <prefix>/_tierfs/…                                                 the catalog (`crate::catalog`)
//! ```
//!
//! A fresh uuid per attempt means a retried offload never collides with debris of a failed one.

use crate::name::TopicName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// `<prefix>/<tenant>/<namespace>/<topic>/`, the key prefix of everything of a topic.
    pub fn topic_prefix(&self, topic: &TopicName) -> String {
        let path = format!("{}/{}/{}/", topic.tenant, topic.namespace, topic.topic);
        if self.prefix.is_empty() {
            path
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    /// The key prefix of everything in a namespace.
    pub fn namespace_prefix(&self, tenant: &str, namespace: &str) -> String {
        let path = format!("{tenant}/{namespace}/");
        if self.prefix.is_empty() {
            path
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    pub fn data_key(&self, topic: &TopicName, segment: u64, uuid: &str) -> String {
        format!("{}{segment:020}-{uuid}.seg", self.topic_prefix(topic))
    }

    pub fn index_key(&self, topic: &TopicName, segment: u64, uuid: &str) -> String {
        format!("{}{segment:020}-{uuid}.idx", self.topic_prefix(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let t = TopicName::new("t", "ns", "x").unwrap();
        let layout = Layout::new("/tierfs/");
        assert_eq!(
            layout.data_key(&t, 3, "u"),
            "tierfs/t/ns/x/00000000000000000003-u.seg"
        );
        assert_eq!(
            layout.index_key(&t, 3, "u"),
            "tierfs/t/ns/x/00000000000000000003-u.idx"
        );
        assert_eq!(Layout::new("").topic_prefix(&t), "t/ns/x/");
    }
}
