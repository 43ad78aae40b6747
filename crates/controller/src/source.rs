//! Backup sources: what a backup captures.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use crate::{ControllerError, Result};

/// The standard infrastructure sources. An embedding service registers one
/// [`BackupSource`] per name it has.
pub mod names {
    /// Deployment inputs (the answers the system was deployed with).
    pub const DEPLOYMENT_INPUTS: &str = "deployment-inputs";
    /// The internal identity store (users, groups, service principals).
    pub const INTERNAL_IDENTITY: &str = "identity";
    /// Federated identity configuration (AD FS / Entra ID trust).
    pub const FEDERATED_IDENTITY: &str = "federated-identity";
    /// Internal certificate authority root certificates.
    pub const CA_ROOTS: &str = "ca";
    /// Resource-manager configuration: subscriptions, plans, offers, quotas.
    pub const RESOURCE_MANAGER: &str = "resource-manager";
    /// Key vault secrets and vaults.
    pub const KEY_VAULT: &str = "key-vault";
    /// Role-based access control assignments.
    pub const RBAC: &str = "rbac";
    /// All of them, in capture order.
    pub const ALL: [&str; 7] = [
        DEPLOYMENT_INPUTS,
        INTERNAL_IDENTITY,
        FEDERATED_IDENTITY,
        CA_ROOTS,
        RESOURCE_MANAGER,
        KEY_VAULT,
        RBAC,
    ];
}

/// Where a source writes its entries (the running backup's archive).
#[async_trait]
pub trait EntrySink: Send {
    /// Starts entry `path` (relative, `/`-separated) of the current source.
    async fn begin(&mut self, path: &str, mode: Option<u32>, mtime: Option<i64>) -> Result<()>;
    /// Appends data to the entry.
    async fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Ends the entry.
    async fn end(&mut self) -> Result<()>;
}

/// A named source of backup data, captured while the system keeps running.
#[async_trait]
pub trait BackupSource: Send + Sync {
    /// Its name (see [`names`]).
    fn name(&self) -> &str;
    /// Writes every entry of the source to `sink`.
    async fn capture(&self, sink: &mut dyn EntrySink) -> Result<()>;
}

/// Files up to this size are read whole and checked for change before they
/// enter the archive (re-read if they changed); larger ones are streamed and a
/// change during the read fails the source.
pub const CONSISTENT_READ_MAX: u64 = 8 << 20;

/// How many times a changing small file is re-read before the source fails.
const REREADS: usize = 3;

/// Files read ahead of the archive writer, on the blocking pool.
const PREFETCH_FILES: usize = 16;

/// Bytes of file data read ahead at most (a file counts by its size when listed).
const PREFETCH_BYTES: u64 = 16 << 20;

/// Every regular file under a directory, read consistently: a file that
/// changes while it is read is read again (small files) or reported (large
/// ones). Symbolic links are not followed; other special files are skipped.
///
/// Small files are read ahead, up to 16 files and
/// 16 MiB at a time, on the blocking pool (one blocking
/// task per file: stat, read, stat), so reading overlaps with compression and
/// encryption; they still enter the archive in listing order.
#[derive(Clone, Debug)]
pub struct DirectorySource {
    name: String,
    root: PathBuf,
}

/// Size, modification time and mode: what must not change during a read.
type Stamp = (u64, Option<std::time::SystemTime>, u32);

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::PermissionsExt;
    (m.len(), m.modified().ok(), m.permissions().mode() & 0o7777)
}

/// How close to "now" a modification time must be to count as racy: file
/// times come from the kernel's coarse clock (one tick, a few ms), so two
/// writes within a tick leave the same size and time, and an equal stamp
/// before and after a read proves nothing while the file's time is that
/// recent ("racy git"). Such files are waited for, not trusted.
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether the file was modified so recently that its stamp cannot tell a
/// rewrite within the same clock tick. Times far in the future were set on
/// purpose (not by a write in progress) and are not racy.
fn racy(stamp: &Stamp) -> bool {
    let Some(mtime) = stamp.1 else { return false };
    let now = std::time::SystemTime::now();
    let gap = match mtime.duration_since(now) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    gap <= RACY_WINDOW
}

/// Reads a file whole, again while it changes under the reader (blocking).
/// A read counts only if the file's stamp was not racy before it and is the
/// same after it.
fn read_consistent(path: &Path) -> std::result::Result<Option<(Vec<u8>, Stamp)>, String> {
    let stat = |path: &Path| {
        std::fs::symlink_metadata(path)
            .map(|m| stamp_of(&m))
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))
    };
    for _ in 0..=REREADS {
        let before = stat(path)?;
        if before.0 > CONSISTENT_READ_MAX {
            return Ok(None);
        }
        if racy(&before) {
            std::thread::sleep(RACY_WINDOW);
            continue;
        }
        let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let after = stat(path)?;
        if after == before && data.len() as u64 == after.0 {
            return Ok(Some((data, after)));
        }
    }
    Err(format!(
        "{} kept changing while it was read ({REREADS} re-reads)",
        path.display()
    ))
}

impl DirectorySource {
    /// Source `name` reading the files under `root`.
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        DirectorySource {
            name: name.into(),
            root: root.into(),
        }
    }

    fn error(&self, reason: impl Into<String>) -> ControllerError {
        ControllerError::Source {
            source_name: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Every regular file, as (absolute path, relative `/` path, size when
    /// listed), sorted by relative path; one blocking task for the whole walk.
    async fn files(&self) -> Result<Vec<(PathBuf, String, u64)>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || walk(&root))
            .await
            .map_err(|e| self.error(format!("the folder walk failed: {e}")))?
            .map_err(|e| self.error(e))
    }

    async fn stamp(&self, path: &Path) -> Result<Stamp> {
        let m = tokio::fs::symlink_metadata(path)
            .await
            .map_err(|e| self.error(format!("cannot stat {}: {e}", path.display())))?;
        Ok(stamp_of(&m))
    }

    /// Streams a file larger than [`CONSISTENT_READ_MAX`]; a change during the read fails the source.
    async fn stream_large(&self, path: &Path, rel: &str, sink: &mut dyn EntrySink) -> Result<()> {
        let mut before = self.stamp(path).await?;
        for _ in 0..REREADS {
            if !racy(&before) {
                break;
            }
            tokio::time::sleep(RACY_WINDOW).await;
            before = self.stamp(path).await?;
        }
        if racy(&before) {
            return Err(self.error(format!(
                "{} kept changing while it was read ({REREADS} re-reads)",
                path.display()
            )));
        }
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| self.error(format!("cannot read {}: {e}", path.display())))?;
        sink.begin(rel, Some(before.2), unix(before.1)).await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| self.error(format!("cannot read {}: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            sink.write(&buf[..n]).await?;
        }
        let after = self.stamp(path).await?;
        if after != before || total != before.0 {
            return Err(self.error(format!(
                "{} changed while it was read; the backup would hold an inconsistent copy",
                path.display()
            )));
        }
        sink.end().await
    }
}

/// The walk behind [`DirectorySource::files`] (blocking).
fn walk(root: &Path) -> std::result::Result<Vec<(PathBuf, String, u64)>, String> {
    let mut out = Vec::new();
    let mut todo = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = todo.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("cannot read folder {}: {e}", dir.display()))?;
        for entry in rd {
            let entry = entry.map_err(|e| format!("cannot read folder {}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry
                .file_type()
                .map_err(|e| format!("cannot stat {}: {e}", entry.path().display()))?;
            if ft.is_dir() {
                todo.push((entry.path(), child_rel));
            } else if ft.is_file() {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((entry.path(), child_rel, size));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn unix(t: Option<std::time::SystemTime>) -> Option<i64> {
    t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

#[async_trait]
impl BackupSource for DirectorySource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, sink: &mut dyn EntrySink) -> Result<()> {
        // Reads run on the blocking pool ahead of the sink, bounded in files
        // and bytes, and are consumed in listing order.
        type Read = tokio::task::JoinHandle<std::result::Result<Option<(Vec<u8>, Stamp)>, String>>;
        let mut files = self.files().await?.into_iter().peekable();
        let mut ahead: std::collections::VecDeque<(PathBuf, String, u64, Read)> = std::collections::VecDeque::new();
        let mut ahead_bytes = 0u64;
        loop {
            while ahead.len() < PREFETCH_FILES {
                let Some((_, _, size)) = files.peek() else { break };
                let size = (*size).min(CONSISTENT_READ_MAX);
                if !ahead.is_empty() && ahead_bytes + size > PREFETCH_BYTES {
                    break;
                }
                let Some((path, rel, _)) = files.next() else { break };
                let read_path = path.clone();
                let read = tokio::task::spawn_blocking(move || read_consistent(&read_path));
                ahead_bytes += size;
                ahead.push_back((path, rel, size, read));
            }
            let Some((path, rel, size, read)) = ahead.pop_front() else {
                break;
            };
            let read = read
                .await
                .map_err(|e| self.error(format!("a read failed: {e}")))?
                .map_err(|e| self.error(e))?;
            match read {
                Some((data, stamp)) => {
                    sink.begin(&rel, Some(stamp.2), unix(stamp.1)).await?;
                    sink.write(&data).await?;
                    sink.end().await?;
                }
                None => self.stream_large(&path, &rel, sink).await?,
            }
            ahead_bytes -= size;
        }
        Ok(())
    }
}
