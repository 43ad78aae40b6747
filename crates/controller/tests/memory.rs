//! Memory flat in the number of entries (issue #21): a backup of 100 000 and
//! of 1 000 000 tiny entries is written, listed, verified and restored
//! through the library, and each phase's peak heap — measured by a counting
//! global allocator in this test binary, not by timing — stays under one
//! bound that does not depend on the count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use ibs_controller::job::write_backup;
use ibs_controller::{BackupSource, EntryMeta, EntrySink, JobSpec};
use ibs_recovery::{Choice, Recovery, RestoreOptions};
use ibs_repository::InstanceLayout;
use ibs_storage::{LocalTarget, StorageTarget};

#[global_allocator]
static HEAP: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// Runs `phase` and returns the peak heap above what was live when it started.
async fn peak_of<T>(phase: impl std::future::Future<Output = T>) -> (T, usize) {
    let base = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let out = phase.await;
    (out, HEAP.peak_usage().saturating_sub(base))
}

/// The bound every phase stays under, whatever the count: frames in flight
/// (1 MiB each, a few per worker), one index piece, buffers — not entries.
const BOUND: usize = 48 << 20;

/// `count` tiny entries, 1 000 per folder, each a few bytes.
struct Generated {
    count: usize,
}

#[async_trait]
impl BackupSource for Generated {
    fn name(&self) -> &str {
        "state"
    }
    async fn capture(&self, sink: &mut dyn EntrySink) -> ibs_controller::Result<()> {
        let folders = self.count.div_ceil(1000);
        let mut n = 0;
        for d in 0..folders {
            sink.begin(EntryMeta::new("state", format!("d{d:05}")).folder().mode(0o755))
                .await?;
            sink.end().await?;
            for f in 0..1000 {
                if n == self.count {
                    break;
                }
                sink.begin(
                    EntryMeta::new("state", format!("d{d:05}/f{f:04}.json"))
                        .mode(0o644)
                        .mtime_ns(1_700_000_000, 1),
                )
                .await?;
                if n % 2 == 0 {
                    sink.write(format!("{{\"n\":{n}}}").as_bytes()).await?;
                }
                sink.end().await?;
                n += 1;
            }
        }
        Ok(())
    }
}

/// A scratch folder on tmpfs when there is room (a million files created
/// and removed on a disk take minutes of I/O waits; the test measures
/// memory, not the disk), else in the default temporary folder.
fn scratch() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let roomy = rustix::fs::statvfs(shm).is_ok_and(|s| s.f_bavail * s.f_frsize > (4 << 30));
    if roomy {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

async fn phases(count: usize) -> [(&'static str, usize); 4] {
    let share = scratch();
    let target: Arc<dyn StorageTarget> = Arc::new(LocalTarget::new(share.path()).unwrap());
    let instance = InstanceLayout::new("azs.contoso.com", "local").unwrap();
    let pair = ibs_envelope::keygen::generate(
        &ibs_envelope::keygen::KeygenOptions::new("memory", 1_700_000_000),
        &ibs_envelope::Password::new("pw"),
    )
    .unwrap();
    let cert = ibs_envelope::Certificate::parse(&pair.cer).unwrap();
    let identity = ibs_envelope::Identity::from_pkcs12(&pair.pfx, &ibs_envelope::Password::new("pw")).unwrap();
    let spec = JobSpec {
        target: Arc::clone(&target),
        instance: instance.clone(),
        certificates: vec![cert],
        producer_version: "1.2408.0".into(),
        policy: ibs_retention::Policy::default(),
        checks: Default::default(),
        signer: None,
    };
    let sources: Vec<Arc<dyn BackupSource>> = vec![Arc::new(Generated { count })];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (summary, backup_peak) = peak_of(write_backup(&spec, &sources, now, None)).await;
    let summary = summary.unwrap();
    let folders = count.div_ceil(1000) as u64;
    assert_eq!(summary.entries, count as u64 + folders);

    let recovery = Recovery::new(target.clone(), instance);
    let backup = recovery.open_choice(&Choice::Newest, &[&identity]).await.unwrap();
    let (listed, list_peak) = peak_of(async {
        let mut n = 0u64;
        let mut entries = std::pin::pin!(backup.entries());
        while let Some(e) = entries.next().await {
            e.unwrap();
            n += 1;
        }
        n
    })
    .await;
    assert_eq!(listed, count as u64 + folders);
    let (report, verify_peak) = peak_of(backup.verify(None)).await;
    assert_eq!(report.unwrap().entries, count as u64 + folders);
    let out = scratch();
    let (restored, restore_peak) = peak_of(backup.restore_to(out.path(), &RestoreOptions::default())).await;
    let restored = restored.unwrap();
    assert_eq!((restored.files, restored.folders), (count as u64, folders));
    let last = out.path().join(format!(
        "state/d{:05}/f{:04}.json",
        (count - 1) / 1000,
        (count - 1) % 1000
    ));
    assert!(last.exists(), "{}", last.display());
    [
        ("backup", backup_peak),
        ("list", list_peak),
        ("verify", verify_peak),
        ("restore", restore_peak),
    ]
}

fn check(count: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let peaks = rt.block_on(phases(count));
    for (phase, peak) in peaks {
        // Printed for the crate docs' per-entry figures (run with --nocapture).
        println!(
            "{count} entries: {phase} peak heap {:.1} MiB",
            peak as f64 / (1 << 20) as f64
        );
        assert!(
            peak < BOUND,
            "{phase} of {count} entries peaked at {peak} bytes of heap, over the bound {BOUND}"
        );
    }
}

/// One test runs both counts in turn: the allocator's counters are global to
/// this binary, so two tests in parallel would see each other's memory.
#[test]
fn a_million_entries_back_up_list_verify_and_restore_in_memory_that_does_not_grow_with_the_count() {
    check(100_000);
    check(1_000_000);
}
