//! Helpers of the recovery tests: key pairs, and backups written the way the
//! controller writes them (archive first, manifest last).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use bytes::Bytes;
use ibs_archive::fuzzing::format::{ArchiveKeys, COMPRESSION_ZSTD, DEFAULT_FRAME_SIZE, HeaderFields, Index};
use ibs_archive::{ArchiveId, ArchiveWriter, Entry, EntryMeta, Footer, WriterOptions};
use ibs_envelope::{Certificate, FileKey};
use ibs_repository::{BackupId, CommitDetails, InstanceLayout, RepositoryError, commit_backup};
use ibs_storage::{LocalTarget, StorageTarget};
use ibs_testkit::keys::{self, KeyPair};
use sha2::{Digest, Sha256};

pub const FQDN: &str = "azs.contoso.com";
pub const REGION: &str = "local";
pub const DAY: i64 = 86_400;
pub const T0: i64 = 1_763_769_600;

/// Two operator key pairs (made once per test binary).
pub fn pair_a() -> &'static KeyPair {
    keys::cached("operator key 2025", T0 - DAY)
}

pub fn pair_b() -> &'static KeyPair {
    keys::cached("operator key 2026", T0 - DAY)
}

pub fn instance() -> InstanceLayout {
    InstanceLayout::new(FQDN, REGION).unwrap()
}

pub fn local(dir: &std::path::Path) -> Arc<dyn StorageTarget> {
    Arc::new(LocalTarget::new(dir).unwrap())
}

/// A sample of infrastructure state: (source, path, data).
pub fn sample() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let users: String = (0..2000)
        .map(|i| format!("{{\"objectId\":\"{i:08x}\",\"upn\":\"user{i}@contoso.com\"}}\n"))
        .collect();
    vec![
        ("identity", "directory/users.json", users.into_bytes()),
        ("ca", "root.cer", vec![0x30, 0x82, 0x01, 0x0a]),
        (
            "resource-manager",
            "plans/gold.json",
            br#"{"plan":"gold","quota":"100 VMs"}"#.to_vec(),
        ),
        ("resource-manager", "offers/empty.json", Vec::new()),
        (
            "key-vault",
            "vaults/ops.bin",
            ibs_testkit::data::multiplicative(3_000_000, 24),
        ),
    ]
}

/// Writes a complete backup (archive, then manifest) and returns its id.
pub async fn put_backup(
    target: &Arc<dyn StorageTarget>,
    certs: &[&Certificate],
    entries: &[(&str, &str, Vec<u8>)],
    created: i64,
    version: &str,
) -> BackupId {
    let mut w = ArchiveWriter::new(
        Vec::new(),
        certs,
        WriterOptions::default()
            .created(created)
            .producer_version(version)
            .label("fqdn", FQDN)
            .label("region", REGION),
    )
    .unwrap();
    // The writer takes entries in (source, path) order.
    let mut sorted: Vec<&(&str, &str, Vec<u8>)> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        a.0.cmp(b.0)
            .then_with(|| ibs_archive::path_cmp(a.1.as_bytes(), b.1.as_bytes()))
    });
    for (source, path, data) in sorted {
        w.add_entry(EntryMeta::new(*source, *path), &data[..]).unwrap();
    }
    let (archive, summary) = w.finish().unwrap();
    put_archive(target, archive, summary.archive_id, certs, created, version).await
}

/// Puts raw archive bytes and a manifest that describes them.
pub async fn put_archive(
    target: &Arc<dyn StorageTarget>,
    archive: Vec<u8>,
    archive_id: ArchiveId,
    certs: &[&Certificate],
    created: i64,
    version: &str,
) -> BackupId {
    let id = BackupId::generate(created).unwrap();
    let details = CommitDetails {
        archive_id,
        producer_version: version.into(),
        recipients: certs.iter().map(|c| c.thumbprint()).collect(),
    };
    // Committed as the controller commits; a crafted archive may list as
    // damaged when read back, which is what its test is about.
    match commit_backup(target, &instance(), id.clone(), Bytes::from(archive), details).await {
        Ok(_) | Err(RepositoryError::NotComplete { .. }) => {}
        Err(e) => panic!("committing backup {id}: {e}"),
    }
    id
}

/// An archive built with the sans-IO core, bypassing the writer's name rules
/// (what a hostile or buggy producer could make). Returns bytes and id.
pub fn crafted_archive(cert: &Certificate, entries: &[(&str, &str, &[u8])], version: &str) -> (Vec<u8>, ArchiveId) {
    crafted_archive_with_wrong_hash(cert, entries, version, None)
}

/// [`crafted_archive`], the entry at `wrong_hash` (if any) recorded with a
/// SHA-256 its content does not have (its frame still authenticates).
pub fn crafted_archive_with_wrong_hash(
    cert: &Certificate,
    entries: &[(&str, &str, &[u8])],
    version: &str,
    wrong_hash: Option<usize>,
) -> (Vec<u8>, ArchiveId) {
    let file_key = FileKey::generate().unwrap();
    let salt = [3u8; 32];
    let keys = ArchiveKeys::derive(&file_key, &salt);
    let archive_id = ArchiveId([0xAB; 16]);
    let header = ibs_archive::fuzzing::seal_header(
        HeaderFields {
            archive_id,
            created: T0,
            frame_size: DEFAULT_FRAME_SIZE,
            compression: COMPRESSION_ZSTD,
            salt,
            commitment: *keys.commitment(),
            producer_version: version.into(),
            labels: Vec::new(),
            recipients: ibs_envelope::wrap_file_key(&file_key, &[cert]).unwrap(),
            // Version 1: what a hostile producer may still write, and readers read.
            version: ibs_archive::FORMAT_VERSION_1,
            signer: None,
        },
        &keys,
    )
    .unwrap();
    let digest = header.digest();
    let data: Vec<u8> = entries.iter().flat_map(|(_, _, d)| d.iter().copied()).collect();
    let mut out = header.as_bytes().to_vec();
    let mut index = Index {
        data_len: data.len() as u64,
        ..Index::default()
    };
    for (n, chunk) in data.chunks(DEFAULT_FRAME_SIZE as usize).enumerate() {
        let frame = keys.seal_chunk(&digest, n as u64, false, chunk, None).unwrap();
        index.frame_lens.push(frame.len() as u32);
        out.extend(frame);
    }
    let mut offset = 0;
    for (i, (source, path, d)) in entries.iter().enumerate() {
        let mut sha256: [u8; 32] = Sha256::digest(d).into();
        if wrong_hash == Some(i) {
            sha256[0] ^= 1;
        }
        let mut entry = Entry::file(*source, *path, d.len() as u64, sha256);
        entry.offset = offset;
        index.entries.push(entry);
        offset += d.len() as u64;
    }
    let frame_count = index.frame_lens.len() as u64;
    let index_offset = out.len() as u64;
    let sealed = keys
        .seal_chunk(&digest, frame_count, true, &index.encode(), None)
        .unwrap();
    let footer = Footer {
        index_offset,
        index_len: sealed.len() as u64,
        frame_count,
        archive_id,
    };
    out.extend(sealed);
    out.extend(footer.encode());
    (out, archive_id)
}
