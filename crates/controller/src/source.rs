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
pub const CONSISTENT_READ_MAX: u64 = 16 << 20;

/// How many times a changing small file is re-read before the source fails.
const REREADS: usize = 3;

/// Every regular file under a directory, read consistently: a file that
/// changes while it is read is read again (small files) or reported (large
/// ones). Symbolic links are not followed; other special files are skipped.
#[derive(Clone, Debug)]
pub struct DirectorySource {
    name: String,
    root: PathBuf,
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

    /// Every regular file, as (absolute path, relative `/` path), sorted.
    async fn files(&self) -> Result<Vec<(PathBuf, String)>> {
        let mut out = Vec::new();
        let mut todo = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = todo.pop() {
            let mut rd = tokio::fs::read_dir(&dir)
                .await
                .map_err(|e| self.error(format!("cannot read folder {}: {e}", dir.display())))?;
            while let Some(entry) = rd
                .next_entry()
                .await
                .map_err(|e| self.error(format!("cannot read folder {}: {e}", dir.display())))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                let child_rel = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let ft = entry
                    .file_type()
                    .await
                    .map_err(|e| self.error(format!("cannot stat {}: {e}", entry.path().display())))?;
                if ft.is_dir() {
                    todo.push((entry.path(), child_rel));
                } else if ft.is_file() {
                    out.push((entry.path(), child_rel));
                }
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    async fn stamp(&self, path: &Path) -> Result<(u64, Option<std::time::SystemTime>, u32)> {
        let m = tokio::fs::metadata(path)
            .await
            .map_err(|e| self.error(format!("cannot stat {}: {e}", path.display())))?;
        use std::os::unix::fs::PermissionsExt;
        Ok((m.len(), m.modified().ok(), m.permissions().mode() & 0o7777))
    }
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
        for (path, rel) in self.files().await? {
            let before = self.stamp(&path).await?;
            if before.0 <= CONSISTENT_READ_MAX {
                let mut attempt = 0;
                let (data, stamp) = loop {
                    let data = tokio::fs::read(&path)
                        .await
                        .map_err(|e| self.error(format!("cannot read {}: {e}", path.display())))?;
                    let after = self.stamp(&path).await?;
                    let start = if attempt == 0 { before } else { after };
                    if after == start && data.len() as u64 == after.0 {
                        break (data, after);
                    }
                    attempt += 1;
                    if attempt > REREADS {
                        return Err(self.error(format!(
                            "{} kept changing while it was read ({REREADS} re-reads)",
                            path.display()
                        )));
                    }
                };
                sink.begin(&rel, Some(stamp.2), unix(stamp.1)).await?;
                sink.write(&data).await?;
                sink.end().await?;
            } else {
                let mut file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| self.error(format!("cannot read {}: {e}", path.display())))?;
                sink.begin(&rel, Some(before.2), unix(before.1)).await?;
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
                let after = self.stamp(&path).await?;
                if after != before || total != before.0 {
                    return Err(self.error(format!(
                        "{} changed while it was read; the backup would hold an inconsistent copy",
                        path.display()
                    )));
                }
                sink.end().await?;
            }
        }
        Ok(())
    }
}
