//! The crate's one error type.

use ibs_storage::{ErrorKind as StorageKind, StorageError};

/// Every failure of the repository layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The storage target failed; [`RepositoryError::storage_kind`] gives the failure class.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A backup's archive is unreadable or damaged.
    #[error("backup {id}: {source}")]
    Archive {
        /// Id of the backup whose archive failed (its folder's name).
        id: String,
        /// What the archive reader said.
        #[source]
        source: ibs_archive::Error,
    },
    /// A manifest could not be parsed.
    #[error("manifest line {line}: {reason}")]
    Manifest {
        /// Line number (1-based; 0 when not tied to a line).
        line: usize,
        /// Which rule the manifest breaks (missing field, bad value, …).
        reason: String,
    },
    /// A value given by the caller is not valid here: a backup id, an
    /// instance's fqdn or region, a label that cannot be recorded.
    #[error("{0}")]
    InvalidInput(String),
    /// A task on the blocking pool (hashing an archive) panicked or was
    /// cancelled with its runtime.
    #[error("a repository task stopped: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The operating system's random generator failed (backup ids carry random bits).
    #[error("the random generator failed: {0}")]
    Random(#[source] getrandom::Error),
    /// The backup is incomplete or damaged.
    #[error("backup {id} is {state} and cannot be restored: {problem}")]
    NotComplete {
        /// Id of the backup asked for.
        id: String,
        /// `incomplete` or `damaged`.
        state: &'static str,
        /// What the catalogue found wrong with it (missing manifest, …).
        problem: String,
    },
    /// The archive's bytes do not match the SHA-256 in its manifest.
    #[error(
        "backup {id} is damaged: its archive's SHA-256 is {found}, its manifest says {expected} (changed on the share after it was written)"
    )]
    IntegrityMismatch {
        /// Id of the backup whose archive changed.
        id: String,
        /// The SHA-256 of the archive as read (hex).
        found: String,
        /// The SHA-256 its manifest records (hex).
        expected: String,
    },
    /// The backup was committed but reading it back failed: it may be complete.
    #[error("backup {id} was committed but could not be read back: {source}")]
    Unconfirmed {
        /// Id of the backup just committed.
        id: String,
        /// Why it could not be read back.
        #[source]
        source: Box<RepositoryError>,
    },
}

impl RepositoryError {
    /// Whether this says the backup itself is damaged or incomplete (as
    /// opposed to the target failing, or the caller asking for something
    /// impossible).
    pub fn is_damage(&self) -> bool {
        match self {
            RepositoryError::IntegrityMismatch { .. } | RepositoryError::NotComplete { .. } => true,
            RepositoryError::Archive { source, .. } => matches!(
                source.kind(),
                ibs_archive::ErrorKind::Malformed | ibs_archive::ErrorKind::Damaged
            ),
            _ => false,
        }
    }

    /// The storage failure class, when the storage target is what failed.
    pub fn storage_kind(&self) -> Option<StorageKind> {
        match self {
            RepositoryError::Storage(e) => Some(e.kind()),
            RepositoryError::Unconfirmed { source, .. } => source.storage_kind(),
            _ => None,
        }
    }

    /// An archive reader's failure on backup `id`: the target's own error
    /// when reading from the target failed, the archive's otherwise.
    pub(crate) fn archive(id: impl ToString, error: ibs_archive::ReadError<StorageError>) -> Self {
        match error {
            ibs_archive::ReadError::Read { error, .. } => RepositoryError::Storage(error),
            ibs_archive::ReadError::Archive(source) => RepositoryError::Archive {
                id: id.to_string(),
                source,
            },
        }
    }
}

/// `Result` with [`RepositoryError`].
pub type Result<T, E = RepositoryError> = std::result::Result<T, E>;
