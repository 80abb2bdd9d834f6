//! Every refusal, with the errno a user expects and a log line that says why.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;

use common::*;

fn setup() -> (TestMount, std::path::PathBuf) {
    let m = TestMount::start(
        "managedLedgerMaxEntriesPerLedger=2\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n",
    );
    let topic = m.topic("t/ns/x");
    let mut f = OpenOptions::new()
        .append(true)
        .open(topic.join("active"))
        .unwrap();
    for entry in ["one\n", "two\n", "three\n"] {
        f.write_all(entry.as_bytes()).unwrap();
    }
    (m, topic)
}

const SEALED: &str = "00000000000000000001.seg";

#[test]
fn writes_that_are_not_appends_are_refused() {
    let (m, topic) = setup();
    let active = topic.join("active");
    // O_TRUNC on a non-empty active.
    assert_eq!(
        errno(OpenOptions::new().write(true).truncate(true).open(&active)),
        libc::EPERM
    );
    // truncate(2) in any form.
    let f = OpenOptions::new().write(true).open(&active).unwrap();
    assert_eq!(errno(f.set_len(0)), libc::EPERM);
    assert_eq!(errno(f.set_len(100)), libc::EPERM);
    // A write into the middle (not O_APPEND, not at the end).
    assert_eq!(errno(f.write_at(b"zz", 0)), libc::EINVAL);
    // ...while one at the end is an append.
    f.write_at(b"four\n", 6).unwrap();
    // Writes to a sealed segment: refused at open.
    assert_eq!(
        errno(OpenOptions::new().append(true).open(topic.join(SEALED))),
        libc::EPERM
    );
    assert_eq!(
        errno(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(topic.join(SEALED))
        ),
        libc::EPERM
    );
    assert_eq!(
        String::from_utf8(cat_all(&topic)).unwrap(),
        "one\ntwo\nthree\nfour\n",
        "a refused operation changed the log"
    );
    let log = m.log_text();
    assert!(
        log.contains("active is append-only; truncating it"),
        "{log}"
    );
    assert!(
        log.contains("a write at offset 0 was refused; the end is at 6"),
        "{log}"
    );
    assert!(log.contains("sealed segments are immutable"), "{log}");
}

#[test]
fn o_trunc_on_an_empty_active_is_fine() {
    let m = TestMount::start("");
    let topic = m.topic("t/ns/empty");
    fs::write(topic.join("active"), b"first\n").unwrap(); // O_CREAT|O_TRUNC
    assert_eq!(fs::read(topic.join("active")).unwrap(), b"first\n");
}

#[test]
fn segments_cannot_be_removed_renamed_or_created() {
    let (m, topic) = setup();
    assert_eq!(errno(fs::remove_file(topic.join(SEALED))), libc::EPERM);
    assert_eq!(errno(fs::remove_file(topic.join("active"))), libc::EPERM);
    assert_eq!(
        errno(fs::rename(topic.join(SEALED), topic.join("x.seg"))),
        libc::EPERM
    );
    assert_eq!(
        errno(fs::rename(topic.join("active"), topic.join("old"))),
        libc::EPERM
    );
    assert_eq!(
        errno(fs::rename(m.mnt.join("t/ns"), m.mnt.join("t/ns2"))),
        libc::EPERM
    );
    assert_eq!(errno(fs::write(topic.join("new.seg"), b"x")), libc::EPERM);
    assert_eq!(errno(fs::write(m.mnt.join("t/file"), b"x")), libc::EPERM);
    assert_eq!(
        errno(std::os::unix::fs::symlink("active", topic.join("link"))),
        libc::EPERM
    );
    assert_eq!(
        errno(fs::hard_link(topic.join("active"), topic.join("hard"))),
        libc::EPERM
    );
    assert_eq!(errno(fs::create_dir(topic.join("sub"))), libc::EPERM);
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o666);
    assert_eq!(
        errno(fs::set_permissions(topic.join("active"), perms)),
        libc::EPERM
    );
    assert_eq!(
        errno(fs::read(topic.join("00000000000000000009.seg"))),
        libc::ENOENT
    );
    assert_eq!(listing(&topic), vec![SEALED, "active"]);
    let log = m.log_text();
    assert!(
        log.contains("segments and active cannot be deleted"),
        "{log}"
    );
    assert!(
        log.contains("nothing in a tierfs mount can be renamed"),
        "{log}"
    );
    assert!(log.contains("files cannot be created here"), "{log}");
    assert!(
        log.contains("a topic holds segments, not directories"),
        "{log}"
    );
}

#[test]
fn names_follow_pulsars_rules() {
    let m = TestMount::start("");
    for bad in [
        "bad name",
        "a*b",
        "tab\there",
        "ctl\u{1}x",
        "é",
        &"x".repeat(256),
    ] {
        assert_eq!(
            errno(fs::create_dir(m.mnt.join(bad))),
            libc::EINVAL,
            "{bad:?}"
        );
    }
    fs::create_dir(m.mnt.join("ok-1_.=:x")).unwrap();
    assert_eq!(
        errno(fs::create_dir(m.mnt.join("ok-1_.=:x/bad$ns"))),
        libc::EINVAL
    );
    fs::create_dir(m.mnt.join("ok-1_.=:x/ns")).unwrap();
    assert_eq!(
        errno(fs::create_dir(m.mnt.join("ok-1_.=:x/ns/bad topic"))),
        libc::EINVAL
    );
    fs::create_dir(m.mnt.join("t".repeat(255))).unwrap();
    let log = m.log_text();
    assert!(
        log.contains("allowed are letters, digits and the characters"),
        "{log}"
    );
    assert!(log.contains("the limit is 255"), "{log}");
}

#[test]
fn directories_are_created_once_and_removed_when_empty() {
    let (m, _topic) = setup();
    assert_eq!(errno(fs::create_dir(m.mnt.join("t"))), libc::EEXIST);
    assert_eq!(errno(fs::create_dir(m.mnt.join("t/ns/x"))), libc::EEXIST);
    assert_eq!(errno(fs::remove_dir(m.mnt.join("t/ns/x"))), libc::ENOTEMPTY);
    assert_eq!(errno(fs::remove_dir(m.mnt.join("t/ns"))), libc::ENOTEMPTY);
    assert_eq!(errno(fs::remove_dir(m.mnt.join("t"))), libc::ENOTEMPTY);
    assert_eq!(errno(fs::remove_dir(m.mnt.join("nope"))), libc::ENOENT);
    fs::create_dir_all(m.mnt.join("u/v/w")).unwrap();
    fs::remove_dir(m.mnt.join("u/v/w")).unwrap();
    fs::remove_dir(m.mnt.join("u/v")).unwrap();
    fs::remove_dir(m.mnt.join("u")).unwrap();
    assert!(!m.mnt.join("u").exists());
    assert!(!m.data.join("topics/u").exists());
}

#[test]
fn xattrs_are_read_only_and_unknown_ones_absent() {
    let (_m, topic) = setup();
    let path = std::ffi::CString::new(topic.join(SEALED).as_os_str().as_encoded_bytes()).unwrap();
    let name = c"user.tierfs.state";
    // SAFETY: valid NUL-terminated strings and a 1-byte value.
    let rc = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"x".as_ptr().cast(), 1, 0) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EPERM)
    );
    let mut buf = [0u8; 64];
    let missing = c"user.other";
    // SAFETY: as above, with a buffer we own.
    let rc = unsafe {
        libc::getxattr(
            path.as_ptr(),
            missing.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENODATA)
    );
    // Namespaces tierfs keeps nothing in are not supported, so that tools stop asking: GNU
    // `ls -l` then asks the first file only, not every one, for its label and ACL.
    for unsupported in [
        c"security.selinux",
        c"system.posix_acl_access",
        c"trusted.x",
    ] {
        // SAFETY: as above, with a buffer we own.
        let rc = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                unsupported.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(rc, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EOPNOTSUPP),
            "{unsupported:?}"
        );
    }
    let mut small = [0u8; 2];
    // SAFETY: as above; the buffer is deliberately too small.
    let rc = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            small.as_mut_ptr().cast(),
            small.len(),
        )
    };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ERANGE)
    );
}

#[test]
fn a_read_buffer_larger_than_the_cache_is_refused_at_start() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let conf = root.path().join("broker.conf");
    fs::write(&conf, "managedLedgerOffloadReadBufferSizeInBytes=4194304\n").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("mount")
        .arg(&mnt)
        .arg("--data-dir")
        .arg(root.path().join("data"))
        .args(["--config", conf.to_str().unwrap(), "--cache-size", "1M"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("larger than the memory cache (--cache-size 1048576 bytes)"),
        "{stderr}"
    );
    assert!(!is_mounted(&mnt));
}
