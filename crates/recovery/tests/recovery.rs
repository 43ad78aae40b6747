//! The recovery reader against the local backend: round trips, rotation,
//! wrong keys, damaged and incomplete backups, the version rule, and hostile
//! entry names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use futures::StreamExt;
use futures::stream::BoxStream;
use ibs_recovery::{
    BackupState, Choice, Recovery, RecoveryError, Release, RestoreOptions, Version, VersionRule, blocking,
};
use ibs_repository::BackupPaths;
use ibs_storage::{
    Capacity, CommitMode, ErrorKind, ObjectMeta, ObjectPath, ObjectWriter, ReadTarget, ReadTargetExt, StorageTarget,
    StorageTargetExt,
};

fn recovery(target: &Arc<dyn StorageTarget>) -> Recovery {
    Recovery::new(target.clone(), instance())
}

#[tokio::test]
async fn a_backup_round_trips_through_the_local_backend() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let entries = sample();
    let id = put_backup(&target, &[&pair_a().cert], &entries, T0, "1.2408.0.21").await;

    let r = recovery(&target);
    let cat = r.catalogue().await.unwrap();
    assert_eq!(cat.backups.len(), 1);
    let info = &cat.backups[0];
    assert_eq!(info.id, id);
    assert_eq!(info.state, BackupState::Complete);
    assert_eq!(info.created, T0);
    assert_eq!(info.producer_version.as_deref(), Some("1.2408.0.21"));
    assert_eq!(info.recipients, vec![pair_a().cert.thumbprint()]);
    assert!(info.size > 0);
    r.check_integrity(info).await.unwrap();

    let backup = r.open(info, &[&pair_a().identity]).await.unwrap();
    assert_eq!(backup.sources(), ["ca", "identity", "key-vault", "resource-manager"]);
    for (source, path, data) in &entries {
        let e = backup.find(source, path).await.unwrap().unwrap();
        assert_eq!(&backup.read(&e).await.unwrap(), data, "{source}/{path}");
        let mut streamed = Vec::new();
        let mut s = std::pin::pin!(backup.stream(&e));
        while let Some(piece) = s.next().await {
            streamed.extend_from_slice(&piece.unwrap());
        }
        assert_eq!(&streamed, data);
    }
    let report = backup.verify(None).await.unwrap();
    // The files and the four parent folders the writer recorded for them.
    assert_eq!(report.entries, entries.len() as u64 + 4);

    // Restore everything, then compare file by file.
    let out = tempfile::tempdir().unwrap();
    let restored = backup.restore_to(out.path(), &RestoreOptions::default()).await.unwrap();
    assert_eq!(restored.files, entries.len() as u64);
    for (source, path, data) in &entries {
        assert_eq!(&std::fs::read(out.path().join(source).join(path)).unwrap(), data);
    }
    // No temporary files or staging folder are left behind.
    assert_no_staging_left(out.path());

    // Restoring again refuses to overwrite; with overwrite it replaces.
    let again = backup
        .restore_to(out.path(), &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(again, RecoveryError::Exists(_)), "{again}");
    std::fs::write(out.path().join("ca/root.cer"), b"changed").unwrap();
    backup
        .restore_to(out.path(), &RestoreOptions::default().overwrite(true))
        .await
        .unwrap();
    assert_eq!(std::fs::read(out.path().join("ca/root.cer")).unwrap(), entries[1].2);

    // Selected sources only.
    let some = tempfile::tempdir().unwrap();
    let report = backup
        .restore_to(
            some.path(),
            &RestoreOptions::default().sources(["ca", "resource-manager"]),
        )
        .await
        .unwrap();
    assert_eq!(report.files, 3);
    assert!(!some.path().join("identity").exists());
    let err = backup
        .restore_to(some.path(), &RestoreOptions::default().sources(["nope"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no source \"nope\""), "{err}");
}

/// No `.ibs-restore-*` file or folder anywhere under `dir`.
fn assert_no_staging_left(dir: &std::path::Path) {
    let mut leftovers = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.display().to_string().contains(".ibs-restore-") {
                leftovers.push(p.clone());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_restore_beside_an_existing_source_folder_places_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let entries = sample();
    put_backup(&target, &[&pair_a().cert], &entries, T0, "1.2408.0").await;
    let r = recovery(&target);
    let cat = r.catalogue().await.unwrap();
    let b = r.open(&cat.backups[0], &[&pair_a().identity]).await.unwrap();
    // identity's folder exists (with a file of its own); the other sources'
    // do not, so they are staged whole and identity's files one by one.
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(out.path().join("identity/directory")).unwrap();
    std::fs::write(out.path().join("identity/notes.txt"), b"keep").unwrap();
    let report = b.restore_to(out.path(), &RestoreOptions::default()).await.unwrap();
    assert_eq!(report.files, entries.len() as u64);
    for (source, path, data) in &entries {
        assert_eq!(
            &std::fs::read(out.path().join(source).join(path)).unwrap(),
            data,
            "{source}/{path}"
        );
    }
    assert_eq!(std::fs::read(out.path().join("identity/notes.txt")).unwrap(), b"keep");
    assert_no_staging_left(out.path());

    // A source whose name is taken by a file is refused, and nothing is
    // placed (the other sources were staged and are removed).
    let clash = tempfile::tempdir().unwrap();
    std::fs::write(clash.path().join("ca"), b"not a folder").unwrap();
    let err = b
        .restore_to(clash.path(), &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RecoveryError::UnsafePath { .. }), "{err}");
    assert!(
        !clash.path().join("identity").exists(),
        "a refused restore placed files"
    );
    assert_no_staging_left(clash.path());
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn rotation_two_backups_under_two_certificates_recovered_with_two_pfx_files() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let old = put_backup(
        &target,
        &[&pair_a().cert],
        &[("rbac", "v1.json", b"old".to_vec())],
        T0,
        "1.0",
    )
    .await;
    let new = put_backup(
        &target,
        &[&pair_b().cert],
        &[("rbac", "v2.json", b"new".to_vec())],
        T0 + DAY,
        "1.0",
    )
    .await;
    let r = recovery(&target);
    let both = [&pair_a().identity, &pair_b().identity];
    let cat = r.catalogue().await.unwrap();
    assert_eq!(
        cat.backups.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
        vec![old.clone(), new.clone()]
    );

    let newest = r.open_choice(&Choice::Newest, &both).await.unwrap();
    assert_eq!(newest.info().id, new);
    assert_eq!(
        newest
            .read(&newest.find("rbac", "v2.json").await.unwrap().unwrap())
            .await
            .unwrap(),
        b"new"
    );
    let older = r.open_choice(&Choice::Id(old.to_string()), &both).await.unwrap();
    assert_eq!(
        older
            .read(&older.find("rbac", "v1.json").await.unwrap().unwrap())
            .await
            .unwrap(),
        b"old"
    );

    // Only the new .pfx: the old backup says which key it needs.
    let err = r
        .open_choice(&Choice::Id(old.to_string()), &[&pair_b().identity])
        .await
        .unwrap_err();
    let thumb = pair_a().cert.thumbprint().to_string();
    assert!(err.to_string().contains(&thumb), "{err}");
    match err {
        RecoveryError::Archive {
            source: ibs_archive::Error::Envelope(ibs_envelope::Error::NoMatchingIdentity { needed }),
            ..
        } => assert_eq!(needed, vec![pair_a().cert.thumbprint()]),
        other => panic!("unexpected {other:?}"),
    }
    // No .pfx at all.
    let err = r.open_choice(&Choice::Newest, &[]).await.unwrap_err();
    assert!(
        err.to_string().contains(&pair_b().cert.thumbprint().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn damaged_and_incomplete_backups_are_reported_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let certs = [&pair_a().cert];
    let good = put_backup(&target, &certs, &sample(), T0, "1.0").await;
    let inst = instance();

    // Incomplete: archive written, manifest never committed.
    let crashed = put_backup(&target, &certs, &sample(), T0 + 10, "1.0").await;
    target
        .delete(&BackupPaths::new(&inst, &crashed).unwrap().manifest)
        .await
        .unwrap();
    // Damaged: archive truncated after the manifest was written.
    let truncated = put_backup(&target, &certs, &sample(), T0 + 20, "1.0").await;
    let p = BackupPaths::new(&inst, &truncated).unwrap();
    let bytes = target.read_all(&p.archive).await.unwrap();
    target
        .put_bytes(&p.archive, bytes.slice(..bytes.len() - 100), CommitMode::Overwrite)
        .await
        .unwrap();
    // Damaged: garbage manifest.
    let garbled = put_backup(&target, &certs, &sample(), T0 + 30, "1.0").await;
    let p = BackupPaths::new(&inst, &garbled).unwrap();
    target
        .put_bytes(
            &p.manifest,
            Bytes::from_static(b"not a manifest"),
            CommitMode::Overwrite,
        )
        .await
        .unwrap();
    // Bit rot inside a frame: same size, so only a full check finds it.
    let rotten = put_backup(&target, &certs, &sample(), T0 + 40, "1.0").await;
    let p = BackupPaths::new(&inst, &rotten).unwrap();
    let mut bytes = target.read_all(&p.archive).await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    target
        .put_bytes(&p.archive, Bytes::from(bytes), CommitMode::Overwrite)
        .await
        .unwrap();
    // Something else in MASBackup that is not ours.
    target
        .put_bytes(
            &inst.backup_root().child("notes.txt").unwrap(),
            Bytes::from_static(b"hi"),
            CommitMode::CreateNew,
        )
        .await
        .unwrap();

    let r = recovery(&target);
    let cat = r.catalogue().await.unwrap();
    let state = |id: &ibs_repository::BackupId| cat.get(id.as_str()).unwrap().state;
    assert_eq!(state(&good), BackupState::Complete);
    assert_eq!(state(&crashed), BackupState::Incomplete);
    assert_eq!(state(&truncated), BackupState::Damaged);
    assert_eq!(state(&garbled), BackupState::Damaged);
    assert_eq!(state(&rotten), BackupState::Complete, "keyless structure is intact");
    assert_eq!(cat.unrecognised.len(), 1);
    for id in [&truncated, &garbled] {
        let problem = cat.get(id.as_str()).unwrap().problem.clone().unwrap();
        assert!(!problem.is_empty());
    }

    // Choosing them by id is refused with the reason.
    for (id, word) in [(&crashed, "incomplete"), (&truncated, "damaged"), (&garbled, "damaged")] {
        let err = r
            .open_choice(&Choice::Id(id.to_string()), &[&pair_a().identity])
            .await
            .unwrap_err();
        assert!(err.to_string().contains(word), "{err}");
    }
    // The rotten one: the keyless integrity check and verify both catch it,
    // and a restore writes nothing.
    let rotten_info = cat.get(rotten.as_str()).unwrap();
    assert!(matches!(
        r.check_integrity(rotten_info).await.unwrap_err(),
        RecoveryError::IntegrityMismatch { .. }
    ));
    let b = r.open(rotten_info, &[&pair_a().identity]).await.unwrap();
    assert!(b.verify(None).await.is_err());
    let out = tempfile::tempdir().unwrap();
    assert!(b.restore_to(out.path(), &RestoreOptions::default()).await.is_err());
    assert!(walk(out.path()).is_empty(), "a damaged backup restored files");
    assert!(
        std::fs::read_dir(out.path()).unwrap().next().is_none(),
        "a damaged backup left folders behind"
    );

    // Newest restorable skips the incomplete and damaged ones... and the rotten
    // one is newest and keyless-complete, so it is chosen; after it is removed
    // the good one is.
    assert_eq!(r.choose(&cat, &Choice::Newest).unwrap().id, rotten);
    target
        .delete_prefix(&BackupPaths::new(&inst, &rotten).unwrap().folder)
        .await
        .unwrap();
    let cat = r.catalogue().await.unwrap();
    assert_eq!(r.choose(&cat, &Choice::Newest).unwrap().id, good);

    // Nothing restorable at all.
    target
        .delete_prefix(&BackupPaths::new(&inst, &good).unwrap().folder)
        .await
        .unwrap();
    let cat = r.catalogue().await.unwrap();
    let err = r.choose(&cat, &Choice::Newest).unwrap_err();
    assert!(
        matches!(err, RecoveryError::NoRestorable { ref reasons, .. } if reasons.len() == 3),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    let cat = recovery(&local(empty.path())).catalogue().await.unwrap();
    assert!(matches!(
        r.choose(&cat, &Choice::Newest),
        Err(RecoveryError::NoBackups { .. })
    ));
    assert!(matches!(
        r.choose(&cat, &Choice::Id("20261122T000000Z-00000000".into())),
        Err(RecoveryError::NotFound { .. })
    ));
}

#[test]
fn the_version_rule_at_its_edges() {
    let v = |s: &str| s.parse::<Version>().unwrap();
    let rule = VersionRule::default();
    let backup = v("1.2408.0.21");
    for ok in ["1.2408.0.21", "1.2408.9", "1.2409.0.1"] {
        rule.check(&backup, &v(ok)).unwrap();
    }
    for (bad, says) in [
        ("1.2410.0", "2 releases after"),
        ("1.2407.3", "newer than this instance"),
        ("2.1.0", "cannot be compared"),
    ] {
        let err = rule.check(&backup, &v(bad)).unwrap_err().to_string();
        assert!(
            err.contains("1.2408.0.21") && err.contains(bad) && err.contains(says),
            "{err}"
        );
    }
    // With a release history, releases are counted in it.
    let history = VersionRule::default().history([Release(1, 2406), Release(1, 2408), Release(1, 2411)]);
    history.check(&backup, &v("1.2411.1")).unwrap();
    assert!(history.check(&v("1.2406.0"), &v("1.2411.0")).is_err());
    assert!(
        VersionRule::default()
            .max_releases_newer(0)
            .check(&backup, &v("1.2409"))
            .is_err()
    );
    assert!(
        VersionRule::default()
            .max_releases_newer(2)
            .check(&backup, &v("1.2410"))
            .is_ok()
    );
    assert!("1.x".parse::<Version>().is_err());
    assert!("".parse::<Version>().is_err());
}

#[tokio::test]
async fn the_version_rule_is_enforced_when_choosing() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    put_backup(&target, &[&pair_a().cert], &[("a", "b", b"1".to_vec())], T0, "1.2406.0").await;
    let newer = put_backup(
        &target,
        &[&pair_a().cert],
        &[("a", "b", b"2".to_vec())],
        T0 + DAY,
        "1.2408.0",
    )
    .await;
    let r = recovery(&target).instance_version("1.2408.3".parse().unwrap());
    let cat = r.catalogue().await.unwrap();
    assert_eq!(r.choose(&cat, &Choice::Newest).unwrap().id, newer);
    // An instance two releases on refuses both, naming both versions.
    let r = recovery(&target).instance_version("1.2410.0".parse().unwrap());
    let err = r.choose(&cat, &Choice::Newest).unwrap_err().to_string();
    assert!(
        err.contains("1.2406.0") && err.contains("1.2408.0") && err.contains("1.2410.0"),
        "{err}"
    );
}

#[tokio::test]
async fn hostile_entry_names_in_a_crafted_archive_are_refused() {
    let cert = &pair_a().cert;
    for (path, why) in [
        ("../../etc/cron.d/evil", "'..'"),
        ("/etc/passwd", "relative"),
        ("a/../../x", "'..'"),
        ("a\\..\\x", "backslash"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let target = local(dir.path());
        let (archive, archive_id) = crafted_archive(cert, &[("ok", "fine.txt", b"fine"), ("ok", path, b"evil")], "1.0");
        put_archive(&target, archive, archive_id, &[cert], T0, "1.0").await;
        let r = recovery(&target);
        let b = r.open_choice(&Choice::Newest, &[&pair_a().identity]).await.unwrap();
        // Listing and reading it is fine; restoring is not, and writes nothing.
        assert!(b.find("ok", path).await.unwrap().is_some());
        let out = tempfile::tempdir().unwrap();
        let err = b
            .restore_to(&out.path().join("restore"), &RestoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, RecoveryError::UnsafePath { .. }), "{path}: {err}");
        assert!(err.to_string().contains(why), "{path}: {err}");
        assert!(walk(out.path()).is_empty(), "{path}: something was written");
    }
}

#[tokio::test]
async fn symbolic_links_in_the_restore_directory_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    put_backup(
        &target,
        &[&pair_a().cert],
        &[("rbac", "a/b.json", b"{}".to_vec())],
        T0,
        "1.0",
    )
    .await;
    let b = recovery(&target)
        .open_choice(&Choice::Newest, &[&pair_a().identity])
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    // A folder on the way is a symlink.
    std::os::unix::fs::symlink(elsewhere.path(), out.path().join("rbac")).unwrap();
    let err = b
        .restore_to(out.path(), &RestoreOptions::default().overwrite(true))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(walk(elsewhere.path()).is_empty());
    // The file itself is a symlink.
    std::fs::remove_file(out.path().join("rbac")).unwrap();
    std::fs::create_dir_all(out.path().join("rbac/a")).unwrap();
    let victim = elsewhere.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    std::os::unix::fs::symlink(&victim, out.path().join("rbac/a/b.json")).unwrap();
    // Without overwrite it exists; with it, the link itself is replaced
    // (never followed: the file it points to is untouched).
    let err = b.restore_to(out.path(), &RestoreOptions::default()).await.unwrap_err();
    assert!(matches!(err, RecoveryError::Exists(_)), "{err}");
    assert!(err.to_string().contains("--overwrite"), "{err}");
    b.restore_to(out.path(), &RestoreOptions::default().overwrite(true))
        .await
        .unwrap();
    let placed = out.path().join("rbac/a/b.json");
    assert!(!std::fs::symlink_metadata(&placed).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&placed).unwrap(), b"{}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
}

#[tokio::test]
async fn a_restore_removes_what_an_interrupted_one_left_and_two_never_share_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    put_backup(&target, &[&pair_a().cert], &sample(), T0, "1.0").await;
    let b = recovery(&target)
        .open_choice(&Choice::Newest, &[&pair_a().identity])
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    // What a killed restore leaves: its staging folder, marked. Beside it,
    // look-alikes that are not a restore's and stay: an unmarked folder of
    // that name (say, restored from a backup, or the operator's), files named
    // like an older release's temporaries, the operator's files.
    let staging = out.path().join(".ibs-restore-00112233445566ff");
    std::fs::create_dir_all(staging.join("identity/directory")).unwrap();
    std::fs::write(staging.join(ibs_recovery::STAGING_MARKER), b"").unwrap();
    std::fs::write(staging.join("identity/directory/users.json"), b"half").unwrap();
    let unmarked = out.path().join(".ibs-restore-0123456789abcdef");
    std::fs::create_dir_all(&unmarked).unwrap();
    std::fs::create_dir_all(out.path().join("ca/deep/er")).unwrap();
    let keep = [
        out.path().join("ca/.ibs-restore-00112233445566ff-3.tmp"),
        out.path().join("ca/deep/.ibs-restore-notes.tmp"),
        out.path().join(".ibs-restore-mine"),
        out.path().join("ca/deep/er/mine.txt"),
        unmarked.join("data"),
    ];
    for k in &keep {
        std::fs::write(k, b"operator's").unwrap();
    }
    // While another restore holds the folder, a second one is refused and
    // removes nothing.
    let held = std::fs::File::open(out.path()).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let err = b.restore_to(out.path(), &RestoreOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("another restore"), "{err}");
    assert!(staging.exists());
    drop(held);

    let report = b.restore_to(out.path(), &RestoreOptions::default()).await.unwrap();
    assert_eq!(report.leftovers.staging_folders, 1, "{report:?}");
    assert!(!staging.exists());
    for k in &keep {
        assert_eq!(std::fs::read(k).unwrap(), b"operator's", "{}", k.display());
    }
    for (source, path, data) in sample() {
        assert_eq!(std::fs::read(out.path().join(source).join(path)).unwrap(), data);
    }
}

/// Counts the bytes read through `read_range`.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn StorageTarget>,
    read: AtomicU64,
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "counting {}", self.inner)
    }
}

#[async_trait]
impl ReadTarget for Counting {
    async fn read_range(&self, path: &ObjectPath, range: Range<u64>) -> ibs_storage::Result<Bytes> {
        self.read.fetch_add(range.end - range.start, Ordering::Relaxed);
        self.inner.read_range(path, range).await
    }
    async fn head(&self, path: &ObjectPath) -> ibs_storage::Result<ObjectMeta> {
        self.inner.head(path).await
    }
    async fn list(
        &self,
        prefix: &ObjectPath,
    ) -> ibs_storage::Result<BoxStream<'static, ibs_storage::Result<ObjectMeta>>> {
        self.inner.list(prefix).await
    }
    async fn capacity(&self) -> ibs_storage::Result<Capacity> {
        self.inner.capacity().await
    }
}

#[async_trait]
impl StorageTarget for Counting {
    async fn create_dir_all(&self, path: &ObjectPath) -> ibs_storage::Result<()> {
        self.inner.create_dir_all(path).await
    }
    async fn put(&self, path: &ObjectPath, mode: CommitMode) -> ibs_storage::Result<Box<dyn ObjectWriter>> {
        self.inner.put(path, mode).await
    }
    async fn delete(&self, path: &ObjectPath) -> ibs_storage::Result<()> {
        self.inner.delete(path).await
    }
    async fn delete_dir(&self, path: &ObjectPath) -> ibs_storage::Result<()> {
        self.inner.delete_dir(path).await
    }
}

#[tokio::test]
async fn reading_one_entry_uses_range_reads_not_the_whole_archive() {
    let dir = tempfile::tempdir().unwrap();
    let inner = local(dir.path());
    let big: Vec<u8> = ibs_testkit::data::multiplicative(12_000_000, 24);
    put_backup(
        &inner,
        &[&pair_a().cert],
        &[("key-vault", "big.bin", big), ("ca", "root.cer", b"root".to_vec())],
        T0,
        "1.0",
    )
    .await;
    let counting = Arc::new(Counting {
        inner,
        read: AtomicU64::new(0),
    });
    let target: Arc<dyn StorageTarget> = counting.clone();
    let r = recovery(&target);
    let cat = r.catalogue().await.unwrap();
    let size = cat.backups[0].size;
    let b = r.open(&cat.backups[0], &[&pair_a().identity]).await.unwrap();
    let before = counting.read.load(Ordering::Relaxed);
    assert_eq!(
        b.read(&b.find("ca", "root.cer").await.unwrap().unwrap()).await.unwrap(),
        b"root"
    );
    let used = counting.read.load(Ordering::Relaxed) - before;
    assert!(
        used < 2 << 20,
        "read {used} bytes of a {size}-byte backup for a 4-byte entry"
    );
}

#[test]
fn the_blocking_api_reads_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = local(dir.path());
    rt.block_on(put_backup(&target, &[&pair_a().cert], &sample(), T0, "1.2408.0"));
    let mut recovery = blocking::Recovery::local(dir.path(), FQDN, REGION).unwrap();
    *recovery.inner_mut() = recovery
        .inner_mut()
        .clone()
        .instance_version("1.2409.0".parse().unwrap());
    assert_eq!(recovery.catalogue().unwrap().backups.len(), 1);
    let backup = recovery.open(&Choice::Newest, &[&pair_a().identity]).unwrap();
    assert_eq!(backup.read("ca", "root.cer").unwrap(), [0x30, 0x82, 0x01, 0x0a]);
    assert_eq!(backup.verify().unwrap().entries, 5 + 4);
    let out = tempfile::tempdir().unwrap();
    let report = backup.restore_to(out.path(), &RestoreOptions::default()).unwrap();
    assert_eq!(report.files, 5);
    let err = backup.read("ca", "missing").unwrap_err();
    assert!(err.to_string().contains("no entry ca/missing"), "{err}");
}

#[tokio::test]
async fn a_failing_target_keeps_its_failure_class() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    put_backup(&target, &[&pair_a().cert], &[("a", "b", b"x".to_vec())], T0, "1.0").await;
    let r = recovery(&target);
    let cat = r.catalogue().await.unwrap();
    let b = r.open(&cat.backups[0], &[&pair_a().identity]).await.unwrap();
    let entry = b.find("a", "b").await.unwrap().unwrap();
    // The share loses the archive after it was opened.
    target.delete(&cat.backups[0].paths.archive).await.unwrap();
    let err = b.read(&entry).await.unwrap_err();
    assert_eq!(err.storage_kind(), Some(ErrorKind::PathNotFound), "{err}");
}

#[tokio::test]
async fn a_manifest_that_disagrees_with_its_id_header_or_instance_is_damaged() {
    use ibs_storage::StorageTargetExt;
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let id = put_backup(&target, &[&pair_a().cert], &sample(), T0, "1.0").await;
    let paths = BackupPaths::new(&instance(), &id).unwrap();
    let original = target.read_all(&paths.manifest).await.unwrap();
    let text = String::from_utf8(original.to_vec()).unwrap();
    for (from, to, why) in [
        (
            format!("created: {T0}"),
            format!("created: {}", T0 - 30 * DAY),
            "creation time",
        ),
        (
            "fqdn: azs.contoso.com".to_owned(),
            "fqdn: evil.example".to_owned(),
            "instance",
        ),
        ("region: local".to_owned(), "region: west".to_owned(), "instance"),
    ] {
        assert!(text.contains(&from), "{text}");
        let changed = text.replace(&from, &to);
        target.delete(&paths.manifest).await.unwrap();
        target
            .put_bytes(
                &paths.manifest,
                changed.into_bytes().into(),
                ibs_storage::CommitMode::CreateNew,
            )
            .await
            .unwrap();
        let cat = recovery(&target).catalogue().await.unwrap();
        let b = cat.get(id.as_str()).unwrap();
        assert_eq!(b.state, BackupState::Damaged, "{to}");
        assert!(b.problem.as_deref().unwrap().contains(why), "{:?}", b.problem);
    }
}

#[tokio::test]
async fn a_source_named_like_a_staging_folder_is_not_restored_and_names_are_escaped_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let evil = "x\n\u{1b}[2Kibs: backup verified OK";
    put_backup(
        &target,
        &[&pair_a().cert],
        &[
            (".ibs-restore-0123456789abcdef", "data", b"d".to_vec()),
            ("ok", evil, b"e".to_vec()),
        ],
        T0,
        "1.0",
    )
    .await;
    let b = recovery(&target)
        .open_choice(&Choice::Newest, &[&pair_a().identity])
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    // The restore's own staging names are not a source it writes (the next
    // restore would take the folder for its leftovers).
    let err = b.restore_to(out.path(), &RestoreOptions::default()).await.unwrap_err();
    assert!(matches!(err, RecoveryError::UnsafePath { .. }), "{err}");
    assert!(walk(out.path()).is_empty());
    // A name with a newline and an escape sequence: shown escaped in messages.
    let only_ok = RestoreOptions::default().sources(["ok"]);
    b.restore_to(out.path(), &only_ok).await.unwrap();
    let again = b.restore_to(out.path(), &only_ok).await.unwrap_err();
    let text = again.to_string();
    assert!(matches!(again, RecoveryError::Exists(_)), "{text}");
    assert!(!text.contains('\u{1b}') && !text.contains('\n'), "{text:?}");
    assert!(text.contains("x\\n\\x1b[2K"), "{text:?}");
}

/// Every call of a progress callback, in order.
fn recorder() -> (
    ibs_archive::ProgressFn,
    Arc<std::sync::Mutex<Vec<ibs_archive::Progress>>>,
) {
    let calls: Arc<std::sync::Mutex<Vec<ibs_archive::Progress>>> = Arc::default();
    let log = Arc::clone(&calls);
    (
        Arc::new(move |p: &ibs_archive::Progress| log.lock().unwrap().push(*p)),
        calls,
    )
}

fn assert_grows(calls: &[ibs_archive::Progress]) {
    assert!(!calls.is_empty());
    for w in calls.windows(2) {
        assert!(
            w[1].bytes_in >= w[0].bytes_in
                && w[1].bytes_out >= w[0].bytes_out
                && w[1].entries_done >= w[0].entries_done,
            "{w:?}"
        );
    }
}

#[tokio::test]
async fn check_verify_and_restore_report_progress_up_to_totals_known_before_they_start() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let mut entries = sample();
    // One file too large to restore from memory: restored piece by piece.
    let large: Vec<u8> = (0..9u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    entries.push(("identity", "large.bin", large));
    put_backup(&target, &[&pair_a().cert], &entries, T0, "1.2408.0.21").await;
    let r = recovery(&target);
    let cat = r.catalogue().await.unwrap();
    let info = &cat.backups[0];

    // Keyless check: archive bytes read, up to the archive's size.
    let (p, calls) = recorder();
    r.check_integrity_with_progress(info, Some(&p)).await.unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_grows(&calls);
    assert_eq!(Some(calls.last().unwrap().bytes_out), info.archive_size());

    // Verify: both passes, up to twice the archive's size, every entry and byte.
    let backup = r.open(info, &[&pair_a().identity]).await.unwrap();
    let (p, calls) = recorder();
    let report = backup.verify(Some(&p)).await.unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_grows(&calls);
    let last = calls.last().unwrap();
    assert_eq!(Some(backup.verify_len()), info.archive_size().map(|n| 2 * n));
    assert_eq!(last.bytes_out, backup.verify_len());
    assert_eq!(last.entries_done, report.entries);
    assert_eq!(last.bytes_in, backup.archive().data_len());

    // Restore of some sources: the others are checked and counted too, so
    // the totals are the backup's, known before the restore starts.
    let out = tempfile::tempdir().unwrap();
    let (p, calls) = recorder();
    let restored = backup
        .restore_to(out.path(), &RestoreOptions::default().sources(["identity"]).progress(p))
        .await
        .unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_grows(&calls);
    let last = calls.last().unwrap();
    assert_eq!(last.entries_done, backup.archive().entry_count());
    assert_eq!(last.bytes_in, backup.archive().data_len());
    assert_eq!(last.bytes_out, restored.bytes);
    // The large file reported more than once while it was written.
    assert!(
        calls.len() as u64 > backup.archive().entry_count() + 1,
        "{}",
        calls.len()
    );
}

#[tokio::test]
async fn a_restore_destination_that_is_a_file_says_it_must_be_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    put_backup(&target, &[&pair_a().cert], &sample(), T0, "1.0").await;
    let b = recovery(&target)
        .open_choice(&Choice::Newest, &[&pair_a().identity])
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("locfile");
    std::fs::write(&file, b"not a folder").unwrap();

    // The destination itself is a file.
    let err = b.restore_to(&file, &RestoreOptions::default()).await.unwrap_err();
    assert!(matches!(err, RecoveryError::DestinationNotAFolder { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("the restore destination must be a folder"), "{text}");
    assert!(text.contains(&file.display().to_string()), "names the path: {text}");
    assert!(!text.contains("File exists"), "{text}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder", "the file is untouched");

    // A folder under a file: the file is named.
    let under = file.join("restore");
    let err = ibs_recovery::RestoreLock::acquire(&under).await.unwrap_err();
    assert!(matches!(err, RecoveryError::DestinationNotAFolder { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&under.display().to_string()), "{text}");
    assert!(text.contains(&format!("under {}", file.display())), "{text}");

    // A folder, existing or not, is still fine.
    ibs_recovery::RestoreLock::acquire(&out.path().join("new/folder"))
        .await
        .unwrap();
}

/// A name in the way in the last source stops the restore before any source
/// is placed: the earlier sources are not left behind (where they would
/// stand in the way of the next attempt), and the error names the entry.
#[tokio::test]
async fn a_conflict_in_one_source_places_no_source() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    put_backup(
        &target,
        &[&pair_a().cert],
        &[
            ("ca", "root.cer", b"cert".to_vec()),
            ("identity", "users.json", b"[]".to_vec()),
            ("rbac", "sub/roles.json", b"{}".to_vec()),
        ],
        T0,
        "1.0",
    )
    .await;
    let b = recovery(&target)
        .open_choice(&Choice::Newest, &[&pair_a().identity])
        .await
        .unwrap();
    for (what, make) in [
        (
            "a file",
            Box::new(|out: &std::path::Path| {
                std::fs::create_dir_all(out.join("rbac/sub")).unwrap();
                std::fs::write(out.join("rbac/sub/roles.json"), b"mine").unwrap();
            }) as Box<dyn Fn(&std::path::Path)>,
        ),
        (
            "a file where a folder goes",
            Box::new(|out: &std::path::Path| {
                std::fs::create_dir_all(out.join("rbac")).unwrap();
                std::fs::write(out.join("rbac/sub"), b"mine").unwrap();
            }),
        ),
    ] {
        let out = tempfile::tempdir().unwrap();
        make(out.path());
        let err = b.restore_to(out.path(), &RestoreOptions::default()).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("rbac") && text.contains("sub"), "{what}: {text}");
        let mut left: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["rbac"], "{what}: only what was there before");
        // Once the name is out of the way, the same restore places all three.
        std::fs::remove_dir_all(out.path().join("rbac")).unwrap();
        b.restore_to(out.path(), &RestoreOptions::default()).await.unwrap();
        assert_eq!(std::fs::read(out.path().join("ca/root.cer")).unwrap(), b"cert");
        assert_eq!(std::fs::read(out.path().join("rbac/sub/roles.json")).unwrap(), b"{}");
    }
}
