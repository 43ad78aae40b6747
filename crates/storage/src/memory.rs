//! An in-memory reference backend, for tests of the crates above this one.
//!
//! It follows the same rules as a real backend (folders must exist, uploads
//! are invisible until committed and listed as partial meanwhile, commit is
//! atomic) and can be given a capacity, past which writes fail with
//! [`ErrorKind::OutOfCapacity`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};

use crate::target::{check_range, partial_path};
use crate::{
    Capacity, CommitMode, ErrorKind, ObjectMeta, ObjectPath, ObjectWriter, ReadTarget, Result, StorageError,
    StorageTarget,
};

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<ObjectPath, (Bytes, SystemTime)>,
    partial: BTreeMap<ObjectPath, u64>,
    dirs: BTreeSet<ObjectPath>,
    total: Option<u64>,
}

impl State {
    fn used(&self) -> u64 {
        self.objects.values().map(|(b, _)| b.len() as u64).sum::<u64>() + self.partial.values().sum::<u64>()
    }

    fn dir_exists(&self, path: &ObjectPath) -> bool {
        path.is_root() || self.dirs.contains(path)
    }
}

/// An in-memory storage target. Clones share the same contents.
#[derive(Debug, Clone, Default)]
pub struct MemoryTarget {
    state: Arc<Mutex<State>>,
}

impl MemoryTarget {
    /// An empty target of unlimited size.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty target that holds at most `total_bytes`.
    pub fn with_capacity(total_bytes: u64) -> Self {
        let t = Self::default();
        t.lock().total = Some(total_bytes);
        t
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent
        // (every update is a single insert/remove), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Display for MemoryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("in-memory target")
    }
}

fn not_found(op: &'static str, path: &ObjectPath) -> StorageError {
    StorageError::new(ErrorKind::PathNotFound, op, path.as_str(), "no such object or folder")
}

#[async_trait]
impl ReadTarget for MemoryTarget {
    async fn read_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes> {
        let state = self.lock();
        let (data, _) = state.objects.get(path).ok_or_else(|| not_found("cannot read", path))?;
        check_range(path, &range, data.len() as u64)?;
        // check_range bounds both ends by the length, which is a usize.
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta> {
        let state = self.lock();
        let (data, modified) = state.objects.get(path).ok_or_else(|| not_found("cannot stat", path))?;
        Ok(ObjectMeta {
            path: path.clone(),
            size: data.len() as u64,
            modified: Some(*modified),
            partial: false,
        })
    }

    async fn list(&self, prefix: &ObjectPath) -> Result<BoxStream<'static, Result<ObjectMeta>>> {
        let state = self.lock();
        let mut out: Vec<ObjectMeta> = state
            .objects
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(p, (d, m))| ObjectMeta {
                path: p.clone(),
                size: d.len() as u64,
                modified: Some(*m),
                partial: false,
            })
            .collect();
        out.extend(
            state
                .partial
                .iter()
                .filter(|(p, _)| p.starts_with(prefix))
                .map(|(p, size)| ObjectMeta {
                    path: p.clone(),
                    size: *size,
                    modified: None,
                    partial: true,
                }),
        );
        Ok(stream::iter(out.into_iter().map(Ok)).boxed())
    }

    async fn capacity(&self) -> Result<Capacity> {
        let state = self.lock();
        Ok(Capacity {
            free_bytes: state.total.map(|t| t.saturating_sub(state.used())),
            total_bytes: state.total,
        })
    }
}

#[async_trait]
impl StorageTarget for MemoryTarget {
    async fn create_dir_all(&self, path: &ObjectPath) -> Result<()> {
        let mut state = self.lock();
        let mut p = Some(path.clone());
        while let Some(dir) = p {
            if dir.is_root() {
                break;
            }
            if state.objects.contains_key(&dir) {
                return Err(StorageError::new(
                    ErrorKind::Other,
                    "cannot create folder",
                    dir.as_str(),
                    "an object has that name",
                ));
            }
            p = dir.parent();
            state.dirs.insert(dir);
        }
        Ok(())
    }

    async fn put(&self, path: &ObjectPath, mode: CommitMode) -> Result<Box<dyn ObjectWriter>> {
        let parent = path.parent().ok_or_else(|| not_found("cannot write", path))?;
        let tmp = partial_path(path)?;
        let mut state = self.lock();
        if !state.dir_exists(&parent) {
            return Err(not_found("cannot write into folder", &parent));
        }
        state.partial.insert(tmp.clone(), 0);
        Ok(Box::new(MemoryWriter {
            target: self.clone(),
            path: path.clone(),
            tmp,
            mode,
            buf: BytesMut::new(),
            done: false,
        }))
    }

    async fn delete(&self, path: &ObjectPath) -> Result<()> {
        let mut state = self.lock();
        state.objects.remove(path);
        state.partial.remove(path);
        Ok(())
    }

    async fn delete_dir(&self, path: &ObjectPath) -> Result<()> {
        let mut state = self.lock();
        let busy = state
            .objects
            .keys()
            .chain(state.partial.keys())
            .any(|p| p.starts_with(path))
            || state.dirs.iter().any(|d| d != path && d.starts_with(path));
        if busy {
            return Err(StorageError::new(
                ErrorKind::Other,
                "cannot delete folder",
                path.as_str(),
                "the folder is not empty",
            ));
        }
        state.dirs.remove(path);
        Ok(())
    }
}

#[derive(Debug)]
struct MemoryWriter {
    target: MemoryTarget,
    path: ObjectPath,
    tmp: ObjectPath,
    mode: CommitMode,
    buf: BytesMut,
    done: bool,
}

#[async_trait]
impl ObjectWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let mut state = self.target.lock();
        if let Some(total) = state.total
            && state.used() + chunk.len() as u64 > total
        {
            return Err(StorageError::new(
                ErrorKind::OutOfCapacity,
                "cannot write",
                self.path.as_str(),
                "no space left",
            ));
        }
        self.buf.extend_from_slice(&chunk);
        state.partial.insert(self.tmp.clone(), self.buf.len() as u64);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<ObjectMeta> {
        let mut state = self.target.lock();
        state.partial.remove(&self.tmp);
        self.done = true;
        let parent = self.path.parent().unwrap_or_default();
        if !state.dir_exists(&parent) {
            return Err(not_found("cannot commit into folder", &parent));
        }
        if self.mode == CommitMode::CreateNew && state.objects.contains_key(&self.path) {
            return Err(StorageError::already_exists("cannot commit", self.path.as_str()));
        }
        let now = SystemTime::now();
        let data = std::mem::take(&mut self.buf).freeze();
        let size = data.len() as u64;
        state.objects.insert(self.path.clone(), (data, now));
        Ok(ObjectMeta {
            path: self.path.clone(),
            size,
            modified: Some(now),
            partial: false,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.target.lock().partial.remove(&self.tmp);
        self.done = true;
        Ok(())
    }
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        if !self.done {
            self.target.lock().partial.remove(&self.tmp);
        }
    }
}
