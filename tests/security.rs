//! Security: the admin endpoint's token, and secrets kept out of logs, errors, stats and metrics.

mod common;

use std::fs;
use std::process::Command;

use common::*;

const TOKEN: &str = "t0ken-that-must-stay-secret-4711";

fn admin_with(m: &TestMount, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("admin")
        .arg("--data-dir")
        .arg(&m.data)
        .env_remove("TIERFS_ADMIN_TOKEN");
    if let Some(token) = token {
        cmd.env("TIERFS_ADMIN_TOKEN", token);
    }
    cmd.args(args).output().unwrap()
}

#[test]
fn an_endpoint_off_loopback_needs_a_token() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&mnt)
        .arg("--data-dir")
        .arg(root.path().join("data"))
        .args(["--admin-listen", "0.0.0.0:0"])
        .env_remove("TIERFS_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("which is not loopback: set --admin-token")
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn every_request_is_checked_against_the_token() {
    let m = TestMount::start_with(
        "",
        &[("TIERFS_ADMIN_TOKEN", TOKEN)],
        &["--admin-listen", "0.0.0.0:0"],
    );
    m.topic("t/ns/x");
    let url = fs::read_to_string(m.data.join("admin.addr")).unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let none = admin_with(&m, None, &["topics", "list", "t/ns"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("requires the admin token"));
    let wrong = admin_with(&m, Some("guess"), &["topics", "list", "t/ns"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("the admin token is wrong"));
    let right = admin_with(&m, Some(TOKEN), &["topics", "list", "t/ns"]);
    assert_eq!(
        String::from_utf8_lossy(&right.stdout),
        "persistent://t/ns/x\n"
    );

    let metrics = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/metrics", url.trim()),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&metrics.stdout), "401");
    assert!(!m.log_text().contains(TOKEN), "the token reached the log");
}

#[test]
fn credentials_never_reach_logs_errors_stats_or_metrics() {
    let s3 = S3Env::get();
    let config = format!(
        "managedLedgerMaxEntriesPerLedger=2\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n{}\
         s3ManagedLedgerOffloadCredentialId={}\ns3ManagedLedgerOffloadCredentialSecret={}\n",
        s3.config(&unique_prefix("secrets")),
        s3.key_id,
        s3.secret
    );
    let m = TestMount::start(&config);
    let topic = m.topic("t/ns/secret");
    append_patterns(&topic.join("active"), 0..6, 100);
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/secret"]);
    assert_eq!(
        m.admin_ok(&["topics", "offload-status", "-w", "t/ns/secret"]),
        "Offload was a success\n"
    );
    let stats = m.admin_ok(&["topics", "stats-internal", "t/ns/secret"]);
    let runtime = m.admin_ok(&["brokers", "get-runtime-configuration"]);
    assert!(
        runtime.contains("\"managedLedgerMaxEntriesPerLedger\": \"2\"")
            && runtime.contains("\"s3ManagedLedgerOffloadCredentialSecret\": \"****\""),
        "the runtime configuration shows the values in force: {runtime}"
    );
    assert!(
        !runtime.contains(&s3.key_id),
        "the access key id appears whole in the runtime configuration"
    );
    let url = fs::read_to_string(m.data.join("admin.addr")).unwrap();
    let metrics = Command::new("curl")
        .args(["-s", &format!("{}/metrics", url.trim())])
        .output()
        .unwrap();
    let xattrs = Command::new("getfattr")
        .arg("-d")
        .arg(topic.join("00000000000000000001.seg"))
        .output()
        .unwrap();
    // Checked for the secret only once they are known to hold something.
    assert!(
        metrics.status.success() && String::from_utf8_lossy(&metrics.stdout).contains("tierfs_")
    );
    assert!(
        xattrs.status.success()
            && String::from_utf8_lossy(&xattrs.stdout).contains("user.tierfs.object")
    );
    for (what, text) in [
        ("log", m.log_text()),
        ("stats-internal", stats),
        ("runtime configuration", runtime),
        (
            "metrics",
            String::from_utf8_lossy(&metrics.stdout).into_owned(),
        ),
        (
            "xattrs",
            String::from_utf8_lossy(&xattrs.stdout).into_owned(),
        ),
    ] {
        assert!(
            !text.contains(&s3.secret),
            "the secret key appears in the {what}"
        );
    }
    // A bad configuration's error names the problem, not the secret.
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let conf = root.path().join("broker.conf");
    fs::write(
        &conf,
        format!(
            "managedLedgerOffloadDriver=aws-s3\ns3ManagedLedgerOffloadCredentialSecret={}\n",
            s3.secret
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&mnt)
        .arg("--data-dir")
        .arg(root.path().join("data"))
        .arg("--config")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&s3.secret));
}
