//! Sequential read-ahead, one state per open file.
//!
//! A reader whose read starts where its previous one ended is sequential. The first sequential
//! read opens a window of `initial` bytes beyond the read; each further sequential read doubles
//! it, up to `max`. A read within a few of its own lengths of where the run has got to is the
//! kernel's concurrent read-ahead arriving out of order: the window stays as it is. A read
//! anywhere else (a seek, a random pread) closes the window: the next sequential run starts
//! small again. The window says which bytes to fetch ahead; the cache
//! decides whether memory allows it (a global in-flight budget), so many open files cannot
//! exhaust memory however large their windows grow. The stretch a window adds at its end is
//! fetched once it is half a window long (or reaches the segment's end), and a sequential
//! reader's windows are all fetched by one streamed GET ([`super::stream`]), paced by its
//! reads.
//!
//! Windows of successive reads overlap: the window after read *n* covers blocks the window after
//! read *n − 1* already asked for. The cache fetches only the blocks of a window that are
//! neither cached nor in flight, as runs of consecutive missing blocks (each at most one GET
//! long), and claims them before the read returns, so the next read finds them in flight and
//! waits for them instead of fetching them again. A sequential read therefore has every block
//! fetched exactly once, and only its first read waits for a GET of its own (tested in
//! `cache::tests::read_ahead_covers_a_sequential_read_without_holes_or_duplicates`). When the
//! budget is spent, the window's remaining runs are not fetched: the reader fetches them itself
//! when it gets there.
//!
//! Across segments: a sequential reader whose window reaches the end of its segment has the
//! topic's next segment (when it too is read from the store) started, once: its index object
//! and its first window of blocks, within the same budget, so that `cat topic/*` finds them
//! coming when it opens the next file (Kafka's KIP-1003 proposes the same for tiered topics).
//!
//! At random: a reader whose reads keep jumping (two that landed further than four of their
//! own lengths from where the one before ended, and more of those than reads that followed:
//! the kernel's concurrent read-ahead makes a scan's reads arrive a little out of order) has
//! its whole segment fetched in the background ([`super::hydrate`]), as s3fs does, when the
//! segment fits in half the memory cache or half the disk cache. Reads then find their blocks
//! cached or on their way instead of each waiting for a GET.

/// A read landing within this many of its own lengths of where the last one ended is not a
/// jump of a reader at random (see [`ReadAhead::reads_at_random`]).
const NEAR_READS: u64 = 4;

#[derive(Debug, Clone)]
pub struct ReadAhead {
    /// Names this reader's streamed GET ([`super::stream`]).
    reader: u64,
    next: Option<u64>,
    window: u64,
    /// The topic's next segment, when it is read from the store too: a sequential reader whose
    /// window reaches the end of this one has its index and first blocks fetched (once).
    following: Option<super::RemoteObject>,
    crossed: bool,
    /// Reads that did not follow the one before, and reads that did.
    random: u32,
    followed: u32,
    hydrated: bool,
}

/// What one read means for read-ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Bytes `[from, to)` to fetch ahead, if any.
    pub ahead: Option<(u64, u64)>,
    /// Whether this read ended a sequential run.
    pub reset: bool,
}

impl Default for ReadAhead {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadAhead {
    pub fn new() -> Self {
        Self {
            reader: super::stream::next_id(),
            next: None,
            window: 0,
            following: None,
            crossed: false,
            random: 0,
            followed: 0,
            hydrated: false,
        }
    }

    /// Whether more of the reader's reads jumped than followed the one before. (The kernel
    /// sends a sequential reader's read-ahead as concurrent reads, which may arrive out of
    /// order: a scan has a few jumps, but far more reads that follow.)
    pub fn reads_at_random(&self) -> bool {
        self.random > self.followed
    }

    /// Whether the reader reads at random enough (`after` reads that did not follow the one
    /// before, and more of those than reads that did) for its whole segment to be fetched;
    /// true once.
    pub fn hydrate(&mut self, after: u32) -> bool {
        if self.hydrated || self.random < after || !self.reads_at_random() {
            return false;
        }
        self.hydrated = true;
        true
    }

    /// Read-ahead for a segment followed by `next` in its topic.
    pub fn followed_by(next: Option<super::RemoteObject>) -> Self {
        Self {
            following: next,
            ..Self::new()
        }
    }

    /// The next segment to start fetching, the first time a sequential window reaches `size`
    /// (the end of this segment); `None` after that, or while the reader is not sequential.
    pub fn crossing(&mut self, window_end: u64, size: u64) -> Option<super::RemoteObject> {
        if self.crossed || self.window == 0 || window_end < size {
            return None;
        }
        self.crossed = true;
        self.following.clone()
    }

    /// Records a read of `[offset, end)` of an object of `size` bytes.
    pub fn on_read(
        &mut self,
        offset: u64,
        end: u64,
        size: u64,
        initial: u64,
        max: u64,
    ) -> Decision {
        let sequential = match self.next {
            None => offset == 0,
            Some(next) => offset == next,
        };
        // A jump of a few reads' length is the kernel's concurrent read-ahead arriving out of
        // order, not a seek: it neither closes the window nor counts as a read at random.
        let near =
            self.next.unwrap_or(0).abs_diff(offset) <= (end - offset).saturating_mul(NEAR_READS);
        let mut reset = false;
        if sequential {
            self.followed = self.followed.saturating_add(1);
            self.window = if self.window == 0 {
                initial.min(max)
            } else {
                self.window.saturating_mul(2).min(max)
            };
            self.next = Some(end);
        } else if near {
            // The run goes on where its furthest read ended.
            self.next = self.next.max(Some(end));
        } else {
            reset = self.window > 0;
            self.window = 0;
            self.random = self.random.saturating_add(1);
            self.next = Some(end);
        }
        let to = end.saturating_add(self.window).min(size);
        Decision {
            ahead: (self.window > 0 && to > end).then_some((end, to)),
            reset,
        }
    }

    pub fn reader_id(&self) -> u64 {
        self.reader
    }

    pub fn window(&self) -> u64 {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn grows_while_sequential_and_resets_on_a_seek() {
        let mut ra = ReadAhead::new();
        let size = 1 << 30;
        let d = ra.on_read(0, MIB, size, MIB, 8 * MIB);
        assert_eq!(d.ahead, Some((MIB, 2 * MIB)));
        ra.on_read(MIB, 2 * MIB, size, MIB, 8 * MIB);
        assert_eq!(ra.window(), 2 * MIB);
        ra.on_read(2 * MIB, 3 * MIB, size, MIB, 8 * MIB);
        ra.on_read(3 * MIB, 4 * MIB, size, MIB, 8 * MIB);
        ra.on_read(4 * MIB, 5 * MIB, size, MIB, 8 * MIB);
        assert_eq!(ra.window(), 8 * MIB, "capped at the maximum");
        let d = ra.on_read(100 * MIB, 101 * MIB, size, MIB, 8 * MIB);
        assert!(d.reset && d.ahead.is_none());
        let d = ra.on_read(101 * MIB, 102 * MIB, size, MIB, 8 * MIB);
        assert_eq!(d.ahead, Some((102 * MIB, 103 * MIB)), "starts small again");
    }

    #[test]
    fn a_scan_whose_reads_arrive_out_of_order_is_not_read_at_random() {
        let mut ra = ReadAhead::new();
        let size = 1 << 30;
        let k = 128 << 10;
        // The kernel's concurrent read-ahead: now and then two reads swap places.
        for i in 0..64u64 {
            let at = match i % 8 {
                3 => 4 * k,
                4 => 3 * k,
                _ => (i % 8) * k,
            } + (i / 8) * 8 * k;
            ra.on_read(at, at + k, size, MIB, 8 * MIB);
        }
        assert_eq!(
            ra.random, 0,
            "a swap of neighbouring reads is not a jump at random"
        );
        assert!(!ra.reads_at_random());
        assert!(!ra.hydrate(3), "a scan is not fetched whole");
        // A reader that keeps jumping is.
        let mut jumpy = ReadAhead::new();
        for at in [50 * MIB, 3 * MIB, 90 * MIB, 7 * MIB] {
            jumpy.on_read(at, at + 4096, size, MIB, 8 * MIB);
        }
        assert!(jumpy.reads_at_random());
        assert!(jumpy.hydrate(3));
        assert!(!jumpy.hydrate(3), "once");
    }

    #[test]
    fn reads_arriving_a_little_out_of_order_keep_the_window() {
        let mut ra = ReadAhead::new();
        let size = 1 << 30;
        let k = 128 << 10;
        for at in [0, k, 2 * k, 3 * k] {
            ra.on_read(at, at + k, size, MIB, 8 * MIB);
        }
        let window = ra.window();
        assert_eq!(window, 8 * MIB);
        // The kernel sends 5k and 4k from two threads; 5k comes first.
        let d = ra.on_read(5 * k, 6 * k, size, MIB, 8 * MIB);
        assert!(!d.reset, "not a seek");
        assert_eq!(d.ahead, Some((6 * k, 6 * k + window)));
        let d = ra.on_read(4 * k, 5 * k, size, MIB, 8 * MIB);
        assert!(!d.reset);
        assert_eq!(ra.window(), window);
        // The run goes on from the furthest read.
        ra.on_read(6 * k, 7 * k, size, MIB, 8 * MIB);
        assert_eq!(ra.window(), window);
        assert_eq!(ra.random, 0);
        // A seek still closes it.
        assert!(
            ra.on_read(500 * MIB, 500 * MIB + k, size, MIB, 8 * MIB)
                .reset
        );
    }

    #[test]
    fn never_reads_past_the_end() {
        let mut ra = ReadAhead::new();
        assert_eq!(ra.on_read(0, 100, 150, MIB, MIB).ahead, Some((100, 150)));
        assert_eq!(ra.on_read(100, 150, 150, MIB, MIB).ahead, None);
    }
}
