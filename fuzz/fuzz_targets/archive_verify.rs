//! Opening and fully verifying an archive on arbitrary bytes: an error, never a
//! panic.
//!
//! Two modes, chosen by the input:
//! * input that starts with the archive magic is opened as it is with the test
//!   vectors' key (the seed corpus holds the vectors);
//! * any other input is treated as the *plaintext* of an index and data frames
//!   (split at `|` bytes), sealed with a known key into an archive whose every
//!   tag is valid, and then opened, verified and read: this is what a
//!   malicious or buggy producer holding a real key could hand a reader.
#![no_main]

use std::sync::OnceLock;

use futures::executor::block_on;
use ibs_archive::format::{ArchiveKeys, COMPRESSION_ZSTD, HeaderFields, MAGIC, MIN_FRAME_SIZE};
use ibs_archive::{ArchiveId, ArchiveReader, Footer, Header};
use ibs_envelope::{FileKey, Identity, Password, Sha256Fingerprint, Stanza, Thumbprint};
use libfuzzer_sys::fuzz_target;

fn identity() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| {
        Identity::from_pkcs12(
            include_bytes!("../../crates/archive/tests/data/recipient.pfx"),
            &Password::new("ibs-test-vectors"),
        )
        .expect("test identity")
    })
}

fn verify_all(r: &ArchiveReader<Vec<u8>>) {
    let _ = block_on(r.verify(None));
    for e in r.entries() {
        let _ = block_on(r.read_entry(e));
    }
}

/// Seals `chunks` (index plaintext first, then frames) into an archive.
fn sealed_archive(chunks: &[&[u8]], key: &FileKey) -> Option<Vec<u8>> {
    let salt = [7u8; 32];
    let keys = ArchiveKeys::derive(key, &salt);
    let header = Header::seal(
        HeaderFields {
            archive_id: ArchiveId([1; 16]),
            created: 0,
            frame_size: MIN_FRAME_SIZE,
            compression: COMPRESSION_ZSTD,
            salt,
            commitment: *keys.commitment(),
            producer_version: String::new(),
            labels: Vec::new(),
            recipients: vec![Stanza {
                sha256: Sha256Fingerprint([0; 32]),
                thumbprint: Thumbprint([0; 20]),
                wrapped_key: vec![0; 256],
            }],
        },
        &keys,
    )
    .ok()?;
    let digest = header.digest();
    let mut out = header.as_bytes().to_vec();
    let frames = &chunks[1..];
    for (i, f) in frames.iter().enumerate() {
        out.extend(keys.seal_chunk(&digest, i as u64, false, f, None).ok()?);
    }
    let index_offset = out.len() as u64;
    let index = keys
        .seal_chunk(&digest, frames.len() as u64, true, chunks[0], None)
        .ok()?;
    let index_len = index.len() as u64;
    out.extend(index);
    out.extend(
        Footer {
            index_offset,
            index_len,
            frame_count: frames.len() as u64,
            archive_id: ArchiveId([1; 16]),
        }
        .encode(),
    );
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&MAGIC) {
        if let Ok(r) = block_on(ArchiveReader::open(data.to_vec(), &[identity()])) {
            verify_all(&r);
        }
        return;
    }
    let key = FileKey::from_bytes([9; 32]);
    let chunks: Vec<&[u8]> = data.split(|b| *b == b'|').take(64).collect();
    if let Some(archive) = sealed_archive(&chunks, &key) {
        if let Ok(r) = block_on(ArchiveReader::open_with_file_key(archive, &key)) {
            verify_all(&r);
        }
    }
});
