//! One backup job: sources → archive → storage target → commit last → retention.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use ibs_archive::{ArchiveEncoder, EntryMeta, Progress, WriterOptions};
use ibs_envelope::Certificate;
use ibs_repository::{
    BackupId, BackupInfo, BackupState, Catalogue, CheckReport, CommitDetails, InstanceLayout, MANIFEST_NAME,
    RepositoryError, begin_backup, is_our_name,
};
use ibs_retention::{BackupRecord, CapacityFacts, Deletion, Plan, Policy, Warning};
use ibs_storage::{Alert, ErrorKind, ReadTarget, ReadTargetExt, StorageTarget};

use crate::source::{BackupSource, CaptureWarning, EntrySink, Warnings};
use crate::{ControllerError, Result};

/// What a job needs to know.
#[derive(Clone)]
pub struct JobSpec {
    /// Where the backup is written and where retention lists and deletes.
    pub target: Arc<dyn StorageTarget>,
    /// This instance's folder on the target (`<fqdn>/<region>/MASBackup`);
    /// retention touches no other instance's backups.
    pub instance: InstanceLayout,
    /// The certificates the backup is encrypted to (1 to 32, no two alike;
    /// checked by [`check_spec`]).
    pub certificates: Vec<Certificate>,
    /// Version of the system being backed up, recorded in the manifest for
    /// recovery's version rule.
    pub producer_version: String,
    /// How long backups are kept and how much room the next one needs.
    pub policy: Policy,
    /// Keyless checks already done (shared by the jobs of one controller, so
    /// the newest backup is read back once, not at every retention run).
    pub checks: CheckMemo,
    /// The controller's signing key: when set, every backup is signed
    /// (FORMAT.md §14.7) and recovery given the matching public key refuses
    /// backups nobody but this controller signed; retention then trusts only
    /// backups this key signed ([`JobSpec::trust`]).
    pub signer: Option<Arc<ibs_envelope::SigningKey>>,
}

impl JobSpec {
    /// Whose backups this job's retention counts as the controller's: those
    /// its signing key signed, when it has one; else anyone's.
    pub fn trust(&self) -> SignerTrust {
        match &self.signer {
            Some(key) => SignerTrust::keys(vec![key.verifying_key()]),
            None => SignerTrust::anyone(),
        }
    }
}

/// What a successful job wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSummary {
    /// The new backup's id.
    pub id: BackupId,
    /// Plaintext bytes captured.
    pub data_bytes: u64,
    /// Archive bytes written.
    pub archive_bytes: u64,
    /// Entries captured.
    pub entries: u64,
    /// How many times the backup was written: 2 when the first attempt ran
    /// out of capacity and space was freed for a second.
    pub attempts: u32,
    /// Backups deleted, in order, each with why: to make room for the second
    /// attempt ([`Reason::FreeSpace`](ibs_retention::Reason::FreeSpace)), then
    /// by retention after the backup.
    pub deleted: Vec<Deletion>,
    /// Backups retention found damaged by reading them (each is also an alert).
    pub damaged: Vec<DamagedBackup>,
    /// Backups retention found intact by reading them, but not signed by this
    /// job's signing key ([`JobSpec::trust`]), and did not delete: never kept
    /// in place of one it signed.
    pub untrusted: Vec<UntrustedBackup>,
    /// Objects in the backup folder that ibs did not write (left alone).
    pub unrecognised: Vec<String>,
    /// Folders of deleted backups that were kept because something else is
    /// in them, each with why.
    pub kept_folders: Vec<String>,
    /// Retention after the backup failed: the backup itself is complete (it
    /// was committed and read back), so the job succeeds with this warning
    /// and the next run retries retention.
    pub retention_failed: Option<RetentionFailure>,
    /// What the sources skipped or captured inexactly (a live system); when
    /// not empty the job succeeded with warnings.
    pub warnings: Warnings,
}

/// Retention that failed after a backup was committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionFailure {
    /// The retention error's message (its `Display`), for the log.
    pub error: String,
    /// The alert raised for it (its failure class decides which).
    pub alert: Alert,
}

impl JobSummary {
    /// Whether the job has something to report beside its backup: capture
    /// warnings, damaged or untrusted backups found, or retention that failed.
    pub fn has_warnings(&self) -> bool {
        !self.warnings.is_empty()
            || !self.damaged.is_empty()
            || !self.untrusted.is_empty()
            || self.retention_failed.is_some()
    }
}

/// A backup that looked complete but whose archive does not match its
/// manifest (found by a keyless check before retention relied on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedBackup {
    /// Id of the damaged backup (its folder's name).
    pub id: String,
    /// What the check found, as a clause for the alert (the SHA-256 read
    /// against the one the manifest records, a damaged archive, …).
    pub problem: String,
}

impl DamagedBackup {
    /// The operator alert: a general fault naming the backup and what is
    /// wrong with it (its bytes are wrong, not the storage connection).
    pub fn alert(&self) -> Alert {
        use std::borrow::Cow;
        Alert {
            kind: ErrorKind::Other,
            title: Cow::Owned(format!("Backup {} at the storage location is damaged", self.id)),
            description: Cow::Owned(format!(
                "Backup {} does not match its manifest: {}. It was changed or damaged on the storage location \
                 after it was written; it cannot be restored and is never kept in place of an intact backup.",
                self.id, self.problem
            )),
            remediation: Cow::Borrowed(
                "Check the storage location's health (disk errors, other writers, antivirus quarantine). \
                 Retention deletes the damaged backup like any other; take a new backup now if it was the \
                 newest one.",
            ),
        }
    }
}

impl std::fmt::Display for DamagedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backup {} is damaged: {}", self.id, self.problem)
    }
}

/// A backup whose archive is intact (a keyless check read it whole and it
/// matched its manifest) but which no trusted signer signed (see
/// [`SignerTrust`]): retention never keeps it in place of one that is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UntrustedBackup {
    /// Id of the backup (its folder's name).
    pub id: String,
    /// Who signed it: `None` when it is not signed.
    pub signer: Option<ibs_envelope::SignerFingerprint>,
}

impl std::fmt::Display for UntrustedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.signer {
            Some(fp) => write!(
                f,
                "backup {} is intact but signed by {fp}, which is not a trusted signer: never kept in place of a \
                 trusted backup",
                self.id
            ),
            None => write!(
                f,
                "backup {} is intact but not signed, and signers are trusted: never kept in place of a trusted \
                 backup",
                self.id
            ),
        }
    }
}

/// Whose backups retention counts as made by the trusted controller.
///
/// With no key (the default, [`SignerTrust::anyone`]) every intact backup
/// counts, whoever signed it. With keys, an intact backup not signed by one
/// of them (or unsigned, unless it is of format version 1 and
/// [`allow_v1`](Self::allow_v1) is set) is
/// [untrusted](BackupState::Untrusted): while a complete backup is there it
/// is never the protected newest backup, so a backup written by someone with
/// only the certificate and write access cannot make retention delete the
/// controller's own (`ibs_retention`, rule 1). A job that signs
/// ([`JobSpec::signer`]) trusts its own key ([`JobSpec::trust`]).
///
/// What the keyless check proves: the archive matches its manifest's
/// SHA-256 and its signature (over the header, the root with every frame's
/// length and every index piece's hash, and the footer) verifies. It does
/// not read the frames' contents against anything the signature covers:
/// someone with write access could alter a signed backup's body and rewrite
/// its manifest's hash, and it would still count here (a restore then fails
/// authentication). Such a writer can delete backups outright anyway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignerTrust {
    keys: Vec<ibs_envelope::VerifyingKey>,
    allow_v1: bool,
}

impl SignerTrust {
    /// Every intact backup counts, whoever signed it.
    pub fn anyone() -> Self {
        Self::default()
    }

    /// Only backups signed by one of `keys` count (every backup when empty).
    pub fn keys(keys: Vec<ibs_envelope::VerifyingKey>) -> Self {
        SignerTrust { keys, allow_v1: false }
    }

    /// Also counts backups of format version 1 (made before signatures).
    pub fn allow_v1(mut self, yes: bool) -> Self {
        self.allow_v1 = yes;
        self
    }

    /// Whether a backup with this (verified) signer counts.
    pub fn trusts(&self, signer: &ibs_archive::Signer) -> bool {
        signer.check_trust(&self.keys, self.allow_v1).is_ok()
    }

    /// Whether any key is trusted (else everyone is).
    pub fn checks_signers(&self) -> bool {
        !self.keys.is_empty()
    }
}

/// Keyless checks that succeeded, remembered for [`CheckMemo::VALID_SECS`]:
/// a retention run reads a backup only when the memo has no fresh,
/// matching (same id, same manifest SHA-256) success for it. Clones share
/// one memo.
#[derive(Clone, Debug, Default)]
pub struct CheckMemo(Arc<Mutex<Checks>>);

/// Backup id → (archive SHA-256 found, when it was checked, its verified signer).
type Checks = HashMap<String, ([u8; 32], i64, ibs_archive::Signer)>;

impl CheckMemo {
    /// How long a successful check is trusted (a day), after which a backup
    /// retention relies on is read again.
    pub const VALID_SECS: i64 = 24 * 3600;

    fn map(&self) -> std::sync::MutexGuard<'_, Checks> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `backup` was checked and found intact within the last
    /// [`VALID_SECS`](Self::VALID_SECS) before `now`.
    pub fn is_fresh(&self, backup: &BackupInfo, now: i64) -> bool {
        self.fresh(backup, now).is_some()
    }

    /// The verified signer of `backup` when it was checked and found intact
    /// within the last [`VALID_SECS`](Self::VALID_SECS) before `now`.
    pub fn fresh(&self, backup: &BackupInfo, now: i64) -> Option<ibs_archive::Signer> {
        let manifest = backup.manifest.as_ref()?;
        self.map()
            .get(backup.id.as_str())
            .filter(|(sha, at, _)| {
                *sha == manifest.archive_sha256 && now.saturating_sub(*at) < Self::VALID_SECS && *at <= now
            })
            .map(|(_, _, signer)| *signer)
    }

    /// Remembers a successful check made at `now`.
    pub fn remember(&self, report: &CheckReport, now: i64) {
        self.map()
            .insert(report.id.to_string(), (report.archive_sha256, now, report.signer));
    }
}

/// The sink sources write to: feeds the encoder and moves its output to the
/// target's upload (through a bounded queue, so compression and upload
/// overlap), hashing every byte for the manifest.
struct ArchiveSink {
    enc: ArchiveEncoder,
    upload: tokio::sync::mpsc::Sender<Bytes>,
    source: String,
    warnings: Warnings,
}

impl ArchiveSink {
    async fn emit(&mut self, bytes: Bytes) -> Result<()> {
        if self.upload.send(bytes).await.is_err() {
            // The uploader stopped on an error; `write_backup` reports it.
            return Err(ControllerError::Internal {
                reason: "the upload stopped".into(),
            });
        }
        Ok(())
    }

    async fn drain_ready(&mut self) -> Result<()> {
        while let Some(b) = self.enc.next_ready()? {
            self.emit(b).await?;
        }
        Ok(())
    }

    async fn drain_all(&mut self) -> Result<()> {
        while let Some(b) = self.enc.next_output().await? {
            self.emit(b).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl EntrySink for ArchiveSink {
    async fn begin(&mut self, entry: EntryMeta) -> Result<()> {
        if entry.source() != self.source {
            return Err(ControllerError::Internal {
                reason: format!(
                    "source {} wrote an entry of source {} ({})",
                    self.source,
                    entry.source(),
                    entry.path()
                ),
            });
        }
        self.enc.start_entry(entry)?;
        Ok(())
    }

    async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = self.enc.write(data)?;
            data = &data[n..];
            if n == 0
                && let Some(b) = self.enc.next_output().await?
            {
                self.emit(b).await?;
            }
            self.drain_ready().await?;
        }
        Ok(())
    }

    async fn end(&mut self) -> Result<()> {
        self.enc.end_entry()?;
        self.drain_ready().await
    }

    fn warn(&mut self, warning: CaptureWarning) {
        self.warnings.push(warning);
    }
}

/// Checks what a job writes into the archive header and the manifest,
/// before anything is written: the producer version is a version
/// (`MAJOR.MINOR[.BUILD[.REVISION]]`, so the version rule can read it back)
/// and every recorded value is one printable line.
pub fn check_spec(spec: &JobSpec) -> Result<()> {
    check_recipients(&spec.certificates)?;
    check_recorded(&spec.producer_version, &spec.instance)
}

/// Checks the certificates a backup is encrypted to: at least one, at most
/// the format's 32, none twice.
pub fn check_recipients(certificates: &[Certificate]) -> Result<()> {
    let invalid = |reason: String| ControllerError::InvalidSetting {
        setting: "certificate",
        reason,
    };
    let max = ibs_archive::MAX_RECIPIENTS;
    if certificates.is_empty() {
        return Err(invalid("no certificate to encrypt to".into()));
    }
    if certificates.len() > max {
        return Err(invalid(format!(
            "{} certificates; a backup can be encrypted to at most {max}",
            certificates.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in certificates {
        if !seen.insert(c.thumbprint()) {
            return Err(invalid(format!("certificate {} is given twice", c.thumbprint())));
        }
    }
    Ok(())
}

/// [`check_spec`] of the values themselves (for a caller that checks before
/// it has a target).
pub fn check_recorded(producer_version: &str, instance: &InstanceLayout) -> Result<()> {
    let invalid = |setting: &'static str| {
        move |e: RepositoryError| ControllerError::InvalidSetting {
            setting,
            reason: e.to_string(),
        }
    };
    ibs_repository::check_manifest_value("producer version", producer_version).map_err(invalid("producer version"))?;
    producer_version
        .parse::<ibs_repository::Version>()
        .map_err(invalid("producer version"))?;
    ibs_repository::check_manifest_value("fqdn", instance.fqdn()).map_err(invalid("fqdn"))?;
    ibs_repository::check_manifest_value("region", instance.region()).map_err(invalid("region"))?;
    Ok(())
}

/// Checks the sources' names before anything is written: each a valid
/// source name (1–64 ASCII letters, digits, `.`, `_`, `-`), none twice.
pub fn check_sources(sources: &[Arc<dyn BackupSource>]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for source in sources {
        let name = source.name();
        ibs_archive::check_source_name(name).map_err(|e| ControllerError::InvalidSetting {
            setting: "source",
            reason: e.to_string(),
        })?;
        if !seen.insert(name) {
            return Err(ControllerError::InvalidSetting {
                setting: "source",
                reason: format!("source {name:?} is given twice"),
            });
        }
        if name.starts_with(".ibs-restore-") {
            return Err(ControllerError::InvalidSetting {
                setting: "source",
                reason: format!("source {name:?} is named like a restore's staging folder; choose another name"),
            });
        }
    }
    Ok(())
}

/// Writes one backup, committed last: the archive is uploaded under a
/// temporary name and committed, then the manifest is put with
/// `CreateNew` (when that put reports an error, the manifest is read: one
/// with exactly our bytes means the commit took effect and only its reply
/// was lost, so the job goes on; otherwise what the attempt committed is
/// removed, manifest first). Only then does the backup list as complete — and the job
/// makes sure it does: it reads the backup back through the catalogue
/// (manifest, archive header and footer; no key) and fails unless it lists
/// as complete. Every value that goes into the header or the manifest is
/// checked ([`check_spec`]) before anything is written.
pub async fn write_backup(
    spec: &JobSpec,
    sources: &[Arc<dyn BackupSource>],
    now: i64,
    progress: Option<ibs_archive::ProgressFn>,
) -> Result<JobSummary> {
    write_backup_counting(spec, sources, now, progress, &AtomicU64::new(0)).await
}

/// [`write_backup`], counting in `sent` the archive bytes handed to the
/// upload (on failure too: how far an attempt got before the share was full).
#[tracing::instrument(name = "attempt", level = "info", skip_all, fields(id = tracing::field::Empty))]
pub(crate) async fn write_backup_counting(
    spec: &JobSpec,
    sources: &[Arc<dyn BackupSource>],
    now: i64,
    progress: Option<ibs_archive::ProgressFn>,
    sent: &AtomicU64,
) -> Result<JobSummary> {
    check_spec(spec)?;
    check_sources(sources)?;
    let mut options = WriterOptions::default()
        .created(now)
        .producer_version(spec.producer_version.clone())
        .label("fqdn", spec.instance.fqdn())
        .label("region", spec.instance.region())
        .depth(8);
    if let Some(key) = &spec.signer {
        options = options.signer(Arc::clone(key));
    }
    if let Some(p) = progress {
        options = options.progress(p);
    }
    let recipients: Vec<&Certificate> = spec.certificates.iter().collect();
    let enc = ArchiveEncoder::new(&recipients, options)?;
    let archive_id = enc.header().fields().archive_id;
    // The id orders after every backup of the same second already there.
    let existing: Vec<BackupId> = spec
        .target
        .list_all(&spec.instance.backup_root())
        .await?
        .iter()
        .filter_map(|o| o.path.parent()?.name()?.parse().ok())
        .collect();
    let id = BackupId::next(now, &existing)?;
    tracing::Span::current().record("id", tracing::field::display(&id));
    let backup = begin_backup(&spec.target, &spec.instance, id).await?;
    tracing::info!(sources = sources.len(), "capture and upload started");
    // The upload runs as its own task fed by a bounded queue (memory stays
    // bounded: UPLOAD_QUEUE pieces of at most a frame each); it also hashes
    // what it sends (for the manifest), off the encoder's task.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(UPLOAD_QUEUE);
    let counter = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&counter);
    let uploader = tokio::spawn(tracing::Instrument::in_current_span(async move {
        let mut backup = backup;
        while let Some(piece) = rx.recv().await {
            let sent = backup.write(piece).await;
            counted.store(backup.bytes_written(), Ordering::Relaxed);
            if let Err(e) = sent {
                return (backup, Err(e));
            }
        }
        (backup, Ok(()))
    }));
    let captured = capture(enc, tx, sources).await;
    let joined = uploader.await;
    sent.store(counter.load(Ordering::Relaxed), Ordering::Relaxed);
    let (backup, uploaded) = joined.map_err(|source| ControllerError::Task { task: "upload", source })?;
    let failure = match (captured, uploaded) {
        (_, Err(e)) => ControllerError::from(e),
        (Err(e), Ok(())) => e,
        (Ok((data_bytes, entries, warnings)), Ok(())) => {
            let id = backup.id().clone();
            let archive_bytes = backup.bytes_written();
            tracing::info!(
                entries,
                data_bytes,
                archive_bytes,
                warnings = warnings.total(),
                "capture and upload done; committing"
            );
            let details = CommitDetails {
                archive_id,
                producer_version: spec.producer_version.clone(),
                recipients: spec.certificates.iter().map(Certificate::thumbprint).collect(),
            };
            backup.commit(details).await.map_err(|e| match e {
                RepositoryError::Unconfirmed { id, source } => ControllerError::Unconfirmed { id, source: *source },
                RepositoryError::NotComplete { id, state, problem } => ControllerError::NotComplete {
                    id,
                    state: state.to_owned(),
                    problem,
                },
                other => other.into(),
            })?;
            tracing::info!("committed and read back as complete");
            return Ok(JobSummary {
                id,
                data_bytes,
                archive_bytes,
                entries,
                attempts: 1,
                deleted: Vec::new(),
                damaged: Vec::new(),
                untrusted: Vec::new(),
                unrecognised: Vec::new(),
                kept_folders: Vec::new(),
                retention_failed: None,
                warnings,
            });
        }
    };
    tracing::warn!(error = %failure, "backup attempt failed; removing what it wrote");
    backup.abort().await;
    Err(failure)
}

/// Pieces queued between the encoder and the upload.
const UPLOAD_QUEUE: usize = 8;

async fn capture(
    enc: ArchiveEncoder,
    upload: tokio::sync::mpsc::Sender<Bytes>,
    sources: &[Arc<dyn BackupSource>],
) -> Result<(u64, u64, Warnings)> {
    let mut sink = ArchiveSink {
        enc,
        upload,
        source: String::new(),
        warnings: Warnings::default(),
    };
    for source in sources {
        sink.source = source.name().to_owned();
        // Recorded even when it captures nothing: it restores as an empty folder.
        sink.enc.add_source(source.name())?;
        source.capture(&mut sink).await?;
    }
    sink.enc.finish()?;
    sink.drain_all().await?;
    let Progress {
        bytes_in, entries_done, ..
    } = sink.enc.progress();
    Ok((bytes_in, entries_done, sink.warnings))
}

/// The retention view of a catalogue: complete backups with a fresh
/// successful check in `checks` are [`BackupState::Checked`] — or
/// [`BackupState::Untrusted`] when `trust` does not trust their signer. Each
/// backup's age is measured from the later of its id's time and its
/// manifest's creation time: a damaged manifest cannot make a backup look
/// older than it is (and so expire early).
pub fn records(catalogue: &Catalogue, checks: &CheckMemo, now: i64, trust: &SignerTrust) -> Vec<BackupRecord> {
    catalogue
        .backups
        .iter()
        .map(|b| BackupRecord {
            id: b.id.to_string(),
            path: b.paths.folder.clone(),
            created: b.created.max(b.id.created()),
            size: b.size,
            state: match (b.state, checks.fresh(b, now)) {
                (BackupState::Complete, Some(signer)) if trust.trusts(&signer) => BackupState::Checked,
                (BackupState::Complete, Some(_)) => BackupState::Untrusted,
                (state, _) => state,
            },
        })
        .collect()
}

/// A retention plan, and what was learnt making it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// What to delete and why; its warnings include every object in the
    /// backup folder that ibs did not write ([`Warning::Unrecognised`]).
    pub plan: Plan,
    /// Backups read whole and found intact while planning.
    pub checked: Vec<CheckReport>,
    /// Backups read whole and found damaged while planning.
    pub damaged: Vec<DamagedBackup>,
    /// Backups found intact but not signed by a trusted signer (read while
    /// planning, or remembered from an earlier check), oldest first.
    pub untrusted: Vec<UntrustedBackup>,
    /// Backups the catalogue lists as damaged (no need to read them: a
    /// missing or resized archive, a manifest that disagrees with the archive
    /// or its id, …), with why.
    pub listed_damaged: Vec<DamagedBackup>,
}

/// Plans retention at the location; `next_backup_bytes` asks for room for one more.
///
/// Whenever the plan would delete a backup (other than incomplete garbage)
/// while the newest complete one (the one it keeps in their place) has not
/// been checked, that one is checked first — its whole archive read and
/// compared with its manifest, its signature verified, no key needed — and
/// the plan is made again: with it [checked](BackupState::Checked); when it
/// is damaged, with it [damaged](BackupState::Damaged) (reported in
/// [`Retention::damaged`]); when it is intact but `trust` does not trust its
/// signer, with it [untrusted](BackupState::Untrusted) (reported in
/// [`Retention::untrusted`]) — and in both of those cases the next newest
/// protected instead. So the location never loses its last intact backup to
/// a damaged newer one, nor the controller's own backups to a newer one
/// someone else wrote, at the cost of one archive read per run in the common
/// case (none when nothing is to be deleted or `checks` remembers a fresh
/// check). A target that fails during a check fails the plan: nothing is
/// deleted on a guess.
#[tracing::instrument(name = "retention", level = "info", skip_all, fields(next_backup_bytes = ?next_backup_bytes))]
pub async fn plan_retention(
    target: &Arc<dyn StorageTarget>,
    instance: &InstanceLayout,
    policy: &Policy,
    now: i64,
    next_backup_bytes: Option<u64>,
    checks: &CheckMemo,
    trust: &SignerTrust,
) -> Result<Retention> {
    // Planning only reads.
    let target: Arc<dyn ReadTarget> = target.clone();
    let catalogue = ibs_repository::catalogue(&target, instance).await?;
    let capacity = match target.capacity().await {
        Ok(c) => CapacityFacts {
            free_bytes: c.free_bytes,
            total_bytes: c.total_bytes,
            next_backup_bytes,
        },
        Err(e) if e.kind() == ErrorKind::Other => CapacityFacts::unknown(),
        Err(e) => return Err(e.into()),
    };
    let mut records = records(&catalogue, checks, now, trust);
    let mut out = Retention {
        listed_damaged: catalogue
            .backups
            .iter()
            .filter(|b| b.state == BackupState::Damaged)
            .map(|b| DamagedBackup {
                id: b.id.to_string(),
                problem: b.problem.clone().unwrap_or_else(|| "damaged".into()),
            })
            .collect(),
        ..Retention::default()
    };
    // Each round turns one unchecked complete backup into checked or
    // unreadable, so this settles within one round per backup.
    for _ in 0..=records.len() {
        let mut plan = ibs_retention::plan(&records, now, policy, instance, &capacity);
        let Some(id) = plan.check_first.take() else {
            plan.warnings.extend(
                catalogue
                    .unrecognised
                    .iter()
                    .map(|path| Warning::Unrecognised { path: path.clone() }),
            );
            for d in &plan.deletions {
                tracing::info!(id = %d.id, reason = ?d.reason, size = d.size, "retention decides to delete");
            }
            for w in &plan.warnings {
                tracing::info!(warning = ?w, "retention warning");
            }
            tracing::info!(
                backups = records.len(),
                deletions = plan.deletions.len(),
                "retention planned"
            );
            // Every untrusted one, also those a remembered check found.
            out.untrusted = records
                .iter()
                .filter(|r| r.state == BackupState::Untrusted)
                .filter_map(|r| catalogue.get(&r.id))
                .map(|b| UntrustedBackup {
                    id: b.id.to_string(),
                    signer: checks.fresh(b, now).and_then(|s| s.fingerprint()),
                })
                .collect();
            out.plan = plan;
            return Ok(out);
        };
        let (Some(info), Some(record)) = (catalogue.get(&id), records.iter_mut().find(|r| r.id == id)) else {
            break;
        };
        tracing::info!(%id, "checking the newest complete backup before deleting older ones");
        match ibs_repository::check_integrity(&target, info).await {
            Ok(report) => {
                checks.remember(&report, now);
                if trust.trusts(&report.signer) {
                    tracing::info!(%id, "intact");
                    record.state = BackupState::Checked;
                    out.checked.push(report);
                } else {
                    tracing::warn!(%id, signer = ?report.signer.fingerprint(), "intact, but not signed by a trusted signer");
                    record.state = BackupState::Untrusted;
                }
            }
            Err(e) if e.is_damage() => {
                record.state = BackupState::Damaged;
                let problem = match e {
                    RepositoryError::IntegrityMismatch { found, expected, .. } => {
                        format!("its archive's SHA-256 is {found}, its manifest says {expected}")
                    }
                    RepositoryError::NotComplete { problem, .. } => problem,
                    other => other.to_string(),
                };
                tracing::warn!(%id, %problem, "backup is damaged");
                out.damaged.push(DamagedBackup { id, problem });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControllerError::Internal {
        reason: "the retention plan did not settle; nothing was deleted".into(),
    })
}

/// What [`apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The deletions carried out, in order.
    pub deleted: Vec<Deletion>,
    /// Folders of deleted backups that stay, each with why: something ibs
    /// did not write is in them (listed or not: a symbolic link, an empty
    /// folder, a name the target cannot show), or removing the empty folder
    /// failed. The backup itself is gone either way.
    pub kept_folders: Vec<String>,
}

/// Carries out a plan, deleting only what ibs wrote. For each backup: its
/// manifest first (the commit marker: a deletion cut short leaves an
/// incomplete backup, which is garbage, never one that looks complete and
/// is not), then its archive and its own uncommitted uploads, then its
/// folder — only if nothing else is left in it. Objects ibs did not write
/// stay, with their folder (the catalogue lists them as unrecognised); a
/// folder that turns out not to be empty is reported, not an error.
#[tracing::instrument(name = "prune", level = "info", skip_all, fields(deletions = plan.deletions.len()))]
pub async fn apply(target: &Arc<dyn StorageTarget>, plan: &Plan) -> Result<Applied> {
    let mut out = Applied::default();
    for d in &plan.deletions {
        tracing::info!(id = %d.id, reason = ?d.reason, path = %d.path, "deleting backup");
        let objects = target.list_all(&d.path).await?;
        let mut ours: Vec<_> = objects
            .iter()
            .filter(|o| o.path.parent().as_ref() == Some(&d.path) && o.path.name().is_some_and(is_our_name))
            .collect();
        ours.sort_by_key(|o| o.path.name() != Some(MANIFEST_NAME));
        for object in &ours {
            target.delete(&object.path).await?;
        }
        if ours.len() == objects.len() {
            match target.delete_dir(&d.path).await {
                Ok(()) => {}
                // Not empty after all (a link, an empty folder, a name the
                // listing cannot show): kept and reported. A failure of the
                // target itself (unreachable, refused) fails the run.
                Err(e) if e.kind() == ErrorKind::Other => {
                    tracing::warn!(path = %d.path, error = %e, "folder kept");
                    out.kept_folders.push(format!("{}: {e}", d.path))
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            tracing::warn!(path = %d.path, "folder kept: it holds files ibs did not write");
            out.kept_folders
                .push(format!("{}: it holds files ibs did not write", d.path));
        }
        out.deleted.push(d.clone());
    }
    Ok(out)
}
