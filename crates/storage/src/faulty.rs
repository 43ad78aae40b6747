//! A fault-injecting wrapper around any target, to drive crash-safety tests.
//!
//! Every call through the wrapper — target methods and writer methods alike —
//! is numbered from 1. A [`FaultPlan`] fails the N-th call, or cuts an upload
//! after N bytes, with a chosen failure class; afterwards every call may keep
//! failing (a dead connection or a crashed process). A cut upload can be left
//! behind as a partial object, as a killed process would leave it.
//!
//! A fault can also be a **lost reply** ([`FaultPlan::lost_reply_at_call`]):
//! the N-th call is passed to the wrapped target and takes effect there, and
//! only then does the caller get the injected error — as when a connection
//! drops after the server carried out a request but before its answer
//! arrived. A `commit` whose reply is lost has committed the object (it is
//! visible at its path); a `delete` has deleted it; a `put` has started an
//! upload the caller never sees (dropped, so discarded); a `write` has
//! appended its bytes. When the wrapped call itself fails, its own error is
//! returned (there was no effect to hide). A lost reply is not sticky: later
//! calls go through, so a test sees how the caller copes with the state it
//! did not learn about.
//!
//! The usual test: run a job once through an unarmed wrapper to count its
//! calls, then once per call number with the fault armed there.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::{
    Capacity, CommitMode, ErrorKind, ObjectMeta, ObjectPath, ObjectWriter, ReadTarget, Result, StorageError,
    StorageTarget,
};

/// When and how the wrapper fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// Fail the call with this number (1-based), if any.
    pub fail_at_call: Option<u64>,
    /// Fail the write that would take the bytes written through the wrapper past this total.
    pub cut_after_bytes: Option<u64>,
    /// The class of the injected error.
    pub kind: ErrorKind,
    /// Whether every call after the fault fails too.
    pub sticky: bool,
    /// Whether an upload cut by the fault is left behind as a partial object
    /// (as after a crash) instead of being discarded.
    pub leave_garbage: bool,
    /// Whether the call at `fail_at_call` is carried out by the wrapped
    /// target before the error is returned (a lost reply) instead of failing
    /// without effect.
    pub lost_reply: bool,
}

impl FaultPlan {
    /// No faults: only counts calls.
    pub fn none() -> Self {
        FaultPlan {
            fail_at_call: None,
            cut_after_bytes: None,
            kind: ErrorKind::Other,
            sticky: false,
            leave_garbage: false,
            lost_reply: false,
        }
    }

    /// Fail call `n` with `kind`, then every later call (a crash).
    pub fn crash_at_call(n: u64, kind: ErrorKind) -> Self {
        FaultPlan {
            fail_at_call: Some(n),
            kind,
            sticky: true,
            leave_garbage: true,
            ..FaultPlan::none()
        }
    }

    /// Carry out call `n`, then report `kind` to the caller as if it had
    /// failed (its reply was lost); later calls go through (see the module
    /// docs for what each call has done when its reply is lost).
    pub fn lost_reply_at_call(n: u64, kind: ErrorKind) -> Self {
        FaultPlan {
            fail_at_call: Some(n),
            kind,
            lost_reply: true,
            ..FaultPlan::none()
        }
    }

    /// Fail the write that passes `bytes` in total, with `kind`.
    pub fn cut_after_bytes(bytes: u64, kind: ErrorKind) -> Self {
        FaultPlan {
            cut_after_bytes: Some(bytes),
            kind,
            ..FaultPlan::none()
        }
    }
}

#[derive(Debug)]
struct Shared {
    plan: Mutex<FaultPlan>,
    calls: AtomicU64,
    bytes: AtomicU64,
    tripped: AtomicU64,
}

impl Shared {
    fn plan(&self) -> FaultPlan {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a call and says whether it must fail before it is carried
    /// out (`Err`), or after it (a [`Reply`] holding the error to report).
    fn call(&self, op: &'static str, path: &str) -> Result<Reply> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let plan = self.plan();
        let tripped = self.tripped.load(Ordering::SeqCst) > 0;
        if plan.fail_at_call == Some(n) && plan.lost_reply {
            self.tripped.fetch_add(1, Ordering::SeqCst);
            return Ok(Reply(Some(injected(plan.kind, op, path, n))));
        }
        if (plan.sticky && tripped) || plan.fail_at_call == Some(n) {
            self.tripped.fetch_add(1, Ordering::SeqCst);
            return Err(injected(plan.kind, op, path, n));
        }
        Ok(Reply(None))
    }
}

/// What the caller is told once a call has been carried out: its own
/// result, or the injected error when the reply is lost.
#[must_use]
struct Reply(Option<StorageError>);

impl Reply {
    fn give<T>(self, result: Result<T>) -> Result<T> {
        match (self.0, result) {
            (Some(lost), Ok(_)) => Err(lost),
            (_, result) => result,
        }
    }
}

fn injected(kind: ErrorKind, op: &'static str, path: &str, n: u64) -> StorageError {
    StorageError::new(kind, op, path, format!("injected fault at call {n}"))
}

/// Wraps a target and injects faults according to a [`FaultPlan`].
#[derive(Debug, Clone)]
pub struct FaultyTarget<T> {
    inner: T,
    shared: Arc<Shared>,
}

impl<T: StorageTarget> FaultyTarget<T> {
    /// Wraps `inner` with `plan`.
    pub fn new(inner: T, plan: FaultPlan) -> Self {
        FaultyTarget {
            inner,
            shared: Arc::new(Shared {
                plan: Mutex::new(plan),
                calls: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                tripped: AtomicU64::new(0),
            }),
        }
    }

    /// Calls made through the wrapper so far.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Whether a fault has been injected.
    pub fn tripped(&self) -> bool {
        self.shared.tripped.load(Ordering::SeqCst) > 0
    }

    /// Replaces the plan and resets the counters.
    pub fn rearm(&self, plan: FaultPlan) {
        *self.shared.plan.lock().unwrap_or_else(|p| p.into_inner()) = plan;
        self.shared.calls.store(0, Ordering::SeqCst);
        self.shared.bytes.store(0, Ordering::SeqCst);
        self.shared.tripped.store(0, Ordering::SeqCst);
    }

    /// The wrapped target.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: fmt::Display> fmt::Display for FaultyTarget<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (with fault injection)", self.inner)
    }
}

#[async_trait]
impl<T: StorageTarget> ReadTarget for FaultyTarget<T> {
    async fn read_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes> {
        let reply = self.shared.call("cannot read", path.as_str())?;
        reply.give(self.inner.read_range(path, range).await)
    }

    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta> {
        let reply = self.shared.call("cannot stat", path.as_str())?;
        reply.give(self.inner.head(path).await)
    }

    async fn list(&self, prefix: &ObjectPath) -> Result<BoxStream<'static, Result<ObjectMeta>>> {
        let reply = self.shared.call("cannot list", prefix.as_str())?;
        reply.give(self.inner.list(prefix).await)
    }

    async fn capacity(&self) -> Result<Capacity> {
        let reply = self.shared.call("cannot query capacity of", "/")?;
        reply.give(self.inner.capacity().await)
    }
}

#[async_trait]
impl<T: StorageTarget> StorageTarget for FaultyTarget<T> {
    async fn create_dir_all(&self, path: &ObjectPath) -> Result<()> {
        let reply = self.shared.call("cannot create folder", path.as_str())?;
        reply.give(self.inner.create_dir_all(path).await)
    }

    async fn put(&self, path: &ObjectPath, mode: CommitMode) -> Result<Box<dyn ObjectWriter>> {
        let reply = self.shared.call("cannot write", path.as_str())?;
        // A lost reply drops the started upload: the caller never saw it.
        let inner = reply.give(self.inner.put(path, mode).await)?;
        Ok(Box::new(FaultyWriter {
            inner: Some(inner),
            shared: self.shared.clone(),
            path: path.clone(),
        }))
    }

    async fn delete(&self, path: &ObjectPath) -> Result<()> {
        let reply = self.shared.call("cannot delete", path.as_str())?;
        reply.give(self.inner.delete(path).await)
    }

    async fn delete_dir(&self, path: &ObjectPath) -> Result<()> {
        let reply = self.shared.call("cannot delete folder", path.as_str())?;
        reply.give(self.inner.delete_dir(path).await)
    }
}

#[derive(Debug)]
struct FaultyWriter {
    inner: Option<Box<dyn ObjectWriter>>,
    shared: Arc<Shared>,
    path: ObjectPath,
}

impl FaultyWriter {
    /// Fails the upload: as a crash would (the partial object stays) or as an
    /// error path would (the upload is discarded).
    async fn fail(&mut self, e: StorageError) -> StorageError {
        if let Some(inner) = self.inner.take() {
            if self.shared.plan().leave_garbage {
                // Simulates a killed process: no abort, no destructor.
                std::mem::forget(inner);
            } else {
                let _ = inner.abort().await;
            }
        }
        e
    }

    fn gone(&self, op: &'static str) -> StorageError {
        StorageError::new(ErrorKind::Other, op, self.path.as_str(), "upload already failed")
    }
}

#[async_trait]
impl ObjectWriter for FaultyWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let reply = match self.shared.call("cannot write", self.path.as_str()) {
            Ok(reply) => reply,
            Err(e) => return Err(self.fail(e).await),
        };
        let plan = self.shared.plan();
        let before = self.shared.bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        let gone = self.gone("cannot write");
        let inner = self.inner.as_mut().ok_or(gone)?;
        if let Some(limit) = plan.cut_after_bytes
            && before + chunk.len() as u64 > limit
        {
            let keep = limit.saturating_sub(before) as usize;
            let _ = inner.write(chunk.slice(..keep.min(chunk.len()))).await;
            self.shared.tripped.fetch_add(1, Ordering::SeqCst);
            let n = self.shared.calls.load(Ordering::SeqCst);
            let e = injected(plan.kind, "cannot write", self.path.as_str(), n);
            return Err(self.fail(e).await);
        }
        reply.give(inner.write(chunk).await)
    }

    async fn commit(mut self: Box<Self>) -> Result<ObjectMeta> {
        let reply = match self.shared.call("cannot commit", self.path.as_str()) {
            Ok(reply) => reply,
            Err(e) => return Err(self.fail(e).await),
        };
        match self.inner.take() {
            Some(inner) => reply.give(inner.commit().await),
            None => Err(self.gone("cannot commit")),
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        let counted = self.shared.call("cannot discard upload", self.path.as_str());
        let inner = self.inner.take();
        let reply = match counted {
            Ok(reply) => reply,
            Err(e) => {
                if let Some(inner) = inner
                    && self.shared.plan().leave_garbage
                {
                    std::mem::forget(inner);
                }
                return Err(e);
            }
        };
        match inner {
            Some(inner) => reply.give(inner.abort().await),
            None => Ok(()),
        }
    }
}
