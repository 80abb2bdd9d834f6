//! A read-only memory map of a range of a sealed segment file, handed to the store as a part's
//! body without copying it.
//!
//! Reading a 64 MiB part into a fresh buffer cost the offload ~50 ms per part on the development
//! machine (the kernel zero-fills every new page, then the read copies the page cache into it):
//! a tenth of the whole upload against a local server. A mapping shares the page cache's pages
//! instead; `MAP_POPULATE` maps them in one call (reading from disk what is not cached).
//!
//! Safety rests on the file being immutable while mapped: sealed segments are never written or
//! truncated (deletion unlinks them, which leaves a mapping intact). A file truncated under a
//! mapping would fault (SIGBUS) on access; nothing in tierfs does that to a sealed segment.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use bytes::Bytes;

/// `len` bytes of `file` from `offset`, mapped read-only, as `Bytes` that unmap when dropped.
pub fn map_range(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    // A page past the end of the file would fault on access: refuse a short file instead.
    let size = file.metadata()?.len();
    if offset.saturating_add(len as u64) > size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the file has {size} bytes, the part ends at {}",
                offset + len as u64
            ),
        ));
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let aligned = offset - offset % page;
    let skip = (offset - aligned) as usize;
    let map_len = skip + len;
    // SAFETY: a fresh private read-only mapping of a file we hold open; the kernel picks the
    // address. The result is checked before use.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_POPULATE,
            file.as_raw_fd(),
            aligned as libc::off_t,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mapping = Mapping {
        ptr: ptr.cast(),
        len: map_len,
    };
    Ok(Bytes::from_owner(mapping).slice(skip..))
}

/// An mmap'd region, unmapped on drop.
struct Mapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; reading it from any thread is
// sound, and only drop (which needs ownership) unmaps it.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared access only ever reads.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes until drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mmap returned; no reference to it outlives self.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_any_range_of_a_file_including_unaligned_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        File::create(&path).unwrap().write_all(&data).unwrap();
        let file = File::open(&path).unwrap();
        for (offset, len) in [
            (0, 100_000),
            (4096, 8192),
            (5000, 30_001),
            (99_999, 1),
            (7, 0),
        ] {
            let mapped = map_range(&file, offset as u64, len).unwrap();
            assert_eq!(&mapped[..], &data[offset..offset + len], "{offset}+{len}");
        }
    }

    #[test]
    fn a_mapping_outlives_the_unlinked_file_and_its_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        File::create(&path)
            .unwrap()
            .write_all(&[7u8; 10_000])
            .unwrap();
        let file = File::open(&path).unwrap();
        let mapped = map_range(&file, 0, 10_000).unwrap();
        drop(file);
        std::fs::remove_file(&path).unwrap();
        assert!(mapped.iter().all(|b| *b == 7));
    }

    #[test]
    fn a_range_past_the_end_of_the_file_is_refused_not_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        File::create(&path)
            .unwrap()
            .write_all(&[1u8; 5000])
            .unwrap();
        let file = File::open(&path).unwrap();
        let err = map_range(&file, 4096, 5000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
