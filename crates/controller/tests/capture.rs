//! What a [`DirectorySource`] records, read back from the archive: each
//! kind of entry, byte names, metadata, sparse extents (and how little a
//! sparse file costs to read), hard links, key order, extended attributes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use ibs_archive::{Entry, EntryKind};
use ibs_controller::job::write_backup;
use ibs_controller::{BackupSource, CaptureProblem, DirectorySource, JobSpec, JobSummary};
use ibs_recovery::{Backup, Choice, Recovery, RestoreOptions};
use ibs_repository::InstanceLayout;
use ibs_retention::Policy;
use ibs_storage::{MemoryTarget, StorageTarget};
use ibs_testkit::keys::{self, KeyPair};
use ibs_testkit::tree;

const T0: i64 = 1_763_769_600;

fn pair() -> &'static KeyPair {
    keys::cached("capture", T0 - 86_400)
}

fn instance() -> InstanceLayout {
    InstanceLayout::new("azs.contoso.com", "local").unwrap()
}

/// Backs `source` up to memory; the summary, the opened backup and its entries.
async fn capture(source: DirectorySource) -> (JobSummary, Backup, Vec<Entry>) {
    let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
    let spec = JobSpec {
        target: Arc::clone(&target),
        instance: instance(),
        certificates: vec![pair().cert.clone()],
        producer_version: "1.2408.0".into(),
        policy: Policy::default(),
        checks: Default::default(),
        signer: None,
    };
    let source: Arc<dyn BackupSource> = Arc::new(source);
    let summary = write_backup(&spec, &[source], T0, None).await.unwrap();
    let backup = Recovery::new(target, instance())
        .open_choice(&Choice::Newest, &[&pair().identity])
        .await
        .unwrap();
    let entries: Vec<Entry> = backup.entries().try_collect().await.unwrap();
    (summary, backup, entries)
}

fn entry<'a>(entries: &'a [Entry], path: &[u8]) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.path.as_bytes() == path)
        .unwrap_or_else(|| panic!("no entry {}", ibs_archive::escape_bytes(path)))
}

/// Bytes this process has read through `read`-like calls so far.
fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_is_recorded_with_its_metadata_in_key_order() {
    let src = tempfile::tempdir().unwrap();
    let owners = tree::build(src.path());
    let (summary, backup, entries) = capture(DirectorySource::new("state", src.path())).await;
    // Key order, strictly: `a` < `a/x` < `a-b`.
    assert!(
        entries
            .windows(2)
            .all(|w| ibs_archive::path_cmp(w[0].path.as_bytes(), w[1].path.as_bytes()).is_lt())
    );
    let order: Vec<&[u8]> = entries
        .iter()
        .map(|e| e.path.as_bytes())
        .filter(|p| p.starts_with(b"a"))
        .collect();
    assert_eq!(order, [&b"a"[..], b"a/x", b"a-b"]);
    // Folders, with their mode: an empty one too.
    for (path, mode) in [("secrets", 0o700), ("empty", 0o750), ("shared", 0o1777), ("a", 0o755)] {
        let e = entry(&entries, path.as_bytes());
        assert_eq!((&e.kind, e.mode), (&EntryKind::Folder, Some(mode)), "{path}");
    }
    assert_eq!(entry(&entries, b"secrets/key").mode, Some(0o600));
    assert_eq!(entry(&entries, b"bin/run.sh").mode, Some(0o755));
    if owners {
        assert_eq!(entry(&entries, b"bin/suid").mode, Some(0o6755));
        let owned = entry(&entries, b"owned");
        assert_eq!(owned.owner, Some(tree::OWNER));
        // No such user or group here: no names.
        assert_eq!(owned.owner_names, None);
        let key = entry(&entries, b"secrets/key");
        assert_eq!(key.owner, Some((0, 0)));
        assert_eq!(key.owner_names, Some((b"root".to_vec(), b"root".to_vec())));
    }
    // Times with nanoseconds, before 1970 too.
    let old = entry(&entries, b"dated/1960.txt");
    assert_eq!(
        (old.mtime, old.mtime_nanos),
        (Some(tree::MTIME_1960.0), tree::MTIME_1960.1)
    );
    let new = entry(&entries, b"dated/2001.txt");
    assert_eq!(
        (new.mtime, new.mtime_nanos),
        (Some(tree::MTIME_2001.0), tree::MTIME_2001.1)
    );
    // Links: targets as given, never followed.
    for (path, target) in [
        ("links/relative", "../bin/run.sh"),
        ("links/absolute", "/etc/hostname"),
        ("links/dangling", "../nowhere/at/all"),
    ] {
        assert_eq!(
            entry(&entries, path.as_bytes()).kind,
            EntryKind::Symlink {
                target: target.as_bytes().to_vec()
            }
        );
    }
    assert!(entry(&entries, b"hard/one").is_file());
    assert_eq!(
        entry(&entries, b"hard/two").kind,
        EntryKind::HardLink {
            target: "hard/one".into()
        }
    );
    // Names as bytes, content intact.
    for name in tree::ODD_NAMES {
        assert_eq!(backup.read(entry(&entries, name)).await.unwrap(), name);
    }
    // The sparse file: its size, and extents holding the 18 bytes (pages of them).
    let sparse = entry(&entries, b"sparse");
    assert_eq!(sparse.size, tree::SPARSE_SIZE);
    let extents = sparse.extents.as_ref().unwrap();
    assert_eq!(extents.len(), 2, "{extents:?}");
    assert_eq!((extents[0].offset, extents[1].offset), (0, 200 << 20));
    assert!(sparse.stream_len() <= 64 << 10, "{extents:?}");
    let data = backup.read(sparse).await.unwrap();
    assert!(data.starts_with(tree::SPARSE_DATA.0));
    // The FIFO: skipped with a warning, not recorded.
    assert!(entries.iter().all(|e| e.path.as_bytes() != tree::FIFO.as_bytes()));
    assert_eq!(summary.warnings.total(), 1);
    assert_eq!(summary.warnings.kept()[0].problem, CaptureProblem::SpecialFile);
    // Extended attributes only when asked for.
    assert!(entries.iter().all(|e| e.xattrs.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_sparse_file_is_captured_by_reading_its_data_only() {
    use std::os::unix::fs::FileExt;
    let src = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(src.path().join("disk.img")).unwrap();
    f.set_len(tree::SPARSE_SIZE).unwrap();
    f.write_all_at(b"eighteen bytes!!!!", 100 << 20).unwrap();
    drop(f);
    let before = bytes_read();
    let (summary, backup, entries) = capture(DirectorySource::new("state", src.path())).await;
    let read = bytes_read() - before;
    // Reading 256 MiB of holes would show here (other tests of this file read little).
    assert!(read < 32 << 20, "{read} bytes read to capture an 18-byte sparse file");
    let e = entry(&entries, b"disk.img");
    assert_eq!(e.size, tree::SPARSE_SIZE);
    assert!(e.stream_len() <= 64 << 10);
    assert!(summary.data_bytes <= 64 << 10, "{summary:?}");
    let data = backup.read(e).await.unwrap();
    assert!(data.windows(18).any(|w| w == b"eighteen bytes!!!!"));
}

#[tokio::test]
async fn the_first_captured_name_of_a_hard_linked_file_holds_the_data() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("b"), b"shared").unwrap();
    std::fs::hard_link(src.path().join("b"), src.path().join("a.skip")).unwrap();
    std::fs::hard_link(src.path().join("b"), src.path().join("c")).unwrap();
    // `a.skip` comes first but is excluded: `b` holds the data, `c` links to it.
    let (_, backup, entries) = capture(DirectorySource::new("state", src.path()).exclude("*.skip").unwrap()).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(backup.read(entry(&entries, b"b")).await.unwrap(), b"shared");
    assert_eq!(entry(&entries, b"c").kind, EntryKind::HardLink { target: "b".into() });
}

#[tokio::test]
async fn extended_attributes_are_captured_only_when_asked_for() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    std::fs::create_dir(src.path().join("d")).unwrap();
    for (path, value) in [
        (file.as_path(), &b"file value"[..]),
        (&src.path().join("d"), b"folder value"),
    ] {
        if let Err(e) = rustix::fs::setxattr(path, "user.ibs.test", value, rustix::fs::XattrFlags::empty()) {
            return ibs_storage::conformance::skip_or_fail(&format!(
                "the file system refuses user extended attributes: {e}"
            ));
        }
    }
    let (_, _, entries) = capture(DirectorySource::new("state", src.path())).await;
    assert!(entries.iter().all(|e| e.xattrs.is_empty()));
    let (_, backup, entries) = capture(DirectorySource::new("state", src.path()).xattrs(true)).await;
    let name = b"user.ibs.test".to_vec();
    assert_eq!(entry(&entries, b"f").xattrs, [(name.clone(), b"file value".to_vec())]);
    assert_eq!(entry(&entries, b"d").xattrs, [(name, b"folder value".to_vec())]);
    // And they come back.
    let out = tempfile::tempdir().unwrap();
    backup.restore_to(out.path(), &RestoreOptions::default()).await.unwrap();
    let restored = out.path().join("state/f");
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(&restored, "user.ibs.test", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"file value");
}

#[tokio::test]
async fn a_source_with_nothing_but_excluded_files_is_reported_empty() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("x.tmp"), b"x").unwrap();
    let (summary, _, entries) = capture(DirectorySource::new("state", src.path()).exclude("*.tmp").unwrap()).await;
    assert!(entries.is_empty());
    assert_eq!(summary.warnings.kept()[0].problem, CaptureProblem::Empty);
    // An empty folder is something to capture.
    std::fs::create_dir(src.path().join("empty")).unwrap();
    let (summary, _, entries) = capture(DirectorySource::new("state", src.path()).exclude("*.tmp").unwrap()).await;
    assert_eq!(entries.len(), 1);
    assert!(summary.warnings.is_empty());
}

#[tokio::test]
async fn a_path_longer_than_the_format_allows_is_skipped_with_a_warning() {
    let src = tempfile::tempdir().unwrap();
    // 20 folders of 250 bytes: deeper than 4096 bytes (made one at a time:
    // the whole path is beyond the system's limit too).
    {
        use rustix::fs::{Mode, OFlags, mkdirat, openat};
        let mut dir = openat(
            rustix::fs::CWD,
            src.path(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
        for i in 0..20 {
            let name = format!("{i:02}{}", "d".repeat(248));
            mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            dir = openat(&dir, name.as_str(), OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        }
        let f = openat(&dir, "f", OFlags::CREATE | OFlags::WRONLY, Mode::from_raw_mode(0o644)).unwrap();
        rustix::io::write(&f, b"deep").unwrap();
    }
    std::fs::write(src.path().join("top"), b"top").unwrap();
    let (summary, _, entries) = capture(DirectorySource::new("state", src.path())).await;
    assert!(entries.iter().all(|e| e.path.as_bytes().len() <= 4096));
    assert_eq!(entries.len(), 1 + 16, "top and the 16 folders that fit");
    let w = &summary.warnings.kept()[0];
    assert_eq!(w.problem, CaptureProblem::UnrecordableName);
    assert!(Path::new(&w.path).starts_with(src.path()), "{w}");
}

/// The capture hands files over in batches read in parallel: across many
/// folders, batches and the read-ahead budget, every file comes back whole,
/// in key order, and a hard link whose names are batches apart is a link.
#[tokio::test]
async fn many_files_across_folders_and_batches_come_back_whole_in_key_order() {
    let src = tempfile::tempdir().unwrap();
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for d in 0..30 {
        let folder = format!("d{d:02}");
        std::fs::create_dir(src.path().join(&folder)).unwrap();
        for f in 0..40 {
            // Mostly small, a few of 3 MiB (past a batch's bytes), one of 9 MiB (streamed).
            let len = match (d, f) {
                (7, 3) => 9 << 20,
                (_, 5) if d % 5 == 0 => 3 << 20,
                _ => 100 + (d * 40 + f) * 37 % 5000,
            };
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + d * 7 + f) as u8).collect();
            let rel = format!("{folder}/f{f:02}");
            std::fs::write(src.path().join(&rel), &data).unwrap();
            expected.push((rel.into_bytes(), data));
        }
    }
    // A second name of d00/f01 in the last folder: many batches later.
    std::fs::hard_link(src.path().join("d00/f01"), src.path().join("d29/zz-link")).unwrap();
    let (summary, backup, entries) = capture(DirectorySource::new("state", src.path())).await;
    assert!(summary.warnings.is_empty(), "{summary:?}");
    let files: Vec<&Entry> = entries.iter().filter(|e| e.kind == EntryKind::File).collect();
    assert_eq!(files.len(), expected.len());
    for (e, (rel, data)) in files.iter().zip(&expected) {
        assert_eq!(e.path.as_bytes(), &rel[..]);
        assert_eq!(&backup.read(e).await.unwrap(), data, "{}", String::from_utf8_lossy(rel));
    }
    let paths: Vec<&[u8]> = entries.iter().map(|e| e.path.as_bytes()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "key order");
    assert_eq!(
        entry(&entries, b"d29/zz-link").kind,
        EntryKind::HardLink {
            target: "d00/f01".into()
        }
    );
}

/// The read-ahead budget (16 MiB) goes back as the capture writes each
/// batch: a batch of a small and an 8 MiB file followed by another 8 MiB
/// file (more than the budget left while the batch is held) does not stall.
#[tokio::test]
async fn large_files_after_a_full_batch_do_not_stall_the_capture() {
    let src = tempfile::tempdir().unwrap();
    let sizes = [
        ("a", 1 << 20),
        ("b", 8 << 20),
        ("c", 8 << 20),
        ("d", 7 << 20),
        ("e", 100),
    ];
    for (name, len) in sizes {
        std::fs::write(src.path().join(name), vec![name.as_bytes()[0]; len]).unwrap();
    }
    let (summary, backup, entries) = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        capture(DirectorySource::new("state", src.path())),
    )
    .await
    .expect("the capture stalled");
    assert!(summary.warnings.is_empty(), "{summary:?}");
    for (name, len) in sizes {
        let data = backup.read(entry(&entries, name.as_bytes())).await.unwrap();
        assert_eq!(data.len(), len);
        assert!(data.iter().all(|b| *b == name.as_bytes()[0]));
    }
}

/// The walk runs on a thread of its own: it waits for the readers and the
/// sink, which run on the blocking pool, so it must not hold one of that
/// pool's threads. With one blocking thread, and with two captures sharing
/// the `ibs` command's two, captures of many files finish (bounded).
#[test]
fn captures_finish_with_a_blocking_pool_of_one_or_two_threads() {
    let src = tempfile::tempdir().unwrap();
    for d in 0..10 {
        let dir = src.path().join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("{d}/{f}").repeat(40)).unwrap();
        }
    }
    std::fs::write(src.path().join("big"), vec![7u8; 12 << 20]).unwrap();
    for (threads, captures) in [(1, 1), (2, 2)] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(threads)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let all =
                futures::future::join_all((0..captures).map(|_| capture(DirectorySource::new("state", src.path()))));
            let done = tokio::time::timeout(std::time::Duration::from_secs(120), all)
                .await
                .unwrap_or_else(|_| panic!("{captures} capture(s) with {threads} blocking thread(s) hung"));
            for (summary, _, entries) in done {
                assert!(summary.warnings.is_empty(), "{summary:?}");
                assert_eq!(entries.len(), 10 + 10 * 100 + 1);
            }
        });
    }
}
