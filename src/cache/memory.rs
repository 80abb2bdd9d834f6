//! The in-memory block cache: verified blocks of offloaded segments, LRU, bounded in bytes.

use std::sync::Arc;

use bytes::Bytes;
use lru::LruCache;

/// A block of an object: the object's key and the block's index in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub object: Arc<str>,
    pub index: u64,
}

/// What an insertion pushed out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub blocks: u64,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct MemoryCache {
    blocks: LruCache<BlockKey, Bytes>,
    bytes: u64,
    capacity: u64,
}

impl MemoryCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            blocks: LruCache::unbounded(),
            bytes: 0,
            capacity,
        }
    }

    pub fn get(&mut self, key: &BlockKey) -> Option<Bytes> {
        self.blocks.get(key).cloned()
    }

    pub fn contains(&self, key: &BlockKey) -> bool {
        self.blocks.contains(key)
    }

    /// Inserts a block, evicting the least recently used ones until the bound holds again.
    /// A block larger than the whole cache is not kept.
    pub fn insert(&mut self, key: BlockKey, block: Bytes) -> Evicted {
        let mut evicted = Evicted::default();
        if block.len() as u64 > self.capacity {
            return evicted;
        }
        if let Some(old) = self.blocks.put(key, block.clone()) {
            self.bytes -= old.len() as u64;
        }
        self.bytes += block.len() as u64;
        while self.bytes > self.capacity {
            let Some((_, old)) = self.blocks.pop_lru() else {
                break;
            };
            self.bytes -= old.len() as u64;
            evicted.blocks += 1;
            evicted.bytes += old.len() as u64;
        }
        evicted
    }

    /// Drops a block, if held.
    pub fn remove(&mut self, key: &BlockKey) {
        if let Some(old) = self.blocks.pop(key) {
            self.bytes -= old.len() as u64;
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> BlockKey {
        BlockKey {
            object: Arc::from("o"),
            index: i,
        }
    }

    #[test]
    fn the_byte_bound_holds_and_recent_blocks_stay() {
        let mut cache = MemoryCache::new(3000);
        for i in 0..3 {
            cache.insert(key(i), Bytes::from(vec![0u8; 1000]));
        }
        assert!(cache.get(&key(0)).is_some()); // 0 is now the most recent
        let evicted = cache.insert(key(3), Bytes::from(vec![0u8; 1000]));
        assert_eq!(
            evicted,
            Evicted {
                blocks: 1,
                bytes: 1000
            }
        );
        assert!(
            !cache.contains(&key(1)),
            "the least recently used block goes first"
        );
        assert!(cache.contains(&key(0)) && cache.contains(&key(3)));
        assert_eq!(cache.bytes(), 3000);
        assert_eq!(
            cache.insert(key(9), Bytes::from(vec![0u8; 5000])),
            Evicted::default()
        );
        assert!(!cache.contains(&key(9)));
        cache.remove(&key(0));
        cache.remove(&key(0));
        assert!(!cache.contains(&key(0)));
        assert_eq!(cache.bytes(), 2000);
    }
}
