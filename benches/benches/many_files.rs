//! Many small files end to end (issue #18): capture of a tree of 5 000 small
//! JSON/XML documents (`ibs_testkit::data::write_infra_tree`: 2.1 MB, mean
//! 420 B, 4.3× with zstd -3) into a local directory target, and restore of
//! that backup into a fresh folder. Source, target and restored trees live on tmpfs
//! (`/dev/shm`) when there is one, so the benches measure the CPU work and
//! the system calls, not the disk. Every iteration gets a fresh target /
//! restore folder (made in the untimed setup, removed after the timing).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ibs_controller::job::write_backup;
use ibs_controller::{BackupSource, DirectorySource, JobSpec};
use ibs_recovery::{Choice, Recovery, RestoreOptions};
use ibs_repository::InstanceLayout;
use ibs_storage::LocalTarget;
use ibs_testkit::data::write_infra_tree;
use ibs_testkit::keys;

const FILES: u64 = 5_000;
const T0: i64 = 1_763_769_600;

/// A temporary folder on tmpfs if the machine has one, else in the temp dir.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("ibs-bench-").tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

fn instance() -> InstanceLayout {
    InstanceLayout::new("azs.contoso.com", "local").unwrap()
}

fn spec(target: &Path, pair: &keys::KeyPair) -> JobSpec {
    JobSpec {
        target: Arc::new(LocalTarget::new(target).unwrap()),
        instance: instance(),
        certificates: vec![pair.cert.clone()],
        producer_version: "1.2408.0".into(),
        policy: Default::default(),
        checks: Default::default(),
        signer: None,
    }
}

fn many_files(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pair = keys::cached("bench", T0 - 86_400);
    let work = scratch();
    let src: PathBuf = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let bytes = write_infra_tree(&src, FILES, 18).unwrap();
    let sources: Vec<Arc<dyn BackupSource>> = vec![Arc::new(DirectorySource::new("state", &src))];

    let mut group = c.benchmark_group("many_small_files_5k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(bytes));

    group.bench_function("capture_to_local_dir", |b| {
        b.iter_batched(
            scratch,
            |target| {
                rt.block_on(write_backup(&spec(target.path(), pair), &sources, T0, None))
                    .unwrap();
                target // removed after the timing
            },
            BatchSize::PerIteration,
        )
    });

    let repo = work.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let spec = spec(&repo, pair);
    rt.block_on(write_backup(&spec, &sources, T0, None)).unwrap();
    let backup = rt
        .block_on(Recovery::new(spec.target.clone(), instance()).open_choice(&Choice::Newest, &[&pair.identity]))
        .unwrap();
    group.bench_function("restore_to_dir", |b| {
        b.iter_batched(
            || {
                let dir = scratch();
                let out = dir.path().join("out");
                (dir, out)
            },
            |(dir, out)| {
                let report = rt
                    .block_on(backup.restore_to(&out, &RestoreOptions::default()))
                    .unwrap();
                (dir, report) // removed after the timing
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, many_files);
criterion_main!(benches);
