//! Writing a backup: the one commit sequence (archive first, manifest last).
//!
//! [`begin_backup`] creates the backup's folder and opens its archive upload
//! (nothing is visible yet); [`BackupUpload::write`] streams the archive,
//! counting and hashing it; [`BackupUpload::commit`] commits the archive,
//! then writes the manifest with [`CommitMode::CreateNew`] (the commit
//! marker), then reads the backup back as the catalogue lists it: "complete"
//! means it lists as complete. [`commit_backup`] does all three for an
//! archive held in memory.

use std::sync::Arc;

use bytes::Bytes;
use ibs_archive::ArchiveId;
use ibs_envelope::Thumbprint;
use ibs_storage::{CommitMode, ObjectWriter, ReadTarget, ReadTargetExt, StorageTarget, StorageTargetExt};
use sha2::{Digest, Sha256};

use crate::catalogue::{BackupInfo, catalogue_backup};
use crate::layout::{BackupId, BackupPaths, InstanceLayout};
use crate::manifest::Manifest;
use crate::{RepositoryError, Result};

/// What the manifest records beside the archive's id, size and hash: the
/// caller's part of the commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitDetails {
    /// The archive's id (its header's).
    pub archive_id: ArchiveId,
    /// Version of the system that made the backup (checked with
    /// [`check_manifest_value`](crate::check_manifest_value) before anything is written).
    pub producer_version: String,
    /// Thumbprints of the certificates the archive is encrypted to.
    pub recipients: Vec<Thumbprint>,
}

/// A backup being written: its folder exists and its archive upload is open;
/// nothing lists as a backup until [`BackupUpload::commit`].
#[derive(Debug)]
pub struct BackupUpload {
    target: Arc<dyn StorageTarget>,
    instance: InstanceLayout,
    id: BackupId,
    paths: BackupPaths,
    upload: Box<dyn ObjectWriter>,
    hasher: Sha256,
    written: u64,
}

/// Starts backup `id` of `instance` on `target`: creates its folder and opens
/// its archive upload ([`CommitMode::CreateNew`]: an existing backup is never replaced).
pub async fn begin_backup(
    target: &Arc<dyn StorageTarget>,
    instance: &InstanceLayout,
    id: BackupId,
) -> Result<BackupUpload> {
    let paths = BackupPaths::new(instance, &id)?;
    target.create_dir_all(&paths.folder).await?;
    let upload = target.put(&paths.archive, CommitMode::CreateNew).await?;
    Ok(BackupUpload {
        target: Arc::clone(target),
        instance: instance.clone(),
        id,
        paths,
        upload,
        hasher: Sha256::new(),
        written: 0,
    })
}

/// Writes `archive` (a whole archive in memory) as backup `id` and commits it:
/// [`begin_backup`], [`BackupUpload::write`], [`BackupUpload::commit`].
pub async fn commit_backup(
    target: &Arc<dyn StorageTarget>,
    instance: &InstanceLayout,
    id: BackupId,
    archive: Bytes,
    details: CommitDetails,
) -> Result<BackupInfo> {
    let mut upload = begin_backup(target, instance, id).await?;
    if let Err(e) = upload.write(archive).await {
        upload.abort().await;
        return Err(e);
    }
    upload.commit(details).await
}

impl BackupUpload {
    /// Id of the backup being written: its folder's name, and the `id` its
    /// manifest will record.
    pub fn id(&self) -> &BackupId {
        &self.id
    }

    /// Where the backup is: its folder, the archive being uploaded, and the
    /// manifest that [`BackupUpload::commit`] writes.
    pub fn paths(&self) -> &BackupPaths {
        &self.paths
    }

    /// Archive bytes accepted by [`BackupUpload::write`] so far: the
    /// `archive-size` the manifest will record.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Appends archive bytes (hashed and counted for the manifest).
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        self.hasher.update(&bytes);
        self.written += bytes.len() as u64;
        self.upload.write(bytes).await?;
        Ok(())
    }

    /// Abandons the backup: aborts the upload and removes its folder (best
    /// effort; what is left lists as incomplete and retention removes it).
    pub async fn abort(self) {
        let _ = self.upload.abort().await;
        let _ = self.target.delete_dir(&self.paths.folder).await;
    }

    /// Commits the backup: the archive, then the manifest (the commit
    /// marker, [`CommitMode::CreateNew`]), then reads it back as the
    /// catalogue lists it.
    ///
    /// Errors: a storage failure committing either object (what this
    /// attempt wrote is removed, except a manifest that is not ours);
    /// [`RepositoryError::Unconfirmed`] when both were committed but reading
    /// the backup back failed (it may well be complete);
    /// [`RepositoryError::NotComplete`] when it was read back and does not
    /// list as complete (it is left for the operator and retention to see).
    pub async fn commit(self, details: CommitDetails) -> Result<BackupInfo> {
        let BackupUpload {
            target,
            instance,
            id,
            paths,
            upload,
            hasher,
            written,
        } = self;
        if let Err(e) = upload.commit().await {
            // Its reply may have been lost after the archive was committed:
            // remove it rather than leave a whole archive as garbage (on a
            // full share the retry needs that space).
            discard(&target, &paths).await;
            return Err(e.into());
        }
        let manifest = Manifest {
            id: id.clone(),
            archive_id: details.archive_id,
            archive_size: written,
            archive_sha256: hasher.finalize().into(),
            created: id.created(),
            producer_version: details.producer_version,
            fqdn: instance.fqdn().to_owned(),
            region: instance.region().to_owned(),
            recipients: details.recipients,
        };
        let encoded = Bytes::from(manifest.encode());
        if let Err(e) = target
            .put_bytes(&paths.manifest, encoded.clone(), CommitMode::CreateNew)
            .await
        {
            // The commit may have taken effect and only its reply been lost
            // (or a backend's retry of it found it done and said "already
            // exists"). The manifest is ours exactly when it has our bytes
            // (they name this archive's id and SHA-256): then the backup is
            // committed and the read-back below confirms it. Otherwise the
            // put failed as far as we can tell, and what this attempt wrote
            // is discarded (a manifest that is not ours is left alone, and
            // so is its folder).
            match target.read_all(&paths.manifest).await {
                Ok(found) if found == encoded => {}
                Ok(_) => return Err(e.into()),
                Err(_) => {
                    discard(&target, &paths).await;
                    return Err(e.into());
                }
            }
        }
        let reader: Arc<dyn ReadTarget> = target;
        let listed =
            catalogue_backup(&reader, &instance, &id)
                .await
                .map_err(|source| RepositoryError::Unconfirmed {
                    id: id.to_string(),
                    source: Box::new(source),
                })?;
        if !listed.state.is_complete() {
            return Err(RepositoryError::NotComplete {
                id: id.to_string(),
                state: if listed.state == crate::BackupState::Incomplete {
                    "incomplete"
                } else {
                    "damaged"
                },
                problem: listed.problem.unwrap_or_default(),
            });
        }
        Ok(listed)
    }
}

/// Removes what a failed attempt may have committed, as retention deletes a
/// backup: the manifest first (it may be there after all, its commit's
/// reply lost), then the archive, then the folder; it stops at the first
/// failure, so it never leaves a manifest without its archive (a backup that
/// would list as damaged). Best effort: what is left lists as incomplete.
async fn discard(target: &Arc<dyn StorageTarget>, paths: &BackupPaths) {
    if target.delete(&paths.manifest).await.is_ok() && target.delete(&paths.archive).await.is_ok() {
        let _ = target.delete_dir(&paths.folder).await;
    }
}
