//! Outages: a stopped server and a frozen one (`SIGSTOP`) give connectivity
//! errors within the configured bound, never a hang.
//!
//! Its own test binary, and its tests run one at a time: libsmbclient has one
//! global lock per process, so a call stuck on a frozen server delays every
//! other SMB call of the process until its own timeout fires.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use ibs_storage::{CommitMode, ErrorKind, ObjectPath, ReadTarget, ReadTargetExt, StorageTarget, StorageTargetExt};
use ibs_storage_smb::SmbTarget;
use ibs_storage_smb::testing::{SambaOptions, SambaServer};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BOUND: Duration = Duration::from_secs(3);

fn p(s: &str) -> ObjectPath {
    ObjectPath::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_connectivity_failure() {
    let _serial = SERIAL.lock().await;
    let mut server = SambaServer::start(SambaOptions::default()).unwrap();
    let target = SmbTarget::new(server.config().timeout(BOUND)).unwrap();
    target
        .put_bytes(&p("a"), Bytes::from_static(b"1"), CommitMode::CreateNew)
        .await
        .unwrap();
    server.stop().unwrap();
    for attempt in 0..2 {
        let err = target.head(&p("a")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connectivity, "attempt {attempt}: {err}");
        assert!(err.is_retryable());
    }
    // Never connected at all: connection refused.
    let fresh = SmbTarget::new(server.config().timeout(BOUND)).unwrap();
    let err = fresh.list_all(&ObjectPath::root()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connectivity, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_a_connectivity_failure_within_the_bound() {
    let _serial = SERIAL.lock().await;
    let server = SambaServer::start(SambaOptions::default()).unwrap();
    let target = SmbTarget::new(server.config().timeout(BOUND)).unwrap();
    target
        .put_bytes(&p("a"), Bytes::from_static(b"1"), CommitMode::CreateNew)
        .await
        .unwrap();
    let mut upload = target.put(&p("b"), CommitMode::CreateNew).await.unwrap();
    server.freeze().unwrap();
    // Every kind of call returns, classified, within the bound (plus slack for a
    // loaded machine); none hangs.
    let slack = BOUND * 3;
    let start = Instant::now();
    let err = target.read_all(&p("a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connectivity, "{err}");
    assert!(start.elapsed() < slack, "read took {:?}", start.elapsed());
    let start = Instant::now();
    let mut err = None;
    // An upload buffers up to one chunk; keep writing until a write must reach the server.
    for _ in 0..8 {
        if let Err(e) = upload.write(Bytes::from(vec![1u8; 4 << 20])).await {
            err = Some(e);
            break;
        }
    }
    let err = match err {
        Some(e) => e,
        None => upload.commit().await.unwrap_err(),
    };
    assert_eq!(err.kind(), ErrorKind::Connectivity, "{err}");
    assert!(start.elapsed() < slack * 3, "upload took {:?}", start.elapsed());
    let start = Instant::now();
    let err = target.list_all(&ObjectPath::root()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connectivity, "{err}");
    assert!(start.elapsed() < slack, "list took {:?}", start.elapsed());
    // Thawed, the server answers again (after libsmbclient's own timeouts drain).
    server.thaw().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match target.read_all(&p("a")).await {
            Ok(b) => {
                assert_eq!(&b[..], b"1");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.kind(), ErrorKind::Connectivity, "{e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("server did not come back: {e}"),
        }
    }
}

/// The seconds after `marker` in `text` (`… marker 3.1 s …`).
fn seconds_after(text: &str, marker: &str) -> f64 {
    let rest = &text[text.find(marker).unwrap_or_else(|| panic!("no {marker:?} in {text}")) + marker.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_names_the_bound_that_applied_and_keeps_it() {
    let _serial = SERIAL.lock().await;
    let bound = Duration::from_millis(1500);
    let slack = Duration::from_secs(2);
    let server = SambaServer::start(SambaOptions::default()).unwrap();
    let target = SmbTarget::new(server.config().timeout(bound)).unwrap();
    let mut upload = target.put(&p("stalled"), CommitMode::CreateNew).await.unwrap();
    server.freeze().unwrap();
    // A whole piece (4 MiB, the default write size): `write` returns at once
    // and the upload thread sends it in the background, where it stalls.
    let sent = Instant::now();
    upload.write(Bytes::from(vec![7u8; 4 << 20])).await.unwrap();
    assert!(sent.elapsed() < bound, "write took {:?}", sent.elapsed());
    // The caller takes a while to prepare the next piece. Meanwhile either
    // libsmbclient's own timeout (set to the same limit) fails the piece, or
    // it does not, and the next write waits out the limit itself.
    tokio::time::sleep(bound).await;
    let start = Instant::now();
    let err = upload.write(Bytes::from_static(b"next")).await.unwrap_err();
    let took = start.elapsed();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Connectivity, "{msg}");
    // This call kept the bound, and the text names the bound that applied…
    assert!(took < bound + slack, "write took {took:?}: {msg}");
    assert!(
        msg.contains("within 1.5 s, the time limit of each SMB operation"),
        "{msg}"
    );
    // …and says how long the stalled piece really had: at least the limit,
    // never more than it has been since it was written.
    assert!(msg.contains("4194304-byte piece"), "{msg}");
    let had = seconds_after(&msg, "had no answer for");
    assert!(
        had >= bound.as_secs_f64() - 0.15 && had <= sent.elapsed().as_secs_f64() + 0.05,
        "{msg} (written {:?} ago)",
        sent.elapsed()
    );
    // Aborting waits its own bound, no more.
    let start = Instant::now();
    let err = upload.abort().await.unwrap_err();
    let took = start.elapsed();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Connectivity, "{msg}");
    assert!(took >= bound && took < bound + slack, "abort took {took:?}: {msg}");
    assert!(
        msg.contains("within 1.5 s, the time limit of each SMB operation"),
        "{msg}"
    );
    server.thaw().unwrap();
}
