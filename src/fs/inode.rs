//! Inode numbers for the nodes of the mount.
//!
//! Every node (tenant, namespace, topic, segment, `active`) gets a number the first time it is
//! looked up and keeps it for the life of the mount, so the kernel's view stays stable across
//! rollovers. Numbers are never reused; the table grows with the nodes ever seen, which is
//! small (a segment costs well under 100 bytes).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use crate::log::data_file_name;
use crate::name::{NamespaceName, TopicName};
use crate::pulsar::bucket::{entry_lengths_name, ledger_file_name};

pub const ROOT_INO: u64 = 1;

/// What an inode stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    Root,
    Tenant(String),
    Namespace(NamespaceName),
    Topic(TopicName),
    /// A sealed segment of a topic, by id.
    Segment(TopicName, u64),
    /// The topic's active segment, under the stable name `active`.
    Active(TopicName),
    /// A directory of a `--pulsar` mount, by path (no leading `/`).
    LedgerDir(String),
    /// A ledger file of a `--pulsar` mount: its directory and ledger id.
    Ledger(String, u64),
    /// The entry lengths of a ledger (`.<ledgerId:020>.entries`, found by name, not listed).
    EntryLengths(String, u64),
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(
            self,
            Node::Root | Node::Tenant(_) | Node::Namespace(_) | Node::Topic(_) | Node::LedgerDir(_)
        )
    }
}

impl fmt::Display for Node {
    /// The node's path inside the mount, for log lines and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Root => f.write_str("/"),
            Node::Tenant(t) => write!(f, "/{t}"),
            Node::Namespace(ns) => write!(f, "/{ns}"),
            Node::Topic(t) => write!(f, "/{t}"),
            Node::Segment(t, id) => write!(f, "/{t}/{}", data_file_name(*id)),
            Node::Active(t) => write!(f, "/{t}/active"),
            Node::LedgerDir(path) => write!(f, "/{path}"),
            Node::Ledger(dir, id) => write!(f, "/{dir}/{}", ledger_file_name(*id)),
            Node::EntryLengths(dir, id) => write!(f, "/{dir}/{}", entry_lengths_name(*id)),
        }
    }
}

#[derive(Debug)]
pub struct InodeTable {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    by_node: HashMap<Node, u64>,
    by_ino: HashMap<u64, Node>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut inner = Inner {
            by_node: HashMap::new(),
            by_ino: HashMap::new(),
            next: ROOT_INO + 1,
        };
        inner.by_node.insert(Node::Root, ROOT_INO);
        inner.by_ino.insert(ROOT_INO, Node::Root);
        Self {
            inner: Mutex::new(inner),
        }
    }
}

impl InodeTable {
    /// The node's inode number, assigned on first sight.
    pub fn ino(&self, node: &Node) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ino) = inner.by_node.get(node) {
            return *ino;
        }
        let ino = inner.next;
        inner.next += 1;
        inner.by_node.insert(node.clone(), ino);
        inner.by_ino.insert(ino, node.clone());
        ino
    }

    /// The node's inode number if it was ever assigned.
    pub fn existing(&self, node: &Node) -> Option<u64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_node.get(node).copied()
    }

    pub fn node(&self, ino: u64) -> Option<Node> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_ino.get(&ino).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_distinct() {
        let table = InodeTable::default();
        let t = TopicName::new("t", "ns", "x").unwrap();
        let a = table.ino(&Node::Active(t.clone()));
        let s = table.ino(&Node::Segment(t.clone(), 1));
        assert_ne!(a, s);
        assert_eq!(table.ino(&Node::Active(t.clone())), a);
        assert_eq!(table.node(s), Some(Node::Segment(t, 1)));
        assert_eq!(table.node(ROOT_INO), Some(Node::Root));
        assert_eq!(table.node(999), None);
    }
}
