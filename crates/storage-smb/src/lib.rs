//! The SMB 3.x storage target of `ibs`, on Samba's own `libsmbclient`.
//!
//! ```no_run
//! use std::time::Duration;
//! use ibs_storage::{Location, ReadTarget, StorageTarget};
//! use ibs_storage_smb::{SmbConfig, SmbCredentials, SmbTarget};
//!
//! # async fn f() -> Result<(), ibs_storage::StorageError> {
//! let location = Location::parse(r"\\fileserver01.contoso.com\AzSBackups")?;
//! let credentials = SmbCredentials::new("CONTOSO", "backup-svc", "secret");
//! let target = SmbTarget::new(SmbConfig::from_location(&location, credentials)?.timeout(Duration::from_secs(30)))?;
//! let capacity = target.capacity().await?;
//! # Ok(()) }
//! ```
//!
//! # Why libsmbclient
//!
//! The client library was chosen on evidence gathered on the CI machine
//! (Debian 12, Samba 4.17): the pure-Rust `smb` crate (0.12) deadlocked on
//! interim `STATUS_PENDING` replies to large writes, sometimes hung after the
//! last entry of a directory listing, and flattened NT status codes into
//! strings; `libsmbclient` (through the `pavao` bindings) showed none of those
//! hangs and runs close to `smbclient`'s throughput. Its costs, and how this
//! crate deals with them:
//!
//! * It is **synchronous**: every operation runs on Tokio's blocking pool; an
//!   upload owns one blocking thread fed through a bounded channel.
//! * It has **one global lock** per process (pavao serialises every call), so
//!   SMB operations of one process never run in parallel.
//! * Its own timeouts may take up to about three times the configured value.
//!   Every call is therefore also bounded here with [`SmbConfig::timeout`]
//!   (see [time limits](#time-limits) for exactly what that bounds). A frozen
//!   or silent server never hangs a caller.
//! * It needs the system library: `libsmbclient-dev` on Debian to build,
//!   `libsmbclient` to run.
//!
//! # Time limits
//!
//! What [`SmbConfig::timeout`] (default 30 s) bounds, exactly:
//!
//! * **Each call on its own.** Every [`StorageTarget`] method, and `write`,
//!   `commit` and `abort` of an upload, returns within the limit of its own
//!   start (plus the scheduler's delay). When the limit passes, the call fails
//!   at once with a retryable **connectivity** error whose text names that
//!   limit ("no answer from … within 30 s, the time limit of each SMB
//!   operation").
//! * **Not a sequence of calls.** Helpers such as `put_bytes` and `read_all`,
//!   and a backup job, make several calls, each with its own limit. A stalled
//!   upload fails its `write` after the limit; its `abort` and any clean-up
//!   after it wait up to the limit each. A failed job can therefore take a few
//!   times the limit, while every message names the per-call limit.
//! * **Not a piece already handed over.** `write` returns once its piece is
//!   queued; the upload thread sends it while the caller prepares the next one.
//!   A stalled piece is reported by the *next* `write` (or `commit`), after that
//!   call's own limit, when the piece has waited longer than the limit; the
//!   message then also says for how long ("a … -byte piece written before has
//!   had no answer for … s").
//! * **Not the work a timed-out call leaves behind.** Its thread stays blocked
//!   in libsmbclient until the server answers or libsmbclient's own timeout
//!   (set to the same limit, at least 1 s, and taking up to about three times
//!   that) fires. Meanwhile libsmbclient's process-wide lock is held: later
//!   calls queue behind it and fail at their own limits. A `commit` that timed
//!   out may still complete on the server afterwards, so the object can appear
//!   although the caller was told the commit failed (the controller writes a
//!   backup's manifest only after its archive committed, so such an archive is
//!   an incomplete backup, never one that looks complete).
//!
//! # Encryption
//!
//! [`Encryption::Request`] (the default) asks for SMB 3 encryption: a server
//! that offers it (`server smb encrypt = desired` or `required`) encrypts the
//! session with AES; a server that does not carries it unencrypted. That is the
//! design's rule (prefer, fall back), and it is what libsmbclient can honestly
//! promise: its "require" level does not fail closed against a server without
//! encryption, so this crate does not offer it. Backups are encrypted at rest
//! by the archive regardless; SMB encryption protects the *metadata* (names,
//! sizes) and the manifest in transit. The protocol is pinned to SMB 3.0 or
//! newer, so signing is always on.
//!
//! # Atomic commit
//!
//! An upload is written to a temporary name in the same folder
//! (`.NAME.ibs-partial-…`) and renamed into place after the file was closed
//! (every write acknowledged by the server). For
//! [`CommitMode::CreateNew`] the final name is checked just before the rename;
//! SMB's rename cannot refuse to replace through libsmbclient, so two writers
//! racing for the same name within that instant could both succeed — the
//! controller's single-job rule and unique backup ids make that impossible in
//! practice.
//!
//! # Failure classes
//!
//! errno values from libsmbclient map through [`ibs_storage::classify_io`].
//! Where one errno covers two situations, a probe tells them apart: on
//! "not found", whether the share itself exists (a wrong share name and a
//! missing folder are both *path* failures, with different descriptions); on
//! "access denied", whether the share root can be listed at all (no: the
//! login failed — *authentication*; yes: the account lacks permission on that
//! folder — also *authentication*, described as a permission problem).

mod writer;

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use ibs_storage::{
    Capacity, CommitMode, ErrorKind, Location, ObjectMeta, ObjectPath, ObjectWriter, ReadTarget, Result, StorageError,
    StorageTarget, check_range, classify_io, is_partial_name,
};
use pavao::{SmbClient, SmbDirentType, SmbEncryptionLevel, SmbError, SmbMode, SmbOpenOptions, SmbOptions};
use zeroize::Zeroizing;

/// Domain, user and password for the share. The password is zeroized on drop
/// and never shown by `Debug`.
#[derive(Clone)]
pub struct SmbCredentials {
    domain: String,
    user: String,
    password: Zeroizing<String>,
}

impl SmbCredentials {
    /// Credentials of `domain\user` (the domain may be empty).
    pub fn new(domain: impl Into<String>, user: impl Into<String>, password: impl Into<String>) -> Self {
        SmbCredentials {
            domain: domain.into(),
            user: user.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    /// Parses the smbclient authentication-file format operators already use:
    /// `username = …`, `password = …`, `domain = …` lines (`#` comments). A
    /// `DOMAIN\user` or `user@domain` user name also sets the domain.
    pub fn from_auth_file(text: &str) -> Result<Self> {
        let bad = |why: &str| StorageError::new(ErrorKind::Authentication, "cannot read credentials", "", why);
        let (mut domain, mut user, mut password) = (String::new(), None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad("expected `key = value` lines (username, password, domain)"))?;
            match k.trim() {
                "username" | "user" => user = Some(v.trim().to_owned()),
                "password" => password = Some(Zeroizing::new(v.trim().to_owned())),
                "domain" | "workgroup" => domain = v.trim().to_owned(),
                _ => {}
            }
        }
        let mut user = user.ok_or_else(|| bad("no `username =` line"))?;
        if let Some((d, u)) = user.clone().split_once('\\') {
            domain = d.to_owned();
            user = u.to_owned();
        } else if let Some((u, d)) = user.clone().split_once('@') {
            domain = d.to_owned();
            user = u.to_owned();
        }
        let password = password.ok_or_else(|| bad("no `password =` line"))?;
        Ok(SmbCredentials { domain, user, password })
    }

    /// The user name (with the domain, when there is one).
    pub fn account(&self) -> String {
        if self.domain.is_empty() {
            self.user.clone()
        } else {
            format!("{}\\{}", self.domain, self.user)
        }
    }
}

impl fmt::Debug for SmbCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmbCredentials({}, password: <redacted>)", self.account())
    }
}

/// Whether to ask for SMB encryption (see the [crate docs](crate#encryption)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// Ask for it; fall back to unencrypted transport if the server does not offer it.
    #[default]
    Request,
    /// Do not ask.
    Off,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct SmbConfig {
    host: String,
    port: u16,
    share: String,
    base: ObjectPath,
    credentials: SmbCredentials,
    timeout: Duration,
    encryption: Encryption,
    write_chunk: usize,
}

impl SmbConfig {
    /// A share on `host` (port 445), at the share's root.
    pub fn new(host: impl Into<String>, share: impl Into<String>, credentials: SmbCredentials) -> Self {
        SmbConfig {
            host: host.into(),
            port: 445,
            share: share.into(),
            base: ObjectPath::root(),
            credentials,
            timeout: Duration::from_secs(30),
            encryption: Encryption::Request,
            write_chunk: 4 << 20,
        }
    }

    /// From a parsed [`Location::Smb`].
    pub fn from_location(location: &Location, credentials: SmbCredentials) -> Result<Self> {
        match location {
            Location::Smb {
                host,
                port,
                share,
                path,
            } => Ok(SmbConfig::new(host.clone(), share.clone(), credentials)
                .port(port.unwrap_or(445))
                .base(path.clone())),
            other => Err(StorageError::new(
                ErrorKind::PathNotFound,
                "not an SMB location",
                other.to_string(),
                "expected \\\\host\\share or smb://host/share",
            )),
        }
    }

    /// TCP port (default 445).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Folder inside the share that is this target's root.
    pub fn base(mut self, base: ObjectPath) -> Self {
        self.base = base;
        self
    }

    /// Time limit of each call (default 30 s); see the
    /// [crate docs](crate#time-limits) for exactly what it bounds. Also set as
    /// libsmbclient's own timeout (at least 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Encryption preference (default: request).
    pub fn encryption(mut self, encryption: Encryption) -> Self {
        self.encryption = encryption;
        self
    }

    /// Bytes sent per write call of an upload (default 4 MiB).
    pub fn write_chunk(mut self, bytes: usize) -> Self {
        self.write_chunk = bytes.max(64 << 10);
        self
    }

    fn display(&self) -> String {
        let base = if self.base.is_root() {
            String::new()
        } else {
            format!("\\{}", self.base.as_str().replace('/', "\\"))
        };
        let port = if self.port == 445 {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        format!("\\\\{}{port}\\{}{base}", self.host, self.share)
    }
}

pub(crate) struct Inner {
    config: SmbConfig,
    client: Mutex<Option<Arc<SmbClient>>>,
}

/// The SMB 3.x target. Cheap to clone; one libsmbclient context per target.
#[derive(Clone)]
pub struct SmbTarget {
    inner: Arc<Inner>,
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

    /// The configuration.
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
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(StorageError::new(
            ErrorKind::Other,
            what,
            path,
            format!("SMB task failed: {join}"),
        )),
        Err(_) => Err(timed_out(config, what, path, "")),
    }
}

/// The connectivity error of a call that waited its whole bound
/// ([`SmbConfig::timeout`], which is what the text names), with `note`
/// (what else the caller should know) appended.
pub(crate) fn timed_out(config: &SmbConfig, what: &'static str, path: &str, note: &str) -> StorageError {
    StorageError::new(
        ErrorKind::Connectivity,
        what,
        path,
        format!(
            "no answer from {} within {} s, the time limit of each SMB operation{note} \
             (server down, frozen or unreachable)",
            config.display(),
            config.timeout.as_secs_f64()
        ),
    )
    .with_retryable(true)
}

impl Inner {
    /// The client, created on first use.
    fn client(&self) -> Result<Arc<SmbClient>> {
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

    /// A classified error for a failed call on `path`, with probes where one
    /// errno covers two situations.
    pub(crate) fn error(&self, what: &'static str, path: &str, e: SmbError) -> StorageError {
        self.error_with(what, path, e, "")
    }

    /// [`Inner::error`] with `note` (what else the caller should know) in the text.
    pub(crate) fn error_with(&self, what: &'static str, path: &str, e: SmbError, note: &str) -> StorageError {
        // The path as the caller named it (relative to the target); the share is in `Display`.
        let shown = path.to_owned();
        let io = match e {
            SmbError::Io(io) => io,
            other => {
                return StorageError::new(ErrorKind::Other, what, shown, other.to_string());
            }
        };
        let kind = classify_io(&io);
        let detail = match kind {
            ErrorKind::PathNotFound => match self.probe_root() {
                Some(root) if classify_io(&root) == ErrorKind::PathNotFound => format!(
                    "the share {:?} does not exist on {} (check the share name)",
                    self.config.share, self.config.host
                ),
                _ => format!("no such file or folder on the share ({io})"),
            },
            ErrorKind::Authentication => match self.probe_root() {
                Some(root) if classify_io(&root) == ErrorKind::Authentication => format!(
                    "the server refused the login of {} (check user name, domain and password)",
                    self.config.credentials.account()
                ),
                _ => format!(
                    "{} can log in but is not allowed to do this here (check the share and folder permissions): {io}",
                    self.config.credentials.account()
                ),
            },
            ErrorKind::OutOfCapacity => format!("the share is full ({io})"),
            // libsmbclient's own timeout (set to ours) fired: name the limit.
            ErrorKind::Connectivity if io.kind() == std::io::ErrorKind::TimedOut => format!(
                "no answer from {} within {} s, the time limit of each SMB operation, as libsmbclient \
                 applies it ({io}{note})",
                self.config.display(),
                self.config.timeout.as_secs_f64().max(1.0)
            ),
            ErrorKind::Connectivity => format!("cannot reach {} ({io}{note})", self.config.display()),
            ErrorKind::Other => io.to_string(),
        };
        let retryable = matches!(kind, ErrorKind::Connectivity | ErrorKind::Other);
        StorageError::new(kind, what, shown, detail)
            .with_source(io)
            .with_retryable(retryable)
    }

    /// The error of a stat of the share's root, if it fails.
    fn probe_root(&self) -> Option<std::io::Error> {
        let client = self.client.lock().ok()?.clone()?;
        match client.stat("/") {
            Ok(_) => None,
            Err(SmbError::Io(io)) => Some(io),
            Err(_) => None,
        }
    }
}

/// pavao reports a failed opendir as `BadFileDescriptor`; the errno is still
/// this thread's last OS error right after the call.
fn with_errno(e: SmbError) -> SmbError {
    match e {
        SmbError::BadFileDescriptor => SmbError::Io(std::io::Error::last_os_error()),
        other => other,
    }
}

fn is_not_found(e: &SmbError) -> bool {
    matches!(e, SmbError::Io(io) if classify_io(io) == ErrorKind::PathNotFound)
}

fn is_exists(e: &SmbError) -> bool {
    matches!(e, SmbError::Io(io) if io.kind() == std::io::ErrorKind::AlreadyExists)
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
                        let child = dir.child(name)?;
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
