//! `tierfs pulsar messages|verify PATH...`: read ledger files of a `--pulsar` mount entry by
//! entry (each entry's length comes from the `.<ledgerId>.entries` file beside it) and decode
//! or check them. A directory stands for every ledger file under it, in path order.
//!
//! Neither command stops at a bad entry: it names `ledger:entry` on stderr, goes on, and the
//! exit status says that something was bad.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::bucket::{LENGTH_RECORD, entry_lengths_name, parse_ledger_file_name};
use super::entry::{self, Checksum};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0}: not a ledger file of a --pulsar mount (<ledgerId:020>.ledger) nor a directory holding some"
    )]
    NotALedger(PathBuf),
    #[error("{path}: {reason}")]
    Inconsistent { path: PathBuf, reason: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Refused(String),
    #[error("the bucket: {0}")]
    Store(#[from] crate::store::StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The ledger files `paths` name: files as given, directories walked (sorted, recursively).
pub fn ledger_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, u64)>, CliError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(io(path))?;
        if meta.is_dir() {
            let before = out.len();
            walk(path, &mut out)?;
            if out.len() == before {
                return Err(CliError::NotALedger(path.clone()));
            }
        } else {
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_ledger_file_name)
                .ok_or_else(|| CliError::NotALedger(path.clone()))?;
            out.push((path.clone(), id));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<(), CliError> {
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    children.sort();
    for child in children {
        let name = child.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(id) = parse_ledger_file_name(name) {
            out.push((child, id));
        } else if child.is_dir() {
            walk(&child, out)?;
        }
    }
    Ok(())
}

/// Each entry's length, from the entry-lengths file beside the ledger file; `None` where the
/// mount cannot tell (its block is damaged: the read fails with EIO).
fn entry_lengths(ledger: &Path, id: u64) -> Result<Vec<Option<u64>>, CliError> {
    let path = ledger.with_file_name(entry_lengths_name(id));
    let decode = |c: &[u8]| u64::from_be_bytes(c.try_into().expect("8 bytes"));
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() as u64 % LENGTH_RECORD == 0 => {
            return Ok(bytes
                .chunks_exact(LENGTH_RECORD as usize)
                .map(|c| Some(decode(c)))
                .collect());
        }
        Ok(bytes) => {
            return Err(CliError::Inconsistent {
                path,
                reason: format!("{} bytes is not a whole number of entries", bytes.len()),
            });
        }
        Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
        Err(e) => return Err(io(&path)(e)),
    }
    // Some blocks cannot be read: entry by entry, to tell which.
    use std::os::unix::fs::FileExt;
    let file = File::open(&path).map_err(io(&path))?;
    let count = file.metadata().map_err(io(&path))?.len() / LENGTH_RECORD;
    Ok((0..count)
        .map(|i| {
            let mut record = [0u8; LENGTH_RECORD as usize];
            file.read_exact_at(&mut record, i * LENGTH_RECORD)
                .ok()
                .map(|()| decode(&record))
        })
        .collect())
}

/// A ledger file read entry by entry.
struct Entries {
    path: PathBuf,
    file: BufReader<File>,
    lengths: std::vec::IntoIter<Option<u64>>,
    next_id: u64,
    /// Where the next entry starts; `None` once an entry of unknown length was passed.
    offset: Option<u64>,
    /// After a failed read the stream position is unknown: reposition before the next one.
    lost: bool,
}

impl Entries {
    fn open(path: &Path, id: u64) -> Result<(Self, u64), CliError> {
        let lengths = entry_lengths(path, id)?;
        let file = File::open(path).map_err(io(path))?;
        let size = file.metadata().map_err(io(path))?.len();
        if lengths.iter().all(Option::is_some) {
            let total: u64 = lengths.iter().flatten().sum();
            if total != size {
                return Err(CliError::Inconsistent {
                    path: path.to_path_buf(),
                    reason: format!("its entries add up to {total} bytes; the file has {size}"),
                });
            }
        }
        let count = lengths.len() as u64;
        Ok((
            Self {
                path: path.to_path_buf(),
                file: BufReader::with_capacity(8 << 20, file),
                lengths: lengths.into_iter(),
                next_id: 0,
                offset: Some(0),
                lost: false,
            },
            count,
        ))
    }

    /// The next entry: its id and bytes, or why they cannot be had.
    fn next_entry(&mut self) -> Option<(u64, Result<Vec<u8>, String>)> {
        let len = self.lengths.next()?;
        let id = self.next_id;
        self.next_id += 1;
        let (Some(len), Some(at)) = (len, self.offset) else {
            self.offset = None;
            self.lost = true;
            return Some((
                id,
                Err("its block cannot be read, so neither can its length or place (see the mount's log)".into()),
            ));
        };
        self.offset = Some(at + len);
        let mut bytes = vec![0; len as usize];
        let result = (|| {
            if self.lost {
                use std::io::Seek;
                self.file.seek(std::io::SeekFrom::Start(at))?;
                self.lost = false;
            }
            self.file.read_exact(&mut bytes)
        })();
        match result {
            Ok(()) => Some((id, Ok(bytes))),
            Err(e) => {
                self.lost = true;
                Some((id, Err(e.to_string())))
            }
        }
    }
}

/// An extended attribute of `path`, if it has one (`user.pulsar.error`: why the mount refused
/// blocks of a ledger).
fn xattr(path: &Path, name: &str) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: both strings are NUL-terminated; getxattr writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// What a run found wrong.
#[derive(Debug, Default)]
pub struct Outcome {
    pub bad: Vec<String>,
}

/// `tierfs pulsar messages`: one JSON line per message to `out`; bad entries to stderr.
pub fn messages(paths: &[PathBuf], out: &mut dyn Write) -> Result<Outcome, CliError> {
    let mut outcome = Outcome::default();
    for (path, ledger) in ledger_files(paths)? {
        let mut entries = match Entries::open(&path, ledger) {
            Ok((entries, _)) => entries,
            Err(e) => {
                eprintln!("{ledger}: {e}");
                outcome.bad.push(ledger.to_string());
                continue;
            }
        };
        while let Some((id, bytes)) = entries.next_entry() {
            let decoded = bytes.and_then(|b| entry::messages(&b).map_err(|e| e.to_string()));
            match decoded {
                Ok(messages) => {
                    for message in &messages {
                        writeln!(out, "{}", entry::json_line(ledger, id, message))
                            .map_err(io(Path::new("stdout")))?;
                    }
                }
                Err(e) => {
                    eprintln!("{ledger}:{id}: {e} ({})", entries.path.display());
                    outcome.bad.push(format!("{ledger}:{id}"));
                }
            }
        }
    }
    out.flush().map_err(io(Path::new("stdout")))?;
    Ok(outcome)
}

/// `tierfs pulsar verify`: every entry's CRC32C where it carries one; every block's
/// structure (the mount refuses a malformed block's bytes with EIO). A summary per ledger.
pub fn verify(paths: &[PathBuf], out: &mut dyn Write) -> Result<Outcome, CliError> {
    let mut outcome = Outcome::default();
    for (path, ledger) in ledger_files(paths)? {
        let (mut entries, count) = match Entries::open(&path, ledger) {
            Ok(opened) => opened,
            Err(e) => {
                eprintln!("{ledger}: {e}");
                writeln!(out, "ledger {ledger}: cannot be checked: {e}")
                    .map_err(io(Path::new("stdout")))?;
                outcome.bad.push(ledger.to_string());
                continue;
            }
        };
        let (mut checked, mut bytes, mut bad) = (0u64, 0u64, Vec::new());
        while let Some((id, read)) = entries.next_entry() {
            let problem = match read {
                Err(e) => Some(format!("cannot be read: {e}")),
                Ok(entry) => {
                    bytes += entry.len() as u64;
                    match entry::checksum(&entry) {
                        Ok(Checksum::Good) => {
                            checked += 1;
                            None
                        }
                        Ok(Checksum::Absent) => None,
                        Ok(Checksum::Bad { stored, computed }) => Some(format!(
                            "CRC32C mismatch: the entry says {stored:#010x}, its bytes give {computed:#010x}"
                        )),
                        Err(e) => Some(e.to_string()),
                    }
                }
            };
            if let Some(problem) = problem {
                eprintln!("{ledger}:{id}: {problem}");
                bad.push(format!("{ledger}:{id}"));
            }
        }
        if !bad.is_empty()
            && let Some(why) = xattr(&path, "user.pulsar.error")
        {
            eprintln!("{ledger}: the mount refused blocks: {why}");
        }
        let verdict = if bad.is_empty() {
            "OK".to_string()
        } else {
            format!("{} BAD: {}", bad.len(), bad.join(" "))
        };
        writeln!(
            out,
            "ledger {ledger}: {count} entries, {bytes} bytes, {checked} with a CRC32C checked: {verdict} ({})",
            path.display()
        )
        .map_err(io(Path::new("stdout")))?;
        outcome.bad.extend(bad);
    }
    out.flush().map_err(io(Path::new("stdout")))?;
    Ok(outcome)
}

/// `tierfs pulsar scan`: the report, as text or JSON.
pub fn scan(
    config_file: &Path,
    json: bool,
    abort_older_than: Option<std::time::Duration>,
) -> Result<String, CliError> {
    let (config, _) = crate::config::Config::load(config_file)?;
    if !config.offload.driver.is_object_store() {
        return Err(CliError::Refused(format!(
            "the {} driver writes Hadoop MapFiles, which tierfs does not read; scan reads buckets of the aws-s3, S3 and aliyun-oss drivers",
            config.offload.driver
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io(Path::new("the runtime")))?;
    let prefix = match config.offload.prefix.as_str() {
        "" => String::new(),
        p => format!("{p}/"),
    };
    let report = runtime.block_on(async {
        let store =
            crate::store::connect(&config.offload, Path::new("/nonexistent-data-dir")).await?;
        super::scan::scan(&store, &prefix, abort_older_than).await
    })?;
    Ok(if json {
        serde_json::to_string_pretty(&report).expect("a report serializes") + "\n"
    } else {
        report.text()
    })
}
