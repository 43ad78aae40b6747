//! Where ibs backups are stored, and how storage failures reach an operator.
//!
//! ```
//! use bytes::Bytes;
//! use ibs_storage::{CommitMode, ErrorKind, LocalTarget, ObjectPath, ReadTarget, ReadTargetExt, StorageTarget};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ibs_storage::StorageError> {
//! let dir = tempfile::tempdir().unwrap();
//! let target = LocalTarget::new(dir.path())?;
//! let folder = ObjectPath::parse("azurestack.contoso.com/westus/MASBackup/b1")?;
//! target.create_dir_all(&folder).await?;
//!
//! // Stream an object; it appears only when committed.
//! let mut upload = target.put(&folder.child("archive.ibs")?, CommitMode::CreateNew).await?;
//! upload.write(Bytes::from_static(b"frames...")).await?;
//! upload.commit().await?;
//! assert_eq!(target.list_all(&folder).await?.len(), 1);
//!
//! // Every failure carries its class and the alert an operator sees.
//! let err = target.head(&folder.child("missing")?).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::PathNotFound);
//! println!("{}: {}", err.alert().title, err.alert().remediation);
//! # Ok(()) }
//! ```
//!
//! * [`ReadTarget`] and [`StorageTarget`]: small object-safe async traits —
//!   the read half (range reads, listing, capacity), all a recovery tool
//!   needs, and the writes on top (streaming put with an atomic commit,
//!   delete, folders) — with helpers in [`ReadTargetExt`] and [`StorageTargetExt`].
//! * [`StorageError`] and its [`ErrorKind`]: every failure of every backend is
//!   exactly one of five classes — out of capacity, connectivity, path not
//!   found, authentication, other — or permission denied (a local folder
//!   that refuses the user running ibs, naming both), or one of two outcomes
//!   of the request itself — already exists, invalid input — each with an operator-facing
//!   [`Alert`] (title, what happened, remediation in the failing backend's
//!   words: [`Remediation`]) and a retry hint.
//! * [`Location`], [`ObjectPath`]: UNC / `smb://` / local / object-store
//!   locations, and the paths inside them (where backups sit at a location
//!   is `ibs-repository`'s business).
//! * Backends: [`LocalTarget`] (a directory), [`MemoryTarget`] (for tests), and
//!   [`FaultyTarget`], which wraps any target and injects faults.
//! * [`ObservedTarget`]: wraps any target so that every call is a `tracing`
//!   span (operation, path, bytes, elapsed, outcome) and an optional
//!   [`CallObserver`] hears each call start and end — a command shows a
//!   spinner while a call to a stalled share waits.
//! * `conformance` (a public module behind the feature of that name): the scenarios every backend passes.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod faulty;
mod layout;
mod local;
mod memory;
mod observed;
mod target;

pub use error::{Alert, ErrorKind, Remediation, Result, StorageError, classify_io};
pub use faulty::{FaultPlan, FaultyTarget};
pub use layout::{Location, ObjectPath, ObjectProvider};
pub use local::LocalTarget;
pub use memory::MemoryTarget;
pub use observed::{CallEvent, CallObserver, CallPhase, ObservedTarget, Operation};
pub use target::{
    Capacity, CommitMode, ObjectMeta, ObjectWriter, PARTIAL_MARKER, ReadTarget, ReadTargetExt, StorageTarget,
    StorageTargetExt, check_range, is_partial_name, partial_path,
};
