//! Reading an archive on a storage target through byte ranges.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ibs_archive::RangeRead;
use ibs_storage::{ObjectPath, ReadTarget, StorageError};

/// One object on a storage target, readable by range. The reader hands a
/// failed read's [`StorageError`] back as it was
/// ([`ibs_archive::ReadError::Read`]), failure class and all.
#[derive(Clone, Debug)]
pub struct TargetObject {
    target: Arc<dyn ReadTarget>,
    path: ObjectPath,
    size: u64,
}

impl TargetObject {
    /// The object at `path`, of `size` bytes (from a listing or `head`).
    pub fn new(target: Arc<dyn ReadTarget>, path: ObjectPath, size: u64) -> Self {
        TargetObject { target, path, size }
    }

    /// Its path.
    pub fn path(&self) -> &ObjectPath {
        &self.path
    }
}

#[async_trait]
impl RangeRead for TargetObject {
    type Error = StorageError;

    async fn size(&self) -> Result<u64, StorageError> {
        Ok(self.size)
    }

    async fn read_range(&self, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.target.read_range(&self.path, range).await
    }
}
