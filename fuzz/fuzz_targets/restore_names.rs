//! The restore side of entry names: what decides whether an entry (source,
//! path) of an untrusted archive may be written, and where. Runs the
//! restore's own checks and path mapping (`ibs_recovery::fuzzing`), no file
//! system.
//!
//! Input: one byte `n`, then the source name (`n` bytes), then the path (the
//! rest), each as lossy UTF-8.
//!
//! Properties: the checks never panic; a name they accept maps to a path
//! strictly inside the restore folder made only of normal components (none
//! empty, `.`, `..` or holding a NUL), exactly the source and the path's `/`
//! segments (nothing dropped or merged); the temporary file sits beside the
//! final one under another name; a fresh source's staged file lies inside
//! the staging folder and lands on the final path when the source's folder
//! is moved into place.
#![no_main]

use std::ffi::OsStr;
use std::path::{Component, Path};

use ibs_archive::format::{check_entry_path, check_source_name};
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
    let (source, path) = (String::from_utf8_lossy(source), String::from_utf8_lossy(path));
    let tag = data.iter().fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b));
    let index = data.len();

    let dir = Path::new(DIR);
    let separate = check_source_name(&source).is_ok() && check_entry_path(&path).is_ok();
    let Ok(p) = restore_paths(dir, &source, &path, tag, index) else {
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
    let expected: Vec<&str> = std::iter::once(&*source).chain(path.split('/')).collect();
    assert_eq!(below, expected, "{source:?} {path:?} maps to {}", p.target.display());
    assert_eq!(p.target, dir.join(&p.relative));
    assert_eq!(names_below(&p.relative, Path::new("")), expected);

    // The temporary file: beside the final one, under its own name.
    assert_eq!(p.temp.parent(), p.target.parent());
    assert_ne!(p.temp.file_name(), p.target.file_name());
    assert_eq!(names_below(&p.temp, dir).len(), expected.len());

    // A fresh source: staged inside the staging folder (itself a plain child
    // of the restore folder), moved onto the final path.
    assert_eq!(names_below(&p.staging_root, dir).len(), 1);
    assert_eq!(names_below(&p.staged, &p.staging_root), expected);
    assert_eq!(names_below(&p.moved_from, &p.staging_root), [&*source]);
    assert_eq!(names_below(&p.moved_to, dir), [&*source]);
    let after_move = p
        .moved_to
        .join(p.staged.strip_prefix(&p.moved_from).expect("staged under its source"));
    assert_eq!(after_move, p.target);
});
