//! Reading an archive on a storage target through byte ranges.

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use ibs_archive::RangeRead;
use ibs_storage::{ObjectPath, ReadTarget};

/// One object on a storage target, readable by range. Storage errors travel
/// inside the `io::Error` (`get_ref()` downcasts to
/// [`StorageError`](ibs_storage::StorageError)) so their failure class survives.
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
    async fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }

    async fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range overflows"))?;
        let bytes = self
            .target
            .read_range(&self.path, offset..end)
            .await
            .map_err(io::Error::other)?;
        Ok(Vec::from(bytes))
    }
}
