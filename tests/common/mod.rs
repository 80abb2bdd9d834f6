//! Test harness: real `tierfs mount` processes on temporary mountpoints.
//!
//! Each [`TestMount`] owns a temporary directory holding the mountpoint, the data directory and
//! the configuration file, runs the real binary, and waits until the kernel shows the mount.
//! Dropping it stops the daemon (SIGTERM, then SIGKILL and a lazy unmount if it hangs).

#![allow(dead_code)]

pub mod proxy;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tierfs");

pub struct TestMount {
    pub root: tempfile::TempDir,
    pub mnt: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
    env: Vec<(String, String)>,
    flags: Vec<String>,
}

/// Rollover settings that never seal on their own.
pub const NO_ROLLOVER: &str =
    "managedLedgerMaxEntriesPerLedger=1000000\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n";

impl TestMount {
    /// Mounts with `config` as the properties file.
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    /// Mounts with extra environment variables for the daemon.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(config, env, &[])
    }

    /// Mounts with extra environment variables and extra `tierfs mount` flags.
    pub fn start_with(config: &str, env: &[(&str, &str)], flags: &[&str]) -> Self {
        Self::start_prepared(config, env, flags, |_| {})
    }

    /// As [`TestMount::start_with`], running `prepare` on the data directory (created, empty)
    /// before the daemon starts.
    pub fn start_prepared(
        config: &str,
        env: &[(&str, &str)],
        flags: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let mnt = root.path().join("mnt");
        let data = root.path().join("data");
        fs::create_dir_all(&mnt).unwrap();
        let config_path = root.path().join("broker.conf");
        fs::write(&config_path, config).unwrap();
        fs::create_dir_all(&data).unwrap();
        prepare(&data);
        let mut mount = TestMount {
            log: root.path().join("tierfs-0.log"),
            root,
            mnt,
            data,
            config: config_path,
            child: None,
            starts: 0,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        mount.spawn();
        mount
    }

    fn spawn(&mut self) {
        self.log = self.root.path().join(format!("tierfs-{}.log", self.starts));
        self.starts += 1;
        let log = fs::File::create(&self.log).unwrap();
        let child = Command::new(BIN)
            .arg("mount")
            .arg(&self.mnt)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .args(if self.flags.iter().any(|f| f == "--admin-listen") {
                vec![]
            } else {
                vec!["--admin-listen", "127.0.0.1:0"]
            })
            .args(["--log", "tierfs=debug,info"])
            .args(&self.flags)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tierfs");
        self.child = Some(child);
        self.wait_until_mounted();
    }

    fn wait_until_mounted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if is_mounted(&self.mnt) && self.data.join("admin.addr").exists() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "tierfs exited with {status} before mounting:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!("tierfs did not mount within 30 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the daemons of this mount logged so far.
    pub fn log_text(&self) -> String {
        let mut all = String::new();
        for i in 0..self.starts.max(1) {
            let mut text = String::new();
            if let Ok(mut f) = fs::File::open(self.root.path().join(format!("tierfs-{i}.log"))) {
                let _ = f.read_to_string(&mut text);
            }
            all.push_str(&text);
        }
        all
    }

    pub fn topic(&self, path: &str) -> PathBuf {
        let dir = self.mnt.join(path);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", dir.display()));
        dir
    }

    /// Stops the daemon with SIGTERM and returns its exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(&child, libc::SIGTERM);
        let status = wait_with_timeout(&mut child, Duration::from_secs(30));
        match status {
            Some(code) => Some(code),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                lazy_unmount(&self.mnt);
                panic!(
                    "tierfs did not stop within 30 s of SIGTERM:\n{}",
                    self.log_text()
                );
            }
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would, and clears the dead mount.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        lazy_unmount(&self.mnt);
        // The dead daemon's address would otherwise let the next start look ready before the
        // new daemon listens (and its port may by then belong to another test's daemon).
        let _ = fs::remove_file(self.data.join("admin.addr"));
    }

    /// Mounts the same data directory again.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the daemon first");
        self.spawn();
    }

    /// Runs `tierfs admin --data-dir <data> ARGS…`.
    pub fn admin(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("admin")
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .output()
            .expect("run tierfs admin")
    }

    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "tierfs admin {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGTERM);
            if wait_with_timeout(&mut child, Duration::from_secs(20)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_mounted(&self.mnt) {
            lazy_unmount(&self.mnt);
        }
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

pub fn is_mounted(path: &Path) -> bool {
    let target = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(target.as_str()))
}

pub fn lazy_unmount(path: &Path) {
    let _ = Command::new("fusermount3")
        .args(["-u", "-z", "-q"])
        .arg(path)
        .status();
    if is_mounted(path) {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

/// The errno of a failed std::fs call.
pub fn errno(result: std::io::Result<impl std::fmt::Debug>) -> i32 {
    match result {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("not an OS error: {e}")),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Appends `pattern(seed, len)` for each seed as one entry (one write(2)) through an O_APPEND
/// handle; returns the bytes appended.
pub fn append_patterns(path: &Path, seeds: std::ops::Range<u64>, len: usize) -> Vec<u8> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    let mut all = Vec::new();
    for seed in seeds {
        let entry = pattern(seed, len);
        f.write_all(&entry).unwrap();
        all.extend_from_slice(&entry);
    }
    all
}

/// The names in a topic directory, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every file in a topic directory concatenated in `ls` order, as `cat dir/*` prints it.
pub fn cat_all(dir: &Path) -> Vec<u8> {
    listing(dir)
        .iter()
        .flat_map(|name| fs::read(dir.join(name)).unwrap())
        .collect()
}

/// Seconds-long waits for something the daemon does on its own (timer rollover).
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// The value of an extended attribute, read with getxattr(2).
pub fn xattr(path: &std::path::Path, name: &str) -> String {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let c_name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: the buffer outlives the call and its length is passed.
    let n = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(
        n >= 0,
        "getxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    buf.truncate(n as usize);
    String::from_utf8(buf).unwrap()
}

/// The S3 server that scripts/test.sh starts (scripts/s3-server.sh), as its env file describes.
pub struct S3Env {
    pub endpoint: String,
    pub vhost_endpoint: String,
    pub bucket: String,
    pub oss_bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl S3Env {
    pub fn get() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: these tests need the S3 server; run scripts/test.sh, or \
                     scripts/s3-server.sh start DIR and source DIR/env"
                )
            })
        };
        Self {
            endpoint: var("TIERFS_TEST_S3_ENDPOINT"),
            vhost_endpoint: var("TIERFS_TEST_S3_VHOST_ENDPOINT"),
            bucket: var("TIERFS_TEST_S3_BUCKET"),
            oss_bucket: var("TIERFS_TEST_S3_OSS_BUCKET"),
            key_id: var("AWS_ACCESS_KEY_ID"),
            secret: var("AWS_SECRET_ACCESS_KEY"),
        }
    }

    /// Offload settings for the `S3` driver under a prefix of its own.
    pub fn config(&self, prefix: &str) -> String {
        s3_config(&self.bucket, &self.endpoint, prefix)
    }
}

/// Empties the kernel's page cache, so that reads reach the daemon (needs root, as the suite
/// does).
pub fn drop_page_cache() {
    fs::write("/proc/sys/vm/drop_caches", "3")
        .unwrap_or_else(|e| panic!("cannot drop the page cache (the tests run as root): {e}"));
}

/// A unique key prefix per test run, so that tests sharing the bucket never meet.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

/// A client of the same store, for looking into the bucket from tests.
pub struct StoreProbe {
    runtime: tokio::runtime::Runtime,
    store: std::sync::Arc<dyn tierfs::store::ObjectStore>,
}

impl StoreProbe {
    pub fn new(config_text: &str, data_dir: &Path) -> Self {
        let props = tierfs::config::Properties::parse(config_text);
        let (config, _) = tierfs::config::Config::from_properties(&props, "test").unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = runtime
            .block_on(tierfs::store::connect(&config.offload, data_dir))
            .unwrap();
        Self { runtime, store }
    }

    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let objects = self.runtime.block_on(self.store.list(prefix)).unwrap();
        objects.into_iter().map(|o| o.key).collect()
    }

    pub fn pending_uploads(&self, prefix: &str) -> Vec<String> {
        let uploads = self
            .runtime
            .block_on(self.store.list_multipart(prefix))
            .unwrap();
        uploads.into_iter().map(|u| u.key).collect()
    }

    /// Starts a multipart upload and leaves it, as a crashed client would.
    pub fn start_upload(&self, key: &str) -> String {
        self.runtime
            .block_on(self.store.create_multipart(key))
            .unwrap()
    }

    pub fn put(&self, key: &str, data: Vec<u8>) {
        self.runtime
            .block_on(self.store.put(key, bytes::Bytes::from(data)))
            .unwrap();
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        self.runtime.block_on(self.store.get(key)).unwrap().to_vec()
    }

    /// The bucket's catalog under `prefix`, read as any reader of the bucket would.
    pub fn catalog(&self, prefix: &str) -> std::sync::Arc<tierfs::catalog::CatalogState> {
        let catalog = tierfs::catalog::Catalog::new(self.store.clone(), prefix);
        self.runtime.block_on(catalog.load()).unwrap();
        catalog.state()
    }

    /// Commits `change` to the catalog under `prefix`, as another writer would.
    pub fn commit(&self, prefix: &str, change: tierfs::catalog::Change) {
        let catalog = tierfs::catalog::Catalog::new(self.store.clone(), prefix);
        self.runtime.block_on(catalog.commit(vec![change])).unwrap();
    }

    /// The data and index keys of every segment of `topic` the catalog under `prefix` records.
    pub fn referenced_keys(&self, prefix: &str, topic: &str) -> std::collections::BTreeSet<String> {
        let topic = tierfs::name::TopicName::parse(topic).unwrap();
        let layout = tierfs::offload::Layout::new(prefix);
        self.catalog(prefix)
            .segments(&topic)
            .flat_map(|s| {
                [
                    layout.data_key(&topic, s.id, &s.uuid),
                    layout.index_key(&topic, s.id, &s.uuid),
                ]
            })
            .collect()
    }

    /// Keys under `prefix` outside the catalog's own folder: the segments' objects.
    pub fn segment_keys(&self, prefix: &str) -> std::collections::BTreeSet<String> {
        let catalog_dir = format!("{prefix}/_tierfs/");
        self.keys(&format!("{prefix}/"))
            .into_iter()
            .filter(|k| !k.starts_with(&catalog_dir))
            .collect()
    }
}

/// Polls `tierfs admin topics offload-status` until its first line is `want`.
pub fn wait_offload_status(m: &TestMount, topic: &str, want: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = m.admin(&["topics", "offload-status", topic]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.lines().next() == Some(want) {
            return format!("{text}{}", String::from_utf8_lossy(&out.stderr));
        }
        if Instant::now() > deadline {
            panic!(
                "offload status of {topic} is {text:?} / {:?}, not {want:?}, after {timeout:?}\n{}",
                String::from_utf8_lossy(&out.stderr),
                m.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An S3 server of a test's own (for tests that stop the store), from scripts/s3-server.sh.
pub struct OwnS3 {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub bucket: String,
}

static SERVER_STARTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn s3_script(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-server.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "s3-server.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `s3-server.sh COMMAND DIR [ARGS…]` in a new directory (one start at a time); returns
/// the directory, the endpoint and the bucket its env file names.
fn start_server(command: &[&str]) -> (tempfile::TempDir, String, String) {
    let _one_at_a_time = SERVER_STARTS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![command[0], dir.path().to_str().unwrap()];
    args.extend_from_slice(&command[1..]);
    s3_script(&args);
    let endpoint = env_value(dir.path(), "TIERFS_TEST_S3_ENDPOINT");
    let bucket = env_value(dir.path(), "TIERFS_TEST_S3_BUCKET");
    (dir, endpoint, bucket)
}

/// Runs `s3-server.sh COMMAND DIR` and ignores how it went (for `Drop`).
fn stop_server(command: &str, dir: &Path) {
    let _ = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-server.sh"))
        .args([command, dir.to_str().unwrap()])
        .output();
}

impl OwnS3 {
    pub fn start() -> Self {
        let (dir, endpoint, bucket) = start_server(&["start"]);
        Self {
            dir,
            endpoint,
            bucket,
        }
    }

    pub fn config(&self, prefix: &str) -> String {
        s3_config(&self.bucket, &self.endpoint, prefix)
    }

    pub fn stop(&self) {
        s3_script(&["stop", self.dir.path().to_str().unwrap()]);
    }

    pub fn resume(&self) {
        s3_script(&["resume", self.dir.path().to_str().unwrap()]);
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        stop_server("stop", self.dir.path());
    }
}

/// A value the env file that scripts/s3-server.sh writes in `dir` exports.
fn env_value(dir: &Path, name: &str) -> String {
    let env = fs::read_to_string(dir.join("env")).unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .unwrap_or_else(|| panic!("{name} is not in {}/env", dir.display()))
        .to_string()
}

/// Offload settings for the `S3` driver at `endpoint` under a prefix of its own.
fn s3_config(bucket: &str, endpoint: &str, prefix: &str) -> String {
    format!(
        "managedLedgerOffloadDriver=S3\nmanagedLedgerOffloadBucket={bucket}\n\
         managedLedgerOffloadServiceEndpoint={endpoint}\nmanagedLedgerOffloadPrefix={prefix}\n"
    )
}

/// A Garage cluster of a test's own: three nodes (replication factor 3) on loopback behind
/// haproxy, from `scripts/s3-server.sh start-cluster`; stopped when dropped.
pub struct S3Cluster {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub bucket: String,
}

impl S3Cluster {
    pub fn start() -> Self {
        let (dir, endpoint, bucket) = start_server(&["start-cluster", "3"]);
        Self {
            dir,
            endpoint,
            bucket,
        }
    }

    pub fn config(&self, prefix: &str) -> String {
        s3_config(&self.bucket, &self.endpoint, prefix)
    }

    /// SIGKILLs node `i` (1-based).
    pub fn kill_node(&self, i: u32) {
        s3_script(&[
            "kill-node",
            self.dir.path().to_str().unwrap(),
            &i.to_string(),
        ]);
    }
}

impl Drop for S3Cluster {
    fn drop(&mut self) {
        stop_server("stop-cluster", self.dir.path());
    }
}

/// A metric of the mount's `/metrics`, by its full name.
pub fn metric(m: &TestMount, name: &str) -> f64 {
    let url = fs::read_to_string(m.data.join("admin.addr")).unwrap();
    let out = Command::new("curl")
        .args(["-s", &format!("{}/metrics", url.trim())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// The peak resident memory of a process, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

/// A size field of /proc/PID/status (given in kB there), in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb * 1024
}

/// Starts a new peak-RSS measurement: the kernel resets the process's high-water mark to its
/// current resident size (`clear_refs` value 5), so that `peak_rss` then measures one phase.
pub fn reset_peak_rss(pid: u32) {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// The process's resident size now.
pub fn current_rss(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS:")
}

/// Bytes of the files under a directory.
pub fn disk_usage(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let meta = e.metadata().unwrap();
                    if meta.is_dir() {
                        disk_usage(&e.path())
                    } else {
                        meta.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
