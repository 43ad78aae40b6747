//! Every way the bytes can be damaged is detected: each byte flipped, every
//! truncation, trailing bytes, swapped frames, and archives spliced together.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{cert, noise, recipient, text};
use futures::executor::block_on;
use ibs_archive::fuzzing::format::{FOOTER_LEN, MIN_FRAME_SIZE};
use ibs_archive::{ArchiveEncoder, ArchiveReader, ArchiveWriter, EntryMeta, Error, ErrorKind, Region, WriterOptions};
use ibs_envelope::FileKey;

/// A small archive (header, a few 4 KiB frames, index, footer) and its file key.
fn small_archive(seed: u64) -> (Vec<u8>, FileKey) {
    let key = FileKey::generate().unwrap();
    let cert = cert("recipient");
    let options = WriterOptions::default()
        .frame_size(MIN_FRAME_SIZE)
        .producer_version("1.0")
        .label("fqdn", "a.example");
    let enc = ArchiveEncoder::with_file_key(&key, &[&cert], options).unwrap();
    let mut w = ArchiveWriter::from_encoder(enc, Vec::new());
    w.add_entry(EntryMeta::new("a", "empty"), &b""[..]).unwrap();
    w.add_entry(EntryMeta::new("a", "text.json"), &text(5000, seed)[..])
        .unwrap();
    w.add_entry(EntryMeta::new("b", "blob"), &noise(6000, seed)[..])
        .unwrap();
    (w.finish().unwrap().0, key)
}

/// Opens with the file key (no RSA) and verifies everything; the first error.
fn check_with_key(bytes: Vec<u8>, key: &FileKey) -> Result<(), Error> {
    block_on(async {
        let r = ArchiveReader::open_with_file_key(bytes, key).await?;
        r.verify(None).await?;
        for e in r.load_entries().await? {
            r.read_entry(&e).await?;
        }
        Ok(())
    })
}

/// Opens with the recipient's identity (RSA unwrap included) and verifies.
fn check_with_identity(bytes: Vec<u8>) -> Result<(), Error> {
    block_on(async {
        let r = ArchiveReader::open(bytes, &[recipient()]).await?;
        Ok(r.verify(None).await.map(|_| ())?)
    })
}

fn header_len(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as usize
}

#[test]
fn the_pristine_archive_passes() {
    let (bytes, key) = small_archive(1);
    check_with_key(bytes.clone(), &key).unwrap();
    check_with_identity(bytes).unwrap();
}

#[test]
fn every_single_byte_flip_is_detected() {
    let (bytes, key) = small_archive(2);
    let hlen = header_len(&bytes);
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut damaged = bytes.clone();
            damaged[i] ^= mask;
            // Header bytes go through the RSA unwrap too (a flipped wrapped key or
            // fingerprint must be caught there); the rest with the file key.
            let result = if i < hlen {
                check_with_identity(damaged)
            } else {
                check_with_key(damaged, &key)
            };
            let err = result
                .err()
                .unwrap_or_else(|| panic!("flip {mask:#04x} at byte {i} of {} went unnoticed", bytes.len()));
            assert!(
                matches!(err.kind(), ErrorKind::Malformed | ErrorKind::Damaged | ErrorKind::Key),
                "byte {i}: {err}"
            );
        }
    }
}

#[test]
fn every_truncation_is_detected() {
    let (bytes, key) = small_archive(3);
    for len in 0..bytes.len() {
        let err = check_with_key(bytes[..len].to_vec(), &key).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Malformed, "cut at {len}: {err}");
    }
}

#[test]
fn trailing_bytes_are_detected() {
    let (bytes, key) = small_archive(4);
    for extra in [&[0u8][..], &[0u8; FOOTER_LEN][..], &bytes[..]] {
        let mut longer = bytes.clone();
        longer.extend_from_slice(extra);
        let err = check_with_key(longer, &key).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Malformed, "{err}");
    }
}

/// Frame boundaries from the index of a pristine archive.
fn frame_offsets(bytes: &[u8], key: &FileKey) -> Vec<u64> {
    let r = block_on(ArchiveReader::open_with_file_key(bytes.to_vec(), key)).unwrap();
    let mut out = r.frame_offsets().to_vec();
    out.push(out.last().map_or(r.info().header.as_bytes().len() as u64, |o| {
        o + u64::from(*r.frame_lens().last().unwrap())
    }));
    out
}

#[test]
fn swapped_frames_are_detected() {
    // Noise only, so every frame is stored and the same length.
    let key = FileKey::generate().unwrap();
    let cert = cert("recipient");
    let enc =
        ArchiveEncoder::with_file_key(&key, &[&cert], WriterOptions::default().frame_size(MIN_FRAME_SIZE)).unwrap();
    let mut w = ArchiveWriter::from_encoder(enc, Vec::new());
    w.add_entry(EntryMeta::new("a", "blob"), &noise(3 * MIN_FRAME_SIZE as usize, 5)[..])
        .unwrap();
    let bytes = w.finish().unwrap().0;
    let off: Vec<usize> = frame_offsets(&bytes, &key).iter().map(|o| *o as usize).collect();
    assert_eq!(off[1] - off[0], off[2] - off[1]);
    let mut swapped = bytes.clone();
    swapped[off[0]..off[1]].copy_from_slice(&bytes[off[1]..off[2]]);
    swapped[off[1]..off[2]].copy_from_slice(&bytes[off[0]..off[1]]);
    let err = check_with_key(swapped, &key).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Authentication {
                region: Region::Frame(0)
            }
        ),
        "{err}"
    );
    // The same frame twice (a duplicated frame) fails too.
    let mut duplicated = bytes.clone();
    duplicated[off[1]..off[2]].copy_from_slice(&bytes[off[0]..off[1]]);
    let err = check_with_key(duplicated, &key).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Authentication {
                region: Region::Frame(1)
            }
        ),
        "{err}"
    );
}

#[test]
fn archives_spliced_together_are_detected() {
    // Two archives with identical structure (same sizes, so same offsets).
    // The root holds each piece's SHA-256, random from archive to archive,
    // so its compressed length can differ by a byte: draw until equal
    // (bounded; two in three draws match).
    let (a, key_a) = small_archive(6);
    let b = (0..32)
        .map(|_| small_archive(6).0)
        .find(|b| b.len() == a.len())
        .expect("an archive of the same length in 32 draws");
    let hlen = header_len(&a);
    assert_eq!(hlen, header_len(&b));
    let off = frame_offsets(&a, &key_a);
    let ibs_archive::ArchiveFooter::V2(footer) = block_on(ibs_archive::inspect(&a)).unwrap().footer else {
        panic!("a version 2 archive")
    };
    let root_at = footer.root_offset as usize;
    let piece_at = *off.last().unwrap() as usize; // the one index piece follows the last frame

    // B's header on A's body: footer ids differ.
    let mut s = b[..hlen].to_vec();
    s.extend_from_slice(&a[hlen..]);
    assert!(check_with_identity(s).is_err());
    // A with B's root and footer: ids differ; with A's footer id patched in, the root fails.
    let mut s = a[..root_at].to_vec();
    s.extend_from_slice(&b[root_at..]);
    assert_eq!(
        check_with_key(s.clone(), &key_a).unwrap_err().kind(),
        ErrorKind::Malformed
    );
    let n = s.len();
    s[n - 32..n - 16].copy_from_slice(&a[a.len() - 32..a.len() - 16]);
    let err = check_with_key(s, &key_a).unwrap_err();
    assert!(matches!(err, Error::Authentication { region: Region::Root }), "{err}");
    // A with B's index piece (same length): its hash in A's root differs.
    let mut s = a.clone();
    s[piece_at..root_at].copy_from_slice(&b[piece_at..root_at]);
    let err = check_with_key(s, &key_a).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Authentication {
                region: Region::Piece(0)
            }
        ),
        "{err}"
    );
    // A with one frame of B.
    let (f0, f1) = (off[1] as usize, off[2] as usize);
    let mut s = a.clone();
    s[f0..f1].copy_from_slice(&b[f0..f1]);
    let err = check_with_key(s, &key_a).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Authentication {
                region: Region::Frame(1)
            }
        ),
        "{err}"
    );
}
