//! Running a command-line binary under test (`ibs`): with its arguments,
//! asserting how it exited, its output as text.
//!
//! Only the tests of the crate that builds a binary know its path
//! (`env!("CARGO_BIN_EXE_ibs")`), so they pass it in:
//!
//! ```no_run
//! use ibs_testkit::cli::Binary;
//!
//! const IBS: Binary = Binary::new("/path/to/ibs"); // env!("CARGO_BIN_EXE_ibs")
//! let (stdout, _stderr) = IBS.ok(&["--version"]);
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A binary to run.
#[derive(Clone, Copy, Debug)]
pub struct Binary {
    path: &'static str,
}

/// The files `ibs keygen --out <dir> --name <name>` writes.
#[derive(Clone, Debug)]
pub struct KeyFiles {
    /// `<name>.cer`: the certificate.
    pub cer: PathBuf,
    /// `<name>.pfx`: the identity.
    pub pfx: PathBuf,
    /// `<name>.password`: the identity's password.
    pub password: PathBuf,
}

/// Standard output and standard error as text (lossy UTF-8).
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The backup folders (those with a manifest) of instance `fqdn`, region
/// `local`, at a local location `share`, oldest first (ids sort by time).
pub fn backup_folders(share: &Path, fqdn: &str) -> Vec<PathBuf> {
    let root = share.join(fqdn).join("local/MASBackup");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("the backup folder is readable")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.join("backup.manifest").exists())
        .collect();
    v.sort();
    v
}

/// `p` as `&str` for an argument list (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

impl Binary {
    /// The binary at `path`.
    pub const fn new(path: &'static str) -> Self {
        Binary { path }
    }

    /// A command for the binary, to add arguments, environment and pipes to.
    pub fn command(&self) -> Command {
        Command::new(self.path)
    }

    /// Runs it with `args` and waits.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("the binary runs")
    }

    /// Runs it with `args`; asserts that it succeeded; its stdout and stderr.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?} failed:\n{stdout}{stderr}");
        (stdout, stderr)
    }

    /// Runs it with `args`; asserts that it failed with exit status 1 (a
    /// failure, not a usage error); its stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}:\n{stdout}{stderr}");
        stderr
    }

    /// `keygen --out <dir> --name <name>` (a generated password); asserts
    /// that it succeeded.
    #[track_caller]
    pub fn keygen(&self, dir: &Path, name: &str) -> KeyFiles {
        self.ok(&["keygen", "--out", path_str(dir), "--name", name]);
        KeyFiles {
            cer: dir.join(format!("{name}.cer")),
            pfx: dir.join(format!("{name}.pfx")),
            password: dir.join(format!("{name}.password")),
        }
    }
}
