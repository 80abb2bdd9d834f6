//! The fuser adapter: translates kernel requests into [`TierFs`] calls and back.
//!
//! No behaviour lives here beyond the translation: attributes and errors become fuser's types,
//! errors go through [`errno::refuse`], and the kernel is told how to cache each node.

mod errno;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    BsdFileFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tracing::{debug, warn};

use crate::fs::{Attr, FsError, Kind, Read, SetAttr, TierFs};

pub use errno::classify;

/// Largest `write(2)` that reaches tierfs as one request, and so becomes one entry.
pub const MAX_WRITE: u32 = 1024 * 1024;

/// The kernel's read-ahead for the mount, as large as it allows up to this.
pub const MAX_READAHEAD: u32 = 1024 * 1024;

/// How the mount is set up in the kernel.
#[derive(Debug, Clone)]
pub struct MountSettings {
    pub threads: usize,
    pub allow_other: bool,
}

pub struct FuseAdapter {
    fs: Arc<TierFs>,
}

impl FuseAdapter {
    pub fn new(fs: Arc<TierFs>) -> Self {
        Self { fs }
    }

    /// fuser's session configuration for a tierfs mount.
    pub fn config(settings: &MountSettings) -> Config {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("tierfs".to_string()),
            MountOption::Subtype("tierfs".to_string()),
            MountOption::DefaultPermissions,
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoAtime,
        ];
        if settings.allow_other {
            config.acl = fuser::SessionACL::All;
        }
        config.n_threads = Some(settings.threads.max(1));
        config
    }
}

fn err(op: &'static str, e: &FsError) -> Errno {
    Errno::from_i32(errno::refuse(op, e))
}

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.blocks(),
        atime: attr.atime,
        mtime: attr.mtime,
        ctime: attr.ctime,
        crtime: attr.crtime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

fn reply_entry(reply: ReplyEntry, op: &'static str, result: Result<Attr, FsError>) {
    match result {
        Ok(attr) => reply.entry(&attr.ttl(), &file_attr(&attr), Generation(0)),
        Err(e) => reply.error(err(op, &e)),
    }
}

fn reply_empty(reply: ReplyEmpty, op: &'static str, result: Result<(), FsError>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(op, &e)),
    }
}

fn reply_xattr(reply: ReplyXattr, op: &'static str, size: u32, result: Result<Vec<u8>, FsError>) {
    match result {
        Ok(value) if size == 0 => reply.size(value.len() as u32),
        Ok(value) if value.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(value) => reply.data(&value),
        Err(e) => reply.error(err(op, &e)),
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            warn!(nearest, "kernel refused max_write of {MAX_WRITE}");
        }
        // Larger kernel read-ahead means fewer, larger reads of sealed segments.
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        for wanted in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            if config.add_capabilities(wanted).is_err() {
                debug!(?wanted, "kernel lacks capability");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, "lookup", self.fs.lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(attr) => reply.attr(&attr.ttl(), &file_attr(&attr)),
            Err(e) => reply.error(err("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            size,
            mode,
            uid,
            gid,
            times: atime.is_some() || mtime.is_some() || ctime.is_some(),
        };
        match self.fs.setattr(ino.0, change) {
            Ok(attr) => reply.attr(&attr.ttl(), &file_attr(&attr)),
            Err(e) => reply.error(err("setattr", &e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, "mknod", Err(self.fs.refuse_new_file(parent.0, name)));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, "mkdir", self.fs.mkdir(parent.0, name));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, "unlink", self.fs.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, "rmdir", self.fs.rmdir(parent.0, name));
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            "symlink",
            Err(self.fs.refuse_new_file(parent.0, link_name)),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, "rename", self.fs.rename(parent.0, name));
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            "link",
            Err(self.fs.refuse_new_file(newparent.0, newname)),
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.open_by(ino.0, flags.0, req.pid()) {
            Ok(opened) => {
                let mut fopen = FopenFlags::empty();
                if opened.direct_io {
                    fopen |= FopenFlags::FOPEN_DIRECT_IO;
                }
                if opened.keep_cache {
                    fopen |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                reply.opened(FileHandle(opened.fh), fopen);
            }
            Err(e) => reply.error(err("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(fh.0, offset, size) {
            Read::Ready(Ok(data)) => reply.data(&data),
            Read::Ready(Err(e)) => reply.error(err("read", &e)),
            Read::Cached(data) => reply.data(&data),
            Read::Later(future) => {
                let Some(runtime) = self.fs.runtime() else {
                    return reply.error(Errno::EIO);
                };
                runtime.spawn(async move {
                    match future.await {
                        Ok(data) => reply.data(&data),
                        Err(e) => reply.error(err("read", &e)),
                    }
                });
            }
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(fh.0, offset, data) {
            Ok(written) => reply.written(written),
            Err(e) => reply.error(err("write", &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Every returned write is already in the local file; nothing is buffered here.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, "fsync", self.fs.fsync(fh.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(err("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // Offsets: 0 = ".", 1 = "..", n + 2 = the listing's n-th entry.
        let mut position = offset;
        for (name, kind) in [(".", FileType::Directory), ("..", FileType::Directory)]
            .into_iter()
            .skip(offset as usize)
        {
            position += 1;
            if reply.add(ino, position, kind, name) {
                return reply.ok();
            }
        }
        let skip = offset.saturating_sub(2) as usize;
        let listed = self.fs.readdir(fh.0, skip, |entry| {
            position += 1;
            reply.add(
                INodeNo(entry.attr.ino),
                position,
                file_type(entry.attr.kind),
                &entry.name,
            )
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err("readdir", &e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut position = offset;
        if offset < 2 {
            // "." and ".." carry no attributes the kernel may cache.
            let dot = match self.fs.getattr(ino.0) {
                Ok(attr) => attr,
                Err(e) => return reply.error(err("readdirplus", &e)),
            };
            for name in [".", ".."].into_iter().skip(offset as usize) {
                position += 1;
                if reply.add(
                    ino,
                    position,
                    name,
                    &Duration::ZERO,
                    &file_attr(&dot),
                    Generation(0),
                ) {
                    return reply.ok();
                }
            }
        }
        let skip = offset.saturating_sub(2) as usize;
        let listed = self.fs.readdir(fh.0, skip, |entry| {
            position += 1;
            let attr = &entry.attr;
            reply.add(
                INodeNo(attr.ino),
                position,
                &entry.name,
                &attr.ttl(),
                &file_attr(attr),
                Generation(0),
            )
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err("readdirplus", &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes are made durable when they happen.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(err("statfs", &e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(err("setxattr", &self.fs.refuse_xattr_change(ino.0)));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, "getxattr", size, self.fs.getxattr(ino.0, name));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, "listxattr", size, self.fs.listxattr(ino.0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(err("removexattr", &self.fs.refuse_xattr_change(ino.0)));
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(err("create", &self.fs.refuse_new_file(parent.0, name)));
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(err("fallocate", &self.fs.refuse_fallocate(ino.0)));
    }
}
