//! The data directory's lock: one mount per data directory.
//!
//! An advisory `flock` on `<data-dir>/tierfs.lock`, held for the life of the mount and released
//! by the kernel when the process exits, however it exits. The file records the holder's pid and
//! mountpoint so that a refused second mount can say who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::{LogError, io_error};

pub const LOCK_FILE: &str = "tierfs.lock";

#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(data_dir: &Path, mountpoint: &Path) -> Result<Self, LogError> {
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path, "open lock file"))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.split_whitespace().collect::<Vec<_>>().join(", ");
                return Err(LogError::Locked {
                    path: data_dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "holder unknown".to_string()
                    } else {
                        holder
                    },
                });
            }
            return Err(io_error(&path, "lock")(err));
        }
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| {
                writeln!(
                    file,
                    "pid={} mountpoint={}",
                    std::process::id(),
                    mountpoint.display()
                )
            })
            .map_err(io_error(&path, "write lock file"))?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_ones_identity() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path(), Path::new("/mnt/a")).unwrap();
        let err = DataDirLock::acquire(dir.path(), Path::new("/mnt/b")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("in use by another tierfs mount"), "{text}");
        assert!(text.contains("mountpoint=/mnt/a"), "{text}");
        drop(first);
        DataDirLock::acquire(dir.path(), Path::new("/mnt/b")).unwrap();
    }
}
