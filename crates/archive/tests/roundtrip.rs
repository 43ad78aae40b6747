//! Round trips through the writer and reader, API rules, and range-read economy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::convert::Infallible;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use common::{archive, cert, noise, other, recipient, text};
use futures::executor::block_on;
use ibs_archive::fuzzing::format::MIN_FRAME_SIZE;
use ibs_archive::{
    ArchiveReader, ArchiveWriter, AsyncArchiveWriter, EntryMeta, ErrorKind, Progress, RangeRead, WriterOptions,
    blocking, inspect,
};
use proptest::prelude::*;

fn small_frames() -> WriterOptions {
    WriterOptions::default().frame_size(MIN_FRAME_SIZE).threads(2)
}

#[test]
fn entries_round_trip_with_metadata_and_labels() {
    let cert = cert("recipient");
    let options = WriterOptions::default()
        .producer_version("1.2408.0.21")
        .label("fqdn", "azs.contoso.com")
        .label("region", "local")
        .created(1_760_000_000);
    let mut w = ArchiveWriter::new(Vec::new(), &[&cert], options).unwrap();
    let doc = text(300_000, 1);
    let blob = noise(2_500_000, 2);
    let e1 = w
        .add_entry(
            EntryMeta::new("identity", "users/directory.json")
                .mode(0o600)
                .mtime(1_750_000_000),
            &doc[..],
        )
        .unwrap();
    w.add_entry(EntryMeta::new("ca", "root.cer"), &b""[..]).unwrap();
    w.add_entry(EntryMeta::new("key-vault", "vaults/v1.bin"), &blob[..])
        .unwrap();
    let (bytes, summary) = w.finish().unwrap();
    assert_eq!(summary.archive_len, bytes.len() as u64);
    assert_eq!(summary.data_len, (doc.len() + blob.len()) as u64);
    assert_eq!(e1.mode, Some(0o600));
    // Text compresses; noise is stored: the archive is smaller than its data.
    assert!(bytes.len() < doc.len() + blob.len(), "{} bytes", bytes.len());

    let archive = blocking::Archive::open(bytes, &[recipient()]).unwrap();
    let info = archive.info();
    assert_eq!(info.fields().producer_version, "1.2408.0.21");
    assert_eq!(info.label("fqdn"), Some("azs.contoso.com"));
    assert_eq!(info.fields().created, 1_760_000_000);
    assert_eq!(info.recipient_thumbprints(), vec![cert.thumbprint()]);
    // The writer added the parent folders `users` and `vaults`.
    assert_eq!(archive.entries().unwrap().len() as u64, summary.entries);
    assert_eq!(summary.entries, 5);
    let e = archive.find("identity", "users/directory.json").unwrap().unwrap();
    assert_eq!((e.mode, e.mtime), (Some(0o600), Some(1_750_000_000)));
    assert_eq!(archive.read_entry(&e).unwrap(), doc);
    let folder = archive.find("identity", "users").unwrap().unwrap();
    assert_eq!((folder.kind, folder.mode), (ibs_archive::EntryKind::Folder, None));
    assert_eq!(
        archive
            .read_entry(&archive.find("ca", "root.cer").unwrap().unwrap())
            .unwrap(),
        b""
    );
    let mut out = Vec::new();
    let n = archive
        .copy_entry(&archive.find("key-vault", "vaults/v1.bin").unwrap().unwrap(), &mut out)
        .unwrap();
    assert_eq!((n, out), (blob.len() as u64, blob));
    let report = archive.verify().unwrap();
    assert_eq!(report.entries, 5);
    assert_eq!(report.data_len, summary.data_len);
}

#[test]
fn an_archive_with_no_entries_opens_and_verifies() {
    let bytes = archive(&[], WriterOptions::default());
    let a = blocking::Archive::open(bytes, &[recipient()]).unwrap();
    assert!(a.entries().unwrap().is_empty());
    assert_eq!(a.verify().unwrap().frames, 0);
}

#[test]
fn several_recipients_each_open_it_and_a_stranger_learns_which_keys_it_needs() {
    let (c1, c2) = (cert("recipient"), cert("other"));
    let mut w = ArchiveWriter::new(Vec::new(), &[&c1, &c2], WriterOptions::default()).unwrap();
    w.add_entry(EntryMeta::new("rbac", "a.json"), &b"{}"[..]).unwrap();
    let bytes = w.finish().unwrap().0;
    for id in [recipient(), other()] {
        let a = blocking::Archive::open(bytes.clone(), &[id]).unwrap();
        assert_eq!(a.read_entry(&a.entries().unwrap()[0]).unwrap(), b"{}");
    }
    let only_one = archive(&[("rbac", "a.json", b"{}".to_vec())], WriterOptions::default());
    let err = blocking::Archive::open(only_one, &[other()]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Key);
    match ibs_archive::Error::from(err) {
        ibs_archive::Error::Envelope(ibs_envelope::Error::NoMatchingIdentity { needed }) => {
            assert_eq!(needed, vec![c1.thumbprint()]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn async_writer_produces_the_same_format() {
    let cert = cert("recipient");
    let data = text(50_000, 9);
    let bytes = block_on(async {
        let mut w = AsyncArchiveWriter::new(futures::io::Cursor::new(Vec::new()), &[&cert], small_frames()).unwrap();
        w.add_entry(
            EntryMeta::new("rm", "plans.json"),
            futures::io::Cursor::new(data.clone()),
        )
        .await
        .unwrap();
        w.finish().await.unwrap().0.into_inner()
    });
    let a = blocking::Archive::open(bytes, &[recipient()]).unwrap();
    assert_eq!(a.read_entry(&a.entries().unwrap()[0]).unwrap(), data);
}

#[test]
fn progress_reports_reach_the_totals() {
    let seen = Arc::new(std::sync::Mutex::new(Progress::default()));
    let sink = Arc::clone(&seen);
    let options = small_frames().progress(Arc::new(move |p: &Progress| *sink.lock().unwrap() = *p));
    let bytes = archive(&[("a", "1", noise(20_000, 1)), ("a", "2", text(30_000, 2))], options);
    let p = *seen.lock().unwrap();
    assert_eq!(p.bytes_in, 50_000);
    assert_eq!(p.bytes_out, bytes.len() as u64);
    assert_eq!(p.entries_done, 2);
    assert_eq!(p.frames_done, 50_000u64.div_ceil(u64::from(MIN_FRAME_SIZE)));
}

#[test]
fn writer_rules_are_enforced() {
    let cert = cert("recipient");
    let mut w = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default()).unwrap();
    for (source, path) in [
        ("", "a"),
        ("a/b", "x"),
        ("..", "x"),
        ("ok", ""),
        ("ok", "/etc/passwd"),
        ("ok", "a/../../b"),
        ("ok", "a//b"),
        ("ok", "./a"),
        ("ok", "a\0b"),
        ("ok", "a/"),
    ] {
        let err = w.add_entry(EntryMeta::new(source, path), &b""[..]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage, "{source:?} {path:?}");
    }
    let long = "x".repeat(256);
    let err = w.add_entry(EntryMeta::new("ok", long.as_str()), &b""[..]).unwrap_err();
    assert!(err.to_string().contains("longer than 255"), "{err}");
    w.add_entry(EntryMeta::new("ok", "a/b.json"), &b"1"[..]).unwrap();
    let dup = w.add_entry(EntryMeta::new("ok", "a/b.json"), &b"2"[..]).unwrap_err();
    assert!(dup.to_string().contains("appears twice"), "{dup}");
    // POSIX names are bytes: a newline, a backslash, invalid UTF-8 are names
    // (in key order: `/` lowest, then the bytes).
    w.add_entry(EntryMeta::new("ok", "a\nb"), &b""[..]).unwrap();
    w.add_entry(EntryMeta::new("ok", "a-b"), &b""[..]).unwrap();
    // Out of order: `a-b` sorts after `a/…`, so `a/c` after it is refused, naming both.
    let late = w.add_entry(EntryMeta::new("ok", "a/c"), &b""[..]).unwrap_err();
    assert!(late.to_string().contains("comes after a-b"), "{late}");
    // Under a file: `a-b/x` has no folder `a-b`.
    let under = w.add_entry(EntryMeta::new("ok", "a-b/x"), &b""[..]).unwrap_err();
    assert!(under.to_string().contains("no folder entry for its parent"), "{under}");
    w.add_entry(EntryMeta::new("ok", "a\\b"), &b""[..]).unwrap();
    w.add_entry(EntryMeta::new("ok", b"a\xff".as_slice()), &b""[..])
        .unwrap();
    // A source left cannot take more entries.
    w.add_entry(EntryMeta::new("other", "z"), &b""[..]).unwrap();
    let back = w.add_entry(EntryMeta::new("ok", "zz"), &b""[..]).unwrap_err();
    assert!(back.to_string().contains("already finished"), "{back}");
    // Data for a folder or link is refused.
    let mut enc = ibs_archive::ArchiveEncoder::new(&[&cert], WriterOptions::default()).unwrap();
    enc.start_entry(EntryMeta::new("s", "d").folder()).unwrap();
    assert!(enc.write(b"x").unwrap_err().to_string().contains("has no data"));
    // The writer is still usable after refused names.
    let (bytes, summary) = w.finish().unwrap();
    // a (folder), a/b.json, a\nb, a-b, a\\b, a\xff, z
    assert_eq!(summary.entries, 7);
    blocking::Archive::open(bytes, &[recipient()])
        .unwrap()
        .verify()
        .unwrap();

    for bad in [0u32, 4095, (16 << 20) + 1] {
        let err = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default().frame_size(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
    }
    let err = ArchiveWriter::new(Vec::new(), &[], WriterOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
}

#[test]
fn a_failing_entry_source_is_reported_and_poisons_the_writer() {
    struct Broken;
    impl io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk gone"))
        }
    }
    let cert = cert("recipient");
    let mut w = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default()).unwrap();
    let err = w.add_entry(EntryMeta::new("ca", "x"), Broken).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string().contains("ca/x") && err.to_string().contains("disk gone"),
        "{err}"
    );
    assert_eq!(w.finish().unwrap_err().kind(), ErrorKind::Usage);
}

#[test]
fn a_failing_sink_is_reported() {
    struct Full(usize);
    impl io::Write for Full {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.0 + b.len() > 100_000 {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let cert = cert("recipient");
    let mut w = ArchiveWriter::new(Full(0), &[&cert], small_frames()).unwrap();
    let result = w
        .add_entry(EntryMeta::new("a", "b"), &noise(500_000, 3)[..])
        .and_then(|_| w.finish().map(|_| ()));
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
}

/// Counts the bytes and the range reads through it.
struct Counting {
    inner: Vec<u8>,
    read: AtomicU64,
    calls: AtomicU64,
}

#[async_trait]
impl RangeRead for Counting {
    type Error = Infallible;
    async fn size(&self) -> Result<u64, Infallible> {
        Ok(self.inner.len() as u64)
    }
    async fn read_range(&self, range: Range<u64>) -> Result<Bytes, Infallible> {
        self.read.fetch_add(range.end - range.start, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.read_range(range).await
    }
}

#[test]
fn reading_one_entry_reads_only_its_frames() {
    let big = noise(8 << 20, 5);
    let small = text(10_000, 6);
    let bytes = archive(
        &[
            ("a", "big", big.clone()),
            ("b", "small", small.clone()),
            ("c", "big2", big),
        ],
        WriterOptions::default(),
    );
    let total = bytes.len() as u64;
    let source = Counting {
        inner: bytes,
        read: AtomicU64::new(0),
        calls: AtomicU64::new(0),
    };
    let reader = block_on(ArchiveReader::open(&source, &[recipient()])).unwrap();
    let opened = source.read.load(Ordering::Relaxed);
    assert!(opened < 64 << 10, "opening read {opened} bytes");
    let entry = block_on(reader.find("b", "small")).unwrap().unwrap();
    assert_eq!(block_on(reader.read_entry(&entry)).unwrap(), small);
    let for_entry = source.read.load(Ordering::Relaxed) - opened;
    // The small entry straddles at most two 1 MiB frames.
    assert!(for_entry <= 2 * (1 << 20) + 100, "read {for_entry} of {total} bytes");
}

#[test]
fn sequential_reads_go_ahead_and_jumps_do_not() {
    // 40 entries of 700 KB in 1 MiB frames: ~27 frames, entries straddling them.
    let entries: Vec<(String, String, Vec<u8>)> = (0..40u64)
        .map(|n| ("s".to_owned(), format!("f{n:02}"), noise(700_000, n)))
        .collect();
    let borrowed: Vec<(&str, &str, Vec<u8>)> = entries
        .iter()
        .map(|(s, p, d)| (s.as_str(), p.as_str(), d.clone()))
        .collect();
    let bytes = archive(&borrowed, WriterOptions::default());
    let source = Counting {
        inner: bytes,
        read: AtomicU64::new(0),
        calls: AtomicU64::new(0),
    };
    let reader = block_on(ArchiveReader::open(&source, &[recipient()])).unwrap();
    let frames = reader.frame_lens().len() as u64;
    // One entry in the middle (three frames at most): no more than a frame over.
    let (calls0, read0) = (
        source.calls.load(Ordering::Relaxed),
        source.read.load(Ordering::Relaxed),
    );
    let middle = block_on(reader.find("s", "f20")).unwrap().unwrap();
    assert_eq!(block_on(reader.read_entry(&middle)).unwrap(), entries[20].2);
    let read = source.read.load(Ordering::Relaxed) - read0;
    // Its frames, and the index piece that lists it.
    assert!(read <= 3 * (1 << 20) + (64 << 10), "one entry read {read} bytes");
    // Every entry in order: far fewer range reads than frames, each byte once or so.
    let calls1 = source.calls.load(Ordering::Relaxed);
    for (e, (_, _, data)) in block_on(reader.load_entries()).unwrap().iter().zip(&entries) {
        assert_eq!(&block_on(reader.read_entry(e)).unwrap(), data);
    }
    let calls = source.calls.load(Ordering::Relaxed) - calls1;
    assert!(
        calls * 3 < frames,
        "{calls} range reads for {frames} frames (after {calls0} to open)"
    );
}

#[test]
fn keyless_inspection_reads_header_and_footer() {
    let bytes = archive(
        &[("a", "b", text(10, 1))],
        WriterOptions::default().producer_version("2.0"),
    );
    let info = block_on(inspect(&bytes)).unwrap();
    assert_eq!(info.fields().producer_version, "2.0");
    assert_eq!(info.archive_len, bytes.len() as u64);
    assert_eq!(info.footer.archive_id(), info.fields().archive_id);
}

#[test]
fn a_file_on_disk_opens_with_the_blocking_api() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup.ibs");
    let data = text(3 << 20, 4);
    std::fs::write(
        &path,
        archive(&[("rm", "offers.json", data.clone())], WriterOptions::default()),
    )
    .unwrap();
    let a = blocking::open_file(&path, &[recipient()]).unwrap();
    assert_eq!(a.read_entry(&a.entries().unwrap()[0]).unwrap(), data);
    let missing = blocking::open_file(&dir.path().join("nope"), &[recipient()]).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Io);
    assert!(missing.to_string().contains("nope"), "{missing}");
}

/// Sizes that sit on, just before and just after frame boundaries.
fn entry_size() -> impl Strategy<Value = usize> {
    let f = MIN_FRAME_SIZE as usize;
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(f - 1),
        Just(f),
        Just(f + 1),
        Just(2 * f),
        Just(3 * f + 7),
        0usize..3 * f,
        (10 * f)..(12 * f),
    ]
}

/// A source name within the rules: 1–64 ASCII letters, digits, `.`, `_`, `-`.
fn source_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

/// One path segment within the rules: any Unicode but '/', '\\' and control
/// characters (spaces, other separators, format characters, combining marks,
/// astral planes included), not `.` or `..`.
fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^/\\\\\\p{Cc}]{1,12}",
        "[a-z .~-]{1,6}",
        Just("\u{2028}\u{200d}\u{feff}".to_owned()),
        Just("...".to_owned()),
        Just(" ".to_owned()),
    ]
    .prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn entry_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(path_segment(), 1..6).prop_map(|segments| segments.join("/"))
}

/// (source, path, mode, mtime, size, compressible)
type GenEntry = (String, String, Option<u32>, Option<i64>, usize, bool);

fn gen_entry() -> impl Strategy<Value = GenEntry> {
    (
        prop_oneof![source_name(), Just("src".to_owned())],
        entry_path(),
        proptest::option::of(0u32..=0o7777),
        proptest::option::of(prop_oneof![any::<i64>(), -1i64..=1, Just(i64::MIN), Just(i64::MAX)]),
        entry_size(),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Any entries the rules allow — arbitrary Unicode names, every mode
    /// 0..=0o7777, any mtime (negative ones too), empty and multi-frame
    /// sizes — come back with their names, metadata and bytes.
    #[test]
    fn any_set_of_entries_round_trips(
        generated in proptest::collection::vec(gen_entry(), 0..8),
        seed in any::<u64>(),
    ) {
        // No (source, path) twice: the writer refuses that (tested above);
        // no file where another entry needs a folder; in key order.
        let mut names = std::collections::HashSet::new();
        let mut generated: Vec<GenEntry> = generated
            .into_iter()
            .filter(|e| names.insert((e.0.clone(), e.1.clone())))
            .collect();
        let all = generated.clone();
        generated.retain(|e| !all.iter().any(|o| o.0 == e.0 && o.1.starts_with(&format!("{}/", e.1))));
        generated.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| ibs_archive::path_cmp(a.1.as_bytes(), b.1.as_bytes())));
        let entries: Vec<(GenEntry, Vec<u8>)> = generated
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let data = if e.5 { text(e.4, seed + i as u64) } else { noise(e.4, seed + i as u64) };
                (e, data)
            })
            .collect();
        let cert = cert("recipient");
        let mut w = ArchiveWriter::new(Vec::new(), &[&cert], small_frames().depth(3)).unwrap();
        for ((source, path, mode, mtime, _, _), data) in &entries {
            let mut meta = EntryMeta::new(source.as_str(), path.as_str());
            if let Some(m) = mode {
                meta = meta.mode(*m);
            }
            if let Some(t) = mtime {
                meta = meta.mtime(*t);
            }
            w.add_entry(meta, &data[..]).unwrap();
        }
        let (bytes, summary) = w.finish().unwrap();
        prop_assert_eq!(summary.archive_len, bytes.len() as u64);
        let a = blocking::Archive::open(bytes, &[recipient()]).unwrap();
        // The writer adds the parent folders nobody added.
        let files: Vec<_> = a.entries().unwrap().into_iter().filter(|e| e.is_file()).collect();
        prop_assert_eq!(files.len(), entries.len());
        for (entry, ((source, path, mode, mtime, _, _), data)) in files.iter().zip(&entries) {
            prop_assert_eq!(&entry.source, source);
            prop_assert_eq!(&entry.path, path);
            prop_assert_eq!(entry.mode, *mode);
            prop_assert_eq!(entry.mtime, *mtime);
            prop_assert!(entry.check_names().is_ok());
            let found = a.find(source, path).unwrap();
            prop_assert_eq!(found.as_ref(), Some(entry));
            prop_assert_eq!(&a.read_entry(entry).unwrap(), data);
        }
        let report = a.verify().unwrap();
        prop_assert_eq!(report.entries, summary.entries);
    }

    /// A mode with more than the 12 permission bits (a whole `st_mode` with
    /// its file-type bits) is refused, not written: FORMAT.md §7 says those
    /// bits MUST be 0.
    #[test]
    fn modes_beyond_the_permission_bits_are_refused(mode in 0o10000u32..) {
        let cert = cert("recipient");
        let mut w = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default()).unwrap();
        let err = w.add_entry(EntryMeta::new("s", "f").mode(mode), &b"x"[..]).unwrap_err();
        prop_assert_eq!(err.kind(), ErrorKind::Usage);
        prop_assert!(err.to_string().contains("mode"), "{}", err);
    }
}

/// Issue #21: one entry of a 1 000 000-entry archive, looked up and read
/// over a range-read source, costs the header, footer, root, one index piece
/// and its frame — a few MiB at most, not the index of a million entries.
#[test]
fn one_entry_of_a_million_is_found_and_read_with_a_few_mib_of_range_reads() {
    let cert = cert("recipient");
    let mut w = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default()).unwrap();
    for d in 0..1000 {
        w.add(EntryMeta::new("state", format!("d{d:03}")).folder()).unwrap();
        for f in 0..1000 {
            let data = format!("{{\"d\":{d},\"f\":{f}}}");
            w.add_entry(
                EntryMeta::new("state", format!("d{d:03}/f{f:03}.json")).mode(0o644),
                data.as_bytes(),
            )
            .unwrap();
        }
    }
    let (bytes, summary) = w.finish().unwrap();
    assert_eq!(summary.entries, 1_001_000);
    let total = bytes.len() as u64;
    let source = Counting {
        inner: bytes,
        read: AtomicU64::new(0),
        calls: AtomicU64::new(0),
    };
    let reader = block_on(ArchiveReader::open(&source, &[recipient()])).unwrap();
    let entry = block_on(reader.find("state", "d517/f271.json")).unwrap().unwrap();
    assert_eq!(block_on(reader.read_entry(&entry)).unwrap(), br#"{"d":517,"f":271}"#);
    assert!(block_on(reader.find("state", "d517/f271.jso")).unwrap().is_none());
    let read = source.read.load(Ordering::Relaxed);
    println!("{read} of {total} archive bytes read to find and read one entry of a million");
    assert!(
        read < 4 << 20,
        "{read} of {total} archive bytes read to find and read one entry"
    );
}
