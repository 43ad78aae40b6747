//! The object-store backend against a real Azurite (and `object_store`'s
//! in-memory store): the conformance suite, conditional commits, and each
//! failure class from a real emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ibs_storage::{
    CommitMode, ErrorKind, ObjectPath, ReadTarget, ReadTargetExt, StorageTarget, StorageTargetExt, conformance,
};
use ibs_storage_object::testing::{Azurite, AzuriteOptions};
use ibs_storage_object::{FOLDER_MARKER, ObjectOptions, ObjectTarget};
use object_store::ObjectStoreExt;

fn path(s: &str) -> ObjectPath {
    ObjectPath::parse(s).unwrap()
}

/// Deterministic incompressible-looking bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn small_parts() -> ObjectOptions {
    ObjectOptions::default().part_size(5 << 20).parts_in_flight(2)
}

/// Quick bounds so failure tests end fast.
fn impatient() -> ObjectOptions {
    small_parts()
        .timeout(Duration::from_secs(4))
        .connect_timeout(Duration::from_secs(1))
        .max_retries(2)
        .retry_timeout(Duration::from_secs(2))
}

async fn azurite_with(container: &str, options: AzuriteOptions) -> Azurite {
    let azurite = Azurite::start(options).expect("start azurite");
    azurite.create_container(container).await.expect("create container");
    azurite
}

#[tokio::test]
async fn conformance_in_memory() {
    let store = Arc::new(object_store::memory::InMemory::new());
    let target = ObjectTarget::with_store(store, "memory://", &path("prefix"), small_parts());
    conformance::run_all(&target, &path("conformance")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_against_azurite() {
    let azurite = azurite_with("ibs", AzuriteOptions::default()).await;
    let target = azurite.target("ibs", "lab/west", small_parts());
    assert_eq!(target.to_string(), "az://ibs/lab/west");
    conformance::run_all(&target, &path("conformance")).await;
    // Capacity is unknown, never invented.
    let capacity = target.capacity().await.unwrap();
    assert_eq!((capacity.free_bytes, capacity.total_bytes), (None, None));
    // The prefix is honoured: everything lives under lab/west in the container.
    let raw = azurite.target("ibs", "", small_parts());
    let all = raw.list_all(&ObjectPath::root()).await.unwrap();
    assert!(!all.is_empty());
    assert!(
        all.iter().all(|m| m.path.as_str().starts_with("lab/west/conformance/")),
        "{all:?}"
    );
    // Folder markers exist in the store but are never listed.
    let markers = raw
        .store()
        .head(&object_store::path::Path::from(format!(
            "lab/west/conformance/round_trip/{FOLDER_MARKER}"
        )))
        .await;
    assert!(markers.is_ok(), "{markers:?}");
    assert!(all.iter().all(|m| m.path.name() != Some(FOLDER_MARKER)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_streams_and_reads_back_by_range() {
    let azurite = azurite_with("big", AzuriteOptions::default()).await;
    let target = azurite.target("big", "", small_parts());
    target.create_dir_all(&path("a")).await.unwrap();
    let data = noise(23 << 20, 5);
    let mut upload = target.put(&path("a/archive"), CommitMode::CreateNew).await.unwrap();
    for chunk in data.chunks(1 << 20) {
        upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    // Not visible before the commit, even with parts already sent.
    assert_eq!(
        target.head(&path("a/archive")).await.unwrap_err().kind(),
        ErrorKind::PathNotFound
    );
    assert!(target.list_all(&path("a")).await.unwrap().is_empty());
    let meta = upload.commit().await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(target.head(&path("a/archive")).await.unwrap().size, data.len() as u64);
    for (start, end) in [
        (0usize, 1usize),
        (5 << 20, (5 << 20) + 1),
        (1234, 9_999_999),
        (data.len() - 7, data.len()),
    ] {
        let got = target
            .read_range(&path("a/archive"), start as u64..end as u64)
            .await
            .unwrap();
        assert_eq!(&got[..], &data[start..end], "{start}..{end}");
    }
    assert_eq!(&target.read_all(&path("a/archive")).await.unwrap()[..], &data[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_new_never_overwrites_another_writer() {
    let azurite = azurite_with("race", AzuriteOptions::default()).await;
    let target = azurite.target("race", "", small_parts());
    target.create_dir_all(&path("b")).await.unwrap();
    // Small objects (a manifest): two uploads started, both commit; exactly
    // one wins, by the store's conditional put.
    for (name, len) in [("b/manifest", 300usize), ("b/archive", 11 << 20)] {
        let mut first = target.put(&path(name), CommitMode::CreateNew).await.unwrap();
        let mut second = target.put(&path(name), CommitMode::CreateNew).await.unwrap();
        first.write(Bytes::from(noise(len, 1))).await.unwrap();
        second.write(Bytes::from(noise(len, 2))).await.unwrap();
        first.commit().await.unwrap();
        let err = second.commit().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{name}: {err}");
        assert_eq!(
            &target.read_all(&path(name)).await.unwrap()[..],
            &noise(len, 1)[..],
            "{name}"
        );
    }
    // Overwrite replaces.
    target
        .put_bytes(&path("b/manifest"), Bytes::from_static(b"new"), CommitMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(
        target.read_all(&path("b/manifest")).await.unwrap(),
        Bytes::from_static(b"new")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_an_authentication_failure() {
    let azurite = azurite_with("auth", AzuriteOptions::default()).await;
    let wrong = "d3JvbmcgYWNjb3VudCBrZXkgZm9yIGlicyB0ZXN0cywgNjQgYnl0ZXMgbG9uZyBlbm91Z2ggdG8gbG9vaw==";
    let target = ObjectTarget::azure(
        azurite.builder_with_key(wrong),
        "auth",
        &ObjectPath::root(),
        impatient(),
    )
    .unwrap();
    let err = target.list_all(&ObjectPath::root()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    let err = target
        .put_bytes(&path("x"), Bytes::from_static(b"x"), CommitMode::CreateNew)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    assert!(
        !format!("{err} {err:?}").contains(wrong),
        "the key leaked into the error"
    );
    assert!(!format!("{target:?}").contains(wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_container_is_a_path_failure() {
    let azurite = azurite_with("exists", AzuriteOptions::default()).await;
    let target = azurite.target("no-such-container", "x", impatient());
    for err in [
        target.list_all(&ObjectPath::root()).await.unwrap_err(),
        target.head(&path("a")).await.unwrap_err(),
        target
            .put_bytes(&path("a"), Bytes::from_static(b"a"), CommitMode::CreateNew)
            .await
            .unwrap_err(),
        target.create_dir_all(&path("d")).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::PathNotFound, "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_emulator_is_out_of_capacity_and_commits_nothing() {
    let azurite = azurite_with(
        "full",
        AzuriteOptions {
            memory_limit_mb: Some(12),
        },
    )
    .await;
    let target = azurite.target("full", "", impatient());
    target.create_dir_all(&path("f")).await.unwrap();
    let mut upload = target.put(&path("f/big"), CommitMode::CreateNew).await.unwrap();
    let mut failure = None;
    for chunk in noise(40 << 20, 9).chunks(1 << 20) {
        if let Err(e) = upload.write(Bytes::copy_from_slice(chunk)).await {
            failure = Some(e);
            break;
        }
    }
    let err = match failure {
        Some(e) => e,
        None => upload.commit().await.unwrap_err(),
    };
    assert_eq!(err.kind(), ErrorKind::OutOfCapacity, "{err}");
    assert!(err.alert().remediation.contains("oldest"));
    assert!(target.list_all(&path("f")).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_emulator_is_a_connectivity_failure_within_the_bound() {
    let mut azurite = azurite_with("gone", AzuriteOptions::default()).await;
    let target = azurite.target("gone", "", impatient());
    target.create_dir_all(&path("g")).await.unwrap();
    azurite.stop();
    let started = Instant::now();
    for err in [
        target.list_all(&ObjectPath::root()).await.unwrap_err(),
        target.head(&path("g/x")).await.unwrap_err(),
        target.read_range(&path("g/x"), 0..10).await.unwrap_err(),
        target
            .put_bytes(&path("g/x"), Bytes::from_static(b"x"), CommitMode::CreateNew)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Connectivity, "{err}");
        assert!(err.is_retryable());
    }
    // Four operations, each bounded by the 4 s operation timeout.
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_emulator_times_out_as_connectivity() {
    let mut azurite = azurite_with("frozen", AzuriteOptions::default()).await;
    let target = azurite.target("frozen", "", impatient());
    target
        .put_bytes(&path("o"), Bytes::from_static(b"hello"), CommitMode::CreateNew)
        .await
        .unwrap();
    azurite.freeze().unwrap();
    let err = target.read_range(&path("o"), 0..5).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connectivity, "{err}");
    azurite.thaw().unwrap();
    assert_eq!(
        target.read_range(&path("o"), 0..5).await.unwrap(),
        Bytes::from_static(b"hello")
    );
    azurite.stop();
}

/// Two writers of one name committing at the same moment, several rounds.
/// A single-part upload (a manifest: a conditional put) has exactly one
/// winner every time. A multipart upload (an archive) checks, then
/// completes: both may succeed (see the crate docs) — but what is left is
/// always one writer's bytes, whole, and never a mix.
async fn racing_commits(target: &dyn StorageTarget, rounds: u64) {
    target.create_dir_all(&path("race")).await.unwrap();
    for round in 0..rounds {
        for (name, len, single) in [
            (format!("race/manifest{round}"), 300usize, true),
            (format!("race/archive{round}"), 11 << 20, false),
        ] {
            let (one, two) = (noise(len, 2 * round + 1), noise(len, 2 * round + 2));
            let mut first = target.put(&path(&name), CommitMode::CreateNew).await.unwrap();
            let mut second = target.put(&path(&name), CommitMode::CreateNew).await.unwrap();
            first.write(Bytes::from(one.clone())).await.unwrap();
            second.write(Bytes::from(two.clone())).await.unwrap();
            let (a, b) = tokio::join!(first.commit(), second.commit());
            let lost = |r: &ibs_storage::Result<ibs_storage::ObjectMeta>| {
                r.as_ref().is_err_and(|e| e.kind() == ErrorKind::AlreadyExists)
            };
            if single {
                assert!(
                    (a.is_ok() && lost(&b)) || (lost(&a) && b.is_ok()),
                    "{name}: exactly one conditional put wins: {a:?} {b:?}"
                );
            } else {
                // The loser may also fail otherwise: on Azure a block list
                // committed over a racing one is refused (InvalidBlockList),
                // its uncommitted blocks having been discarded.
                assert!(a.is_ok() || b.is_ok(), "{name}: neither committed: {a:?} {b:?}");
            }
            let kept = target.read_all(&path(&name)).await.unwrap();
            let whole = kept[..] == one[..] || kept[..] == two[..];
            assert!(whole, "{name}: the object is not one writer's bytes, whole");
            if a.is_err() {
                assert!(kept[..] == two[..], "{name}: the loser's bytes are there");
            }
            if b.is_err() {
                assert!(kept[..] == one[..], "{name}: the loser's bytes are there");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_committing_one_name_at_once_on_azurite() {
    let azurite = azurite_with("race2", AzuriteOptions::default()).await;
    racing_commits(&azurite.target("race2", "", small_parts()), 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_committing_one_name_at_once_on_moto_s3() {
    let mut moto = ibs_storage_object::testing::MotoS3::start().expect("start moto_server");
    moto.create_bucket("race").await.unwrap();
    racing_commits(&moto.target("race", "lab", small_parts()), 4).await;
    moto.stop();
}
