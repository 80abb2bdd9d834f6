//! Recycled buffers of one size, for the read path's fixed-size chunks.
//!
//! Large buffers get a mapping of their own (see [`crate::allocator`]), so a fresh one costs a
//! page fault and a zeroed page for every 4 KiB written into it: on a cold read through a
//! small memory cache, where every chunk stored evicts one, that was a quarter of the process's
//! CPU. A [`BufferPool`] hands out buffers of its size and takes them back when the last
//! [`Bytes`] made from one is dropped, keeping at most `keep` free ones (each already faulted
//! in); beyond that a returned buffer is freed, so the pool adds at most `keep × size` bytes to
//! what the caches' bounds allow.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

#[derive(Debug)]
pub struct BufferPool {
    size: usize,
    keep: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// A pool of `size`-byte buffers keeping at most `keep` free ones.
    pub fn new(size: usize, keep: usize) -> Arc<Self> {
        Arc::new(Self {
            size,
            keep,
            free: Mutex::new(Vec::with_capacity(keep)),
        })
    }

    /// The size of every buffer of the pool.
    pub fn size(&self) -> usize {
        self.size
    }

    /// An empty buffer with room for [`Self::size`] bytes: a recycled one when there is one.
    pub fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// `buf`'s bytes as [`Bytes`]; the buffer comes back to the pool when the last view of it
    /// is dropped.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Recycled {
            buf,
            pool: Arc::clone(self),
        })
    }

    /// Free buffers held now.
    pub fn free_buffers(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() != self.size {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < self.keep {
            buf.clear();
            free.push(buf);
        }
    }
}

/// A pool's buffer lent out as [`Bytes`].
struct Recycled {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_view_is_dropped() {
        let pool = BufferPool::new(1024, 2);
        let mut buf = pool.take();
        buf.extend_from_slice(b"hello");
        let ptr = buf.as_ptr();
        let bytes = pool.freeze(buf);
        let view = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(pool.free_buffers(), 0, "a view still holds it");
        assert_eq!(&view[..], b"el");
        drop(view);
        assert_eq!(pool.free_buffers(), 1);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the same memory is lent again");
        assert!(again.is_empty());
        assert_eq!(again.capacity(), 1024);
    }

    #[test]
    fn at_most_keep_free_buffers_are_held() {
        let pool = BufferPool::new(64, 2);
        let lent: Vec<Bytes> = (0..5).map(|_| pool.freeze(pool.take())).collect();
        drop(lent);
        assert_eq!(pool.free_buffers(), 2);
    }

    #[test]
    fn a_buffer_of_another_size_is_not_kept() {
        let pool = BufferPool::new(64, 2);
        drop(pool.freeze(Vec::with_capacity(128)));
        assert_eq!(pool.free_buffers(), 0);
    }
}
