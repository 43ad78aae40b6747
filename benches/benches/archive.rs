//! The archive's throughput: one frame compressed and sealed (one core), and
//! whole archives written (all cores) and verified/read, on compressible
//! (JSON-like) and incompressible data.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use ibs_archive::fuzzing::format::{ArchiveKeys, DEFAULT_FRAME_SIZE};
use ibs_archive::{ArchiveReader, ArchiveWriter, EntryMeta, WriterOptions};
use ibs_envelope::FileKey;
use ibs_testkit::data::{Xorshift64, json_lines};
use ibs_testkit::keys;

const ARCHIVE: usize = 64 << 20;

fn corpora(len: usize) -> [(&'static str, Vec<u8>); 2] {
    let noise = Xorshift64::with_state(0x2545_F491_4F6C_DD1D).bytes(len);
    [("text", json_lines(len)), ("noise", noise)]
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
    let keys::KeyPair { cert, identity, .. } = keys::generate("bench", 1_700_000_000);
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
