//! The conformance suite: async scenarios every backend's tests run.
//!
//! Each scenario works under a folder it creates from `base` (so several can
//! share one target) and panics with a message on the first broken rule.
//! Call [`run_all`] from a backend's tests:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let target = ibs_storage::MemoryTarget::new();
//! ibs_storage::conformance::run_all(&target, &ibs_storage::ObjectPath::parse("conformance").unwrap()).await;
//! # }
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test kit: a panic is a failed rule"
)]

use bytes::Bytes;

use crate::{CommitMode, ErrorKind, ObjectPath, ReadTargetExt, StorageTarget, StorageTargetExt};

fn p(base: &ObjectPath, rest: &str) -> ObjectPath {
    let mut out = base.clone();
    for s in rest.split('/').filter(|s| !s.is_empty()) {
        out = out.child(s).unwrap();
    }
    out
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// Runs every scenario, each under its own folder below `base`.
pub async fn run_all(target: &dyn StorageTarget, base: &ObjectPath) {
    round_trip(target, &p(base, "round_trip")).await;
    range_reads(target, &p(base, "range_reads")).await;
    listing(target, &p(base, "listing")).await;
    overwrite_rules(target, &p(base, "overwrite")).await;
    commit_atomicity(target, &p(base, "atomicity")).await;
    deletes(target, &p(base, "deletes")).await;
    capacity(target).await;
    missing_paths(target, &p(base, "missing")).await;
}

/// A multi-chunk streaming upload reads back byte for byte.
pub async fn round_trip(target: &dyn StorageTarget, base: &ObjectPath) {
    target.create_dir_all(base).await.unwrap();
    let path = p(base, "big.bin");
    let chunk = 3 * 1024 * 1024 + 17;
    let mut writer = target.put(&path, CommitMode::CreateNew).await.unwrap();
    let mut expected = Vec::new();
    for seed in 0..3u8 {
        let data = pattern(chunk, seed);
        expected.extend_from_slice(&data);
        writer.write(data).await.unwrap();
    }
    writer.write(Bytes::new()).await.unwrap();
    let meta = writer.commit().await.unwrap();
    assert_eq!(meta.size, expected.len() as u64, "{target}: committed size");
    assert!(!meta.partial);
    let head = target.head(&path).await.unwrap();
    assert_eq!(head.size, expected.len() as u64, "{target}: head size");
    assert_eq!(
        target.read_all(&path).await.unwrap(),
        Bytes::from(expected),
        "{target}: content"
    );
    let empty = p(base, "empty");
    target
        .put_bytes(&empty, Bytes::new(), CommitMode::CreateNew)
        .await
        .unwrap();
    assert_eq!(target.head(&empty).await.unwrap().size, 0);
    assert!(target.read_all(&empty).await.unwrap().is_empty());
}

/// Range reads at every edge; ranges outside the object fail.
pub async fn range_reads(target: &dyn StorageTarget, base: &ObjectPath) {
    target.create_dir_all(base).await.unwrap();
    let path = p(base, "r.bin");
    let data = pattern(10_000, 7);
    target
        .put_bytes(&path, data.clone(), CommitMode::CreateNew)
        .await
        .unwrap();
    for (start, end) in [
        (0, 0),
        (0, 1),
        (0, 10_000),
        (9_999, 10_000),
        (10_000, 10_000),
        (4_096, 8_193),
        (1, 9_999),
    ] {
        let got = target.read_range(&path, start..end).await.unwrap();
        assert_eq!(
            got,
            data.slice(start as usize..end as usize),
            "{target}: range {start}..{end}"
        );
    }
    for (start, end) in [(0, 10_001), (10_000, 10_001), (20_000, 20_010)] {
        let err = target.read_range(&path, start..end).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Other, "{target}: range {start}..{end}: {err}");
    }
}

/// Listing is recursive, sized, bounded by the prefix, and excludes siblings that share a name prefix.
pub async fn listing(target: &dyn StorageTarget, base: &ObjectPath) {
    let a = p(base, "a");
    let ab = p(base, "ab");
    target.create_dir_all(&p(base, "a/x/y")).await.unwrap();
    target.create_dir_all(&ab).await.unwrap();
    for (path, len) in [("a/1", 1usize), ("a/x/2", 22), ("a/x/y/3", 333), ("ab/4", 4)] {
        target
            .put_bytes(&p(base, path), pattern(len, 1), CommitMode::CreateNew)
            .await
            .unwrap();
    }
    let listed = target.list_all(&a).await.unwrap();
    let got: Vec<(String, u64)> = listed.iter().map(|m| (m.path.as_str().to_owned(), m.size)).collect();
    let want: Vec<(String, u64)> = [("a/1", 1), ("a/x/2", 22), ("a/x/y/3", 333)]
        .iter()
        .map(|(s, n)| (p(base, s).as_str().to_owned(), *n))
        .collect();
    assert_eq!(got, want, "{target}: listing of {a}");
    assert!(
        listed.iter().all(|m| !m.partial),
        "{target}: committed objects listed as partial"
    );
    assert!(
        listed.iter().all(|m| m.modified.is_some()),
        "{target}: modification times"
    );
    assert_eq!(
        target.list_all(&p(base, "nothing-here")).await.unwrap(),
        vec![],
        "{target}: missing prefix"
    );
    assert_eq!(
        target.list_all(base).await.unwrap().len(),
        4,
        "{target}: listing of {base}"
    );
}

/// CreateNew never replaces; Overwrite replaces atomically.
pub async fn overwrite_rules(target: &dyn StorageTarget, base: &ObjectPath) {
    target.create_dir_all(base).await.unwrap();
    let path = p(base, "o");
    target
        .put_bytes(&path, Bytes::from_static(b"first"), CommitMode::CreateNew)
        .await
        .unwrap();
    let err = target
        .put_bytes(&path, Bytes::from_static(b"second"), CommitMode::CreateNew)
        .await
        .unwrap_err();
    assert!(
        err.kind() == ErrorKind::AlreadyExists,
        "{target}: CreateNew over an object: {err}"
    );
    assert_eq!(
        target.read_all(&path).await.unwrap(),
        Bytes::from_static(b"first"),
        "{target}: original kept"
    );
    target
        .put_bytes(&path, Bytes::from_static(b"third!"), CommitMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(
        target.read_all(&path).await.unwrap(),
        Bytes::from_static(b"third!"),
        "{target}: overwritten"
    );
    let listed = target.list_all(base).await.unwrap();
    assert_eq!(
        listed.len(),
        1,
        "{target}: no leftovers after a refused commit: {listed:?}"
    );
}

/// An upload in progress or aborted is never visible as a committed object.
pub async fn commit_atomicity(target: &dyn StorageTarget, base: &ObjectPath) {
    target.create_dir_all(base).await.unwrap();
    let path = p(base, "c");
    let mut writer = target.put(&path, CommitMode::CreateNew).await.unwrap();
    writer.write(pattern(1000, 3)).await.unwrap();
    assert_eq!(
        target.head(&path).await.unwrap_err().kind(),
        ErrorKind::PathNotFound,
        "{target}: visible before commit"
    );
    let listed = target.list_all(base).await.unwrap();
    assert!(
        listed.iter().all(|m| m.partial && m.path != path),
        "{target}: in-progress upload listed as committed: {listed:?}"
    );
    writer.abort().await.unwrap();
    assert!(
        target.list_all(base).await.unwrap().is_empty(),
        "{target}: aborted upload left behind"
    );
    let mut writer = target.put(&path, CommitMode::CreateNew).await.unwrap();
    writer.write(pattern(1000, 3)).await.unwrap();
    writer.commit().await.unwrap();
    let listed = target.list_all(base).await.unwrap();
    assert_eq!(listed.len(), 1, "{target}: {listed:?}");
    assert_eq!(listed[0].path, path);
    assert!(!listed[0].partial);
}

/// Deletes are idempotent; folders go once empty.
pub async fn deletes(target: &dyn StorageTarget, base: &ObjectPath) {
    target.create_dir_all(&p(base, "d/e")).await.unwrap();
    let path = p(base, "d/e/f");
    target
        .put_bytes(&path, pattern(10, 0), CommitMode::CreateNew)
        .await
        .unwrap();
    target.delete(&path).await.unwrap();
    assert_eq!(target.head(&path).await.unwrap_err().kind(), ErrorKind::PathNotFound);
    target.delete(&path).await.unwrap();
    target
        .put_bytes(&path, pattern(10, 0), CommitMode::CreateNew)
        .await
        .unwrap();
    target.delete_prefix(&p(base, "d")).await.unwrap();
    assert!(
        target.list_all(&p(base, "d")).await.unwrap().is_empty(),
        "{target}: delete_prefix"
    );
    target.delete_dir(&p(base, "d")).await.unwrap();
    // The folder is gone: an upload into it fails with the path class.
    let err = target.put(&path, CommitMode::CreateNew).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::PathNotFound,
        "{target}: put into a deleted folder: {err}"
    );
}

/// Capacity is consistent where known.
pub async fn capacity(target: &dyn StorageTarget) {
    let cap = target.capacity().await.unwrap();
    if let (Some(free), Some(total)) = (cap.free_bytes, cap.total_bytes) {
        assert!(free <= total, "{target}: free {free} > total {total}");
    }
}

/// Missing objects and folders give the path class.
pub async fn missing_paths(target: &dyn StorageTarget, base: &ObjectPath) {
    target.create_dir_all(base).await.unwrap();
    let missing = p(base, "no/such/object");
    assert_eq!(
        target.head(&missing).await.unwrap_err().kind(),
        ErrorKind::PathNotFound,
        "{target}: head"
    );
    assert_eq!(
        target.read_range(&missing, 0..1).await.unwrap_err().kind(),
        ErrorKind::PathNotFound,
        "{target}: read"
    );
    let err = target.put(&missing, CommitMode::CreateNew).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::PathNotFound,
        "{target}: put into a missing folder: {err}"
    );
    assert!(
        err.to_string().contains("no/such"),
        "{target}: the error names the path: {err}"
    );
}

/// Ends a test that cannot run here (no root, a tool missing, …): under CI
/// (`CI` set, and not `false` or `0`) it fails the test, so a machine that
/// lacks what the suite needs cannot pass it by skipping; elsewhere it prints
/// `SKIPPED: <test>: <why>` on stderr and appends that line to the file named
/// by `IBS_SKIP_LOG` (which `scripts/test.sh` counts). The test is named by
/// its thread, as the test harness names it. Call it and return:
///
/// ```no_run
/// # fn have_root() -> bool { true }
/// if !have_root() {
///     return ibs_storage::conformance::skip_or_fail("not root: cannot mount a tmpfs");
/// }
/// ```
#[track_caller]
pub fn skip_or_fail(why: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"));
    let log = std::env::var_os("IBS_SKIP_LOG").map(std::path::PathBuf::from);
    let thread = std::thread::current();
    skip_or_fail_as(thread.name().unwrap_or("<unnamed test>"), why, ci, log.as_deref());
}

#[track_caller]
fn skip_or_fail_as(test: &str, why: &str, ci: bool, log: Option<&std::path::Path>) {
    assert!(
        !ci,
        "{test} cannot run here: {why}. Under CI (CI is set) a test that cannot run fails instead of skipping"
    );
    let line = format!("SKIPPED: {test}: {why}");
    eprintln!("{line}");
    if let Some(log) = log {
        use std::io::Write;
        // Appends of one short line from each test process do not interleave.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("IBS_SKIP_LOG {}: {e}", log.display()));
        f.write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("IBS_SKIP_LOG {}: {e}", log.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::skip_or_fail_as;

    #[test]
    #[should_panic(expected = "a test that cannot run fails instead of skipping")]
    fn under_ci_a_skip_fails() {
        skip_or_fail_as("some_test", "not root", true, None);
    }

    #[test]
    fn elsewhere_a_skip_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        skip_or_fail_as("one", "not root", false, Some(&log));
        skip_or_fail_as("two", "no smbd", false, Some(&log));
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "SKIPPED: one: not root\nSKIPPED: two: no smbd\n"
        );
    }
}
