//! The restore's staging writer (a thread fed batches of entries in archive
//! order, making them relative to open folder handles): many small files
//! across many folders land in their folders; links made in the same batch
//! as their files; a failure midway — a damaged entry, a frame that does not
//! authenticate, an entry the file system refuses — places nothing and
//! leaves no staging folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use common::*;
use ibs_archive::{ArchiveWriter, EntryMeta, WriterOptions};
use ibs_recovery::{Backup, Choice, Recovery, RecoveryError, RestoreOptions};
use ibs_storage::StorageTarget;

async fn newest(target: &Arc<dyn StorageTarget>) -> Backup {
    Recovery::new(target.clone(), instance())
        .open_choice(&Choice::Newest, &[&pair_a().identity])
        .await
        .unwrap()
}

/// A small document, different for every `i` (a few bytes to ~1 KiB).
fn doc(i: usize) -> Vec<u8> {
    format!("{{\"n\": {i}, \"pad\": \"{}\"}}\n", "x".repeat(i * 37 % 1000)).into_bytes()
}

/// Writes and commits a version 2 backup of `entries` (in key order), with
/// frames of `frame_size` bytes. Returns the archive's bytes too.
async fn put_entries(target: &Arc<dyn StorageTarget>, entries: Vec<(EntryMeta, Vec<u8>)>, frame_size: u32) -> Vec<u8> {
    let cert = &pair_a().cert;
    let mut w = ArchiveWriter::new(
        Vec::new(),
        &[cert],
        WriterOptions::default()
            .created(T0)
            .producer_version("1.0")
            .label("fqdn", FQDN)
            .label("region", REGION)
            .frame_size(frame_size),
    )
    .unwrap();
    for (meta, data) in entries {
        w.add_entry(meta, &data[..]).unwrap();
    }
    let (archive, summary) = w.finish().unwrap();
    put_archive(target, archive.clone(), summary.archive_id, &[cert], T0, "1.0").await;
    archive
}

/// Every file under `dir` (relative path, content), sorted.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(root, &p, out);
            } else if m.is_file() {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Nothing at all under `dir` (no file, no folder, no staging folder).
fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Paths of a tree with folders at several depths, in key order: each
/// folder's files, then its subfolders, then files again in the parent
/// (so the writer's open folders go down and back up many times).
fn tree_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for a in 0..6 {
        for b in 0..5 {
            for f in 0..4 {
                paths.push(format!("d{a}/s{b}/deep/f{f}.json"));
            }
            for f in 0..7 {
                paths.push(format!("d{a}/s{b}/f{f}.json"));
            }
        }
        for f in 0..3 {
            paths.push(format!("d{a}/t{f}.xml"));
        }
    }
    for f in 0..5 {
        paths.push(format!("z{f}.json"));
    }
    paths.sort_by(|a, b| ibs_archive::path_cmp(a.as_bytes(), b.as_bytes()));
    paths
}

#[tokio::test]
async fn many_small_files_across_many_folders_and_sources_land_in_their_folders() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let mut expected = Vec::new();
    let mut entries = Vec::new();
    for source in ["alpha", "beta"] {
        for (i, path) in tree_paths().into_iter().enumerate() {
            let data = doc(i + source.len());
            expected.push((format!("{source}/{path}"), data.clone()));
            entries.push((EntryMeta::new(source, path.as_str()).mode(0o640), data));
        }
    }
    // Small frames: files span frames and batches end mid-frame.
    put_entries(&target, entries, 4096).await;
    let backup = newest(&target).await;
    let out = tempfile::tempdir().unwrap();
    let report = backup.restore_to(out.path(), &RestoreOptions::default()).await.unwrap();
    assert_eq!(report.files, expected.len() as u64);
    expected.sort();
    assert_eq!(files_under(out.path()), expected);
    let mode = std::fs::metadata(out.path().join("beta/d3/s2/deep/f1.json"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
}

#[tokio::test]
async fn links_made_in_the_same_batch_as_their_files_are_links() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let mut entries = vec![
        (EntryMeta::new("s", "a").folder(), Vec::new()),
        (EntryMeta::new("s", "a/one.json"), doc(1)),
        (EntryMeta::new("s", "a/one.link").hard_link("a/one.json"), Vec::new()),
        (EntryMeta::new("s", "a/sub").folder(), Vec::new()),
        (EntryMeta::new("s", "a/sub/two.json"), doc(2)),
        (EntryMeta::new("s", "a/sub/up").symlink("../one.json"), Vec::new()),
        (
            EntryMeta::new("s", "a/two.link").hard_link("a/sub/two.json"),
            Vec::new(),
        ),
    ];
    for i in 0..20 {
        entries.push((EntryMeta::new("s", format!("b/{i:02}.json").as_str()), doc(i)));
    }
    entries.push((EntryMeta::new("s", "c.link").hard_link("b/07.json"), Vec::new()));
    put_entries(&target, entries, 1 << 20).await;
    let backup = newest(&target).await;
    let out = tempfile::tempdir().unwrap();
    let report = backup.restore_to(out.path(), &RestoreOptions::default()).await.unwrap();
    assert_eq!((report.files, report.hard_links, report.symlinks), (22, 3, 1));
    let s = out.path().join("s");
    let ino = |p: &str| std::fs::symlink_metadata(s.join(p)).unwrap().ino();
    assert_eq!(ino("a/one.json"), ino("a/one.link"));
    assert_eq!(ino("a/sub/two.json"), ino("a/two.link"));
    assert_eq!(ino("b/07.json"), ino("c.link"));
    assert_eq!(std::fs::metadata(s.join("c.link")).unwrap().nlink(), 2);
    assert_eq!(
        std::fs::read_link(s.join("a/sub/up")).unwrap(),
        Path::new("../one.json")
    );
    assert_eq!(std::fs::read(s.join("a/sub/up")).unwrap(), doc(1));
}

/// Restores a crafted version 1 backup of `entries` whose entry at `wrong`
/// (if any) has a SHA-256 its content does not have; the outcome and the
/// restore folder.
async fn restore_crafted(
    entries: &[(&str, &str, &[u8])],
    wrong: Option<usize>,
) -> (Result<ibs_recovery::RestoreReport, RecoveryError>, tempfile::TempDir) {
    let cert = &pair_a().cert;
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let (archive, archive_id) = crafted_archive_with_wrong_hash(cert, entries, "1.0", wrong);
    put_archive(&target, archive, archive_id, &[cert], T0, "1.0").await;
    let backup = newest(&target).await;
    let out = tempfile::tempdir().unwrap();
    let restored = backup.restore_to(out.path(), &RestoreOptions::default()).await;
    (restored, out)
}

#[tokio::test]
async fn a_damaged_entry_among_many_small_files_places_nothing() {
    // Version 1 (no folder entries: the writer makes the parents), one
    // frame, the entry in the middle recorded with a SHA-256 its content
    // does not have: hundreds of files are staged before it is reached.
    let paths = tree_paths();
    let docs: Vec<Vec<u8>> = (0..paths.len()).map(|i| doc(i % 40)).collect();
    let entries: Vec<(&str, &str, &[u8])> = paths
        .iter()
        .zip(&docs)
        .map(|(p, d)| ("state", p.as_str(), d.as_slice()))
        .collect();
    let middle = entries.len() / 2;
    let bad_path = paths[middle].clone();
    for wrong in [None, Some(middle)] {
        let (restored, out) = restore_crafted(&entries, wrong).await;
        match wrong {
            None => {
                // The same archive undamaged restores whole (version 1 parents made).
                assert_eq!(restored.unwrap().files, paths.len() as u64);
                assert_eq!(files_under(out.path()).len(), paths.len());
            }
            Some(_) => {
                let err = restored.unwrap_err();
                assert!(err.to_string().contains(&bad_path), "{err}");
                assert_empty(out.path());
            }
        }
    }
}

#[tokio::test]
async fn a_frame_that_does_not_authenticate_midway_places_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let entries: Vec<_> = tree_paths()
        .into_iter()
        .enumerate()
        .map(|(i, p)| (EntryMeta::new("state", p.as_str()), doc(i)))
        .collect();
    let archive = put_entries(&target, entries, 4096).await;
    let backup = newest(&target).await;
    // Flip a byte two thirds into the archive (in a frame: the index and
    // footer are at the end and small).
    let frame = backup.archive().frame_offsets()[backup.archive().frame_offsets().len() * 2 / 3];
    let mut bytes = archive;
    bytes[frame as usize + 40] ^= 0x10;
    let dir2 = tempfile::tempdir().unwrap();
    let target2 = local(dir2.path());
    let cert = &pair_a().cert;
    let id = backup.archive().info().fields().archive_id;
    put_archive(&target2, bytes, id, &[cert], T0, "1.0").await;
    let damaged = newest(&target2).await;
    let out = tempfile::tempdir().unwrap();
    let err = damaged
        .restore_to(out.path(), &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(!matches!(err, RecoveryError::Io { .. }), "{err}");
    assert_empty(out.path());
}

#[tokio::test]
async fn an_entry_the_file_system_refuses_is_named_and_places_nothing() {
    // A crafted version 1 archive (no tree rule) with a file `d3/s0` where,
    // further on, a folder of that name holds files: the writer thread,
    // deep in a tree of many, cannot open it as a folder, and the error
    // names it.
    let cert = &pair_a().cert;
    let mut paths = tree_paths();
    let at = paths.iter().position(|p| p.starts_with("d3/s0/")).unwrap();
    paths.insert(at, "d3/s0".to_owned());
    let docs: Vec<Vec<u8>> = (0..paths.len()).map(doc).collect();
    let entries: Vec<(&str, &str, &[u8])> = paths
        .iter()
        .zip(&docs)
        .map(|(p, d)| ("state", p.as_str(), d.as_slice()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let target = local(dir.path());
    let (archive, archive_id) = crafted_archive(cert, &entries, "1.0");
    put_archive(&target, archive, archive_id, &[cert], T0, "1.0").await;
    let backup = newest(&target).await;
    let out = tempfile::tempdir().unwrap();
    let err = backup
        .restore_to(out.path(), &RestoreOptions::default())
        .await
        .unwrap_err();
    match &err {
        RecoveryError::Io { action, path, .. } => {
            assert_eq!(*action, "cannot open", "{err}");
            assert!(path.ends_with("state/d3/s0"), "{err}");
        }
        other => panic!("{other}"),
    }
    assert_empty(out.path());
}

#[tokio::test]
async fn a_large_file_or_the_last_file_with_the_wrong_content_places_nothing() {
    // Contents are checked beside the writer (small files in batches, a
    // large one as its pieces stream): a wrong SHA-256 on a file larger
    // than a writer batch, or on the very last file (checked when the pass
    // ends), still fails the restore and places nothing.
    let paths = tree_paths();
    let big = paths.len() / 3;
    let docs: Vec<Vec<u8>> = (0..paths.len())
        .map(|i| {
            if i == big {
                doc(7).repeat(5 << 20 >> 8)
            } else {
                doc(i % 40)
            }
        })
        .collect();
    assert!(docs[big].len() > 4 << 20);
    let entries: Vec<(&str, &str, &[u8])> = paths
        .iter()
        .zip(&docs)
        .map(|(p, d)| ("state", p.as_str(), d.as_slice()))
        .collect();
    for wrong in [None, Some(big), Some(entries.len() - 1)] {
        let (restored, out) = restore_crafted(&entries, wrong).await;
        match wrong {
            None => {
                assert_eq!(restored.unwrap().files, paths.len() as u64);
                let got = files_under(out.path());
                assert_eq!(got.len(), paths.len());
                assert!(got.iter().any(|(_, c)| c == &docs[big]));
            }
            Some(i) => {
                let err = restored.unwrap_err();
                assert!(err.to_string().contains(&paths[i]), "{err}");
                assert!(err.to_string().contains("SHA-256"), "{err}");
                assert_empty(out.path());
            }
        }
    }
}

/// A restore never waits on a blocking-pool thread that itself waits for
/// the restore: large files' checks run on threads of their own. With one
/// blocking thread, and with two restores sharing the `ibs` command's two,
/// restores of a backup with a 40 MiB file finish (bounded, not hung).
#[test]
fn restores_finish_with_a_blocking_pool_of_one_or_two_threads() {
    let paths = tree_paths();
    let big: Vec<u8> = doc(3).repeat((40 << 20) / doc(3).len());
    let docs: Vec<Vec<u8>> = (0..paths.len())
        .map(|i| if i == 5 { big.clone() } else { doc(i % 40) })
        .collect();
    let entries: Vec<(&str, &str, &[u8])> = paths
        .iter()
        .zip(&docs)
        .map(|(p, d)| ("state", p.as_str(), d.as_slice()))
        .collect();
    for (threads, restores) in [(1, 1), (2, 2)] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(threads)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let all = futures::future::join_all((0..restores).map(|_| restore_crafted(&entries, None)));
            let done = tokio::time::timeout(std::time::Duration::from_secs(120), all)
                .await
                .unwrap_or_else(|_| panic!("{restores} restore(s) with {threads} blocking thread(s) hung"));
            for (restored, out) in done {
                assert_eq!(restored.unwrap().files, paths.len() as u64);
                assert_eq!(files_under(out.path()).len(), paths.len());
            }
        });
    }
}
