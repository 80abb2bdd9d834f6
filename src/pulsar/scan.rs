//! `tierfs pulsar scan`: what a Pulsar offload bucket holds, object by object, with a verdict
//! for each (`OK`, `INCOMPLETE`, `DUPLICATE`, `UNKNOWN`), every open multipart upload with its
//! age, and totals per topic and for the bucket.
//!
//! It deletes nothing: only Pulsar's metadata store knows which ledgers a broker still
//! references. `--abort-uploads-older-than` aborts open uploads of Pulsar-named objects that
//! were started longer ago than the given age (uploads of other objects are left alone).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::bucket::{Status, Survey, UNKNOWN_DIR, pulsar_name, survey};
use super::offload_format::ObjectName;
use crate::store::{ObjectStore, StoreError};

#[derive(Debug, Serialize)]
pub struct ObjectLine {
    pub status: &'static str,
    pub ledger: Option<u64>,
    pub uuid: Option<String>,
    pub topic: Option<String>,
    pub entries: Option<u64>,
    pub bytes: Option<u64>,
    pub objects: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct UploadLine {
    pub key: String,
    pub upload_id: String,
    /// Seconds since the upload was started (`None`: the store does not say).
    pub age_seconds: Option<u64>,
    pub aborted: bool,
    pub note: String,
}

#[derive(Debug, Default, Serialize, Clone)]
pub struct Totals {
    pub ledgers: u64,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub objects: Vec<ObjectLine>,
    pub uploads: Vec<UploadLine>,
    pub topics: BTreeMap<String, Totals>,
    pub bucket: Totals,
    pub counts: BTreeMap<&'static str, u64>,
}

/// Surveys the bucket and aborts stale uploads if asked (an upload that cannot be aborted is
/// reported with the reason; the others go on).
pub async fn scan(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    abort_older_than: Option<Duration>,
) -> Result<Report, StoreError> {
    let found = survey(store, prefix, None, None).await?;
    let mut report = report_of(prefix, &found);
    if let Some(age) = abort_older_than {
        for upload in &mut report.uploads {
            if !upload.note.is_empty() || upload.age_seconds.is_none_or(|s| s < age.as_secs()) {
                continue;
            }
            match store.abort_multipart(&upload.key, &upload.upload_id).await {
                Ok(()) => upload.aborted = true,
                Err(e) => upload.note = format!("cannot abort: {e}"),
            }
        }
    }
    Ok(report)
}

fn report_of(prefix: &str, found: &Survey) -> Report {
    let mut objects = Vec::new();
    let mut topics: BTreeMap<String, Totals> = BTreeMap::new();
    let mut bucket = Totals::default();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for report in &found.copies {
        let copy = &report.copy;
        let ledger = report.ledger.as_ref();
        let topic = ledger.map(|l| l.directory().to_string());
        *counts.entry(report.status.label()).or_default() += 1;
        if report.status == Status::Ok
            && let Some(l) = ledger
        {
            let totals = topics.entry(l.directory().to_string()).or_default();
            for t in [totals, &mut bucket] {
                t.ledgers += 1;
                t.entries += l.entries;
                t.bytes += l.length;
            }
        }
        objects.push(ObjectLine {
            status: report.status.label(),
            ledger: Some(copy.ledger),
            uuid: Some(copy.uuid.clone()),
            topic,
            entries: ledger.map(|l| l.entries),
            bytes: ledger.map(|l| l.length),
            objects: copy
                .data
                .iter()
                .chain(copy.index.iter())
                .map(|o| o.key.clone())
                .collect(),
            reason: report.status.reason(),
        });
    }
    for object in &found.streaming {
        *counts.entry("UNKNOWN").or_default() += 1;
        objects.push(unknown(
            &object.key,
            "an object of Pulsar's streaming offloader (PIP-76): reported, not shown",
        ));
    }
    for object in &found.foreign {
        *counts.entry("UNKNOWN").or_default() += 1;
        objects.push(unknown(
            &object.key,
            "not named as Pulsar's offloader names objects ({uuid}-ledger-{id}[-index])",
        ));
    }
    let now = SystemTime::now();
    let uploads = found
        .uploads
        .iter()
        .map(|u| {
            let pulsars = matches!(pulsar_name(prefix, &u.key), Some(ObjectName::Data { .. }));
            UploadLine {
                key: u.key.clone(),
                upload_id: u.upload_id.clone(),
                age_seconds: u
                    .initiated
                    .and_then(|t| now.duration_since(t).ok())
                    .map(|d| d.as_secs()),
                aborted: false,
                note: if pulsars {
                    String::new()
                } else {
                    "not a Pulsar data object; left alone".into()
                },
            }
        })
        .collect();
    Report {
        objects,
        uploads,
        topics,
        bucket,
        counts,
    }
}

fn unknown(key: &str, reason: &str) -> ObjectLine {
    ObjectLine {
        status: "UNKNOWN",
        ledger: None,
        uuid: None,
        topic: None,
        entries: None,
        bytes: None,
        objects: vec![key.to_string()],
        reason: reason.to_string(),
    }
}

impl Report {
    /// The report as a person reads it: one line per ledger copy or object, the open uploads,
    /// totals per topic, then for the bucket.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<11} {:>20} {:<36} {:>9} {:>14}  {}\n",
            "STATUS", "LEDGER", "UUID", "ENTRIES", "BYTES", "TOPIC / OBJECT / REASON"
        ));
        for o in &self.objects {
            let what = match (&o.topic, o.status) {
                (Some(topic), "OK") => topic.clone(),
                (Some(topic), _) => format!("{topic}: {}", o.reason),
                (None, _) => format!("{}: {}", o.objects.join(" "), o.reason),
            };
            out.push_str(&format!(
                "{:<11} {:>20} {:<36} {:>9} {:>14}  {what}\n",
                o.status,
                dash(o.ledger.map(|l| l.to_string())),
                dash(o.uuid.clone()),
                dash(o.entries.map(|e| e.to_string())),
                dash(o.bytes.map(|b| b.to_string())),
            ));
        }
        if !self.uploads.is_empty() {
            out.push_str("\nOPEN UPLOADS\n");
            for u in &self.uploads {
                let age = u.age_seconds.map_or("age unknown".to_string(), |s| {
                    format!("age {}", humantime::format_duration(Duration::from_secs(s)))
                });
                let state = if u.aborted {
                    "  aborted".to_string()
                } else if u.note.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", u.note)
                };
                out.push_str(&format!(
                    "UPLOAD  {}  upload {}  {age}{state}\n",
                    u.key, u.upload_id
                ));
            }
        }
        out.push_str(&format!(
            "\n{:<60} {:>8} {:>10} {:>16}\n",
            "TOPIC", "LEDGERS", "ENTRIES", "BYTES"
        ));
        for (topic, t) in &self.topics {
            out.push_str(&format!(
                "{:<60} {:>8} {:>10} {:>16}\n",
                topic, t.ledgers, t.entries, t.bytes
            ));
        }
        let count = |label| self.counts.get(label).copied().unwrap_or(0);
        out.push_str(&format!(
            "\nbucket: {} ledgers shown, {} entries, {} bytes; {} incomplete, {} duplicate, {} unknown, {} open uploads{}\n",
            self.bucket.ledgers,
            self.bucket.entries,
            self.bucket.bytes,
            count("INCOMPLETE"),
            count("DUPLICATE"),
            count("UNKNOWN"),
            self.uploads.len(),
            match self.uploads.iter().filter(|u| u.aborted).count() {
                0 => String::new(),
                n => format!(" ({n} aborted)"),
            }
        ));
        if self.topics.contains_key(UNKNOWN_DIR) {
            out.push_str(&format!(
                "ledgers under {UNKNOWN_DIR}: their objects name no managed ledger (offloaded before 2022, or by a broker that did not say)\n"
            ));
        }
        out
    }
}
