//! Behaviour of [`TierFs`] without a kernel: the same calls the FUSE adapter makes.

use std::ffi::OsStr;
use std::sync::Arc;

use super::*;
use crate::log::{LocalLog, RolloverPolicy};

fn fs_with(max_entries: u64) -> (tempfile::TempDir, TierFs) {
    let dir = tempfile::tempdir().unwrap();
    let policy = RolloverPolicy {
        max_entries,
        min_age: std::time::Duration::ZERO,
        ..RolloverPolicy::default()
    };
    let (log, _) = LocalLog::open(dir.path(), policy).unwrap();
    (dir, TierFs::new(Arc::new(log)))
}

fn mkdirs(fs: &TierFs) -> u64 {
    let t = fs.mkdir(ROOT_INO, OsStr::new("t")).unwrap().ino;
    let ns = fs.mkdir(t, OsStr::new("ns")).unwrap().ino;
    fs.mkdir(ns, OsStr::new("x")).unwrap().ino
}

fn names(fs: &TierFs, ino: u64) -> Vec<String> {
    fs.list(ino).unwrap().into_iter().map(|e| e.name).collect()
}

#[test]
fn appends_roll_over_and_show_as_files() {
    let (_dir, fs) = fs_with(2);
    let topic = mkdirs(&fs);
    let active = fs.lookup(topic, OsStr::new("active")).unwrap();
    assert_eq!(
        (active.size, active.perm, active.immutable),
        (0, 0o644, false)
    );
    let opened = fs
        .open(active.ino, libc::O_WRONLY | libc::O_APPEND)
        .unwrap();
    assert!(opened.direct_io && !opened.keep_cache);
    for entry in ["a", "bb", "ccc"] {
        fs.write(opened.fh, 0, entry.as_bytes()).unwrap();
    }
    assert_eq!(
        names(&fs, topic),
        vec!["00000000000000000001.seg", "active"]
    );
    let sealed = fs
        .lookup(topic, OsStr::new("00000000000000000001.seg"))
        .unwrap();
    assert_eq!(
        (sealed.size, sealed.perm, sealed.immutable),
        (3, 0o444, true)
    );
    assert_eq!(sealed.ttl(), attr::IMMUTABLE_TTL);
    let read = fs.open(sealed.ino, libc::O_RDONLY).unwrap();
    assert!(read.keep_cache && !read.direct_io);
    assert_eq!(fs.read(read.fh, 0, 100).wait(None).unwrap(), b"abb");
    assert_eq!(fs.read(read.fh, 3, 100).wait(None).unwrap(), b"");
    assert_eq!(fs.read(opened.fh, 0, 100).wait(None).unwrap(), b"ccc");
    assert_eq!(
        fs.getxattr(sealed.ino, OsStr::new("user.tierfs.entries"))
            .unwrap(),
        b"2"
    );
    assert_eq!(
        fs.listxattr(sealed.ino).unwrap(),
        b"user.tierfs.state\0user.tierfs.local\0user.tierfs.entries\0user.tierfs.crc32c\0"
    );
}

#[test]
fn non_append_handles_write_only_at_their_position_or_the_end() {
    let (_dir, fs) = fs_with(1000);
    let topic = mkdirs(&fs);
    let active = fs.lookup(topic, OsStr::new("active")).unwrap().ino;
    let first = fs.open(active, libc::O_WRONLY).unwrap().fh;
    fs.write(first, 0, b"abc").unwrap();
    let second = fs.open(active, libc::O_WRONLY).unwrap().fh; // opened at the end, 3
    let err = fs.write(second, 0, b"x").unwrap_err();
    assert!(matches!(
        err,
        FsError::Log {
            source: crate::log::LogError::NotAtEnd { offset: 0, end: 3 },
            ..
        }
    ));
    fs.write(second, 3, b"de").unwrap();
    // The first handle continues its own stream at 3: appended at the tail (5).
    fs.write(first, 3, b"f").unwrap();
    assert_eq!(fs.read(first, 0, 10).wait(None).unwrap(), b"abcdef");
}

#[test]
fn refusals_carry_their_reasons() {
    let (_dir, fs) = fs_with(1);
    let topic = mkdirs(&fs);
    let active = fs.lookup(topic, OsStr::new("active")).unwrap().ino;
    let fh = fs.open(active, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
    fs.write(fh, 0, b"entry").unwrap();
    let sealed = fs
        .lookup(topic, OsStr::new("00000000000000000001.seg"))
        .unwrap()
        .ino;
    assert!(matches!(
        fs.open(sealed, libc::O_RDWR),
        Err(FsError::NotPermitted { .. })
    ));
    assert!(matches!(
        fs.setattr(
            sealed,
            SetAttr {
                size: Some(0),
                ..SetAttr::default()
            }
        ),
        Err(FsError::NotPermitted { .. })
    ));
    // Active is empty again after the rollover: O_TRUNC's size-0 setattr is a no-op.
    fs.setattr(
        active,
        SetAttr {
            size: Some(0),
            times: true,
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert!(matches!(
        fs.setattr(
            active,
            SetAttr {
                mode: Some(0o600),
                ..SetAttr::default()
            }
        ),
        Err(FsError::NotPermitted { .. })
    ));
    assert!(matches!(
        fs.unlink(topic, OsStr::new("active")),
        Err(FsError::NotPermitted { .. })
    ));
    assert!(matches!(
        fs.mkdir(topic, OsStr::new("d")),
        Err(FsError::NotPermitted { .. })
    ));
    assert!(matches!(
        fs.lookup(topic, OsStr::new("00000000000000000002.seg")),
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(
        fs.lookup(topic, OsStr::new("1.seg")),
        Err(FsError::NotFound(_))
    ));
    let bad = fs.mkdir(ROOT_INO, OsStr::new("a b")).unwrap_err();
    assert!(bad.to_string().contains("allowed are letters"), "{bad}");
    assert!(matches!(
        fs.getxattr(topic, OsStr::new("user.tierfs.state")),
        Err(FsError::NoAttribute { .. })
    ));
    assert!(matches!(
        fs.getxattr(topic, OsStr::new("security.selinux")),
        Err(FsError::AttributeNotSupported { .. })
    ));
}

#[test]
fn directory_handles_keep_their_listing() {
    let (_dir, fs) = fs_with(1000);
    mkdirs(&fs);
    let fh = fs.opendir(ROOT_INO).unwrap();
    fs.mkdir(ROOT_INO, OsStr::new("later")).unwrap();
    let listed = |offset| {
        let mut names = Vec::new();
        fs.readdir(fh, offset, |e| {
            names.push(e.name.clone());
            false
        })
        .map(|()| names)
    };
    assert_eq!(listed(0).unwrap(), vec!["t"]);
    assert!(listed(1).unwrap().is_empty());
    fs.releasedir(fh);
    assert!(matches!(listed(0), Err(FsError::BadHandle(_))));
    assert_eq!(names(&fs, ROOT_INO), vec!["later", "t"]);
}
