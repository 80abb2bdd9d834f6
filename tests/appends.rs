//! Appends through a real mount: read-back, `cat`, `stat`, xattrs, concurrency.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::sync::Arc;

use common::*;

#[test]
fn entries_read_back_byte_for_byte_with_checksums() {
    let m = TestMount::start(NO_ROLLOVER);
    let topic = m.topic("t/ns/readback");
    let mut expected = Vec::new();
    let mut file = OpenOptions::new()
        .append(true)
        .open(topic.join("active"))
        .unwrap();
    for i in 0..200u64 {
        let entry = pattern(i, 1 + (i as usize * 977) % 70_000);
        file.write_all(&entry).unwrap();
        expected.extend_from_slice(&entry);
    }
    drop(file);
    let got = fs::read(topic.join("active")).unwrap();
    assert_eq!(got.len(), expected.len());
    assert_eq!(crc32c::crc32c(&got), crc32c::crc32c(&expected));
    assert!(got == expected, "bytes differ");
    let entries = xattr(&topic.join("active"), "user.tierfs.entries");
    assert_eq!(entries, "200");
    assert_eq!(
        xattr(&topic.join("active"), "user.tierfs.crc32c"),
        format!("{:08x}", crc32c::crc32c(&expected))
    );
}

#[test]
fn shell_append_cat_and_stat() {
    let m = TestMount::start(
        "managedLedgerMaxEntriesPerLedger=2\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n",
    );
    let topic = m.topic("tenant-1/ns.a/topic=x");
    let script = format!(
        "cd '{}' && for i in 1 2 3 4 5; do echo \"hello $i\" >> active; done && cat ./*",
        topic.display()
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "hello 1\nhello 2\nhello 3\nhello 4\nhello 5\n"
    );
    assert_eq!(
        listing(&topic),
        vec![
            "00000000000000000001.seg",
            "00000000000000000002.seg",
            "active"
        ]
    );
    let sealed = fs::metadata(topic.join("00000000000000000001.seg")).unwrap();
    assert_eq!(sealed.len(), 16);
    assert_eq!(sealed.permissions().mode() & 0o777, 0o444);
    assert_eq!(sealed.nlink(), 1);
    assert!(sealed.is_file());
    let active = fs::metadata(topic.join("active")).unwrap();
    assert_eq!(active.len(), 8);
    assert_eq!(active.permissions().mode() & 0o777, 0o644);
    assert_eq!(active.uid(), unsafe { libc::geteuid() });
    let age = std::time::SystemTime::now()
        .duration_since(active.modified().unwrap())
        .unwrap_or_default();
    assert!(age.as_secs() < 60, "active mtime is {age:?} old");
    let dir = fs::metadata(&topic).unwrap();
    assert!(dir.is_dir());
    assert_eq!(dir.permissions().mode() & 0o777, 0o755);

    let seg = topic.join("00000000000000000001.seg");
    assert_eq!(xattr(&seg, "user.tierfs.state"), "sealed");
    assert_eq!(xattr(&seg, "user.tierfs.entries"), "2");
    assert_eq!(xattr(&seg, "user.tierfs.local"), "yes");
    assert_eq!(xattr(&topic.join("active"), "user.tierfs.state"), "active");
    let dump = Command::new("getfattr")
        .arg("-d")
        .arg(&seg)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("user.tierfs.state=\"sealed\""), "{dump}");
    assert!(dump.contains("user.tierfs.crc32c="), "{dump}");
}

#[test]
fn one_handle_keeps_appending_across_rollovers() {
    let m = TestMount::start(
        "managedLedgerMaxEntriesPerLedger=10\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n",
    );
    let topic = m.topic("t/ns/longlived");
    let mut expected = Vec::new();
    // An O_APPEND handle, then a plain O_WRONLY one that seeks to the end first.
    let mut append = OpenOptions::new()
        .append(true)
        .open(topic.join("active"))
        .unwrap();
    for i in 0..25u64 {
        let entry = format!("a{i:04}\n");
        append.write_all(entry.as_bytes()).unwrap();
        expected.extend_from_slice(entry.as_bytes());
    }
    let mut plain = OpenOptions::new()
        .write(true)
        .open(topic.join("active"))
        .unwrap();
    std::io::Seek::seek(&mut plain, std::io::SeekFrom::End(0)).unwrap();
    for i in 0..25u64 {
        let entry = format!("p{i:04}\n");
        plain.write_all(entry.as_bytes()).unwrap();
        expected.extend_from_slice(entry.as_bytes());
    }
    assert_eq!(cat_all(&topic), expected);
    assert_eq!(listing(&topic).len(), 6, "{:?}", listing(&topic));
}

#[test]
fn concurrent_writers_never_tear_or_interleave_entries() {
    const WRITERS: usize = 4;
    const ENTRIES: usize = 400;
    const LEN: usize = 1000;
    let m = TestMount::start(
        "managedLedgerMaxEntriesPerLedger=300\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n",
    );
    let topic = Arc::new(m.topic("t/ns/shared"));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let topic = Arc::clone(&topic);
            std::thread::spawn(move || {
                let mut f = OpenOptions::new()
                    .append(true)
                    .open(topic.join("active"))
                    .unwrap();
                for seq in 0..ENTRIES {
                    let head = format!("w{w}:{seq:06}:");
                    let mut entry = head.into_bytes();
                    entry.resize(LEN - 1, b'a' + w as u8);
                    entry.push(b'\n');
                    f.write_all(&entry).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = cat_all(&topic);
    assert_eq!(all.len(), WRITERS * ENTRIES * LEN);
    let mut next = [0usize; WRITERS];
    for entry in all.chunks(LEN) {
        let text = std::str::from_utf8(entry).unwrap();
        let w: usize = text[1..2].parse().unwrap();
        let seq: usize = text[3..9].parse().unwrap();
        assert_eq!(seq, next[w], "writer {w} out of order");
        next[w] += 1;
        let fill = b'a' + w as u8;
        assert!(
            entry[10..LEN - 1].iter().all(|b| *b == fill),
            "torn entry {text:?}"
        );
    }
    assert_eq!(next, [ENTRIES; WRITERS]);
    let out = m.admin_ok(&["topics", "stats-internal", "t/ns/shared"]);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["numberOfEntries"], (WRITERS * ENTRIES) as u64);
}

#[test]
fn many_topics_at_once() {
    let m = TestMount::start(
        "managedLedgerMaxEntriesPerLedger=7\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n",
    );
    let mnt = m.mnt.clone();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let mnt = mnt.clone();
            std::thread::spawn(move || {
                for k in 0..6 {
                    let dir = mnt.join(format!("tenant{}/ns{}/topic-{t}-{k}", t % 2, k % 3));
                    fs::create_dir_all(&dir).unwrap();
                    let mut f = OpenOptions::new()
                        .append(true)
                        .open(dir.join("active"))
                        .unwrap();
                    for i in 0..20 {
                        f.write_all(format!("{t}/{k}/{i}\n").as_bytes()).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..8 {
        for k in 0..6 {
            let dir = mnt.join(format!("tenant{}/ns{}/topic-{t}-{k}", t % 2, k % 3));
            let expected: String = (0..20).map(|i| format!("{t}/{k}/{i}\n")).collect();
            assert_eq!(String::from_utf8(cat_all(&dir)).unwrap(), expected);
            // 20 entries, 7 per segment: two sealed segments and 6 entries in active.
            assert_eq!(listing(&dir).len(), 3);
        }
    }
    let listed = m.admin_ok(&["topics", "list", "tenant0/ns1"]);
    assert_eq!(listed.lines().count(), 8, "{listed}");
    assert!(
        listed
            .lines()
            .all(|l| l.starts_with("persistent://tenant0/ns1/topic-"))
    );
}

#[test]
fn a_write_of_up_to_one_megabyte_is_one_entry() {
    let m = TestMount::start(NO_ROLLOVER);
    let topic = m.topic("t/ns/big");
    // The kernel carries at most 256 pages per request: a page-aligned 1 MiB buffer fits,
    // an unaligned one fits up to 1 MiB - 4 KiB.
    let layout = std::alloc::Layout::from_size_align(1 << 20, 4096).unwrap();
    // SAFETY: the layout is non-zero; the memory is initialised below and freed at the end.
    let aligned = unsafe { std::slice::from_raw_parts_mut(std::alloc::alloc(layout), 1 << 20) };
    aligned.copy_from_slice(&pattern(7, 1 << 20));
    let unaligned = pattern(8, (1 << 20) - 4096);
    let mut f = OpenOptions::new()
        .append(true)
        .open(topic.join("active"))
        .unwrap();
    assert_eq!(f.write(aligned).unwrap(), 1 << 20);
    assert_eq!(f.write(&unaligned[..]).unwrap(), unaligned.len());
    f.sync_all().unwrap();
    assert_eq!(xattr(&topic.join("active"), "user.tierfs.entries"), "2");
    let mut expected = aligned.to_vec();
    expected.extend_from_slice(&unaligned);
    assert!(fs::read(topic.join("active")).unwrap() == expected);
    // SAFETY: allocated above with this layout; not used after this.
    unsafe { std::alloc::dealloc(aligned.as_mut_ptr(), layout) };
}

#[test]
fn a_write_over_one_megabyte_is_split_into_whole_entries() {
    let m = TestMount::start(NO_ROLLOVER);
    let topic = m.topic("t/ns/huge");
    let active = topic.join("active");
    let big = pattern(9, 3 * (1 << 20) + 1234);
    let mut f = OpenOptions::new().append(true).open(&active).unwrap();
    // One write(2): the kernel hands it over in requests of at most 1 MiB, each an entry.
    let mut written = 0;
    while written < big.len() {
        written += f.write(&big[written..]).unwrap();
    }
    f.sync_all().unwrap();
    let entries: u64 = xattr(&active, "user.tierfs.entries").parse().unwrap();
    assert!(
        (4..=5).contains(&entries),
        "3 MiB + 1234 bytes became {entries} entries"
    );
    assert!(
        fs::read(&active).unwrap() == big,
        "the pieces are not the bytes written, whole and in order"
    );
}
