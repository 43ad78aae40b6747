//! The restore side of entry names: what decides whether an entry (source,
//! path) of an untrusted archive may be written, and where. Runs the
//! restore's own checks and path mapping (`ibs_recovery::fuzzing`), no file
//! system.
//!
//! Input: one byte `n`, then the source name (`n` bytes, lossy UTF-8), then
//! the path (the rest, as bytes: format version 2 names are POSIX bytes).
//!
//! Properties: the checks never panic; a name they accept maps to a path
//! strictly inside the restore folder made only of normal components (none
//! empty, `.`, `..` or holding a NUL), exactly the source and the path's `/`
//! segments (nothing dropped or merged); the staged file lies inside the
//! staging folder, under the source's folder, and lands on the final path
//! when that folder is moved into place.
#![no_main]

use std::ffi::OsStr;
use std::path::{Component, Path};

use std::os::unix::ffi::OsStrExt;

use ibs_archive::fuzzing::format::check_source_name;
use ibs_recovery::fuzzing::restore_paths;
use libfuzzer_sys::fuzz_target;

const DIR: &str = "/srv/restore-here";

/// The components of `path` below `base`, each checked to be a plain name.
fn names_below<'p>(path: &'p Path, base: &Path) -> Vec<&'p OsStr> {
    let rest = path
        .strip_prefix(base)
        .unwrap_or_else(|_| panic!("{} is not inside {}", path.display(), base.display()));
    rest.components()
        .map(|c| match c {
            Component::Normal(n) => {
                let bytes = n.as_encoded_bytes();
                assert!(!bytes.is_empty(), "empty component in {}", path.display());
                assert!(n != "." && n != "..", "dot component in {}", path.display());
                assert!(!bytes.contains(&0), "NUL in {}", path.display());
                assert!(!bytes.contains(&b'/'), "slash in a component of {}", path.display());
                n
            }
            other => panic!("{other:?} in {} below {}", path.display(), base.display()),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (source, path) = rest.split_at(usize::from(n).min(rest.len()));
    let source = String::from_utf8_lossy(source);
    let tag = data.iter().fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b));

    let dir = Path::new(DIR);
    let separate = check_source_name(&source).is_ok() && ibs_archive::check_path_bytes(path).is_ok();
    let Ok(p) = restore_paths(dir, &source, path, tag) else {
        assert!(
            !separate,
            "refused, yet each name passes its own check: {source:?} {path:?}"
        );
        return;
    };
    assert!(
        separate,
        "accepted, yet a name fails its own check: {source:?} {path:?}"
    );

    // The final path: strictly inside the folder, nothing but the names.
    let below = names_below(&p.target, dir);
    let expected: Vec<&OsStr> = std::iter::once(OsStr::new(&*source))
        .chain(path.split(|b| *b == b'/').map(OsStr::from_bytes))
        .collect();
    assert_eq!(below, expected, "{source:?} {path:?} maps to {}", p.target.display());
    assert_eq!(p.target, dir.join(&p.relative));
    assert_eq!(names_below(&p.relative, Path::new("")), expected);

    // Staged inside the staging folder (itself a plain child of the restore
    // folder), and moved onto the final path with its source's folder.
    assert_eq!(names_below(&p.staging_root, dir).len(), 1);
    assert_eq!(names_below(&p.staged, &p.staging_root), expected);
    let moved_from = p.staging_root.join(&*source);
    let after_move = dir
        .join(&*source)
        .join(p.staged.strip_prefix(&moved_from).expect("staged under its source"));
    assert_eq!(after_move, p.target);
});
