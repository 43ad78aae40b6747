//! The envelope's hot paths: sealing and opening 1 MiB chunks (the archive's
//! default frame size) with AES-256-GCM, and wrapping a file key with RSA-OAEP.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ibs_envelope::{FileKey, PayloadKey, SALT_LEN, wrap_file_key};
use std::hint::black_box;

fn aead(c: &mut Criterion) {
    const CHUNK: usize = 1 << 20;
    let key = PayloadKey::derive(&FileKey::from_bytes([7; 32]), &[1; SALT_LEN]);
    let plain: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let mut group = c.benchmark_group("chunked_aead");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    let mut buf = Vec::with_capacity(CHUNK + 16);
    group.bench_function("seal_1MiB", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(&plain);
            key.seal_chunk(black_box(3), false, b"header", &mut buf).unwrap();
        })
    });
    let mut sealed = plain.clone();
    key.seal_chunk(3, false, b"header", &mut sealed).unwrap();
    group.bench_function("open_1MiB", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(&sealed);
            key.open_chunk(black_box(3), false, b"header", &mut buf).unwrap();
        })
    });
    group.finish();
}

fn oaep(c: &mut Criterion) {
    let cert = ibs_testkit::keys::generate("bench", 1_700_000_000).cert;
    let key = FileKey::from_bytes([9; 32]);
    c.bench_function("oaep_wrap_rsa2048", |b| {
        b.iter(|| wrap_file_key(black_box(&key), &[&cert]).unwrap())
    });
}

criterion_group!(benches, aead, oaep);
criterion_main!(benches);
