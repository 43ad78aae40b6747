//! Streaming uploads: one thread per upload owns the open file; the async side
//! sends it chunks and waits (bounded) for each answer.

use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use ibs_storage::{CommitMode, ErrorKind, ObjectMeta, ObjectPath, ObjectWriter, Result, StorageError, partial_path};
use pavao::{SmbClient, SmbOpenOptions};

use crate::error::is_not_found;
use crate::target::{Inner, SmbTarget, stat_meta};

enum Cmd {
    Write(Bytes, oneshot::Sender<Result<()>>),
    Commit(oneshot::Sender<Result<ObjectMeta>>),
    Abort(oneshot::Sender<Result<()>>),
}

/// The piece the upload thread is sending in the background (after `write`
/// returned): its size and when it was handed to libsmbclient.
type InFlight = Arc<Mutex<Option<(usize, Instant)>>>;

/// An upload in progress (see [`SmbTarget::put`](ibs_storage::StorageTarget::put)).
pub(crate) struct SmbWriter {
    target: SmbTarget,
    path: ObjectPath,
    tx: Option<mpsc::Sender<Cmd>>,
    in_flight: InFlight,
}

impl std::fmt::Debug for SmbWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmbWriter({})", self.path)
    }
}

pub(crate) async fn start(target: &SmbTarget, path: &ObjectPath, mode: CommitMode) -> Result<Box<dyn ObjectWriter>> {
    let temp = partial_path(path)?;
    let (tx, rx) = mpsc::channel::<Cmd>();
    let (ready_tx, ready_rx) = oneshot::channel::<Result<()>>();
    let inner = Arc::clone(&target.inner);
    let (final_path, temp_path) = (path.clone(), temp.clone());
    let in_flight = InFlight::default();
    let sending = Arc::clone(&in_flight);
    std::thread::Builder::new()
        .name("ibs-smb-upload".into())
        .spawn(move || upload(&inner, &final_path, &temp_path, mode, &rx, ready_tx, &sending))
        .map_err(|e| {
            let detail = format!("cannot start the upload thread: {e}");
            StorageError::new(ErrorKind::Other, "cannot start upload", path.as_str(), detail).with_source(e)
        })?;
    let writer = SmbWriter {
        target: target.clone(),
        path: path.clone(),
        tx: Some(tx),
        in_flight,
    };
    writer.wait("cannot start upload", ready_rx).await?;
    Ok(Box::new(writer))
}

impl SmbWriter {
    async fn wait<T>(&self, what: &'static str, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        let config = &self.target.inner.config;
        match tokio::time::timeout(config.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(StorageError::new(
                ErrorKind::Other,
                what,
                self.path.as_str(),
                "upload thread ended",
            )),
            Err(_) => {
                // This call waited its bound; a piece sent before an earlier
                // call returned has been waiting longer: say so rather than
                // imply the bound was all the server had.
                let note = match self.in_flight.lock().ok().and_then(|g| *g) {
                    Some((bytes, since)) => format!(
                        "; a {bytes}-byte piece written before has had no answer for {:.1} s",
                        since.elapsed().as_secs_f64()
                    ),
                    None => String::new(),
                };
                Err(crate::error::timed_out(config, what, self.path.as_str(), &note))
            }
        }
    }

    fn send(&self, what: &'static str, cmd: Cmd) -> Result<()> {
        self.tx
            .as_ref()
            .ok_or_else(|| StorageError::new(ErrorKind::Other, what, self.path.as_str(), "upload already ended"))?
            .send(cmd)
            .map_err(|_| StorageError::new(ErrorKind::Other, what, self.path.as_str(), "upload thread ended"))
    }
}

#[async_trait]
impl ObjectWriter for SmbWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send("cannot write", Cmd::Write(chunk, tx))?;
        self.wait("cannot write", rx).await
    }

    async fn commit(mut self: Box<Self>) -> Result<ObjectMeta> {
        let (tx, rx) = oneshot::channel();
        self.send("cannot commit", Cmd::Commit(tx))?;
        let r = self.wait("cannot commit", rx).await;
        self.tx = None;
        r
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send("cannot abort", Cmd::Abort(tx))?;
        let r = self.wait("cannot abort", rx).await;
        self.tx = None;
        r
    }
}

/// The upload thread: opens the temporary file, writes in chunks of the
/// configured size (one write in flight while the caller prepares the next),
/// and commits by closing and renaming. Dropping the writer without commit
/// removes the temporary file.
fn upload(
    inner: &Inner,
    path: &ObjectPath,
    temp: &ObjectPath,
    mode: CommitMode,
    rx: &mpsc::Receiver<Cmd>,
    ready: oneshot::Sender<Result<()>>,
    in_flight: &Mutex<Option<(usize, Instant)>>,
) {
    let client = match inner.client() {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let temp_smb = inner.smb_path(temp);
    let opened = client.open_with(
        &temp_smb,
        SmbOpenOptions::default()
            .write(true)
            .create(true)
            .exclusive(true)
            .mode(0o644),
    );
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => {
            let _ = ready.send(Err(inner.error("cannot start upload", temp.as_str(), e)));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let chunk = inner.config.write_chunk;
    let mut buf = BytesMut::with_capacity(chunk);
    // The error of a write that was acknowledged to the caller before it ran.
    let mut failed: Option<StorageError> = None;
    // Whether a failure has been reported: every later write or commit fails.
    let mut broken = false;
    // A piece's failure says how long the piece had (libsmbclient's own
    // timeout may take longer than the limit it was given).
    let write_err = |e: std::io::Error, bytes: usize, since: Instant| {
        let note = format!(
            "; a {bytes}-byte piece written before had no answer for {:.1} s",
            since.elapsed().as_secs_f64()
        );
        inner.error_with("cannot write", temp.as_str(), pavao::SmbError::Io(e), &note)
    };
    loop {
        let Ok(cmd) = rx.recv() else {
            // Dropped without commit or abort: clean up.
            drop(file);
            let _ = client.unlink(&temp_smb);
            return;
        };
        match cmd {
            Cmd::Write(bytes, reply) => {
                // After a failed piece the upload is broken, but the thread
                // stays until the caller commits, aborts or drops it: its
                // abort then removes the temporary file within its own bound
                // (an abort that raced a thread that had already gone would
                // say "upload thread ended" and leave the file).
                if let Some(e) = failed.take() {
                    broken = true;
                    let _ = reply.send(Err(e));
                    continue;
                }
                if broken {
                    let _ = reply.send(Err(StorageError::new(
                        ErrorKind::Other,
                        "cannot write",
                        path.as_str(),
                        "an earlier write of this upload failed",
                    )
                    .with_retryable(false)));
                    continue;
                }
                buf.extend_from_slice(&bytes);
                if buf.len() < chunk {
                    let _ = reply.send(Ok(()));
                    continue;
                }
                let full = buf.split().freeze();
                let _ = reply.send(Ok(()));
                let since = Instant::now();
                set(in_flight, Some((full.len(), since)));
                if let Err(e) = file.write_all(&full) {
                    failed = Some(write_err(e, full.len(), since));
                }
                set(in_flight, None);
            }
            Cmd::Abort(reply) => {
                drop(file);
                let r = match client.unlink(&temp_smb) {
                    Ok(()) => Ok(()),
                    Err(e) => Err(inner.error("cannot abort upload", temp.as_str(), e)),
                };
                let _ = reply.send(r);
                return;
            }
            Cmd::Commit(reply) => {
                let mut result = match failed.take() {
                    Some(e) => Err(e),
                    None if broken => Err(StorageError::new(
                        ErrorKind::Other,
                        "cannot commit",
                        path.as_str(),
                        "an earlier write of this upload failed",
                    )
                    .with_retryable(false)),
                    None => {
                        let since = Instant::now();
                        file.write_all(&buf).map_err(|e| write_err(e, buf.len(), since))
                    }
                };
                drop(file); // close: the server has acknowledged every write
                if result.is_ok() {
                    result = finish(&client, inner, path, temp, &temp_smb, mode).map(|_| ());
                }
                let r = match result {
                    Ok(()) => stat_meta(&client, inner, path, "cannot commit"),
                    Err(e) => {
                        let _ = client.unlink(&temp_smb);
                        Err(e)
                    }
                };
                let _ = reply.send(r);
                return;
            }
        }
    }
}

fn set(in_flight: &Mutex<Option<(usize, Instant)>>, value: Option<(usize, Instant)>) {
    if let Ok(mut guard) = in_flight.lock() {
        *guard = value;
    }
}

fn finish(
    client: &SmbClient,
    inner: &Inner,
    path: &ObjectPath,
    temp: &ObjectPath,
    temp_smb: &str,
    mode: CommitMode,
) -> Result<()> {
    let final_smb = inner.smb_path(path);
    if mode == CommitMode::CreateNew {
        match client.stat(&final_smb) {
            Ok(_) => return Err(StorageError::already_exists("cannot commit", path.as_str())),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(inner.error("cannot commit", path.as_str(), e)),
        }
    }
    client
        .rename(temp_smb, final_smb.as_str())
        .map_err(|e| inner.error("cannot commit", temp.as_str(), e))
}
