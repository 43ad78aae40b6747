//! The fault injector's lost replies: the call takes effect, the caller sees the error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use ibs_storage::{
    CommitMode, ErrorKind, FaultPlan, FaultyTarget, MemoryTarget, ObjectPath, ReadTarget, ReadTargetExt, StorageTarget,
    StorageTargetExt,
};

fn path(p: &str) -> ObjectPath {
    ObjectPath::parse(p).unwrap()
}

#[tokio::test]
async fn a_lost_reply_reports_the_error_after_the_call_took_effect() {
    let memory = MemoryTarget::new();
    let faulty = FaultyTarget::new(memory.clone(), FaultPlan::none());
    faulty.create_dir_all(&path("d")).await.unwrap();

    // put_bytes is put (1), write (2), commit (3): the commit's reply is lost.
    faulty.rearm(FaultPlan::lost_reply_at_call(3, ErrorKind::Connectivity));
    let err = faulty
        .put_bytes(&path("d/a"), Bytes::from_static(b"committed"), CommitMode::CreateNew)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connectivity);
    assert!(faulty.tripped());
    assert_eq!(memory.read_all(&path("d/a")).await.unwrap(), &b"committed"[..]);
    // Not sticky: the next call goes through.
    assert_eq!(faulty.read_all(&path("d/a")).await.unwrap(), &b"committed"[..]);

    // A delete whose reply is lost has deleted; deleting again succeeds.
    faulty.rearm(FaultPlan::lost_reply_at_call(1, ErrorKind::Other));
    assert_eq!(faulty.delete(&path("d/a")).await.unwrap_err().kind(), ErrorKind::Other);
    assert!(memory.head(&path("d/a")).await.is_err());
    faulty.delete(&path("d/a")).await.unwrap();

    // A put whose reply is lost: the caller never gets the upload, nothing is left.
    faulty.rearm(FaultPlan::lost_reply_at_call(1, ErrorKind::Authentication));
    assert!(faulty.put(&path("d/b"), CommitMode::CreateNew).await.is_err());
    assert!(memory.list_all(&path("d")).await.unwrap().is_empty());

    // When the call itself fails, its own error is reported.
    faulty.rearm(FaultPlan::lost_reply_at_call(1, ErrorKind::Connectivity));
    let err = faulty.head(&path("d/missing")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PathNotFound);
}
