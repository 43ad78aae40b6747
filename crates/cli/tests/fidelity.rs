//! Issue #17's round trip through the `ibs` binary: the fidelity tree
//! (every kind of entry and metadata, `ibs_testkit::tree`)
//! through `ibs backup` and `ibs restore` as root compares equal but for the
//! FIFO, which `ibs backup` reports as skipped (exit 0, one warning).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ibs_testkit::cli::{Binary, path_str as s};
use ibs_testkit::tree;

const FQDN: &str = "azs.contoso.com";
const IBS: Binary = Binary::new(env!("CARGO_BIN_EXE_ibs"));

#[test]
fn every_kind_and_metadata_survives_ibs_backup_and_ibs_restore() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    let keys = IBS.keygen(&keys, "k");
    let (cer, pfx, pw) = (keys.cer, keys.pfx, keys.password);
    let (src, share, out) = (
        work.path().join("src"),
        work.path().join("share"),
        work.path().join("out"),
    );
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&share).unwrap();
    let owners = tree::build(&src);
    let source = format!("state={}", s(&src));
    let (_, stderr) = IBS.ok(&[
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
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ibs: warning:")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(&src.join(tree::FIFO).display().to_string())
            && warnings[0].contains("FIFO, socket or device"),
        "{stderr}"
    );
    IBS.ok(&[
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
