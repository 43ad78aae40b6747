//! Choosing and opening a backup: [`Recovery`] at one location.

use std::sync::Arc;

use ibs_archive::ArchiveReader;
use ibs_envelope::Identity;
use ibs_repository::{
    BackupInfo, BackupState, Catalogue, CheckReport, InstanceLayout, TargetObject, catalogue, check_integrity,
};
use ibs_storage::ReadTarget;

use crate::backup::Backup;
use crate::version::{Version, VersionRule};
use crate::{RecoveryError, Result};

/// Chunks of 8 MiB a backup's reader reads ahead in the background
/// ([`ArchiveReader::prefetch`]): restore and verify stream the frames in
/// order, so the next chunks' reads (a round trip each on a remote target)
/// overlap with decrypting and writing the current one; 8 MiB more at most
/// (one chunk: two kept a 1 GiB restore of incompressible files above its
/// 128 MiB memory budget).
const PREFETCH_CHUNKS: usize = 1;

/// Which backup to restore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Choice {
    /// The newest complete backup the version rule allows (what a restore
    /// takes by default; [`Recovery::skipped_newer`] says which newer ones
    /// were passed over and why).
    #[default]
    Newest,
    /// The newest backup at the location, whatever its state: refused, with
    /// its id and problem, when it cannot be restored — never an older one
    /// instead (what `verify` checks by default).
    Latest,
    /// The backup with this id (its folder's name), refused rather than
    /// replaced when it cannot be restored.
    Id(String),
}

/// Recovery at one location: a storage target and an instance's fqdn/region.
#[derive(Clone, Debug)]
pub struct Recovery {
    target: Arc<dyn ReadTarget>,
    instance: InstanceLayout,
    rule: VersionRule,
    instance_version: Option<Version>,
    trusted: Vec<ibs_envelope::VerifyingKey>,
    allow_unsigned: bool,
}

impl Recovery {
    /// Recovery of `instance`'s backups on `target`, with no version rule
    /// until [`Recovery::instance_version`] is set.
    pub fn new(target: Arc<dyn ReadTarget>, instance: InstanceLayout) -> Self {
        Recovery {
            target,
            instance,
            rule: VersionRule::default(),
            instance_version: None,
            trusted: Vec::new(),
            allow_unsigned: false,
        }
    }

    /// Trusts these controller signing keys: [`Recovery::open`] then refuses
    /// a backup that is unsigned (a format version 1 one is accepted with
    /// [`allow_unsigned`](Self::allow_unsigned), an unsigned version 2 one never),
    /// signed by another key, or whose signature does not verify, naming the
    /// signer found (FORMAT.md §14.7). With no trusted key (the default) the
    /// signature of a signed backup is still verified, but anyone's is accepted.
    pub fn trust_signers(mut self, keys: Vec<ibs_envelope::VerifyingKey>) -> Self {
        self.trusted = keys;
        self
    }

    /// Accepts backups of format version 1 (made before signatures existed,
    /// so unsigned) even when signers are trusted. An unsigned backup of
    /// format version 2 is refused all the same: anyone with the
    /// certificate can write one.
    pub fn allow_unsigned(mut self, yes: bool) -> Self {
        self.allow_unsigned = yes;
        self
    }

    /// Checks a verified signer against the trusted keys (see
    /// [`trust_signers`](Self::trust_signers)): what [`Recovery::open`] does,
    /// for callers that checked a signature without opening (a keyless
    /// [`check_integrity`](ibs_repository::check_integrity)).
    pub fn trusts(&self, signer: &ibs_archive::Signer) -> ibs_archive::Result<()> {
        signer.check_trust(&self.trusted, self.allow_unsigned)
    }

    /// Whether signers are trusted (authenticity is checked on open).
    pub fn checks_signers(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// The recovering instance's version: enables the version rule.
    pub fn instance_version(mut self, version: Version) -> Self {
        self.instance_version = Some(version);
        self
    }

    /// Replaces the default rule (at most one release newer).
    pub fn version_rule(mut self, rule: VersionRule) -> Self {
        self.rule = rule;
        self
    }

    /// The target backups are read from, as given to [`Recovery::new`]
    /// (read-only: recovery never writes to it).
    pub fn target(&self) -> &Arc<dyn ReadTarget> {
        &self.target
    }

    /// Lists and classifies the backups (no key needed).
    pub async fn catalogue(&self) -> Result<Catalogue> {
        Ok(catalogue(&self.target, &self.instance).await?)
    }

    /// Why `backup` cannot be restored here, if it cannot.
    pub fn restorable(&self, backup: &BackupInfo) -> Result<()> {
        if !backup.state.is_complete() {
            return Err(RecoveryError::NotRestorable {
                id: backup.id.to_string(),
                state: if backup.state == BackupState::Incomplete {
                    "incomplete"
                } else {
                    "damaged"
                },
                problem: backup.problem.clone().unwrap_or_default(),
            });
        }
        if let Some(instance) = &self.instance_version {
            let produced = backup.producer_version.as_deref().unwrap_or_default();
            let produced: Version = produced.parse().map_err(|_| RecoveryError::NotRestorable {
                id: backup.id.to_string(),
                state: "damaged",
                problem: format!("its producer version {produced:?} is not a version"),
            })?;
            self.rule.check(&produced, instance)?;
        }
        Ok(())
    }

    /// The backup `choice` names in `catalogue`, checked with
    /// [`Recovery::restorable`]; errors say why none fits
    /// ([`RecoveryError::NoBackups`], [`RecoveryError::NotFound`], …).
    pub fn choose<'c>(&self, catalogue: &'c Catalogue, choice: &Choice) -> Result<&'c BackupInfo> {
        let location = self.instance.backup_root().to_string();
        match choice {
            Choice::Id(id) => {
                let b = catalogue.get(id).ok_or_else(|| RecoveryError::NotFound {
                    id: id.clone(),
                    location,
                })?;
                self.restorable(b)?;
                Ok(b)
            }
            Choice::Newest => {
                if catalogue.backups.is_empty() {
                    return Err(RecoveryError::NoBackups { location });
                }
                let mut reasons = Vec::new();
                for b in catalogue.backups.iter().rev() {
                    match self.restorable(b) {
                        Ok(()) => return Ok(b),
                        Err(e) => reasons.push(format!("{}: {e}", b.id)),
                    }
                }
                Err(RecoveryError::NoRestorable { location, reasons })
            }
            Choice::Latest => {
                let b = catalogue.backups.last().ok_or(RecoveryError::NoBackups { location })?;
                self.restorable(b)?;
                Ok(b)
            }
        }
    }

    /// Every backup in `catalogue` newer than `chosen`, newest first, with
    /// why it cannot be restored: what [`Choice::Newest`] passed over.
    pub fn skipped_newer<'c>(
        &self,
        catalogue: &'c Catalogue,
        chosen: &BackupInfo,
    ) -> Vec<(&'c BackupInfo, RecoveryError)> {
        catalogue
            .backups
            .iter()
            .rev()
            .take_while(|b| b.id != chosen.id)
            .filter_map(|b| self.restorable(b).err().map(|e| (b, e)))
            .collect()
    }

    /// Opens a backup with whichever of `identities` it is encrypted to
    /// (its reader reads one chunk of 8 MiB ahead in the background). When
    /// none is, the error lists the thumbprints the backup needs.
    pub async fn open(&self, backup: &BackupInfo, identities: &[&Identity]) -> Result<Backup> {
        self.restorable(backup)?;
        let size = backup.manifest.as_ref().map_or(backup.size, |m| m.archive_size);
        let object = TargetObject::new(Arc::clone(&self.target), backup.paths.archive.clone(), size);
        let reader = ArchiveReader::open(object, identities)
            .await
            .map_err(|e| RecoveryError::archive(&backup.id, e))?
            .prefetch(PREFETCH_CHUNKS);
        reader
            .signer()
            .check_trust(&self.trusted, self.allow_unsigned)
            .map_err(|source| RecoveryError::Archive {
                id: backup.id.to_string(),
                source,
            })?;
        // A signature proves who made a backup, not for which instance: the
        // (now authenticated) header must name this one.
        if matches!(reader.signer(), ibs_archive::Signer::Verified(_)) && !self.trusted.is_empty() {
            for (key, want) in [("fqdn", self.instance.fqdn()), ("region", self.instance.region())] {
                if reader.info().label(key) != Some(want) {
                    return Err(RecoveryError::NotRestorable {
                        id: backup.id.to_string(),
                        state: "damaged",
                        problem: format!(
                            "its signed header names {key} {:?}, not this instance's {want:?}: a backup of another \
                             instance",
                            reader.info().label(key).unwrap_or("(none)")
                        ),
                    });
                }
            }
        }
        Ok(Backup {
            info: backup.clone(),
            target: Arc::clone(&self.target),
            reader,
        })
    }

    /// Catalogue, choose and open in one step.
    pub async fn open_choice(&self, choice: &Choice, identities: &[&Identity]) -> Result<Backup> {
        let catalogue = self.catalogue().await?;
        let backup = self.choose(&catalogue, choice)?;
        self.open(backup, identities).await
    }

    /// Checks a backup's archive against its manifest's size and SHA-256 (no
    /// key; reads every byte). See [`check_integrity`](ibs_repository::check_integrity).
    pub async fn check_integrity(&self, backup: &BackupInfo) -> Result<CheckReport> {
        Ok(check_integrity(&self.target, backup).await?)
    }

    /// [`Recovery::check_integrity`], calling `progress` after every piece
    /// read with [`Progress::bytes_out`](ibs_archive::Progress::bytes_out)
    /// the archive bytes hashed so far, out of [`BackupInfo::archive_size`] (see
    /// [`check_integrity_with_progress`](ibs_repository::check_integrity_with_progress)).
    pub async fn check_integrity_with_progress(
        &self,
        backup: &BackupInfo,
        progress: Option<&ibs_archive::ProgressFn>,
    ) -> Result<CheckReport> {
        Ok(ibs_repository::check_integrity_with_progress(&self.target, backup, progress).await?)
    }
}
