//! Issue #17's round trip through the `ibs` binary: the fidelity tree
//! (every kind of entry and metadata, `crates/controller/tests/common/tree.rs`)
//! through `ibs backup` and `ibs restore` as root compares equal but for the
//! FIFO, which `ibs backup` reports as skipped (exit 0, one warning).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../controller/tests/common/tree.rs"]
mod tree;

use std::path::Path;
use std::process::{Command, Output};

const FQDN: &str = "azs.contoso.com";

fn ibs(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ibs")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ibs {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_kind_and_metadata_survives_ibs_backup_and_ibs_restore() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    ibs(&["keygen", "--out", s(&keys), "--name", "k"]);
    let (cer, pfx, pw) = (keys.join("k.cer"), keys.join("k.pfx"), keys.join("k.password"));
    let (src, share, out) = (
        work.path().join("src"),
        work.path().join("share"),
        work.path().join("out"),
    );
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&share).unwrap();
    let owners = tree::build(&src);
    let source = format!("state={}", s(&src));
    let backup = ibs(&[
        "backup",
        "--location",
        s(&share),
        "--cert",
        s(&cer),
        "--fqdn",
        FQDN,
        "--source",
        &source,
    ]);
    // The FIFO, and only it, is reported.
    let stderr = String::from_utf8_lossy(&backup.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ibs: warning:")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(&src.join(tree::FIFO).display().to_string())
            && warnings[0].contains("FIFO, socket or device"),
        "{stderr}"
    );
    ibs(&[
        "restore",
        "--location",
        s(&share),
        "--fqdn",
        FQDN,
        "--pfx",
        s(&pfx),
        "--password-file",
        s(&pw),
        "--to",
        s(&out),
    ]);
    tree::compare(&src, &out.join("state"), owners);
    if !owners {
        ibs_storage::conformance::skip_or_fail("not root: owners (uid 1234, gid 5678) and setuid not checked");
    }
}
