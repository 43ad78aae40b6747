//! The recovery reader: what an operator (or a test harness) uses on the worst
//! day.
//!
//! The API is async over any [`ibs_storage::ReadTarget`] (it never writes to the
//! location); [`blocking`] wraps
//! it for test harnesses and tools:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use ibs_archive::{ArchiveWriter, EntryMeta, WriterOptions};
//! # use ibs_envelope::{keygen, Certificate, Identity, Password};
//! # use ibs_repository::{BackupId, CommitDetails, InstanceLayout, commit_backup};
//! # use ibs_storage::{LocalTarget, StorageTarget};
//! # let share = tempfile::tempdir()?;
//! # let password = Password::new("pw");
//! # let pair = keygen::generate(&keygen::KeygenOptions::new("doc", 1_763_769_600), &password)?;
//! # let cert = Certificate::parse(&pair.cer)?;
//! # let mut w = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default().producer_version("1.2408.0").created(1_763_769_600))?;
//! # w.add_entry(EntryMeta::new("rbac", "assignments.json"), &br#"[{"role":"Owner"}]"#[..])?;
//! # let (archive, summary) = w.finish()?;
//! # let target: std::sync::Arc<dyn StorageTarget> = std::sync::Arc::new(LocalTarget::new(share.path())?);
//! # let details = CommitDetails { archive_id: summary.archive_id, producer_version: "1.2408.0".into(), recipients: vec![cert.thumbprint()] };
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(commit_backup(
//! #     &target, &InstanceLayout::new("azs.contoso.com", "local")?, BackupId::generate(1_763_769_600)?, archive.into(), details))?;
//! # let pfx = Identity::from_pkcs12(&pair.pfx, &password)?;
//! use ibs_recovery::{Choice, blocking::Recovery};
//!
//! // A share copied to a local directory, and the operator's .pfx:
//! let recovery = Recovery::local(share.path(), "azs.contoso.com", "local")?;
//! let backup = recovery.open(&Choice::Newest, &[&pfx])?;
//! assert_eq!(backup.sources(), ["rbac"]);
//! assert_eq!(backup.read("rbac", "assignments.json")?, br#"[{"role":"Owner"}]"#);
//! backup.verify()?;
//! # Ok(()) }
//! ```
//!
//! 1. **Catalogue** a location ([`Recovery::catalogue`]): every backup of an
//!    instance with id, time, size, producer version, recipients' thumbprints
//!    and state — complete, incomplete (no commit marker) or damaged — without
//!    any private key (`ibs-repository` describes what is on the share).
//! 2. **Choose** ([`Recovery::choose`]): the newest restorable backup, or a given
//!    id, under the [version rule](version).
//! 3. **Open** ([`Recovery::open`]) with one or more `.pfx` identities: the one
//!    whose thumbprint matches a recipient is used; if none does, the error lists
//!    the thumbprints the backup needs. A signed backup's signature is verified
//!    first; given trusted controller keys ([`Recovery::trust_signers`]) a
//!    backup that is unsigned (a format version 1 one is accepted with
//!    [`Recovery::allow_unsigned`], an unsigned version 2 one never), signed by
//!    another key, or badly signed is refused, naming the signer found.
//! 4. **Check** without a key ([`Recovery::check_integrity`]): the whole archive read and
//!    compared with its manifest's size and SHA-256 — damage a catalogue
//!    cannot see. **Verify** ([`Backup::verify`]) does that too, then every
//!    frame tag and content hash with the key, streaming, writing nothing
//!    (its [`VerifyReport`] says all it checked); **read** one entry ([`Backup::stream`], [`Backup::read`])
//!    with range reads of its frames only; **restore** all or some sources to a
//!    directory ([`Backup::restore_to`], the [`restore`] module: files,
//!    folders, links, modes, owners, times, holes, extended attributes),
//!    refusing names that would escape it, never writing through a link,
//!    never overwriting silently, placing nothing from a damaged backup,
//!    removing what an interrupted restore left ([`RestoreLock`]). Entries
//!    stream ([`Backup::entries`]): memory does not grow with their number.
//!

mod backup;
mod choose;
mod error;
mod lock;
pub mod restore;
pub mod version;

pub use backup::{Backup, VerifyReport};
pub use choose::{Choice, Recovery};
pub use error::{RecoveryError, Result};
pub use lock::{Leftovers, RestoreLock, STAGING_MARKER};
pub use restore::{RestoreOptions, RestoreReport};
// The repository's types that appear in this crate's API (the layout, the
// catalogue and the keyless check are `ibs-repository`'s).
pub use ibs_repository::{BackupId, BackupInfo, BackupState, Catalogue, CheckReport, InstanceLayout, TargetObject};
pub use version::{Release, Version, VersionRule};

/// Hooks for the fuzz targets in `fuzz/`: the restore's path handling
/// without the file system. Not part of the API (hidden, no stability
/// promise); compiled always so that the stable replay of the seed corpora
/// (`fuzz/replay.sh`) and the workspace's lints see the same code.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::restore::{RestorePaths, restore_paths};
}

/// Blocking wrappers (each owns a small Tokio runtime) for test harnesses and
/// tools without one.
pub mod blocking {
    use std::path::Path;
    use std::sync::Arc;

    use ibs_archive::Entry;
    use ibs_envelope::Identity;
    use ibs_repository::InstanceLayout;
    use ibs_storage::{LocalTarget, StorageTarget};
    use tokio::runtime::Runtime;

    use crate::{Catalogue, Choice, RecoveryError, RestoreOptions, RestoreReport, Result, VerifyReport};

    /// [`crate::Recovery`] with blocking methods, for callers without an
    /// async runtime: it runs its own current-thread runtime, so it must not
    /// be called from inside another (Tokio panics there).
    #[derive(Debug)]
    pub struct Recovery {
        rt: Runtime,
        inner: crate::Recovery,
    }

    /// An opened backup with blocking methods.
    #[derive(Debug)]
    pub struct Backup<'r> {
        rt: &'r Runtime,
        inner: crate::Backup,
    }

    impl Recovery {
        /// Wraps an async [`crate::Recovery`]; fails only when the runtime
        /// cannot be started.
        pub fn new(inner: crate::Recovery) -> Result<Self> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|source| RecoveryError::Io {
                    action: "cannot start a runtime for",
                    path: "recovery".into(),
                    source,
                })?;
            Ok(Recovery { rt, inner })
        }

        /// Recovery of the backups of `fqdn`/`region` in a local directory (a
        /// share, or a copy of one).
        pub fn local(dir: &Path, fqdn: &str, region: &str) -> Result<Self> {
            let target: Arc<dyn StorageTarget> = Arc::new(LocalTarget::new(dir)?);
            let instance = InstanceLayout::new(fqdn, region)?;
            Self::new(crate::Recovery::new(target, instance))
        }

        /// The async recovery inside (to set a version rule, …).
        pub fn inner_mut(&mut self) -> &mut crate::Recovery {
            &mut self.inner
        }

        /// Lists and classifies the backups.
        pub fn catalogue(&self) -> Result<Catalogue> {
            self.rt.block_on(self.inner.catalogue())
        }

        /// Catalogues, chooses and opens a backup.
        pub fn open(&self, choice: &Choice, identities: &[&Identity]) -> Result<Backup<'_>> {
            let inner = self.rt.block_on(self.inner.open_choice(choice, identities))?;
            Ok(Backup { rt: &self.rt, inner })
        }
    }

    impl Backup<'_> {
        /// The catalogue's view of it.
        pub fn info(&self) -> &crate::BackupInfo {
            self.inner.info()
        }

        /// Every entry, in memory (a large backup: prefer the async
        /// [`crate::Backup::entries`] stream).
        pub fn entries(&self) -> Result<Vec<Entry>> {
            use futures::TryStreamExt;
            self.rt.block_on(self.inner.entries().try_collect())
        }

        /// The sources in the backup, sorted (see [`crate::Backup::sources`]).
        pub fn sources(&self) -> Vec<&str> {
            self.inner.sources()
        }

        /// Entry `path` of `source`, in memory (checked).
        pub fn read(&self, source: &str, path: &str) -> Result<Vec<u8>> {
            let entry = self.rt.block_on(self.inner.find(source, path))?.ok_or_else(|| {
                RecoveryError::Usage(format!("backup {} has no entry {source}/{path}", self.info().id))
            })?;
            self.rt.block_on(self.inner.read(&entry))
        }

        /// Verifies every frame and entry.
        pub fn verify(&self) -> Result<VerifyReport> {
            self.rt.block_on(self.inner.verify(None))
        }

        /// Restores to `dir` (see [`crate::Backup::restore_to`]).
        pub fn restore_to(&self, dir: &Path, options: &RestoreOptions) -> Result<RestoreReport> {
            self.rt.block_on(self.inner.restore_to(dir, options))
        }
    }
}
