//! The one place where errors become errno values, and where refusals are logged.
//!
//! A missing name is routine (the shell probes for files all the time) and logged at debug;
//! a refusal of something the user asked for is logged at info with its reason; a failure of
//! tierfs itself (I/O, damaged files) is logged as an error.

use tracing::{Level, debug, error, info};

use crate::fs::FsError;
use crate::log::LogError;

/// The errno for an error, and how loudly to log it.
pub fn classify(err: &FsError) -> (i32, Level) {
    match err {
        FsError::NotFound(_) => (libc::ENOENT, Level::DEBUG),
        FsError::NoAttribute { .. } => (libc::ENODATA, Level::DEBUG),
        FsError::AttributeNotSupported { .. } => (libc::EOPNOTSUPP, Level::DEBUG),
        FsError::NotPermitted { .. } => (libc::EPERM, Level::INFO),
        FsError::Invalid { .. } => (libc::EINVAL, Level::INFO),
        FsError::ReadOnly { .. } => (libc::EROFS, Level::INFO),
        FsError::IsDirectory(_) => (libc::EISDIR, Level::INFO),
        FsError::NotDirectory(_) => (libc::ENOTDIR, Level::INFO),
        FsError::BadHandle(_) => (libc::EBADF, Level::INFO),
        FsError::Io { source, .. } => (source.raw_os_error().unwrap_or(libc::EIO), Level::ERROR),
        FsError::Log { source, .. } => classify_log(source),
        FsError::Cache { .. } | FsError::Ledger { .. } => (libc::EIO, Level::ERROR),
    }
}

fn classify_log(err: &LogError) -> (i32, Level) {
    match err {
        LogError::NotFound(_) => (libc::ENOENT, Level::DEBUG),
        LogError::Removed(_) => (libc::ENOENT, Level::INFO),
        LogError::AlreadyExists(_) => (libc::EEXIST, Level::INFO),
        LogError::NotEmpty(_) => (libc::ENOTEMPTY, Level::INFO),
        LogError::Name(_) | LogError::NotAtEnd { .. } | LogError::NothingToSeal(_) => {
            (libc::EINVAL, Level::INFO)
        }
        LogError::Locked { .. } => (libc::EBUSY, Level::ERROR),
        LogError::NotLocal(_) | LogError::NotOffloaded(_) => (libc::EIO, Level::ERROR),
        LogError::Corrupt { .. } => (libc::EIO, Level::ERROR),
        LogError::Io { source, .. } => match source.raw_os_error() {
            Some(code @ (libc::ENOSPC | libc::EDQUOT)) => (code, Level::WARN),
            Some(code) => (code, Level::ERROR),
            None => (libc::EIO, Level::ERROR),
        },
    }
}

/// Logs the error for operation `op` and returns the errno to answer with.
pub fn refuse(op: &'static str, err: &FsError) -> i32 {
    let (code, level) = classify(err);
    let errno = std::io::Error::from_raw_os_error(code);
    match level {
        Level::DEBUG => debug!(op, %errno, "{err}"),
        Level::INFO => info!(op, %errno, "refused: {err}"),
        _ => error!(op, %errno, "failed: {err}"),
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_errno_users_expect() {
        let perm = FsError::NotPermitted {
            path: "/x".into(),
            reason: "no",
        };
        assert_eq!(classify(&perm).0, libc::EPERM);
        let at_end = FsError::Log {
            path: "/x".into(),
            source: LogError::NotAtEnd { offset: 0, end: 3 },
        };
        assert_eq!(classify(&at_end).0, libc::EINVAL);
        let full = FsError::Log {
            path: "/x".into(),
            source: LogError::Io {
                path: "/d".into(),
                action: "append entry",
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            },
        };
        assert_eq!(classify(&full), (libc::ENOSPC, Level::WARN));
        let name = FsError::Log {
            path: "/x".into(),
            source: crate::name::NameError::Empty {
                kind: crate::name::NameKind::Topic,
            }
            .into(),
        };
        assert_eq!(classify(&name).0, libc::EINVAL);
        let read_only = FsError::ReadOnly {
            path: "/t".into(),
            op: "mkdir",
            why: "read-only",
        };
        assert_eq!(classify(&read_only), (libc::EROFS, Level::INFO));
    }
}
