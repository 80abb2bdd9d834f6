//! The process's malloc policy, set once before any thread starts.
//!
//! tierfs allocates and frees many large buffers (ranged-GET bodies up to 8 MiB, cache blocks of
//! the read buffer size, upload parts). glibc's default raises its mmap threshold each time such
//! a buffer is freed, after which buffers of that size come from the per-thread heaps and their
//! memory, once freed, is kept by the process: resident size then grows far past the cache and
//! read-ahead bounds (measured: 83 MiB over them while reading one 48 MiB segment with an 8 MiB
//! cache). Fixing the threshold at 128 KiB keeps large buffers in their own mappings, returned
//! to the kernel as soon as they are freed, so the configured bounds are what the process holds.

/// Buffers of at least this size get their own mapping (glibc's initial default, made fixed).
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Applies the policy. Call before spawning threads; a no-op where the C library is not glibc.
pub fn bound_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 {
            tracing::warn!(
                "cannot fix malloc's mmap threshold; resident memory may exceed the cache bounds"
            );
        }
    }
}
