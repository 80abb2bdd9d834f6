//! Segment files on local disk and the active segment's append path.
//!
//! A segment `N` is two files in its topic's directory: `<N:020>.seg`, the entries' bytes
//! verbatim and back to back (so `cat` shows exactly what was written), and `<N:020>.idx`, its
//! entry index (see `index`). [`ActiveSegment`] appends one entry per call: the bytes first,
//! then the index record, both with positioned writes, so a `kill -9` at any instant leaves
//! either the whole entry or a torn tail that [`ActiveSegment::recover`] cuts off. Sealing is
//! the manifest's business; this module only makes the files durable and read-only.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Read;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::index::{self, HEADER_LEN, IndexRecord, RECORD_LEN};
use super::{LogError, io_error, sync_dir};

/// Name of segment `id`'s data file: 20 zero-padded digits, so lexical order is log order.
pub fn data_file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// Name of segment `id`'s entry index file.
pub fn index_file_name(id: u64) -> String {
    format!("{id:020}.idx")
}

/// Parses a data file name back to its segment id.
pub fn parse_data_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// What recovery had to cut from a segment that was not closed cleanly.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes at the end of the data file that no complete index record covered.
    pub dropped_bytes: u64,
    /// Index records (or record fragments) that were torn or pointed past the data.
    pub dropped_records: u64,
}

impl RecoveryReport {
    pub fn is_clean(&self) -> bool {
        *self == RecoveryReport::default()
    }
}

/// The segment being written: open files plus the counters the rollover rule needs.
#[derive(Debug)]
pub struct ActiveSegment {
    id: u64,
    data_path: PathBuf,
    index_path: PathBuf,
    data: Arc<File>,
    index: File,
    size: u64,
    entries: u64,
    crc: u32,
    created: SystemTime,
    modified: SystemTime,
}

impl ActiveSegment {
    /// Creates empty files for segment `id` (replacing leftovers of an earlier crash, which no
    /// manifest references) and makes them durable.
    pub fn create(dir: &Path, id: u64, now: SystemTime) -> Result<Self, LogError> {
        let data_path = dir.join(data_file_name(id));
        let index_path = dir.join(index_file_name(id));
        let data = open_rw(&data_path, true)?;
        let index = open_rw(&index_path, true)?;
        index
            .write_all_at(&index::header(), 0)
            .map_err(io_error(&index_path, "write index header"))?;
        index.sync_all().map_err(io_error(&index_path, "fsync"))?;
        data.sync_all().map_err(io_error(&data_path, "fsync"))?;
        sync_dir(dir)?;
        Ok(Self {
            id,
            data_path,
            index_path,
            data: Arc::new(data),
            index,
            size: 0,
            entries: 0,
            crc: 0,
            created: now,
            modified: now,
        })
    }

    /// Opens segment `id` after a restart or crash. Every entry's bytes are checked against the
    /// CRC32C of its index record (an active segment is bounded by the rollover size). Entries
    /// that fail from some point to the end are a torn tail (writes a power loss cut short) and
    /// are cut; an entry that fails with an intact one after it is not, and the segment is
    /// refused, naming it: tierfs never drops entries from the middle of a log.
    pub fn recover(
        dir: &Path,
        id: u64,
        created: SystemTime,
    ) -> Result<(Self, RecoveryReport), LogError> {
        let data_path = dir.join(data_file_name(id));
        let index_path = dir.join(index_file_name(id));
        make_writable(&data_path)?;
        let data = open_rw(&data_path, false)?;
        let data_len = data.metadata().map_err(io_error(&data_path, "stat"))?.len();
        let mut index_bytes = Vec::new();
        let index = match open_rw(&index_path, false) {
            Ok(mut file) => {
                file.read_to_end(&mut index_bytes)
                    .map_err(io_error(&index_path, "read"))?;
                file
            }
            Err(_) if data_len == 0 => open_rw(&index_path, true)?,
            Err(e) => {
                return Err(LogError::Corrupt {
                    path: index_path,
                    reason: format!(
                        "{e}; the active segment holds {data_len} bytes whose entry boundaries \
                         are unknown, so tierfs will not guess. Keep a copy of {} and empty it \
                         (truncate -s 0) to start the topic's tail afresh",
                        data_path.display()
                    ),
                });
            }
        };
        let mut report = RecoveryReport::default();
        if let Err(reason) = index::check_header(&index_bytes) {
            if data_len > 0 {
                return Err(LogError::Corrupt {
                    path: index_path,
                    reason: format!(
                        "{reason}; the active segment holds {data_len} bytes whose entry \
                         boundaries are unknown, so tierfs will not guess. Keep a copy of {} and \
                         empty it (truncate -s 0) to start the topic's tail afresh",
                        data_path.display()
                    ),
                });
            }
            // A crash between creating the file and writing its header: nothing was written.
            index
                .set_len(0)
                .and_then(|_| index.write_all_at(&index::header(), 0))
                .map_err(io_error(&index_path, "rewrite index header"))?;
            index_bytes = index::header().to_vec();
        }
        let body = &index_bytes[HEADER_LEN as usize..];
        let mut records =
            index::decode_up_to_torn_tail(body).map_err(|reason| LogError::Corrupt {
                path: index_path.clone(),
                reason: format!(
                    "{reason}. tierfs will not guess: keep a copy of {} and {}, and restore the \
                     damaged record from a backup",
                    index_path.display(),
                    data_path.display()
                ),
            })?;
        let stored_records = body.len().div_ceil(RECORD_LEN as usize) as u64;
        records.retain(|r| r.end <= data_len);
        if let Some(torn) = first_of_torn_tail(&data, &data_path, &records)? {
            records.truncate(torn);
        }
        let size = records.last().map_or(0, |r| r.end);
        report.dropped_records = stored_records - records.len() as u64;
        report.dropped_bytes = data_len - size;
        if !report.is_clean() {
            data.set_len(size)
                .map_err(io_error(&data_path, "truncate torn tail"))?;
            index
                .set_len(HEADER_LEN + records.len() as u64 * RECORD_LEN)
                .map_err(io_error(&index_path, "truncate torn records"))?;
            data.sync_all().map_err(io_error(&data_path, "fsync"))?;
            index.sync_all().map_err(io_error(&index_path, "fsync"))?;
        }
        let modified = data
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(created);
        Ok((
            Self {
                id,
                data_path,
                index_path,
                data: Arc::new(data),
                index,
                size,
                entries: records.len() as u64,
                crc: index::segment_crc(&records),
                created,
                modified,
            },
            report,
        ))
    }

    /// Appends one entry; returns its offset in the segment. On failure nothing of the entry
    /// remains in either file.
    pub fn append(&mut self, bytes: &[u8], now: SystemTime) -> Result<u64, LogError> {
        debug_assert!(!bytes.is_empty(), "entries are never empty");
        let offset = self.size;
        if let Err(e) = self.data.write_all_at(bytes, offset) {
            let _ = self.data.set_len(offset);
            return Err(io_error(&self.data_path, "append entry")(e));
        }
        let record = IndexRecord {
            end: offset + bytes.len() as u64,
            crc: crc32c::crc32c(bytes),
        };
        let record_at = HEADER_LEN + self.entries * RECORD_LEN;
        if let Err(e) = self.index.write_all_at(&record.encode(), record_at) {
            let _ = self.index.set_len(record_at);
            let _ = self.data.set_len(offset);
            return Err(io_error(&self.index_path, "append index record")(e));
        }
        self.size = record.end;
        self.entries += 1;
        // Extending the running CRC over the entry's bytes costs a fraction of a microsecond;
        // combining it with the entry's CRC (crc32c_combine) cost more than the whole write.
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.modified = now;
        Ok(offset)
    }

    /// Makes every appended entry durable.
    pub fn sync(&self) -> Result<(), LogError> {
        self.data
            .sync_data()
            .map_err(io_error(&self.data_path, "fsync"))?;
        self.index
            .sync_data()
            .map_err(io_error(&self.index_path, "fsync"))
    }

    /// Makes the files durable and read-only, ready to be recorded as sealed.
    pub fn seal(&self) -> Result<(), LogError> {
        self.sync()?;
        std::fs::set_permissions(&self.data_path, Permissions::from_mode(0o444))
            .map_err(io_error(&self.data_path, "make read-only"))
    }

    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn entries(&self) -> u64 {
        self.entries
    }
    pub fn crc(&self) -> u32 {
        self.crc
    }
    pub fn created(&self) -> SystemTime {
        self.created
    }
    pub fn modified(&self) -> SystemTime {
        self.modified
    }
    /// The data file, for reads that need not hold the topic's lock.
    pub fn data_file(&self) -> Arc<File> {
        Arc::clone(&self.data)
    }
}

/// Reads the entry index of a sealed (closed) segment, which must describe every one of its
/// `entries` and end at its `size`.
pub fn read_index(
    dir: &Path,
    id: u64,
    entries: u64,
    size: u64,
) -> Result<Vec<IndexRecord>, LogError> {
    let path = dir.join(index_file_name(id));
    let bytes = std::fs::read(&path).map_err(io_error(&path, "read"))?;
    let corrupt = |reason: String| LogError::Corrupt {
        path: path.clone(),
        reason: format!("sealed segment {id}: {reason}"),
    };
    index::check_header(&bytes).map_err(corrupt)?;
    let records =
        index::decode_complete(&bytes[HEADER_LEN as usize..], entries).map_err(corrupt)?;
    let end = records.last().map_or(0, |r| r.end);
    if end != size {
        return Err(corrupt(format!(
            "the index ends at byte {end}, the segment has {size} bytes"
        )));
    }
    Ok(records)
}

/// A crash while sealing can leave the still-active data file read-only (sealing makes it so
/// before the manifest names the next segment): give its owner write permission back, which
/// needs no privilege, rather than rely on root to open a read-only file for writing.
fn make_writable(path: &Path) -> Result<(), LogError> {
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path, "stat")(e)),
    };
    if mode & 0o200 == 0 {
        tracing::warn!(path = %path.display(), "the active segment was left read-only by an interrupted seal; making it writable again");
        std::fs::set_permissions(path, Permissions::from_mode(0o644))
            .map_err(io_error(path, "make writable"))?;
    }
    Ok(())
}

/// Checks every entry of `records` against the bytes of `data`: `Some(k)` when entries `k..`
/// all fail (a torn tail to cut), `None` when all match; an error naming the first failing
/// entry when an intact one follows it.
fn first_of_torn_tail(
    data: &File,
    path: &Path,
    records: &[IndexRecord],
) -> Result<Option<usize>, LogError> {
    let mut first_bad = None;
    let mut entry = Vec::new();
    let mut start = 0;
    for (k, record) in records.iter().enumerate() {
        entry.resize((record.end - start) as usize, 0);
        data.read_exact_at(&mut entry, start)
            .map_err(io_error(path, "read entry"))?;
        let intact = crc32c::crc32c(&entry) == record.crc;
        match (intact, first_bad) {
            (false, None) => first_bad = Some((k, start)),
            (true, Some((bad, at))) => {
                return Err(LogError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!(
                        "entry {bad} (bytes {at}..) does not match the CRC32C of its index \
                         record, yet entry {k} after it does: not a torn tail, and tierfs will \
                         not drop entries from the middle of the log. Keep a copy of the \
                         segment and its index, and restore entry {bad} from a backup"
                    ),
                });
            }
            _ => {}
        }
        start = record.end;
    }
    Ok(first_bad.map(|(k, _)| k))
}

fn open_rw(path: &Path, create: bool) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
        .map_err(io_error(path, "open"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn now() -> SystemTime {
        SystemTime::now()
    }

    #[test]
    fn file_names_sort_in_log_order() {
        assert_eq!(data_file_name(3), "00000000000000000003.seg");
        assert_eq!(parse_data_file_name("00000000000000000003.seg"), Some(3));
        assert_eq!(parse_data_file_name("3.seg"), None);
        assert_eq!(parse_data_file_name("00000000000000000003.idx"), None);
    }

    #[test]
    fn appends_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = ActiveSegment::create(dir.path(), 1, now()).unwrap();
        assert_eq!(seg.append(b"hello ", now()).unwrap(), 0);
        assert_eq!(seg.append(b"world", now()).unwrap(), 6);
        let crc = seg.crc();
        drop(seg);
        let (seg, report) = ActiveSegment::recover(dir.path(), 1, now()).unwrap();
        assert!(report.is_clean());
        assert_eq!((seg.entries(), seg.size(), seg.crc()), (2, 11, crc));
        assert_eq!(crc, crc32c::crc32c(b"hello world"));
    }

    #[test]
    fn recovery_cuts_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = ActiveSegment::create(dir.path(), 7, now()).unwrap();
        seg.append(b"acknowledged", now()).unwrap();
        drop(seg);
        // A write that was in flight: bytes without a record, and half a record.
        let mut data = OpenOptions::new()
            .append(true)
            .open(dir.path().join(data_file_name(7)))
            .unwrap();
        data.write_all(b"never acknowledged").unwrap();
        let mut idx = OpenOptions::new()
            .append(true)
            .open(dir.path().join(index_file_name(7)))
            .unwrap();
        idx.write_all(&[9; 7]).unwrap();
        let (seg, report) = ActiveSegment::recover(dir.path(), 7, now()).unwrap();
        assert_eq!(
            report,
            RecoveryReport {
                dropped_bytes: 18,
                dropped_records: 1
            }
        );
        assert_eq!((seg.entries(), seg.size()), (1, 12));
        let on_disk = std::fs::read(dir.path().join(data_file_name(7))).unwrap();
        assert_eq!(on_disk, b"acknowledged");
    }

    #[test]
    fn recovery_drops_records_whose_bytes_do_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = ActiveSegment::create(dir.path(), 1, now()).unwrap();
        seg.append(b"first", now()).unwrap();
        seg.append(b"second", now()).unwrap();
        drop(seg);
        let data = OpenOptions::new()
            .write(true)
            .open(dir.path().join(data_file_name(1)))
            .unwrap();
        data.write_all_at(b"X", 7).unwrap(); // as if the last write never reached the disk
        let (seg, report) = ActiveSegment::recover(dir.path(), 1, now()).unwrap();
        assert_eq!((seg.entries(), seg.size()), (1, 5));
        assert_eq!(report.dropped_records, 1);
        assert_eq!(report.dropped_bytes, 6);
    }

    #[test]
    fn a_damaged_record_before_intact_ones_is_refused_and_nothing_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = ActiveSegment::create(dir.path(), 1, now()).unwrap();
        for entry in [&b"first"[..], b"second", b"third"] {
            seg.append(entry, now()).unwrap();
        }
        drop(seg);
        let index_path = dir.path().join(index_file_name(1));
        let mut bytes = std::fs::read(&index_path).unwrap();
        bytes[(HEADER_LEN + 2) as usize] ^= 0x04; // one bit of the first record
        std::fs::write(&index_path, &bytes).unwrap();
        let err = ActiveSegment::recover(dir.path(), 1, now()).unwrap_err();
        assert!(
            err.to_string().contains("2 intact record(s) follow"),
            "{err}"
        );
        // Refused, not repaired: both files are as they were.
        assert_eq!(std::fs::read(&index_path).unwrap(), bytes);
        assert_eq!(
            std::fs::read(dir.path().join(data_file_name(1))).unwrap(),
            b"firstsecondthird"
        );
    }

    #[test]
    fn an_earlier_entry_with_stale_bytes_is_refused_naming_it_and_a_torn_run_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = ActiveSegment::create(dir.path(), 1, now()).unwrap();
        for entry in [&b"zero"[..], b"one", b"two", b"three", b"four"] {
            seg.append(entry, now()).unwrap();
        }
        drop(seg);
        let data_path = dir.path().join(data_file_name(1));
        let data = OpenOptions::new().write(true).open(&data_path).unwrap();
        // A power loss kept entry 1's record but not its bytes; entries after it are intact.
        data.write_all_at(b"\0", 4).unwrap();
        let err = ActiveSegment::recover(dir.path(), 1, now()).unwrap_err();
        assert!(err.to_string().contains("entry 1 (bytes 4..)"), "{err}");
        assert_eq!(
            std::fs::read(&data_path).unwrap(),
            b"zero\0netwothreefour",
            "refused, not repaired"
        );
        // Entries 1 to 4 all stale: a torn tail, cut.
        data.write_all_at(&[0u8; 12], 7).unwrap();
        let (seg, report) = ActiveSegment::recover(dir.path(), 1, now()).unwrap();
        assert_eq!((seg.entries(), seg.size()), (1, 4));
        assert_eq!(report.dropped_records, 4);
        assert_eq!(std::fs::read(&data_path).unwrap(), b"zero");
    }

    #[test]
    fn an_active_segment_left_read_only_by_an_interrupted_seal_is_writable_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = ActiveSegment::create(dir.path(), 3, now()).unwrap();
        seg.append(b"kept", now()).unwrap();
        seg.seal().unwrap(); // then a crash, before the manifest names segment 4
        drop(seg);
        let path = dir.path().join(data_file_name(3));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o444);
        let (mut seg, report) = ActiveSegment::recover(dir.path(), 3, now()).unwrap();
        assert!(report.is_clean());
        // As root the open would succeed anyway; the mode is what lets any other owner in.
        assert_eq!(mode(&path), 0o644);
        seg.append(b" and more", now()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"kept and more");
    }

    #[test]
    fn missing_index_with_data_is_refused_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = ActiveSegment::create(dir.path(), 1, now()).unwrap();
        seg.append(b"data", now()).unwrap();
        drop(seg);
        std::fs::write(dir.path().join(index_file_name(1)), b"garbage").unwrap();
        let err = ActiveSegment::recover(dir.path(), 1, now()).unwrap_err();
        assert!(
            err.to_string().contains("entry boundaries are unknown"),
            "{err}"
        );
    }
}
