//! What the catalog says, in memory: every offloaded segment of every topic and every
//! namespace's policies, as of one journal sequence number. Built from a checkpoint (its pages
//! and inline records) and the journal records after it; knows nothing of the store.
//!
//! It also knows which of its records the checkpoint pages hold, so that a new checkpoint
//! references those pages instead of writing their records again: records are paged once,
//! [`PAGE_RECORDS`] at a time, from the newest page on; a change to a segment inside a page's
//! id range retires that page (its records go inline until they are paged again).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::format::{
    CatalogKeys, Change, Checkpoint, FORMAT, FormatError, Page, PageRef, SegmentEntry,
    TopicCheckpoint,
};
use crate::name::{NamespaceName, TopicName};
use crate::offload::NamespacePolicy;

/// Segment records per checkpoint page.
pub const PAGE_RECORDS: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct CatalogState {
    /// The last journal record applied.
    pub seq: u64,
    policies: BTreeMap<String, NamespacePolicy>,
    topics: BTreeMap<TopicName, BTreeMap<u64, SegmentEntry>>,
    /// The checkpoint pages that hold each topic's records (how the state was written down,
    /// not what it says: not part of equality).
    pages: BTreeMap<TopicName, Vec<PageRef>>,
    segments: usize,
}

impl PartialEq for CatalogState {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq && self.policies == other.policies && self.topics == other.topics
    }
}

impl Eq for CatalogState {}

fn topic_name(key: &str, topic: &str) -> Result<TopicName, FormatError> {
    TopicName::parse(topic).map_err(|e| FormatError::Invalid {
        key: key.to_string(),
        reason: format!("topic {topic:?}: {e}"),
    })
}

impl CatalogState {
    /// The state a checkpoint describes; `pages` holds the objects its page references name.
    pub fn from_checkpoint(
        key: &str,
        checkpoint: Checkpoint,
        pages: &HashMap<String, Page>,
    ) -> Result<Self, FormatError> {
        let mut state = Self {
            seq: checkpoint.seq,
            policies: checkpoint.policies,
            ..Self::default()
        };
        for (topic, written) in checkpoint.topics {
            let name = topic_name(key, &topic)?;
            let mut map: BTreeMap<u64, SegmentEntry> = BTreeMap::new();
            for page_ref in &written.pages {
                let page = pages
                    .get(&page_ref.key)
                    .ok_or_else(|| FormatError::Invalid {
                        key: key.to_string(),
                        reason: format!("page {} was not given", page_ref.key),
                    })?;
                let fits = page.topic == topic
                    && page.segments.len() as u64 == page_ref.count
                    && page
                        .segments
                        .iter()
                        .all(|s| (page_ref.first..=page_ref.last).contains(&s.id));
                if !fits {
                    return Err(FormatError::Invalid {
                        key: page_ref.key.clone(),
                        reason: format!(
                            "does not hold the {} records of {topic} in {}..={} that {key} says it does",
                            page_ref.count, page_ref.first, page_ref.last
                        ),
                    });
                }
                map.extend(page.segments.iter().map(|s| (s.id, s.clone())));
            }
            map.extend(written.segments.into_iter().map(|s| (s.id, s)));
            state.segments += map.len();
            state.topics.insert(name.clone(), map);
            if !written.pages.is_empty() {
                state.pages.insert(name, written.pages);
            }
        }
        Ok(state)
    }

    /// The checkpoint of this state: page references, and inline the records no page holds.
    pub fn to_checkpoint(&self) -> Checkpoint {
        let topics = self
            .topics
            .iter()
            .map(|(name, segments)| {
                let pages = self.pages.get(name).cloned().unwrap_or_default();
                let inline = segments
                    .values()
                    .filter(|s| !pages.iter().any(|p| (p.first..=p.last).contains(&s.id)))
                    .cloned()
                    .collect();
                (
                    name.to_string(),
                    TopicCheckpoint {
                        pages,
                        segments: inline,
                    },
                )
            })
            .collect();
        Checkpoint {
            format: FORMAT,
            seq: self.seq,
            policies: self.policies.clone(),
            topics,
        }
    }

    /// Pages the records above each topic's newest page, [`PAGE_RECORDS`] at a time, while at
    /// least two pages' worth are waiting (so a topic's newest records stay inline, where
    /// they are cheap to rewrite). Returns the page objects to write, by key.
    pub fn cut_pages(&mut self, keys: &CatalogKeys, seq: u64) -> Vec<(String, Page)> {
        let mut cut = Vec::new();
        for (name, segments) in &self.topics {
            let pages = self.pages.entry(name.clone()).or_default();
            let above = pages.last().map_or(0, |p| p.last);
            let waiting: Vec<&SegmentEntry> = segments
                .range(above.saturating_add(1)..)
                .map(|(_, s)| s)
                .collect();
            let mut start = 0;
            while waiting.len() - start >= 2 * PAGE_RECORDS {
                let chunk = &waiting[start..start + PAGE_RECORDS];
                start += PAGE_RECORDS;
                let key = keys.page(seq, cut.len());
                pages.push(PageRef {
                    key: key.clone(),
                    first: chunk[0].id,
                    last: chunk[chunk.len() - 1].id,
                    count: chunk.len() as u64,
                });
                cut.push((
                    key,
                    Page {
                        format: FORMAT,
                        topic: name.to_string(),
                        segments: chunk.iter().map(|s| (*s).clone()).collect(),
                    },
                ));
            }
        }
        self.pages.retain(|_, pages| !pages.is_empty());
        cut
    }

    /// The size, in records, of the checkpoint the next [`CatalogState::cut_pages`] would
    /// allow: inline records plus page references (new pages included).
    pub fn checkpoint_weight(&self) -> usize {
        let mut weight = 0;
        for (name, segments) in &self.topics {
            let pages = self.pages.get(name).map_or(&[][..], Vec::as_slice);
            let above = pages.last().map_or(0, |p| p.last);
            let waiting = segments.range(above.saturating_add(1)..).count();
            let new_pages = if waiting >= 2 * PAGE_RECORDS {
                (waiting - 2 * PAGE_RECORDS) / PAGE_RECORDS + 1
            } else {
                0
            };
            let paged: usize =
                pages.iter().map(|p| p.count as usize).sum::<usize>() + new_pages * PAGE_RECORDS;
            weight += segments.len() - paged.min(segments.len()) + pages.len() + new_pages;
        }
        weight
    }

    /// Every page key the state's checkpoint would reference.
    pub fn page_keys(&self) -> BTreeSet<String> {
        self.pages
            .values()
            .flatten()
            .map(|p| p.key.clone())
            .collect()
    }

    /// A change to segment `id` of `topic`: the page whose range holds it no longer says
    /// what the state does.
    fn retire_pages(&mut self, topic: &TopicName, id: u64) {
        if let Some(pages) = self.pages.get_mut(topic) {
            pages.retain(|p| !(p.first..=p.last).contains(&id));
            if pages.is_empty() {
                self.pages.remove(topic);
            }
        }
    }

    /// Applies one commit's changes. Each change is idempotent: a record replayed twice (a
    /// commit retried after an ambiguous failure) leaves the same state.
    pub fn apply(&mut self, key: &str, seq: u64, changes: &[Change]) -> Result<(), FormatError> {
        for change in changes {
            match change {
                Change::Offloaded { topic, segment } => {
                    let name = topic_name(key, topic)?;
                    let segments = self.topics.entry(name.clone()).or_default();
                    match segments.insert(segment.id, segment.clone()) {
                        None => {
                            self.segments += 1;
                            self.retire_pages(&name, segment.id);
                        }
                        Some(previous) if previous != *segment => {
                            self.retire_pages(&name, segment.id)
                        }
                        Some(_) => {}
                    }
                }
                Change::SegmentDeleted { topic, id, uuid } => {
                    let name = topic_name(key, topic)?;
                    if let Some(segments) = self.topics.get_mut(&name) {
                        let recorded = segments.get(id).map(|s| s.uuid.as_str());
                        if recorded.is_some_and(|r| uuid.as_deref().is_none_or(|u| u == r)) {
                            segments.remove(id);
                            self.segments -= 1;
                        }
                        if segments.is_empty() {
                            self.topics.remove(&name);
                            self.pages.remove(&name);
                        } else {
                            self.retire_pages(&name, *id);
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
        let back =
            CatalogState::from_checkpoint("c", state.to_checkpoint(), &HashMap::new()).unwrap();
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
                        uuid: None,
                    },
                    Change::SegmentDeleted {
                        topic: "t/ns/x".into(),
                        id: 1,
                        uuid: None,
                    },
                    // Another offload's record of segment 2: this one stays.
                    Change::SegmentDeleted {
                        topic: "t/ns/x".into(),
                        id: 2,
                        uuid: Some("not-its-uuid".into()),
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
                    id: 1,
                    uuid: None,
                }]
            ),
            Err(FormatError::Invalid { .. })
        ));
    }
}
