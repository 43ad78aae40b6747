//! The local-directory backend.
//!
//! Uploads stream to a hidden temporary file beside their destination, are
//! `fsync`ed, then renamed into place (with `RENAME_NOREPLACE` on Linux for
//! [`CommitMode::CreateNew`]) and the folder is `fsync`ed, so an object is
//! either absent or complete and durable. Errors are mapped by errno
//! ([`crate::classify_io`]), except that a permission failure is
//! [`ErrorKind::PermissionDenied`] naming the folder and the user running ibs.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::target::{check_range, is_partial_name, partial_path};
use crate::{
    Capacity, CommitMode, ErrorKind, ObjectMeta, ObjectPath, ObjectWriter, ReadTarget, Remediation, Result,
    StorageError, StorageTarget, classify_io,
};

/// Folders deeper than this are not listed (bounds a hostile tree).
const MAX_LIST_DEPTH: usize = 32;

/// A local directory as a storage target.
///
/// A folder the user running ibs may not read, write or delete in (owner,
/// mode, ACLs, an immutable folder, a read-only mount) gives
/// [`ErrorKind::PermissionDenied`], whose text names the folder and the
/// user's uid: no credentials are involved, so it is not
/// [`ErrorKind::Authentication`].
#[derive(Debug, Clone)]
pub struct LocalTarget {
    root: PathBuf,
}

impl LocalTarget {
    /// Opens an existing directory. A missing or non-directory root is a
    /// [`ErrorKind::PathNotFound`] error.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let shown = root.display().to_string();
        let meta = std::fs::metadata(&root).map_err(|e| io_error("cannot open location", &shown, &root, e))?;
        if !meta.is_dir() {
            return Err(error(
                ErrorKind::PathNotFound,
                "cannot open location",
                shown,
                "not a directory",
            ));
        }
        Ok(LocalTarget { root })
    }

    /// The directory object paths are relative to, as given to
    /// [`LocalTarget::new`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder on disk that holds `path`.
    fn folder_of(&self, path: &ObjectPath) -> PathBuf {
        self.full(&path.parent().unwrap_or_default())
    }

    fn full(&self, path: &ObjectPath) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(path.segments());
        p
    }
}

impl fmt::Display for LocalTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "local directory {}", self.root.display())
    }
}

/// What an operator checks at a local directory.
static LOCAL: Remediation = Remediation {
    connectivity: "The directory is on a file system that stopped answering: check that its network mount \
        (NFS, SMB) or disk is up and mounted, then retry the backup.",
    path_not_found: "Check that the directory exists and is mounted on this system (a missing mount leaves \
        an empty or missing folder), then update the backup storage path in the backup settings.",
    // The operating system's permission errors become `PermissionDenied`
    // (worded by its alert, naming the folder); this is for an
    // authentication error made for this target by a wrapper (fault
    // injection).
    authentication: "Check that the user running ibs may read, write and delete in the directory (owner, \
        permissions, ACLs), and that the credentials of its network mount are valid.",
};

/// A [`StorageError::from_io`] in a local directory's words. `folder` is the
/// folder on disk the operation needed: a permission failure
/// (`EACCES`/`EPERM`/`EROFS`) is [`ErrorKind::PermissionDenied`] naming it
/// and the user running ibs, not an authentication failure (no credentials
/// are involved here).
fn io_error(op: &'static str, path: impl Into<String>, folder: &Path, e: std::io::Error) -> StorageError {
    if classify_io(&e) == ErrorKind::Authentication {
        let detail = format!(
            "the folder {} refuses the user running ibs (uid {}): {e}",
            folder.display(),
            rustix::process::getuid().as_raw()
        );
        return error(ErrorKind::PermissionDenied, op, path, detail).with_source(e);
    }
    StorageError::from_io(op, path, e).with_remediation(&LOCAL)
}

/// A [`StorageError::new`] in a local directory's words.
fn error(kind: ErrorKind, op: &'static str, path: impl Into<String>, detail: impl Into<String>) -> StorageError {
    StorageError::new(kind, op, path, detail).with_remediation(&LOCAL)
}

fn blocking_error(op: &'static str, path: &ObjectPath, e: tokio::task::JoinError) -> StorageError {
    error(
        ErrorKind::Other,
        op,
        path.as_str(),
        format!("worker thread failed: {e}"),
    )
    .with_source(e)
}

#[async_trait]
impl ReadTarget for LocalTarget {
    async fn read_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes> {
        let op = "cannot read";
        let folder = self.folder_of(path);
        let full = self.full(path);
        let object = path.clone();
        // One blocking-pool task per range: open, check, read straight into
        // the buffer (no zero-fill first, no copies through tokio's 2 MiB
        // file buffer: a restore reads its archive 8 MiB at a time).
        let read = tokio::task::spawn_blocking(move || -> Result<Bytes> {
            use std::io::{Read, Seek};
            let mut file = std::fs::File::open(&full).map_err(|e| io_error(op, object.as_str(), &folder, e))?;
            let size = file
                .metadata()
                .map_err(|e| io_error(op, object.as_str(), &folder, e))?
                .len();
            check_range(&object, &range, size)?;
            let len = usize::try_from(range.end - range.start)
                .map_err(|_| error(ErrorKind::Other, op, object.as_str(), "range too large for memory"))?;
            file.seek(std::io::SeekFrom::Start(range.start))
                .map_err(|e| io_error(op, object.as_str(), &folder, e))?;
            let mut buf = Vec::new();
            buf.try_reserve_exact(len)
                .map_err(|_| error(ErrorKind::Other, op, object.as_str(), "range too large for memory"))?;
            file.take(len as u64)
                .read_to_end(&mut buf)
                .map_err(|e| io_error(op, object.as_str(), &folder, e))?;
            if buf.len() != len {
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file ended after {} of {len} bytes (it shrank while read)",
                        buf.len()
                    ),
                );
                return Err(io_error(op, object.as_str(), &folder, e));
            }
            Ok(Bytes::from(buf))
        });
        read.await.map_err(|e| blocking_error(op, path, e))?
    }

    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta> {
        let meta = tokio::fs::metadata(self.full(path))
            .await
            .map_err(|e| io_error("cannot stat", path.as_str(), &self.folder_of(path), e))?;
        if !meta.is_file() {
            return Err(error(
                ErrorKind::PathNotFound,
                "cannot stat",
                path.as_str(),
                "not an object (a folder?)",
            ));
        }
        Ok(ObjectMeta {
            path: path.clone(),
            size: meta.len(),
            modified: meta.modified().ok(),
            partial: path.name().is_some_and(is_partial_name),
        })
    }

    async fn list(&self, prefix: &ObjectPath) -> Result<BoxStream<'static, Result<ObjectMeta>>> {
        let start = self.full(prefix);
        let prefix = prefix.clone();
        let p2 = prefix.clone();
        let found = tokio::task::spawn_blocking(move || walk(&start, &prefix))
            .await
            .map_err(|e| blocking_error("cannot list", &p2, e))??;
        Ok(stream::iter(found.into_iter().map(Ok)).boxed())
    }

    async fn capacity(&self) -> Result<Capacity> {
        let root = self.root.clone();
        let shown = root.display().to_string();
        let stat = tokio::task::spawn_blocking(move || rustix::fs::statvfs(&root))
            .await
            .map_err(|e| blocking_error("cannot query capacity of", &ObjectPath::root(), e))?
            .map_err(|e| io_error("cannot query capacity of", shown, &self.root, e.into()))?;
        Ok(Capacity {
            free_bytes: Some(stat.f_bavail.saturating_mul(stat.f_frsize)),
            total_bytes: Some(stat.f_blocks.saturating_mul(stat.f_frsize)),
        })
    }
}

#[async_trait]
impl StorageTarget for LocalTarget {
    async fn create_dir_all(&self, path: &ObjectPath) -> Result<()> {
        tokio::fs::create_dir_all(self.full(path))
            .await
            .map_err(|e| io_error("cannot create folder", path.as_str(), &self.full(path), e))
    }

    async fn put(&self, path: &ObjectPath, mode: CommitMode) -> Result<Box<dyn ObjectWriter>> {
        let parent = path.parent().unwrap_or_default();
        if path.is_root() {
            return Err(error(
                ErrorKind::Other,
                "cannot write",
                "/",
                "the root is not an object",
            ));
        }
        let parent_full = self.full(&parent);
        let parent_meta = tokio::fs::metadata(&parent_full)
            .await
            .map_err(|e| io_error("cannot write into folder", parent.as_str(), &parent_full, e))?;
        if !parent_meta.is_dir() {
            return Err(error(
                ErrorKind::PathNotFound,
                "cannot write into folder",
                parent.as_str(),
                "not a folder",
            ));
        }
        let tmp = partial_path(path)?;
        let tmp_full = self.full(&tmp);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_full)
            .await
            .map_err(|e| io_error("cannot create", tmp.as_str(), &parent_full, e))?;
        let behind = WriteBehind::new(&file).await;
        Ok(Box::new(LocalWriter {
            file: Some(file),
            behind,
            tmp_full,
            final_full: self.full(path),
            dir_full: self.full(&parent),
            path: path.clone(),
            mode,
            size: 0,
        }))
    }

    async fn delete(&self, path: &ObjectPath) -> Result<()> {
        match tokio::fs::remove_file(self.full(path)).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(|e| io_error("cannot delete", path.as_str(), &self.folder_of(path), e)),
        }
    }

    async fn delete_dir(&self, path: &ObjectPath) -> Result<()> {
        match tokio::fs::remove_dir(self.full(path)).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(|e| io_error("cannot delete folder", path.as_str(), &self.folder_of(path), e)),
        }
    }
}

fn walk(start: &Path, prefix: &ObjectPath) -> Result<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    let meta = match std::fs::symlink_metadata(start) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_error("cannot list", prefix.as_str(), start, e)),
    };
    if meta.is_file() {
        out.push(meta_of(prefix.clone(), &meta));
        return Ok(out);
    }
    let mut stack = vec![(start.to_path_buf(), prefix.clone(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| io_error("cannot list", rel.as_str(), &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("cannot list", rel.as_str(), &dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue; // not a name this library writes
            };
            let Ok(child) = rel.child(&name) else { continue };
            let ft = entry
                .file_type()
                .map_err(|e| io_error("cannot list", child.as_str(), &dir, e))?;
            if ft.is_dir() && depth < MAX_LIST_DEPTH {
                stack.push((entry.path(), child, depth + 1));
            } else if ft.is_file() {
                let m = entry
                    .metadata()
                    .map_err(|e| io_error("cannot list", child.as_str(), &dir, e))?;
                out.push(meta_of(child, &m));
            }
        }
    }
    Ok(out)
}

fn meta_of(path: ObjectPath, m: &std::fs::Metadata) -> ObjectMeta {
    let partial = path.name().is_some_and(is_partial_name);
    ObjectMeta {
        path,
        size: m.len(),
        modified: m.modified().ok(),
        partial,
    }
}

/// Bytes written between two write-behind hints.
const WRITE_BEHIND: u64 = 16 << 20;

/// Starts the kernel's writeback of what an upload has written so far while
/// the upload goes on, so that the commit's `fsync` finds little left to
/// write. Without it the kernel starts writing only at its background
/// threshold (10 % of memory, GiBs here) or at the `fsync`, and a backup
/// first compresses everything and then waits for the disk. The hint is
/// `posix_fadvise(DONTNEED)` on the range written since the last hint: on
/// Linux that starts asynchronous writeback of its dirty pages (and drops the
/// clean ones, which a backup does not read again). One hint in flight at a
/// time, on the blocking pool. Advisory only: a failed hint changes nothing,
/// the commit still syncs everything.
#[derive(Debug)]
struct WriteBehind {
    /// A second handle to the file (the first belongs to the async writer).
    file: Option<std::sync::Arc<std::fs::File>>,
    /// Bytes before this offset have been hinted.
    hinted: u64,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl WriteBehind {
    async fn new(file: &tokio::fs::File) -> Self {
        let file = match file.try_clone().await {
            Ok(f) => Some(std::sync::Arc::new(f.into_std().await)),
            Err(_) => None,
        };
        WriteBehind {
            file,
            hinted: 0,
            task: None,
        }
    }

    /// Called after each write with the bytes surely handed to the kernel
    /// (the async writer may still be finishing the last chunk).
    async fn wrote(&mut self, written: u64) {
        let Some(file) = self.file.clone() else { return };
        if written < self.hinted + WRITE_BEHIND {
            return;
        }
        self.settle().await;
        let (start, len) = (self.hinted, written - self.hinted);
        self.hinted = written;
        self.task = Some(tokio::task::spawn_blocking(move || hint_written(&file, start, len)));
    }

    /// Waits for the hint in flight, if any.
    async fn settle(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

#[cfg(target_os = "linux")]
fn hint_written(file: &std::fs::File, start: u64, len: u64) {
    use rustix::fs::{Advice, fadvise};
    let _ = fadvise(file, start, std::num::NonZeroU64::new(len), Advice::DontNeed);
}

#[cfg(not(target_os = "linux"))]
fn hint_written(_file: &std::fs::File, _start: u64, _len: u64) {}

#[derive(Debug)]
struct LocalWriter {
    file: Option<tokio::fs::File>,
    behind: WriteBehind,
    tmp_full: PathBuf,
    final_full: PathBuf,
    dir_full: PathBuf,
    path: ObjectPath,
    mode: CommitMode,
    size: u64,
}

impl LocalWriter {
    fn fail(&mut self, op: &'static str, e: std::io::Error) -> StorageError {
        self.file = None;
        let _ = std::fs::remove_file(&self.tmp_full);
        io_error(op, self.path.as_str(), &self.dir_full, e)
    }
}

#[async_trait]
impl ObjectWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(error(
                ErrorKind::Other,
                "cannot write",
                self.path.as_str(),
                "upload already failed",
            ));
        };
        match file.write_all(&chunk).await {
            Ok(()) => {
                // Everything before this chunk has been written.
                self.behind.wrote(self.size).await;
                self.size += chunk.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.fail("cannot write", e)),
        }
    }

    async fn commit(mut self: Box<Self>) -> Result<ObjectMeta> {
        let Some(mut file) = self.file.take() else {
            return Err(error(
                ErrorKind::Other,
                "cannot commit",
                self.path.as_str(),
                "upload already failed",
            ));
        };
        if let Err(e) = file.flush().await {
            return Err(self.fail("cannot commit", e));
        }
        self.behind.settle().await;
        if let Err(e) = file.sync_all().await {
            return Err(self.fail("cannot commit", e));
        }
        drop(file);
        let (tmp, dst, dir, mode) = (
            self.tmp_full.clone(),
            self.final_full.clone(),
            self.dir_full.clone(),
            self.mode,
        );
        let renamed = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            rename(&tmp, &dst, mode)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await;
        match renamed {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&self.tmp_full);
                return Err(StorageError::already_exists("cannot commit", self.path.as_str()));
            }
            Ok(Err(e)) => return Err(self.fail("cannot commit", e)),
            Err(e) => return Err(blocking_error("cannot commit", &self.path, e)),
        }
        let modified = std::fs::metadata(&self.final_full).and_then(|m| m.modified()).ok();
        self.tmp_full = PathBuf::new();
        Ok(ObjectMeta {
            path: self.path.clone(),
            size: self.size,
            modified: modified.or(Some(SystemTime::now())),
            partial: false,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.file = None;
        match tokio::fs::remove_file(&self.tmp_full).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error("cannot discard upload", self.path.as_str(), &self.dir_full, e))
            }
            _ => {
                self.tmp_full = PathBuf::new();
                Ok(())
            }
        }
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // An upload dropped without commit or abort (an error path, a cancelled
        // task) leaves no garbage; a crashed process does, listed as partial.
        if !self.tmp_full.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp_full);
        }
    }
}

#[cfg(target_os = "linux")]
fn rename(from: &Path, to: &Path, mode: CommitMode) -> std::io::Result<()> {
    match mode {
        CommitMode::Overwrite => std::fs::rename(from, to),
        CommitMode::CreateNew => {
            use rustix::fs::{CWD, RenameFlags, renameat_with};
            match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
                Ok(()) => Ok(()),
                // Filesystems without RENAME_NOREPLACE: a hard link fails if the target exists.
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                    std::fs::hard_link(from, to)?;
                    std::fs::remove_file(from)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn rename(from: &Path, to: &Path, mode: CommitMode) -> std::io::Result<()> {
    match mode {
        CommitMode::Overwrite => std::fs::rename(from, to),
        CommitMode::CreateNew => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
    }
}
