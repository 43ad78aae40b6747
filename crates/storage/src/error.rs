//! `StorageError` and the failure classes an operator sees.
//!
//! Rules: every failure of every backend becomes one [`StorageError`] whose
//! [`ErrorKind`] is exactly one class: one of the five failure classes of the
//! target ([`ErrorKind::ALL`]), [`ErrorKind::PermissionDenied`] (a local
//! folder the user running ibs may not use: the authentication class's
//! counterpart where no credentials are involved), or one of the two
//! outcomes of the request itself ([`ErrorKind::AlreadyExists`] for a refused
//! no-overwrite commit, [`ErrorKind::InvalidInput`] for a malformed name); the error says which
//! operation failed on which path; [`StorageError::is_retryable`] says whether
//! trying again can help; [`StorageError::alert`] gives the operator-facing
//! title, description and remediation, the remediation in the words of the
//! backend that failed where it supplied them ([`Remediation`]). Errors never
//! carry credentials.

use std::borrow::Cow;
use std::fmt;

/// The failure class: what an operator must do differs for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The target has no room for what is being written.
    OutOfCapacity,
    /// The target cannot be reached, or stopped answering.
    Connectivity,
    /// The location or a path under it does not exist or cannot be resolved.
    PathNotFound,
    /// The credentials were refused, or do not grant access.
    Authentication,
    /// A local folder (or its file system) refuses the user running ibs:
    /// its owner, mode or ACLs, an immutable folder, a read-only mount. No
    /// credentials are involved, so it is not [`ErrorKind::Authentication`];
    /// the error names the folder and the user.
    PermissionDenied,
    /// A no-overwrite commit ([`CommitMode::CreateNew`](crate::CommitMode::CreateNew))
    /// found an object already there, and left it untouched.
    AlreadyExists,
    /// A name the caller gave cannot be used: a path segment that is empty,
    /// `.` or `..`, or holds a `/`, `\` or control character; an instance
    /// FQDN or region that is not a DNS label. Not the target's fault: the
    /// same request fails the same way anywhere.
    InvalidInput,
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
    /// The five failure classes of a target (what fault injection and the
    /// operator's alert tables go through). [`ErrorKind::AlreadyExists`] and
    /// [`ErrorKind::InvalidInput`] are not among them: they say what was
    /// wrong with the request, not with the target.
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
                    (the server or service up and reachable, firewall, proxy and DNS), then retry the backup.",
                ),
            },
            ErrorKind::PathNotFound => Alert {
                kind: self,
                title: Cow::Borrowed("Backup storage path cannot be resolved"),
                description: Cow::Borrowed("The path to the storage location does not exist or cannot be resolved."),
                remediation: Cow::Borrowed(
                    "Check that the storage location and the folder in it exist and can be opened from \
                    another machine, then update the backup storage path in the backup settings.",
                ),
            },
            ErrorKind::Authentication => Alert {
                kind: self,
                title: Cow::Borrowed("Backup storage location refused the credentials"),
                description: Cow::Borrowed(
                    "Authentication to the storage location failed, or the account has no access.",
                ),
                remediation: Cow::Borrowed(
                    "Check the credentials for the storage location, and that the account may read, write \
                    and delete there; update the credentials in the backup settings.",
                ),
            },
            ErrorKind::PermissionDenied => Alert {
                kind: self,
                title: Cow::Borrowed("Backup storage folder refuses the user running ibs"),
                description: Cow::Borrowed(
                    "The user running ibs has no permission to read, write or delete in the folder the \
                    message names, or its file system is read-only.",
                ),
                remediation: Cow::Borrowed(
                    "Give the user running ibs permission to read, write and delete in the folder the message \
                    names (owner, mode, ACLs; not immutable), or run ibs as a user who has it, or choose \
                    another folder; check that the file system is not mounted read-only.",
                ),
            },
            ErrorKind::AlreadyExists => Alert {
                kind: self,
                title: Cow::Borrowed("Backup storage location already holds an object of that name"),
                description: Cow::Borrowed(
                    "A write that must not replace anything found an object of the same name already at \
                    the storage location, and left it untouched.",
                ),
                remediation: Cow::Borrowed(
                    "Retry the backup. If the problem persists, check that no other system writes backups \
                    of this instance to the same location, collect the logs and escalate to support.",
                ),
            },
            ErrorKind::InvalidInput => Alert {
                kind: self,
                title: Cow::Borrowed("Backup setting is not valid"),
                description: Cow::Borrowed(
                    "A name given to the backup (a folder of the storage path, the instance's external \
                    domain FQDN or region) cannot be used.",
                ),
                remediation: Cow::Borrowed(
                    "Correct the name the message quotes in the backup settings, then retry the backup.",
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
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Other => "general fault",
        })
    }
}

/// What an operator checks at one kind of storage, in its backend's words:
/// the remediation of the classes whose checks differ between backends (an
/// SMB share's port 445 and share permissions, an object store's endpoint,
/// HTTPS and keys, a local directory's mount and permissions). A backend tags
/// its errors with its own ([`StorageError::with_remediation`]) and their
/// [`StorageError::alert`] gives it; other classes, and untagged errors, keep
/// the generic texts of [`ErrorKind::alert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remediation {
    /// For [`ErrorKind::Connectivity`].
    pub connectivity: &'static str,
    /// For [`ErrorKind::PathNotFound`].
    pub path_not_found: &'static str,
    /// For [`ErrorKind::Authentication`].
    pub authentication: &'static str,
}

impl Remediation {
    /// The text for `kind`, if this backend words it itself.
    pub fn for_kind(&self, kind: ErrorKind) -> Option<&'static str> {
        match kind {
            ErrorKind::Connectivity => Some(self.connectivity),
            ErrorKind::PathNotFound => Some(self.path_not_found),
            ErrorKind::Authentication => Some(self.authentication),
            _ => None,
        }
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
    remediation: Option<&'static Remediation>,
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
            remediation: None,
            source: None,
        }
    }

    /// What went wrong, without the operation, the path and the class
    /// (what a caller shows beside its own name for the value, such as a
    /// command-line flag).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// A commit refused because an object already exists at `path`
    /// ([`ErrorKind::AlreadyExists`], not retryable).
    pub fn already_exists(op: &'static str, path: impl Into<String>) -> Self {
        StorageError::new(ErrorKind::AlreadyExists, op, path, "an object already exists there")
    }

    /// A name that cannot be used ([`ErrorKind::InvalidInput`], not retryable):
    /// `what` is what it was meant to be (such as `"invalid path segment"`),
    /// `why` what is wrong with it.
    pub fn invalid_input(what: &'static str, name: impl Into<String>, why: impl Into<String>) -> Self {
        StorageError::new(ErrorKind::InvalidInput, what, name, why)
    }

    /// Attaches the error that caused this one (the system's, an SDK's): kept
    /// as [`source`](std::error::Error::source), not copied into the message.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Tags the error with its backend's [`Remediation`], which its
    /// [`StorageError::alert`] then gives.
    pub fn with_remediation(mut self, remediation: &'static Remediation) -> Self {
        self.remediation = Some(remediation);
        self
    }

    /// Overrides whether a retry can help (by default connectivity and other
    /// faults are retryable, the other classes not).
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

    /// The path the operation was on.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The operator-facing alert for this error's class, with the remediation
    /// of the backend that failed where it supplied one ([`Remediation`]).
    pub fn alert(&self) -> Alert {
        let mut alert = self.kind.alert();
        if let Some(text) = self.remediation.and_then(|r| r.for_kind(self.kind)) {
            alert.remediation = Cow::Borrowed(text);
        }
        alert
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
        assert!(conflict.kind() == ErrorKind::AlreadyExists && !conflict.is_retryable());
        assert!(!StorageError::new(ErrorKind::PermissionDenied, "x", "p", "d").is_retryable());
        let bad = StorageError::invalid_input("invalid path segment", "a/b", "contains '/'");
        assert!(bad.kind() == ErrorKind::InvalidInput && !bad.is_retryable());
    }

    #[test]
    fn the_classes_outside_all_have_alerts_of_their_own() {
        for kind in [
            ErrorKind::AlreadyExists,
            ErrorKind::InvalidInput,
            ErrorKind::PermissionDenied,
        ] {
            let alert = kind.alert();
            assert_eq!(alert.kind, kind);
            assert!(!alert.title.is_empty() && !alert.description.is_empty() && !alert.remediation.is_empty());
            assert!(!ErrorKind::ALL.contains(&kind));
        }
    }

    #[test]
    fn a_backend_words_its_own_remediation() {
        static HERE: Remediation = Remediation {
            connectivity: "check the cable",
            path_not_found: "check the folder",
            authentication: "check the key",
        };
        let e = StorageError::new(ErrorKind::Connectivity, "cannot read", "p", "refused").with_remediation(&HERE);
        assert_eq!(e.alert().remediation, "check the cable");
        assert_eq!(e.alert().title, ErrorKind::Connectivity.alert().title);
        // Classes the backend does not word keep the generic text.
        let full = StorageError::new(ErrorKind::OutOfCapacity, "cannot write", "p", "full").with_remediation(&HERE);
        assert_eq!(full.alert(), ErrorKind::OutOfCapacity.alert());
        // Untagged errors name no backend's port.
        assert!(!ErrorKind::Connectivity.alert().remediation.contains("445"));
    }
}
