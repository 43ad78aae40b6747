//! What the controller's test files share.

use async_trait::async_trait;
use ibs_controller::{BackupSource, EntryMeta, EntrySink};

/// A small in-memory source: its name, and (path, bytes) entries.
pub struct Fixed(pub &'static str, pub Vec<(&'static str, Vec<u8>)>);

#[async_trait]
impl BackupSource for Fixed {
    fn name(&self) -> &str {
        self.0
    }
    async fn capture(&self, sink: &mut dyn EntrySink) -> ibs_controller::Result<()> {
        for (path, data) in &self.1 {
            sink.begin(EntryMeta::new(self.0, *path)).await?;
            sink.write(data).await?;
            sink.end().await?;
        }
        Ok(())
    }
}
