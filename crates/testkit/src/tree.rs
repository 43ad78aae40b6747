//! The fidelity tree of issue #17: every kind of entry and metadata a
//! capture must keep, built on disk, and the comparison of a restored copy
//! with it. The library round trip (`crates/controller/tests/fidelity.rs`)
//! and the `ibs` binary's (`crates/cli/tests/fidelity.rs`) use it, and the
//! capture tests read its entries back from an archive.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The sparse file's size; it holds [`SPARSE_DATA`] bytes of data.
pub const SPARSE_SIZE: u64 = 256 << 20;
/// The sparse file's 18 bytes of data: the first part at 0, the rest at 200 MiB.
pub const SPARSE_DATA: (&[u8], &[u8]) = (b"sparse-head", b"-tail!!");
/// The FIFO: the one thing not restored.
pub const FIFO: &str = "pipe";
/// Names that are not printable UTF-8.
pub const ODD_NAMES: [&[u8]; 4] = [b"bad\xff.txt", b"new\nline", b"tab\tname", b"back\\slash"];
/// The 1960 file's time: seconds and nanoseconds (before 1970, with nanoseconds).
pub const MTIME_1960: (i64, u32) = (-315_619_200, 250_000_000);
/// The 2001 file's time.
pub const MTIME_2001: (i64, u32) = (978_307_200, 123_456_789);
/// The owner of `owned` (set only as root).
pub const OWNER: (u32, u32) = (1234, 5678);

fn time(t: (i64, u32)) -> SystemTime {
    let whole = if t.0 >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.0.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(t.0.unsigned_abs())
    };
    whole + Duration::from_nanos(u64::from(t.1))
}

fn set_mtime(path: &Path, t: (i64, u32)) {
    let f = std::fs::File::open(path).unwrap();
    f.set_modified(time(t)).unwrap();
}

fn file(path: &Path, data: &[u8], mode: u32) {
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn folder(path: &Path, mode: u32) {
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Builds the tree in the empty folder `root`. Owners (a file of uid 1234,
/// gid 5678) and a setuid file only as root; returns whether it did.
pub fn build(root: &Path) -> bool {
    let root_user = crate::is_root();
    folder(&root.join("secrets"), 0o700);
    file(
        &root.join("secrets/key"),
        b"-----BEGIN PRIVATE KEY-----\nMC4CAQ==\n",
        0o600,
    );
    folder(&root.join("bin"), 0o755);
    file(&root.join("bin/run.sh"), b"#!/bin/sh\necho hello\n", 0o755);
    if root_user {
        file(&root.join("bin/suid"), b"setuid and setgid", 0o6755);
    }
    folder(&root.join("dated"), 0o755);
    file(&root.join("dated/1960.txt"), b"from 1960", 0o644);
    set_mtime(&root.join("dated/1960.txt"), MTIME_1960);
    file(&root.join("dated/2001.txt"), b"from 2001", 0o644);
    set_mtime(&root.join("dated/2001.txt"), MTIME_2001);
    folder(&root.join("links"), 0o755);
    std::os::unix::fs::symlink("../bin/run.sh", root.join("links/relative")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("links/absolute")).unwrap();
    std::os::unix::fs::symlink("../nowhere/at/all", root.join("links/dangling")).unwrap();
    folder(&root.join("hard"), 0o755);
    file(&root.join("hard/one"), b"one file, two names", 0o640);
    std::fs::hard_link(root.join("hard/one"), root.join("hard/two")).unwrap();
    folder(&root.join("empty"), 0o750);
    folder(&root.join("shared"), 0o1777);
    file(&root.join("owned"), b"someone else's", 0o644);
    if root_user {
        std::os::unix::fs::chown(root.join("owned"), Some(OWNER.0), Some(OWNER.1)).unwrap();
    }
    for name in ODD_NAMES {
        file(&root.join(OsStr::from_bytes(name)), name, 0o644);
    }
    // Key order: `a` < `a/x` < `a-b`.
    folder(&root.join("a"), 0o755);
    file(&root.join("a/x"), b"x", 0o644);
    file(&root.join("a-b"), b"a-b", 0o644);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(root.join("sparse")).unwrap();
        f.set_len(SPARSE_SIZE).unwrap();
        f.write_all_at(SPARSE_DATA.0, 0).unwrap();
        f.write_all_at(SPARSE_DATA.1, 200 << 20).unwrap();
    }
    let status = std::process::Command::new("mkfifo")
        .arg(root.join(FIFO))
        .status()
        .unwrap();
    assert!(status.success());
    // Folder times last (adding entries changes them), with nanoseconds.
    for (i, d) in ["secrets", "bin", "dated", "links", "hard", "empty", "shared", "a"]
        .iter()
        .enumerate()
    {
        set_mtime(&root.join(d), (1_600_000_000 + i as i64, 987_654_321));
    }
    root_user
}

/// Every path under `dir`, relative, sorted, links not followed.
pub fn listing(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            out.push(p.strip_prefix(base).unwrap().to_owned());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

fn same_content(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Compares the restored copy `restored` with the tree at `src`: the same
/// paths but the FIFO, and for each its type, mode, modification time (ns),
/// link target and content; owners when `owners`; the hard link pair one
/// inode; the sparse file still sparse. Panics with every difference.
pub fn compare(src: &Path, restored: &Path, owners: bool) {
    let expected: Vec<PathBuf> = listing(src).into_iter().filter(|p| p != Path::new(FIFO)).collect();
    assert_eq!(listing(restored), expected, "the restored paths differ");
    let mut diffs = Vec::new();
    for rel in &expected {
        let (a, b) = (src.join(rel), restored.join(rel));
        let (ma, mb) = (
            std::fs::symlink_metadata(&a).unwrap(),
            std::fs::symlink_metadata(&b).unwrap(),
        );
        let mut differ = |what: &str, x: String, y: String| {
            if x != y {
                diffs.push(format!("{}: {what}: {x} != {y}", rel.display()));
            }
        };
        differ("type", format!("{:?}", ma.file_type()), format!("{:?}", mb.file_type()));
        if !ma.file_type().is_symlink() {
            differ(
                "mode",
                format!("{:o}", ma.mode() & 0o7777),
                format!("{:o}", mb.mode() & 0o7777),
            );
        }
        differ(
            "mtime",
            format!("{}.{:09}", ma.mtime(), ma.mtime_nsec()),
            format!("{}.{:09}", mb.mtime(), mb.mtime_nsec()),
        );
        if owners {
            differ(
                "owner",
                format!("{}:{}", ma.uid(), ma.gid()),
                format!("{}:{}", mb.uid(), mb.gid()),
            );
        }
        if ma.file_type().is_symlink() {
            differ(
                "target",
                format!("{:?}", std::fs::read_link(&a).ok()),
                format!("{:?}", std::fs::read_link(&b).ok()),
            );
        }
        if ma.is_file() {
            differ("size", ma.len().to_string(), mb.len().to_string());
            if !same_content(&a, &b) {
                diffs.push(format!("{}: content differs", rel.display()));
            }
        }
    }
    assert!(diffs.is_empty(), "the restored copy differs:\n{}", diffs.join("\n"));
    let (one, two) = (
        std::fs::metadata(restored.join("hard/one")).unwrap(),
        std::fs::metadata(restored.join("hard/two")).unwrap(),
    );
    assert_eq!(
        (one.ino(), one.nlink()),
        (two.ino(), 2),
        "the hard link pair is not one file"
    );
    for (name, t) in [("dated/1960.txt", MTIME_1960), ("dated/2001.txt", MTIME_2001)] {
        let m = std::fs::metadata(restored.join(name)).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec()), (t.0, i64::from(t.1)), "{name}");
    }
    let sparse = std::fs::metadata(restored.join("sparse")).unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "the sparse file was restored with {} bytes allocated",
        sparse.blocks() * 512
    );
    if owners {
        let owned = std::fs::metadata(restored.join("owned")).unwrap();
        assert_eq!((owned.uid(), owned.gid()), OWNER);
    }
}
