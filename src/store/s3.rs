//! The S3 drivers (`aws-s3`, `S3`, `aliyun-oss`) over aws-sdk-s3.
//!
//! Credentials: static keys from the configuration (or, for aliyun-oss, its environment
//! variables), else the AWS default chain (environment, `~/.aws/credentials`, profiles,
//! instance metadata). Addressing: path style for S3-compatible endpoints, virtual-hosted style
//! for Amazon S3 without an endpoint and for Aliyun OSS, which requires it. Checksums are
//! computed and validated only when an operation requires them, so that stores that do not
//! know the SDK's newer checksum trailers (OSS among them) accept the requests.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use tracing::debug;

use super::{
    Fetched, Metadata, ObjectInfo, ObjectStore, PendingUpload, PutCondition, StoreError,
    UploadedPart,
};
use crate::config::{Driver, OffloadConfig};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    scheme: &'static str,
    /// Send bodies as UNSIGNED-PAYLOAD: over HTTPS, where TLS already protects them (what the
    /// AWS SDKs for Java and Python do). Over plain HTTP the payload's SHA-256 is signed.
    unsigned_payload: bool,
}

/// The signing region for an endpoint with none configured: Aliyun's endpoints name theirs
/// (`oss-cn-hongkong[-internal].aliyuncs.com`); elsewhere `us-east-1`, the S3 convention.
fn default_region(driver: Driver, endpoint: Option<&str>) -> String {
    if driver == Driver::AliyunOss
        && let Some(host) = endpoint
            .and_then(|e| e.split("://").nth(1))
            .and_then(|h| h.split(['.', ':', '/']).next())
        && host.starts_with("oss-")
    {
        return host.trim_end_matches("-internal").to_string();
    }
    "us-east-1".to_string()
}

impl S3Store {
    /// One ranged GetObject of a non-empty `range`: its body, and how many bytes of the body
    /// come before the range. A server that ignores Range answers with the whole object and no
    /// Content-Range: the reader skips to what was asked (a wrong guess is caught by the
    /// length and checksum checks above the store).
    async fn ranged_body(
        &self,
        key: &str,
        range: &Range<u64>,
    ) -> Result<(ByteStream, u64), StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| map_err(&format!("GetObject {key} {range:?}"), e))?;
        let asked = range.end - range.start;
        let whole_object = out.content_range.is_none()
            && out.content_length.is_none_or(|n| n.max(0) as u64 != asked);
        Ok((out.body, if whole_object { range.start } else { 0 }))
    }

    pub async fn connect(config: &OffloadConfig) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(30))
                    .build(),
            );
        if shared.region().is_none() {
            builder = builder.region(Region::new(default_region(
                config.driver,
                config.endpoint.as_deref(),
            )));
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .endpoint_url(endpoint)
                .force_path_style(config.driver != Driver::AliyunOss);
        }
        if let Some(creds) = &config.credentials {
            builder = builder.credentials_provider(Credentials::new(
                creds.access_key_id.clone(),
                creds.secret_access_key.expose().to_string(),
                None,
                None,
                "tierfs-configuration",
            ));
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            unsigned_payload: config
                .endpoint
                .as_deref()
                .is_none_or(|e| e.starts_with("https://")),
            scheme: if config.driver == Driver::AliyunOss {
                "oss"
            } else {
                "s3"
            },
        }
    }
}

/// Maps an SDK error to a [`StoreError`] that carries the store's own code and message.
fn map_err<E>(what: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("");
            let message = match e.message().unwrap_or("") {
                "" if code.is_empty() => "an answer the S3 client could not understand",
                message => message,
            };
            let text = format!(
                "{what}: {}{}{} (HTTP {})",
                code,
                if code.is_empty() || message.is_empty() {
                    ""
                } else {
                    ": "
                },
                message,
                status.map_or("?".to_string(), |s| s.to_string())
            );
            match (code, status) {
                ("NoSuchKey", _) | ("NotFound", _) | ("NoSuchUpload", _) | ("", Some(404)) => {
                    StoreError::NotFound(text)
                }
                ("NoSuchBucket", _) => StoreError::NoSuchBucket(text),
                ("PreconditionFailed", _) | (_, Some(412)) => StoreError::PreconditionFailed(text),
                // A write that raced another conditional write of the same key: the condition
                // could not be checked, which for a compare-and-swap is a failure too.
                ("ConditionalRequestConflict", _) => StoreError::PreconditionFailed(text),
                (
                    "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden",
                    _,
                )
                | (_, Some(401 | 403)) => StoreError::Forbidden(text),
                (
                    "SlowDown" | "Throttling" | "RequestTimeout" | "InternalError"
                    | "ServiceUnavailable",
                    _,
                ) => StoreError::Transient(text),
                (_, Some(s)) if s >= 500 || s == 429 => StoreError::Transient(text),
                _ => StoreError::Other(text),
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Transient(format!("{what}: {}", error_chain(&err)))
        }
        _ => StoreError::Other(format!("{what}: {}", error_chain(&err))),
    }
}

/// The upload id of a CreateMultipartUpload answer whose root element is
/// `InitiateMultipartUpload` (gofakes3's name) instead of `InitiateMultipartUploadResult`.
fn upload_id_of_nonstandard_answer(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let root = text.find("<InitiateMultipartUpload")?;
    let rest = &text[root + "<InitiateMultipartUpload".len()..];
    if !rest.starts_with(['>', ' ', '\n', '\r', '\t']) {
        return None; // InitiateMultipartUploadResult: the SDK refused it for another reason
    }
    let start = rest.find("<UploadId>")? + "<UploadId>".len();
    let end = start + rest[start..].find("</UploadId>")?;
    let id = rest[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    (!id.trim().is_empty()).then(|| id.trim().to_string())
}

/// An error and its sources, each once, without Debug dumps.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

#[async_trait]
impl ObjectStore for S3Store {
    fn url(&self, key: &str) -> String {
        format!("{}://{}/{key}", self.scheme, self.bucket)
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.put_if(key, body, PutCondition::Always).await.map(drop)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err(&format!("GetObject {key}"), e))?;
        out.body
            .collect()
            .await
            .map(|b| b.into_bytes())
            .map_err(|e| StoreError::Transient(format!("GetObject {key}: reading the body: {e}")))
    }

    async fn get_if_changed(&self, key: &str, etag: Option<&str>) -> Result<Fetched, StoreError> {
        let answer = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_none_match(etag.map(str::to_string))
            .send()
            .await;
        let out = match answer {
            Ok(out) => out,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) => {
                return Ok(Fetched::Unchanged);
            }
            Err(e) => return Err(map_err(&format!("GetObject {key}"), e)),
        };
        let etag = out.e_tag().map(str::to_string);
        let body = out
            .body
            .collect()
            .await
            .map(|b| b.into_bytes())
            .map_err(|e| {
                StoreError::Transient(format!("GetObject {key}: reading the body: {e}"))
            })?;
        Ok(Fetched::Object { body, etag })
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<Option<String>, StoreError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body));
        request = match condition {
            PutCondition::Always => request,
            PutCondition::IfAbsent => request.if_none_match("*"),
            PutCondition::IfMatch(etag) => request.if_match(etag),
        };
        let request = request.customize();
        let request = if self.unsigned_payload {
            request.disable_payload_signing()
        } else {
            request
        };
        let out = request
            .send()
            .await
            .map_err(|e| map_err(&format!("PutObject {key}"), e))?;
        Ok(out.e_tag().map(str::to_string))
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        piece: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let (mut body, skip) = self.ranged_body(key, &range).await?;
        let mut pieces = Pieces::new(skip, range.end - range.start, piece);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                StoreError::Transient(format!("GetObject {key}: reading the body: {e}"))
            })?;
            pieces.push(&chunk);
        }
        Ok(pieces.finish())
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length.unwrap_or(0).max(0) as u64)),
            Err(e) => match map_err(&format!("HeadObject {key}"), e) {
                StoreError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err(&format!("DeleteObject {key}"), e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| map_err(&format!("ListObjectsV2 {prefix}"), e))?;
            for object in out.contents() {
                if let Some(key) = object.key() {
                    objects.push(ObjectInfo {
                        key: key.to_string(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                        modified: object.last_modified().and_then(system_time),
                    });
                }
            }
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(objects);
            }
        }
    }

    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                // Servers built on gofakes3 (`rclone serve s3`, among others) name the answer's
                // root element InitiateMultipartUpload, which the SDK refuses; the upload id in
                // it is all we need.
                let accepted = e
                    .raw_response()
                    .filter(|r| r.status().is_success())
                    .and_then(|r| r.body().bytes())
                    .and_then(upload_id_of_nonstandard_answer);
                if let Some(id) = accepted {
                    debug!(
                        key,
                        "CreateMultipartUpload answered with a non-standard root element; accepted"
                    );
                    return Ok(id);
                }
                return Err(map_err(&format!("CreateMultipartUpload {key}"), e));
            }
        };
        out.upload_id().map(str::to_string).ok_or_else(|| {
            StoreError::Other(format!(
                "CreateMultipartUpload {key}: no upload id in the answer"
            ))
        })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, StoreError> {
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .customize();
        let request = if self.unsigned_payload {
            request.disable_payload_signing()
        } else {
            request
        };
        let out = request
            .send()
            .await
            .map_err(|e| map_err(&format!("UploadPart {key} #{number}"), e))?;
        Ok(UploadedPart {
            number,
            etag: out.e_tag().unwrap_or_default().to_string(),
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<(), StoreError> {
        let parts = parts
            .into_iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(p.etag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map_err(&format!("CompleteMultipartUpload {key}"), e))?;
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match map_err(&format!("AbortMultipartUpload {key}"), e) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list_multipart(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker)
                .set_upload_id_marker(id_marker)
                .send()
                .await
                .map_err(|e| map_err(&format!("ListMultipartUploads {prefix}"), e))?;
            for upload in out.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    uploads.push(PendingUpload {
                        key: key.to_string(),
                        upload_id: id.to_string(),
                        initiated: upload.initiated().and_then(system_time),
                    });
                }
            }
            if !out.is_truncated().unwrap_or(false) {
                return Ok(uploads);
            }
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                return Ok(uploads);
            }
        }
    }

    async fn get_range_stream(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Bytes, StoreError>>, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_FRAMES);
        if range.is_empty() {
            return Ok(rx);
        }
        let (mut body, mut skip) = self.ranged_body(key, &range).await?;
        let mut left = range.end - range.start;
        let key = key.to_string();
        tokio::spawn(async move {
            while left > 0 {
                let Some(chunk) = body.next().await else {
                    return;
                };
                let mut chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        let e = StoreError::Transient(format!(
                            "GetObject {key}: reading the body: {e}"
                        ));
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let skipped = skip.min(chunk.len() as u64);
                skip -= skipped;
                let _ = chunk.split_to(skipped as usize);
                chunk.truncate(left.min(chunk.len() as u64) as usize);
                left -= chunk.len() as u64;
                if !chunk.is_empty() && tx.send(Ok(chunk)).await.is_err() {
                    return; // the reader went away
                }
            }
        });
        Ok(rx)
    }

    async fn get_with_metadata(&self, key: &str) -> Result<(Bytes, Metadata), StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err(&format!("GetObject {key}"), e))?;
        let metadata = lower_cased(out.metadata());
        let body = out
            .body
            .collect()
            .await
            .map(|b| b.into_bytes())
            .map_err(|e| {
                StoreError::Transient(format!("GetObject {key}: reading the body: {e}"))
            })?;
        Ok((body, metadata))
    }

    async fn head_with_metadata(&self, key: &str) -> Result<Option<(u64, Metadata)>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                out.content_length.unwrap_or(0).max(0) as u64,
                lower_cased(out.metadata()),
            ))),
            Err(e) => match map_err(&format!("HeadObject {key}"), e) {
                StoreError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn put_with_metadata(
        &self,
        key: &str,
        body: Bytes,
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .body(ByteStream::from(body))
            .customize();
        let request = if self.unsigned_payload {
            request.disable_payload_signing()
        } else {
            request
        };
        request
            .send()
            .await
            .map_err(|e| map_err(&format!("PutObject {key}"), e))?;
        Ok(())
    }

    async fn create_multipart_with_metadata(
        &self,
        key: &str,
        metadata: &Metadata,
    ) -> Result<String, StoreError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| map_err(&format!("CreateMultipartUpload {key}"), e))?;
        out.upload_id().map(str::to_string).ok_or_else(|| {
            StoreError::Other(format!(
                "CreateMultipartUpload {key}: no upload id in the answer"
            ))
        })
    }
}

/// Body buffers a streamed GET holds ahead of its reader. Few: a paused reader's GET must
/// not pile its body up in memory (a buffer is up to the HTTP client's ~400 KiB read buffer);
/// the store's further sends wait on TCP flow control instead.
const STREAM_FRAMES: usize = 2;

/// User metadata as the SDK hands it, keys lower-cased (S3 keeps them so; OSS may not).
fn lower_cased(metadata: Option<&std::collections::HashMap<String, String>>) -> Metadata {
    metadata
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

/// An S3 timestamp as a [`SystemTime`] (`None` before the epoch).
fn system_time(t: &aws_sdk_s3::primitives::DateTime) -> Option<std::time::SystemTime> {
    std::time::SystemTime::try_from(*t).ok()
}

/// A response body cut into block-sized buffers as it arrives: each piece is its own allocation
/// of exactly its size, so a GET is held once (not once in chunks and again joined) and the
/// cache can keep or drop each block on its own.
struct Pieces {
    skip: u64,
    left: u64,
    size: usize,
    current: BytesMut,
    done: Vec<Bytes>,
}

impl Pieces {
    fn new(skip: u64, len: u64, size: usize) -> Self {
        let size = size.max(1);
        Self {
            skip,
            left: len,
            size,
            current: BytesMut::with_capacity(len.min(size as u64) as usize),
            done: Vec::new(),
        }
    }

    fn push(&mut self, mut chunk: &[u8]) {
        let skipped = self.skip.min(chunk.len() as u64);
        chunk = &chunk[skipped as usize..];
        self.skip -= skipped;
        chunk = &chunk[..chunk.len().min(self.left as usize)];
        while !chunk.is_empty() {
            let room = self.size - self.current.len();
            let (now, rest) = chunk.split_at(room.min(chunk.len()));
            self.current.extend_from_slice(now);
            self.left -= now.len() as u64;
            chunk = rest;
            if self.current.len() == self.size {
                let next = BytesMut::with_capacity(self.left.min(self.size as u64) as usize);
                self.done
                    .push(std::mem::replace(&mut self.current, next).freeze());
            }
        }
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done.push(self.current.freeze());
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_region_for_endpoints() {
        assert_eq!(
            default_region(
                Driver::AliyunOss,
                Some("http://oss-cn-hongkong.aliyuncs.com")
            ),
            "oss-cn-hongkong"
        );
        assert_eq!(
            default_region(
                Driver::AliyunOss,
                Some("https://oss-us-west-1-internal.aliyuncs.com")
            ),
            "oss-us-west-1"
        );
        assert_eq!(
            default_region(Driver::AliyunOss, Some("http://localhost:3900")),
            "us-east-1"
        );
        assert_eq!(
            default_region(Driver::S3, Some("http://127.0.0.1:3900")),
            "us-east-1"
        );
    }

    #[test]
    fn bodies_are_cut_into_pieces_whatever_the_chunks() {
        let data: Vec<u8> = (0..100u8).collect();
        for chunk in [1, 3, 7, 40, 100] {
            for (skip, len) in [(0, 100), (10, 50), (95, 5)] {
                let mut pieces = Pieces::new(skip, len, 16);
                for c in data.chunks(chunk) {
                    pieces.push(c);
                }
                let pieces = pieces.finish();
                let wanted = &data[skip as usize..(skip + len) as usize];
                assert_eq!(pieces.concat(), wanted, "chunk {chunk} skip {skip}");
                assert!(pieces.iter().rev().skip(1).all(|p| p.len() == 16));
            }
        }
    }

    #[test]
    fn gofakes3_multipart_answers_give_their_upload_id() {
        let gofakes3 = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUpload>\n  \
            <Bucket>b</Bucket>\n  <Key>k</Key>\n  <UploadId>0438bd1d-97c0&amp;x</UploadId>\n\
            </InitiateMultipartUpload>";
        assert_eq!(
            upload_id_of_nonstandard_answer(gofakes3).as_deref(),
            Some("0438bd1d-97c0&x")
        );
        let standard = b"<InitiateMultipartUploadResult><UploadId>u</UploadId>\
            </InitiateMultipartUploadResult>";
        assert_eq!(upload_id_of_nonstandard_answer(standard), None);
        assert_eq!(
            upload_id_of_nonstandard_answer(b"<Error><Code>x</Code></Error>"),
            None
        );
        assert_eq!(
            upload_id_of_nonstandard_answer(b"<InitiateMultipartUpload><UploadId></UploadId>"),
            None
        );
    }
}
