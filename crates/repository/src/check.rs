//! Checking a backup without any key: its whole archive against its manifest.

use std::fmt;
use std::sync::Arc;

use ibs_archive::inspect;
use ibs_storage::ReadTarget;
use sha2::{Digest, Sha256};

use crate::catalogue::{BackupInfo, BackupState};
use crate::layout::BackupId;
use crate::manifest::hex;
use crate::object::TargetObject;
use crate::{RepositoryError, Result};

/// What a keyless check of a backup found: its whole archive read and
/// compared with its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// Id of the backup whose archive was read.
    pub id: BackupId,
    /// Archive bytes read (equal to the manifest's `archive-size`).
    pub archive_bytes: u64,
    /// The archive's SHA-256 (equal to the manifest's `archive-sha256`).
    pub archive_sha256: [u8; 32],
    /// Who signed it, the signature verified (no key needed; whether the
    /// signer is trusted is the reader's question).
    pub signer: ibs_archive::Signer,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "archive of {} bytes read whole; size and SHA-256 {} match the manifest; {}",
            self.archive_bytes,
            hex(&self.archive_sha256),
            match self.signer {
                ibs_archive::Signer::UnsignedV1 => "not signed (format version 1)".to_owned(),
                ibs_archive::Signer::Unsigned => "not signed".to_owned(),
                ibs_archive::Signer::Verified(k) => format!("signature by {} verifies", k.fingerprint()),
            }
        )
    }
}

/// Checks a backup without any key: reads its whole archive and compares its
/// size and SHA-256 with the manifest's (on top of what the catalogue
/// checked: manifest, archive header and footer), and verifies its
/// signature when it is signed. A backup that is not
/// complete, or whose archive differs, is an error
/// ([`RepositoryError::is_damage`] tells damage from a failure of the target).
pub async fn check_integrity(target: &Arc<dyn ReadTarget>, backup: &BackupInfo) -> Result<CheckReport> {
    check_integrity_with_progress(target, backup, None).await
}

/// [`check_integrity`], calling `progress` after every piece read (8 MiB)
/// with [`Progress::bytes_out`](ibs_archive::Progress::bytes_out) the
/// archive bytes read and hashed so far, out of the manifest's archive size
/// ([`BackupInfo::archive_size`], known before the check starts); the other
/// fields stay 0.
#[tracing::instrument(name = "check", level = "info", skip_all, fields(id = %backup.id))]
pub async fn check_integrity_with_progress(
    target: &Arc<dyn ReadTarget>,
    backup: &BackupInfo,
    progress: Option<&ibs_archive::ProgressFn>,
) -> Result<CheckReport> {
    let manifest = match (&backup.manifest, backup.state) {
        (Some(m), state) if state.is_complete() => m,
        (_, state) => {
            return Err(RepositoryError::NotComplete {
                id: backup.id.to_string(),
                state: if state == BackupState::Incomplete {
                    "incomplete"
                } else {
                    "damaged"
                },
                problem: backup.problem.clone().unwrap_or_default(),
            });
        }
    };
    const STEP: u64 = 8 << 20;
    // Hashing is CPU work (milliseconds per piece): in a runtime it runs on
    // the blocking pool while the next piece is read, never on the async
    // thread; without one (a caller that blocks on the future) it runs in place.
    let runtime = tokio::runtime::Handle::try_current().ok();
    let mut hasher = Sha256::new();
    let mut hashing: Option<tokio::task::JoinHandle<Sha256>> = None;
    let mut at = 0;
    while at < manifest.archive_size {
        let end = (at + STEP).min(manifest.archive_size);
        let piece = target.read_range(&backup.paths.archive, at..end).await?;
        if let Some(task) = hashing.take() {
            hasher = task.await.map_err(RepositoryError::Task)?;
        }
        match &runtime {
            Some(rt) => {
                let mut h = std::mem::take(&mut hasher);
                hashing = Some(rt.spawn_blocking(move || {
                    h.update(&piece);
                    h
                }));
            }
            None => hasher.update(&piece),
        }
        at = end;
        if let Some(p) = progress {
            p(&ibs_archive::Progress {
                bytes_out: at,
                ..ibs_archive::Progress::default()
            });
        }
    }
    if let Some(task) = hashing {
        hasher = task.await.map_err(RepositoryError::Task)?;
    }
    let sha256 = <[u8; 32]>::from(hasher.finalize());
    if sha256 == manifest.archive_sha256 {
        // The signature needs no key either: checked too (one more read, of the root).
        let object = TargetObject::new(Arc::clone(target), backup.paths.archive.clone(), manifest.archive_size);
        let archive_error = |e| RepositoryError::archive(&backup.id, e);
        let info = inspect(&object).await.map_err(archive_error)?;
        let signer = ibs_archive::check_signature(&object, &info)
            .await
            .map_err(archive_error)?;
        tracing::info!(archive_bytes = at, "archive matches its manifest");
        Ok(CheckReport {
            id: backup.id.clone(),
            archive_bytes: at,
            archive_sha256: sha256,
            signer,
        })
    } else {
        tracing::warn!(archive_bytes = at, "archive does not match its manifest");
        Err(RepositoryError::IntegrityMismatch {
            id: backup.id.to_string(),
            found: hex(&sha256),
            expected: hex(&manifest.archive_sha256),
        })
    }
}
