//! The `filesystem` driver: objects as files under a directory.
//!
//! `<root>/<key>` holds an object; writes go to a temporary file that is renamed into place, so
//! an object is whole or absent. Multipart uploads live in `<root>/#multipart/<upload-id>/`
//! (`key` names the target, `<n>.part` the parts) until completed or aborted, so interrupted
//! uploads can be listed and cleaned like S3's. An object's ETag is the CRC32C and length of
//! its bytes; conditional writes check it under an exclusive `flock` of `<root>/#cas.lock`, so
//! they are atomic among every process that shares the directory on one host.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Fetched, ObjectInfo, ObjectStore, PendingUpload, PutCondition, StoreError, UploadedPart,
};

// `#` never appears in tenant, namespace or topic names, so these never meet a key.
const MULTIPART_DIR: &str = "#multipart";
const TMP_PREFIX: &str = "#tmp-";
const CAS_LOCK: &str = "#cas.lock";

#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

fn io(context: &str, e: std::io::Error) -> StoreError {
    match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::NotFound(context.to_string()),
        std::io::ErrorKind::PermissionDenied => StoreError::Forbidden(format!("{context}: {e}")),
        _ => StoreError::Other(format!("{context}: {e}")),
    }
}

impl DirStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root.join(MULTIPART_DIR))
            .map_err(|e| io(&root.display().to_string(), e))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key);
        let safe = !key.is_empty()
            && relative.components().all(
                |c| matches!(c, Component::Normal(n) if !n.to_string_lossy().starts_with('#')),
            );
        if !safe {
            return Err(StoreError::Other(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(relative))
    }

    fn upload_dir(&self, upload_id: &str) -> Result<PathBuf, StoreError> {
        if upload_id.is_empty()
            || !upload_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(StoreError::Other(format!(
                "invalid upload id {upload_id:?}"
            )));
        }
        Ok(self.root.join(MULTIPART_DIR).join(upload_id))
    }

    /// Writes `parts` (in order) to a temporary file, then renames it to `key`.
    fn write_object(
        &self,
        key: &str,
        parts: &mut dyn Iterator<Item = Result<Vec<u8>, StoreError>>,
    ) -> Result<(), StoreError> {
        let target = self.path(key)?;
        let parent = target.parent().expect("keys have a parent: the root");
        let created = create_dirs(parent).map_err(|e| io(key, e))?;
        let tmp = parent.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
        let result = (|| {
            let mut file = File::create(&tmp).map_err(|e| io(key, e))?;
            for part in parts {
                file.write_all(&part?).map_err(|e| io(key, e))?;
            }
            file.sync_all().map_err(|e| io(key, e))?;
            fs::rename(&tmp, &target).map_err(|e| io(key, e))?;
            // The rename, and every directory created for it, must survive a power loss too:
            // the local manifest will soon say this object is the segment's only copy. So the
            // parent is synced, and so is the directory holding each one created.
            sync_dir(parent).map_err(|e| io(key, e))?;
            for dir in &created {
                let holder = dir.parent().expect("a created directory has a parent");
                sync_dir(holder).map_err(|e| io(key, e))?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Writes `body` to `key` if `condition` holds, under the directory's exclusive lock.
    fn write_if(
        &self,
        key: &str,
        body: Bytes,
        condition: &PutCondition,
    ) -> Result<Option<String>, StoreError> {
        let etag = super::content_etag(&body);
        if *condition == PutCondition::Always {
            self.write_object(key, &mut std::iter::once(Ok(body.to_vec())))?;
            return Ok(Some(etag));
        }
        let lock_path = self.root.join(CAS_LOCK);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(CAS_LOCK, e))?;
        // SAFETY: flock on a descriptor we own; it is released when `lock` is dropped.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
            return Err(io(CAS_LOCK, std::io::Error::last_os_error()));
        }
        let current = match fs::read(self.path(key)?) {
            Ok(bytes) => Some(super::content_etag(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(key, e)),
        };
        if !condition.holds(current.as_deref()) {
            return Err(StoreError::PreconditionFailed(format!(
                "{key}: {condition:?} does not hold (current ETag {current:?})"
            )));
        }
        self.write_object(key, &mut std::iter::once(Ok(body.to_vec())))?;
        drop(lock);
        Ok(Some(etag))
    }

    fn walk(&self, dir: &Path, out: &mut Vec<ObjectInfo>) -> Result<(), StoreError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&dir.display().to_string(), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io(&dir.display().to_string(), e))?;
            if entry.file_name().to_string_lossy().starts_with('#') {
                continue;
            }
            let path = entry.path();
            let meta = entry
                .metadata()
                .map_err(|e| io(&path.display().to_string(), e))?;
            if meta.is_dir() {
                self.walk(&path, out)?;
            } else if let Ok(rel) = path.strip_prefix(&self.root) {
                out.push(ObjectInfo {
                    key: rel.to_string_lossy().into_owned(),
                    size: meta.len(),
                    modified: meta.modified().ok(),
                });
            }
        }
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Other(format!("store task failed: {e}")))?
}

#[async_trait]
impl ObjectStore for DirStore {
    fn url(&self, key: &str) -> String {
        format!("file://{}", self.root.join(key).display())
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let (store, key) = (self.clone(), key.to_string());
        blocking(move || store.write_object(&key, &mut std::iter::once(Ok(body.to_vec())))).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || fs::read(&path).map(Bytes::from).map_err(|e| io(&key, e))).await
    }

    async fn get_if_changed(&self, key: &str, etag: Option<&str>) -> Result<Fetched, StoreError> {
        Ok(super::answer_if_changed(self.get(key).await?, etag))
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<Option<String>, StoreError> {
        let (store, key) = (self.clone(), key.to_string());
        blocking(move || store.write_if(&key, body, &condition)).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        piece: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || {
            let mut file = File::open(&path).map_err(|e| io(&key, e))?;
            file.seek(SeekFrom::Start(range.start))
                .map_err(|e| io(&key, e))?;
            let mut left = range.end - range.start;
            let mut pieces = Vec::new();
            while left > 0 {
                let want = left.min(piece.max(1) as u64);
                let mut buf = Vec::with_capacity(want as usize);
                let got = (&mut file)
                    .take(want)
                    .read_to_end(&mut buf)
                    .map_err(|e| io(&key, e))?;
                if got == 0 {
                    break; // the object ends before the range does
                }
                pieces.push(Bytes::from(buf));
                left -= got as u64;
            }
            Ok(pieces)
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(key, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let store = self.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            let mut all = Vec::new();
            store.walk(&store.root, &mut all)?;
            all.retain(|o| o.key.starts_with(&prefix));
            all.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(all)
        })
        .await
    }

    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        self.path(key)?;
        let upload_id = uuid::Uuid::new_v4().to_string();
        let dir = self.upload_dir(&upload_id)?;
        fs::create_dir_all(&dir).map_err(|e| io(key, e))?;
        fs::write(dir.join("key"), key).map_err(|e| io(key, e))?;
        Ok(upload_id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, StoreError> {
        let dir = self.upload_dir(upload_id)?;
        if !dir.join("key").exists() {
            return Err(StoreError::NotFound(format!("upload {upload_id} of {key}")));
        }
        let key = key.to_string();
        let etag = format!("{:08x}", crc32c::crc32c(&body));
        blocking(move || {
            let tmp = dir.join(format!("{number}.part.tmp"));
            fs::write(&tmp, &body).map_err(|e| io(&key, e))?;
            fs::rename(&tmp, dir.join(format!("{number}.part"))).map_err(|e| io(&key, e))
        })
        .await?;
        Ok(UploadedPart { number, etag })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<(), StoreError> {
        let dir = self.upload_dir(upload_id)?;
        let (store, key) = (self.clone(), key.to_string());
        blocking(move || {
            let mut reads = parts.iter().map(|p| {
                let data =
                    fs::read(dir.join(format!("{}.part", p.number))).map_err(|e| io(&key, e))?;
                if format!("{:08x}", crc32c::crc32c(&data)) != p.etag {
                    return Err(StoreError::Other(format!(
                        "part {} of {key} does not match its etag",
                        p.number
                    )));
                }
                Ok(data)
            });
            store.write_object(&key, &mut reads)?;
            fs::remove_dir_all(&dir).map_err(|e| io(&key, e))
        })
        .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let dir = self.upload_dir(upload_id)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(key, e)),
        }
    }

    async fn list_multipart(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let dir = self.root.join(MULTIPART_DIR);
        let mut uploads = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| io(MULTIPART_DIR, e))?;
        for entry in entries.flatten() {
            let upload_id = entry.file_name().to_string_lossy().into_owned();
            if let Ok(key) = fs::read_to_string(entry.path().join("key"))
                && key.starts_with(prefix)
            {
                let initiated = entry.metadata().and_then(|m| m.modified()).ok();
                uploads.push(PendingUpload {
                    key,
                    upload_id,
                    initiated,
                });
            }
        }
        uploads.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(uploads)
    }
}

/// Creates `dir` and the ancestors it lacks; returns the directories created, deepest first.
fn create_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    fs::create_dir_all(dir)?;
    Ok(missing)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directories_created_for_an_object_are_named_deepest_first() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        let created = create_dirs(&deep).unwrap();
        assert_eq!(
            created,
            [deep.clone(), root.path().join("a/b"), root.path().join("a")]
        );
        assert!(deep.is_dir());
        assert!(create_dirs(&deep).unwrap().is_empty(), "nothing new");
    }

    #[tokio::test]
    async fn objects_ranges_listing_and_multipart() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        store
            .put("t/ns/x/a.idx", Bytes::from_static(b"index"))
            .await
            .unwrap();
        let id = store.create_multipart("t/ns/x/a.seg").await.unwrap();
        let p2 = store
            .upload_part("t/ns/x/a.seg", &id, 2, Bytes::from_static(b"world"))
            .await
            .unwrap();
        let p1 = store
            .upload_part("t/ns/x/a.seg", &id, 1, Bytes::from_static(b"hello "))
            .await
            .unwrap();
        let pending = store.list_multipart("t/").await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].key.as_str(), pending[0].upload_id.as_str()),
            ("t/ns/x/a.seg", id.as_str())
        );
        assert!(pending[0].initiated.is_some());
        store
            .complete_multipart("t/ns/x/a.seg", &id, vec![p1, p2])
            .await
            .unwrap();
        assert!(store.list_multipart("").await.unwrap().is_empty());
        assert_eq!(
            &store.get("t/ns/x/a.seg").await.unwrap()[..],
            b"hello world"
        );
        assert_eq!(
            store.get_range("t/ns/x/a.seg", 4..100, 3).await.unwrap(),
            vec![&b"o w"[..], b"orl", b"d"]
        );
        assert_eq!(store.head("t/ns/x/a.seg").await.unwrap(), Some(11));
        assert_eq!(store.head("t/ns/x/none").await.unwrap(), None);
        let keys: Vec<_> = store
            .list("t/ns/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, vec!["t/ns/x/a.idx", "t/ns/x/a.seg"]);
        store.delete("t/ns/x/a.seg").await.unwrap();
        store.delete("t/ns/x/a.seg").await.unwrap();
        assert!(matches!(
            store.get("t/ns/x/a.seg").await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn conditional_reads_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        assert!(
            super::super::conditional_writes(&store, "probe")
                .await
                .unwrap()
        );
        let first = store
            .put_if("h", Bytes::from_static(b"1"), PutCondition::IfAbsent)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            store
                .put_if("h", Bytes::from_static(b"2"), PutCondition::IfAbsent)
                .await,
            Err(StoreError::PreconditionFailed(_))
        ));
        assert_eq!(
            store.get_if_changed("h", Some(&first)).await.unwrap(),
            Fetched::Unchanged
        );
        let second = store
            .put_if(
                "h",
                Bytes::from_static(b"2"),
                PutCondition::IfMatch(first.clone()),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            store
                .put_if(
                    "h",
                    Bytes::from_static(b"3"),
                    PutCondition::IfMatch(first.clone())
                )
                .await,
            Err(StoreError::PreconditionFailed(_))
        ));
        assert_eq!(
            store.get_if_changed("h", Some(&first)).await.unwrap(),
            Fetched::Object {
                body: Bytes::from_static(b"2"),
                etag: Some(second)
            }
        );
        assert!(matches!(
            store.get_if_changed("missing", None).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn aborted_uploads_leave_nothing_and_keys_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        let id = store.create_multipart("k").await.unwrap();
        store
            .upload_part("k", &id, 1, Bytes::from_static(b"x"))
            .await
            .unwrap();
        store.abort_multipart("k", &id).await.unwrap();
        assert!(store.list_multipart("").await.unwrap().is_empty());
        assert!(store.list("").await.unwrap().is_empty());
        assert!(store.put("../escape", Bytes::new()).await.is_err());
        assert!(store.put("/abs", Bytes::new()).await.is_err());
        assert!(store.put("#multipart/x", Bytes::new()).await.is_err());
        assert!(store.put("#cas.lock", Bytes::new()).await.is_err());
        store
            .put(".dotted/.name", Bytes::from_static(b"ok"))
            .await
            .unwrap();
    }
}
