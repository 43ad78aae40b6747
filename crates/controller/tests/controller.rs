//! The controller: crash safety at every storage call, the single-job guard,
//! the maintenance gate, retention over simulated days, out of capacity, and
//! key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::Fixed;

use std::sync::Arc;

use async_trait::async_trait;
use ibs_controller::job::write_backup;
use ibs_controller::{
    Access, BackupSource, CaptureProblem, CaptureWarning, Controller, ControllerError, DirectorySource, EntrySink,
    JobOutcome, JobSpec, Settings, Trigger, Warnings, run_job,
};
use ibs_envelope::Certificate;
use ibs_recovery::{BackupState, Choice, Recovery};
use ibs_repository::InstanceLayout;
use ibs_retention::Policy;
use ibs_storage::{
    ErrorKind, FaultPlan, FaultyTarget, Location, MemoryTarget, ReadTarget, ReadTargetExt, StorageTarget,
};
use ibs_testkit::data::Xorshift64;
use ibs_testkit::keys::{self, KeyPair};

const T0: i64 = 1_763_769_600;
const HOUR: i64 = 3600;

fn pair(n: usize) -> &'static KeyPair {
    keys::cached(&format!("key {n}"), T0 - 86_400)
}

fn sources() -> Vec<Arc<dyn BackupSource>> {
    vec![
        Arc::new(Fixed("identity", vec![("users.json", br#"[{"upn":"a@b"}]"#.to_vec())])),
        Arc::new(Fixed(
            "key-vault",
            vec![("v.bin", ibs_testkit::data::multiplicative(300_000, 24))],
        )),
    ]
}

fn instance() -> InstanceLayout {
    InstanceLayout::new("azs.contoso.com", "local").unwrap()
}

fn spec(target: Arc<dyn StorageTarget>, cert: &Certificate) -> JobSpec {
    JobSpec {
        target,
        instance: instance(),
        certificates: vec![cert.clone()],
        producer_version: "1.2408.0".into(),
        policy: Policy::default(),
        checks: Default::default(),
        signer: None,
    }
}

/// Every complete backup opens and verifies; returns their count.
async fn complete_and_sound(target: &Arc<dyn StorageTarget>) -> usize {
    let r = Recovery::new(target.clone(), instance());
    let cat = r.catalogue().await.unwrap();
    let mut n = 0;
    for b in cat.complete() {
        let opened = r.open(b, &[&pair(0).identity, &pair(1).identity]).await.unwrap();
        opened.verify(None).await.unwrap();
        n += 1;
    }
    n
}

#[tokio::test]
async fn a_job_failing_at_any_storage_call_leaves_no_false_backup_and_no_damage() {
    // Count the storage calls of one backup.
    let probe = Arc::new(FaultyTarget::new(MemoryTarget::new(), FaultPlan::none()));
    let dyn_probe: Arc<dyn StorageTarget> = probe.clone();
    write_backup(&spec(Arc::clone(&dyn_probe), &pair(0).cert), &sources(), T0, None)
        .await
        .unwrap();
    let calls = probe.calls();
    assert!(calls >= 4, "{calls} calls");

    for n in 1..=calls + 1 {
        for kind in [ErrorKind::Connectivity, ErrorKind::OutOfCapacity] {
            let faulty = Arc::new(FaultyTarget::new(MemoryTarget::new(), FaultPlan::none()));
            let target: Arc<dyn StorageTarget> = faulty.clone();
            // An earlier, good backup.
            run_job(&spec(Arc::clone(&target), &pair(0).cert), &sources(), T0)
                .await
                .unwrap();
            faulty.rearm(FaultPlan::crash_at_call(n, kind));
            let result = write_backup(&spec(Arc::clone(&target), &pair(0).cert), &sources(), T0 + HOUR, None).await;
            faulty.rearm(FaultPlan::none());
            let complete = complete_and_sound(&target).await;
            match result {
                Ok(_) => assert_eq!(complete, 2, "call {n}: success must be complete"),
                // Committed, but the read-back that confirms it failed: a
                // true backup, reported as unconfirmed (never a false one).
                Err(e @ ControllerError::Unconfirmed { .. }) => {
                    assert_eq!(complete, 2, "call {n} ({kind:?}): {e}");
                    assert_eq!(e.kind(), kind, "call {n}: the failure keeps its class: {e}");
                }
                Err(e) => {
                    assert_eq!(complete, 1, "call {n} ({kind:?}): {e}");
                    assert_eq!(e.kind(), kind, "call {n}: the failure keeps its class: {e}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_second_job_is_refused_while_one_runs() {
    /// A source that waits until told to go on.
    struct Slow(Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>);
    #[async_trait]
    impl BackupSource for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        async fn capture(&self, sink: &mut dyn EntrySink) -> ibs_controller::Result<()> {
            self.0.notify_one();
            self.1.notified().await;
            sink.begin(ibs_controller::EntryMeta::new("slow", "x")).await?;
            sink.end().await
        }
    }
    let started = Arc::new(tokio::sync::Notify::new());
    let go = Arc::new(tokio::sync::Notify::new());
    let dir = tempfile::tempdir().unwrap();
    let controller = Arc::new(Controller::new(vec![Arc::new(Slow(
        Arc::clone(&started),
        Arc::clone(&go),
    ))]));
    controller.enable(settings(dir.path(), &pair(0).cert)).await.unwrap();
    let c2 = Arc::clone(&controller);
    assert!(controller.progress().is_none());
    let first = tokio::spawn(async move { c2.run(Trigger::OnDemand, T0).await });
    started.notified().await;
    // Running, with progress, and listed as running in the history.
    assert!(controller.progress().is_some());
    assert!(matches!(
        controller.history().last().unwrap().outcome,
        JobOutcome::Running
    ));
    let err = controller.run(Trigger::OnDemand, T0).await.unwrap_err();
    assert!(matches!(err, ControllerError::AlreadyRunning), "{err}");
    assert!(err.to_string().contains("already running"));
    let err = controller.run(Trigger::Scheduled, T0).await.unwrap_err();
    assert!(matches!(err, ControllerError::AlreadyRunning), "{err}");
    go.notify_one();
    let record = first.await.unwrap().unwrap();
    assert!(matches!(record.outcome, JobOutcome::Succeeded { .. }), "{record:?}");
    assert!(controller.progress().is_none());
    assert_eq!(controller.history().last(), Some(&record));
}

fn settings(dir: &std::path::Path, cert: &Certificate) -> Settings {
    Settings {
        location: Location::Local(dir.to_owned()),
        access: Access::Default,
        certificates: vec![cert.clone()],
        fqdn: "azs.contoso.com".into(),
        region: "local".into(),
        policy: Policy::default(),
        producer_version: "1.2408.0".into(),
        signer: None,
    }
}

#[tokio::test]
async fn a_maintenance_window_skips_scheduled_jobs_and_refuses_on_demand_ones() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::new(sources());
    controller.enable(settings(dir.path(), &pair(0).cert)).await.unwrap();
    controller.set_maintenance(true);
    let record = controller.run(Trigger::Scheduled, T0).await.unwrap();
    assert!(matches!(record.outcome, JobOutcome::Skipped { .. }), "{record:?}");
    let err = controller.run(Trigger::OnDemand, T0).await.unwrap_err();
    assert!(matches!(err, ControllerError::Maintenance));
    assert!(err.to_string().contains("maintenance window"));
    controller.set_maintenance(false);
    let record = controller.run(Trigger::OnDemand, T0).await.unwrap();
    assert!(matches!(record.outcome, JobOutcome::Succeeded { .. }), "{record:?}");
    let history = controller.history();
    assert_eq!(history.len(), 2);
    assert!(matches!(history[0].outcome, JobOutcome::Skipped { .. }));
}

#[tokio::test]
async fn retention_over_simulated_days_keeps_seven_days() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::new(sources());
    controller.enable(settings(dir.path(), &pair(0).cert)).await.unwrap();
    let mut now = T0;
    let mut ran = 0;
    for _ in 0..(14 * 24) {
        if controller.is_due(now) {
            let r = controller.run(Trigger::Scheduled, now).await.unwrap();
            assert!(matches!(r.outcome, JobOutcome::Succeeded { .. }), "{r:?}");
            ran += 1;
        }
        now += HOUR;
    }
    assert_eq!(ran, 28, "every 12 h for 14 days");
    let target: Arc<dyn StorageTarget> = Arc::new(ibs_storage::LocalTarget::new(dir.path()).unwrap());
    keeps_seven_days(&target, now, 12 * HOUR).await;
}

/// The default policy after 12-hourly backups: 14–15 complete backups, the
/// oldest at most seven days (plus `slack`) before `now`.
async fn keeps_seven_days(target: &Arc<dyn StorageTarget>, now: i64, slack: i64) -> ibs_recovery::Catalogue {
    let cat = Recovery::new(target.clone(), instance()).catalogue().await.unwrap();
    let oldest = cat.backups.first().unwrap().created;
    assert!(
        now - oldest <= 7 * 24 * HOUR + slack,
        "oldest kept is {} h old",
        (now - oldest) / HOUR
    );
    assert!(
        cat.backups.len() >= 14 && cat.backups.len() <= 15,
        "{} backups",
        cat.backups.len()
    );
    assert!(cat.backups.iter().all(|b| b.state == BackupState::Complete));
    cat
}

#[tokio::test]
async fn out_of_capacity_frees_the_oldest_and_retries_once() {
    // Room for about three backups.
    let probe = MemoryTarget::new();
    let probe_dyn: Arc<dyn StorageTarget> = Arc::new(probe);
    let one = write_backup(&spec(Arc::clone(&probe_dyn), &pair(0).cert), &sources(), T0, None)
        .await
        .unwrap();
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::with_capacity(one.archive_bytes * 3 + 4096));
    let spec = spec(Arc::clone(&target), &pair(0).cert);
    let mut ids = Vec::new();
    for i in 0..6 {
        let s = run_job(&spec, &sources(), T0 + i * HOUR).await.unwrap();
        ids.push(s.id);
    }
    let cat = Recovery::new(target.clone(), instance()).catalogue().await.unwrap();
    let kept: Vec<_> = cat.complete().map(|b| b.id.clone()).collect();
    assert!(kept.len() >= 2 && kept.len() <= 3, "{kept:?}");
    assert_eq!(kept.last(), ids.last(), "the newest backup is kept");
    assert!(!kept.contains(&ids[0]), "the oldest went first");
    // A target too small for even one backup fails with the capacity alert.
    let tiny: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::with_capacity(one.archive_bytes / 2));
    let err = run_job(&self::spec(tiny, &pair(0).cert), &sources(), T0)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfCapacity, "{err}");
    assert_eq!(err.alert().kind, ErrorKind::OutOfCapacity);
}

#[tokio::test]
async fn changing_the_certificate_affects_only_new_backups() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("sub")).unwrap();
    std::fs::write(data.path().join("sub/a.json"), b"{\"a\":1}").unwrap();
    let controller = Controller::new(vec![Arc::new(DirectorySource::new("rbac", data.path()))]);
    controller.enable(settings(dir.path(), &pair(0).cert)).await.unwrap();
    controller.run(Trigger::OnDemand, T0).await.unwrap();
    controller.enable(settings(dir.path(), &pair(1).cert)).await.unwrap();
    controller.run(Trigger::OnDemand, T0 + HOUR).await.unwrap();
    let target: Arc<dyn StorageTarget> = Arc::new(ibs_storage::LocalTarget::new(dir.path()).unwrap());
    let r = Recovery::new(target, instance());
    let cat = r.catalogue().await.unwrap();
    assert_eq!(cat.backups[0].recipients, vec![pair(0).cert.thumbprint()]);
    assert_eq!(cat.backups[1].recipients, vec![pair(1).cert.thumbprint()]);
    let newest = r.open_choice(&Choice::Newest, &[&pair(1).identity]).await.unwrap();
    assert_eq!(
        newest
            .read(&newest.find("rbac", "sub/a.json").await.unwrap().unwrap())
            .await
            .unwrap(),
        b"{\"a\":1}"
    );
    assert!(r.open(&cat.backups[0], &[&pair(1).identity]).await.is_err());
    // Settings never show credentials.
    let s = controller.settings().unwrap();
    assert!(!format!("{s:?}").contains("password"));
}

#[tokio::test]
async fn enabling_validates_the_location() {
    let controller = Controller::new(sources());
    let file = tempfile::NamedTempFile::new().unwrap();
    // A location that is a file, not a folder.
    let err = controller
        .enable(settings(&file.path().join("sub"), &pair(0).cert))
        .await
        .unwrap_err();
    assert!(controller.settings().is_none(), "{err}");
    let err = controller.run(Trigger::OnDemand, T0).await.unwrap_err();
    assert!(matches!(err, ControllerError::NotEnabled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changing_during_capture_is_captured_whole_or_reported() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("assignments.json");
    // Each version is internally consistent: "vN;" repeated, a different length each time.
    let version = |n: u32| format!("v{n};").repeat(1000 + (n as usize % 7) * 500);
    std::fs::write(&file, version(0)).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (file, stop) = (file.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 200_000 {
                std::fs::write(&file, version(n)).unwrap();
                n += 1;
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let target: Arc<dyn StorageTarget> = Arc::new(ibs_storage::LocalTarget::new(dir.path()).unwrap());
    let mut reported = std::collections::HashSet::new();
    for i in 0..20 {
        let source: Arc<dyn BackupSource> = Arc::new(DirectorySource::new("rbac", data.path()));
        // A live file never fails the backup.
        let s = write_backup(&spec(Arc::clone(&target), &pair(0).cert), &[source], T0 + i, None)
            .await
            .unwrap();
        if !s.warnings.is_empty() {
            assert_eq!(s.warnings.kept()[0].problem, CaptureProblem::ChangedDuringCapture);
            assert_eq!(s.warnings.kept()[0].path, file.display().to_string());
            reported.insert(s.id);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    // Whatever was captured without a warning is one whole version, never a mix of two.
    let r = Recovery::new(target.clone(), instance());
    let cat = r.catalogue().await.unwrap();
    assert_eq!(cat.complete().count(), 20);
    for b in cat.complete().filter(|b| !reported.contains(&b.id)) {
        let opened = r.open(b, &[&pair(0).identity]).await.unwrap();
        let first = {
            use futures::TryStreamExt;
            let all: Vec<_> = opened.entries().try_collect().await.unwrap();
            all.into_iter().find(|e| e.is_file()).unwrap()
        };
        let got = String::from_utf8(opened.read(&first).await.unwrap()).unwrap();
        let first = got.split(';').next().unwrap().to_owned();
        assert!(
            got.split(';').filter(|s| !s.is_empty()).all(|s| s == first),
            "torn capture without a warning"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_azure_blob_with_unknown_capacity_keeps_seven_days() {
    use ibs_storage_object::ObjectOptions;
    use ibs_testkit::azurite::{Azurite, AzuriteOptions};
    let azurite = Azurite::start(AzuriteOptions::default()).unwrap();
    azurite.create_container("backups").await.unwrap();
    let target: Arc<dyn StorageTarget> = Arc::new(azurite.target("backups", "lab", ObjectOptions::default()));
    assert_eq!(target.capacity().await.unwrap().free_bytes, None);
    let spec = spec(Arc::clone(&target), &pair(0).cert);
    // Every 12 h for 10 days with the default 7-day policy.
    for i in 0..20 {
        run_job(&spec, &sources(), T0 + i * 12 * HOUR).await.unwrap();
    }
    let now = T0 + 19 * 12 * HOUR;
    let cat = keeps_seven_days(&target, now, 0).await;
    assert_eq!(complete_and_sound(&target).await, cat.backups.len());
    assert!(cat.unrecognised.is_empty(), "{:?}", cat.unrecognised);
    // The retention property, with other tools' objects under the prefix.
    let one = complete_sizes(&target).await;
    for seed in 200..203 {
        let prefix = format!("case{seed}");
        let case: Arc<dyn StorageTarget> = Arc::new(azurite.target("backups", &prefix, ObjectOptions::default()));
        retention_case(&case, seed, one).await;
    }
}

async fn complete_sizes(target: &Arc<dyn StorageTarget>) -> u64 {
    let cat = Recovery::new(target.clone(), instance()).catalogue().await.unwrap();
    cat.complete().map(|b| b.size).max().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_smb_deletes_only_what_it_wrote_and_keeps_an_intact_backup() {
    use ibs_storage_smb::SmbTarget;
    use ibs_testkit::samba::{SambaOptions, SambaServer};
    let server = SambaServer::start(SambaOptions::default()).unwrap();
    let probe: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let one = write_backup(&spec(probe, &pair(0).cert), &sources(), T0, None)
        .await
        .unwrap()
        .archive_bytes;
    for seed in 300..303 {
        let folder = ibs_storage::ObjectPath::root().child(&format!("case{seed}")).unwrap();
        std::fs::create_dir(server.share_dir().join(folder.as_str())).unwrap();
        let target: Arc<dyn StorageTarget> = Arc::new(SmbTarget::new(server.config().base(folder)).unwrap());
        retention_case(&target, seed, one).await;
    }
}

// ---- Live capture (issue #16, items 10–12) ----

/// A sink that changes the source's folder the first time an entry begins:
/// the root folder is listed by then (its subfolders not yet read) and only
/// the first few files are read ahead, so what `race` does to later files
/// happens between their listing and their read, every time.
struct RaceSink<'a> {
    inner: &'a mut dyn EntrySink,
    race: Option<Box<dyn FnOnce() + Send>>,
}

#[async_trait]
impl EntrySink for RaceSink<'_> {
    async fn begin(&mut self, entry: ibs_controller::EntryMeta) -> ibs_controller::Result<()> {
        if let Some(race) = self.race.take() {
            race();
        }
        self.inner.begin(entry).await
    }
    async fn write(&mut self, data: &[u8]) -> ibs_controller::Result<()> {
        self.inner.write(data).await
    }
    async fn end(&mut self) -> ibs_controller::Result<()> {
        self.inner.end().await
    }
    fn warn(&mut self, warning: CaptureWarning) {
        self.inner.warn(warning);
    }
}

/// A [`DirectorySource`] whose folder changes under it once the capture has
/// listed it (see [`RaceSink`]).
struct Racing {
    inner: DirectorySource,
    race: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Racing {
    fn source(inner: DirectorySource, race: impl FnOnce() + Send + 'static) -> Arc<dyn BackupSource> {
        Arc::new(Racing {
            inner,
            race: std::sync::Mutex::new(Some(Box::new(race))),
        })
    }
}

#[async_trait]
impl BackupSource for Racing {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn capture(&self, sink: &mut dyn EntrySink) -> ibs_controller::Result<()> {
        let race = self.race.lock().unwrap().take();
        let mut sink = RaceSink { inner: sink, race };
        self.inner.capture(&mut sink).await
    }
}

/// Five files `e0`..`e4` of 4 MiB, then 40 small files `f00`..`f39` and a
/// folder `z` with two more, listed last. The capture reads at most 16 MiB
/// of file data ahead of the archive, so when the first entry reaches the
/// sink (where [`RaceSink`] races) the reader is still among the `e` files.
fn live_folder() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(data.path().join(format!("e{i}")), vec![b'e'; 4 << 20]).unwrap();
    }
    for i in 0..40 {
        std::fs::write(data.path().join(format!("f{i:02}")), format!("file {i}")).unwrap();
    }
    std::fs::create_dir(data.path().join("z")).unwrap();
    std::fs::write(data.path().join("z/a"), b"a").unwrap();
    std::fs::write(data.path().join("z/b"), b"b").unwrap();
    data
}

#[tokio::test]
async fn a_file_deleted_between_walk_and_read_is_skipped_with_a_warning() {
    let data = live_folder();
    let (gone_file, gone_folder) = (data.path().join("f39"), data.path().join("z"));
    let source = {
        let (f, d) = (gone_file.clone(), gone_folder.clone());
        Racing::source(DirectorySource::new("rbac", data.path()), move || {
            std::fs::remove_file(f).unwrap();
            std::fs::remove_dir_all(d).unwrap();
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path(), &pair(0).cert);
    settings.policy = Policy::default();
    let controller = Controller::new(vec![source]);
    controller.enable(settings).await.unwrap();
    let record = controller.run(Trigger::OnDemand, T0).await.unwrap();
    let JobOutcome::SucceededWithWarnings { summary, .. } = &record.outcome else {
        panic!("{record:?}")
    };
    assert!(record.outcome.is_success());
    assert_eq!(summary.entries, 5 + 39);
    let gone: Vec<(&str, CaptureProblem)> = summary
        .warnings
        .kept()
        .iter()
        .map(|w| (w.path.as_str(), w.problem))
        .collect();
    // The file was listed before it went; the folder `z` was not read yet
    // (the walk streams), so it is the folder that vanished.
    let (f, z) = (gone_file.display().to_string(), gone_folder.display().to_string());
    assert_eq!(
        gone,
        [
            (f.as_str(), CaptureProblem::Vanished),
            (z.as_str(), CaptureProblem::Vanished)
        ]
    );
    assert!(summary.warnings.kept().iter().all(|w| w.source == "rbac"));
    assert!(
        summary.warnings.kept()[0]
            .to_string()
            .starts_with(&format!("source rbac: {f}: vanished"))
    );
    // The backup is complete and holds the rest.
    let target: Arc<dyn StorageTarget> = Arc::new(ibs_storage::LocalTarget::new(dir.path()).unwrap());
    let backup = Recovery::new(target, instance())
        .open_choice(&Choice::Newest, &[&pair(0).identity])
        .await
        .unwrap();
    assert_eq!(
        backup
            .read(&backup.find("rbac", "f38").await.unwrap().unwrap())
            .await
            .unwrap(),
        b"file 38"
    );
    assert!(backup.find("rbac", "f39").await.unwrap().is_none());
}

#[tokio::test]
async fn strict_mode_fails_the_source_instead() {
    let data = live_folder();
    let gone = data.path().join("f39");
    let source = {
        let gone = gone.clone();
        Racing::source(DirectorySource::new("rbac", data.path()).strict(true), move || {
            std::fs::remove_file(gone).unwrap();
        })
    };
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let err = run_job(&spec(Arc::clone(&target), &pair(0).cert), &[source], T0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ControllerError::Source { source_name, path, .. } if source_name == "rbac" && *path == gone),
        "{err:?}"
    );
    assert!(err.to_string().contains("vanished"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Other);
    assert_eq!(complete_and_sound(&target).await, 0);
}

/// Appends a numbered line to `path` every 2 ms until dropped.
struct Appender {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Appender {
    fn start(path: &std::path::Path) -> Self {
        use std::io::Write;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    writeln!(log, "line {n} of the log").unwrap();
                    n += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
        };
        Appender {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_appended_during_capture_is_captured_as_a_prefix_with_a_warning() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("config.json"), b"{}").unwrap();
    let log = data.path().join("app.log");
    let appender = Appender::start(&log);
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let mut warned = Vec::new();
    // A writer stalled for a whole racy window on a busy machine could make
    // one capture look settled; the warning must show up in some of five.
    for i in 0..5 {
        let source: Arc<dyn BackupSource> = Arc::new(DirectorySource::new("logs", data.path()));
        let s = run_job(&spec(Arc::clone(&target), &pair(0).cert), &[source], T0 + i)
            .await
            .unwrap();
        assert_eq!(s.entries, 2);
        for w in s.warnings.kept() {
            assert_eq!(
                (w.source.as_str(), w.path.as_str(), w.problem),
                (
                    "logs",
                    log.display().to_string().as_str(),
                    CaptureProblem::ChangedDuringCapture
                )
            );
            assert!(w.to_string().contains("changed during capture"), "{w}");
            warned.push(s.id.clone());
        }
    }
    drop(appender);
    assert!(!warned.is_empty(), "no capture reported the log as changing");
    let written = std::fs::read(&log).unwrap();
    let r = Recovery::new(target.clone(), instance());
    for b in r.catalogue().await.unwrap().complete() {
        let opened = r.open(b, &[&pair(0).identity]).await.unwrap();
        let got = opened
            .read(&opened.find("logs", "app.log").await.unwrap().unwrap())
            .await
            .unwrap();
        assert!(!got.is_empty() && written.starts_with(&got), "not a prefix of the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_fails_on_a_file_that_keeps_changing() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("app.log");
    let _appender = Appender::start(&log);
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let mut failures = 0;
    for i in 0..3 {
        let source: Arc<dyn BackupSource> = Arc::new(DirectorySource::new("logs", data.path()).strict(true));
        if let Err(e) = run_job(&spec(Arc::clone(&target), &pair(0).cert), &[source], T0 + i).await {
            assert!(e.to_string().contains("kept changing"), "{e}");
            assert!(e.to_string().contains(&log.display().to_string()), "{e}");
            failures += 1;
        }
    }
    assert!(failures > 0);
}

#[tokio::test]
async fn excludes_leave_out_files_and_folders() {
    let data = tempfile::tempdir().unwrap();
    for d in ["cache", "svc/cache", "svc/conf"] {
        std::fs::create_dir_all(data.path().join(d)).unwrap();
    }
    for f in [
        "a.json",
        "a.tmp",
        "cache/x",
        "svc/cache/y",
        "svc/conf/c.json",
        "svc/conf/c.tmp",
    ] {
        std::fs::write(data.path().join(f), f).unwrap();
    }
    let source = DirectorySource::new("rbac", data.path())
        .exclude("**/*.tmp")
        .unwrap()
        .exclude("cache/")
        .unwrap();
    assert_eq!(source.excludes(), ["**/*.tmp", "cache/"]);
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let s = run_job(&spec(Arc::clone(&target), &pair(0).cert), &[Arc::new(source)], T0)
        .await
        .unwrap();
    assert!(s.warnings.is_empty());
    let backup = Recovery::new(target, instance())
        .open_choice(&Choice::Newest, &[&pair(0).identity])
        .await
        .unwrap();
    let mut paths: Vec<String> = {
        use futures::TryStreamExt;
        let all: Vec<_> = backup.entries().try_collect().await.unwrap();
        all.into_iter()
            .filter(|e| e.is_file())
            .map(|e| e.path.to_string())
            .collect()
    };
    paths.sort();
    assert_eq!(paths, ["a.json", "svc/conf/c.json"]);
    let err = DirectorySource::new("rbac", data.path())
        .exclude("!a.json")
        .unwrap_err();
    assert!(
        matches!(err, ControllerError::InvalidSetting { setting: "exclude", .. }),
        "{err}"
    );
}

#[test]
fn warnings_are_bounded() {
    let mut w = Warnings::default();
    for i in 0..1000 {
        w.push(CaptureWarning {
            source: "logs".into(),
            path: format!("/var/log/{i}"),
            problem: CaptureProblem::ChangedDuringCapture,
        });
    }
    assert_eq!(w.kept().len(), Warnings::KEPT);
    assert_eq!(w.total(), 1000);
    assert_eq!(w.not_kept(), 1000 - Warnings::KEPT as u64);
    assert_eq!(w.kept()[0].path, "/var/log/0");
}

/// The alert must talk about the source, never the storage location, and name the source and the path.
fn assert_source_alert(err: &ControllerError, source: &str, path: &std::path::Path) {
    assert_eq!(err.kind(), ErrorKind::Other, "{err}");
    let alert = err.alert();
    assert_eq!(alert.kind, ErrorKind::Other);
    let text = format!("{}\n{}\n{}", alert.title, alert.description, alert.remediation);
    assert!(!text.contains("storage location"), "{text}");
    assert!(alert.title.contains(source), "{text}");
    assert!(alert.description.contains(&path.display().to_string()), "{text}");
    assert!(alert.remediation.contains(&path.display().to_string()), "{text}");
    assert!(err.to_string().contains(source) && err.to_string().contains(&path.display().to_string()));
}

#[tokio::test]
async fn a_source_that_cannot_be_read_is_a_source_fault_not_a_storage_fault() {
    let data = live_folder();
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let spec = spec(Arc::clone(&target), &pair(0).cert);
    // A root that does not exist, and one that is a file.
    for root in [data.path().join("missing"), data.path().join("f00")] {
        let source: Arc<dyn BackupSource> = Arc::new(DirectorySource::new("ca", &root));
        let err = run_job(&spec, &[source], T0).await.unwrap_err();
        assert!(matches!(err, ControllerError::Source { .. }), "{err:?}");
        assert_source_alert(&err, "ca", &root);
    }
    // A file replaced by a folder between the walk and its read: unreadable even for root.
    let replaced = data.path().join("f39");
    let source = {
        let replaced = replaced.clone();
        Racing::source(DirectorySource::new("ca", data.path()), move || {
            std::fs::remove_file(&replaced).unwrap();
            std::fs::create_dir(&replaced).unwrap();
        })
    };
    let err = run_job(&spec, &[source], T0).await.unwrap_err();
    assert_source_alert(&err, "ca", &replaced);
    assert!(err.to_string().contains("now a folder"), "{err}");
    // The file is opened without a stat by path first: one replaced by a
    // link is not followed, and one replaced by a FIFO is not waited on.
    for (what, expected) in [("link", "now a symbolic link"), ("fifo", "now a FIFO")] {
        let data = live_folder();
        let replaced = data.path().join("f39");
        let source = {
            let replaced = replaced.clone();
            Racing::source(DirectorySource::new("ca", data.path()), move || {
                std::fs::remove_file(&replaced).unwrap();
                if what == "link" {
                    std::os::unix::fs::symlink("f00", &replaced).unwrap();
                } else {
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &replaced,
                        rustix::fs::FileType::Fifo,
                        rustix::fs::Mode::from_raw_mode(0o600),
                        0,
                    )
                    .unwrap();
                }
            })
        };
        let err = tokio::time::timeout(std::time::Duration::from_secs(60), run_job(&spec, &[source], T0))
            .await
            .expect("the capture waited on a FIFO")
            .unwrap_err();
        assert_source_alert(&err, "ca", &replaced);
        assert!(err.to_string().contains(expected), "{what}: {err}");
    }
    // The job record carries the same alert.
    let dir = tempfile::tempdir().unwrap();
    let missing = data.path().join("missing");
    let controller = Controller::new(vec![Arc::new(DirectorySource::new("ca", &missing))]);
    controller.enable(settings(dir.path(), &pair(0).cert)).await.unwrap();
    let record = controller.run(Trigger::OnDemand, T0).await.unwrap();
    let JobOutcome::Failed { kind, alert, error } = &record.outcome else {
        panic!("{record:?}")
    };
    assert_eq!(*kind, ErrorKind::Other);
    assert!(!alert.description.contains("storage location"), "{alert:?}");
    assert!(error.contains(&missing.display().to_string()), "{error}");
    assert_eq!(complete_and_sound(&target).await, 0);
}

#[tokio::test]
async fn a_local_location_inside_a_source_is_left_out_and_a_source_inside_the_backups_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("state.json"), b"{}").unwrap();
    let location = root.path().join("backups");
    std::fs::create_dir(&location).unwrap();
    let settings = settings(&location, &pair(0).cert);
    let source = settings
        .prepare_source(DirectorySource::new("var", root.path()))
        .unwrap();
    let controller = Controller::new(vec![Arc::new(source)]);
    controller.enable(settings.clone()).await.unwrap();
    for i in 0..3 {
        let r = controller.run(Trigger::OnDemand, T0 + i * HOUR).await.unwrap();
        let JobOutcome::Succeeded { summary, .. } = &r.outcome else {
            panic!("{r:?}")
        };
        // state.json and the folders on the way to MASBackup: never the earlier backups.
        assert_eq!(summary.entries, 4, "{r:?}");
    }
    // A source inside the location's backup folder is refused.
    let inside = location.join("azs.contoso.com/local/MASBackup");
    let err = settings
        .prepare_source(DirectorySource::new("oops", &inside))
        .unwrap_err();
    assert!(
        matches!(err, ControllerError::InvalidSetting { setting: "source", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("inside the backup folder"), "{err}");
}

// ---- trust: the backup retention keeps must be intact; "complete" must list as complete ----

/// A target that changes what is put through it, when armed: flips one byte
/// in the middle of the next archive upload (damage on the share that the
/// manifest, header and footer do not show), or replaces the next manifest.
#[derive(Debug)]
struct Tamper {
    inner: MemoryTarget,
    mode: std::sync::Mutex<Option<&'static str>>,
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tamper({})", self.inner)
    }
}

#[derive(Debug)]
struct TamperWriter {
    inner: Box<dyn ibs_storage::ObjectWriter>,
    buffered: Vec<u8>,
    mode: &'static str,
}

#[async_trait]
impl ibs_storage::ObjectWriter for TamperWriter {
    async fn write(&mut self, chunk: bytes::Bytes) -> ibs_storage::Result<()> {
        self.buffered.extend_from_slice(&chunk);
        Ok(())
    }
    async fn commit(mut self: Box<Self>) -> ibs_storage::Result<ibs_storage::ObjectMeta> {
        let mut data = std::mem::take(&mut self.buffered);
        match self.mode {
            "rot" => {
                let mid = data.len() / 2;
                data[mid] ^= 0x10;
            }
            _ => data = b"ibs-backup-manifest 1\nid: garbled\n".to_vec(),
        }
        self.inner.write(data.into()).await?;
        self.inner.commit().await
    }
    async fn abort(self: Box<Self>) -> ibs_storage::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ReadTarget for Tamper {
    async fn read_range(
        &self,
        path: &ibs_storage::ObjectPath,
        range: std::ops::Range<u64>,
    ) -> ibs_storage::Result<bytes::Bytes> {
        self.inner.read_range(path, range).await
    }
    async fn head(&self, path: &ibs_storage::ObjectPath) -> ibs_storage::Result<ibs_storage::ObjectMeta> {
        self.inner.head(path).await
    }
    async fn list(
        &self,
        prefix: &ibs_storage::ObjectPath,
    ) -> ibs_storage::Result<futures::stream::BoxStream<'static, ibs_storage::Result<ibs_storage::ObjectMeta>>> {
        self.inner.list(prefix).await
    }
    async fn capacity(&self) -> ibs_storage::Result<ibs_storage::Capacity> {
        self.inner.capacity().await
    }
}

#[async_trait]
impl StorageTarget for Tamper {
    async fn create_dir_all(&self, path: &ibs_storage::ObjectPath) -> ibs_storage::Result<()> {
        self.inner.create_dir_all(path).await
    }
    async fn put(
        &self,
        path: &ibs_storage::ObjectPath,
        mode: ibs_storage::CommitMode,
    ) -> ibs_storage::Result<Box<dyn ibs_storage::ObjectWriter>> {
        let writer = self.inner.put(path, mode).await?;
        let armed = {
            let mut m = self.mode.lock().unwrap();
            let hit = match *m {
                Some("rot") => path.name() == Some("backup.ibs"),
                Some(_) => path.name() == Some("backup.manifest"),
                None => false,
            };
            if hit { m.take() } else { None }
        };
        Ok(match armed {
            Some(mode) => Box::new(TamperWriter {
                inner: writer,
                buffered: Vec::new(),
                mode,
            }),
            None => writer,
        })
    }
    async fn delete(&self, path: &ibs_storage::ObjectPath) -> ibs_storage::Result<()> {
        self.inner.delete(path).await
    }
    async fn delete_dir(&self, path: &ibs_storage::ObjectPath) -> ibs_storage::Result<()> {
        self.inner.delete_dir(path).await
    }
}

fn tamper(inner: MemoryTarget) -> (Arc<Tamper>, Arc<dyn StorageTarget>) {
    let t = Arc::new(Tamper {
        inner,
        mode: std::sync::Mutex::new(None),
    });
    let d: Arc<dyn StorageTarget> = t.clone();
    (t, d)
}

#[tokio::test]
async fn freeing_space_never_deletes_the_newest_intact_backup_for_a_damaged_newer_one() {
    let probe: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let one = write_backup(&spec(probe, &pair(0).cert), &sources(), T0, None)
        .await
        .unwrap();
    // Room for two backups and a half: after the second, retention frees space for a third.
    let (t, target) = tamper(MemoryTarget::with_capacity(one.archive_bytes * 5 / 2 + 4096));
    let spec = spec(Arc::clone(&target), &pair(0).cert);
    let first = run_job(&spec, &sources(), T0).await.unwrap();
    // The second backup is damaged on its way to the share (the manifest
    // records what was sent): it still lists as complete.
    *t.mode.lock().unwrap() = Some("rot");
    let second = run_job(&spec, &sources(), T0 + 2).await.unwrap();
    let found: Vec<&str> = second.damaged.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(found, [second.id.as_str()], "{second:?}");
    assert!(second.damaged[0].alert().title.contains(second.id.as_str()));
    assert_eq!(second.damaged[0].alert().kind, ErrorKind::Other);
    // The 2-second-old first backup is the newest intact one: it stays; the
    // damaged one is what goes to make room, and the record says why.
    let deleted: Vec<(&str, ibs_retention::Reason)> =
        second.deleted.iter().map(|d| (d.id.as_str(), d.reason)).collect();
    assert_eq!(deleted, [(second.id.as_str(), ibs_retention::Reason::FreeSpace)]);
    let cat = Recovery::new(target.clone(), instance()).catalogue().await.unwrap();
    let kept: Vec<_> = cat.complete().map(|b| b.id.clone()).collect();
    assert_eq!(kept, std::slice::from_ref(&first.id));
    assert_eq!(complete_and_sound(&target).await, 1);
}

#[tokio::test]
async fn a_job_whose_committed_backup_would_not_list_as_complete_fails() {
    let (t, target) = tamper(MemoryTarget::new());
    *t.mode.lock().unwrap() = Some("manifest");
    let err = run_job(&spec(Arc::clone(&target), &pair(0).cert), &sources(), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, ControllerError::NotComplete { .. }), "{err}");
    assert!(err.to_string().contains("damaged"), "{err}");
    // What `list` shows agrees with the failure: nothing complete.
    assert_eq!(complete_and_sound(&target).await, 0);
}

#[tokio::test]
async fn backups_of_the_same_second_order_by_creation() {
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let spec = spec(Arc::clone(&target), &pair(0).cert);
    let mut made = Vec::new();
    for _ in 0..6 {
        made.push(write_backup(&spec, &sources(), T0, None).await.unwrap().id);
    }
    let r = Recovery::new(target.clone(), instance());
    let cat = r.catalogue().await.unwrap();
    let listed: Vec<_> = cat.backups.iter().map(|b| b.id.clone()).collect();
    assert_eq!(listed, made, "the catalogue's order is the order they were made in");
    assert_eq!(r.choose(&cat, &Choice::Newest).unwrap().id, made[5]);
}

#[tokio::test]
async fn retention_reads_the_newest_backup_once_and_remembers_it() {
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let spec = spec(Arc::clone(&target), &pair(0).cert);
    let day = 86_400;
    // Nothing expires for a week: no backup is read back.
    for d in 0..7 {
        let s = run_job(&spec, &sources(), T0 + d * day).await.unwrap();
        assert!(s.deleted.is_empty() && s.damaged.is_empty(), "{s:?}");
    }
    let inst = instance();
    let trust = spec.trust();
    let plan = |now| ibs_controller::job::plan_retention(&target, &inst, &spec.policy, now, None, &spec.checks, &trust);
    let fresh = plan(T0 + 6 * day).await.unwrap();
    assert!(fresh.checked.is_empty(), "nothing complete would go: no read");
    // Day 9: two have expired; the newest is read once, then remembered.
    let first = plan(T0 + 9 * day).await.unwrap();
    assert_eq!(first.checked.len(), 1);
    assert_eq!(first.plan.deletions.len(), 2, "{:?}", first.plan);
    let again = plan(T0 + 9 * day).await.unwrap();
    assert!(again.checked.is_empty(), "{again:?}");
    assert_eq!(again.plan.deletions.len(), 2);
    // A fresh memo (another process) reads it again.
    let other = ibs_controller::job::plan_retention(
        &target,
        &instance(),
        &spec.policy,
        T0 + 9 * day,
        None,
        &Default::default(),
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(other.checked.len(), 1);
}

/// One case of the retention property on a real target: a few backups of
/// various ages, some damaged (body, header, manifest, missing archive),
/// objects of other tools' under the backup folder, and a retention run
/// (plan with checks, then apply) at some capacity. Whatever the case, a
/// location that had an intact backup keeps one, and every object ibs did
/// not write is still there, unchanged.
async fn retention_case(target: &Arc<dyn StorageTarget>, seed: u64, one_size: u64) {
    // Deterministic, so each case can be replayed by its seed.
    let mut rng = Xorshift64::new(seed);
    let spec = spec(Arc::clone(target), &pair(0).cert);
    let day = 86_400;
    let now = T0 + 20 * day;
    let n = 1 + rng.below(5);
    let mut intact = Vec::new();
    let root = instance().backup_root();
    for i in 0..n {
        let s = write_backup(&spec, &sources(), T0 + (rng.below(20) as i64) * day + i as i64, None)
            .await
            .unwrap();
        let folder = root.child(s.id.as_str()).unwrap();
        let archive = folder.child("backup.ibs").unwrap();
        let manifest = folder.child("backup.manifest").unwrap();
        let put = |path: ibs_storage::ObjectPath, data: Vec<u8>| async move {
            use ibs_storage::StorageTargetExt;
            target.delete(&path).await.unwrap();
            target
                .put_bytes(&path, data.into(), ibs_storage::CommitMode::CreateNew)
                .await
                .unwrap();
        };
        let mut bytes = target.read_all(&archive).await.unwrap().to_vec();
        match rng.below(8) {
            0 => {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 1;
                put(archive, bytes).await;
            }
            1 => {
                bytes[40] ^= 1;
                put(archive, bytes).await;
            }
            2 => put(manifest, b"ibs-backup-manifest 1\ngarbage".to_vec()).await,
            3 => target.delete(&archive).await.unwrap(),
            _ => intact.push(s.id.clone()),
        }
    }
    // Other tools' objects: beside a backup's files, in a folder named like
    // a backup, directly in the backup folder, nested in a backup's folder.
    let some = Recovery::new(target.clone(), instance())
        .catalogue()
        .await
        .unwrap()
        .backups[0]
        .id
        .clone();
    let foreign = [
        root.child(some.as_str()).unwrap().child("notes.txt").unwrap(),
        root.child("20200101T000000Z-deadbeef")
            .unwrap()
            .child("important.docx")
            .unwrap(),
        root.child("README.txt").unwrap(),
        root.child(some.as_str())
            .unwrap()
            .child("sub")
            .unwrap()
            .child("x.bin")
            .unwrap(),
    ];
    for (i, path) in foreign.iter().enumerate() {
        use ibs_storage::StorageTargetExt;
        target.create_dir_all(&path.parent().unwrap()).await.unwrap();
        target
            .put_bytes(path, vec![i as u8; 10].into(), ibs_storage::CommitMode::CreateNew)
            .await
            .unwrap();
    }
    let next = match rng.below(3) {
        0 => None,
        1 => Some(one_size),
        _ => Some(one_size * (1 + rng.below(4))),
    };
    let policy = Policy::new(12, 2 + rng.below(10) as u32).unwrap();
    let retention = ibs_controller::job::plan_retention(
        target,
        &instance(),
        &policy,
        now,
        next,
        &Default::default(),
        &Default::default(),
    )
    .await
    .unwrap();
    ibs_controller::job::apply(target, &retention.plan).await.unwrap();
    let r = Recovery::new(target.clone(), instance());
    let cat = r.catalogue().await.unwrap();
    let mut still_intact = 0;
    for b in cat.complete() {
        if r.check_integrity(b).await.is_ok() {
            still_intact += 1;
        }
    }
    assert!(
        intact.is_empty() || still_intact >= 1,
        "seed {seed}: had {} intact, none left; plan {:?}",
        intact.len(),
        retention.plan
    );
    for (i, path) in foreign.iter().enumerate() {
        assert_eq!(
            target.read_all(path).await.unwrap().to_vec(),
            vec![i as u8; 10],
            "seed {seed}: {path}"
        );
    }
    // Every damaged backup retention read is reported.
    for d in &retention.damaged {
        assert!(
            !intact.contains(&d.id.parse().unwrap()),
            "seed {seed}: intact {} reported damaged",
            d.id
        );
    }
}

#[tokio::test]
async fn retention_never_leaves_a_location_without_an_intact_backup_nor_touches_what_it_did_not_write() {
    let probe: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let one = write_backup(&spec(probe, &pair(0).cert), &sources(), T0, None)
        .await
        .unwrap()
        .archive_bytes;
    for seed in 0..48 {
        // Capacity unknown, ample, or tight (a backup's worth free, or less).
        let target: Arc<dyn StorageTarget> = match seed % 3 {
            0 => Arc::new(MemoryTarget::new()),
            1 => Arc::new(MemoryTarget::with_capacity(one * 12)),
            _ => Arc::new(MemoryTarget::with_capacity(one * 5 + 8192 + (seed % 5) * one / 2)),
        };
        retention_case(&target, seed, one).await;
    }
    for seed in 100..108 {
        let dir = tempfile::tempdir().unwrap();
        let target: Arc<dyn StorageTarget> = Arc::new(ibs_storage::LocalTarget::new(dir.path()).unwrap());
        retention_case(&target, seed, one).await;
    }
}

#[cfg(feature = "smb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_errors_never_show_credentials() {
    const PASSWORD: &str = "Pa55-w0rd!q7Zr";
    let mut s = settings(std::path::Path::new("/nonexistent"), &pair(0).cert);
    // An SMB location on a loopback port nothing listens on, with real credentials.
    let port = ibs_testkit::server::free_port().unwrap();
    s.location = Location::parse(&format!("smb://127.0.0.1:{port}/backups/lab")).unwrap();
    s.access = Access::Smb(ibs_storage_smb::SmbCredentials::new("CONTOSO", "backupsvc", PASSWORD));
    let shown = format!("{s:?}");
    assert!(shown.contains("backupsvc"), "the account is shown: {shown}");
    let controller = Controller::new(sources());
    let err = controller.enable(s.clone()).await.unwrap_err();
    let alert = err.alert();
    for text in [
        shown,
        err.to_string(),
        format!("{err:?}"),
        format!("{} {} {}", alert.title, alert.description, alert.remediation),
        format!("{:?}", s.target().map(|t| t.to_string())),
        format!("{:?}", s.access),
    ] {
        assert!(!text.contains(PASSWORD), "password shown: {text}");
        assert!(!text.contains("q7Zr"), "part of the password shown: {text}");
    }
}

#[tokio::test]
async fn odd_names_are_captured_and_fifos_are_skipped_with_a_warning() {
    use std::os::unix::ffi::OsStrExt;
    let data = tempfile::tempdir().unwrap();
    let odd: [&[u8]; 4] = [b"bad\xff.txt", b"new\nline", b"tab\tname", b"back\\slash"];
    for name in odd {
        std::fs::write(data.path().join(std::ffi::OsStr::from_bytes(name)), name).unwrap();
    }
    std::fs::create_dir(data.path().join(std::ffi::OsStr::from_bytes(b"dir\nname"))).unwrap();
    std::fs::write(data.path().join(std::ffi::OsStr::from_bytes(b"dir\nname/inside")), b"x").unwrap();
    std::fs::write(data.path().join("good.json"), b"{}").unwrap();
    std::os::unix::fs::symlink("good.json", data.path().join("link")).unwrap();
    let fifo = data.path().join(std::ffi::OsStr::from_bytes(b"pi\npe"));
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let source: Arc<dyn BackupSource> = Arc::new(DirectorySource::new("state", data.path()));
    let summary = run_job(&spec(Arc::clone(&target), &pair(0).cert), &[source], T0)
        .await
        .unwrap();
    // 4 odd files, the folder and its file, good.json, the link.
    assert_eq!(summary.entries, 8, "{summary:?}");
    let shown: Vec<String> = summary.warnings.kept().iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    let w = &summary.warnings.kept()[0];
    assert_eq!(w.problem, CaptureProblem::SpecialFile, "{w}");
    // Escaped: no warning line breaks.
    assert!(w.path.ends_with("/pi\\npe"), "{w}");
    assert!(w.to_string().contains("FIFO, socket or device"), "{w}");
    let backup = Recovery::new(target.clone(), instance())
        .open_choice(&Choice::Newest, &[&pair(0).identity])
        .await
        .unwrap();
    for name in odd {
        let e = backup.find("state", name).await.unwrap().unwrap();
        assert_eq!(backup.read(&e).await.unwrap(), name);
    }
    assert!(backup.find("state", &b"dir\nname/inside"[..]).await.unwrap().is_some());
    // Strict mode fails the source instead.
    let strict: Arc<dyn BackupSource> = Arc::new(DirectorySource::new("state", data.path()).strict(true));
    let err = run_job(&spec(Arc::clone(&target), &pair(0).cert), &[strict], T0 + HOUR)
        .await
        .unwrap_err();
    assert!(matches!(err, ControllerError::Source { .. }), "{err}");
    assert!(err.to_string().contains("FIFO"), "{err}");
}

/// Retention with trusted signers (issue: an impostor's newer backup made
/// retention delete every backup the controller signed): a newer backup
/// signed by another key, or by none, is read, reported untrusted and never
/// kept in place of the controller's own; the controller's newest is kept.
#[tokio::test]
async fn retention_never_keeps_a_backup_the_controller_did_not_sign_in_place_of_its_own() {
    use ibs_controller::job::plan_retention;
    use ibs_controller::{CheckMemo, SignerTrust};
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let day = 86_400;
    let key = Arc::new(ibs_envelope::SigningKey::generate().unwrap());
    let mut ours = spec(Arc::clone(&target), &pair(0).cert);
    ours.signer = Some(Arc::clone(&key));
    ours.policy = Policy::new(12, 2).unwrap();
    let mut made = Vec::new();
    for d in [0, 1, 5] {
        made.push(
            write_backup(&ours, &sources(), T0 + d * day, None)
                .await
                .unwrap()
                .id
                .to_string(),
        );
    }
    // Newer than all of them: one signed by another key, then one not signed
    // (anyone with the certificate and write access can write either).
    let mut other = spec(Arc::clone(&target), &pair(0).cert);
    other.signer = Some(Arc::new(ibs_envelope::SigningKey::generate().unwrap()));
    let forged = write_backup(&other, &sources(), T0 + 10 * day - 2 * HOUR, None)
        .await
        .unwrap()
        .id
        .to_string();
    other.signer = None;
    let unsigned = write_backup(&other, &sources(), T0 + 10 * day - HOUR, None)
        .await
        .unwrap()
        .id
        .to_string();
    let now = T0 + 10 * day;
    let ids = |r: &ibs_controller::Retention| r.plan.deletions.iter().map(|d| d.id.clone()).collect::<Vec<_>>();

    // The controller's own view (it signs): its newest is kept, its two
    // older ones expire; the two newer ones are reported and kept.
    let memo = CheckMemo::default();
    let r = plan_retention(&target, &instance(), &ours.policy, now, None, &memo, &ours.trust())
        .await
        .unwrap();
    assert_eq!(ids(&r), [made[0].clone(), made[1].clone()], "{r:?}");
    assert_eq!(r.plan.protected.as_deref(), Some(made[2].as_str()));
    let untrusted: Vec<_> = r.untrusted.iter().map(|u| (u.id.clone(), u.signer)).collect();
    assert_eq!(
        untrusted,
        [
            (forged.clone(), Some(other_fingerprint(&target, &forged).await)),
            (unsigned.clone(), None)
        ]
    );
    assert!(
        r.untrusted[0].to_string().contains("not a trusted signer"),
        "{}",
        r.untrusted[0]
    );
    assert!(r.untrusted[1].to_string().contains("not signed"), "{}", r.untrusted[1]);
    assert_eq!(
        r.checked.iter().map(|c| c.id.to_string()).collect::<Vec<_>>(),
        [made[2].clone()]
    );
    // Remembered: the next plan reads nothing and decides the same.
    let again = plan_retention(&target, &instance(), &ours.policy, now, None, &memo, &ours.trust())
        .await
        .unwrap();
    assert!(again.checked.is_empty(), "{again:?}");
    assert_eq!(again.untrusted, r.untrusted, "remembered ones are reported too");
    assert_eq!(ids(&again), ids(&r));
    // Short of space: the untrusted ones go first — newer than the
    // controller's newest as they are — then its own older ones, oldest
    // first, never its newest.
    let deleted = apply_plan_for_space(&target, &ours, now).await;
    assert_eq!(deleted[..2], [forged.clone(), unsigned.clone()], "{deleted:?}");
    assert!(deleted[2..].iter().eq(made[..deleted.len() - 2].iter()), "{deleted:?}");
    assert!(!deleted.contains(&made[2]), "{deleted:?}");

    // Trusting anyone (no key): the newest, whoever wrote it, stands in for
    // the three the controller signed — what a prune without --trust-signer does.
    let anyone = plan_retention(
        &target,
        &instance(),
        &ours.policy,
        now,
        None,
        &CheckMemo::default(),
        &SignerTrust::anyone(),
    )
    .await
    .unwrap();
    assert_eq!(ids(&anyone), made, "{anyone:?}");
    assert_eq!(anyone.plan.protected.as_deref(), Some(unsigned.as_str()));

    // The controller's own job (sharing what the checks above learnt): its new
    // backup is kept, its old ones expire, and the two it did not sign are
    // named, each once, as not deleted.
    ours.checks = memo.clone();
    let job = run_job(&ours, &sources(), now).await.unwrap();
    assert!(job.has_warnings(), "{job:?}");
    let named: Vec<_> = job.untrusted.iter().map(|u| u.id.clone()).collect();
    assert_eq!(named, [forged.clone(), unsigned.clone()], "{job:?}");
    let deleted: Vec<_> = job.deleted.iter().map(|d| d.id.clone()).collect();
    assert_eq!(deleted, made, "{job:?}");
}

/// The fingerprint of the key that signed backup `id` (from the catalogue's header read).
async fn other_fingerprint(target: &Arc<dyn StorageTarget>, id: &str) -> ibs_envelope::SignerFingerprint {
    let cat = Recovery::new(target.clone(), instance()).catalogue().await.unwrap();
    cat.get(id).unwrap().signer.unwrap()
}

/// Plans retention needing room for a backup larger than the free space
/// allows (the memory target has no capacity: asks for the space by
/// planning with the catalogue's sizes) and returns what would be deleted
/// for space, oldest first.
async fn apply_plan_for_space(target: &Arc<dyn StorageTarget>, spec: &JobSpec, now: i64) -> Vec<String> {
    let reader: Arc<dyn ReadTarget> = target.clone();
    let cat = ibs_repository::catalogue(&reader, &spec.instance).await.unwrap();
    let mut records = ibs_controller::job::records(&cat, &spec.checks, now, &spec.trust());
    // What the first plan learnt, as the records of a second.
    for r in &mut records {
        if r.state == BackupState::Complete {
            let info = cat.get(&r.id).unwrap();
            let report = ibs_repository::check_integrity(&reader, info).await.unwrap();
            r.state = if spec.trust().trusts(&report.signer) {
                BackupState::Checked
            } else {
                BackupState::Untrusted
            };
        }
    }
    let young = Policy::new(12, 14).unwrap();
    let facts = ibs_retention::CapacityFacts {
        free_bytes: Some(0),
        total_bytes: None,
        next_backup_bytes: Some(records.iter().map(|r| r.size).max().unwrap() * 3),
    };
    let plan = ibs_retention::plan(&records, now, &young, &spec.instance, &facts);
    let order: Vec<_> = plan.deletions.iter().map(|d| d.id.clone()).collect();
    assert!(
        plan.deletions
            .iter()
            .all(|d| d.reason == ibs_retention::Reason::FreeSpace),
        "{plan:?}"
    );
    order
}

/// A manifest whose creation time was damaged to look years older than its
/// id says: the backup is listed damaged, its age is taken from its id (not
/// expired, so not deleted as "older than the retention period"), and
/// retention reports it.
#[tokio::test]
async fn a_manifest_dated_older_than_its_id_does_not_make_its_backup_expire() {
    use ibs_controller::job::plan_retention;
    use ibs_storage::StorageTargetExt;
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let spec = spec(Arc::clone(&target), &pair(0).cert);
    let now = T0 + 3 * HOUR;
    let old = write_backup(&spec, &sources(), T0, None).await.unwrap().id;
    let newest = write_backup(&spec, &sources(), T0 + HOUR, None).await.unwrap().id;
    let manifest = instance()
        .backup_root()
        .child(old.as_str())
        .unwrap()
        .child("backup.manifest")
        .unwrap();
    let text = String::from_utf8(target.read_all(&manifest).await.unwrap().to_vec()).unwrap();
    let damaged = text.replace(&format!("created: {T0}"), &format!("created: {}", T0 - 3000 * 86_400));
    assert_ne!(damaged, text);
    target.delete(&manifest).await.unwrap();
    target
        .put_bytes(
            &manifest,
            damaged.into_bytes().into(),
            ibs_storage::CommitMode::CreateNew,
        )
        .await
        .unwrap();
    let r = plan_retention(
        &target,
        &instance(),
        &spec.policy,
        now,
        None,
        &Default::default(),
        &Default::default(),
    )
    .await
    .unwrap();
    assert!(r.plan.deletions.is_empty(), "{r:?}");
    assert_eq!(r.listed_damaged.len(), 1, "{r:?}");
    assert_eq!(r.listed_damaged[0].id, old.to_string());
    assert_eq!(r.plan.protected.as_deref(), Some(newest.as_str()));
}

/// Signing turned on at a full location whose backups nobody signed: the
/// first signed backup runs out of space, retention finds every complete
/// backup untrusted and keeps the newest of them in their place, frees the
/// older one, and the second attempt succeeds — the location does not stay
/// full for good. Then the signed backup is the one kept, and the unsigned
/// one goes to make room for the next backup.
#[tokio::test]
async fn signing_turned_on_at_a_full_location_still_frees_space_for_the_first_signed_backup() {
    let probe: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let s = write_backup(&spec(Arc::clone(&probe), &pair(0).cert), &sources(), T0, None)
        .await
        .unwrap();
    let cat = ibs_repository::catalogue(&(probe as Arc<dyn ReadTarget>), &instance())
        .await
        .unwrap();
    let size = cat.get(s.id.as_str()).unwrap().size;
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::with_capacity(2 * size + size / 2));
    let unsigned = spec(Arc::clone(&target), &pair(0).cert);
    let old = write_backup(&unsigned, &sources(), T0, None)
        .await
        .unwrap()
        .id
        .to_string();
    let newer = write_backup(&unsigned, &sources(), T0 + HOUR, None)
        .await
        .unwrap()
        .id
        .to_string();
    let mut signed = spec(Arc::clone(&target), &pair(0).cert);
    signed.signer = Some(Arc::new(ibs_envelope::SigningKey::generate().unwrap()));
    let summary = run_job(&signed, &sources(), T0 + 2 * HOUR).await.unwrap();
    assert_eq!(summary.attempts, 2, "{summary:?}");
    assert_eq!(
        summary.deleted.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        [old.clone(), newer.clone()],
        "{summary:?}"
    );
    // Both were found untrusted, and both were deleted: named there only.
    assert!(summary.untrusted.is_empty(), "{summary:?}");
    let cat = Recovery::new(target.clone(), instance()).catalogue().await.unwrap();
    let ids: Vec<_> = cat.complete().map(|b| b.id.to_string()).collect();
    assert_eq!(ids, [summary.id.to_string()]);
}
