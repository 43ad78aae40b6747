//! Opening and fully verifying an archive on arbitrary bytes: an error, never a
//! panic.
//!
//! Two modes, chosen by the input:
//! * input that starts with the archive magic is opened as it is with the test
//!   vectors' key (the seed corpus holds the vectors);
//! * input that starts with `2` is the plaintext of a version 2 archive's
//!   data and index pieces, split at `|` bytes: a part `P k RAW` is an index
//!   piece (raw plaintext `RAW`, sealed after data frame `k`), every other
//!   part is data, concatenated and cut into frames; the root is made to
//!   match (sealed lengths, hashes, offsets, and each piece's entry count,
//!   first key and stream offset as its entries imply), the archive signed,
//!   and then opened, verified and read;
//! * any other input is treated as the *plaintext* of a version 1 index and
//!   data frames (split at `|` bytes), sealed the same way.
//!
//! Every tag is valid: this is what a malicious or buggy producer holding a
//! real key could hand a reader.
#![no_main]

use std::sync::OnceLock;

use futures::executor::block_on;
use ibs_archive::fuzzing::format::{
    ArchiveKeys, COMPRESSION_ZSTD, FORMAT_VERSION, FORMAT_VERSION_1, HeaderFields, MAGIC, MIN_FRAME_SIZE,
};
use ibs_archive::fuzzing::piece_record;
use ibs_archive::fuzzing::v2::{FooterV2, PieceRecord, Root, signature_message};
use ibs_archive::{ArchiveId, ArchiveReader, Footer};
use ibs_envelope::{FileKey, Identity, Password, Sha256Fingerprint, SigningKey, Stanza, Thumbprint};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

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
    if let Ok(entries) = block_on(r.load_entries()) {
        for e in &entries {
            let _ = block_on(r.read_entry(e));
            let _ = block_on(r.find(&e.source, e.path.as_bytes()));
        }
    }
    let _ = block_on(r.find("a", b"x"));
}

fn fields(keys: &ArchiveKeys, salt: [u8; 32], version: u16, signer: Option<[u8; 32]>) -> HeaderFields {
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
        version,
        signer,
    }
}

/// Seals `chunks` (index plaintext first, then frames) into a version 1 archive.
fn sealed_archive(chunks: &[&[u8]], key: &FileKey) -> Option<Vec<u8>> {
    let salt = [7u8; 32];
    let keys = ArchiveKeys::derive(key, &salt);
    let header = ibs_archive::fuzzing::seal_header(fields(&keys, salt, FORMAT_VERSION_1, None), &keys).ok()?;
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

const SOURCES: [&str; 3] = ["a", "b", "c"];

/// Seals the data and pieces `input` describes (see the module doc) into a
/// signed version 2 archive.
fn sealed_v2(input: &[u8], key: &FileKey) -> Option<Vec<u8>> {
    let sources: Vec<String> = SOURCES.map(String::from).to_vec();
    let frame = MIN_FRAME_SIZE as usize;
    let mut stream = Vec::new();
    let mut pieces: Vec<(u8, &[u8])> = Vec::new();
    for part in input.split(|b| *b == b'|').take(64) {
        match part {
            [b'P', k, raw @ ..] => pieces.push((*k, raw)),
            other => stream.extend_from_slice(other),
        }
    }
    pieces.sort_by_key(|p| p.0);
    let signer = SigningKey::from_seed(&[5; 32]);
    let salt = [7u8; 32];
    let keys = ArchiveKeys::derive(key, &salt);
    let header = ibs_archive::fuzzing::seal_header(
        fields(&keys, salt, FORMAT_VERSION, Some(*signer.verifying_key().as_bytes())),
        &keys,
    )
    .ok()?;
    let digest = header.digest();
    let mut out = header.as_bytes().to_vec();
    let mut root = Root {
        data_len: stream.len() as u64,
        sources: sources.clone(),
        ..Root::default()
    };
    let mut counter = 0u64;
    let mut stream_offset = 0u64;
    let mut next_piece = pieces.iter().peekable();
    let frames: Vec<&[u8]> = stream.chunks(frame).collect();
    for k in 0..=frames.len() {
        while let Some((_, raw)) = next_piece.next_if(|p| usize::from(p.0) <= k || k == frames.len()) {
            let (mut rec, len) = piece_record(raw, &sources).unwrap_or((
                PieceRecord {
                    offset: 0,
                    sealed_len: 0,
                    frames_before: 0,
                    sha256: [0; 32],
                    entries: 1,
                    stream_offset: 0,
                    first_source: 0,
                    first_path: b"x".to_vec(),
                },
                0,
            ));
            let sealed = keys.seal_chunk(&digest, counter, false, raw, None).ok()?;
            counter += 1;
            rec.offset = out.len() as u64;
            rec.sealed_len = sealed.len() as u32;
            rec.frames_before = k as u64;
            rec.sha256 = Sha256::digest(&sealed).into();
            rec.stream_offset = stream_offset;
            stream_offset = stream_offset.saturating_add(len);
            root.entry_count += u64::from(rec.entries);
            root.pieces.push(rec);
            out.extend(sealed);
        }
        if let Some(f) = frames.get(k) {
            let sealed = keys.seal_chunk(&digest, counter, false, f, None).ok()?;
            counter += 1;
            root.frame_lens.push(sealed.len() as u32);
            out.extend(sealed);
        }
    }
    let sealed_root = keys.seal_chunk(&digest, counter, true, &root.encode(), None).ok()?;
    let footer = FooterV2 {
        root_offset: out.len() as u64,
        root_len: sealed_root.len() as u32,
        signature_len: 65,
        chunk_count: counter + 1,
        frame_count: root.frame_lens.len() as u64,
        archive_id: ArchiveId([1; 16]),
    }
    .encode();
    let signature = signer.sign(&signature_message(&digest, &sealed_root, &footer));
    out.extend(sealed_root);
    out.push(1);
    out.extend(signature);
    out.extend(footer);
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
    if let Some(v2) = data.strip_prefix(b"2") {
        if let Some(archive) = sealed_v2(v2, &key) {
            if let Ok(r) = block_on(ArchiveReader::open_with_file_key(archive, &key)) {
                verify_all(&r);
            }
        }
        return;
    }
    let chunks: Vec<&[u8]> = data.split(|b| *b == b'|').take(64).collect();
    if let Some(archive) = sealed_archive(&chunks, &key) {
        if let Ok(r) = block_on(ArchiveReader::open_with_file_key(archive, &key)) {
            verify_all(&r);
        }
    }
});
