//! The crate's one error type.

use std::path::PathBuf;

use ibs_storage::{ErrorKind as StorageKind, StorageError};

use crate::version::Version;

/// Every failure of recovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The storage target failed; [`RecoveryError::storage_kind`] gives the failure class.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The archive is unreadable, damaged, or no identity opens it.
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
    /// There is no backup at the location.
    #[error("no backups at {location}")]
    NoBackups {
        /// The backup folder that was searched.
        location: String,
    },
    /// No backup at the location can be restored; `reasons` says why for each.
    #[error("no restorable backup at {location}:\n{}", reasons.join("\n"))]
    NoRestorable {
        /// The backup folder that was searched.
        location: String,
        /// For each backup found, one line saying why it cannot be restored.
        reasons: Vec<String>,
    },
    /// The requested backup id is not at the location.
    #[error("backup {id} not found at {location}")]
    NotFound {
        /// The requested id.
        id: String,
        /// The backup folder that was searched.
        location: String,
    },
    /// The backup is incomplete or damaged and is not restored.
    #[error("backup {id} is {state} and cannot be restored: {problem}")]
    NotRestorable {
        /// Id of the backup asked for.
        id: String,
        /// `incomplete` or `damaged`.
        state: &'static str,
        /// What the catalogue found wrong with it (missing manifest, …).
        problem: String,
    },
    /// The version rule refuses the backup.
    #[error("backup made by version {backup} cannot be restored by version {instance}: {reason}")]
    VersionRule {
        /// Producer version of the backup.
        backup: Version,
        /// Version of the recovering instance.
        instance: Version,
        /// Why, and what to do.
        reason: String,
    },
    /// An entry's name would escape the restore directory or is otherwise unsafe.
    #[error("refusing entry {source_name}/{path}: {reason}")]
    UnsafePath {
        /// Source of the entry.
        source_name: String,
        /// Path of the entry, escaped for display.
        path: String,
        /// Which rule the path breaks (`..` segment, absolute link target, …).
        reason: String,
    },
    /// A restore target already exists (restores never overwrite silently).
    #[error(
        "{} already exists; restore into an empty folder, or replace existing files with `ibs restore --overwrite` (RestoreOptions::overwrite)",
        shown(.0)
    )]
    Exists(PathBuf),
    /// A local file-system operation failed.
    #[error("{action} {}: {source}", shown(path))]
    Io {
        /// The operation, as the message's opening words (`cannot create`, `cannot write`, …).
        action: &'static str,
        /// The local path it failed on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
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
    /// The caller asked for something impossible; the message says what.
    #[error("{0}")]
    Usage(String),
    /// The restore destination, or a folder on its path, is an existing
    /// file (or anything else that is not a folder): a restore writes into a
    /// folder, which it creates when missing.
    #[error(
        "the restore destination must be a folder: {} is {}; give a folder, or a path that does not exist yet",
        shown(path),
        if path == not_a_folder { "a file, not a folder".to_owned() } else { format!("under {}, which is a file, not a folder", shown(not_a_folder)) }
    )]
    DestinationNotAFolder {
        /// The destination asked for.
        path: PathBuf,
        /// The existing path that is not a folder (the destination itself,
        /// or one of its parents).
        not_a_folder: PathBuf,
    },
    /// Another failure of the repository layer (an invalid backup id or
    /// instance name, a failed random generator, …).
    #[error(transparent)]
    Repository(ibs_repository::RepositoryError),
    /// A task of the restore (a file write on the blocking pool) panicked or
    /// was cancelled.
    #[error("a restore task stopped: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The system's random generator failed (a backup id, a temporary name).
    #[error("the system's random generator failed: {0}")]
    Random(#[source] getrandom::Error),
}

impl RecoveryError {
    /// Whether this says the backup itself is damaged or incomplete (as
    /// opposed to the target failing, or the caller asking for something
    /// impossible): the backup's bytes, manifest or structure are not what
    /// they should be.
    pub fn is_damage(&self) -> bool {
        match self {
            RecoveryError::IntegrityMismatch { .. } | RecoveryError::NotRestorable { .. } => true,
            RecoveryError::Archive { source, .. } => matches!(
                source.kind(),
                ibs_archive::ErrorKind::Malformed | ibs_archive::ErrorKind::Damaged
            ),
            _ => false,
        }
    }

    /// The storage failure class, when the storage target is what failed
    /// (directly, or underneath an archive read).
    pub fn storage_kind(&self) -> Option<StorageKind> {
        match self {
            RecoveryError::Storage(e) => Some(e.kind()),
            RecoveryError::Repository(e) => e.storage_kind(),
            _ => None,
        }
    }

    /// An archive reader's failure on backup `id`: the target's own error
    /// when reading from the target failed, the archive's otherwise.
    pub(crate) fn archive(id: impl ToString, error: ibs_archive::ReadError<StorageError>) -> Self {
        match error {
            ibs_archive::ReadError::Read { error, .. } => RecoveryError::Storage(error),
            ibs_archive::ReadError::Archive(source) => RecoveryError::Archive {
                id: id.to_string(),
                source,
            },
        }
    }
}

impl From<ibs_repository::RepositoryError> for RecoveryError {
    /// The repository's failures, each as the recovery failure of the same meaning.
    fn from(e: ibs_repository::RepositoryError) -> Self {
        use ibs_repository::RepositoryError as R;
        match e {
            R::Storage(e) => RecoveryError::Storage(e),
            R::Archive { id, source } => RecoveryError::Archive { id, source },
            R::Manifest { line, reason } => RecoveryError::Manifest { line, reason },
            R::NotComplete { id, state, problem } => RecoveryError::NotRestorable { id, state, problem },
            R::IntegrityMismatch { id, found, expected } => RecoveryError::IntegrityMismatch { id, found, expected },
            R::Random(e) => RecoveryError::Random(e),
            R::Task(e) => RecoveryError::Task(e),
            R::InvalidInput(reason) => RecoveryError::Usage(reason),
            other => RecoveryError::Repository(other),
        }
    }
}

/// `Result` with [`RecoveryError`].
pub type Result<T, E = RecoveryError> = std::result::Result<T, E>;

/// A path as messages show it: escaped as FORMAT.md §14.5 says (names come
/// from backups; a newline or an escape sequence in one must not reach the
/// operator's terminal as is).
pub(crate) fn shown(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    ibs_archive::escape_bytes(path.as_os_str().as_bytes())
}
