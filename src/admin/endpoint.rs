//! Where a mount's admin endpoint is: the file `<data-dir>/admin.addr`.
//!
//! The mount writes its URL there once it serves, and removes it on a clean exit; the CLI reads
//! it when no `--admin-url` is given, as `pulsar-admin` reads `client.conf`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const ADDRESS_FILE: &str = "admin.addr";

pub fn address_file(data_dir: &Path) -> PathBuf {
    data_dir.join(ADDRESS_FILE)
}

/// Records the URL of a listening endpoint (atomically, so a reader never sees half of it).
pub fn publish(data_dir: &Path, addr: SocketAddr) -> std::io::Result<String> {
    // An endpoint on every address is reachable on loopback; publish that.
    let reachable = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let url = format!("http://{reachable}");
    let tmp = data_dir.join(format!("{ADDRESS_FILE}.tmp"));
    std::fs::write(&tmp, format!("{url}\n"))?;
    std::fs::rename(&tmp, address_file(data_dir))?;
    Ok(url)
}

pub fn withdraw(data_dir: &Path) {
    let _ = std::fs::remove_file(address_file(data_dir));
}

/// The URL a mount on `data_dir` published, or why there is none.
pub fn discover(data_dir: &Path) -> Result<String, String> {
    let path = address_file(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        Ok(_) => Err(format!("{} is empty", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "no tierfs mount is serving data directory {} ({} does not exist); start `tierfs mount` \
             with --data-dir {0}, or pass --admin-url",
            data_dir.display(),
            path.display()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
