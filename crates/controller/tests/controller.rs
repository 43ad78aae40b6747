//! The controller: crash safety at every storage call, the single-job guard,
//! the maintenance gate, retention over simulated days, out of capacity, and
//! key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use ibs_controller::job::write_backup;
use ibs_controller::{
    BackupSource, Controller, ControllerError, DirectorySource, EntrySink, JobOutcome, JobSpec, Settings, Trigger,
    run_job,
};
use ibs_envelope::{Certificate, Identity, Password, keygen};
use ibs_recovery::{BackupState, Choice, Recovery};
use ibs_retention::Policy;
use ibs_storage::{ErrorKind, FaultPlan, FaultyTarget, InstanceLayout, Location, MemoryTarget, StorageTarget};

const T0: i64 = 1_763_769_600;
const HOUR: i64 = 3600;

struct Pair {
    cert: Certificate,
    identity: Identity,
}

fn pair(n: usize) -> &'static Pair {
    static P: [OnceLock<Pair>; 2] = [OnceLock::new(), OnceLock::new()];
    P[n].get_or_init(|| {
        let pw = Password::new("pw");
        let p = keygen::generate(&keygen::KeygenOptions::new(format!("key {n}"), T0 - 86_400), &pw).unwrap();
        Pair {
            cert: Certificate::parse(&p.cer).unwrap(),
            identity: Identity::from_pkcs12(&p.pfx, &pw).unwrap(),
        }
    })
}

/// A small in-memory source.
struct Fixed(&'static str, Vec<(&'static str, Vec<u8>)>);

#[async_trait]
impl BackupSource for Fixed {
    fn name(&self) -> &str {
        self.0
    }
    async fn capture(&self, sink: &mut dyn EntrySink) -> ibs_controller::Result<()> {
        for (path, data) in &self.1 {
            sink.begin(path, None, None).await?;
            sink.write(data).await?;
            sink.end().await?;
        }
        Ok(())
    }
}

fn sources() -> Vec<Arc<dyn BackupSource>> {
    vec![
        Arc::new(Fixed("identity", vec![("users.json", br#"[{"upn":"a@b"}]"#.to_vec())])),
        Arc::new(Fixed(
            "key-vault",
            vec![(
                "v.bin",
                (0..300_000u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                    .collect(),
            )],
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
        certificate: cert.clone(),
        producer_version: "1.2408.0".into(),
        policy: Policy::default(),
        checks: Default::default(),
    }
}

/// Every complete backup opens and verifies; returns their count.
async fn complete_and_sound(target: &Arc<dyn StorageTarget>) -> usize {
    let r = Recovery::new(Arc::clone(target), instance());
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
            sink.begin("x", None, None).await?;
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
        credentials: None,
        certificate: cert.clone(),
        fqdn: "azs.contoso.com".into(),
        region: "local".into(),
        policy: Policy::default(),
        producer_version: "1.2408.0".into(),
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
    let cat = Recovery::new(Arc::clone(target), instance()).catalogue().await.unwrap();
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
    let cat = Recovery::new(Arc::clone(&target), instance())
        .catalogue()
        .await
        .unwrap();
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
        newest.read(newest.find("rbac", "sub/a.json").unwrap()).await.unwrap(),
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
async fn a_file_changing_during_capture_is_never_captured_torn() {
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
    let mut outcomes = (0, 0);
    for i in 0..20 {
        let source: Arc<dyn BackupSource> = Arc::new(DirectorySource::new("rbac", data.path()));
        match write_backup(&spec(Arc::clone(&target), &pair(0).cert), &[source], T0 + i, None).await {
            Ok(_) => outcomes.0 += 1,
            Err(e) => {
                assert!(e.to_string().contains("kept changing"), "{e}");
                outcomes.1 += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    // Whatever was captured is one whole version, never a mix of two.
    let r = Recovery::new(Arc::clone(&target), instance());
    for b in r.catalogue().await.unwrap().complete() {
        let opened = r.open(b, &[&pair(0).identity]).await.unwrap();
        let got = String::from_utf8(opened.read(&opened.entries()[0]).await.unwrap()).unwrap();
        let first = got.split(';').next().unwrap().to_owned();
        assert!(
            got.split(';').filter(|s| !s.is_empty()).all(|s| s == first),
            "torn capture"
        );
    }
    assert_eq!(outcomes.0 + outcomes.1, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_azure_blob_with_unknown_capacity_keeps_seven_days() {
    use ibs_storage_object::ObjectOptions;
    use ibs_storage_object::testing::{Azurite, AzuriteOptions};
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
}
