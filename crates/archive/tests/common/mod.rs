//! Shared helpers of the archive tests: the committed test key pairs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ibs_archive::{ArchiveWriter, EntryMeta, WriterOptions};
use ibs_envelope::{Certificate, Identity, Password};

pub const PASSWORD: &str = "ibs-test-vectors";

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn cert(name: &str) -> Certificate {
    Certificate::from_file(data_dir().join(format!("{name}.cer"))).unwrap()
}

/// The identity every test archive is encrypted to (loaded once: PKCS#12 KDFs are slow).
pub fn recipient() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| identity("recipient"))
}

/// A second identity that is not a recipient.
pub fn other() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| identity("other"))
}

fn identity(name: &str) -> Identity {
    Identity::from_file(data_dir().join(format!("{name}.pfx")), &Password::new(PASSWORD)).unwrap()
}

/// Writes an archive of `entries` (source, path, data) to memory.
pub fn archive(entries: &[(&str, &str, Vec<u8>)], options: WriterOptions) -> Vec<u8> {
    let cert = cert("recipient");
    let mut w = ArchiveWriter::new(Vec::new(), &[&cert], options).unwrap();
    for (source, path, data) in entries {
        w.add_entry(EntryMeta::new(*source, *path), &data[..]).unwrap();
    }
    w.finish().unwrap().0
}

/// Deterministic incompressible bytes and compressible text.
#[allow(unused_imports, reason = "not every test file uses both")]
pub use ibs_testkit::data::{noise, text};

/// A Python 3 with `cryptography` and `zstandard` (Debian: python3-cryptography,
/// python3-zstandard; `scripts/install-deps.sh` installs them). `IBS_PYTHON`
/// overrides the search.
/// Found once per test binary (a pyenv shim takes a while to answer).
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let candidates = std::env::var("IBS_PYTHON")
            .map(|p| vec![p])
            .unwrap_or_else(|_| vec!["python3".into(), "/usr/bin/python3".into()]);
        candidates
            .into_iter()
            .find(|p| {
                std::process::Command::new(p)
                    .args(["-c", "import cryptography, zstandard"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("no python3 with cryptography and zstandard: run scripts/install-deps.sh")
    })
}

/// Runs the independent Python reader (`tools/read_archive.py`, written from
/// FORMAT.md) on the archive file `archive` with key pair `key` (its `.key`
/// and, to pick its stanza as FORMAT.md §4 says, its `.cer`), plus `args`.
pub fn python_reader(archive: &Path, key: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/read_archive.py");
    std::process::Command::new(python())
        .arg(script)
        .arg(archive)
        .arg(data_dir().join(format!("{key}.key")))
        .arg("--cert")
        .arg(data_dir().join(format!("{key}.cer")))
        .args(args)
        // Names are UTF-8 whatever the locale the tests run in.
        .env("PYTHONUTF8", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .output()
        .unwrap()
}

/// Where the Python reader says an archive failed: (stage, region), from the
/// `stage:` and `region:` lines it prints on stderr after `unreadable: …`.
pub fn python_failure(out: &std::process::Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the Python reader did not fail: {stderr}");
    assert!(stderr.starts_with("unreadable: "), "{stderr}");
    let field = |k: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("no {k} in {stderr}"))
            .to_owned()
    };
    (field("stage"), field("region"))
}

/// The region of an archive error in the words the vectors and the Python
/// reader use: `header`, `footer`, `archive`, `index`, `frame N`, `root`,
/// `piece N`, `signature` (the crate's [`ibs_archive::Region`]), `key` (no
/// identity matches a recipient), `entry` (an entry's SHA-256) and
/// `signature` also for a signature that does not verify.
pub fn region_of(e: &ibs_archive::Error) -> String {
    use ibs_archive::Error;
    match e {
        Error::Malformed { region, .. } | Error::Authentication { region } | Error::Compression { region, .. } => {
            region.to_string()
        }
        Error::NotAnArchive { .. } | Error::UnsupportedVersion { .. } => "header".into(),
        Error::Envelope(_) => "key".into(),
        Error::ContentMismatch { .. } => "entry".into(),
        // A signature that does not verify, or a signer not trusted (version 2).
        Error::BadSignature { .. } | Error::Untrusted { .. } => "signature".into(),
        other => panic!("not an error of the archive's bytes: {other:?}"),
    }
}

/// Reads `bytes` the way the vectors describe: `inspect` (no key), `open`
/// (with `identity`), `verify` (every frame and entry). The stage and error
/// of the first failure, or the archive's entries' contents.
pub fn read_in_stages(bytes: &[u8], identity: &Identity) -> Result<Vec<Vec<u8>>, (&'static str, ibs_archive::Error)> {
    use futures::executor::block_on;
    block_on(async {
        ibs_archive::inspect(&bytes.to_vec())
            .await
            .map_err(|e| ("inspect", ibs_archive::Error::from(e)))?;
        let r = ibs_archive::ArchiveReader::open(bytes.to_vec(), &[identity])
            .await
            .map_err(|e| ("open", ibs_archive::Error::from(e)))?;
        r.verify(None)
            .await
            .map_err(|e| ("verify", ibs_archive::Error::from(e)))?;
        let mut out = Vec::new();
        for e in r
            .load_entries()
            .await
            .map_err(|e| ("verify", ibs_archive::Error::from(e)))?
        {
            out.push(
                r.read_entry(&e)
                    .await
                    .map_err(|e| ("verify", ibs_archive::Error::from(e)))?,
            );
        }
        Ok(out)
    })
}
