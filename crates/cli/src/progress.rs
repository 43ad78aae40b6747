//! TEMPORARY (replaced by the tracing helper's module before commit).
#![allow(missing_docs, dead_code)]
use ibs_storage::StorageTarget;
use std::sync::Arc;
pub struct Progress;
impl Progress {
    pub fn for_stderr(_json: bool, _quiet: bool) -> Self {
        Progress
    }
    pub fn observe(&self, t: Arc<dyn StorageTarget>) -> Arc<dyn StorageTarget> {
        t
    }
    pub fn backup_fn(&self) -> ibs_archive::ProgressFn {
        Arc::new(|_| {})
    }
    pub fn verify_fn(&self) -> ibs_archive::ProgressFn {
        Arc::new(|_| {})
    }
    pub fn restore_options(&self, o: ibs_recovery::RestoreOptions) -> ibs_recovery::RestoreOptions {
        o
    }
    pub fn finish(&self) {}
}
pub fn init_logging(_v: u8) {}
