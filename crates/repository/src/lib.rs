//! Where ibs backups sit at a location, and the one way to commit one.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ibs_archive::{ArchiveWriter, EntryMeta, WriterOptions};
//! use ibs_envelope::{Certificate, Password, keygen};
//! use ibs_repository::{BackupId, BackupState, CommitDetails, InstanceLayout, catalogue, check_integrity, commit_backup};
//! use ibs_storage::{LocalTarget, ReadTarget, StorageTarget};
//!
//! # let pair = keygen::generate(&keygen::KeygenOptions::new("doc", 1_763_769_600), &Password::new("pw"))?;
//! # let cert = Certificate::parse(&pair.cer)?;
//! let share = tempfile::tempdir()?;
//! let target: Arc<dyn StorageTarget> = Arc::new(LocalTarget::new(share.path())?);
//! let instance = InstanceLayout::new("azs.contoso.com", "local")?;
//!
//! // An archive (here in memory), committed as a backup.
//! let created = 1_763_769_600;
//! let options = WriterOptions::default().producer_version("1.2408.0").created(created);
//! let mut writer = ArchiveWriter::new(Vec::new(), &[&cert], options)?;
//! writer.add_entry(EntryMeta::new("rbac", "assignments.json"), &br#"[{"role":"Owner"}]"#[..])?;
//! let (archive, summary) = writer.finish()?;
//! let details = CommitDetails {
//!     archive_id: summary.archive_id,
//!     producer_version: "1.2408.0".into(),
//!     recipients: vec![cert.thumbprint()],
//! };
//! let id = BackupId::generate(created)?;
//! commit_backup(&target, &instance, id.clone(), archive.into(), details).await?;
//!
//! // Listed without any key, and checked whole: reading needs only the
//! // read half of the target (what a recovery tool is given).
//! let target: Arc<dyn ReadTarget> = target;
//! let found = catalogue(&target, &instance).await?;
//! assert_eq!(found.backups.len(), 1);
//! assert_eq!(found.backups[0].state, BackupState::Complete);
//! check_integrity(&target, &found.backups[0]).await?;
//! # Ok(()) }
//! ```
//!
//! This crate owns the on-share layout that the controller (the writer) and
//! the recovery reader share, so neither depends on the other:
//!
//! * [`InstanceLayout`]: `<fqdn>/<region>/MASBackup`, one instance's folder
//!   beside the OEM tools'; [`BackupId`] and [`BackupPaths`]: one folder per
//!   backup, holding the archive and the manifest (drawn below).
//! * [`Manifest`]: the commit marker, readable without a key.
//! * [`begin_backup`] / [`BackupUpload::commit`] / [`commit_backup`]: the
//!   commit sequence — archive first, manifest last, then read back.
//! * [`catalogue`]: every backup of an instance with its [`BackupState`]
//!   (complete, incomplete, damaged), without any key; [`check_integrity`]:
//!   the whole archive against its manifest, still without a key.
//!

//! # The layout
//!
//! Several cloud instances may share one location, and OEM tools keep their
//! own folders beside ours, so everything ibs writes lives under
//! `<location>/<external-domain-fqdn>/<region>/MASBackup/`, one folder per
//! backup named by its [`BackupId`]:
//!
//! ```text
//! \\fileserver01.contoso.com\AzSBackups\
//!   azurestack.contoso.com\          <- external domain FQDN of one instance
//!     westus\                        <- its region
//!       MASBackup\                   <- ours: backups, written and pruned by ibs
//!         20261122T051530Z-001a2b3c\  <- one backup
//!           backup.ibs               <- the archive (ibs-archive's FORMAT.md)
//!           backup.manifest          <- written last, atomically: the commit marker
//!       HLH\ Switches\ DeploymentData\ Registration\   <- OEM tools' (never touched)
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod catalogue;
mod check;
mod commit;
mod error;
mod layout;
mod manifest;
mod object;
mod version;

pub use catalogue::{BackupInfo, BackupState, Catalogue, catalogue, catalogue_backup};
pub use check::{CheckReport, check_integrity, check_integrity_with_progress};
pub use commit::{BackupUpload, CommitDetails, begin_backup, commit_backup};
pub use error::{RepositoryError, Result};
pub use layout::{ARCHIVE_NAME, BACKUP_FOLDER, BackupId, BackupPaths, InstanceLayout, MANIFEST_NAME, is_our_name};
pub use manifest::{MANIFEST_MAGIC, MAX_MANIFEST_LEN, Manifest, check_manifest_value};
pub use object::TargetObject;
pub use version::{Release, Version};
