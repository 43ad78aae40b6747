//! Envelope encryption through a storage target and back: data sealed to the
//! fixture certificate, streamed to a local directory, read back chunk by chunk
//! with range reads, and opened with every fixture `.pfx`; then retention
//! planned over a shared location and executed, leaving OEM and other
//! instances' folders alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use bytes::Bytes;
use ibs_envelope::fuzzing::StreamSealer;
use ibs_envelope::{
    Certificate, FileKey, Identity, Password, PayloadKey, TAG_LEN, generate_salt, unwrap_file_key, wrap_file_key,
};
use ibs_repository::InstanceLayout;
use ibs_retention::{BackupRecord, BackupState, CapacityFacts, Policy, plan};
use ibs_storage::{CommitMode, LocalTarget, MemoryTarget, ReadTarget, ReadTargetExt, StorageTarget, StorageTargetExt};

use ibs_testkit::keys::read_fixture as fixture;

#[tokio::test]
async fn sealed_chunks_stream_to_a_local_target_and_open_with_every_fixture_pfx() {
    let dir = tempfile::tempdir().unwrap();
    let target = LocalTarget::new(dir.path()).unwrap();
    let layout = InstanceLayout::new("azurestack.contoso.com", "westus").unwrap();
    let folder = layout.backup_root().child("b1").unwrap();
    target.create_dir_all(&folder).await.unwrap();

    let recipient = Certificate::parse(&fixture("ValidCertificatePathTest1EE.cer.pem")).unwrap();
    let file_key = FileKey::generate().unwrap();
    let stanzas = wrap_file_key(&file_key, &[&recipient]).unwrap();
    let salt = generate_salt().unwrap();
    let key = PayloadKey::derive(&file_key, &salt);

    const CHUNK: usize = 64 * 1024;
    let plaintext: Vec<u8> = (0..(10 * CHUNK + 123)).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<&[u8]> = plaintext.chunks(CHUNK).collect();
    let mut upload = target
        .put(&folder.child("data").unwrap(), CommitMode::CreateNew)
        .await
        .unwrap();
    let mut sealer = StreamSealer::new(&key);
    for (i, chunk) in chunks.iter().enumerate() {
        let mut buf = chunk.to_vec();
        sealer.seal_next(i + 1 == chunks.len(), b"b1", &mut buf).unwrap();
        upload.write(Bytes::from(buf)).await.unwrap();
    }
    upload.commit().await.unwrap();
    let stored = target.read_all(&folder.child("data").unwrap()).await.unwrap();
    assert!(
        !stored.windows(32).any(|w| w == &plaintext[..32]),
        "plaintext reached the target"
    );

    for pfx in [
        "ValidCertificatePathTest1EE_windows_aes.p12.pfx",
        "ValidCertificatePathTest1EE_windows_tdes.p12.pfx",
        "ValidCertificatePathTest1EE_macos.p12",
        "ValidCertificatePathTest1EE_firefox.p12",
        "ValidCertificatePathTest1EE.p12",
    ] {
        let identity = Identity::from_pkcs12(&fixture(pfx), &Password::new("password")).unwrap();
        let recovered = unwrap_file_key(&stanzas, &[&identity]).unwrap();
        let key = PayloadKey::derive(&recovered, &salt);
        // Random access: chunk 7 alone, by a range read.
        let sealed_len = (CHUNK + TAG_LEN) as u64;
        let mut c7 = target
            .read_range(&folder.child("data").unwrap(), 7 * sealed_len..8 * sealed_len)
            .await
            .unwrap()
            .to_vec();
        key.open_chunk(7, false, b"b1", &mut c7).unwrap();
        assert_eq!(c7, chunks[7], "{pfx}");
        let last = (chunks.len() - 1) as u64;
        let mut tail = target
            .read_range(&folder.child("data").unwrap(), last * sealed_len..stored.len() as u64)
            .await
            .unwrap()
            .to_vec();
        key.open_chunk(last, true, b"b1", &mut tail).unwrap();
        assert_eq!(tail, *chunks.last().unwrap(), "{pfx}");
    }
}

#[tokio::test]
async fn a_retention_plan_executed_on_a_shared_location_touches_only_our_backups() {
    let target = MemoryTarget::new();
    let ours = InstanceLayout::new("azurestack.contoso.com", "westus").unwrap();
    let theirs = InstanceLayout::new("azurestack.contoso.com", "eastus").unwrap();
    let day = 86_400;
    let now = 2_000_000_000;
    let mut catalogue = Vec::new();
    for (layout, id, age) in [(&ours, "old", 10), (&ours, "new", 1), (&theirs, "their-old", 30)] {
        let folder = layout.backup_root().child(id).unwrap();
        target.create_dir_all(&folder).await.unwrap();
        target
            .put_bytes(
                &folder.child("archive").unwrap(),
                Bytes::from_static(b"x"),
                CommitMode::CreateNew,
            )
            .await
            .unwrap();
        catalogue.push(BackupRecord {
            id: id.into(),
            path: folder,
            created: now - age * day,
            size: 1,
            state: BackupState::Checked,
        });
    }
    let hlh = ours.oem_folder("HLH").unwrap();
    target.create_dir_all(&hlh).await.unwrap();
    target
        .put_bytes(
            &hlh.child("bmc.cfg").unwrap(),
            Bytes::from_static(b"oem"),
            CommitMode::CreateNew,
        )
        .await
        .unwrap();

    let p = plan(&catalogue, now, &Policy::default(), &ours, &CapacityFacts::unknown());
    assert_eq!(p.deletions.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["old"]);
    for d in &p.deletions {
        target.delete_prefix(&d.path).await.unwrap();
    }
    let left: Vec<String> = target
        .list_all(&ibs_storage::ObjectPath::root())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path.as_str().to_owned())
        .collect();
    assert_eq!(
        left,
        [
            "azurestack.contoso.com/eastus/MASBackup/their-old/archive",
            "azurestack.contoso.com/westus/HLH/bmc.cfg",
            "azurestack.contoso.com/westus/MASBackup/new/archive",
        ]
    );
}
