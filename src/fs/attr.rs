//! File attributes as the mount presents them, and how long the kernel may cache them.
//!
//! Sealed segments are immutable: their attributes and names may be cached for a long time and
//! their pages kept across opens. Directories and `active` change under the kernel's feet
//! (rollovers, appends from other handles), so they are never cached.

use std::time::{Duration, SystemTime};

use crate::log::{ActiveInfo, SealedSegment};

/// How long the kernel may cache a sealed segment's name and attributes.
pub const IMMUTABLE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long the kernel may cache `active`, whose size changes with every append.
pub const VOLATILE_TTL: Duration = Duration::ZERO;
/// How long the kernel may cache a directory's name and attributes. Tenants, namespaces and
/// topics change only through the mount (which updates the kernel at once) or the admin API;
/// a second keeps path walks (`ls -l` of 10,000 segments) from asking again for every file.
pub const DIRECTORY_TTL: Duration = Duration::from_secs(1);

pub const SEALED_MODE: u16 = 0o444;
pub const ACTIVE_MODE: u16 = 0o644;
pub const DIR_MODE: u16 = 0o755;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
    /// Whether the node never changes (a sealed segment).
    pub immutable: bool,
    /// Whether the bytes are on local disk; an offloaded segment whose local copy is gone
    /// occupies no blocks, so `du` and `ls -s` show where data lives.
    pub local: bool,
}

impl Attr {
    pub fn ttl(&self) -> Duration {
        match (self.immutable, self.kind) {
            (true, _) => IMMUTABLE_TTL,
            (false, Kind::Directory) => DIRECTORY_TTL,
            (false, Kind::File) => VOLATILE_TTL,
        }
    }

    /// Allocated size in 512-byte blocks, as `stat` and `du` count.
    pub fn blocks(&self) -> u64 {
        if !self.local {
            return 0;
        }
        self.size.div_ceil(512)
    }
}

/// Who owns every node: the user that mounted.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn current() -> Self {
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        unsafe {
            Self {
                uid: libc::geteuid(),
                gid: libc::getegid(),
            }
        }
    }

    pub fn directory(&self, ino: u64, meta: Option<&std::fs::Metadata>) -> Attr {
        let mtime = meta
            .and_then(|m| m.modified().ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let crtime = meta.and_then(|m| m.created().ok()).unwrap_or(mtime);
        self.directory_times(ino, mtime, crtime)
    }

    /// A directory with no local counterpart (a read-only mount's), dated `at`.
    pub fn directory_at(&self, ino: u64, at: Option<SystemTime>) -> Attr {
        let at = at.unwrap_or(SystemTime::UNIX_EPOCH);
        self.directory_times(ino, at, at)
    }

    fn directory_times(&self, ino: u64, mtime: SystemTime, crtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::Directory,
            size: 4096,
            perm: DIR_MODE,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime,
            immutable: false,
            local: true,
        }
    }

    pub fn sealed(&self, ino: u64, segment: &SealedSegment) -> Attr {
        let sealed = crate::log::manifest_time(segment.sealed_ms);
        Attr {
            ino,
            kind: Kind::File,
            size: segment.size,
            perm: SEALED_MODE,
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            atime: sealed,
            mtime: sealed,
            ctime: sealed,
            crtime: crate::log::manifest_time(segment.created_ms),
            immutable: true,
            local: segment.local,
        }
    }

    /// A file whose bytes never change and live in the bucket (a Pulsar ledger), dated `at`.
    pub fn immutable_remote(&self, ino: u64, size: u64, at: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::File,
            size,
            perm: SEALED_MODE,
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            atime: at,
            mtime: at,
            ctime: at,
            crtime: at,
            immutable: true,
            local: false,
        }
    }

    pub fn active(&self, ino: u64, active: &ActiveInfo) -> Attr {
        Attr {
            ino,
            kind: Kind::File,
            size: active.size,
            perm: ACTIVE_MODE,
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            atime: active.modified,
            mtime: active.modified,
            ctime: active.modified,
            crtime: active.created,
            immutable: false,
            local: true,
        }
    }
}
