//! The crate's one error type, and how each failure maps to an operator alert.
//!
//! Rules: only a failure of the storage target (directly, or carried through
//! a catalogue read) gets one of the storage classes and its alert. The
//! archive never sees the target: the job's encoder is sans-IO and its
//! output goes to the upload task, whose errors are [`StorageError`]s as
//! they were ([`ControllerError::Storage`]). A backup source that cannot be read is
//! [`ControllerError::Source`]: a general fault whose alert names the source
//! and the path and talks about the source, never about the storage location.
//! Anything else is a general fault whose alert quotes the error.

use std::borrow::Cow;
use std::path::PathBuf;

/// The cause of a [`ControllerError::Source`]: whatever error the source had.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

use ibs_storage::{Alert, ErrorKind, StorageError};

/// Every failure of the controller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// A backup job is already running; at most one runs at a time.
    #[error("a backup is already running; wait for it to finish (see the job status)")]
    AlreadyRunning,
    /// The system is in a maintenance window; on-demand backups are refused.
    #[error(
        "the system is in a maintenance window (update or field-replaceable-unit work); backups resume when it ends"
    )]
    Maintenance,
    /// Backup has not been enabled (no settings yet).
    #[error("backup is not enabled: configure and enable it first")]
    NotEnabled,
    /// A setting is invalid; the message says which and why.
    #[error("invalid setting {setting}: {reason}")]
    InvalidSetting {
        /// The setting's name as the operator knows it (`source`, `exclude`,
        /// `certificate`, `credentials`, …).
        setting: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The storage target failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Writing the archive failed.
    #[error("archive: {0}")]
    Archive(#[from] ibs_archive::Error),
    /// Reading or committing the backups at the location failed (a storage
    /// failure of the repository layer arrives as [`ControllerError::Storage`]).
    #[error(transparent)]
    Repository(ibs_repository::RepositoryError),
    /// A backup was committed but does not list as complete when read back
    /// (it is left for the operator and retention to see as it lists).
    #[error("backup {id} was written but lists as {state} when read back: {problem}")]
    NotComplete {
        /// Id of the backup just committed.
        id: String,
        /// The state it lists in (`incomplete` or `damaged`).
        state: String,
        /// What the catalogue found wrong with it.
        problem: String,
    },
    /// A backup was committed, but reading it back to confirm it lists as
    /// complete failed (the target's failure class is kept). The backup may
    /// well be complete: `list` tells.
    #[error("backup {id} was committed, but reading it back to confirm it lists as complete failed: {source}")]
    Unconfirmed {
        /// Id of the backup just committed.
        id: String,
        /// Why reading it back failed.
        #[source]
        source: ibs_repository::RepositoryError,
    },
    /// A backup source failed to capture its data (not a storage fault).
    #[error("source {source_name}: {}: {source}", path.display())]
    Source {
        /// Name of the failed source (for the appliance, one of [`crate::source::names`]).
        source_name: String,
        /// The file or folder of the source that failed (for a source that is
        /// not a folder, whatever names the failed item best).
        path: PathBuf,
        /// What went wrong: the source's own error (for [`DirectorySource`](crate::DirectorySource),
        /// what it was doing and the system's error text).
        #[source]
        source: BoxError,
    },
    /// The location was out of capacity; retention deleted `freed` (oldest
    /// first, never the newest intact backup) and the second attempt failed
    /// too. The failure class is the second attempt's.
    #[error("the location was out of capacity; deleted {} to make room, then the second attempt failed: {source}", freed.join(", "))]
    RetryFailed {
        /// The backups deleted to make room.
        freed: Vec<String>,
        /// Why the second attempt failed.
        #[source]
        source: Box<ControllerError>,
    },
    /// The job itself failed (an internal task stopped); retrying can help.
    #[error("the backup job failed: {reason}; retry the backup")]
    Internal {
        /// What broke inside the job (the upload stopped, a source wrote
        /// another source's entry), for the log and the alert.
        reason: String,
    },
    /// A task of the job (the upload, a file read, the folder walk) panicked
    /// or was cancelled; retrying can help.
    #[error("the backup job failed: its {task} task stopped: {source}; retry the backup")]
    Task {
        /// The task's name as the message shows it (`upload`, `file read`, `folder walk`, …).
        task: &'static str,
        /// Its panic or cancellation.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The system's random generator failed (the write probe's name).
    #[error("the system's random generator failed: {0}")]
    Random(#[source] getrandom::Error),
    /// The capture was stopped ([`Stop::stop`](crate::Stop::stop)): what
    /// the attempt had written was removed, as for any failed attempt.
    #[error(
        "the backup was stopped ({reason}) before it was complete; what it had written was removed (anything a failing storage kept lists as incomplete until retention removes it)"
    )]
    Stopped {
        /// Why, as the caller said (`SIGTERM`, `service shutting down`, …).
        reason: String,
    },
}

impl ControllerError {
    /// A [`ControllerError::Source`]: source `source_name` failed on `path`
    /// because of `cause`, the source's own error, or text saying what went
    /// wrong (a `String` or `&str` becomes an error of that text).
    pub fn source(source_name: impl Into<String>, path: impl Into<PathBuf>, cause: impl Into<BoxError>) -> Self {
        ControllerError::Source {
            source_name: source_name.into(),
            path: path.into(),
            source: cause.into(),
        }
    }

    /// The failure class, one of the storage crate's ([`ErrorKind`]). Anything that is
    /// not the target's fault is a general fault (retry).
    pub fn kind(&self) -> ErrorKind {
        self.storage_kind().unwrap_or(ErrorKind::Other)
    }

    /// The storage class when the storage target (or the location setting) is at fault.
    fn storage_kind(&self) -> Option<ErrorKind> {
        match self {
            ControllerError::RetryFailed { source, .. } => source.storage_kind(),
            ControllerError::Storage(e) => Some(e.kind()),
            ControllerError::Repository(e) | ControllerError::Unconfirmed { source: e, .. } => e.storage_kind(),
            ControllerError::InvalidSetting {
                setting: "location", ..
            } => Some(ErrorKind::PathNotFound),
            _ => None,
        }
    }

    /// The operator alert for this failure: the storage class's alert for a
    /// storage failure, the source's own alert for a source failure, and a
    /// general-fault alert quoting the error for the rest.
    pub fn alert(&self) -> Alert {
        use ibs_repository::RepositoryError;
        match self {
            // The storage error itself where it is at hand: its alert words
            // the failing backend's remediation.
            ControllerError::Storage(e)
            | ControllerError::Repository(RepositoryError::Storage(e))
            | ControllerError::Unconfirmed {
                source: RepositoryError::Storage(e),
                ..
            } => e.alert(),
            ControllerError::RetryFailed { source, .. } => source.alert(),
            ControllerError::Source {
                source_name,
                path,
                source: reason,
            } => Alert {
                kind: ErrorKind::Other,
                title: Cow::Owned(format!("Backup source {source_name} could not be read")),
                description: Cow::Owned(format!(
                    "The backup failed because source {source_name} could not be captured: {}: {reason}.",
                    path.display()
                )),
                remediation: Cow::Owned(format!(
                    "Check that {} (source {source_name}) exists, is what the source expects (a folder for a \
                     source root, a regular file for a file) and can be read by the backup service; fix it or \
                     exclude it from the source, then retry the backup.",
                    path.display()
                )),
            },
            _ => match self.storage_kind() {
                Some(storage) => storage.alert(),
                None => Alert {
                    kind: ErrorKind::Other,
                    title: Cow::Borrowed("Backup failed because of a general fault"),
                    description: Cow::Owned(format!("The backup failed: {self}.")),
                    remediation: Cow::Borrowed(
                        "Retry the backup. If the problem persists, collect the logs and escalate to support.",
                    ),
                },
            },
        }
    }
}

impl From<ibs_repository::RepositoryError> for ControllerError {
    fn from(e: ibs_repository::RepositoryError) -> Self {
        match e {
            ibs_repository::RepositoryError::Storage(e) => ControllerError::Storage(e),
            ibs_repository::RepositoryError::Random(e) => ControllerError::Random(e),
            ibs_repository::RepositoryError::Task(e) => ControllerError::Task {
                task: "archive check",
                source: e,
            },
            other => ControllerError::Repository(other),
        }
    }
}

/// `Result` with [`ControllerError`].
pub type Result<T, E = ControllerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_error_keeps_its_cause_and_text_still_reads_as_before() {
        let cause = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied by policy");
        let err = ControllerError::source("ca", "/etc/ca", cause);
        let kept = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            kept.map(std::io::Error::kind),
            Some(std::io::ErrorKind::PermissionDenied)
        );
        assert_eq!(err.to_string(), "source ca: /etc/ca: denied by policy");
        let text = ControllerError::source("ca", "/etc/ca", format!("cannot read the file: {}", "gone"));
        assert_eq!(text.to_string(), "source ca: /etc/ca: cannot read the file: gone");
        assert_eq!(text.kind(), ErrorKind::Other);
        assert!(text.alert().description.contains("cannot read the file: gone"));
    }
}
