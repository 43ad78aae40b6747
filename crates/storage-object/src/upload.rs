//! A streaming upload: buffered into parts, sent as a multipart upload with a
//! bounded number of parts in flight, or as one conditional `PUT` when it
//! fits in one part.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ibs_storage::{CommitMode, ErrorKind, ObjectMeta, ObjectPath, ObjectWriter, Result, StorageError};
use object_store::{MultipartUpload, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::task::JoinSet;

use crate::Inner;

pub(crate) struct Upload {
    inner: Arc<Inner>,
    path: ObjectPath,
    mode: CommitMode,
    buffer: Vec<Bytes>,
    buffered: usize,
    size: u64,
    multipart: Option<Box<dyn MultipartUpload>>,
    parts: JoinSet<object_store::Result<()>>,
    failed: bool,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("size", &self.size)
            .field("parts_in_flight", &self.parts.len())
            .finish()
    }
}

impl Upload {
    pub(crate) fn new(inner: Arc<Inner>, path: ObjectPath, mode: CommitMode) -> Self {
        Upload {
            inner,
            path,
            mode,
            buffer: Vec::new(),
            buffered: 0,
            size: 0,
            multipart: None,
            parts: JoinSet::new(),
            failed: false,
        }
    }

    fn take_buffer(&mut self) -> PutPayload {
        self.buffered = 0;
        std::mem::take(&mut self.buffer).into_iter().collect()
    }

    /// Waits for one part in flight; the first failure fails the upload.
    async fn join_one(&mut self) -> Result<()> {
        let inner = self.inner.clone();
        let next = inner
            .bounded("cannot upload", &self.path, async {
                match self.parts.join_next().await {
                    None => Ok(()),
                    Some(Ok(result)) => result,
                    Some(Err(join)) => Err(object_store::Error::JoinError { source: join }),
                }
            })
            .await;
        if next.is_err() {
            self.failed = true;
        }
        next
    }

    /// Sends the buffer as the next part, starting the multipart upload first.
    async fn send_part(&mut self) -> Result<()> {
        if self.multipart.is_none() {
            let inner = self.inner.clone();
            let key = inner.key(&self.path);
            let started = inner
                .bounded("cannot start upload", &self.path, inner.store.put_multipart(&key))
                .await;
            match started {
                Ok(upload) => self.multipart = Some(upload),
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        while self.parts.len() >= self.inner.options.parts_in_flight {
            self.join_one().await?;
        }
        let payload = self.take_buffer();
        if let Some(upload) = self.multipart.as_mut() {
            self.parts.spawn(upload.put_part(payload));
        }
        Ok(())
    }

    fn refuse_if_failed(&self) -> Result<()> {
        if self.failed {
            return Err(StorageError::new(
                ErrorKind::Other,
                "cannot upload",
                self.path.as_str(),
                "an earlier write of this upload failed",
            )
            .with_retryable(false));
        }
        Ok(())
    }

    async fn abort_multipart(&mut self) -> Result<()> {
        self.parts.abort_all();
        while self.parts.join_next().await.is_some() {}
        if let Some(mut upload) = self.multipart.take() {
            let inner = self.inner.clone();
            inner.bounded("cannot abort upload", &self.path, upload.abort()).await?;
        }
        Ok(())
    }

    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            path: self.path.clone(),
            size: self.size,
            modified: Some(SystemTime::now()),
            partial: false,
        }
    }
}

#[async_trait]
impl ObjectWriter for Upload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.refuse_if_failed()?;
        if chunk.is_empty() {
            return Ok(());
        }
        self.size += chunk.len() as u64;
        self.buffered += chunk.len();
        self.buffer.push(chunk);
        if self.buffered >= self.inner.options.part_size {
            self.send_part().await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<ObjectMeta> {
        self.refuse_if_failed()?;
        let inner = self.inner.clone();
        let key = inner.key(&self.path);
        if self.multipart.is_none() {
            // One PUT, conditional for CreateNew: atomic and never overwrites.
            let payload = self.take_buffer();
            let mode = match self.mode {
                CommitMode::CreateNew => PutMode::Create,
                CommitMode::Overwrite => PutMode::Overwrite,
            };
            let options = PutOptions {
                mode,
                ..PutOptions::default()
            };
            inner
                .bounded(
                    "cannot commit",
                    &self.path,
                    inner.store.put_opts(&key, payload, options),
                )
                .await?;
            return Ok(self.meta());
        }
        if self.buffered > 0 {
            self.send_part().await?;
        }
        while !self.parts.is_empty() {
            if let Err(e) = self.join_one().await {
                let _ = self.abort_multipart().await;
                return Err(e);
            }
        }
        if self.mode == CommitMode::CreateNew {
            // No conditional completion on every store: check right before.
            match inner.bounded("cannot commit", &self.path, inner.store.head(&key)).await {
                Ok(_) => {
                    let _ = self.abort_multipart().await;
                    return Err(StorageError::already_exists("cannot commit", self.path.as_str()));
                }
                Err(e) if e.kind() == ErrorKind::PathNotFound => {}
                Err(e) => {
                    let _ = self.abort_multipart().await;
                    return Err(e);
                }
            }
        }
        if let Some(mut upload) = self.multipart.take() {
            let done = inner.bounded("cannot commit", &self.path, upload.complete()).await;
            if let Err(e) = done {
                let _ = inner.bounded("cannot abort upload", &self.path, upload.abort()).await;
                return Err(e);
            }
        }
        Ok(self.meta())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.buffer.clear();
        self.abort_multipart().await
    }
}
