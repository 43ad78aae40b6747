//! The SMB target: one libsmbclient context, every call on the blocking pool
//! within the time limit.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use ibs_storage::{
    Capacity, CommitMode, ErrorKind, ObjectMeta, ObjectPath, ObjectWriter, ReadTarget, Result, StorageError,
    StorageTarget, check_range, is_partial_name,
};
use pavao::{SmbClient, SmbDirentType, SmbEncryptionLevel, SmbError, SmbMode, SmbOpenOptions, SmbOptions};

use crate::error::{SMB, is_exists, is_not_found, timed_out, with_errno};
use crate::{Encryption, SmbConfig, writer};

pub(crate) struct Inner {
    pub(crate) config: SmbConfig,
    pub(crate) client: Mutex<Option<Arc<SmbClient>>>,
}

/// The SMB 3.x target. Cheap to clone; one libsmbclient context per target.
#[derive(Clone)]
pub struct SmbTarget {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for SmbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmbTarget")
            .field("share", &self.inner.config.display())
            .field("account", &self.inner.config.credentials.account())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SmbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.config.display())
    }
}

impl SmbTarget {
    /// A target for `config`. Does not connect yet: the first operation does.
    pub fn new(config: SmbConfig) -> Result<Self> {
        Ok(SmbTarget {
            inner: Arc::new(Inner {
                config,
                client: Mutex::new(None),
            }),
        })
    }

    /// The configuration it connects with: server, share, base folder, port,
    /// credentials, timeout, encryption.
    pub fn config(&self) -> &SmbConfig {
        &self.inner.config
    }

    /// Runs `op` on the blocking pool with the client, bounded by the timeout.
    async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        path: &ObjectPath,
        op: impl FnOnce(&SmbClient, &Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        let shown = path.as_str().to_owned();
        bounded(&self.inner.config, what, &shown, move || {
            let client = inner.client()?;
            op(&client, &inner)
        })
        .await
    }
}

/// Runs `f` on Tokio's blocking pool and waits at most the configured timeout.
pub(crate) async fn bounded<T: Send + 'static>(
    config: &SmbConfig,
    what: &'static str,
    path: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let timeout = config.timeout;
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r.map_err(|e| e.with_remediation(&SMB)),
        Ok(Err(join)) => {
            Err(StorageError::new(ErrorKind::Other, what, path, format!("SMB task failed: {join}")).with_source(join))
        }
        Err(_) => Err(timed_out(config, what, path, "")),
    }
}

impl Inner {
    /// The client, created on first use.
    pub(crate) fn client(&self) -> Result<Arc<SmbClient>> {
        let mut slot = self.client.lock().map_err(|_| {
            StorageError::new(
                ErrorKind::Other,
                "cannot connect to",
                self.config.display(),
                "poisoned lock",
            )
        })?;
        if let Some(c) = slot.as_ref() {
            return Ok(Arc::clone(c));
        }
        let cfg = &self.config;
        let creds = pavao::SmbCredentials::default()
            .server(format!("smb://{}:{}", cfg.host, cfg.port))
            .share(format!("/{}", cfg.share))
            .username(&cfg.credentials.user)
            .password(cfg.credentials.password.as_str())
            .workgroup(&cfg.credentials.domain);
        let options = SmbOptions::default()
            .case_sensitive(true)
            .one_share_per_server(true)
            .no_auto_anonymous_login(true)
            .min_protocol(pavao::SmbDialect::Smb300)
            .encryption_level(match cfg.encryption {
                Encryption::Request => SmbEncryptionLevel::Request,
                Encryption::Off => SmbEncryptionLevel::None,
            });
        let client = SmbClient::new(creds, options).map_err(|e| self.error("cannot connect to", "", e))?;
        let ms = u32::try_from(cfg.timeout.as_millis()).unwrap_or(u32::MAX).max(1000);
        client
            .set_timeout(Duration::from_millis(u64::from(ms)))
            .map_err(|e| self.error("cannot connect to", "", e))?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// The path of `path` inside the share, as libsmbclient wants it.
    pub(crate) fn smb_path(&self, path: &ObjectPath) -> String {
        let mut out = String::from("/");
        for seg in self.config.base.segments().chain(path.segments()) {
            if out.len() > 1 {
                out.push('/');
            }
            for c in seg.chars() {
                match c {
                    '%' => out.push_str("%25"),
                    '?' => out.push_str("%3F"),
                    '#' => out.push_str("%23"),
                    c => out.push(c),
                }
            }
        }
        out
    }
}

pub(crate) fn stat_meta(
    client: &SmbClient,
    inner: &Inner,
    path: &ObjectPath,
    what: &'static str,
) -> Result<ObjectMeta> {
    let st = client
        .stat(inner.smb_path(path))
        .map_err(|e| inner.error(what, path.as_str(), e))?;
    if st.mode.is_dir() {
        return Err(StorageError::new(
            ErrorKind::PathNotFound,
            what,
            path.as_str(),
            "not an object (a folder?)",
        ));
    }
    Ok(ObjectMeta {
        path: path.clone(),
        size: st.size,
        modified: Some(st.modified),
        partial: path.name().is_some_and(is_partial_name),
    })
}

#[async_trait]
impl ReadTarget for SmbTarget {
    async fn read_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes> {
        let path = path.clone();
        self.run("cannot read", &path.clone(), move |client, inner| {
            use std::io::{Read, Seek, SeekFrom};
            let meta = stat_meta(client, inner, &path, "cannot read")?;
            check_range(&path, &range, meta.size)?;
            let len = usize::try_from(range.end - range.start)
                .map_err(|_| StorageError::new(ErrorKind::Other, "cannot read", path.as_str(), "range too large"))?;
            let io = |e: std::io::Error| inner.error("cannot read", path.as_str(), SmbError::Io(e));
            let mut file = client
                .open_with(inner.smb_path(&path), SmbOpenOptions::default().read(true))
                .map_err(|e| inner.error("cannot read", path.as_str(), e))?;
            file.seek(SeekFrom::Start(range.start)).map_err(io)?;
            let mut buf = vec![0u8; len];
            file.read_exact(&mut buf).map_err(io)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta> {
        let path = path.clone();
        self.run("cannot stat", &path.clone(), move |client, inner| {
            stat_meta(client, inner, &path, "cannot stat")
        })
        .await
    }

    async fn list(&self, prefix: &ObjectPath) -> Result<BoxStream<'static, Result<ObjectMeta>>> {
        let prefix = prefix.clone();
        let found = self
            .run("cannot list", &prefix.clone(), move |client, inner| {
                let mut out = Vec::new();
                let mut todo = vec![prefix];
                // Bounded: every folder is visited once; depth is bounded by path length.
                while let Some(dir) = todo.pop() {
                    // Stat first: libsmbclient's opendir failure reaches us without its errno.
                    match client.stat(inner.smb_path(&dir)) {
                        Ok(st) if st.mode.is_dir() => {}
                        Ok(_) => continue,
                        Err(e) if is_not_found(&e) => continue,
                        Err(e) => return Err(inner.error("cannot list", dir.as_str(), e)),
                    }
                    let entries = client
                        .list_dirplus(inner.smb_path(&dir))
                        .map_err(|e| inner.error("cannot list", dir.as_str(), with_errno(e)))?;
                    for e in entries {
                        let name = e.name();
                        if name == "." || name == ".." {
                            continue;
                        }
                        // A name that cannot be an object path is not one ibs wrote.
                        let Ok(child) = dir.child(name) else { continue };
                        match e.get_type() {
                            SmbDirentType::Dir => todo.push(child),
                            SmbDirentType::File => out.push(ObjectMeta {
                                partial: is_partial_name(name),
                                path: child,
                                size: e.size,
                                modified: Some(e.mtime),
                            }),
                            _ => {}
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(stream::iter(found.into_iter().map(Ok)).boxed())
    }

    async fn capacity(&self) -> Result<Capacity> {
        let root = ObjectPath::root();
        self.run("cannot query capacity of", &root.clone(), move |client, inner| {
            let v = client
                .statvfs(inner.smb_path(&root))
                .map_err(|e| inner.error("cannot query capacity of", "", e))?;
            // libsmbclient reports allocation units in f_blocks / f_bavail,
            // sectors per unit in f_bsize and bytes per sector in f_frsize.
            let unit = v.bsize.max(1).saturating_mul(v.frsize.max(1));
            Ok(Capacity {
                free_bytes: Some(v.bavail.saturating_mul(unit)),
                total_bytes: Some(v.blocks.saturating_mul(unit)),
            })
        })
        .await
    }
}

#[async_trait]
impl StorageTarget for SmbTarget {
    async fn create_dir_all(&self, path: &ObjectPath) -> Result<()> {
        let path = path.clone();
        self.run("cannot create folder", &path.clone(), move |client, inner| {
            let mut at = ObjectPath::root();
            for seg in path.segments() {
                at = at.child(seg)?;
                match client.mkdir(inner.smb_path(&at), SmbMode::from(0o755)) {
                    Ok(()) => {}
                    Err(e) if is_exists(&e) => {}
                    Err(e) => {
                        // Some servers answer EACCES for an existing folder: check.
                        match client.stat(inner.smb_path(&at)) {
                            Ok(st) if st.mode.is_dir() => {}
                            _ => return Err(inner.error("cannot create folder", at.as_str(), e)),
                        }
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn put(&self, path: &ObjectPath, mode: CommitMode) -> Result<Box<dyn ObjectWriter>> {
        writer::start(self, path, mode).await
    }

    async fn delete(&self, path: &ObjectPath) -> Result<()> {
        let path = path.clone();
        self.run("cannot delete", &path.clone(), move |client, inner| {
            match client.unlink(inner.smb_path(&path)) {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(inner.error("cannot delete", path.as_str(), e)),
            }
        })
        .await
    }

    async fn delete_dir(&self, path: &ObjectPath) -> Result<()> {
        let path = path.clone();
        self.run(
            "cannot delete folder",
            &path.clone(),
            move |client, inner| match client.rmdir(inner.smb_path(&path)) {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(inner.error("cannot delete folder", path.as_str(), e)),
            },
        )
        .await
    }
}
