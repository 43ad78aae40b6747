//! Listing the backups at a location, without any key.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use ibs_archive::{ArchiveId, inspect};
use ibs_envelope::Thumbprint;
use ibs_storage::{ObjectMeta, ObjectPath, ReadTarget, ReadTargetExt};

use crate::layout::{ARCHIVE_NAME, BackupId, BackupPaths, InstanceLayout, MANIFEST_NAME, is_our_name};
use crate::manifest::{MAX_MANIFEST_LEN, Manifest};
use crate::object::TargetObject;
use crate::{RepositoryError, Result};

/// What is known about a backup: the one state the catalogue, retention,
/// the controller and the recovery reader share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackupState {
    /// Committed, with a manifest that agrees with the archive's size,
    /// header and footer; the archive's body has not been read.
    Complete,
    /// Complete, and its whole archive was read and matched the SHA-256 in
    /// its manifest ([`check_integrity`](crate::check_integrity)). The
    /// catalogue never says this by itself: a caller that checked says so.
    Checked,
    /// No manifest: the job that wrote it stopped before committing (or is
    /// still writing).
    Incomplete,
    /// A manifest exists but the backup is not what it says: missing or
    /// resized archive, unreadable manifest or archive structure, or a check
    /// found its body changed.
    Damaged,
    /// Its whole archive was read and matched its manifest, but it is not
    /// signed by a key the caller trusts (signed by another key, or not
    /// signed): not a backup the trusted controller made, so retention never
    /// keeps it in place of one. Like [`Checked`](Self::Checked), the
    /// catalogue never says this by itself: a caller that checked with
    /// trusted signers says so.
    Untrusted,
}

impl BackupState {
    /// Complete, checked or not: restorable as far as is known.
    pub fn is_complete(self) -> bool {
        matches!(self, BackupState::Complete | BackupState::Checked)
    }
}

impl fmt::Display for BackupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackupState::Complete => "complete",
            BackupState::Checked => "complete (checked)",
            BackupState::Incomplete => "incomplete",
            BackupState::Damaged => "damaged",
            BackupState::Untrusted => "intact, but not signed by a trusted signer",
        })
    }
}

/// One backup found at a location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    /// Its id (its folder's name).
    pub id: BackupId,
    /// Where its folder, archive and manifest are on the target.
    pub paths: BackupPaths,
    /// Creation time, Unix seconds (from the manifest, else from the id).
    pub created: i64,
    /// Bytes its objects occupy on the target (archive, manifest, and
    /// uncommitted uploads of either; not objects ibs did not write).
    pub size: u64,
    /// Version of the system that made it (from the manifest).
    pub producer_version: Option<String>,
    /// Thumbprints of the certificates it is encrypted to (from the
    /// manifest; empty without one): which `.pfx` can restore it.
    pub recipients: Vec<Thumbprint>,
    /// The archive's id as the manifest records it; `None` without a
    /// readable manifest.
    pub archive_id: Option<ArchiveId>,
    /// Complete, incomplete or damaged.
    pub state: BackupState,
    /// Why it is not complete, as a clause for the operator; `None` exactly
    /// when it is complete.
    pub problem: Option<String>,
    /// The parsed manifest, when there is a valid one.
    pub manifest: Option<Manifest>,
    /// The archive's format version, when its header was read.
    pub format_version: Option<u16>,
    /// The fingerprint of the signer the archive's header names (a claim
    /// until the backup is opened, which verifies the signature), if signed.
    pub signer: Option<ibs_envelope::SignerFingerprint>,
}

impl BackupInfo {
    /// The archive's size as its manifest records it, when there is a valid
    /// manifest: what a keyless check reads (the total its progress counts
    /// up to), unlike [`BackupInfo::size`], which counts every object.
    pub fn archive_size(&self) -> Option<u64> {
        self.manifest.as_ref().map(|m| m.archive_size)
    }
}

/// What was found at a location.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalogue {
    /// Backups, oldest first.
    pub backups: Vec<BackupInfo>,
    /// Objects under the backup folder that ibs did not write: outside any
    /// backup folder, in a folder whose name is not a backup id, or beside a
    /// backup's own files. Retention never deletes them (nor the folder
    /// holding them); `list` and `prune` report them.
    pub unrecognised: Vec<ObjectPath>,
}

impl Catalogue {
    /// The backups that are complete, oldest first.
    pub fn complete(&self) -> impl Iterator<Item = &BackupInfo> {
        self.backups.iter().filter(|b| b.state.is_complete())
    }

    /// The backup with `id`.
    pub fn get(&self, id: &str) -> Option<&BackupInfo> {
        self.backups.iter().find(|b| b.id.as_str() == id)
    }
}

/// Lists and classifies every backup of `instance` on `target`. Needs no key:
/// manifests are read and checked against each archive's size and its
/// header and footer (two small range reads per backup).
pub async fn catalogue(target: &Arc<dyn ReadTarget>, instance: &InstanceLayout) -> Result<Catalogue> {
    let root = instance.backup_root();
    let objects = target.list_all(&root).await?;
    let mut folders: BTreeMap<BackupId, Vec<ObjectMeta>> = BTreeMap::new();
    let mut unrecognised = Vec::new();
    for meta in objects {
        let rel: Vec<&str> = meta.path.segments().skip(root.segments().count()).collect();
        match (rel.first().map(|f| f.parse::<BackupId>()), rel.get(1)) {
            (Some(Ok(id)), Some(name)) if rel.len() == 2 && is_our_name(name) => {
                folders.entry(id).or_default().push(meta)
            }
            _ => unrecognised.push(meta.path.clone()),
        }
    }
    let mut backups = Vec::with_capacity(folders.len());
    for (id, objects) in folders {
        backups.push(classify(target, instance, id, &objects).await?);
    }
    backups.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(Catalogue { backups, unrecognised })
}

/// Catalogues one backup, `id` (the same classification as [`catalogue`]):
/// what a job uses to read back a backup it has just committed.
pub async fn catalogue_backup(
    target: &Arc<dyn ReadTarget>,
    instance: &InstanceLayout,
    id: &BackupId,
) -> Result<BackupInfo> {
    let paths = BackupPaths::new(instance, id)?;
    let objects: Vec<ObjectMeta> = target
        .list_all(&paths.folder)
        .await?
        .into_iter()
        .filter(|o| o.path.parent().as_ref() == Some(&paths.folder) && o.path.name().is_some_and(is_our_name))
        .collect();
    classify(target, instance, id.clone(), &objects).await
}

async fn classify(
    target: &Arc<dyn ReadTarget>,
    instance: &InstanceLayout,
    id: BackupId,
    objects: &[ObjectMeta],
) -> Result<BackupInfo> {
    let paths = BackupPaths::new(instance, &id)?;
    let size = objects.iter().map(|o| o.size).sum();
    let find = |name: &str| objects.iter().find(|o| !o.partial && o.path.name() == Some(name));
    let mut info = BackupInfo {
        created: id.created(),
        id: id.clone(),
        paths,
        size,
        producer_version: None,
        recipients: Vec::new(),
        archive_id: None,
        state: BackupState::Incomplete,
        problem: Some("no manifest: the backup job did not finish".into()),
        manifest: None,
        format_version: None,
        signer: None,
    };
    let Some(manifest_meta) = find(MANIFEST_NAME) else {
        return Ok(info);
    };
    let damaged = |mut info: BackupInfo, why: String| {
        info.state = BackupState::Damaged;
        info.problem = Some(why);
        Ok(info)
    };
    if manifest_meta.size > MAX_MANIFEST_LEN {
        return damaged(info, format!("manifest of {} bytes is too large", manifest_meta.size));
    }
    let bytes = target.read_all(&info.paths.manifest).await?;
    let manifest = match Manifest::parse(&bytes) {
        Ok(m) => m,
        Err(e) => return damaged(info, format!("unreadable manifest: {e}")),
    };
    info.created = manifest.created;
    info.producer_version = Some(manifest.producer_version.clone());
    info.recipients = manifest.recipients.clone();
    info.archive_id = Some(manifest.archive_id);
    info.manifest = Some(manifest.clone());
    if manifest.id != id {
        return damaged(info, format!("manifest names backup {}, folder is {id}", manifest.id));
    }
    if manifest.created != id.created() {
        return damaged(
            info,
            format!(
                "the manifest's creation time {} is not its id's ({})",
                manifest.created,
                id.created()
            ),
        );
    }
    if manifest.fqdn != instance.fqdn() || manifest.region != instance.region() {
        return damaged(
            info,
            format!(
                "the manifest is for instance {}/{}, the folder is {}/{}'s",
                manifest.fqdn,
                manifest.region,
                instance.fqdn(),
                instance.region()
            ),
        );
    }
    let Some(archive_meta) = find(ARCHIVE_NAME) else {
        return damaged(info, "the archive is missing".into());
    };
    if archive_meta.size != manifest.archive_size {
        return damaged(
            info,
            format!(
                "the archive is {} bytes, its manifest says {}",
                archive_meta.size, manifest.archive_size
            ),
        );
    }
    let object = TargetObject::new(Arc::clone(target), info.paths.archive.clone(), archive_meta.size);
    match inspect(&object).await {
        Ok(archive) => {
            let fields = archive.fields();
            let thumbprints = archive.recipient_thumbprints();
            info.format_version = Some(archive.version());
            info.signer = archive.signer_fingerprint();
            if fields.archive_id != manifest.archive_id {
                return damaged(info, "the archive's id differs from its manifest's".into());
            }
            if fields.created != manifest.created {
                return damaged(info, "the archive's creation time differs from its manifest's".into());
            }
            // The header's labels are the writer's (MAC'd, and signed): a
            // backup of another instance copied here is not this one's.
            for (key, want) in [("fqdn", instance.fqdn()), ("region", instance.region())] {
                if let Some(found) = archive.label(key)
                    && found != want
                {
                    return damaged(
                        info,
                        format!("the archive was made for {key} {found:?}, this folder is {want:?}'s"),
                    );
                }
            }
            if fields.producer_version != manifest.producer_version || thumbprints != manifest.recipients {
                return damaged(
                    info,
                    "the archive's producer version or recipients differ from its manifest's".into(),
                );
            }
        }
        Err(ibs_archive::ReadError::Read { error, .. }) => {
            // The target failed while reading: that is the target's failure, not damage.
            return Err(RepositoryError::Storage(error));
        }
        // Too few bytes from the target (kind Io) says nothing about the
        // archive: a failure, not damage (damaged backups are the first
        // retention deletes to free space).
        Err(ibs_archive::ReadError::Archive(e)) if e.kind() == ibs_archive::ErrorKind::Io => {
            return Err(RepositoryError::Archive {
                id: id.to_string(),
                source: e,
            });
        }
        Err(ibs_archive::ReadError::Archive(e)) => return damaged(info, format!("archive: {e}")),
    }
    info.state = BackupState::Complete;
    info.problem = None;
    Ok(info)
}
