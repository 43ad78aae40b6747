//! The reference controller: what an operator's backup service runs.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ibs_controller::{BackupSource, DirectorySource, JobSpec, run_job};
//! use ibs_envelope::{Certificate, Password, keygen};
//! use ibs_repository::InstanceLayout;
//! use ibs_storage::{LocalTarget, StorageTarget};
//!
//! # let pair = keygen::generate(&keygen::KeygenOptions::new("doc", 1_763_769_600), &Password::new("pw"))?;
//! # let state = tempfile::tempdir()?;
//! # std::fs::write(state.path().join("assignments.json"), br#"[{"role":"Owner"}]"#)?;
//! let share = tempfile::tempdir()?;
//! let spec = JobSpec {
//!     target: Arc::new(LocalTarget::new(share.path())?),
//!     instance: InstanceLayout::new("azs.contoso.com", "local")?,
//!     certificates: vec![Certificate::parse(&pair.cer)?], // the operator's .cer
//!     producer_version: "1.2408.0".into(),
//!     policy: Default::default(),
//!     checks: Default::default(),
//!     signer: None,
//! };
//! // One source: a folder of infrastructure state, read consistently.
//! let sources: Vec<Arc<dyn BackupSource>> = vec![Arc::new(DirectorySource::new("rbac", state.path()))];
//! let summary = run_job(&spec, &sources, 1_763_769_600).await?;
//! assert_eq!(summary.entries, 1);
//! println!("backup {} committed: {} bytes", summary.id, summary.archive_bytes);
//! # Ok(()) }
//! ```
//!
//! * [`BackupSource`]: a named source yields its entries while the system keeps
//!   running; [`DirectorySource`] reads any folder consistently, and
//!   [`source::names`] names the standard infrastructure sources so an
//!   embedding service registers one implementation per source.
//! * [`Settings`]: location, [`Access`] (what its backend needs: SMB
//!   credentials, object-store options), certificate, fqdn/region, schedule
//!   and retention; [`Controller::enable`] checks them against the real
//!   location. Backends are features: `smb` (default) and `object-store`; a
//!   location whose backend is not compiled in is a settings error.
//! * [`Controller::run`]: at most one job at a time; scheduled jobs are skipped
//!   and on-demand requests refused in a maintenance window. A job captures the
//!   sources into an archive streamed to the target, commits it, writes the
//!   manifest last (the backup lists as complete only then) and runs retention;
//!   on a full target it frees space and retries once.
//! * [`JobRecord`]: history and status, failures classified with the storage
//!   crate's failure classes and their alerts. Only storage failures get the
//!   storage alerts; a source that cannot be read is a general fault whose
//!   alert names the source and the path.
//! * Logs: the controller uses `tracing` and never prints. A job runs in a
//!   `backup job` span (instance and location), each attempt in an `attempt`
//!   span (the backup's id), with events at capture and upload start and
//!   end, commit, an out-of-capacity retry, retention's checks and
//!   decisions and each deletion (`retention` and `prune` spans); every
//!   storage call of a target from [`open_target`] is a span of its own
//!   (`ibs_storage::ObservedTarget`), and [`open_target_observed`] also
//!   reports each call's start and end to an observer (a command's spinner
//!   while a stalled share keeps a call waiting). No event carries file
//!   contents, keys or credentials.
//!
//! Live capture: a file deleted during the backup is skipped, and one that
//! keeps changing is captured as last read; both are reported as
//! [`CaptureWarning`]s (the first [`Warnings::KEPT`] kept, the rest counted)
//! and the job ends [`JobOutcome::SucceededWithWarnings`]. An embedder who
//! prefers a failure asks for [`DirectorySource::strict`].
//!
//! A local location inside a source: [`Settings::prepare_source`] excludes
//! the location's `MASBackup` folder from the source rather than refusing
//! the pair. We chose exclusion over an error because a source such as
//! `/var` with the backups at `/var/backups` is a reasonable setup that an
//! error would make impossible without hand-written excludes, and the
//! excluded folder holds only what this library wrote (OEM siblings of
//! `MASBackup` are still captured). The reverse, a source inside the
//! `MASBackup` folder, is refused: it can only be a mistake. A location on
//! a share that is also mounted inside a source cannot be recognised; exclude
//! the mount with [`DirectorySource::exclude`].
//!
//! Crash safety: a job killed at any point leaves earlier backups untouched and
//! no backup that lists as complete (the manifest, put with `CreateNew`, is the
//! last write). The tests prove it by failing every storage call of a small
//! backup in turn, and by killing a real `ibs backup` process mid-write;
//! `tests/faults.rs` does it for every call of a whole job (validation to
//! retention, with the out-of-capacity retry) and of a prune, in each of the
//! five failure classes, on the in-memory and the local target, and for
//! lost replies (a call that took effect but reported an error).

mod controller;
mod error;
pub mod job;
pub mod source;
mod target;

pub use controller::{
    Controller, JobOutcome, JobRecord, Settings, Trigger, run_job, run_job_with_progress, validate, validate_target,
};
pub use error::{ControllerError, Result};
pub use job::{
    Applied, CheckMemo, DamagedBackup, JobSpec, JobSummary, Retention, RetentionFailure, SignerTrust, UntrustedBackup,
};
pub use source::{
    BackupSource, CaptureProblem, CaptureWarning, DirectorySource, EntryMeta, EntryPath, EntrySink, Extent, Stop,
    Warnings,
};
pub use target::{Access, open_target, open_target_observed};
