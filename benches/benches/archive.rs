//! The archive's throughput: one frame compressed and sealed (one core), and
//! whole archives written (all cores) and verified/read, on compressible
//! (JSON-like) and incompressible data.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use ibs_archive::fuzzing::format::{ArchiveKeys, DEFAULT_FRAME_SIZE};
use ibs_archive::{ArchiveReader, ArchiveWriter, EntryMeta, WriterOptions};
use ibs_envelope::keygen::{KeygenOptions, generate};
use ibs_envelope::{Certificate, FileKey, Identity, Password};

const ARCHIVE: usize = 64 << 20;

fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(
            format!(
                "{{\"objectId\":\"{x:016x}\",\"role\":\"Reader\",\"scope\":\"/subscriptions/{}\"}}\n",
                x % 977
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn corpora(len: usize) -> [(&'static str, Vec<u8>); 2] {
    [("text", text(len)), ("noise", noise(len))]
}

fn frame(c: &mut Criterion) {
    let keys = ArchiveKeys::derive(&FileKey::from_bytes([7; 32]), &[1; 32]);
    let mut compressor = ibs_archive::fuzzing::FrameCompressor::new(3, true).unwrap();
    let mut group = c.benchmark_group("frame_seal_1MiB_one_core");
    group.throughput(Throughput::Bytes(u64::from(DEFAULT_FRAME_SIZE)));
    for (name, data) in corpora(DEFAULT_FRAME_SIZE as usize) {
        group.bench_function(name, |b| {
            b.iter(|| {
                keys.seal_chunk(&[0; 32], black_box(5), false, &data, compressor.pick(&data))
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn archive(c: &mut Criterion) {
    let password = Password::new("p");
    let pair = generate(&KeygenOptions::new("bench", 1_700_000_000), &password).unwrap();
    let cert = Certificate::parse(&pair.cer).unwrap();
    let identity = Identity::from_pkcs12(&pair.pfx, &password).unwrap();
    let write = |data: &[u8]| {
        let mut w = ArchiveWriter::new(std::io::sink(), &[&cert], WriterOptions::default()).unwrap();
        for (i, part) in data.chunks(ARCHIVE / 4).enumerate() {
            w.add_entry(EntryMeta::new("source", format!("part-{i}")), part)
                .unwrap();
        }
        w.finish().unwrap().1
    };
    let mut group = c.benchmark_group("archive_64MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(ARCHIVE as u64));
    for (name, data) in corpora(ARCHIVE) {
        group.bench_function(BenchmarkId::new("write_all_cores", name), |b| b.iter(|| write(&data)));
        let mut w = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default()).unwrap();
        w.add_entry(EntryMeta::new("source", "all"), &data[..]).unwrap();
        let bytes = w.finish().unwrap().0;
        let reader = block_on(ArchiveReader::open(bytes, &[&identity])).unwrap();
        group.bench_function(BenchmarkId::new("verify", name), |b| {
            b.iter(|| block_on(reader.verify(None)).unwrap())
        });
        let entry = block_on(reader.find("source", "all")).unwrap().unwrap();
        group.bench_function(BenchmarkId::new("read_entry", name), |b| {
            b.iter(|| block_on(reader.read_entry(&entry)).unwrap().len())
        });
    }
    group.finish();
}

criterion_group!(benches, frame, archive);
criterion_main!(benches);
