//! The object-store backend against a real S3 emulator (moto's server): the
//! conformance suite, conditional commits, a missing bucket and a stopped server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::time::Duration;

use bytes::Bytes;
use ibs_storage::{
    CommitMode, ErrorKind, ObjectPath, ReadTarget, ReadTargetExt, StorageTarget, StorageTargetExt, conformance,
};
use ibs_storage_object::ObjectOptions;
use ibs_storage_object::testing::MotoS3;

fn path(s: &str) -> ObjectPath {
    ObjectPath::parse(s).unwrap()
}

fn options() -> ObjectOptions {
    ObjectOptions::default()
        .part_size(5 << 20)
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(1))
        .max_retries(2)
        .retry_timeout(Duration::from_secs(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_conformance_conditional_commits_and_failures() {
    let mut moto = MotoS3::start().expect("start moto_server");
    moto.create_bucket("ibs-backups").await.unwrap();
    let target = moto.target("ibs-backups", "lab", options());
    assert_eq!(target.to_string(), "s3://ibs-backups/lab");
    conformance::run_all(&target, &path("conformance")).await;

    // CreateNew: the second writer of the same name loses, single-part
    // (conditional PUT) and multipart (checked before completion) alike.
    target.create_dir_all(&path("race")).await.unwrap();
    for (name, len) in [("race/manifest", 200usize), ("race/archive", 12 << 20)] {
        let mut first = target.put(&path(name), CommitMode::CreateNew).await.unwrap();
        let mut second = target.put(&path(name), CommitMode::CreateNew).await.unwrap();
        first.write(Bytes::from(vec![1u8; len])).await.unwrap();
        second.write(Bytes::from(vec![2u8; len])).await.unwrap();
        first.commit().await.unwrap();
        let err = second.commit().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{name}: {err}");
        let kept = target.read_all(&path(name)).await.unwrap();
        assert_eq!(kept.len(), len);
        assert!(
            kept.iter().all(|b| *b == 1),
            "{name}: the first writer's object was replaced"
        );
    }

    // A bucket that does not exist: the path class.
    let missing = moto.target("no-such-bucket", "", options());
    let err = missing.list_all(&ObjectPath::root()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PathNotFound, "{err}");
    let err = missing
        .put_bytes(&path("x"), Bytes::from_static(b"x"), CommitMode::CreateNew)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PathNotFound, "{err}");

    // The server is gone: connectivity, within the bounds.
    moto.stop();
    let err = target.head(&path("race/manifest")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connectivity, "{err}");
}
