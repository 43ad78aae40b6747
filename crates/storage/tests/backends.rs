//! The conformance suite on the local and in-memory backends, and the
//! local backend's failure classes produced by real faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use bytes::Bytes;
use ibs_storage::{
    CommitMode, ErrorKind, FaultPlan, FaultyTarget, LocalTarget, MemoryTarget, ObjectPath, ReadTarget, ReadTargetExt,
    StorageTarget, StorageTargetExt, conformance, conformance::skip_or_fail,
};

fn path(s: &str) -> ObjectPath {
    ObjectPath::parse(s).unwrap()
}

#[tokio::test]
async fn local_backend_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let target = LocalTarget::new(dir.path()).unwrap();
    conformance::run_all(&target, &path("suite")).await;
}

#[tokio::test]
async fn memory_backend_passes_the_conformance_suite() {
    conformance::run_all(&MemoryTarget::new(), &path("suite")).await;
    conformance::run_all(&MemoryTarget::with_capacity(1 << 30), &path("suite")).await;
}

#[tokio::test]
async fn unarmed_fault_wrapper_passes_the_conformance_suite() {
    let target = FaultyTarget::new(MemoryTarget::new(), FaultPlan::none());
    conformance::run_all(&target, &path("suite")).await;
    assert!(target.calls() > 20 && !target.tripped());
}

#[tokio::test]
async fn observed_wrapper_passes_the_conformance_suite_and_every_call_ends() {
    use std::sync::{Arc, Mutex};
    let pending: Arc<Mutex<std::collections::BTreeSet<u64>>> = Arc::default();
    let seen = Arc::clone(&pending);
    let inner: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let target = ibs_storage::ObservedTarget::new(inner).with_observer(Arc::new(move |e: &ibs_storage::CallEvent| {
        let mut pending = seen.lock().unwrap();
        match e.phase {
            ibs_storage::CallPhase::Started => assert!(pending.insert(e.id)),
            ibs_storage::CallPhase::Finished { .. } => assert!(pending.remove(&e.id)),
        }
    }));
    conformance::run_all(&target, &path("suite")).await;
    assert!(target.calls() > 20);
    assert!(pending.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_large_local_upload_with_write_behind_hints_commits_every_byte() {
    // 40 MiB in uneven chunks: several write-behind hints (every 16 MiB) run
    // while the upload goes on; the committed object is byte for byte what
    // was written, and an aborted large upload leaves nothing.
    let dir = tempfile::tempdir().unwrap();
    let target = LocalTarget::new(dir.path()).unwrap();
    target.create_dir_all(&path("big")).await.unwrap();
    let data: Vec<u8> = ibs_testkit::data::multiplicative(40 << 20, 13);
    let mut w = target.put(&path("big/archive"), CommitMode::CreateNew).await.unwrap();
    for chunk in data.chunks(1_000_003) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    let meta = w.commit().await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert!(std::fs::read(dir.path().join("big/archive")).unwrap() == data);

    let mut w = target.put(&path("big/aborted"), CommitMode::CreateNew).await.unwrap();
    for chunk in data.chunks(4 << 20).take(6) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    w.abort().await.unwrap();
    let listed = target.list_all(&path("big")).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[tokio::test]
async fn missing_location_is_a_path_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalTarget::new(dir.path().join("nope")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PathNotFound);
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    assert_eq!(
        LocalTarget::new(dir.path().join("file")).unwrap_err().kind(),
        ErrorKind::PathNotFound
    );
}

#[tokio::test]
async fn a_local_directory_words_its_own_remediation_and_bad_path_segments_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalTarget::new(dir.path().join("nope")).unwrap_err();
    let remediation = err.alert().remediation;
    assert!(
        remediation.contains("mounted") && !remediation.contains("share"),
        "{remediation}"
    );
    for bad in ["", "a/b", "..", "x\u{7}"] {
        let err = ObjectPath::root().child(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn memory_capacity_limit_is_out_of_capacity_and_leaves_nothing_committed() {
    let target = MemoryTarget::with_capacity(1000);
    target.create_dir_all(&path("a")).await.unwrap();
    let err = target
        .put_bytes(&path("a/big"), Bytes::from(vec![0u8; 1001]), CommitMode::CreateNew)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfCapacity);
    assert!(target.list_all(&path("a")).await.unwrap().is_empty());
    let cap = target.capacity().await.unwrap();
    assert_eq!((cap.free_bytes, cap.total_bytes), (Some(1000), Some(1000)));
}

#[tokio::test]
async fn local_capacity_matches_statvfs() {
    let dir = tempfile::tempdir().unwrap();
    let cap = LocalTarget::new(dir.path()).unwrap().capacity().await.unwrap();
    let (free, total) = (cap.free_bytes.unwrap(), cap.total_bytes.unwrap());
    // What the file system says, read the same moment (free space may move a little).
    let st = rustix::fs::statvfs(dir.path()).unwrap();
    let fs_total = st.f_blocks * st.f_frsize;
    let fs_avail = st.f_bavail * st.f_frsize;
    assert_eq!(total, fs_total);
    assert!(free.abs_diff(fs_avail) <= 64 << 20, "free {free}, statvfs {fs_avail}");
    assert!(free > 0 && total >= free);
}

/// A crash mid-upload leaves a partial object that lists as partial, never as committed.
#[tokio::test]
async fn crash_mid_upload_leaves_only_partial_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let target = FaultyTarget::new(
        LocalTarget::new(dir.path()).unwrap(),
        FaultPlan {
            leave_garbage: true,
            sticky: true,
            ..FaultPlan::cut_after_bytes(5000, ErrorKind::Connectivity)
        },
    );
    target.create_dir_all(&path("b")).await.unwrap();
    let mut w = target.put(&path("b/archive"), CommitMode::CreateNew).await.unwrap();
    w.write(Bytes::from(vec![1u8; 4096])).await.unwrap();
    let err = w.write(Bytes::from(vec![2u8; 4096])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connectivity);
    assert!(target.tripped());
    // Sticky: the "dead connection" refuses everything afterwards.
    assert!(target.head(&path("b/archive")).await.is_err());
    // tokio's File finishes an accepted write on the blocking pool, so the
    // forgotten upload's last bytes may land a moment later: wait, bounded.
    let mut listed = target.inner().list_all(&path("b")).await.unwrap();
    for _ in 0..100 {
        if listed.len() == 1 && listed[0].size == 5000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        listed = target.inner().list_all(&path("b")).await.unwrap();
    }
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].partial && listed[0].path != path("b/archive"));
    assert_eq!(listed[0].size, 5000);
    assert_eq!(
        target.inner().head(&path("b/archive")).await.unwrap_err().kind(),
        ErrorKind::PathNotFound
    );
}

#[tokio::test]
async fn fault_at_each_call_is_reported_with_its_class() {
    let target = FaultyTarget::new(MemoryTarget::new(), FaultPlan::none());
    let job = |t: FaultyTarget<MemoryTarget>| async move {
        t.create_dir_all(&path("j")).await?;
        t.put_bytes(&path("j/x"), Bytes::from_static(b"abc"), CommitMode::Overwrite)
            .await?;
        t.read_all(&path("j/x")).await
    };
    job(target.clone()).await.unwrap();
    let calls = target.calls();
    assert!(calls >= 5, "{calls}");
    for n in 1..=calls {
        for kind in ErrorKind::ALL {
            target.rearm(FaultPlan::crash_at_call(n, kind));
            let err = job(target.clone()).await.unwrap_err();
            assert_eq!(err.kind(), kind, "call {n}");
            assert!(err.to_string().contains("injected"), "{err}");
        }
    }
}

/// A real full filesystem: a tmpfs the test mounts (needs root).
#[tokio::test]
async fn full_tmpfs_is_out_of_capacity_and_nothing_partial_is_committed() {
    let mount = match TmpfsMount::new("256k") {
        Ok(mount) => mount,
        Err(why) => return skip_or_fail(&why),
    };
    let target = LocalTarget::new(&mount.path).unwrap();
    let cap = target.capacity().await.unwrap();
    assert_eq!(cap.total_bytes, Some(256 * 1024));
    target.create_dir_all(&path("MASBackup")).await.unwrap();
    target
        .put_bytes(
            &path("MASBackup/old"),
            Bytes::from(vec![7u8; 64 * 1024]),
            CommitMode::CreateNew,
        )
        .await
        .unwrap();
    let mut w = target.put(&path("MASBackup/new"), CommitMode::CreateNew).await.unwrap();
    let mut err = None;
    for _ in 0..16 {
        if let Err(e) = w.write(Bytes::from(vec![1u8; 64 * 1024])).await {
            err = Some(e);
            break;
        }
    }
    let err = match err {
        Some(e) => e,
        None => w.commit().await.unwrap_err(),
    };
    assert_eq!(err.kind(), ErrorKind::OutOfCapacity, "{err}");
    assert!(err.alert().remediation.contains("oldest"));
    let listed = target.list_all(&path("MASBackup")).await.unwrap();
    assert_eq!(
        listed.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(),
        ["MASBackup/old"],
        "{listed:?}"
    );
    assert_eq!(target.read_all(&path("MASBackup/old")).await.unwrap().len(), 64 * 1024);
}

struct TmpfsMount {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size`, or says why it cannot.
    fn new(size: &str) -> Result<Self, String> {
        if !ibs_testkit::is_root() {
            return Err("not root: cannot mount a tmpfs".into());
        }
        let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !status.success() {
            return Err(format!("mount -t tmpfs failed ({status}): no CAP_SYS_ADMIN?"));
        }
        Ok(TmpfsMount {
            path: dir.path().to_owned(),
            _dir: dir,
        })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.path).status();
    }
}
