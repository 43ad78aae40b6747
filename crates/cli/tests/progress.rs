//! Progress on a terminal, and none anywhere else: a backup run under a
//! pseudo-terminal (util-linux `script`) draws its progress on stderr; the
//! same backup with stderr piped writes no control characters at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};

use ibs_testkit::cli::{Binary, path_str as s};
use ibs_testkit::data::noise;

const FQDN: &str = "azs.contoso.com";
const IBS: Binary = Binary::new(env!("CARGO_BIN_EXE_ibs"));

/// A small tree: a few files and one large enough (24 MiB) that the backup
/// lasts several redraws of the bar.
fn small_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.json"), br#"{"role":"Owner"}"#).unwrap();
    std::fs::write(dir.join("sub/b.txt"), b"hello").unwrap();
    std::fs::write(dir.join("sub/large.bin"), noise(24 << 20, 7)).unwrap();
}

/// Quotes `arg` for `sh -c`.
fn quoted(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

fn backup_args<'a>(share: &'a str, cer: &'a str, source: &'a str) -> Vec<&'a str> {
    vec![
        "backup",
        "--location",
        share,
        "--cert",
        cer,
        "--fqdn",
        FQDN,
        "--source",
        source,
    ]
}

/// An escape sequence or a carriage return.
fn has_control_characters(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b == 0x1b || b == b'\r')
}

/// An escape sequence or a carriage return that is not the terminal's own
/// end of line (a pseudo-terminal turns every `\n` into `\r\n`): redraws.
fn has_redraws(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b) || bytes.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n')
}

#[test]
fn a_backup_shows_progress_on_a_terminal_and_no_control_characters_when_piped() {
    if Command::new("script").arg("--version").output().is_err() {
        ibs_storage::conformance::skip_or_fail(
            "util-linux `script` is not installed (no pseudo-terminal to run under)",
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let keys = IBS.keygen(&work.path().join("keys"), "operator");
    let tree = work.path().join("tree");
    small_tree(&tree);
    let source = format!("data={}", tree.display());

    // Under a pseudo-terminal: stdout and stderr both go to it, and `script`
    // copies what was written there to its own stdout.
    let share = work.path().join("share-tty");
    std::fs::create_dir(&share).unwrap();
    let mut command = vec![quoted(env!("CARGO_BIN_EXE_ibs"))];
    command.extend(backup_args(s(&share), s(&keys.cer), &source).into_iter().map(quoted));
    let out = Command::new("script")
        .args(["-qec", &command.join(" "), "/dev/null"])
        .env("TERM", "xterm-256color")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{terminal}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(has_redraws(&out.stdout), "no redraws on the terminal:\n{terminal:?}");
    assert!(
        terminal.contains("backup") && terminal.contains("captured"),
        "no backup progress on the terminal:\n{terminal:?}"
    );

    // Piped: the same backup, nothing but plain lines on either stream.
    let share = work.path().join("share-piped");
    std::fs::create_dir(&share).unwrap();
    let out = IBS
        .command()
        .args(backup_args(s(&share), s(&keys.cer), &source))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (name, stream) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !has_control_characters(stream),
            "control characters on piped {name}:\n{:?}",
            String::from_utf8_lossy(stream)
        );
        assert!(
            !String::from_utf8_lossy(stream).contains("captured"),
            "progress on piped {name}"
        );
    }
}
