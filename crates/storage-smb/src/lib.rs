//! The SMB 3.x storage target of `ibs`, on Samba's own `libsmbclient`.
//!
//! ```no_run
//! use std::time::Duration;
//! use ibs_storage::{Location, ReadTarget, StorageTarget};
//! use ibs_storage_smb::{SmbConfig, SmbCredentials, SmbTarget};
//!
//! # async fn f() -> Result<(), ibs_storage::StorageError> {
//! let location = Location::parse(r"\\fileserver01.contoso.com\AzSBackups")?;
//! // Or SmbCredentials::from_env() (IBS_SMB_USERNAME, IBS_SMB_PASSWORD, IBS_SMB_DOMAIN),
//! // or SmbCredentials::from_auth_file (smbclient's format).
//! let credentials = SmbCredentials::new("CONTOSO", "backup-svc", "secret");
//! let target = SmbTarget::new(SmbConfig::from_location(&location, credentials)?.timeout(Duration::from_secs(30)))?;
//! let capacity = target.capacity().await?;
//! # Ok(()) }
//! ```
//!
//! # Why libsmbclient
//!
//! The client library was chosen on evidence gathered on the CI machine
//! (Debian 12, Samba 4.17): the pure-Rust `smb` crate (0.12) deadlocked on
//! interim `STATUS_PENDING` replies to large writes, sometimes hung after the
//! last entry of a directory listing, and flattened NT status codes into
//! strings; `libsmbclient` (through the `pavao` bindings) showed none of those
//! hangs and runs close to `smbclient`'s throughput. Its costs, and how this
//! crate deals with them:
//!
//! * It is **synchronous**: every operation runs on Tokio's blocking pool; an
//!   upload owns one blocking thread fed through a bounded channel.
//! * It has **one global lock** per process (pavao serialises every call), so
//!   SMB operations of one process never run in parallel.
//! * Its own timeouts may take up to about three times the configured value.
//!   Every call is therefore also bounded here with [`SmbConfig::timeout`]
//!   (see [time limits](#time-limits) for exactly what that bounds). A frozen
//!   or silent server never hangs a caller.
//! * It needs the system library: `libsmbclient-dev` on Debian to build,
//!   `libsmbclient` to run.
//!
//! # Time limits
//!
//! What [`SmbConfig::timeout`] (default 30 s) bounds, exactly:
//!
//! * **Each call on its own.** Every [`StorageTarget`](ibs_storage::StorageTarget) method, and `write`,
//!   `commit` and `abort` of an upload, returns within the limit of its own
//!   start (plus the scheduler's delay). When the limit passes, the call fails
//!   at once with a retryable **connectivity** error whose text names that
//!   limit ("no answer from … within 30 s, the time limit of each SMB
//!   operation").
//! * **Not a sequence of calls.** Helpers such as `put_bytes` and `read_all`,
//!   and a backup job, make several calls, each with its own limit. A stalled
//!   upload fails its `write` after the limit; its `abort` and any clean-up
//!   after it wait up to the limit each. A failed job can therefore take a few
//!   times the limit, while every message names the per-call limit.
//! * **Not a piece already handed over.** `write` returns once its piece is
//!   queued; the upload thread sends it while the caller prepares the next one.
//!   A stalled piece is reported by the *next* `write` (or `commit`), after that
//!   call's own limit, when the piece has waited longer than the limit; the
//!   message then also says for how long ("a … -byte piece written before has
//!   had no answer for … s").
//! * **Not the work a timed-out call leaves behind.** Its thread stays blocked
//!   in libsmbclient until the server answers or libsmbclient's own timeout
//!   (set to the same limit, at least 1 s, and taking up to about three times
//!   that) fires. Meanwhile libsmbclient's process-wide lock is held: later
//!   calls queue behind it and fail at their own limits. A `commit` that timed
//!   out may still complete on the server afterwards, so the object can appear
//!   although the caller was told the commit failed (the controller writes a
//!   backup's manifest only after its archive committed, so such an archive is
//!   an incomplete backup, never one that looks complete).
//!
//! # Encryption
//!
//! [`Encryption::Request`] (the default) asks for SMB 3 encryption: a server
//! that offers it (`server smb encrypt = desired` or `required`) encrypts the
//! session with AES; a server that does not carries it unencrypted. That is the
//! design's rule (prefer, fall back), and it is what libsmbclient can honestly
//! promise: its "require" level does not fail closed against a server without
//! encryption, so this crate does not offer it. Backups are encrypted at rest
//! by the archive regardless; SMB encryption protects the *metadata* (names,
//! sizes) and the manifest in transit. The protocol is pinned to SMB 3.0 or
//! newer, so signing is always on.
//!
//! # Atomic commit
//!
//! An upload is written to a temporary name in the same folder
//! (`.NAME.ibs-partial-…`) and renamed into place after the file was closed
//! (every write acknowledged by the server). For
//! [`CommitMode::CreateNew`](ibs_storage::CommitMode::CreateNew) the final name is checked just before the rename;
//! SMB's rename cannot refuse to replace through libsmbclient, so two writers
//! racing for the same name within that instant could both succeed — the
//! controller's single-job rule and unique backup ids make that impossible in
//! practice.
//!
//! # Failure classes
//!
//! errno values from libsmbclient map through [`ibs_storage::classify_io`].
//! Where one errno covers two situations, a probe tells them apart: on
//! "not found", whether the share itself exists (a wrong share name and a
//! missing folder are both *path* failures, with different descriptions); on
//! "access denied", whether the share root can be listed at all (no: the
//! login failed — *authentication*; yes: the account lacks permission on that
//! folder — also *authentication*, described as a permission problem).
//! Every error's alert tells the operator what to check at a share (port
//! 445, the share name and its permissions: [`ibs_storage::Remediation`]).

mod config;
mod credentials;
mod error;
mod target;
mod writer;

pub use config::{Encryption, SmbConfig};
pub use credentials::{CREDENTIALS_NEEDED, SmbCredentials};
pub use target::SmbTarget;
