//! A wrapper that makes every storage call visible: a `tracing` span per
//! call, and an optional observer told when each call starts and ends.
//!
//! Why one wrapper and not logging in each backend: a call that hangs (a
//! stalled SMB share, an object store that stopped answering) looks the same
//! whatever the backend, and what an operator needs to see — which call,
//! on which path, for how long — is the same too. The wrapper sits around
//! any target, so the local, SMB and object-store backends and a test's
//! in-memory one are all covered by the same code.
//!
//! * **Tracing.** Every call runs in a `storage` span (target `ibs_storage`,
//!   level `DEBUG`) with the operation and the object path; when it ends, an
//!   event in that span records the bytes moved, the elapsed time and the
//!   outcome (the failure class and the error's text on failure). An upload
//!   has a span of its own (`upload`) from `put` to `commit` or `abort`, each
//!   `write` a call inside it (`TRACE` level: a large upload makes thousands).
//!   Only paths, sizes, times and error texts are recorded — never object
//!   contents, and no backend puts credentials in a path or an error.
//! * **Observer.** A [`CallObserver`] gets a [`CallEvent`] when a call starts
//!   and when it ends, including every `write` and the `commit` of a
//!   streaming upload, so a caller can show which call is pending and for
//!   how long (a command's "waiting for write … 12 s" spinner). The observer
//!   runs on the calling task: it must be quick and must not block.
//!
//! A listing's call ends when the backend has returned its stream; the
//! stream's items are read afterwards, outside the observed call.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use tracing::Instrument;

use crate::{Capacity, CommitMode, ErrorKind, ObjectMeta, ObjectPath, ObjectWriter, ReadTarget, Result, StorageTarget};

/// Which storage call an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`ReadTarget::read_range`].
    ReadRange,
    /// [`ReadTarget::head`].
    Head,
    /// [`ReadTarget::list`] (until the backend returns its stream).
    List,
    /// [`ReadTarget::capacity`].
    Capacity,
    /// [`StorageTarget::create_dir_all`].
    CreateDirAll,
    /// [`StorageTarget::put`]: starting an upload.
    Put,
    /// [`ObjectWriter::write`]: one piece of an upload.
    Write,
    /// [`ObjectWriter::commit`]: making an upload durable and visible.
    Commit,
    /// [`ObjectWriter::abort`]: discarding an upload.
    Abort,
    /// [`StorageTarget::delete`].
    Delete,
    /// [`StorageTarget::delete_dir`].
    DeleteDir,
}

impl Operation {
    /// A short lower-case name for messages and logs (`"read"`, `"write"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ReadRange => "read",
            Operation::Head => "stat",
            Operation::List => "list",
            Operation::Capacity => "capacity",
            Operation::CreateDirAll => "create folder",
            Operation::Put => "start upload",
            Operation::Write => "write",
            Operation::Commit => "commit",
            Operation::Abort => "abort upload",
            Operation::Delete => "delete",
            Operation::DeleteDir => "delete folder",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a storage call, as a [`CallObserver`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEvent {
    /// Numbers the calls through one wrapper (and the targets cloned from
    /// it), from 1: a call's `Started` and `Finished` events carry the same id.
    pub id: u64,
    /// Which method of the target was called.
    pub operation: Operation,
    /// The object or folder it concerns (the root for [`Operation::Capacity`]).
    pub path: ObjectPath,
    /// Whether the call starts or has ended.
    pub phase: CallPhase,
}

/// Whether a [`CallEvent`] is a call's start or its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallPhase {
    /// The call was made and is waiting for the target.
    Started,
    /// The call returned, or was dropped before it did (a cancelled call:
    /// `bytes` 0, `error` `None`), so every `Started` has its `Finished`.
    Finished {
        /// How long it took.
        elapsed: Duration,
        /// Bytes it moved: read by `read_range`, handed over by `write`,
        /// the object's size for `commit`; 0 otherwise.
        bytes: u64,
        /// `None` on success, the failure class otherwise.
        error: Option<ErrorKind>,
    },
}

/// Told of every call's start and end (see [`ObservedTarget`]). Runs on
/// the calling task: it must return quickly.
pub type CallObserver = Arc<dyn Fn(&CallEvent) + Send + Sync>;

/// Shared by a wrapper, its clones and its uploads.
struct Watch {
    observer: Option<CallObserver>,
    next_id: AtomicU64,
    /// Whether calls open spans and record events (off for an observer-only
    /// wrapper around a target that is traced already).
    traced: bool,
}

/// A call in progress: its span, its id, when it started.
struct Call<'w> {
    watch: &'w Watch,
    id: u64,
    operation: Operation,
    path: ObjectPath,
    start: Instant,
    /// Whether [`Call::finish`] told the observer (else dropping it does).
    told: bool,
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if self.told {
            return;
        }
        if let Some(observer) = &self.watch.observer {
            observer(&CallEvent {
                id: self.id,
                operation: self.operation,
                path: self.path.clone(),
                phase: CallPhase::Finished {
                    elapsed: self.start.elapsed(),
                    bytes: 0,
                    error: None,
                },
            });
        }
    }
}

impl Watch {
    /// The span of a call (none when the wrapper is not traced).
    fn span(&self, operation: Operation, path: &ObjectPath) -> tracing::Span {
        if self.traced {
            span(operation, path)
        } else {
            tracing::Span::none()
        }
    }

    fn start(&self, operation: Operation, path: &ObjectPath) -> Call<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(observer) = &self.observer {
            observer(&CallEvent {
                id,
                operation,
                path: path.clone(),
                phase: CallPhase::Started,
            });
        }
        Call {
            watch: self,
            id,
            operation,
            path: path.clone(),
            start: Instant::now(),
            told: false,
        }
    }
}

impl Call<'_> {
    /// Records the end of the call (in the current span) and tells the observer.
    fn finish<T>(mut self, result: &Result<T>, bytes: impl FnOnce(&T) -> u64) -> u64 {
        self.told = true;
        let elapsed = self.start.elapsed();
        let elapsed_ms = elapsed.as_millis() as u64;
        let (bytes, error) = match result {
            Ok(value) => (bytes(value), None),
            Err(e) => (0, Some(e.kind())),
        };
        match result {
            _ if !self.watch.traced => {}
            Ok(_) if self.operation == Operation::Write => {
                tracing::trace!(bytes, elapsed_ms, "storage call done");
            }
            Ok(_) => tracing::debug!(bytes, elapsed_ms, "storage call done"),
            Err(e) => tracing::debug!(elapsed_ms, kind = ?e.kind(), error = %e, "storage call failed"),
        }
        if let Some(observer) = &self.watch.observer {
            observer(&CallEvent {
                id: self.id,
                operation: self.operation,
                path: self.path.clone(),
                phase: CallPhase::Finished { elapsed, bytes, error },
            });
        }
        bytes
    }
}

fn span(operation: Operation, path: &ObjectPath) -> tracing::Span {
    tracing::debug_span!("storage", op = operation.as_str(), path = %path)
}

/// Wraps a target (any [`ReadTarget`] or [`StorageTarget`], a trait object
/// too) so that every call is traced and, with an observer, reported.
/// Clones share the observer and the call numbers.
///
/// * **Tracing.** Every call runs in a `storage` span (target
///   `ibs_storage`, level `DEBUG`) with the operation and the object path;
///   when it ends, an event in that span records the bytes moved, the
///   elapsed time and the outcome (the failure class and the error's text on
///   failure). An upload has a span of its own (`upload`) from `put` to
///   `commit` or `abort`, each `write` a call inside it (`TRACE` level).
///   Only paths, sizes, times and error texts are recorded — never object
///   contents or credentials.
/// * **Observer** ([`ObservedTarget::with_observer`]): a [`CallObserver`]
///   gets a [`CallEvent`] when a call starts and when it ends, every
///   `write` and the `commit` of a streaming upload included, so a caller
///   can show which call is pending and for how long. A listing's call ends
///   when the backend has returned its stream.
///
/// The wrapper does not show in messages: it displays as the wrapped target.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use ibs_storage::{CallEvent, CallPhase, MemoryTarget, ObjectPath, ObservedTarget, ReadTarget, StorageTarget};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ibs_storage::StorageError> {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&seen);
/// let inner: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
/// let target = ObservedTarget::new(inner).with_observer(Arc::new(move |e: &CallEvent| {
///     log.lock().unwrap().push((e.operation, matches!(e.phase, CallPhase::Started)));
/// }));
/// target.create_dir_all(&ObjectPath::parse("a/b")?).await?;
/// assert_eq!(seen.lock().unwrap().len(), 2); // started, finished
/// # Ok(()) }
/// ```
pub struct ObservedTarget<T: ?Sized> {
    inner: Arc<T>,
    watch: Arc<Watch>,
}

impl<T: ?Sized> Clone for ObservedTarget<T> {
    fn clone(&self) -> Self {
        ObservedTarget {
            inner: Arc::clone(&self.inner),
            watch: Arc::clone(&self.watch),
        }
    }
}

impl<T: ?Sized> ObservedTarget<T> {
    /// Wraps `inner`: every call traced, no observer.
    pub fn new(inner: Arc<T>) -> Self {
        ObservedTarget {
            inner,
            watch: Arc::new(Watch {
                observer: None,
                next_id: AtomicU64::new(0),
                traced: true,
            }),
        }
    }

    /// Tells `observer` of every call's start and end (replacing any
    /// observer set before; clones made earlier keep theirs).
    pub fn with_observer(self, observer: CallObserver) -> Self {
        ObservedTarget {
            inner: self.inner,
            watch: Arc::new(Watch {
                observer: Some(observer),
                next_id: AtomicU64::new(self.watch.next_id.load(Ordering::Relaxed)),
                traced: self.watch.traced,
            }),
        }
    }

    /// Whether calls open `tracing` spans and record events (default: yes).
    /// Off, the wrapper only tells its observer — for a target that is
    /// traced already (one from a wrapper of its own), whose calls would
    /// otherwise be traced twice. Clones made earlier keep the setting.
    pub fn traced(self, yes: bool) -> Self {
        ObservedTarget {
            inner: self.inner,
            watch: Arc::new(Watch {
                observer: self.watch.observer.clone(),
                next_id: AtomicU64::new(self.watch.next_id.load(Ordering::Relaxed)),
                traced: yes,
            }),
        }
    }

    /// The wrapped target.
    pub fn inner(&self) -> &Arc<T> {
        &self.inner
    }

    /// Calls made through the wrapper (and its clones) so far.
    pub fn calls(&self) -> u64 {
        self.watch.next_id.load(Ordering::Relaxed)
    }
}

impl<T: fmt::Debug + ?Sized> fmt::Debug for ObservedTarget<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservedTarget")
            .field("inner", &self.inner)
            .field("observer", &self.watch.observer.is_some())
            .finish()
    }
}

impl<T: fmt::Display + ?Sized> fmt::Display for ObservedTarget<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The location as the wrapped target names it: the wrapper is invisible in messages.
        self.inner.fmt(f)
    }
}

#[async_trait]
impl<T: ReadTarget + ?Sized> ReadTarget for ObservedTarget<T> {
    async fn read_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes> {
        let span = self.watch.span(Operation::ReadRange, path);
        async {
            if self.watch.traced {
                tracing::trace!(start = range.start, end = range.end, "storage call");
            }
            let call = self.watch.start(Operation::ReadRange, path);
            let result = self.inner.read_range(path, range).await;
            call.finish(&result, |b| b.len() as u64);
            result
        }
        .instrument(span)
        .await
    }

    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta> {
        let span = self.watch.span(Operation::Head, path);
        async {
            let call = self.watch.start(Operation::Head, path);
            let result = self.inner.head(path).await;
            call.finish(&result, |_| 0);
            result
        }
        .instrument(span)
        .await
    }

    async fn list(&self, prefix: &ObjectPath) -> Result<BoxStream<'static, Result<ObjectMeta>>> {
        let span = self.watch.span(Operation::List, prefix);
        async {
            let call = self.watch.start(Operation::List, prefix);
            let result = self.inner.list(prefix).await;
            call.finish(&result, |_| 0);
            result
        }
        .instrument(span)
        .await
    }

    async fn capacity(&self) -> Result<Capacity> {
        let root = ObjectPath::default();
        let span = self.watch.span(Operation::Capacity, &root);
        async {
            let call = self.watch.start(Operation::Capacity, &root);
            let result = self.inner.capacity().await;
            call.finish(&result, |_| 0);
            if let (true, Ok(c)) = (self.watch.traced, &result) {
                tracing::debug!(free_bytes = ?c.free_bytes, total_bytes = ?c.total_bytes, "capacity");
            }
            result
        }
        .instrument(span)
        .await
    }
}

#[async_trait]
impl<T: StorageTarget + ?Sized> StorageTarget for ObservedTarget<T> {
    async fn create_dir_all(&self, path: &ObjectPath) -> Result<()> {
        let span = self.watch.span(Operation::CreateDirAll, path);
        async {
            let call = self.watch.start(Operation::CreateDirAll, path);
            let result = self.inner.create_dir_all(path).await;
            call.finish(&result, |_| 0);
            result
        }
        .instrument(span)
        .await
    }

    async fn put(&self, path: &ObjectPath, mode: CommitMode) -> Result<Box<dyn ObjectWriter>> {
        // The upload's span lives until it is committed or aborted; every
        // call of the upload (this one included) is a span inside it.
        let upload = if self.watch.traced {
            tracing::debug_span!("upload", path = %path, mode = ?mode)
        } else {
            tracing::Span::none()
        };
        let started = upload.clone();
        let result = async {
            let span = self.watch.span(Operation::Put, path);
            async {
                let call = self.watch.start(Operation::Put, path);
                let result = self.inner.put(path, mode).await;
                call.finish(&result, |_| 0);
                result
            }
            .instrument(span)
            .await
        }
        .instrument(started)
        .await;
        Ok(Box::new(ObservedWriter {
            inner: result?,
            watch: Arc::clone(&self.watch),
            path: path.clone(),
            span: upload,
            written: 0,
        }))
    }

    async fn delete(&self, path: &ObjectPath) -> Result<()> {
        let span = self.watch.span(Operation::Delete, path);
        async {
            let call = self.watch.start(Operation::Delete, path);
            let result = self.inner.delete(path).await;
            call.finish(&result, |_| 0);
            result
        }
        .instrument(span)
        .await
    }

    async fn delete_dir(&self, path: &ObjectPath) -> Result<()> {
        let span = self.watch.span(Operation::DeleteDir, path);
        async {
            let call = self.watch.start(Operation::DeleteDir, path);
            let result = self.inner.delete_dir(path).await;
            call.finish(&result, |_| 0);
            result
        }
        .instrument(span)
        .await
    }
}

/// An upload through an [`ObservedTarget`]: each write, the commit and the
/// abort are observed calls inside the upload's span.
struct ObservedWriter {
    inner: Box<dyn ObjectWriter>,
    watch: Arc<Watch>,
    path: ObjectPath,
    span: tracing::Span,
    written: u64,
}

impl fmt::Debug for ObservedWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservedWriter")
            .field("inner", &self.inner)
            .field("path", &self.path)
            .field("written", &self.written)
            .finish()
    }
}

#[async_trait]
impl ObjectWriter for ObservedWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let len = chunk.len() as u64;
        let span = if self.watch.traced {
            tracing::trace_span!(parent: &self.span, "storage", op = Operation::Write.as_str())
        } else {
            tracing::Span::none()
        };
        let result = async {
            let call = self.watch.start(Operation::Write, &self.path);
            let result = self.inner.write(chunk).await;
            call.finish(&result, |_| len);
            result
        }
        .instrument(span)
        .await;
        if result.is_ok() {
            self.written += len;
        }
        result
    }

    async fn commit(self: Box<Self>) -> Result<ObjectMeta> {
        let ObservedWriter {
            inner,
            watch,
            path,
            span: upload,
            written,
        } = *self;
        let span = if watch.traced {
            tracing::debug_span!(parent: &upload, "storage", op = Operation::Commit.as_str())
        } else {
            tracing::Span::none()
        };
        async {
            if watch.traced {
                tracing::debug!(written, "committing upload");
            }
            let call = watch.start(Operation::Commit, &path);
            let result = inner.commit().await;
            call.finish(&result, |meta| meta.size);
            result
        }
        .instrument(span)
        .await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let ObservedWriter {
            inner,
            watch,
            path,
            span: upload,
            written,
        } = *self;
        let span = if watch.traced {
            tracing::debug_span!(parent: &upload, "storage", op = Operation::Abort.as_str())
        } else {
            tracing::Span::none()
        };
        async {
            if watch.traced {
                tracing::debug!(written, "discarding upload");
            }
            let call = watch.start(Operation::Abort, &path);
            let result = inner.abort().await;
            call.finish(&result, |_| 0);
            result
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{MemoryTarget, ReadTargetExt, StorageTargetExt};

    type Seen = Arc<Mutex<Vec<CallEvent>>>;

    fn observed() -> (ObservedTarget<dyn StorageTarget>, Seen) {
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        let inner: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
        let target = ObservedTarget::new(inner).with_observer(Arc::new(move |e: &CallEvent| {
            log.lock().unwrap().push(e.clone());
        }));
        (target, seen)
    }

    #[tokio::test]
    async fn every_call_of_an_upload_is_started_and_finished_with_its_bytes() {
        let (target, seen) = observed();
        let dir = ObjectPath::parse("a").unwrap();
        let path = dir.child("x").unwrap();
        target.create_dir_all(&dir).await.unwrap();
        let mut upload = target.put(&path, CommitMode::CreateNew).await.unwrap();
        upload.write(Bytes::from_static(b"hello ")).await.unwrap();
        upload.write(Bytes::from_static(b"world")).await.unwrap();
        upload.commit().await.unwrap();
        assert_eq!(
            target.read_all(&path).await.unwrap(),
            Bytes::from_static(b"hello world")
        );

        let seen = seen.lock().unwrap();
        let ops: Vec<(u64, Operation, bool)> = seen
            .iter()
            .map(|e| (e.id, e.operation, matches!(e.phase, CallPhase::Started)))
            .collect();
        use Operation::*;
        assert_eq!(
            ops,
            [
                (1, CreateDirAll, true),
                (1, CreateDirAll, false),
                (2, Put, true),
                (2, Put, false),
                (3, Write, true),
                (3, Write, false),
                (4, Write, true),
                (4, Write, false),
                (5, Commit, true),
                (5, Commit, false),
                (6, Head, true),
                (6, Head, false),
                (7, ReadRange, true),
                (7, ReadRange, false),
            ]
        );
        let bytes = |id: u64| {
            seen.iter()
                .find_map(|e| match e.phase {
                    CallPhase::Finished { bytes, .. } if e.id == id => Some(bytes),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!((bytes(3), bytes(4), bytes(5), bytes(7)), (6, 5, 11, 11));
        assert!(seen.iter().all(|e| e.path.as_str().starts_with('a')));
        assert_eq!(target.calls(), 7);
    }

    #[tokio::test]
    async fn a_call_dropped_before_it_ends_is_reported_finished() {
        // A local folder's reads wait for the blocking pool: the first poll
        // is pending (almost always; a few tries make sure).
        let dir = tempfile::tempdir().unwrap();
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        let inner: Arc<dyn StorageTarget> = Arc::new(crate::LocalTarget::new(dir.path()).unwrap());
        let target = ObservedTarget::new(inner).with_observer(Arc::new(move |e: &CallEvent| {
            log.lock().unwrap().push(e.clone());
        }));
        let path = ObjectPath::parse("x").unwrap();
        target
            .put_bytes(&path, Bytes::from_static(b"x"), CommitMode::CreateNew)
            .await
            .unwrap();
        let dropped = (0..100).find_map(|_| {
            let mut call = Box::pin(target.read_range(&path, 0..1));
            let waker = futures::task::noop_waker();
            let pending = call
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_pending();
            drop(call);
            pending.then(|| seen.lock().unwrap().iter().map(|e| e.id).max().unwrap())
        });
        let id = dropped.expect("a read that was still pending");
        let seen = seen.lock().unwrap();
        let phases: Vec<&CallPhase> = seen.iter().filter(|e| e.id == id).map(|e| &e.phase).collect();
        assert_eq!(phases.len(), 2, "{phases:?}");
        assert!(matches!(phases[0], CallPhase::Started));
        assert!(matches!(
            phases[1],
            CallPhase::Finished {
                bytes: 0,
                error: None,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn an_untraced_wrapper_still_tells_its_observer() {
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        let inner: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
        let target = ObservedTarget::new(inner)
            .traced(false)
            .with_observer(Arc::new(move |e: &CallEvent| log.lock().unwrap().push(e.clone())));
        target.capacity().await.unwrap();
        assert!(!target.watch.traced);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_failed_call_reports_its_class_and_the_error_reaches_the_caller() {
        let (target, seen) = observed();
        let missing = ObjectPath::parse("no/such").unwrap();
        let err = target.head(&missing).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathNotFound);
        let seen = seen.lock().unwrap();
        assert!(matches!(
            seen.last().unwrap().phase,
            CallPhase::Finished {
                error: Some(ErrorKind::PathNotFound),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_read_half_can_be_observed_and_helpers_go_through_the_wrapper() {
        let (target, seen) = observed();
        let dir = ObjectPath::parse("d").unwrap();
        target.create_dir_all(&dir).await.unwrap();
        target
            .put_bytes(
                &dir.child("m").unwrap(),
                Bytes::from_static(b"m"),
                CommitMode::CreateNew,
            )
            .await
            .unwrap();
        let read: Arc<dyn ReadTarget> = target.inner().clone();
        let reader = ObservedTarget::new(read);
        assert_eq!(reader.list_all(&dir).await.unwrap().len(), 1);
        assert_eq!(reader.calls(), 1);
        assert_eq!(format!("{reader}"), format!("{}", target.inner()));
        // put_bytes: put, write, commit.
        assert_eq!(seen.lock().unwrap().len(), 2 * 4);
    }
}
