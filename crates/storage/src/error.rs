//! `StorageError` and the five failure classes an operator sees.
//!
//! Rules: every failure of every backend becomes one [`StorageError`] whose
//! [`ErrorKind`] is exactly one of the five classes; the error says which
//! operation failed on which path; [`StorageError::is_retryable`] says whether
//! trying again can help; [`StorageError::alert`] gives the operator-facing
//! title, description and remediation. Errors never carry credentials.

use std::borrow::Cow;
use std::fmt;

/// The failure class: what an operator must do differs for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The target has no room for what is being written.
    OutOfCapacity,
    /// The target cannot be reached, or stopped answering.
    Connectivity,
    /// The location or a path under it does not exist or cannot be resolved.
    PathNotFound,
    /// The credentials were refused, or do not grant access.
    Authentication,
    /// Anything else: a general fault.
    Other,
}

/// An operator-facing alert for a failure class: part of the public API so
/// controllers and the CLI show the same words. The five classes' texts are
/// fixed; a caller whose failure is not the storage's (a backup source that
/// cannot be read) builds its own alert of class [`ErrorKind::Other`] naming
/// what failed, hence owned-or-static text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// The class the alert is for.
    pub kind: ErrorKind,
    /// A short title.
    pub title: Cow<'static, str>,
    /// What happened.
    pub description: Cow<'static, str>,
    /// What the operator should do.
    pub remediation: Cow<'static, str>,
}

impl ErrorKind {
    /// All five classes.
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::OutOfCapacity,
        ErrorKind::Connectivity,
        ErrorKind::PathNotFound,
        ErrorKind::Authentication,
        ErrorKind::Other,
    ];

    /// The alert for this class.
    pub fn alert(self) -> Alert {
        match self {
            ErrorKind::OutOfCapacity => Alert {
                kind: self,
                title: Cow::Borrowed("Backup storage location is out of capacity"),
                description: Cow::Borrowed(
                    "The external storage location does not have enough free space to store the backup.",
                ),
                remediation: Cow::Borrowed(
                    "Add capacity to the storage location, or delete the oldest backups at the location \
                    (oldest first; keep the newest complete backup). Size the location for one backup size \
                    x backups per day x days kept.",
                ),
            },
            ErrorKind::Connectivity => Alert {
                kind: self,
                title: Cow::Borrowed("Backup storage location cannot be reached"),
                description: Cow::Borrowed(
                    "The storage location could not be reached over the network, or it stopped responding.",
                ),
                remediation: Cow::Borrowed(
                    "Fix the network connectivity between the system and the storage location \
                    (file server up, port 445 reachable, firewall and DNS), then retry the backup.",
                ),
            },
            ErrorKind::PathNotFound => Alert {
                kind: self,
                title: Cow::Borrowed("Backup storage path cannot be resolved"),
                description: Cow::Borrowed("The path to the storage location does not exist or cannot be resolved."),
                remediation: Cow::Borrowed(
                    "Check that the share and folder can be opened from another machine, then update \
                    the backup storage path in the backup settings.",
                ),
            },
            ErrorKind::Authentication => Alert {
                kind: self,
                title: Cow::Borrowed("Backup storage location refused the credentials"),
                description: Cow::Borrowed(
                    "Authentication to the storage location failed, or the account has no access.",
                ),
                remediation: Cow::Borrowed(
                    "Check the user name, password and domain for the storage location, and that the \
                    account may read and write the share; update the credentials in the backup settings.",
                ),
            },
            ErrorKind::Other => Alert {
                kind: self,
                title: Cow::Borrowed("Backup failed because of a general fault"),
                description: Cow::Borrowed("The backup failed because of an unexpected fault at the storage location."),
                remediation: Cow::Borrowed(
                    "Retry the backup. If the problem persists, collect the logs and escalate to support.",
                ),
            },
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::OutOfCapacity => "out of capacity",
            ErrorKind::Connectivity => "connectivity",
            ErrorKind::PathNotFound => "path not found",
            ErrorKind::Authentication => "authentication",
            ErrorKind::Other => "general fault",
        })
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed storage operation.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {detail} ({kind})")]
pub struct StorageError {
    kind: ErrorKind,
    op: &'static str,
    path: String,
    detail: String,
    retryable: bool,
    already_exists: bool,
    #[source]
    source: Option<Source>,
}

impl StorageError {
    /// A new error of class `kind` for operation `op` (such as `"cannot read"`) on `path`.
    pub fn new(kind: ErrorKind, op: &'static str, path: impl Into<String>, detail: impl Into<String>) -> Self {
        StorageError {
            kind,
            op,
            path: path.into(),
            detail: detail.into(),
            retryable: matches!(kind, ErrorKind::Connectivity | ErrorKind::Other),
            already_exists: false,
            source: None,
        }
    }

    /// A commit refused because an object already exists at `path` (class [`ErrorKind::Other`], not retryable).
    pub fn already_exists(op: &'static str, path: impl Into<String>) -> Self {
        let mut e = StorageError::new(ErrorKind::Other, op, path, "an object already exists there");
        e.already_exists = true;
        e.retryable = false;
        e
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Overrides whether a retry can help.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Maps an operating-system error to its class: `ENOSPC`/`EDQUOT`/`EFBIG` →
    /// out of capacity; `ENOENT`/`ENOTDIR` → path; `EACCES`/`EPERM`/`EROFS` →
    /// authentication; network errnos → connectivity; the rest → other.
    pub fn from_io(op: &'static str, path: impl Into<String>, error: std::io::Error) -> Self {
        let kind = classify_io(&error);
        let detail = error.to_string();
        StorageError::new(kind, op, path, detail).with_source(error)
    }

    /// The failure class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether trying the same operation again can help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether a no-overwrite commit found an object already there.
    pub fn is_already_exists(&self) -> bool {
        self.already_exists
    }

    /// The path the operation was on.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The operator-facing alert for this error's class.
    pub fn alert(&self) -> Alert {
        self.kind.alert()
    }
}

/// The class of an operating-system error.
pub fn classify_io(error: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    if let Some(code) = error.raw_os_error() {
        use rustix::io::Errno;
        let errno = Errno::from_raw_os_error(code);
        if errno == Errno::NOSPC || errno == Errno::DQUOT || errno == Errno::FBIG {
            return ErrorKind::OutOfCapacity;
        }
        if errno == Errno::NOENT || errno == Errno::NOTDIR || errno == Errno::NAMETOOLONG {
            return ErrorKind::PathNotFound;
        }
        if errno == Errno::ACCESS || errno == Errno::PERM || errno == Errno::ROFS {
            return ErrorKind::Authentication;
        }
        if errno == Errno::CONNREFUSED
            || errno == Errno::CONNRESET
            || errno == Errno::NETRESET
            || errno == Errno::CONNABORTED
            || errno == Errno::TIMEDOUT
            || errno == Errno::HOSTUNREACH
            || errno == Errno::NETUNREACH
            || errno == Errno::NETDOWN
            || errno == Errno::HOSTDOWN
            || errno == Errno::PIPE
            || errno == Errno::NOTCONN
            || errno == Errno::SHUTDOWN
        {
            return ErrorKind::Connectivity;
        }
    }
    match error.kind() {
        K::NotFound => ErrorKind::PathNotFound,
        K::PermissionDenied => ErrorKind::Authentication,
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::TimedOut
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown => ErrorKind::Connectivity,
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => ErrorKind::OutOfCapacity,
        _ => ErrorKind::Other,
    }
}

/// `Result` with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_classes() {
        let os = |e: rustix::io::Errno| std::io::Error::from_raw_os_error(e.raw_os_error());
        use rustix::io::Errno;
        for (errno, kind) in [
            (Errno::NOSPC, ErrorKind::OutOfCapacity),
            (Errno::DQUOT, ErrorKind::OutOfCapacity),
            (Errno::NOENT, ErrorKind::PathNotFound),
            (Errno::NOTDIR, ErrorKind::PathNotFound),
            (Errno::ACCESS, ErrorKind::Authentication),
            (Errno::PERM, ErrorKind::Authentication),
            (Errno::CONNREFUSED, ErrorKind::Connectivity),
            (Errno::TIMEDOUT, ErrorKind::Connectivity),
            (Errno::CONNABORTED, ErrorKind::Connectivity),
            (Errno::NETRESET, ErrorKind::Connectivity),
            (Errno::IO, ErrorKind::Other),
        ] {
            assert_eq!(classify_io(&os(errno)), kind, "{errno:?}");
        }
    }

    #[test]
    fn every_class_has_an_alert_with_a_remediation() {
        for kind in ErrorKind::ALL {
            let alert = kind.alert();
            assert_eq!(alert.kind, kind);
            assert!(!alert.title.is_empty() && !alert.description.is_empty() && !alert.remediation.is_empty());
        }
        assert!(ErrorKind::OutOfCapacity.alert().remediation.contains("oldest"));
    }

    #[test]
    fn display_names_operation_and_path() {
        let e = StorageError::new(ErrorKind::PathNotFound, "cannot open", "a/b", "no such folder");
        assert_eq!(e.to_string(), "cannot open a/b: no such folder (path not found)");
        assert!(!e.is_retryable());
        assert!(StorageError::new(ErrorKind::Connectivity, "x", "p", "d").is_retryable());
        let conflict = StorageError::already_exists("cannot commit", "p");
        assert!(conflict.is_already_exists() && conflict.kind() == ErrorKind::Other && !conflict.is_retryable());
    }
}
