//! Settings, the single-job guard, the maintenance gate, the schedule and job history.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use ibs_envelope::Certificate;
use ibs_repository::InstanceLayout;
use ibs_retention::{Policy, Warning};
use ibs_storage::{Alert, CommitMode, ErrorKind, Location, ReadTarget, StorageTarget, StorageTargetExt};

use crate::job::{
    CheckMemo, DamagedBackup, JobSpec, JobSummary, RetentionFailure, UntrustedBackup, apply, plan_retention,
    write_backup, write_backup_counting,
};
use crate::source::{BackupSource, DirectorySource};
use crate::target::{Access, open_target};
use crate::{ControllerError, Result};

/// Everything backup needs. Credentials never appear in `Debug` output.
#[derive(Clone)]
pub struct Settings {
    /// Where backups go.
    pub location: Location,
    /// What the location's backend needs besides the location (SMB
    /// credentials, object-store options).
    pub access: Access,
    /// The certificates backups are encrypted to (RSA ≥ 2048; 1 to 32, no
    /// two alike): each one's `.pfx` alone restores them.
    pub certificates: Vec<Certificate>,
    /// External domain fqdn of this instance; with `region` it names the
    /// instance's folder at the location (`<fqdn>/<region>/MASBackup`).
    pub fqdn: String,
    /// Region of this instance (the second segment of its folder).
    pub region: String,
    /// Schedule and retention (default every 12 h, 7 days).
    pub policy: Policy,
    /// Version of this system (recorded in every backup).
    pub producer_version: String,
    /// The controller's signing key (every backup signed when set).
    pub signer: Option<Arc<ibs_envelope::SigningKey>>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("location", &self.location)
            .field("access", &self.access)
            .field(
                "certificates",
                &self
                    .certificates
                    .iter()
                    .map(|c| c.thumbprint().to_string())
                    .collect::<Vec<_>>(),
            )
            .field("fqdn", &self.fqdn)
            .field("region", &self.region)
            .field("policy", &self.policy)
            .field("producer_version", &self.producer_version)
            .field("signer", &self.signer.as_ref().map(|k| k.verifying_key().fingerprint()))
            .finish()
    }
}

impl Settings {
    /// The storage target for the location.
    pub fn target(&self) -> Result<Arc<dyn StorageTarget>> {
        open_target(&self.location, &self.access)
    }

    /// Keeps a source and the location apart; call it before the first
    /// backup (nothing is written). When the location is a local
    /// directory inside the source, the location's backup folder
    /// (`<dir>/<fqdn>/<region>/MASBackup`) is excluded from the source, so a
    /// backup never holds the earlier backups (a source such as `/var` with
    /// the location at `/var/backups` keeps working). A source inside that
    /// backup folder is refused: it would back up backups.
    pub fn prepare_source(&self, source: DirectorySource) -> Result<DirectorySource> {
        let Location::Local(dir) = &self.location else {
            return Ok(source);
        };
        let mut folder = dir.clone();
        for segment in self.instance()?.backup_root().segments() {
            folder.push(segment);
        }
        let root = resolved(source.root());
        let backups = resolved(&folder);
        if root.starts_with(&backups) {
            return Err(ControllerError::InvalidSetting {
                setting: "source",
                reason: format!(
                    "source {} ({}) is inside the backup folder {} of the location; back up the system's own \
                     folders, not the backups",
                    source.name(),
                    source.root().display(),
                    folder.display()
                ),
            });
        }
        Ok(source.exclude_folder(folder))
    }

    /// The instance layout (`fqdn/region/MASBackup`).
    pub fn instance(&self) -> Result<InstanceLayout> {
        InstanceLayout::new(&self.fqdn, &self.region).map_err(|e| ControllerError::InvalidSetting {
            setting: "fqdn/region",
            reason: e.to_string(),
        })
    }
}

/// `path` absolute, with symbolic links resolved as far as it exists (the
/// rest appended as given), so two spellings of one folder compare equal.
fn resolved(path: &std::path::Path) -> std::path::PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(mut real) = std::fs::canonicalize(existing) {
            real.extend(rest.iter().rev());
            return real;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Checks settings against the real world: the location is reachable and
/// writable with the credentials (a probe object is written and removed in the
/// backup folder), and the certificate is RSA ≥ 2048 (parsing enforced it).
pub async fn validate(settings: &Settings) -> Result<Arc<dyn StorageTarget>> {
    let instance = settings.instance()?;
    let target = settings.target()?;
    validate_target(&target, &instance).await?;
    Ok(target)
}

/// The location check of [`validate`] on a target already opened (a test
/// wraps it to inject faults): creates the instance's backup folder, writes
/// a probe object there and removes it.
pub async fn validate_target(target: &Arc<dyn StorageTarget>, instance: &InstanceLayout) -> Result<()> {
    let root = instance.backup_root();
    target.create_dir_all(&root).await?;
    // Named per call: two controllers (or two `ibs backup`s) validating one
    // share at once must not commit or delete each other's probe.
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(ControllerError::Random)?;
    let tag: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let probe = root.child(&format!(".ibs-write-probe-{tag}"))?;
    target
        .put_bytes(&probe, Bytes::from_static(b"ibs"), CommitMode::Overwrite)
        .await?;
    target.delete(&probe).await?;
    Ok(())
}

/// The kind of a location, for logs: never its credentials, not even its host.
fn location_kind(location: &Location) -> &'static str {
    match location {
        Location::Local(_) => "local",
        Location::Smb { .. } => "smb",
        Location::Object { .. } => "object-store",
    }
}

/// What started a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The schedule ([`Controller::is_due`]): in a maintenance window the job
    /// is recorded as [`JobOutcome::Skipped`].
    Scheduled,
    /// An operator or API call: in a maintenance window it is refused
    /// ([`ControllerError::Maintenance`](crate::ControllerError::Maintenance)).
    OnDemand,
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    /// Still running: the record of the job in progress, replaced by its
    /// outcome when it ends.
    Running,
    /// Done: what was written.
    Succeeded {
        /// The backup and what it holds (sizes).
        summary: JobSummary,
        /// Wall time in seconds.
        seconds: f64,
        /// Plaintext bytes captured per second.
        bytes_per_second: f64,
    },
    /// Done, with something to report ([`JobSummary::has_warnings`]): a
    /// source skipped or captured inexactly some items of the live system
    /// (`summary.warnings`), retention found a damaged backup
    /// (`summary.damaged`) or one the job's signing key did not sign
    /// (`summary.untrusted`), or retention failed after the backup
    /// (`summary.retention_failed`). The backup is complete and restorable;
    /// an operator should look at the rest.
    SucceededWithWarnings {
        /// The backup, what it holds, and the warnings.
        summary: JobSummary,
        /// Wall time in seconds.
        seconds: f64,
        /// Plaintext bytes captured per second.
        bytes_per_second: f64,
    },
    /// A scheduled job skipped for a maintenance window.
    Skipped {
        /// Why it did not run (`maintenance window`).
        reason: String,
    },
    /// Failed: class, alert and the error text.
    Failed {
        /// The failure class ([`ControllerError::kind`](crate::ControllerError::kind)).
        kind: ErrorKind,
        /// The alert raised for the operator: title, description, remediation.
        alert: Alert,
        /// The error's message (its `Display`), for the log.
        error: String,
    },
}

impl JobOutcome {
    /// Whether the job wrote a backup ([`JobOutcome::Succeeded`] or
    /// [`JobOutcome::SucceededWithWarnings`]).
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            JobOutcome::Succeeded { .. } | JobOutcome::SucceededWithWarnings { .. }
        )
    }
}

/// One entry of the job history.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// When it started, Unix seconds.
    pub started: i64,
    /// What started it.
    pub trigger: Trigger,
    /// How it ended.
    pub outcome: JobOutcome,
}

/// The reference controller.
pub struct Controller {
    progress: Arc<Mutex<Option<ibs_archive::Progress>>>,
    settings: Mutex<Option<Settings>>,
    sources: Vec<Arc<dyn BackupSource>>,
    running: tokio::sync::Mutex<()>,
    maintenance: Mutex<bool>,
    history: Mutex<Vec<JobRecord>>,
    checks: CheckMemo,
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field(
                "sources",
                &self.sources.iter().map(|s| s.name().to_owned()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Controller {
    /// A controller capturing `sources`, not yet enabled.
    pub fn new(sources: Vec<Arc<dyn BackupSource>>) -> Self {
        Controller {
            progress: Arc::new(Mutex::new(None)),
            settings: Mutex::new(None),
            sources,
            running: tokio::sync::Mutex::new(()),
            maintenance: Mutex::new(false),
            history: Mutex::new(Vec::new()),
            checks: CheckMemo::default(),
        }
    }

    /// Enables backup (or changes its settings) after checking them against
    /// the location. A new certificate affects only backups made afterwards.
    pub async fn enable(&self, settings: Settings) -> Result<()> {
        validate(&settings).await?;
        *lock(&self.settings) = Some(settings);
        Ok(())
    }

    /// The settings of the last successful [`Controller::enable`], or `None`
    /// while backup is not enabled.
    pub fn settings(&self) -> Option<Settings> {
        lock(&self.settings).clone()
    }

    /// Enters or leaves a maintenance window: while on, on-demand backups are
    /// refused ([`ControllerError::Maintenance`](crate::ControllerError::Maintenance))
    /// and scheduled ones are recorded as [`JobOutcome::Skipped`].
    pub fn set_maintenance(&self, on: bool) {
        *lock(&self.maintenance) = on;
    }

    /// The running job's progress (bytes in and out, entries and frames
    /// done), or `None` when no job runs.
    pub fn progress(&self) -> Option<ibs_archive::Progress> {
        *lock(&self.progress)
    }

    /// The job history, oldest first.
    pub fn history(&self) -> Vec<JobRecord> {
        lock(&self.history).clone()
    }

    /// Whether a scheduled backup is due at `now` (the interval has passed
    /// since the last successful one, or there is none).
    pub fn is_due(&self, now: i64) -> bool {
        let Some(settings) = self.settings() else { return false };
        let interval = i64::from(settings.policy.interval_hours()) * 3600;
        let last = lock(&self.history)
            .iter()
            .rev()
            .find(|r| r.outcome.is_success())
            .map(|r| r.started);
        last.is_none_or(|t| now - t >= interval)
    }

    /// Runs a job now. A second request while one runs gets
    /// [`ControllerError::AlreadyRunning`]; an on-demand request in a
    /// maintenance window gets [`ControllerError::Maintenance`]; a scheduled
    /// one is recorded as skipped.
    #[tracing::instrument(name = "controller run", level = "info", skip(self), fields(location_kind = tracing::field::Empty))]
    pub async fn run(&self, trigger: Trigger, now: i64) -> Result<JobRecord> {
        let settings = self.settings().ok_or(ControllerError::NotEnabled)?;
        if *lock(&self.maintenance) {
            if trigger == Trigger::OnDemand {
                return Err(ControllerError::Maintenance);
            }
            tracing::info!("scheduled job skipped: maintenance window");
            let record = JobRecord {
                started: now,
                trigger,
                outcome: JobOutcome::Skipped {
                    reason: "maintenance window".into(),
                },
            };
            lock(&self.history).push(record.clone());
            return Ok(record);
        }
        tracing::Span::current().record("location_kind", location_kind(&settings.location));
        let _guard = self.running.try_lock().map_err(|_| ControllerError::AlreadyRunning)?;
        lock(&self.history).push(JobRecord {
            started: now,
            trigger,
            outcome: JobOutcome::Running,
        });
        let start = Instant::now();
        *lock(&self.progress) = Some(ibs_archive::Progress::default());
        let result = self.job(&settings, now).await;
        *lock(&self.progress) = None;
        let outcome = match result {
            Ok(summary) => {
                let seconds = start.elapsed().as_secs_f64();
                let bytes_per_second = summary.data_bytes as f64 / seconds.max(1e-6);
                if !summary.has_warnings() {
                    JobOutcome::Succeeded {
                        bytes_per_second,
                        summary,
                        seconds,
                    }
                } else {
                    JobOutcome::SucceededWithWarnings {
                        bytes_per_second,
                        summary,
                        seconds,
                    }
                }
            }
            Err(e) => {
                tracing::warn!(kind = ?e.kind(), error = %e, "backup job failed");
                JobOutcome::Failed {
                    kind: e.kind(),
                    alert: e.alert(),
                    error: e.to_string(),
                }
            }
        };
        let record = JobRecord {
            started: now,
            trigger,
            outcome,
        };
        if let Some(last) = lock(&self.history).last_mut() {
            *last = record.clone();
        }
        Ok(record)
    }

    async fn job(&self, settings: &Settings, now: i64) -> Result<JobSummary> {
        let spec = JobSpec {
            target: settings.target()?,
            instance: settings.instance()?,
            certificates: settings.certificates.clone(),
            producer_version: settings.producer_version.clone(),
            policy: settings.policy,
            checks: self.checks.clone(),
            signer: settings.signer.clone(),
        };
        let shared = Arc::clone(&self.progress);
        let report: ibs_archive::ProgressFn = Arc::new(move |p: &ibs_archive::Progress| {
            *lock(&shared) = Some(*p);
        });
        run_job_with_progress(&spec, &self.sources, now, Some(report)).await
    }
}

/// A job with its out-of-capacity rule: on a full target, retention frees
/// space (oldest first, never the newest intact backup: see
/// [`plan_retention`]) and the backup is tried once more (not when the
/// backup was committed and only reading it back failed); then retention
/// runs as usual. The summary says how many attempts it took and every
/// deletion with its reason, in order.
pub async fn run_job(spec: &JobSpec, sources: &[Arc<dyn BackupSource>], now: i64) -> Result<JobSummary> {
    run_job_with_progress(spec, sources, now, None).await
}

/// [`run_job`], reporting progress.
///
/// Runs in a `backup job` span (`tracing`, level `INFO`: instance and
/// location; each attempt a span with the backup's id), with events at its
/// phases: capture and upload started and done, commit, an out-of-capacity
/// retry, retention's checks and decisions, each deletion.
#[tracing::instrument(
    name = "backup job",
    level = "info",
    skip_all,
    fields(fqdn = spec.instance.fqdn(), region = spec.instance.region(), location = %spec.target)
)]
pub async fn run_job_with_progress(
    spec: &JobSpec,
    sources: &[Arc<dyn BackupSource>],
    now: i64,
    progress: Option<ibs_archive::ProgressFn>,
) -> Result<JobSummary> {
    let mut freed = Vec::new();
    let mut damaged = Vec::new();
    let mut untrusted = Vec::new();
    let mut kept_folders = Vec::new();
    // How far the first attempt got: if it ran out of space, the backup
    // needs more than that.
    let sent = std::sync::atomic::AtomicU64::new(0);
    let mut summary = match write_backup_counting(spec, sources, now, progress.clone(), &sent).await {
        // Not when the backup was committed and only reading it back failed
        // (whatever the class): a retry would write it twice.
        Err(e) if e.kind() == ErrorKind::OutOfCapacity && !matches!(e, ControllerError::Unconfirmed { .. }) => {
            tracing::warn!(error = %e, "the target is out of capacity: freeing space for one more attempt");
            let reader: Arc<dyn ReadTarget> = spec.target.clone();
            let catalogue = ibs_repository::catalogue(&reader, &spec.instance).await?;
            let newest = catalogue.complete().last().map(|b| b.size);
            // Room for a backup like the newest: never more is deleted for a
            // retry that may fail anyway (a backup that has grown beyond the
            // space left fails with the capacity alert, and nothing complete is
            // lost for it: the operator adds capacity or prunes). With no
            // complete backup, room for more than the first attempt wrote
            // (only garbage can go: with nothing complete left, damaged backups stay).
            let first = sent.load(std::sync::atomic::Ordering::Relaxed).saturating_add(1);
            let need = newest.unwrap_or(first);
            let retention = plan_retention(
                &spec.target,
                &spec.instance,
                &spec.policy,
                now,
                Some(need),
                &spec.checks,
                &spec.trust(),
            )
            .await?;
            damaged = retention.damaged;
            untrusted = retention.untrusted;
            let applied = apply(&spec.target, &retention.plan).await?;
            kept_folders = applied.kept_folders;
            freed = applied.deleted;
            if freed.is_empty() {
                tracing::warn!("nothing could be freed");
                return Err(e);
            }
            let mut second = match write_backup(spec, sources, now, progress).await {
                Ok(second) => second,
                Err(source) => {
                    return Err(ControllerError::RetryFailed {
                        freed: freed.iter().map(|d| d.id.clone()).collect(),
                        source: Box::new(source),
                    });
                }
            };
            second.attempts = 2;
            second
        }
        other => other?,
    };
    // The backup is committed and reads back as complete: from here on a
    // failure is retention's, reported with the backup, not a failed job.
    summary.deleted = freed;
    match retain(spec, now, &mut summary).await {
        Ok((found, found_untrusted)) => {
            damaged.extend(found);
            // The retry's plan may have named some already.
            for u in found_untrusted {
                if !untrusted.iter().any(|known: &UntrustedBackup| known.id == u.id) {
                    untrusted.push(u);
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "retention after the backup failed; the backup stands");
            summary.retention_failed = Some(RetentionFailure {
                error: e.to_string(),
                alert: e.alert(),
            })
        }
    }
    summary.damaged = damaged;
    // Those deleted since (to make room, or expired) are in `deleted`.
    untrusted.retain(|u| !summary.deleted.iter().any(|d| d.id == u.id));
    summary.untrusted = untrusted;
    summary.kept_folders.splice(0..0, kept_folders);
    tracing::info!(
        id = %summary.id,
        attempts = summary.attempts,
        deleted = summary.deleted.len(),
        damaged = summary.damaged.len(),
        "backup job done"
    );
    Ok(summary)
}

/// Retention after a backup: plans, applies, records what it did in
/// `summary`; returns the damaged and the untrusted backups it found.
async fn retain(
    spec: &JobSpec,
    now: i64,
    summary: &mut JobSummary,
) -> Result<(Vec<DamagedBackup>, Vec<UntrustedBackup>)> {
    let retention = plan_retention(
        &spec.target,
        &spec.instance,
        &spec.policy,
        now,
        None,
        &spec.checks,
        &spec.trust(),
    )
    .await?;
    summary.unrecognised = retention
        .plan
        .warnings
        .iter()
        .filter_map(|w| match w {
            Warning::Unrecognised { path } => Some(path.to_string()),
            _ => None,
        })
        .collect();
    let applied = apply(&spec.target, &retention.plan).await?;
    summary.deleted.extend(applied.deleted);
    summary.kept_folders.extend(applied.kept_folders);
    Ok((retention.damaged, retention.untrusted))
}
