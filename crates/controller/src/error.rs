//! The crate's one error type, and how each failure maps to an operator alert.

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
        /// Which setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// The storage target failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Writing the archive failed.
    #[error("archive: {0}")]
    Archive(#[from] ibs_archive::Error),
    /// Reading the backups at the location failed.
    #[error(transparent)]
    Recovery(#[from] ibs_recovery::RecoveryError),
    /// A backup was committed but does not list as complete when read back
    /// (it is left for the operator and retention to see as it lists).
    #[error("backup {id} was written but lists as {state} when read back: {problem}")]
    NotComplete {
        /// The backup.
        id: String,
        /// How it lists.
        state: String,
        /// Why.
        problem: String,
    },
    /// A backup was committed, but reading it back to confirm it lists as
    /// complete failed (the target's failure class is kept). The backup may
    /// well be complete: `list` tells.
    #[error("backup {id} was committed, but reading it back to confirm it lists as complete failed: {source}")]
    Unconfirmed {
        /// The backup.
        id: String,
        /// What failed.
        #[source]
        source: ibs_recovery::RecoveryError,
    },
    /// A backup source failed to capture its data.
    #[error("source {source_name}: {reason}")]
    Source {
        /// The source.
        source_name: String,
        /// What went wrong.
        reason: String,
    },
}

impl ControllerError {
    /// The failure class: the storage crate's five classes. Anything that is
    /// not the target's fault is a general fault (retry).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ControllerError::Storage(e) => e.kind(),
            ControllerError::Archive(ibs_archive::Error::Sink(io)) => io
                .get_ref()
                .and_then(|e| e.downcast_ref::<StorageError>())
                .map_or(ErrorKind::Other, StorageError::kind),
            ControllerError::Recovery(e) | ControllerError::Unconfirmed { source: e, .. } => {
                e.storage_kind().unwrap_or(ErrorKind::Other)
            }
            ControllerError::InvalidSetting {
                setting: "location", ..
            } => ErrorKind::PathNotFound,
            _ => ErrorKind::Other,
        }
    }

    /// The operator alert for this failure.
    pub fn alert(&self) -> Alert {
        match self {
            ControllerError::Storage(e) => e.alert(),
            _ => self.kind().alert(),
        }
    }
}

/// `Result` with [`ControllerError`].
pub type Result<T, E = ControllerError> = std::result::Result<T, E>;
