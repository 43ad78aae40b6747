//! One backup job: sources → archive → storage target → commit last → retention.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ibs_archive::{ArchiveEncoder, EntryMeta, Progress, WriterOptions};
use ibs_envelope::Certificate;
use ibs_recovery::layout::{BackupId, BackupPaths, Manifest};
use ibs_recovery::{BackupState as RecoveryState, Catalogue};
use ibs_retention::{BackupRecord, BackupState, CapacityFacts, Plan, Policy};
use ibs_storage::{CommitMode, ErrorKind, InstanceLayout, StorageTarget, StorageTargetExt};
use sha2::{Digest, Sha256};

use crate::source::{BackupSource, CaptureWarning, EntrySink, Warnings};
use crate::{ControllerError, Result};

/// What a job needs to know.
#[derive(Clone)]
pub struct JobSpec {
    /// The target.
    pub target: Arc<dyn StorageTarget>,
    /// The instance's folder layout.
    pub instance: InstanceLayout,
    /// The encryption certificate.
    pub certificate: Certificate,
    /// The producing system's version.
    pub producer_version: String,
    /// Retention policy.
    pub policy: Policy,
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
    /// Backups deleted by retention afterwards.
    pub deleted: Vec<String>,
    /// What the sources skipped or captured inexactly (a live system); when
    /// not empty the job succeeded with warnings.
    pub warnings: Warnings,
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
    async fn begin(&mut self, path: &str, mode: Option<u32>, mtime: Option<i64>) -> Result<()> {
        let mut meta = EntryMeta::new(self.source.clone(), path);
        if let Some(m) = mode {
            meta = meta.mode(m);
        }
        if let Some(t) = mtime {
            meta = meta.mtime(t);
        }
        self.enc.start_entry(meta)?;
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

/// Writes one backup, committed last: the archive is uploaded under a
/// temporary name and committed, then the manifest is put with
/// `CreateNew`. Only then does the backup list as complete.
pub async fn write_backup(
    spec: &JobSpec,
    sources: &[Arc<dyn BackupSource>],
    now: i64,
    progress: Option<ibs_archive::ProgressFn>,
) -> Result<JobSummary> {
    let id = BackupId::generate(now)?;
    let paths = BackupPaths::new(&spec.instance, &id)?;
    spec.target.create_dir_all(&paths.folder).await?;
    let mut options = WriterOptions::default()
        .created(now)
        .producer_version(spec.producer_version.clone())
        .label("fqdn", spec.instance.fqdn())
        .label("region", spec.instance.region())
        .depth(8);
    if let Some(p) = progress {
        options = options.progress(p);
    }
    let enc = ArchiveEncoder::new(&[&spec.certificate], options)?;
    let archive_id = enc.header().fields().archive_id;
    let mut upload = spec.target.put(&paths.archive, CommitMode::CreateNew).await?;
    // The upload runs as its own task fed by a bounded queue (memory stays
    // bounded: UPLOAD_QUEUE pieces of at most a frame each).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(UPLOAD_QUEUE);
    // The uploader also hashes what it sends, off the encoder's task.
    let uploader = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(piece) = rx.recv().await {
            hasher.update(&piece);
            written += piece.len() as u64;
            if let Err(e) = upload.write(piece).await {
                return (upload, Err(e));
            }
        }
        (upload, Ok((<[u8; 32]>::from(hasher.finalize()), written)))
    });
    let captured = capture(enc, tx, sources).await;
    let (upload, uploaded) = uploader.await.map_err(|e| ControllerError::Internal {
        reason: format!("the upload task failed: {e}"),
    })?;
    let failure = match (captured, uploaded) {
        (_, Err(e)) => Some(ControllerError::from(e)),
        (Err(e), Ok(_)) => Some(e),
        (Ok((data_bytes, entries, warnings)), Ok((hash, written))) => {
            upload.commit().await?;
            let manifest = Manifest {
                id: id.clone(),
                archive_id,
                archive_size: written,
                archive_sha256: hash,
                created: now,
                producer_version: spec.producer_version.clone(),
                fqdn: spec.instance.fqdn().to_owned(),
                region: spec.instance.region().to_owned(),
                recipients: vec![spec.certificate.thumbprint()],
            };
            spec.target
                .put_bytes(&paths.manifest, Bytes::from(manifest.encode()), CommitMode::CreateNew)
                .await?;
            return Ok(JobSummary {
                id,
                data_bytes,
                archive_bytes: written,
                entries,
                deleted: Vec::new(),
                warnings,
            });
        }
    };
    let _ = upload.abort().await;
    let _ = spec.target.delete_dir(&paths.folder).await;
    Err(failure.unwrap_or_else(|| ControllerError::Internal {
        reason: "unknown failure".into(),
    }))
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
        source.capture(&mut sink).await?;
    }
    sink.enc.finish()?;
    sink.drain_all().await?;
    let Progress {
        bytes_in, entries_done, ..
    } = sink.enc.progress();
    Ok((bytes_in, entries_done, sink.warnings))
}

/// The retention view of a catalogue.
pub fn records(catalogue: &Catalogue) -> Vec<BackupRecord> {
    catalogue
        .backups
        .iter()
        .map(|b| BackupRecord {
            id: b.id.to_string(),
            path: b.paths.folder.clone(),
            created: b.created,
            size: b.size,
            state: match b.state {
                RecoveryState::Complete => BackupState::Complete,
                RecoveryState::Incomplete => BackupState::Incomplete,
                RecoveryState::Damaged => BackupState::Unreadable,
            },
        })
        .collect()
}

/// Plans retention at the location; `next_backup_bytes` asks for room for one more.
pub async fn plan_retention(
    target: &Arc<dyn StorageTarget>,
    instance: &InstanceLayout,
    policy: &Policy,
    now: i64,
    next_backup_bytes: Option<u64>,
) -> Result<Plan> {
    let catalogue = ibs_recovery::catalogue(target, instance).await?;
    let capacity = match target.capacity().await {
        Ok(c) => CapacityFacts {
            free_bytes: c.free_bytes,
            total_bytes: c.total_bytes,
            next_backup_bytes,
        },
        Err(e) if e.kind() == ErrorKind::Other => CapacityFacts::unknown(),
        Err(e) => return Err(e.into()),
    };
    Ok(ibs_retention::plan(
        &records(&catalogue),
        now,
        policy,
        instance,
        &capacity,
    ))
}

/// Carries out a plan: deletes each backup's objects, then its folder.
pub async fn apply(target: &Arc<dyn StorageTarget>, plan: &Plan) -> Result<Vec<String>> {
    let mut deleted = Vec::with_capacity(plan.deletions.len());
    for d in &plan.deletions {
        target.delete_prefix(&d.path).await?;
        target.delete_dir(&d.path).await?;
        deleted.push(d.id.clone());
    }
    Ok(deleted)
}
