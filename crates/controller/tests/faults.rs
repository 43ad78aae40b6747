//! Fault tests of what the docs promise (issue #23, items 1–3):
//!
//! 1. Crash safety of every step: a fault of every class at every storage
//!    call of a whole job (validation, write, commit, read-back, retention:
//!    catalogue, check, deletes; out-of-capacity freeing and retry) and of a
//!    prune, on the in-memory and the local target. Identity, not counts:
//!    earlier backups are byte for byte what they were (or, where retention
//!    may delete them, gone or incomplete garbage), nothing lists as damaged,
//!    every complete backup opens and verifies with the key.
//! 2. Lost replies (the call took effect, the caller saw an error): a
//!    manifest commit, a delete, and any call of a job followed by a prune.
//! 3. Out of capacity: the space is freed and the backup retried once, and
//!    when the retry fails too, nothing is lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::Fixed;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use ibs_controller::job::{JobSummary, apply, plan_retention, write_backup};
use ibs_controller::{BackupSource, CheckMemo, ControllerError, JobSpec, run_job, validate_target};
use ibs_recovery::{BackupState, Catalogue, Recovery};
use ibs_repository::InstanceLayout;
use ibs_repository::{ARCHIVE_NAME, BackupPaths, MANIFEST_NAME};
use ibs_retention::{Policy, Reason};
use ibs_storage::{
    Capacity, CommitMode, ErrorKind, FaultPlan, FaultyTarget, LocalTarget, MemoryTarget, ObjectMeta, ObjectPath,
    ObjectWriter, ReadTarget, ReadTargetExt, StorageTarget, StorageTargetExt,
};
use ibs_testkit::keys::{self, KeyPair};

const T0: i64 = 1_763_769_600;
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

fn pair() -> &'static KeyPair {
    keys::cached("faults", T0 - 30 * DAY)
}

/// Tiny sources (a few kB): `scale` multiplies the size of the second one,
/// whose bytes do not compress.
fn sources_of(scale: usize) -> Vec<Arc<dyn BackupSource>> {
    let noise = ibs_testkit::data::noise(2000 * scale, 0);
    vec![
        Arc::new(Fixed("identity", vec![("users.json", br#"[{"upn":"a@b"}]"#.to_vec())])),
        Arc::new(Fixed("key-vault", vec![("v.bin", noise)])),
    ]
}

fn sources() -> Vec<Arc<dyn BackupSource>> {
    sources_of(1)
}

fn instance() -> InstanceLayout {
    InstanceLayout::new("azs.contoso.com", "local").unwrap()
}

fn spec(target: Arc<dyn StorageTarget>) -> JobSpec {
    JobSpec {
        target,
        instance: instance(),
        certificates: vec![pair().cert.clone()],
        producer_version: "1.2408.0".into(),
        policy: Policy::default(),
        checks: CheckMemo::default(),
        signer: None,
    }
}

/// A prune as `ibs prune` runs it: plan (with a fresh memo, so the newest
/// backup is read) and apply.
async fn prune(target: &Arc<dyn StorageTarget>, now: i64) -> ibs_controller::Result<Vec<ibs_retention::Deletion>> {
    let retention = plan_retention(
        target,
        &instance(),
        &Policy::default(),
        now,
        None,
        &CheckMemo::default(),
        &Default::default(),
    )
    .await?;
    Ok(apply(target, &retention.plan).await?.deleted)
}

// ---------------------------------------------------------------------------
// A pass-through target that records every call, numbered as the fault
// injector numbers them (target and writer methods alike), so a test can find
// the call number of one step (the manifest's commit, a delete) and check the
// order of steps.

#[derive(Clone, Debug, PartialEq, Eq)]
struct Call {
    op: &'static str,
    path: String,
    range: Option<Range<u64>>,
}

#[derive(Clone, Debug)]
struct Recorder {
    inner: Arc<dyn StorageTarget>,
    log: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    fn new(inner: Arc<dyn StorageTarget>) -> Self {
        Recorder {
            inner,
            log: Arc::default(),
        }
    }

    fn record(&self, op: &'static str, path: &ObjectPath, range: Option<Range<u64>>) {
        record(&self.log, op, path, range);
    }

    fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

fn record(log: &Mutex<Vec<Call>>, op: &'static str, path: &ObjectPath, range: Option<Range<u64>>) {
    log.lock().unwrap().push(Call {
        op,
        path: path.to_string(),
        range,
    });
}

impl fmt::Display for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (recorded)", self.inner)
    }
}

#[async_trait]
impl ReadTarget for Recorder {
    async fn read_range(&self, path: &ObjectPath, range: Range<u64>) -> ibs_storage::Result<Bytes> {
        self.record("read_range", path, Some(range.clone()));
        self.inner.read_range(path, range).await
    }
    async fn head(&self, path: &ObjectPath) -> ibs_storage::Result<ObjectMeta> {
        self.record("head", path, None);
        self.inner.head(path).await
    }
    async fn list(
        &self,
        prefix: &ObjectPath,
    ) -> ibs_storage::Result<BoxStream<'static, ibs_storage::Result<ObjectMeta>>> {
        self.record("list", prefix, None);
        self.inner.list(prefix).await
    }
    async fn capacity(&self) -> ibs_storage::Result<Capacity> {
        self.record("capacity", &ObjectPath::root(), None);
        self.inner.capacity().await
    }
}

#[async_trait]
impl StorageTarget for Recorder {
    async fn create_dir_all(&self, path: &ObjectPath) -> ibs_storage::Result<()> {
        self.record("create_dir_all", path, None);
        self.inner.create_dir_all(path).await
    }
    async fn put(&self, path: &ObjectPath, mode: CommitMode) -> ibs_storage::Result<Box<dyn ObjectWriter>> {
        self.record("put", path, None);
        let inner = self.inner.put(path, mode).await?;
        Ok(Box::new(RecordedWriter {
            inner,
            path: path.clone(),
            log: Arc::clone(&self.log),
        }))
    }
    async fn delete(&self, path: &ObjectPath) -> ibs_storage::Result<()> {
        self.record("delete", path, None);
        self.inner.delete(path).await
    }
    async fn delete_dir(&self, path: &ObjectPath) -> ibs_storage::Result<()> {
        self.record("delete_dir", path, None);
        self.inner.delete_dir(path).await
    }
}

#[derive(Debug)]
struct RecordedWriter {
    inner: Box<dyn ObjectWriter>,
    path: ObjectPath,
    log: Arc<Mutex<Vec<Call>>>,
}

#[async_trait]
impl ObjectWriter for RecordedWriter {
    async fn write(&mut self, chunk: Bytes) -> ibs_storage::Result<()> {
        record(&self.log, "write", &self.path, None);
        self.inner.write(chunk).await
    }
    async fn commit(self: Box<Self>) -> ibs_storage::Result<ObjectMeta> {
        record(&self.log, "commit", &self.path, None);
        self.inner.commit().await
    }
    async fn abort(self: Box<Self>) -> ibs_storage::Result<()> {
        record(&self.log, "abort", &self.path, None);
        self.inner.abort().await
    }
}

// ---------------------------------------------------------------------------
// Backends and sites.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Memory,
    Local,
}

/// One storage location under test: the plain target (to look at it without
/// faults), and the same target seen through a recorder and a fault injector.
struct Site {
    plain: Arc<dyn StorageTarget>,
    recorder: Recorder,
    faulty: Arc<FaultyTarget<Recorder>>,
    target: Arc<dyn StorageTarget>,
    dir: Option<tempfile::TempDir>,
}

impl Site {
    fn over(plain: Arc<dyn StorageTarget>, dir: Option<tempfile::TempDir>) -> Self {
        let recorder = Recorder::new(Arc::clone(&plain));
        let faulty = Arc::new(FaultyTarget::new(recorder.clone(), FaultPlan::none()));
        let target: Arc<dyn StorageTarget> = faulty.clone();
        Site {
            plain,
            recorder,
            faulty,
            target,
            dir,
        }
    }

    fn new(backend: Backend) -> Self {
        match backend {
            Backend::Memory => Self::over(Arc::new(MemoryTarget::new()), None),
            Backend::Local => {
                let dir = local_dir();
                Self::over(Arc::new(LocalTarget::new(dir.path()).unwrap()), Some(dir))
            }
        }
    }

    /// A new site holding a copy of this one's objects (committed and
    /// partial alike; a local copy is a plain file copy).
    async fn copy(&self, backend: Backend) -> Self {
        match (backend, &self.dir) {
            (Backend::Local, Some(from)) => {
                let dir = local_dir();
                copy_tree(from.path(), dir.path());
                Self::over(Arc::new(LocalTarget::new(dir.path()).unwrap()), Some(dir))
            }
            _ => {
                let to = Self::new(Backend::Memory);
                for o in self.plain.list_all(&ObjectPath::root()).await.unwrap() {
                    to.plain.create_dir_all(&o.path.parent().unwrap()).await.unwrap();
                    if o.partial {
                        // An upload a crashed process left behind: started, never
                        // committed (under a new random partial name).
                        let name = o.path.name().unwrap();
                        let own = name[1..].split(ibs_storage::PARTIAL_MARKER).next().unwrap();
                        let path = o.path.parent().unwrap().child(own).unwrap();
                        let mut w = to.plain.put(&path, CommitMode::CreateNew).await.unwrap();
                        w.write(Bytes::from(vec![0u8; o.size as usize])).await.unwrap();
                        std::mem::forget(w);
                    } else {
                        let data = self.plain.read_all(&o.path).await.unwrap();
                        to.plain.put_bytes(&o.path, data, CommitMode::CreateNew).await.unwrap();
                    }
                }
                to
            }
        }
    }
}

/// A temporary folder for a local target: in memory (`/dev/shm`) where
/// there is one, since these tests run hundreds of jobs and what they check
/// is what a failed call leaves behind, not durability (fsync is free there).
fn local_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("ibs-faults-").tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// Copies a folder tree (files as hard links).
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&entry.path(), &dest);
        } else {
            // The local target never changes a file in place (uploads go to a
            // new file, renamed without replacing), so a link is a copy.
            std::fs::hard_link(entry.path(), &dest).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// Snapshots: the catalogue and every object's bytes.

#[derive(Clone, Debug)]
struct Snap {
    catalogue: Catalogue,
    /// Every object under the instance's backup folder: its bytes, or its
    /// size when it is an uncommitted upload.
    objects: BTreeMap<ObjectPath, Result<Bytes, u64>>,
}

impl Snap {
    async fn of(target: &Arc<dyn StorageTarget>) -> Snap {
        let reader: Arc<dyn ReadTarget> = target.clone();
        let catalogue = ibs_repository::catalogue(&reader, &instance()).await.unwrap();
        let mut objects = BTreeMap::new();
        for o in target.list_all(&instance().backup_root()).await.unwrap() {
            let value = if o.partial {
                Err(o.size)
            } else {
                Ok(target.read_all(&o.path).await.unwrap())
            };
            objects.insert(normalised(&o.path), value);
        }
        Snap { catalogue, objects }
    }

    fn state(&self, id: &str) -> Option<BackupState> {
        self.catalogue.get(id).map(|b| b.state)
    }

    /// The objects ibs wrote in backup `id`'s folder.
    fn backup_objects(&self, id: &str) -> BTreeMap<&ObjectPath, &Result<Bytes, u64>> {
        let folder = instance().backup_root().child(id).unwrap();
        self.objects
            .iter()
            .filter(|(p, _)| p.parent().as_ref() == Some(&folder) && p.name().is_some_and(ibs_repository::is_our_name))
            .collect()
    }

    fn ids(&self) -> BTreeSet<String> {
        self.catalogue.backups.iter().map(|b| b.id.to_string()).collect()
    }

    fn complete_ids(&self) -> BTreeSet<String> {
        self.catalogue.complete().map(|b| b.id.to_string()).collect()
    }

    /// Objects that are not part of any backup (ibs did not write them).
    fn foreign(&self) -> BTreeMap<&ObjectPath, &Result<Bytes, u64>> {
        let unrecognised: BTreeSet<ObjectPath> = self.catalogue.unrecognised.iter().map(normalised).collect();
        self.objects.iter().filter(|(p, _)| unrecognised.contains(p)).collect()
    }
}

/// `path` with the random tag of an uncommitted upload's name zeroed, so
/// that copies of a location compare equal.
fn normalised(path: &ObjectPath) -> ObjectPath {
    match path.as_str().split_once(ibs_storage::PARTIAL_MARKER) {
        Some((head, tag)) if tag.len() == 16 => {
            ObjectPath::parse(&format!("{head}{}{}", ibs_storage::PARTIAL_MARKER, "0".repeat(16))).unwrap()
        }
        _ => path.clone(),
    }
}

/// Every complete backup opens with the key and verifies (every frame and
/// entry); returns their ids.
async fn complete_and_sound(target: &Arc<dyn StorageTarget>, ctx: &str) -> BTreeSet<String> {
    let r = Recovery::new(target.clone(), instance());
    let cat = r.catalogue().await.unwrap();
    let mut ids = BTreeSet::new();
    for b in cat.complete() {
        let opened = r
            .open(b, &[&pair().identity])
            .await
            .unwrap_or_else(|e| panic!("{ctx}: complete backup {} does not open: {e}", b.id));
        opened
            .verify(None)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: complete backup {} does not verify: {e}", b.id));
        ids.insert(b.id.to_string());
    }
    ids
}

/// The invariants after any run, failed or not, given the state before it:
/// nothing lists as damaged; every backup outside `may_go` is byte for byte
/// what it was; one in `may_go` is that, or gone, or incomplete garbage
/// holding only objects it held before; objects ibs did not write are
/// untouched (a validation probe may be left over); any new backup is
/// complete or incomplete; every complete backup verifies.
async fn check_invariants(before: &Snap, site: &Site, may_go: &BTreeSet<String>, ctx: &str) -> Snap {
    let after = Snap::of(&site.plain).await;
    for b in &after.catalogue.backups {
        assert_ne!(
            b.state,
            BackupState::Damaged,
            "{ctx}: {} lists as damaged: {:?}",
            b.id,
            b.problem
        );
    }
    for id in before.ids() {
        let (was, is) = (before.backup_objects(&id), after.backup_objects(&id));
        if was == is {
            assert_eq!(before.state(&id), after.state(&id), "{ctx}: {id}");
            continue;
        }
        assert!(
            may_go.contains(&id),
            "{ctx}: backup {id} changed and may not: {was:?} → {is:?}"
        );
        assert!(
            matches!(after.state(&id), None | Some(BackupState::Incomplete)),
            "{ctx}: backup {id}, being deleted, lists as {:?}",
            after.state(&id)
        );
        assert!(
            is.iter().all(|(p, v)| was.get(p) == Some(v)),
            "{ctx}: deleting {id} changed or added objects"
        );
    }
    for (path, value) in before.foreign() {
        assert_eq!(
            after.objects.get(path),
            Some(value),
            "{ctx}: {path}, not written by ibs, changed"
        );
    }
    for path in after.foreign().keys() {
        assert!(
            before.objects.contains_key(*path) || path.as_str().contains(".ibs-write-probe"),
            "{ctx}: new foreign object {path}"
        );
    }
    for id in after.ids().difference(&before.ids()) {
        assert!(
            matches!(after.state(id), Some(BackupState::Complete | BackupState::Incomplete)),
            "{ctx}: new backup {id} lists as {:?}",
            after.state(id)
        );
    }
    assert_eq!(
        complete_and_sound(&site.plain, ctx).await,
        after.complete_ids(),
        "{ctx}: the complete backups are the ones that verify"
    );
    after
}

// ---------------------------------------------------------------------------
// The fixture: what a location looks like when a job or a prune starts.

/// Ids of the fixture's backups.
#[derive(Clone, Debug)]
struct Earlier {
    /// Complete, 7¼ days old at `T0` (expired), with a file ibs did not write in its folder.
    expired: String,
    /// Complete, 2 days old at `T0`.
    mid: String,
    /// Incomplete (a crashed upload), 19 h old at `T0` (garbage).
    garbage: String,
    /// Complete, 8 h old at `T0`: the newest.
    newest: String,
}

impl Earlier {
    fn complete(&self) -> BTreeSet<String> {
        [&self.expired, &self.mid, &self.newest].map(|s| s.clone()).into()
    }
}

/// Builds the fixture with real jobs at earlier times, plus a crashed upload
/// and files ibs did not write (one beside the backups, one inside the
/// expired backup's folder).
async fn fixture(backend: Backend) -> (Site, Earlier) {
    let site = Site::new(backend);
    let t = &site.plain;
    let expired = run_job(&spec(Arc::clone(t)), &sources(), T0 - 7 * DAY - 6 * HOUR)
        .await
        .unwrap();
    let notes = BackupPaths::new(&instance(), &expired.id)
        .unwrap()
        .folder
        .child("operator-notes.txt")
        .unwrap();
    t.put_bytes(
        &notes,
        Bytes::from_static(b"restored fine on 1 Dec"),
        CommitMode::CreateNew,
    )
    .await
    .unwrap();
    let readme = instance().backup_root().child("README-oem.txt").unwrap();
    t.put_bytes(&readme, Bytes::from_static(b"not ibs's"), CommitMode::CreateNew)
        .await
        .unwrap();
    let mid = run_job(&spec(Arc::clone(t)), &sources(), T0 - 2 * DAY).await.unwrap();
    // A job killed mid-upload: its partial archive stays behind.
    let crashing = FaultyTarget::new(
        Recorder::new(Arc::clone(t)),
        FaultPlan {
            leave_garbage: true,
            ..FaultPlan::cut_after_bytes(1000, ErrorKind::Connectivity)
        },
    );
    let crashing: Arc<dyn StorageTarget> = Arc::new(crashing);
    write_backup(&spec(crashing), &sources(), T0 - 19 * HOUR, None)
        .await
        .unwrap_err();
    let newest = run_job(&spec(Arc::clone(t)), &sources(), T0 - 8 * HOUR).await.unwrap();
    let snap = Snap::of(t).await;
    let garbage = snap
        .catalogue
        .backups
        .iter()
        .find(|b| b.state == BackupState::Incomplete)
        .unwrap()
        .id
        .to_string();
    let earlier = Earlier {
        expired: expired.id.to_string(),
        mid: mid.id.to_string(),
        garbage,
        newest: newest.id.to_string(),
    };
    assert_eq!(snap.complete_ids(), earlier.complete(), "{snap:?}");
    assert_eq!(snap.catalogue.backups.len(), 4);
    assert_eq!(snap.catalogue.unrecognised.len(), 2);
    assert_eq!(complete_and_sound(t, "fixture").await, earlier.complete());
    (site, earlier)
}

/// How a fault is injected.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// The call fails without effect and so does every later one (a crash,
    /// leaving any upload in progress behind).
    Crash,
    /// Only this call fails, without effect; later calls go through.
    Transient,
    /// The call takes effect but its caller sees the error.
    LostReply,
}

impl Mode {
    fn plan(self, n: u64, kind: ErrorKind) -> FaultPlan {
        match self {
            Mode::Crash => FaultPlan::crash_at_call(n, kind),
            Mode::Transient => FaultPlan {
                fail_at_call: Some(n),
                kind,
                ..FaultPlan::none()
            },
            Mode::LostReply => FaultPlan::lost_reply_at_call(n, kind),
        }
    }
}

// ---------------------------------------------------------------------------
// Item 1: a fault of every class at every call of a job.

/// Validation, then the job, as `enable` and a run do it.
async fn validate_and_run(target: &Arc<dyn StorageTarget>, now: i64) -> ibs_controller::Result<JobSummary> {
    validate_target(target, &instance()).await?;
    run_job(&spec(Arc::clone(target)), &sources(), now).await
}

async fn job_faults_at_every_call(backend: Backend, modes: &[Mode]) {
    let (template, earlier) = fixture(backend).await;
    let before = Snap::of(&template.plain).await;
    // The job retention runs after deletes the garbage and the expired
    // backup (once the new backup is checked); nothing else may change.
    let may_go: BTreeSet<String> = [earlier.garbage.clone(), earlier.expired.clone()].into();

    // Count the calls of an undisturbed job (and check what it does).
    let probe = template.copy(backend).await;
    let summary = validate_and_run(&probe.target, T0).await.unwrap();
    let calls = probe.faulty.calls();
    let log = probe.recorder.calls();
    // The commit: a fault before it or at it leaves no new complete backup,
    // one after it cannot undo it.
    let commit = call_number(&log, "commit", MANIFEST_NAME);
    assert!(
        log.iter()
            .any(|c| c.op == "delete" && c.path.contains(&earlier.expired)),
        "{log:?}"
    );
    let deleted: BTreeSet<String> = summary.deleted.iter().map(|d| d.id.clone()).collect();
    assert_eq!(deleted, may_go);
    let after = check_invariants(&before, &probe, &may_go, "undisturbed").await;
    let mut expected = earlier.complete();
    expected.remove(&earlier.expired);
    expected.insert(summary.id.to_string());
    assert_eq!(after.complete_ids(), expected);
    assert!(calls > 30, "{calls} calls");

    let mut outcomes = BTreeMap::<&str, usize>::new();
    for &mode in modes {
        for kind in ErrorKind::ALL {
            for n in 1..=calls + 1 {
                let ctx = format!("{backend:?} {mode:?} {kind:?} at call {n} of {calls}");
                let site = template.copy(backend).await;
                site.faulty.rearm(mode.plan(n, kind));
                let result = validate_and_run(&site.target, T0).await;
                let tripped = site.faulty.tripped();
                site.faulty.rearm(FaultPlan::none());
                let after = check_invariants(&before, &site, &may_go, &ctx).await;
                let new: Vec<String> = after.ids().difference(&before.ids()).cloned().collect();
                assert!(new.len() <= 1, "{ctx}: {new:?}");
                let new_complete = new.iter().any(|id| after.state(id) == Some(BackupState::Complete));
                // An earlier complete backup goes only for a new complete one
                // (retention, or freeing space for a retry that succeeded).
                if after.state(&earlier.expired) != Some(BackupState::Complete) {
                    assert!(new_complete, "{ctx}: {} deleted without a new backup", earlier.expired);
                }
                if n > commit {
                    assert!(new_complete, "{ctx}: the commit took effect before the fault");
                } else if let Err(e) = &result {
                    assert!(!new_complete, "{ctx}: failed before its commit, yet complete: {e}");
                }
                match &result {
                    Ok(s) if s.retention_failed.is_some() => {
                        // Committed and confirmed; retention after it failed,
                        // reported with the failure's class; nothing lost.
                        let failure = s.retention_failed.as_ref().unwrap();
                        assert_eq!(failure.alert.kind, kind, "{ctx}: {failure:?}");
                        assert_eq!(new, [s.id.to_string()], "{ctx}");
                        assert!(new_complete, "{ctx}: success must be complete");
                        let mut allowed = earlier.complete();
                        allowed.insert(s.id.to_string());
                        assert!(after.complete_ids().is_subset(&allowed), "{ctx}");
                        assert!(after.complete_ids().contains(&s.id.to_string()), "{ctx}");
                        *outcomes.entry("ok, retention failed").or_default() += 1;
                    }
                    Ok(s) => {
                        assert_eq!(new, [s.id.to_string()], "{ctx}");
                        assert!(new_complete, "{ctx}: success must be complete");
                        assert_eq!(after.complete_ids(), {
                            let mut e = earlier.complete();
                            e.remove(&earlier.expired);
                            e.insert(s.id.to_string());
                            e
                        });
                        assert!(after.state(&earlier.garbage).is_none(), "{ctx}");
                        *outcomes
                            .entry(if s.attempts == 2 { "ok after retry" } else { "ok" })
                            .or_default() += 1;
                    }
                    Err(e) => {
                        assert!(tripped, "{ctx}: failed without a fault: {e}");
                        assert_eq!(e.kind(), kind, "{ctx}: the failure keeps its class: {e}");
                        if !new_complete {
                            // Failed before the commit: the earlier complete backups are exactly as they were.
                            assert_eq!(after.complete_ids(), earlier.complete(), "{ctx}: {e}");
                        }
                        let what = match (e, new_complete) {
                            (ControllerError::Unconfirmed { .. }, true) => "unconfirmed, complete",
                            (ControllerError::Unconfirmed { .. }, false) => panic!("{ctx}: unconfirmed, not there"),
                            (_, true) => "failed after the commit",
                            (_, false) => "failed, no new backup",
                        };
                        *outcomes.entry(what).or_default() += 1;
                    }
                }
            }
        }
    }
    // Every path was taken: failures before the commit, the commit's
    // read-back failing, retention after the commit failing (a success with
    // the failure reported), and a transient out-of-capacity fault recovered
    // by freeing space and retrying.
    eprintln!("{backend:?}: {outcomes:?}");
    for what in ["failed, no new backup", "ok, retention failed", "unconfirmed, complete"] {
        assert!(outcomes.contains_key(what), "{what}: {outcomes:?}");
    }
    if modes.iter().any(|m| matches!(m, Mode::Transient)) {
        assert!(outcomes.contains_key("ok after retry"), "{outcomes:?}");
    }
}

#[tokio::test]
async fn a_job_failing_at_any_call_in_any_class_keeps_every_earlier_backup_on_memory() {
    job_faults_at_every_call(Backend::Memory, &[Mode::Crash, Mode::Transient]).await;
}

#[tokio::test]
async fn a_job_failing_at_any_call_in_any_class_keeps_every_earlier_backup_on_local() {
    job_faults_at_every_call(Backend::Local, &[Mode::Crash, Mode::Transient]).await;
}

// ---------------------------------------------------------------------------
// Item 1 (and 2): a fault at every call of a prune, then a second prune.

async fn prune_faults_at_every_call(backend: Backend, modes: &[Mode]) {
    let (template, earlier) = fixture(backend).await;
    let before = Snap::of(&template.plain).await;
    let may_go: BTreeSet<String> = [earlier.garbage.clone(), earlier.expired.clone()].into();
    let mut kept_complete = earlier.complete();
    kept_complete.remove(&earlier.expired);

    let probe = template.copy(backend).await;
    let deleted = prune(&probe.target, T0).await.unwrap();
    let calls = probe.faulty.calls();
    assert_eq!(deleted.iter().map(|d| d.id.clone()).collect::<BTreeSet<_>>(), may_go);
    let done = check_invariants(&before, &probe, &may_go, "undisturbed prune").await;
    assert_eq!(done.ids(), kept_complete);

    let mut failed = 0;
    for &mode in modes {
        for kind in ErrorKind::ALL {
            for n in 1..=calls + 1 {
                let ctx = format!("{backend:?} prune, {mode:?} {kind:?} at call {n} of {calls}");
                let site = template.copy(backend).await;
                site.faulty.rearm(mode.plan(n, kind));
                let result = prune(&site.target, T0).await;
                site.faulty.rearm(FaultPlan::none());
                let after = check_invariants(&before, &site, &may_go, &ctx).await;
                assert!(after.ids().is_subset(&before.ids()), "{ctx}: a prune made a backup");
                match result {
                    Ok(_) => {
                        assert_eq!(after.ids(), kept_complete, "{ctx}");
                    }
                    Err(e) => {
                        failed += 1;
                        assert_eq!(e.kind(), kind, "{ctx}: the failure keeps its class: {e}");
                        // A second prune completes and leaves what one undisturbed prune leaves.
                        let again = format!("{ctx}, pruned again");
                        prune(&site.target, T0).await.unwrap_or_else(|e| panic!("{again}: {e}"));
                        let after = check_invariants(&before, &site, &may_go, &again).await;
                        assert_eq!(after.ids(), kept_complete, "{again}");
                        assert_eq!(after.objects, done.objects, "{again}");
                    }
                }
            }
        }
    }
    assert!(failed > 0);
}

#[tokio::test]
async fn a_prune_failing_at_any_call_in_any_class_deletes_only_what_it_planned_on_memory() {
    prune_faults_at_every_call(Backend::Memory, &[Mode::Crash, Mode::Transient, Mode::LostReply]).await;
}

#[tokio::test]
async fn a_prune_failing_at_any_call_in_any_class_deletes_only_what_it_planned_on_local() {
    prune_faults_at_every_call(Backend::Local, &[Mode::Crash, Mode::Transient, Mode::LostReply]).await;
}

// ---------------------------------------------------------------------------
// Item 2: lost replies.

/// The number (1-based, as the fault injector counts) of the first call
/// `op` on a path ending with `suffix` in `log`.
fn call_number(log: &[Call], op: &str, suffix: &str) -> u64 {
    let i = log
        .iter()
        .position(|c| c.op == op && c.path.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {op} of …{suffix} in {log:?}"));
    i as u64 + 1
}

#[tokio::test]
async fn a_manifest_commit_whose_reply_is_lost_is_a_complete_backup_and_the_job_says_so() {
    for backend in [Backend::Memory, Backend::Local] {
        let (template, earlier) = fixture(backend).await;
        let probe = template.copy(backend).await;
        run_job(&spec(Arc::clone(&probe.target)), &sources(), T0).await.unwrap();
        let n = call_number(&probe.recorder.calls(), "commit", MANIFEST_NAME);
        for kind in ErrorKind::ALL {
            let ctx = format!("{backend:?} {kind:?}");
            let site = template.copy(backend).await;
            site.faulty.rearm(FaultPlan::lost_reply_at_call(n, kind));
            let summary = run_job(&spec(Arc::clone(&site.target)), &sources(), T0)
                .await
                .unwrap_or_else(|e| panic!("{ctx}: a committed backup reported as failed: {e}"));
            assert!(site.faulty.tripped(), "{ctx}: the reply of call {n} was not lost");
            assert_eq!(summary.attempts, 1, "{ctx}: the backup was written twice");
            let sound = complete_and_sound(&site.plain, &ctx).await;
            let mut expected = earlier.complete();
            expected.remove(&earlier.expired);
            expected.insert(summary.id.to_string());
            assert_eq!(sound, expected, "{ctx}");
        }
    }
}

#[tokio::test]
async fn a_delete_whose_reply_is_lost_fails_the_prune_and_a_second_prune_completes() {
    for backend in [Backend::Memory, Backend::Local] {
        let (template, earlier) = fixture(backend).await;
        let before = Snap::of(&template.plain).await;
        let may_go: BTreeSet<String> = [earlier.garbage.clone(), earlier.expired.clone()].into();
        let probe = template.copy(backend).await;
        prune(&probe.target, T0).await.unwrap();
        let log = probe.recorder.calls();
        let done = Snap::of(&probe.plain).await;
        let expired = format!("{}/{MANIFEST_NAME}", earlier.expired);
        let deletes: Vec<u64> = log
            .iter()
            .enumerate()
            .filter(|(_, c)| c.op.starts_with("delete"))
            .map(|(i, _)| i as u64 + 1)
            .collect();
        assert!(deletes.len() >= 4, "{log:?}");
        for n in deletes {
            let ctx = format!("{backend:?}, lost reply of {:?}", log[n as usize - 1]);
            let site = template.copy(backend).await;
            site.faulty
                .rearm(FaultPlan::lost_reply_at_call(n, ErrorKind::Connectivity));
            let err = prune(&site.target, T0).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Connectivity, "{ctx}: {err}");
            let after = check_invariants(&before, &site, &may_go, &ctx).await;
            if log[n as usize - 1].path.ends_with(&expired) {
                // The manifest went first: the expired backup is garbage now, never damaged.
                assert_eq!(after.state(&earlier.expired), Some(BackupState::Incomplete), "{ctx}");
            }
            // The second prune deletes what is left, once, and nothing else.
            site.recorder.clear();
            let again = prune(&site.target, T0).await.unwrap();
            let after = check_invariants(&before, &site, &may_go, &ctx).await;
            assert_eq!(after.objects, done.objects, "{ctx}");
            assert!(again.iter().all(|d| may_go.contains(&d.id)), "{ctx}: {again:?}");
            let lost = &log[n as usize - 1];
            let deleted_again: Vec<Call> = site
                .recorder
                .calls()
                .into_iter()
                .filter(|c| lost.op == "delete" && c.op == "delete" && c.path == lost.path)
                .collect();
            assert!(deleted_again.is_empty(), "{ctx}: deleted again: {deleted_again:?}");
        }
    }
}

#[tokio::test]
async fn a_lost_reply_anywhere_in_a_job_and_a_prune_never_makes_a_false_backup_or_damage_on_memory() {
    lost_reply_at_every_call_of_a_job_and_a_prune(Backend::Memory).await;
}

#[tokio::test]
async fn a_lost_reply_anywhere_in_a_job_and_a_prune_never_makes_a_false_backup_or_damage_on_local() {
    lost_reply_at_every_call_of_a_job_and_a_prune(Backend::Local).await;
}

/// A job at `T0`, then a prune 5 days later (when the 2-day-old backup has
/// expired), with one lost reply anywhere in the sequence; then the next
/// job, undisturbed, must leave a location of complete backups only. The
/// classes are those the code branches on (out of capacity: free and retry;
/// a general fault of the capacity query: capacity unknown) and one of the
/// three that are handled alike.
async fn lost_reply_at_every_call_of_a_job_and_a_prune(backend: Backend) {
    let (template, earlier) = fixture(backend).await;
    let before = Snap::of(&template.plain).await;
    let later = T0 + 5 * DAY + HOUR;
    // Over the sequence: the garbage and the expired backup go, then the
    // mid one (expired by `later`), and a failed job's garbage.
    let may_go: BTreeSet<String> = [&earlier.garbage, &earlier.expired, &earlier.mid]
        .map(|s| s.clone())
        .into();
    let probe = template.copy(backend).await;
    let job = validate_and_run(&probe.target, T0).await.unwrap();
    prune(&probe.target, later).await.unwrap();
    let calls = probe.faulty.calls();
    let commit = call_number(&probe.recorder.calls(), "commit", MANIFEST_NAME);
    let done = check_invariants(&before, &probe, &may_go, "undisturbed").await;
    assert_eq!(done.ids(), [earlier.newest.clone(), job.id.to_string()].into());

    for kind in [ErrorKind::OutOfCapacity, ErrorKind::Other, ErrorKind::Connectivity] {
        for n in 1..=calls + 1 {
            let ctx = format!("{backend:?} lost reply {kind:?} at call {n} of {calls}");
            let site = template.copy(backend).await;
            site.faulty.rearm(FaultPlan::lost_reply_at_call(n, kind));
            let job = match validate_target(&site.target, &instance()).await {
                Ok(()) => Some(run_job(&spec(Arc::clone(&site.target)), &sources(), T0).await),
                Err(_) => None,
            };
            // One job leaves at most one backup folder (a retry cleans up its first attempt).
            let between = Snap::of(&site.plain).await;
            let made: Vec<String> = between.ids().difference(&before.ids()).cloned().collect();
            assert!(made.len() <= 1, "{ctx}: {made:?}");
            let pruned = prune(&site.target, later).await;
            site.faulty.rearm(FaultPlan::none());
            let after = check_invariants(&before, &site, &may_go, &ctx).await;
            let new: Vec<String> = after.ids().difference(&before.ids()).cloned().collect();
            let new_complete = new.iter().any(|id| after.state(id) == Some(BackupState::Complete));
            match &job {
                Some(Ok(s)) => assert_eq!(after.state(s.id.as_str()), Some(BackupState::Complete), "{ctx}"),
                Some(Err(ControllerError::Unconfirmed { id, .. })) => {
                    assert_eq!(after.state(id), Some(BackupState::Complete), "{ctx}")
                }
                // The commit's reply lost: the backup is there, and the job must say so.
                Some(Err(e)) if n == commit => panic!("{ctx}: a committed backup reported as failed: {e}"),
                // Failed before its commit (whatever took effect): no complete backup.
                Some(Err(e)) if n < commit => assert!(!new_complete, "{ctx}: {e}"),
                _ => {}
            }
            // The newest earlier backup stays until a newer one is complete.
            assert_eq!(after.state(&earlier.newest), Some(BackupState::Complete), "{ctx}");
            if pruned.is_err() {
                prune(&site.target, later)
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}, pruned again: {e}"));
                check_invariants(&before, &site, &may_go, &ctx).await;
            }
            // Whatever happened, a later job and prune leave a location like an undisturbed one.
            let healed = run_job(&spec(Arc::clone(&site.plain)), &sources(), later + HOUR)
                .await
                .unwrap_or_else(|e| panic!("{ctx}, next job: {e}"));
            let after = check_invariants(&before, &site, &may_go, &ctx).await;
            assert!(
                after.catalogue.backups.iter().all(|b| b.state == BackupState::Complete),
                "{ctx}: {:?} ({new:?})",
                after.catalogue.backups
            );
            assert!(after.complete_ids().contains(healed.id.as_str()));
        }
    }
}

// ---------------------------------------------------------------------------
// Item 3: out of capacity — free space, retry once.

/// The bytes one backup of `sources_of(scale)` occupies (archive and manifest).
async fn backup_size(scale: usize) -> u64 {
    let t: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let s = write_backup(&spec(Arc::clone(&t)), &sources_of(scale), T0, None)
        .await
        .unwrap();
    let cat = ibs_repository::catalogue(&(t as Arc<dyn ReadTarget>), &instance())
        .await
        .unwrap();
    cat.get(s.id.as_str()).unwrap().size
}

/// Fills `bytes` of the share outside this instance's backups (another
/// instance sharing it).
async fn other_instance_writes(target: &Arc<dyn StorageTarget>, bytes: u64) {
    let other = InstanceLayout::new("other.contoso.com", "local").unwrap().backup_root();
    target.create_dir_all(&other).await.unwrap();
    let blob = other.child("big.bin").unwrap();
    target
        .put_bytes(&blob, Bytes::from(vec![7u8; bytes as usize]), CommitMode::CreateNew)
        .await
        .unwrap();
}

#[tokio::test]
async fn out_of_capacity_frees_the_oldest_then_the_retry_writes_a_complete_backup() {
    let size = backup_size(1).await;
    // Room for three backups: retention after each job keeps room for one more.
    let memory = MemoryTarget::with_capacity(3 * size + size / 2);
    let site = Site::over(Arc::new(memory), None);
    let b1 = run_job(&spec(Arc::clone(&site.plain)), &sources(), T0).await.unwrap();
    let b2 = run_job(&spec(Arc::clone(&site.plain)), &sources(), T0 + HOUR)
        .await
        .unwrap();
    assert!(b2.deleted.is_empty(), "{b2:?}");
    // Another instance on the same share takes a backup's worth: two fit, not three.
    other_instance_writes(&site.plain, size).await;
    let before = Snap::of(&site.plain).await;

    let spec = spec(Arc::clone(&site.target));
    let b3 = run_job(&spec, &sources(), T0 + 2 * HOUR).await.unwrap();

    assert_eq!(b3.attempts, 2, "{b3:?}");
    let first = b3.deleted.first().unwrap();
    assert_eq!(
        (first.id.as_str(), first.reason),
        (b1.id.as_str(), Reason::FreeSpace),
        "{b3:?}"
    );
    assert!(b3.deleted.iter().all(|d| d.reason == Reason::FreeSpace), "{b3:?}");
    // The order of the storage calls: the first attempt ran out of space, b2
    // (the backup kept) was read whole, b1's manifest was deleted, and only
    // then did the second attempt put its archive.
    let log = site.recorder.calls();
    let archive_puts: Vec<usize> = positions(&log, |c| c.op == "put" && c.path.ends_with(ARCHIVE_NAME));
    assert_eq!(archive_puts.len(), 2, "{log:?}");
    let b1_manifest = format!("{}/{MANIFEST_NAME}", b1.id);
    let b1_gone = positions(&log, |c| c.op == "delete" && c.path.ends_with(&b1_manifest))[0];
    let b2_size = before
        .catalogue
        .get(b2.id.as_str())
        .unwrap()
        .manifest
        .as_ref()
        .unwrap()
        .archive_size;
    let b2_read = positions(&log, |c| {
        c.op == "read_range" && c.path.contains(b2.id.as_str()) && c.range == Some(0..b2_size)
    });
    assert!(
        archive_puts[0] < b2_read[0] && b2_read[0] < b1_gone && b1_gone < archive_puts[1],
        "{log:?}"
    );
    // The new backup is complete and verifies; nothing else was touched.
    let may_go: BTreeSet<String> = b3.deleted.iter().map(|d| d.id.clone()).collect();
    let after = check_invariants(&before, &site, &may_go, "retried").await;
    assert!(after.complete_ids().contains(b3.id.as_str()));
    for d in &b3.deleted {
        assert_eq!(after.state(&d.id), None, "{d:?}");
    }
}

#[tokio::test]
async fn out_of_capacity_when_the_retry_fails_too_alerts_and_loses_nothing() {
    let size = backup_size(1).await;
    let site = Site::over(Arc::new(MemoryTarget::with_capacity(3 * size + size / 2)), None);
    let b1 = run_job(&spec(Arc::clone(&site.plain)), &sources(), T0).await.unwrap();
    let b2 = run_job(&spec(Arc::clone(&site.plain)), &sources(), T0 + HOUR)
        .await
        .unwrap();
    // A job killed mid-upload left garbage (older than the grace period by the next job).
    let crashing: Arc<dyn StorageTarget> = Arc::new(FaultyTarget::new(
        Recorder::new(Arc::clone(&site.plain)),
        FaultPlan {
            leave_garbage: true,
            ..FaultPlan::cut_after_bytes(size / 2, ErrorKind::Connectivity)
        },
    ));
    write_backup(&spec(crashing), &sources(), T0 + 2 * HOUR, None)
        .await
        .unwrap_err();
    let before = Snap::of(&site.plain).await;
    assert_eq!(before.catalogue.backups.len(), 3);
    // The data grew: the next backup is twice the size, more than the space there is.
    let now = T0 + 20 * HOUR;
    let err = run_job(&spec(Arc::clone(&site.target)), &sources_of(4), now)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfCapacity, "{err}");
    assert_eq!(err.alert().kind, ErrorKind::OutOfCapacity);
    assert_eq!(err.alert().title, ErrorKind::OutOfCapacity.alert().title);
    // The error says what was freed for the retry.
    match &err {
        ControllerError::RetryFailed { freed, .. } => {
            let garbage: Vec<String> = before
                .catalogue
                .backups
                .iter()
                .filter(|b| b.state == BackupState::Incomplete)
                .map(|b| b.id.to_string())
                .collect();
            assert_eq!(freed, &garbage, "{err}");
            assert!(freed.iter().all(|id| err.to_string().contains(id.as_str())), "{err}");
        }
        other => panic!("expected RetryFailed, got {other}"),
    }
    // It was tried twice: the garbage was freed for the retry.
    let log = site.recorder.calls();
    assert_eq!(
        positions(&log, |c| c.op == "put" && c.path.ends_with(ARCHIVE_NAME)).len(),
        2,
        "{log:?}"
    );
    // Nothing lost: both earlier backups are byte for byte there and verify;
    // only the garbage went, and no trace of the failed job is left.
    let garbage: BTreeSet<String> = before
        .catalogue
        .backups
        .iter()
        .filter(|b| b.state == BackupState::Incomplete)
        .map(|b| b.id.to_string())
        .collect();
    let after = check_invariants(&before, &site, &garbage, "retry failed").await;
    assert_eq!(after.complete_ids(), [b1.id.to_string(), b2.id.to_string()].into());
    assert_eq!(after.ids(), after.complete_ids());
}

fn positions(log: &[Call], f: impl Fn(&Call) -> bool) -> Vec<usize> {
    log.iter().enumerate().filter(|(_, c)| f(c)).map(|(i, _)| i).collect()
}
