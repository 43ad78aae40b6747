//! The SMB backend against a real Samba server on loopback: the conformance
//! suite, encryption, and every failure class from a real fault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use ibs_storage::{
    CommitMode, ErrorKind, ObjectPath, ReadTarget, ReadTargetExt, StorageTarget, StorageTargetExt, conformance,
};
use ibs_storage_smb::testing::{SambaOptions, SambaServer};
use ibs_storage_smb::{Encryption, SmbCredentials, SmbTarget};

/// Whether `smbstatus -b` shows an encrypted session (the Encryption column
/// names a cipher such as AES-128-GCM; the Signing column's AES-128-GMAC does not count).
fn encrypted(status: &str) -> bool {
    status.contains("-GCM") || status.contains("-CCM")
}

fn p(s: &str) -> ObjectPath {
    ObjectPath::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_over_an_encrypted_session() {
    let server = SambaServer::start(SambaOptions::default()).unwrap();
    let target = SmbTarget::new(server.config()).unwrap();
    conformance::run_all(&target, &p("conformance")).await;
    // The session the suite used is encrypted (the server offers it; we request it).
    let status = server.smbstatus().unwrap();
    assert!(encrypted(&status), "session not encrypted:\n{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_encryption_is_used_unencrypted() {
    let server = SambaServer::start(SambaOptions {
        encrypt: "off",
        ..SambaOptions::default()
    })
    .unwrap();
    let target = SmbTarget::new(server.config().encryption(Encryption::Request)).unwrap();
    target
        .put_bytes(&p("a.bin"), Bytes::from_static(b"x"), CommitMode::CreateNew)
        .await
        .unwrap();
    assert_eq!(target.read_all(&p("a.bin")).await.unwrap(), &b"x"[..]);
    let status = server.smbstatus().unwrap();
    assert!(
        !encrypted(&status) && status.contains("SMB3"),
        "unexpected encryption:\n{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streaming_writes_survive_sync_always() {
    // `sync always = yes` makes the server answer writes with STATUS_PENDING
    // first: the case that deadlocked another client library.
    let server = SambaServer::start(SambaOptions {
        sync_always: true,
        ..SambaOptions::default()
    })
    .unwrap();
    let target = SmbTarget::new(server.config()).unwrap();
    let data: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut w = target.put(&p("big.bin"), CommitMode::CreateNew).await.unwrap();
    for piece in data.chunks(3 << 20) {
        w.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    let meta = w.commit().await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(std::fs::read(server.share_dir().join("big.bin")).unwrap(), data);
    let mid = target.read_range(&p("big.bin"), 10_000_000..10_000_100).await.unwrap();
    assert_eq!(&mid[..], &data[10_000_000..10_000_100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_matches_the_file_system_under_the_share() {
    let server = SambaServer::start(SambaOptions {
        tmpfs_bytes: Some(64 << 20),
        ..SambaOptions::default()
    })
    .unwrap();
    let target = SmbTarget::new(server.config()).unwrap();
    let cap = target.capacity().await.unwrap();
    assert_eq!(cap.total_bytes, Some(64 << 20), "{cap:?}");
    assert!(cap.free_bytes.unwrap() > 60 << 20, "{cap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_share_is_out_of_capacity_and_nothing_partial_is_listed_as_committed() {
    let server = SambaServer::start(SambaOptions {
        tmpfs_bytes: Some(8 << 20),
        ..SambaOptions::default()
    })
    .unwrap();
    let target = SmbTarget::new(server.config()).unwrap();
    let mut w = target.put(&p("backup/too-big.ibs"), CommitMode::CreateNew).await;
    if w.is_err() {
        target.create_dir_all(&p("backup")).await.unwrap();
        w = target.put(&p("backup/too-big.ibs"), CommitMode::CreateNew).await;
    }
    let mut w = w.unwrap();
    let chunk = Bytes::from(vec![7u8; 1 << 20]);
    let mut failure = None;
    for _ in 0..32 {
        if let Err(e) = w.write(chunk.clone()).await {
            failure = Some(e);
            break;
        }
    }
    let err = match failure {
        Some(e) => e,
        None => w.commit().await.unwrap_err(),
    };
    assert_eq!(err.kind(), ErrorKind::OutOfCapacity, "{err}");
    assert_eq!(err.alert().kind, ErrorKind::OutOfCapacity, "{err}");
    let listed = target.list_all(&p("backup")).await.unwrap();
    assert!(
        listed.iter().all(|m| m.partial || m.path != p("backup/too-big.ibs")),
        "{listed:?}"
    );
    assert!(target.head(&p("backup/too-big.ibs")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_authentication_failure() {
    let server = SambaServer::start(SambaOptions::default()).unwrap();
    let wrong = ibs_storage_smb::SmbConfig::new("127.0.0.1", "backup", SmbCredentials::new("", "root", "wrong"))
        .port(server.port())
        .timeout(std::time::Duration::from_secs(5));
    let target = SmbTarget::new(wrong).unwrap();
    let err = target.list_all(&ObjectPath::root()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    assert!(err.to_string().contains("refused the login"), "{err}");
    // The password never appears in errors or Debug output.
    assert!(!err.to_string().contains("wrong") && !format!("{target:?}").contains("wrong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_share_and_a_missing_folder_are_path_failures_told_apart() {
    let server = SambaServer::start(SambaOptions::default()).unwrap();
    let no_share = ibs_storage_smb::SmbConfig::new("127.0.0.1", "nosuchshare", server.credentials())
        .port(server.port())
        .timeout(std::time::Duration::from_secs(5));
    let err = SmbTarget::new(no_share).unwrap().head(&p("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PathNotFound, "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");

    let target = SmbTarget::new(server.config()).unwrap();
    let err = target.head(&p("no/such/folder/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PathNotFound, "{err}");
    assert!(err.to_string().contains("no such file"), "{err}");
    let err = target
        .put(&p("no/such/folder/x"), CommitMode::CreateNew)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PathNotFound, "{err}");
}
