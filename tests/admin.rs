//! The admin CLI and REST endpoint against a real mount.

mod common;

use std::fs;
use std::process::Command;

use common::*;

#[test]
fn lists_and_stats_internal_are_pulsar_shaped() {
    let m = TestMount::start(
        "managedLedgerMaxEntriesPerLedger=3\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n",
    );
    let topic = m.topic("acme/orders/eu");
    m.topic("acme/orders/us");
    m.topic("acme/audit/all");
    for i in 0..7 {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(topic.join("active"))
            .unwrap();
        std::io::Write::write_all(&mut f, format!("order {i}\n").as_bytes()).unwrap();
    }
    assert_eq!(m.admin_ok(&["tenants", "list"]), "acme\n");
    assert_eq!(
        m.admin_ok(&["namespaces", "list", "acme"]),
        "acme/audit\nacme/orders\n"
    );
    assert_eq!(
        m.admin_ok(&["topics", "list", "acme/orders"]),
        "persistent://acme/orders/eu\npersistent://acme/orders/us\n"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&m.admin_ok(&["topics", "stats-internal", "acme/orders/eu"])).unwrap();
    assert_eq!(stats["numberOfEntries"], 7);
    assert_eq!(stats["entriesAddedCounter"], 7);
    assert_eq!(stats["totalSize"], 56);
    assert_eq!(stats["currentLedgerEntries"], 1);
    assert_eq!(stats["currentLedgerSize"], 8);
    assert_eq!(stats["lastConfirmedEntry"], "3:0");
    assert_eq!(stats["state"], "LedgerOpened");
    let ledgers = stats["ledgers"].as_array().unwrap();
    assert_eq!(ledgers.len(), 3);
    assert_eq!(ledgers[0]["ledgerId"], 1);
    assert_eq!(ledgers[0]["entries"], 3);
    assert_eq!(ledgers[0]["size"], 24);
    assert_eq!(ledgers[0]["offloaded"], false);
    assert_eq!(ledgers[2]["ledgerId"], 3);
}

#[test]
fn create_and_delete_through_the_cli_show_in_the_mount() {
    let m = TestMount::start("");
    m.admin_ok(&["tenants", "create", "t"]);
    m.admin_ok(&["namespaces", "create", "t/ns"]);
    m.admin_ok(&["topics", "create", "persistent://t/ns/new"]);
    assert_eq!(listing(&m.mnt.join("t/ns/new")), vec!["active"]);
    let out = m.admin(&["topics", "create", "t/ns/new"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("topic t/ns/new already exists"));
    m.admin_ok(&["topics", "delete", "t/ns/new"]);
    assert!(!m.mnt.join("t/ns/new").exists());
}

#[test]
fn errors_are_clear_and_exit_1() {
    let m = TestMount::start("");
    let cases: &[(&[&str], &str)] = &[
        (
            &["topics", "stats-internal", "t/ns/missing"],
            "tenant t does not exist",
        ),
        (&["topics", "list", "no-slash"], "is not a namespace name"),
        (&["topics", "seal", "a/b"], "is not a topic name"),
        (
            &["topics", "list", "bad name/ns"],
            "allowed are letters, digits",
        ),
    ];
    for (args, message) in cases {
        let out = m.admin(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    // No mount at all on a data directory: say so, and how to fix it.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["admin", "--data-dir"])
        .arg(empty.path())
        .args(["tenants", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tierfs mount is serving"));
    // An explicit --admin-url wins over the data directory.
    let url = fs::read_to_string(m.data.join("admin.addr")).unwrap();
    let out = Command::new(BIN)
        .args(["admin", "--admin-url", url.trim(), "--data-dir"])
        .arg(empty.path())
        .args(["tenants", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // A dead endpoint is reported as unreachable, not as a crash.
    let out = Command::new(BIN)
        .args([
            "admin",
            "--admin-url",
            "http://127.0.0.1:1",
            "tenants",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the tierfs admin endpoint")
    );
}
