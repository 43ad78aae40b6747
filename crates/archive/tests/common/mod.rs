//! Shared helpers of the archive tests: the committed test key pairs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ibs_archive::{ArchiveWriter, EntryMeta, WriterOptions};
use ibs_envelope::{Certificate, Identity, Password};

pub const PASSWORD: &str = "ibs-test-vectors";

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn cert(name: &str) -> Certificate {
    Certificate::from_file(data_dir().join(format!("{name}.cer"))).unwrap()
}

/// The identity every test archive is encrypted to (loaded once: PKCS#12 KDFs are slow).
pub fn recipient() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| identity("recipient"))
}

/// A second identity that is not a recipient.
pub fn other() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| identity("other"))
}

fn identity(name: &str) -> Identity {
    Identity::from_file(data_dir().join(format!("{name}.pfx")), &Password::new(PASSWORD)).unwrap()
}

/// Writes an archive of `entries` (source, path, data) to memory.
pub fn archive(entries: &[(&str, &str, Vec<u8>)], options: WriterOptions) -> Vec<u8> {
    let cert = cert("recipient");
    let mut w = ArchiveWriter::new(Vec::new(), &[&cert], options).unwrap();
    for (source, path, data) in entries {
        w.add_entry(EntryMeta::new(*source, *path), &data[..]).unwrap();
    }
    w.finish().unwrap().0
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Deterministic compressible text, like the JSON documents a backup holds.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{{\"id\":{i},\"role\":\"Contributor\",\"scope\":\"/subscriptions/{}\"}}\n",
                i.wrapping_mul(7919)
            )
            .as_bytes(),
        );
        i = i.wrapping_add(1);
    }
    out.truncate(len);
    out
}
