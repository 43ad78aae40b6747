//! Signature checking on a valid signed version 2 archive whose root,
//! signature block and footer (everything after the body) are changed by
//! the input: never a panic, and never `Signer::Verified` unless the bytes
//! the signature covers are the original ones. Opening with the file key
//! must then refuse whatever the keyless check refused.
//!
//! The input's first byte picks how the tail is changed: XOR the rest onto
//! it, replace it by the rest, or apply (offset u16, byte) edits.
#![no_main]

use std::sync::{Arc, OnceLock};

use futures::executor::block_on;
use ibs_archive::fuzzing::v2::FOOTER_LEN_V2;
use ibs_archive::{
    ArchiveEncoder, ArchiveReader, ArchiveWriter, EntryMeta, Signer, WriterOptions, check_signature, inspect,
};
use ibs_envelope::{Certificate, FileKey, SigningKey};
use libfuzzer_sys::fuzz_target;

const FILE_KEY: [u8; 32] = [9; 32];

/// (archive, where the root starts, the signer's key).
fn original() -> &'static (Vec<u8>, usize, SigningKey) {
    static A: OnceLock<(Vec<u8>, usize, SigningKey)> = OnceLock::new();
    A.get_or_init(|| {
        let cert = Certificate::parse(include_bytes!("../../crates/archive/tests/data/recipient.cer")).expect("cert");
        let signer = Arc::new(SigningKey::from_seed(&[5; 32]));
        let options = WriterOptions::default()
            .frame_size(4096)
            .created(0)
            .signer(Arc::clone(&signer));
        let enc = ArchiveEncoder::with_file_key(&FileKey::from_bytes(FILE_KEY), &[&cert], options).expect("encoder");
        let mut w = ArchiveWriter::from_encoder(enc, Vec::new());
        w.add_entry(EntryMeta::new("s", "d").folder(), &b""[..]).expect("entry");
        w.add_entry(EntryMeta::new("s", "d/a"), &[7u8; 5000][..])
            .expect("entry");
        w.add_entry(EntryMeta::new("t", "b").symlink("d/a"), &b""[..])
            .expect("entry");
        let bytes = w.finish().expect("finish").0;
        let f = &bytes[bytes.len() - FOOTER_LEN_V2..];
        let root = u64::from_le_bytes(f[..8].try_into().expect("8")) as usize;
        (bytes, root, SigningKey::from_seed(&[5; 32]))
    })
}

fuzz_target!(|data: &[u8]| {
    let (orig, root_at, key) = original();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut tail = orig[*root_at..].to_vec();
    match mode % 3 {
        0 => {
            for (t, x) in tail.iter_mut().zip(rest) {
                *t ^= x;
            }
        }
        1 => tail = rest.to_vec(),
        _ => {
            for e in rest.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([e[0], e[1]]));
                let len = tail.len().max(1);
                if let Some(t) = tail.get_mut(at % len) {
                    *t = e[2];
                }
            }
        }
    }
    let mut bytes = orig[..*root_at].to_vec();
    bytes.extend_from_slice(&tail);
    let keyless = block_on(async {
        let info = inspect(&bytes).await?;
        check_signature(&bytes, &info).await
    });
    if let Ok(Signer::Verified(k)) = &keyless {
        assert_eq!(*k, key.verifying_key(), "verified by the header's key");
        // The root, the signature block and the footer are all as signed
        // (the footer's reserved bytes and magic are fixed by its rules).
        assert_eq!(&bytes, orig, "a verified archive is the one signed");
    }
    let opened = block_on(ArchiveReader::open_with_file_key(bytes, &FileKey::from_bytes(FILE_KEY)));
    match (&keyless, opened) {
        (Err(_), Ok(_)) => panic!("opened what the keyless check refused"),
        (Ok(Signer::Unsigned | Signer::UnsignedV1), Ok(_)) => panic!("a signed header opened as unsigned"),
        (Ok(_), Ok(r)) => {
            block_on(r.verify(None)).expect("the original archive verifies");
        }
        (Ok(Signer::Verified(_)), Err(e)) => panic!("the original archive does not open: {e}"),
        _ => {}
    }
});
