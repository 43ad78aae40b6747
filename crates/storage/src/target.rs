//! The storage-target trait: what every backend implements.

use std::fmt;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, TryStreamExt};

use crate::{ErrorKind, ObjectPath, Result, StorageError};

/// Name marker of an upload that has not been committed. Such objects are
/// listed with [`ObjectMeta::partial`] set, never as committed objects.
pub const PARTIAL_MARKER: &str = ".ibs-partial-";

/// What a listing says about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its path relative to the target's root (for a partial upload, the
    /// name carrying [`PARTIAL_MARKER`]).
    pub path: ObjectPath,
    /// Its size in bytes (of a partial upload: what was written so far).
    pub size: u64,
    /// When it was last modified, where the backend knows.
    pub modified: Option<SystemTime>,
    /// Whether this is an upload that was never committed (crash garbage, or
    /// one still being written).
    pub partial: bool,
}

/// Free and total bytes at a target, where the backend knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Bytes that can still be written; `None` when the backend cannot tell
    /// (object stores).
    pub free_bytes: Option<u64>,
    /// Size of the storage (file system or quota) in bytes; `None` when the
    /// backend cannot tell.
    pub total_bytes: Option<u64>,
}

/// What a commit does when an object already exists at the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMode {
    /// Fail with [`ErrorKind::AlreadyExists`], leaving the existing object untouched.
    CreateNew,
    /// Replace the existing object atomically.
    Overwrite,
}

/// The read half of a storage target: what listing, checking and restoring
/// backups need. A recovery tool is handed only this (with read-only
/// credentials, a [`StorageTarget`] whose writes would be refused is still a
/// `ReadTarget`), so its types say it never writes.
///
/// Small and object-safe; helpers live in [`ReadTargetExt`]. Paths are
/// relative to the target's root.
#[async_trait]
pub trait ReadTarget: fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// Reads `range` of the object at `path`. A range past the end is an error.
    async fn read_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes>;

    /// The metadata of the object at `path`.
    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta>;

    /// Every object under `prefix` (recursively), in no particular order. A
    /// prefix that does not exist lists nothing.
    async fn list(&self, prefix: &ObjectPath) -> Result<BoxStream<'static, Result<ObjectMeta>>>;

    /// Free and total bytes at the target, each `None` where the backend
    /// cannot tell (retention then plans by age alone).
    async fn capacity(&self) -> Result<Capacity>;
}

/// A storage target: an SMB share, a local directory, an object store… —
/// its [read half](ReadTarget) and the writes.
///
/// Small and object-safe; helpers live in [`StorageTargetExt`]. Folders must
/// exist before objects are put in them ([`StorageTarget::create_dir_all`]);
/// backends without folders treat that as a no-op. An
/// `Arc<dyn StorageTarget>` converts to an `Arc<dyn ReadTarget>` by
/// assignment (`let r: Arc<dyn ReadTarget> = target;`).
#[async_trait]
pub trait StorageTarget: ReadTarget {
    /// Creates a folder and its parents; succeeds if it exists.
    async fn create_dir_all(&self, path: &ObjectPath) -> Result<()>;

    /// Starts a streaming upload to `path`. Nothing is visible at `path` until
    /// [`ObjectWriter::commit`] succeeds; a crash before that leaves at most a
    /// partial object, listed as such.
    async fn put(&self, path: &ObjectPath, mode: CommitMode) -> Result<Box<dyn ObjectWriter>>;

    /// Deletes the object at `path`; succeeds if there is none.
    async fn delete(&self, path: &ObjectPath) -> Result<()>;

    /// Removes an empty folder; succeeds if there is none.
    async fn delete_dir(&self, path: &ObjectPath) -> Result<()>;
}

/// A streaming upload in progress.
#[async_trait]
pub trait ObjectWriter: fmt::Debug + Send {
    /// Appends bytes. Backends send them on in multi-megabyte pieces; the whole
    /// object is never held in memory.
    async fn write(&mut self, chunk: Bytes) -> Result<()>;

    /// Makes every byte durable, then makes the object visible at its path in
    /// one atomic step.
    async fn commit(self: Box<Self>) -> Result<ObjectMeta>;

    /// Discards the upload and what it wrote so far: nothing appears at the
    /// path. Call it when a write fails or the object is not wanted.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// Helpers over any [`ReadTarget`].
#[async_trait]
pub trait ReadTargetExt: ReadTarget {
    /// Reads a whole object.
    async fn read_all(&self, path: &ObjectPath) -> Result<Bytes> {
        let meta = self.head(path).await?;
        self.read_range(path, 0..meta.size).await
    }

    /// Collects a listing, sorted by path.
    async fn list_all(&self, prefix: &ObjectPath) -> Result<Vec<ObjectMeta>> {
        let mut all: Vec<ObjectMeta> = self.list(prefix).await?.try_collect().await?;
        all.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(all)
    }
}

impl<T: ReadTarget + ?Sized> ReadTargetExt for T {}

/// Helpers over any [`StorageTarget`].
#[async_trait]
pub trait StorageTargetExt: StorageTarget {
    /// Puts a whole object from memory (small objects: manifests, markers).
    async fn put_bytes(&self, path: &ObjectPath, data: Bytes, mode: CommitMode) -> Result<ObjectMeta> {
        let mut writer = self.put(path, mode).await?;
        if let Err(e) = writer.write(data).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.commit().await
    }

    /// Deletes every object under `prefix`, then the emptied folders, deepest first.
    async fn delete_prefix(&self, prefix: &ObjectPath) -> Result<()> {
        let objects = self.list_all(prefix).await?;
        let mut dirs = std::collections::BTreeSet::new();
        for object in &objects {
            self.delete(&object.path).await?;
            let mut parent = object.path.parent();
            while let Some(p) = parent {
                if !p.starts_with(prefix) {
                    break;
                }
                parent = p.parent();
                dirs.insert(p);
            }
        }
        dirs.insert(prefix.clone());
        for dir in dirs.iter().rev() {
            if !dir.is_root() {
                self.delete_dir(dir).await?;
            }
        }
        Ok(())
    }
}

impl<T: StorageTarget + ?Sized> StorageTargetExt for T {}

/// Checks a requested range against an object's size.
pub fn check_range(path: &ObjectPath, range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(StorageError::new(
            ErrorKind::Other,
            "cannot read",
            path.as_str(),
            format!(
                "range {}..{} is outside the object's {size} bytes",
                range.start, range.end
            ),
        )
        .with_retryable(false));
    }
    Ok(())
}

/// The temporary name an upload to `path` uses until it commits.
pub fn partial_path(path: &ObjectPath) -> Result<ObjectPath> {
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag).map_err(|e| {
        StorageError::new(
            ErrorKind::Other,
            "cannot start upload",
            path.as_str(),
            format!("no randomness: {e}"),
        )
        .with_source(e)
    })?;
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let name = path.name().unwrap_or("object");
    let parent = path.parent().unwrap_or_default();
    parent.child(&format!(".{name}{PARTIAL_MARKER}{hex}"))
}

/// Whether an object name is an uncommitted upload's.
pub fn is_partial_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(PARTIAL_MARKER)
}
