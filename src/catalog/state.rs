//! What the catalog says, in memory: every offloaded segment of every topic and every
//! namespace's policies, as of one journal sequence number. Built from a checkpoint and the
//! journal records after it; knows nothing of the store.

use std::collections::{BTreeMap, BTreeSet};

use super::format::{Change, Checkpoint, FORMAT, FormatError, SegmentEntry};
use crate::name::{NamespaceName, TopicName};
use crate::offload::NamespacePolicy;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogState {
    /// The last journal record applied.
    pub seq: u64,
    policies: BTreeMap<String, NamespacePolicy>,
    topics: BTreeMap<TopicName, BTreeMap<u64, SegmentEntry>>,
    segments: usize,
}

fn topic_name(key: &str, topic: &str) -> Result<TopicName, FormatError> {
    TopicName::parse(topic).map_err(|e| FormatError::Invalid {
        key: key.to_string(),
        reason: format!("topic {topic:?}: {e}"),
    })
}

impl CatalogState {
    pub fn from_checkpoint(key: &str, checkpoint: Checkpoint) -> Result<Self, FormatError> {
        let mut state = Self {
            seq: checkpoint.seq,
            policies: checkpoint.policies,
            ..Self::default()
        };
        for (topic, segments) in checkpoint.topics {
            let name = topic_name(key, &topic)?;
            let map: BTreeMap<u64, SegmentEntry> =
                segments.into_iter().map(|s| (s.id, s)).collect();
            state.segments += map.len();
            state.topics.insert(name, map);
        }
        Ok(state)
    }

    pub fn to_checkpoint(&self) -> Checkpoint {
        Checkpoint {
            format: FORMAT,
            seq: self.seq,
            policies: self.policies.clone(),
            topics: self
                .topics
                .iter()
                .map(|(name, segments)| (name.to_string(), segments.values().cloned().collect()))
                .collect(),
        }
    }

    /// Applies one commit's changes. Each change is idempotent: a record replayed twice (a
    /// commit retried after an ambiguous failure) leaves the same state.
    pub fn apply(&mut self, key: &str, seq: u64, changes: &[Change]) -> Result<(), FormatError> {
        for change in changes {
            match change {
                Change::Offloaded { topic, segment } => {
                    let name = topic_name(key, topic)?;
                    let segments = self.topics.entry(name).or_default();
                    if segments.insert(segment.id, segment.clone()).is_none() {
                        self.segments += 1;
                    }
                }
                Change::SegmentDeleted { topic, id } => {
                    let name = topic_name(key, topic)?;
                    if let Some(segments) = self.topics.get_mut(&name) {
                        if segments.remove(id).is_some() {
                            self.segments -= 1;
                        }
                        if segments.is_empty() {
                            self.topics.remove(&name);
                        }
                    }
                }
                Change::Policy { namespace, policy } => match policy {
                    Some(policy) => {
                        self.policies.insert(namespace.clone(), policy.clone());
                    }
                    None => {
                        self.policies.remove(namespace);
                    }
                },
            }
        }
        self.seq = seq;
        Ok(())
    }

    /// How many segments the catalog holds, across all topics.
    pub fn segment_count(&self) -> usize {
        self.segments
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicName> {
        self.topics.keys()
    }

    pub fn segments(&self, topic: &TopicName) -> impl Iterator<Item = &SegmentEntry> {
        self.topics.get(topic).into_iter().flat_map(|s| s.values())
    }

    pub fn segment(&self, topic: &TopicName, id: u64) -> Option<&SegmentEntry> {
        self.topics.get(topic)?.get(&id)
    }

    pub fn has_topic(&self, topic: &TopicName) -> bool {
        self.topics.contains_key(topic)
    }

    pub fn policies(&self) -> &BTreeMap<String, NamespacePolicy> {
        &self.policies
    }

    /// Tenants with at least one topic or namespace policy.
    pub fn tenants(&self) -> BTreeSet<String> {
        self.namespaces_all()
            .into_iter()
            .map(|ns| ns.tenant)
            .collect()
    }

    /// Namespaces of `tenant` with at least one topic or a policy.
    pub fn namespaces(&self, tenant: &str) -> BTreeSet<String> {
        self.namespaces_all()
            .into_iter()
            .filter(|ns| ns.tenant == tenant)
            .map(|ns| ns.namespace)
            .collect()
    }

    fn namespaces_all(&self) -> BTreeSet<NamespaceName> {
        let mut all: BTreeSet<NamespaceName> =
            self.topics.keys().map(TopicName::namespace_name).collect();
        all.extend(
            self.policies
                .keys()
                .filter_map(|ns| NamespaceName::parse(ns).ok()),
        );
        all
    }

    /// Topics of a namespace, by topic name.
    pub fn topics_of(&self, ns: &NamespaceName) -> Vec<String> {
        self.topics
            .keys()
            .filter(|t| t.tenant == ns.tenant && t.namespace == ns.namespace)
            .map(|t| t.topic.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> SegmentEntry {
        SegmentEntry {
            id,
            uuid: format!("u{id}"),
            entries: 1,
            size: 10,
            crc32c: 0,
            created_ms: 1,
            sealed_ms: 2,
            offloaded_ms: 3,
        }
    }

    #[test]
    fn changes_apply_idempotently_and_checkpoints_round_trip() {
        let mut state = CatalogState::default();
        let offloaded = |id| Change::Offloaded {
            topic: "t/ns/x".into(),
            segment: entry(id),
        };
        state.apply("j1", 1, &[offloaded(1), offloaded(2)]).unwrap();
        state.apply("j2", 2, &[offloaded(2)]).unwrap();
        assert_eq!(state.segment_count(), 2);
        state
            .apply(
                "j3",
                3,
                &[Change::Policy {
                    namespace: "p/q".into(),
                    policy: Some(NamespacePolicy {
                        offload_threshold: Some(0),
                        ..Default::default()
                    }),
                }],
            )
            .unwrap();
        assert_eq!(
            state.tenants().into_iter().collect::<Vec<_>>(),
            vec!["p", "t"]
        );
        let back = CatalogState::from_checkpoint("c", state.to_checkpoint()).unwrap();
        assert_eq!(back, state);
        let x = TopicName::parse("t/ns/x").unwrap();
        state
            .apply(
                "j4",
                4,
                &[
                    Change::SegmentDeleted {
                        topic: "t/ns/x".into(),
                        id: 1,
                    },
                    Change::SegmentDeleted {
                        topic: "t/ns/x".into(),
                        id: 1,
                    },
                ],
            )
            .unwrap();
        assert_eq!(state.segments(&x).map(|s| s.id).collect::<Vec<_>>(), [2]);
        assert_eq!(state.segment_count(), 1);
        assert_eq!(state.seq, 4);
        assert!(matches!(
            state.apply(
                "j5",
                5,
                &[Change::SegmentDeleted {
                    topic: "bad".into(),
                    id: 1
                }]
            ),
            Err(FormatError::Invalid { .. })
        ));
    }
}
