//! Azure Blob and S3 storage targets of ibs, on the [`object_store`] crate.
//!
//! ```no_run
//! use ibs_storage::{Location, ReadTargetExt};
//! use ibs_storage_object::{ObjectOptions, ObjectTarget};
//!
//! # async fn demo() -> Result<(), ibs_storage::StorageError> {
//! // AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY from the environment.
//! let location = Location::parse("az://backups/lab")?;
//! let target = ObjectTarget::from_location(&location, ObjectOptions::default())?;
//! for object in target.list_all(&ibs_storage::ObjectPath::root()).await? {
//!     println!("{} {}", object.path, object.size);
//! }
//! # Ok(()) }
//! ```
//!
//! [`ObjectTarget`] implements the whole [`StorageTarget`] trait over any
//! [`ObjectStore`]; [`ObjectTarget::from_location`] builds one for an
//! `az://container/prefix` or `s3://bucket/prefix` [`Location`], configured
//! from the environment variables `object_store` already reads
//! (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
//! `AZURE_STORAGE_ENDPOINT`, `AZURE_STORAGE_USE_EMULATOR`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, …).
//!
//! # S3 credentials
//!
//! An `s3://` location needs `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
//! (with `AWS_SESSION_TOKEN` for temporary keys): without them
//! [`ObjectTarget::from_location`] fails at once, naming the variables, as it
//! does for `az://` without an account. It never falls back to the cloud's
//! instance-metadata endpoint on its own (off a cloud that is an HTTP error
//! from a link-local address after retries, which tells the operator
//! nothing). Instance or container credentials are used only when asked
//! for: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` set (ECS, EKS), a web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN`), `AWS_SKIP_SIGNATURE`
//! (a public bucket), [`ObjectOptions::instance_credentials`], or the
//! environment variable `IBS_S3_INSTANCE_CREDENTIALS=1` (the EC2 instance
//! metadata endpoint).
//!
//! It is its own crate so that the local and SMB paths do not pull in an HTTP
//! stack. TLS is rustls with the *ring* provider (installed as the process
//! default if none is): no OpenSSL and no aws-lc, which needs cmake and
//! minutes of C compilation on a small builder.
//!
//! # How the trait maps onto an object store
//!
//! * **Uploads** stream: bytes are buffered into parts of
//!   [`ObjectOptions::part_size`] (8 MiB) and sent as a multipart upload (S3
//!   parts, Azure blocks) with at most [`ObjectOptions::parts_in_flight`] parts
//!   in flight, so an upload holds at most `(1 + parts_in_flight) × part_size`
//!   bytes. Nothing is visible until the upload completes, which is atomic.
//!   An object that fits in one part is sent as one `PUT` at commit.
//! * **Commit** with [`CommitMode::CreateNew`] is a *conditional* put
//!   (`If-None-Match: *`) for single-part objects — the backup manifest, which
//!   is the commit marker of a backup, is always one — so two writers can never
//!   overwrite each other's backup. A multipart upload checks that the name is
//!   free right before completing (object stores offer no conditional
//!   multipart completion everywhere through `object_store`): that is a
//!   check, then an act, so **two multipart uploads of one name completing
//!   at the same moment can both succeed**, the later completion replacing
//!   the earlier (seen on S3; each object is always one writer's bytes,
//!   whole). ibs never relies on it: an archive's name carries its backup's
//!   unique id, and the manifest's conditional put decides which backup
//!   exists.
//! * **Folders** do not exist in object stores, but the trait has them (a
//!   missing folder is a path error, not a silently created prefix). They are
//!   kept as empty marker objects named [`FOLDER_MARKER`] inside the folder;
//!   listings never show them. A folder with no marker but with objects under
//!   it (written by another tool) counts as existing.
//! * **Capacity** is unknown ([`Capacity::default`]); retention then keeps to
//!   its age and count rules, and a store that refuses a write for space
//!   (HTTP 507, quota errors) gives [`ErrorKind::OutOfCapacity`].
//! * **Crash garbage**: an upload that never completes leaves uncommitted
//!   blocks/parts, which object stores do not list and expire on their own
//!   (Azure after 7 days; on S3 use a lifecycle rule that aborts incomplete
//!   multipart uploads).
//!
//! # Failures
//!
//! Every error is one of the five classes: 401/403 → authentication, 404
//! (container, bucket or object) → path, connection refused / reset / timeout →
//! connectivity, 507 or a quota/size-limit error code → out of capacity, the
//! rest → other; a refused conditional put (409/412) is
//! [`ErrorKind::AlreadyExists`]. An error's alert says what to check at Azure
//! or S3 (endpoint, HTTPS port 443 and proxy, container or bucket, keys). Transient failures (5xx, connection errors, timeouts) are
//! retried by `object_store` with exponential backoff, bounded in count
//! ([`ObjectOptions::max_retries`]) and time ([`ObjectOptions::retry_timeout`]);
//! each operation is also bounded as a whole ([`ObjectOptions::timeout`]).
//! Credentials never appear in errors or `Debug` output.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use ibs_storage::{
    Capacity, CommitMode, ErrorKind, Location, ObjectMeta, ObjectPath, ObjectProvider, ObjectWriter, ReadTarget,
    Remediation, Result, StorageError, StorageTarget, check_range, is_partial_name,
};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::path::{Path as StorePath, PathPart};
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, RetryConfig};

mod error;
mod upload;

use error::{AZURE, OBJECT, S3, map_error, settings_error};

/// Name of the empty marker object that stands for a folder.
pub const FOLDER_MARKER: &str = ".ibs-folder";

/// Tuning and bounds of an [`ObjectTarget`].
#[derive(Clone, Debug)]
pub struct ObjectOptions {
    part_size: usize,
    parts_in_flight: usize,
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: usize,
    retry_timeout: Duration,
    instance_credentials: bool,
}

impl Default for ObjectOptions {
    fn default() -> Self {
        ObjectOptions {
            part_size: 8 << 20,
            parts_in_flight: 2,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            max_retries: 4,
            retry_timeout: Duration::from_secs(30),
            instance_credentials: false,
        }
    }
}

impl ObjectOptions {
    /// Bytes per uploaded part (at least 5 MiB, S3's minimum; default 8 MiB).
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(5 << 20);
        self
    }

    /// Parts uploaded concurrently per upload (1–16, default 2).
    pub fn parts_in_flight(mut self, parts: usize) -> Self {
        self.parts_in_flight = parts.clamp(1, 16);
        self
    }

    /// Bound on any one operation, retries included (default 120 s): past it
    /// the operation fails with [`ErrorKind::Connectivity`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bound on opening a connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries of a failed request (5xx, connection errors, timeouts); default 4.
    pub fn max_retries(mut self, retries: usize) -> Self {
        self.max_retries = retries;
        self
    }

    /// No retry starts after this much time since the first attempt (default 30 s).
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = timeout;
        self
    }

    /// Whether an `s3://` location without keys in the environment may use
    /// the cloud's instance credentials (the EC2 instance-metadata endpoint);
    /// default false, and then [`ObjectTarget::from_location`] refuses it,
    /// naming the variables to set. `IBS_S3_INSTANCE_CREDENTIALS=1` in the
    /// environment asks for the same. See the crate docs.
    pub fn instance_credentials(mut self, allowed: bool) -> Self {
        self.instance_credentials = allowed;
        self
    }

    fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(4),
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }
}

/// rustls needs a process-wide crypto provider; install *ring* unless the
/// embedding program installed one already.
fn ensure_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn ObjectStore>,
    root: Vec<String>,
    label: String,
    pub(crate) options: ObjectOptions,
    /// What an operator checks at this kind of store.
    remediation: &'static Remediation,
}

/// A storage target on an object store (Azure Blob, S3, or any [`ObjectStore`]).
#[derive(Clone)]
pub struct ObjectTarget {
    inner: Arc<Inner>,
}

impl fmt::Debug for ObjectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The store's own Debug may show configuration; show only the location.
        write!(f, "ObjectTarget({})", self.inner.label)
    }
}

impl fmt::Display for ObjectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.label)
    }
}

impl ObjectTarget {
    /// A target for an `az://` or `s3://` location, configured from the
    /// environment (see the crate docs). Other locations are refused, and so
    /// is an `s3://` location with no credentials in the environment, unless
    /// instance credentials were asked for (see [S3 credentials](crate#s3-credentials)).
    pub fn from_location(location: &Location, options: ObjectOptions) -> Result<Self> {
        match location {
            Location::Object {
                provider: ObjectProvider::Azure,
                container,
                path,
            } => Self::azure(MicrosoftAzureBuilder::from_env(), container, path, options),
            Location::Object {
                provider: ObjectProvider::S3,
                container,
                path,
            } => {
                let builder = AmazonS3Builder::from_env();
                let asked = options.instance_credentials
                    || std::env::var("IBS_S3_INSTANCE_CREDENTIALS")
                        .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
                check_s3_credentials(&builder, asked, &format!("s3://{container}{}", suffix(path)))?;
                Self::s3(builder, container, path, options)
            }
            other => Err(StorageError::new(
                ErrorKind::InvalidInput,
                "cannot open",
                other.to_string(),
                "not an object-store location (az://container/prefix or s3://bucket/prefix)",
            )
            .with_retryable(false)),
        }
    }

    /// An Azure Blob target for `container`, objects under `prefix`, from a
    /// configured builder (account, key or other credential, endpoint). The
    /// target sets the container, the retry policy and, unless the builder has
    /// them, the connect and request timeouts.
    pub fn azure(
        builder: MicrosoftAzureBuilder,
        container: &str,
        prefix: &ObjectPath,
        options: ObjectOptions,
    ) -> Result<Self> {
        ensure_tls_provider();
        let label = format!("az://{container}{}", suffix(prefix));
        let mut builder = builder
            .with_container_name(container)
            .with_retry(options.retry_config());
        for (key, value) in client_defaults(&options) {
            let key = AzureConfigKey::Client(key);
            if builder.get_config_value(&key).is_none() {
                builder = builder.with_config(key, value);
            }
        }
        let store = builder.build().map_err(|e| settings_error(&label, "Azure Blob", e))?;
        Ok(Self::new(Arc::new(store), label, prefix, options, &AZURE))
    }

    /// An S3 target for `bucket`, objects under `prefix`, from a configured
    /// builder (region, keys, endpoint); see [`ObjectTarget::azure`].
    pub fn s3(builder: AmazonS3Builder, bucket: &str, prefix: &ObjectPath, options: ObjectOptions) -> Result<Self> {
        ensure_tls_provider();
        let label = format!("s3://{bucket}{}", suffix(prefix));
        let mut builder = builder.with_bucket_name(bucket).with_retry(options.retry_config());
        for (key, value) in client_defaults(&options) {
            let key = AmazonS3ConfigKey::Client(key);
            if builder.get_config_value(&key).is_none() {
                builder = builder.with_config(key, value);
            }
        }
        let store = builder.build().map_err(|e| settings_error(&label, "S3", e))?;
        Ok(Self::new(Arc::new(store), label, prefix, options, &S3))
    }

    /// A target over any store (for example `object_store::memory::InMemory`
    /// in tests), objects under `prefix`; `label` is what `Display` shows.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        label: impl Into<String>,
        prefix: &ObjectPath,
        options: ObjectOptions,
    ) -> Self {
        Self::new(store, label.into(), prefix, options, &OBJECT)
    }

    fn new(
        store: Arc<dyn ObjectStore>,
        label: String,
        prefix: &ObjectPath,
        options: ObjectOptions,
        remediation: &'static Remediation,
    ) -> Self {
        ObjectTarget {
            inner: Arc::new(Inner {
                store,
                root: prefix.segments().map(str::to_owned).collect(),
                label,
                options,
                remediation,
            }),
        }
    }

    /// The `object_store` client the target goes through, for what the
    /// target does not do itself (tests reading objects as the service sees
    /// them, listing outside the prefix).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }
}

/// Refuses an S3 client that would fall back to the instance-metadata
/// endpoint when that was not asked for: no access key and no secret (either
/// alone is the builder's own error), no container or web-identity
/// credentials, signing not skipped.
fn check_s3_credentials(builder: &AmazonS3Builder, instance_asked: bool, label: &str) -> Result<()> {
    use AmazonS3ConfigKey as K;
    let set = |key: K| builder.get_config_value(&key).is_some_and(|v| !v.is_empty());
    let has_keys = set(K::AccessKeyId) || set(K::SecretAccessKey);
    let container = set(K::ContainerCredentialsRelativeUri) || set(K::ContainerCredentialsFullUri);
    let web_identity = set(K::WebIdentityTokenFile) && set(K::RoleArn);
    let unsigned = builder.get_config_value(&K::SkipSignature).is_some_and(|v| v == "true");
    if has_keys || container || web_identity || unsigned || instance_asked {
        return Ok(());
    }
    Err(error::missing_s3_credentials(label))
}

fn suffix(prefix: &ObjectPath) -> String {
    if prefix.is_root() {
        String::new()
    } else {
        format!("/{prefix}")
    }
}

fn client_defaults(options: &ObjectOptions) -> [(ClientConfigKey, String); 2] {
    [
        (ClientConfigKey::ConnectTimeout, millis(options.connect_timeout)),
        // One request (a part, a range) must finish within this.
        (ClientConfigKey::Timeout, millis(options.timeout)),
    ]
}

impl Inner {
    /// The store key of `path` (segments percent-encoded where object stores
    /// want them so).
    pub(crate) fn key(&self, path: &ObjectPath) -> StorePath {
        self.root
            .iter()
            .map(String::as_str)
            .chain(path.segments())
            .map(PathPart::from)
            .collect()
    }

    fn marker(&self, folder: &ObjectPath) -> StorePath {
        self.key(folder).join(FOLDER_MARKER)
    }

    /// Back from a store key to a path under the root; `None` for keys
    /// outside the root, folder markers, and names that are not valid paths.
    fn path_of(&self, key: &StorePath) -> Option<ObjectPath> {
        let mut parts = key.parts();
        for segment in &self.root {
            let part = parts.next()?;
            if decode(part.as_ref())? != *segment {
                return None;
            }
        }
        let mut out = ObjectPath::root();
        let mut last = None;
        for part in parts {
            let name = decode(part.as_ref())?;
            out = out.child(&name).ok()?;
            last = Some(name);
        }
        match last {
            Some(name) if name != FOLDER_MARKER => Some(out),
            _ => None,
        }
    }

    /// Runs one operation under the overall time bound.
    pub(crate) async fn bounded<T>(
        &self,
        op: &'static str,
        path: &ObjectPath,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.options.timeout, fut).await {
            Ok(result) => result.map_err(|e| map_error(op, path.as_str(), e).with_remediation(self.remediation)),
            Err(_) => Err(StorageError::new(
                ErrorKind::Connectivity,
                op,
                path.as_str(),
                format!("no answer from {} within {:?}", self.label, self.options.timeout),
            )
            .with_remediation(self.remediation)),
        }
    }

    /// Whether a folder exists: its marker, or (written by another tool) any object under it.
    pub(crate) async fn folder_exists(&self, folder: &ObjectPath) -> Result<bool> {
        if folder.is_root() {
            return Ok(true);
        }
        match self
            .bounded("cannot check folder", folder, self.store.head(&self.marker(folder)))
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == ErrorKind::PathNotFound => {}
            Err(e) => return Err(e),
        }
        let prefix = self.key(folder);
        let mut listing = self.store.list(Some(&prefix));
        let first = self
            .bounded("cannot check folder", folder, async {
                listing.next().await.transpose()
            })
            .await?;
        Ok(first.is_some())
    }
}

fn decode(part: &str) -> Option<String> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[async_trait]
impl ReadTarget for ObjectTarget {
    async fn read_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes> {
        let inner = &self.inner;
        if range.start >= range.end {
            // Stores refuse empty ranges: check the object and the bounds instead.
            let meta = self.head(path).await?;
            check_range(path, &range, meta.size)?;
            return Ok(Bytes::new());
        }
        let key = inner.key(path);
        let want = range.end - range.start;
        let data = inner
            .bounded("cannot read", path, inner.store.get_range(&key, range.clone()))
            .await?;
        if data.len() as u64 != want {
            let meta = self.head(path).await?;
            check_range(path, &range, meta.size)?;
            return Err(StorageError::new(
                ErrorKind::Other,
                "cannot read",
                path.as_str(),
                format!("asked for {want} bytes, got {}", data.len()),
            ));
        }
        Ok(data)
    }

    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta> {
        let inner = &self.inner;
        let meta = inner
            .bounded("cannot stat", path, inner.store.head(&inner.key(path)))
            .await?;
        Ok(ObjectMeta {
            path: path.clone(),
            size: meta.size,
            modified: Some(meta.last_modified.into()),
            partial: path.name().is_some_and(is_partial_name),
        })
    }

    async fn list(&self, prefix: &ObjectPath) -> Result<BoxStream<'static, Result<ObjectMeta>>> {
        let inner = self.inner.clone();
        let key = inner.key(prefix);
        let shown = prefix.clone();
        let listing = inner.store.list(Some(&key));
        let bound = inner.options.timeout;
        let label = inner.label.clone();
        let remediation = inner.remediation;
        let stream = listing
            .map(move |item| -> Option<Result<ObjectMeta>> {
                match item {
                    Ok(meta) => {
                        let path = inner.path_of(&meta.location)?;
                        Some(Ok(ObjectMeta {
                            partial: path.name().is_some_and(is_partial_name),
                            path,
                            size: meta.size,
                            modified: Some(meta.last_modified.into()),
                        }))
                    }
                    Err(e) => Some(Err(
                        map_error("cannot list", shown.as_str(), e).with_remediation(remediation)
                    )),
                }
            })
            .filter_map(futures::future::ready);
        // Bound each page of the listing like any other operation.
        let stream = futures::stream::unfold(Box::pin(stream), move |mut s| {
            let label = label.clone();
            async move {
                match tokio::time::timeout(bound, s.next()).await {
                    Ok(Some(item)) => Some((item, s)),
                    Ok(None) => None,
                    Err(_) => Some((
                        Err(StorageError::new(
                            ErrorKind::Connectivity,
                            "cannot list",
                            label,
                            format!("no answer within {bound:?}"),
                        )
                        .with_remediation(remediation)),
                        s,
                    )),
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn capacity(&self) -> Result<Capacity> {
        Ok(Capacity::default())
    }
}

#[async_trait]
impl StorageTarget for ObjectTarget {
    async fn create_dir_all(&self, path: &ObjectPath) -> Result<()> {
        let inner = &self.inner;
        if path.is_root() {
            return Ok(());
        }
        // Common case: the folder exists already (one HEAD).
        match inner
            .bounded("cannot create folder", path, inner.store.head(&inner.marker(path)))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::PathNotFound => {}
            Err(e) => return Err(e),
        }
        let mut folder = ObjectPath::root();
        for segment in path.segments() {
            folder = folder.child(segment)?;
            let marker = inner.marker(&folder);
            inner
                .bounded(
                    "cannot create folder",
                    &folder,
                    inner.store.put(&marker, Bytes::new().into()),
                )
                .await?;
        }
        Ok(())
    }

    async fn put(&self, path: &ObjectPath, mode: CommitMode) -> Result<Box<dyn ObjectWriter>> {
        let folder = path.parent().unwrap_or_default();
        if !self.inner.folder_exists(&folder).await? {
            return Err(StorageError::new(
                ErrorKind::PathNotFound,
                "cannot upload",
                path.as_str(),
                format!("no such folder {folder} in {}", self.inner.label),
            )
            .with_retryable(false)
            .with_remediation(self.inner.remediation));
        }
        Ok(Box::new(upload::Upload::new(self.inner.clone(), path.clone(), mode)))
    }

    async fn delete(&self, path: &ObjectPath) -> Result<()> {
        let inner = &self.inner;
        match inner
            .bounded("cannot delete", path, inner.store.delete(&inner.key(path)))
            .await
        {
            Err(e) if e.kind() == ErrorKind::PathNotFound => Ok(()),
            r => r,
        }
    }

    async fn delete_dir(&self, path: &ObjectPath) -> Result<()> {
        let inner = &self.inner;
        if path.is_root() {
            return Ok(());
        }
        let mut listing = self.list(path).await?;
        if let Some(first) = listing.next().await {
            let first = first?;
            return Err(StorageError::new(
                ErrorKind::Other,
                "cannot delete folder",
                path.as_str(),
                format!("the folder is not empty (it holds {})", first.path),
            )
            .with_retryable(false));
        }
        match inner
            .bounded("cannot delete folder", path, inner.store.delete(&inner.marker(path)))
            .await
        {
            Err(e) if e.kind() == ErrorKind::PathNotFound => Ok(()),
            r => r,
        }
    }
}
