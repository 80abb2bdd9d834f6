//! The process's malloc policy, set once before any thread starts.
//!
//! tierfs allocates and frees many large buffers (ranged-GET bodies up to 8 MiB, cache blocks of
//! the read buffer size, upload parts). glibc's default raises its mmap threshold each time such
//! a buffer is freed, after which buffers of that size come from the per-thread heaps and their
//! memory, once freed, is kept by the process: resident size then grows far past the cache and
//! read-ahead bounds (measured: 83 MiB over them while reading one 48 MiB segment with an 8 MiB
//! cache). Fixing the threshold keeps buffers of 512 KiB and more in their own mappings,
//! returned to the kernel as soon as they are freed, so the configured bounds are what the
//! process holds. Below it sit the HTTP client's receive buffers (at most about 400 KiB), one
//! freed and another taken for every frame of a body: kept on the heap, with up to 2 MiB of
//! free space at a heap's top kept rather than trimmed, they are reused without a page fault
//! (at 128 KiB and no trim margin, those faults were a fifth of a cold read's CPU).

/// Buffers of at least this size get their own mapping.
const MMAP_THRESHOLD: i32 = 512 * 1024;
/// Free memory at the top of a heap kept for reuse rather than returned to the kernel.
const TRIM_THRESHOLD: i32 = 2 * 1024 * 1024;

/// Applies the policy. Call before spawning threads; a no-op where the C library is not glibc.
pub fn bound_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1
            || libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1
        {
            tracing::warn!(
                "cannot fix malloc's mmap threshold; resident memory may exceed the cache bounds"
            );
        }
    }
}
