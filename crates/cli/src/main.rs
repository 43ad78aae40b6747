//! `ibs`: the infrastructure backup command.
//!
//! ```text
//! ibs keygen  --out DIR [--name NAME] [--bits 2048|3072|4096] [--password-file F [--allow-empty-password]]
//!             [--legacy-pfx]
//! ibs keygen  --signing --out DIR [--name NAME]
//! ibs backup  --location LOC --cert FILE [--cert FILE]... [--source NAME=DIR]... [--exclude GLOB]... [--fqdn F] [--region R]
//!             [--credentials-file F] [--producer-version V] [--keep-days N] [--sign KEY] [--xattrs]
//! ibs list    --location LOC [--fqdn F] [--region R] [--credentials-file F]
//! ibs check   --location LOC [--backup ID | --all] [--trust-signer PUB]... [--allow-unsigned]
//! ibs verify  --location LOC [--backup ID] --pfx FILE [--pfx FILE]... --password-file F
//!             [--trust-signer PUB]... [--allow-unsigned] [--not-before ID]
//! ibs restore --location LOC [--backup ID] --pfx FILE [--pfx FILE]... --password-file F --to DIR [--source NAME]...
//!             [--overwrite] [--no-owner] [--trust-signer PUB]... [--allow-unsigned] [--not-before ID]
//! ibs prune   --location LOC [--keep-days N] [--dry-run]
//! ```
//!
//! `LOC` is `\\host\share\folder`, `smb://host[:port]/share/folder`,
//! `az://container/prefix` (Azure Blob), `s3://bucket/prefix` (S3) or a local
//! directory. Object-store credentials and endpoints come from the variables
//! the `object_store` crate reads (`AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, …). SMB credentials come from `--credentials-file` (smbclient's
//! authentication-file format: `username = …`, `password = …`, `domain = …`) or
//! the environment (`IBS_SMB_USERNAME`, `IBS_SMB_PASSWORD`, `IBS_SMB_DOMAIN`),
//! never from the command line: a `LOC` with `user@` or `user:password@` in it
//! is refused (exit 2) and the message does not repeat them. Exit status: 0
//! success, 1 failure (the alert's text on stderr), 2 usage error.
//!
//! `keygen` writes `NAME.cer`, `NAME.pfx` and, unless `--password-file` gives
//! the password, a generated `NAME.password` (mode 0600), all inside `--out`.
//! It checks every argument first and writes nothing when one is wrong: a
//! `--name` that is not a plain file name (a path separator, `.`, `..` or a
//! leading `..`, NUL, empty), `--bits` other than 2048/3072/4096, an empty
//! password file (refused unless `--allow-empty-password` says an empty
//! password is meant), or an output file that already exists (keys are never
//! overwritten). If writing fails midway, the files this run wrote are removed.
//!
//! `keygen --signing` makes the controller's Ed25519 signing key instead:
//! `NAME.sign.key` (PKCS#8 PEM, mode 0600, for the controller) and
//! `NAME.sign.pub` (the public key, for recovery to check who wrote a
//! backup), and prints the key's fingerprint. Both are PEM as OpenSSL writes
//! them (`openssl pkey -in NAME.sign.key -pubout` prints `NAME.sign.pub`).
//! The same rules hold: `--name` a plain file name (default `backup-signing`),
//! never an overwrite, nothing left behind on a failure. `--bits`,
//! `--password-file`, `--allow-empty-password` and `--legacy-pfx` do not apply
//! to it (usage error).
//!
//! `backup --sign NAME.sign.key` signs the backup with the controller's
//! key; `verify` and `restore` with `--trust-signer NAME.sign.pub`
//! (repeatable: old and new keys during a rotation) refuse a backup that is
//! unsigned, signed by another key, or whose signature fails, naming the
//! signer found; `--allow-unsigned` accepts unsigned backups (every backup of
//! format version 1) and says so. Without `--trust-signer` they work, and say
//! that who wrote the backup was not checked. `list` shows each backup's
//! signer fingerprint (as its header claims it; `verify` checks it).
//! `--not-before ID` (a backup id, or its time part `YYYYMMDDTHHMMSSZ`)
//! refuses a backup created before that time — by its creation time as the
//! authenticated (and signed) header records it — against an attacker who
//! replays an older genuine backup; `verify` and `restore` print the
//! creation time of what they opened.
//!
//! `restore` gives back files, folders, symbolic links (never followed),
//! hard links, modes, modification times, sparse holes and extended
//! attributes; owners too when run as root (`--no-owner` skips them), and
//! then setuid/setgid bits — without owners those bits are dropped. What it
//! could not apply is said once, not per file.
//!
//! `backup --xattrs` also records extended attributes (off by default).
//!
//! `backup` on a live system: a file deleted during the backup is skipped and
//! one that keeps changing is captured as last read; the backup still
//! succeeds (exit 0) and prints one `warning:` line per item on stderr.
//! `--exclude GLOB` (repeatable) takes gitignore-style patterns (`**/*.tmp`,
//! `cache/`, `/logs`), matched relative to each source's folder. A local
//! location inside a source is left out of that source's backups; a source
//! inside the location's `MASBackup` folder is a usage error.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ibs_controller::{Access, BackupSource, DirectorySource, Settings, run_job};
use ibs_envelope::{Certificate, Identity, Password, SigningKey, keygen};
use ibs_recovery::{BackupInfo, Choice, Recovery, RestoreOptions};
use ibs_repository::InstanceLayout;
use ibs_retention::Policy;
use ibs_storage::{Location, StorageTarget};
use ibs_storage_smb::SmbCredentials;

const DEFAULT_FQDN: &str = "azurestack.local";
const DEFAULT_REGION: &str = "local";

/// A failure to report: the message, and whether it is a usage error (exit 2).
struct Failure(String, bool);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string(), false)
    }
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure(msg.into(), true)
}

#[derive(Default)]
struct Args {
    out: Option<PathBuf>,
    name: Option<String>,
    bits: Option<usize>,
    password_file: Option<PathBuf>,
    allow_empty_password: bool,
    legacy_pfx: bool,
    signing: bool,
    location: Option<String>,
    certs: Vec<PathBuf>,
    sources: Vec<(String, PathBuf)>,
    excludes: Vec<String>,
    fqdn: Option<String>,
    region: Option<String>,
    credentials_file: Option<PathBuf>,
    producer_version: Option<String>,
    keep_days: Option<u32>,
    backup: Option<String>,
    pfx: Vec<PathBuf>,
    to: Option<PathBuf>,
    only: Vec<String>,
    dry_run: bool,
    instance_version: Option<String>,
    overwrite: bool,
    all: bool,
    sign: Option<PathBuf>,
    trust_signers: Vec<PathBuf>,
    allow_unsigned: bool,
    no_owner: bool,
    not_before: Option<(String, i64)>,
    xattrs: bool,
}

/// Parses `args` (the first is the program name).
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<(String, Args), Failure> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_iter(args);
    let verb = match p.next().map_err(|e| usage(e.to_string()))? {
        Some(Value(v)) => v.string().map_err(|e| usage(e.to_string()))?,
        Some(Long("help") | Short('h')) | None => return Err(usage(HELP)),
        Some(other) => return Err(usage(format!("expected a command first, got {}", other.unexpected()))),
    };
    let mut a = Args::default();
    let text = |p: &mut lexopt::Parser| -> Result<String, Failure> {
        p.value()
            .map_err(|e| usage(e.to_string()))?
            .string()
            .map_err(|e| usage(e.to_string()))
    };
    let mut seen: Vec<String> = Vec::new();
    while let Some(arg) = p.next().map_err(|e| usage(e.to_string()))? {
        if let Long(flag) = &arg {
            seen.push((*flag).to_owned());
        }
        match arg {
            Long("out") => a.out = Some(text(&mut p)?.into()),
            Long("name") => a.name = Some(text(&mut p)?),
            Long("bits") => {
                a.bits = Some(
                    text(&mut p)?
                        .parse()
                        .map_err(|_| usage("--bits takes 2048, 3072 or 4096"))?,
                )
            }
            Long("password-file") => a.password_file = Some(text(&mut p)?.into()),
            Long("legacy-pfx") => a.legacy_pfx = true,
            Long("signing") => a.signing = true,
            Long("allow-empty-password") => a.allow_empty_password = true,
            Long("location") => a.location = Some(text(&mut p)?),
            Long("cert") => a.certs.push(text(&mut p)?.into()),
            Long("source") if verb == "restore" => a.only.push(text(&mut p)?),
            Long("source") => {
                let v = text(&mut p)?;
                let (n, d) = v
                    .split_once('=')
                    .ok_or_else(|| usage(format!("--source takes NAME=DIR, got {v:?}")))?;
                a.sources.push((n.to_owned(), d.into()));
            }
            Long("exclude") => a.excludes.push(text(&mut p)?),
            Long("fqdn") => a.fqdn = Some(text(&mut p)?),
            Long("region") => a.region = Some(text(&mut p)?),
            Long("credentials-file") => a.credentials_file = Some(text(&mut p)?.into()),
            Long("producer-version") => a.producer_version = Some(text(&mut p)?),
            Long("instance-version") => a.instance_version = Some(text(&mut p)?),
            Long("keep-days") => {
                a.keep_days = Some(
                    text(&mut p)?
                        .parse()
                        .map_err(|_| usage("--keep-days takes a number of days"))?,
                )
            }
            Long("backup") => a.backup = Some(text(&mut p)?),
            Long("pfx") => a.pfx.push(text(&mut p)?.into()),
            Long("to") => a.to = Some(text(&mut p)?.into()),
            Long("dry-run") => a.dry_run = true,
            Long("overwrite") => a.overwrite = true,
            Long("all") => a.all = true,
            Long("sign") => a.sign = Some(text(&mut p)?.into()),
            Long("trust-signer") => a.trust_signers.push(text(&mut p)?.into()),
            Long("allow-unsigned") => a.allow_unsigned = true,
            Long("no-owner") => a.no_owner = true,
            Long("xattrs") => a.xattrs = true,
            Long("not-before") => {
                let v = text(&mut p)?;
                let t = not_before(&v).ok_or_else(|| {
                    usage(format!(
                        "--not-before takes a backup id or its time part YYYYMMDDTHHMMSSZ (UTC), got {v:?}"
                    ))
                })?;
                a.not_before = Some((v, t));
            }
            Long("help") | Short('h') => return Err(usage(HELP)),
            other => return Err(usage(format!("{}\n\n{HELP}", other.unexpected()))),
        }
    }
    // A flag a command does not use is an error, never silently ignored
    // (`restore --dry-run` would otherwise restore).
    if let Some(allowed) = flags_of(&verb)
        && let Some(flag) = seen.iter().find(|f| !allowed.contains(&f.as_str()))
    {
        return Err(usage(format!("--{flag} does not apply to `ibs {verb}`\n\n{HELP}")));
    }
    Ok((verb, a))
}

/// The flags each command takes (`None`: an unknown command, reported later).
fn flags_of(verb: &str) -> Option<&'static [&'static str]> {
    Some(match verb {
        "keygen" => &[
            "out",
            "name",
            "bits",
            "password-file",
            "allow-empty-password",
            "legacy-pfx",
            "signing",
            "help",
        ],
        "backup" => &[
            "location",
            "fqdn",
            "region",
            "credentials-file",
            "cert",
            "source",
            "exclude",
            "producer-version",
            "keep-days",
            "sign",
            "xattrs",
            "help",
        ],
        "list" => &["location", "fqdn", "region", "credentials-file", "help"],
        "check" => &[
            "location",
            "fqdn",
            "region",
            "credentials-file",
            "backup",
            "all",
            "trust-signer",
            "allow-unsigned",
            "instance-version",
            "help",
        ],
        "verify" => &[
            "location",
            "fqdn",
            "region",
            "credentials-file",
            "backup",
            "pfx",
            "password-file",
            "trust-signer",
            "allow-unsigned",
            "not-before",
            "instance-version",
            "help",
        ],
        "restore" => &[
            "location",
            "fqdn",
            "region",
            "credentials-file",
            "backup",
            "pfx",
            "password-file",
            "trust-signer",
            "allow-unsigned",
            "not-before",
            "instance-version",
            "to",
            "source",
            "overwrite",
            "no-owner",
            "help",
        ],
        "prune" => &[
            "location",
            "fqdn",
            "region",
            "credentials-file",
            "keep-days",
            "dry-run",
            "help",
        ],
        _ => return None,
    })
}

const HELP: &str = "usage:
  ibs keygen  --out DIR [--name NAME] [--bits 2048|3072|4096] [--password-file F [--allow-empty-password]]
              [--legacy-pfx]
  ibs keygen  --signing --out DIR [--name NAME]      (the controller's Ed25519 signing key)
  ibs backup  --location LOC --cert FILE [--cert FILE]... [--source NAME=DIR]... [--exclude GLOB]...
              [--sign NAME.sign.key] [--xattrs] [--producer-version V] [--keep-days N]
  ibs list    --location LOC
  ibs check   --location LOC [--backup ID | --all] [--trust-signer NAME.sign.pub]... [--allow-unsigned]
              (no key: archive against manifest, and its signature)
  ibs verify  --location LOC [--backup ID] --pfx FILE [--pfx FILE]... --password-file F
              [--trust-signer NAME.sign.pub]... [--allow-unsigned] [--not-before ID]
  ibs restore --location LOC [--backup ID] --pfx FILE [--pfx FILE]... --password-file F --to DIR [--source NAME]...
              [--overwrite] [--no-owner] [--trust-signer NAME.sign.pub]... [--allow-unsigned] [--not-before ID]
  ibs prune   --location LOC [--keep-days N] [--dry-run]
every command but keygen also takes [--fqdn F] [--region R] (the instance; default azurestack.local / local)
and [--credentials-file F] (SMB); check, verify and restore take [--instance-version V] (the version rule).
check and verify without --backup take the newest backup and fail if it is damaged or incomplete;
restore without --backup takes the newest restorable one and names every newer one it skipped.
LOC: \\\\host\\share\\folder, smb://host[:port]/share/folder, az://container/prefix,
     s3://bucket/prefix, or a local directory. Azure/S3 credentials: AZURE_STORAGE_ACCOUNT_NAME,
     AZURE_STORAGE_ACCOUNT_KEY (AZURE_STORAGE_ENDPOINT) / AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
     AWS_REGION (AWS_ENDPOINT).
SMB credentials: --credentials-file (smbclient format) or IBS_SMB_USERNAME / IBS_SMB_PASSWORD / IBS_SMB_DOMAIN.";

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(t: i64) -> String {
    // An id of that second has its time part; the rest is formatting.
    match ibs_repository::BackupId::generate(t) {
        Ok(id) => {
            let p = id.as_str();
            format!(
                "{}-{}-{}T{}:{}:{}Z",
                &p[0..4],
                &p[4..6],
                &p[6..8],
                &p[9..11],
                &p[11..13],
                &p[13..15]
            )
        }
        Err(_) => format!("{t} (Unix seconds)"),
    }
}

/// The time of `--not-before`: a backup id, or an id's time part.
fn not_before(v: &str) -> Option<i64> {
    let id = if v.len() == 16 {
        format!("{v}-00000000")
    } else {
        v.to_owned()
    };
    id.parse::<ibs_repository::BackupId>().ok().map(|id| id.created())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// SMB credentials from `--credentials-file`, else from the `IBS_SMB_*`
/// environment ([`SmbCredentials::from_env`]), else none.
fn access(a: &Args) -> Result<Access, Failure> {
    if let Some(f) = &a.credentials_file {
        let text =
            std::fs::read_to_string(f).map_err(|e| Failure(format!("cannot read {}: {e}", f.display()), false))?;
        return Ok(Access::Smb(SmbCredentials::from_auth_file(&text)?));
    }
    Ok(SmbCredentials::from_env().map_or(Access::Default, Access::Smb))
}

/// The parsed `--location`. A malformed one is a usage error (exit 2); one
/// with credentials in it (`smb://user:password@host/…`) is refused without
/// repeating them (see [`Location::parse`]).
fn location(a: &Args) -> Result<Location, Failure> {
    let loc = a.location.as_deref().ok_or_else(|| usage("--location is required"))?;
    Location::parse(loc).map_err(|e| usage(e.to_string()))
}

fn instance(a: &Args) -> Result<InstanceLayout, Failure> {
    InstanceLayout::new(
        a.fqdn.as_deref().unwrap_or(DEFAULT_FQDN),
        a.region.as_deref().unwrap_or(DEFAULT_REGION),
    )
    .map_err(|e| usage(format!("--fqdn / --region: {e}")))
}

fn policy(a: &Args) -> Result<Policy, Failure> {
    Ok(match a.keep_days {
        Some(d) => Policy::new(12, d).map_err(|e| usage(format!("--keep-days: {e}")))?,
        None => Policy::default(),
    })
}

fn identities(a: &Args) -> Result<Vec<Identity>, Failure> {
    if a.pfx.is_empty() {
        return Err(usage("--pfx is required (repeat it for several keys)"));
    }
    let pw_file = a
        .password_file
        .as_ref()
        .ok_or_else(|| usage("--password-file is required"))?;
    let pw = Password::from_file_contents(
        &std::fs::read(pw_file).map_err(|e| Failure(format!("cannot read {}: {e}", pw_file.display()), false))?,
    )?;
    a.pfx
        .iter()
        .map(|p| Identity::from_file(p, &pw).map_err(|e| Failure(format!("{}: {e}", p.display()), false)))
        .collect()
}

fn random_password() -> Result<String, Failure> {
    let mut b = [0u8; 18];
    getrandom::fill(&mut b).map_err(|e| Failure(format!("random generator failed: {e}"), false))?;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    Ok(b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect())
}

/// Why a `--name` cannot name key files: it must stay one plain file name
/// inside `--out`.
fn bad_key_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name == "." || name.starts_with("..") {
        Some("is or starts with `..` / `.`")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("contains NUL or a control character")
    } else {
        None
    }
}

/// What one `ibs keygen` run has written so far: removed again if the run fails.
#[derive(Default)]
struct Written {
    files: Vec<PathBuf>,
    /// Folders this run created, deepest first.
    dirs: Vec<PathBuf>,
}

impl Written {
    /// Creates `dir` and any missing parents, remembering which were new.
    fn create_dir_all(&mut self, dir: &std::path::Path) -> Result<(), Failure> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err()) {
            missing.push(d.to_owned());
            at = d.parent();
        }
        std::fs::create_dir_all(dir).map_err(|e| Failure(format!("cannot create {}: {e}", dir.display()), false))?;
        self.dirs = missing;
        Ok(())
    }

    /// Removes what was written (files, then the folders if they are empty).
    fn undo(&mut self) {
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.drain(..) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// `ibs keygen`: checks every argument and that no output file exists before
/// writing anything; never overwrites a key; on a failure after the first
/// write, removes what this run wrote. An empty password file is refused
/// unless `--allow-empty-password` says it is meant.
fn keygen_cmd(a: &Args) -> Result<(), Failure> {
    if a.signing {
        return signing_keygen_cmd(a);
    }
    let out = a.out.as_ref().ok_or_else(|| usage("--out DIR is required"))?;
    let name = a.name.as_deref().unwrap_or("backup-encryption");
    if let Some(why) = bad_key_name(name) {
        return Err(usage(format!(
            "--name {name:?} {why}: give a plain file name (the files are written as NAME.cer, NAME.pfx \
             and NAME.password inside --out)"
        )));
    }
    let key_size = match a.bits {
        Some(bits) => keygen::KeySize::from_bits(bits).ok_or_else(|| usage("--bits takes 2048, 3072 or 4096"))?,
        None => keygen::KeySize::default(),
    };
    if a.allow_empty_password && a.password_file.is_none() {
        return Err(usage(
            "--allow-empty-password only applies with --password-file (without one, a strong password is generated)",
        ));
    }
    let given = match &a.password_file {
        Some(f) => {
            let password = Password::from_file_contents(
                &std::fs::read(f).map_err(|e| Failure(format!("cannot read {}: {e}", f.display()), false))?,
            )?;
            if password.expose().is_empty() && !a.allow_empty_password {
                return Err(usage(format!(
                    "the password file {} is empty (its first line is the password): the .pfx would be \
                     protected by an empty password. Put a password in it, leave out --password-file to \
                     have one generated, or add --allow-empty-password if an empty one is really meant",
                    f.display()
                )));
            }
            Some(password)
        }
        None => None,
    };
    let cer_path = out.join(format!("{name}.cer"));
    let pfx_path = out.join(format!("{name}.pfx"));
    let pw_path = out.join(format!("{name}.password"));
    let mut outputs = vec![&cer_path, &pfx_path];
    if given.is_none() {
        outputs.push(&pw_path);
    }
    // symlink_metadata: a dangling link is in the way too.
    let existing: Vec<String> = outputs
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(usage(format!(
            "{} already exist(s); keygen never overwrites keys: choose another --name or --out, or move the \
             old files away",
            existing.join(", ")
        )));
    }
    let (password, generated) = match given {
        Some(p) => (p, false),
        // No password given: make a strong one and keep it beside the .pfx (mode 0600).
        None => (Password::new(random_password()?), true),
    };
    let mut options = keygen::KeygenOptions::new(name, now() - 300);
    options.key_size = key_size;
    if a.legacy_pfx {
        options.pfx_encoding = keygen::PfxEncoding::Legacy3DesSha1;
    }
    let pair = keygen::generate(&options, &password)?;
    let mut written = Written::default();
    let result = (|| {
        written.create_dir_all(out)?;
        if generated {
            write_private(&pw_path, &[password.expose().as_bytes(), b"\n"])?;
            written.files.push(pw_path.clone());
        }
        // Writes both or neither; refuses to overwrite.
        pair.write_to(out, name)?;
        Ok(())
    })();
    if let Err(e) = result {
        written.undo();
        return Err(e);
    }
    println!("certificate: {} (give this to the backup service)", cer_path.display());
    println!(
        "private key: {} (keep offline; needed for recovery)",
        pfx_path.display()
    );
    if generated {
        println!(
            "password:    {} (keep with the .pfx, or move it somewhere safer)",
            pw_path.display()
        );
    }
    println!("thumbprint:  {}", pair.certificate.thumbprint());
    Ok(())
}

/// `ibs keygen --signing`: the controller's Ed25519 key pair, as
/// `NAME.sign.key` (0600) and `NAME.sign.pub`, under the same rules as the
/// certificate keygen (arguments and existing files checked before anything
/// is written, no overwrite, what was written removed on a failure).
fn signing_keygen_cmd(a: &Args) -> Result<(), Failure> {
    let not_with = [
        (a.bits.is_some(), "--bits"),
        (a.password_file.is_some(), "--password-file"),
        (a.allow_empty_password, "--allow-empty-password"),
        (a.legacy_pfx, "--legacy-pfx"),
    ];
    if let Some((_, flag)) = not_with.iter().find(|(given, _)| *given) {
        return Err(usage(format!(
            "{flag} does not apply to --signing: a signing key is Ed25519 (no size to choose) and its file is \
             protected by its permissions (mode 0600), not a password"
        )));
    }
    let out = a.out.as_ref().ok_or_else(|| usage("--out DIR is required"))?;
    let name = a.name.as_deref().unwrap_or("backup-signing");
    if let Some(why) = bad_key_name(name) {
        return Err(usage(format!(
            "--name {name:?} {why}: give a plain file name (the files are written as NAME.sign.key and \
             NAME.sign.pub inside --out)"
        )));
    }
    let key_path = out.join(format!("{name}.sign.key"));
    let pub_path = out.join(format!("{name}.sign.pub"));
    // symlink_metadata: a dangling link is in the way too.
    let existing: Vec<String> = [&key_path, &pub_path]
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(usage(format!(
            "{} already exist(s); keygen never overwrites keys: choose another --name or --out, or move the \
             old files away",
            existing.join(", ")
        )));
    }
    let key = SigningKey::generate()?;
    let public = key.verifying_key();
    let mut written = Written::default();
    let result = (|| {
        written.create_dir_all(out)?;
        write_new(&key_path, &[key.to_pem().as_bytes()], 0o600)?;
        written.files.push(key_path.clone());
        write_new(&pub_path, &[public.to_pem().as_bytes()], 0o644)?;
        written.files.push(pub_path.clone());
        Ok(())
    })();
    if let Err(e) = result {
        written.undo();
        return Err(e);
    }
    println!(
        "signing key: {} (for the controller only; keep it readable by it alone)",
        key_path.display()
    );
    println!(
        "public key:  {} (for recovery, to check who wrote a backup)",
        pub_path.display()
    );
    println!("fingerprint: {}", public.fingerprint());
    Ok(())
}

/// Creates `path` (never replacing a file) with mode 0600 and writes `parts` to it.
fn write_private(path: &std::path::Path, parts: &[&[u8]]) -> Result<(), Failure> {
    write_new(path, parts, 0o600)
}

/// Creates `path` (never replacing a file) with `mode`, writes `parts` to it
/// and syncs it.
fn write_new(path: &std::path::Path, parts: &[&[u8]], mode: u32) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Failure(format!("cannot create {}: {e}", path.display()), false))?;
    parts
        .iter()
        .try_for_each(|part| f.write_all(part))
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            // Created by this call: do not leave half a file behind.
            let _ = std::fs::remove_file(path);
            Failure(format!("cannot write {}: {e}", path.display()), false)
        })
}

async fn backup_cmd(a: &Args) -> Result<(), Failure> {
    if a.certs.is_empty() {
        return Err(usage(
            "--cert FILE is required (repeat it, or give a PEM bundle, for several recipients)",
        ));
    }
    // Every certificate of every file (a PEM file may hold several): the
    // backup is encrypted to all of them, each .pfx alone restores it.
    let mut certificates = Vec::new();
    for path in &a.certs {
        let found = Certificate::from_file_all(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
        certificates.extend(found);
    }
    ibs_controller::job::check_recipients(&certificates).map_err(|e| usage(e.to_string()))?;
    if a.sources.is_empty() {
        return Err(usage("at least one --source NAME=DIR is required"));
    }
    let mut dirs = Vec::with_capacity(a.sources.len());
    for (n, d) in &a.sources {
        let mut source = DirectorySource::new(n.clone(), d.clone()).xattrs(a.xattrs);
        for pattern in &a.excludes {
            source = source
                .exclude(pattern.clone())
                .map_err(|e| usage(format!("--exclude: {e}")))?;
        }
        dirs.push(source);
    }
    let inst = instance(a)?;
    let settings = Settings {
        location: location(a)?,
        access: access(a)?,
        certificates,
        fqdn: inst.fqdn().to_owned(),
        region: inst.region().to_owned(),
        policy: policy(a)?,
        producer_version: a
            .producer_version
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        signer: match &a.sign {
            None => None,
            Some(path) => Some(Arc::new(
                SigningKey::from_file(path).map_err(|e| usage(format!("--sign: {e}")))?,
            )),
        },
    };
    // Before anything is written: a source inside the backup folder, or a
    // value the backup would record that could not be read back, is a usage error.
    let mut sources: Vec<Arc<dyn BackupSource>> = Vec::with_capacity(dirs.len());
    for source in dirs {
        let source = settings.prepare_source(source).map_err(|e| usage(e.to_string()))?;
        sources.push(Arc::new(source));
    }
    ibs_controller::job::check_recorded(&settings.producer_version, &inst).map_err(|e| usage(e.to_string()))?;
    ibs_controller::job::check_sources(&sources).map_err(|e| usage(e.to_string()))?;
    let target = ibs_controller::validate(&settings).await.map_err(alerted)?;
    let spec = ibs_controller::JobSpec {
        target,
        instance: inst,
        certificates: settings.certificates.clone(),
        producer_version: settings.producer_version.clone(),
        policy: settings.policy,
        checks: Default::default(),
        signer: settings.signer.clone(),
    };
    let start = std::time::Instant::now();
    let s = run_job(&spec, &sources, now()).await.map_err(alerted)?;
    let secs = start.elapsed().as_secs_f64().max(1e-3);
    println!(
        "backup {} complete{}: {} entries, {} bytes of data, {} bytes written, {:.1} s ({:.0} MB/s)",
        s.id,
        if s.has_warnings() { " with warnings (below)" } else { "" },
        s.entries,
        s.data_bytes,
        s.archive_bytes,
        secs,
        s.data_bytes as f64 / secs / 1e6
    );
    if let Some(key) = &settings.signer {
        println!("signed by {}", key.verifying_key().fingerprint());
    }
    if s.attempts > 1 {
        println!("the first attempt ran out of capacity; space was freed and the second attempt succeeded");
    }
    print_deletions(&s.deleted, false);
    for d in &s.damaged {
        println!("{d}");
        let alert = d.alert();
        println!(
            "alert: {}: {}\nremediation: {}",
            alert.title, alert.description, alert.remediation
        );
    }
    for u in &s.unrecognised {
        println!("left alone (not written by ibs): {u}");
    }
    for kept in &s.kept_folders {
        println!("kept folder {kept}");
    }
    if let Some(f) = &s.retention_failed {
        eprintln!(
            "ibs: warning: the backup is complete, but retention after it failed: {}\nalert: {}: {}\nremediation: {}",
            f.error, f.alert.title, f.alert.description, f.alert.remediation
        );
    }
    for w in s.warnings.kept() {
        eprintln!("ibs: warning: {w}");
    }
    if s.warnings.not_kept() > 0 {
        eprintln!(
            "ibs: warning: and {} more items skipped or changed during capture (only the first {} are listed)",
            s.warnings.not_kept(),
            ibs_controller::Warnings::KEPT
        );
    }
    Ok(())
}

fn print_deletions(deleted: &[ibs_retention::Deletion], dry_run: bool) {
    use ibs_retention::Reason;
    for d in deleted {
        let why = match d.reason {
            Reason::IncompleteGarbage => "incomplete: its job never committed it",
            Reason::Expired => "older than the retention period",
            Reason::FreeSpace => "oldest, to make room for the next backup",
        };
        println!(
            "{} {} ({} bytes): {why}",
            if dry_run { "would delete" } else { "deleted" },
            d.id,
            d.size
        );
    }
}

/// The error with its operator alert (title and remediation).
fn alerted(e: ibs_controller::ControllerError) -> Failure {
    let alert = e.alert();
    Failure(
        format!(
            "{e}\nalert: {}: {}\nremediation: {}",
            alert.title, alert.description, alert.remediation
        ),
        false,
    )
}

fn recovery(a: &Args) -> Result<Recovery, Failure> {
    let target = target_for_read(a)?;
    let mut r = Recovery::new(target, instance(a)?);
    if let Some(v) = &a.instance_version {
        r = r.instance_version(v.parse()?);
    }
    let mut trusted = Vec::with_capacity(a.trust_signers.len());
    for path in &a.trust_signers {
        trusted.push(ibs_envelope::VerifyingKey::from_file(path).map_err(|e| usage(format!("--trust-signer: {e}")))?);
    }
    if a.allow_unsigned && trusted.is_empty() {
        return Err(usage(
            "--allow-unsigned only makes sense with --trust-signer (without it, no signer is checked)",
        ));
    }
    Ok(r.trust_signers(trusted).allow_unsigned(a.allow_unsigned))
}

fn target_for_read(a: &Args) -> Result<Arc<dyn StorageTarget>, Failure> {
    let location = location(a)?;
    let access = access(a)?;
    if matches!(location, Location::Smb { .. }) && !matches!(access, Access::Smb(_)) {
        return Err(usage(
            "SMB locations need --credentials-file or IBS_SMB_USERNAME/IBS_SMB_PASSWORD",
        ));
    }
    Ok(ibs_controller::open_target(&location, &access)?)
}

async fn list_cmd(a: &Args) -> Result<(), Failure> {
    let cat = recovery(a)?.catalogue().await?;
    if cat.backups.is_empty() {
        println!("no backups at {}", instance(a)?.backup_root());
    } else {
        println!(
            "{:<26} {:<11} {:>12} {:<12} {:<16} recipients",
            "id", "state", "bytes", "version", "signer"
        );
    }
    for b in &cat.backups {
        // The signer as the header claims it (checked when opened): 16 hex
        // digits here; `verify` prints it whole.
        let signer = match (b.format_version, b.signer) {
            (_, Some(fp)) => fp.to_string()[..16].to_owned(),
            (Some(_), None) => "unsigned".to_owned(),
            (None, None) => "-".to_owned(),
        };
        println!(
            "{:<26} {:<11} {:>12} {:<12} {:<16} {}{}",
            b.id.as_str(),
            b.state.to_string(),
            b.size,
            b.producer_version.as_deref().unwrap_or("-"),
            signer,
            b.recipients
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            b.problem.as_ref().map(|p| format!("  ({p})")).unwrap_or_default()
        );
    }
    for u in &cat.unrecognised {
        println!("unrecognised (not written by ibs, left alone): {u}");
    }
    Ok(())
}

/// `--backup ID`, else the newest backup whatever its state (`verify`, `check`).
fn choice(a: &Args) -> Choice {
    a.backup.clone().map_or(Choice::Latest, Choice::Id)
}

/// Whether opening failed because of who signed the backup.
fn untrusted(e: &ibs_recovery::RecoveryError) -> bool {
    matches!(
        e,
        ibs_recovery::RecoveryError::Archive {
            source: ibs_archive::Error::Untrusted { .. } | ibs_archive::Error::BadSignature { .. },
            ..
        }
    )
}

async fn open(a: &Args, choice: &Choice) -> Result<(ibs_recovery::Backup, BackupInfo), Failure> {
    let ids = identities(a)?;
    let refs: Vec<&Identity> = ids.iter().collect();
    let r = recovery(a)?;
    let mut cat = r.catalogue().await?;
    // The newest restorable one: with trusted signers, a backup whose
    // signature does not check (unsigned, another signer, forged) is not
    // restorable either — skipped and named, like a damaged one. Bounded by
    // the number of backups.
    let (backup, info) = loop {
        let info = r.choose(&cat, choice)?.clone();
        for (skipped, why) in r.skipped_newer(&cat, &info) {
            eprintln!("ibs: warning: skipping the newer backup {}: {why}", skipped.id);
        }
        match r.open(&info, &refs).await {
            Ok(backup) => break (backup, info),
            Err(e) if *choice == Choice::Newest && r.checks_signers() && untrusted(&e) => {
                eprintln!("ibs: warning: skipping the newer backup {}: {e}", info.id);
                cat.backups.retain(|b| b.id != info.id);
            }
            Err(e) if untrusted(&e) => {
                return Err(Failure(
                    format!(
                        "{e}\n`ibs list` shows each backup's signer; choose one your trusted signer made with \
                         --backup ID"
                    ),
                    false,
                ));
            }
            Err(e) => return Err(e.into()),
        }
    };
    // Authenticated by the header MAC (and the signature, when signed); the
    // catalogue found it equal to the manifest's and the id's.
    let created = backup.archive().info().fields().created;
    eprintln!("ibs: backup {} was created at {}", info.id, utc(created));
    // With a whole id, backups of that very second sort by id (ids order
    // within a second); with a time part, by the time alone.
    let too_old = |(given, t): &(String, i64)| {
        created < *t || (created == *t && given.len() > 16 && info.id.as_str() < given.as_str())
    };
    if let Some((given, t)) = a.not_before.as_ref().filter(|nb| too_old(nb)) {
        return Err(Failure(
            format!(
                "backup {} was created at {}, before --not-before {given} ({}): refused (an older backup \
                 replayed under a new name shows its old time)",
                info.id,
                utc(created),
                utc(*t)
            ),
            false,
        ));
    }
    match (backup.signer(), r.checks_signers()) {
        (ibs_archive::Signer::Verified(key), true) => {
            eprintln!(
                "ibs: backup {} is signed by trusted signer {}",
                info.id,
                key.fingerprint()
            );
        }
        (ibs_archive::Signer::Unsigned, true) => eprintln!(
            "ibs: warning: backup {} is NOT signed (format version {}); accepted because of --allow-unsigned: nothing proves the controller made it",
            info.id,
            backup.format_version()
        ),
        (ibs_archive::Signer::Verified(key), false) => eprintln!(
            "ibs: warning: backup {} is signed by {}, but no --trust-signer was given: who made it was not checked",
            info.id,
            key.fingerprint()
        ),
        (ibs_archive::Signer::Unsigned, false) => eprintln!(
            "ibs: warning: backup {} is not signed and no --trust-signer was given: who made it was not checked",
            info.id
        ),
    }
    Ok((backup, info))
}

async fn check_cmd(a: &Args) -> Result<(), Failure> {
    let r = recovery(a)?;
    let cat = r.catalogue().await?;
    let chosen: Vec<&BackupInfo> = if a.all {
        if a.backup.is_some() {
            return Err(usage("--all and --backup exclude each other"));
        }
        cat.backups.iter().collect()
    } else {
        // The newest (or named) backup; one that is damaged or incomplete is refused, named.
        vec![r.choose(&cat, &choice(a))?]
    };
    if chosen.is_empty() {
        return Err(Failure(format!("no backups at {}", instance(a)?.backup_root()), false));
    }
    let mut bad = 0;
    for info in chosen {
        if a.all && info.state == ibs_recovery::BackupState::Incomplete {
            println!(
                "backup {} skipped: incomplete (never committed, or still being written)",
                info.id
            );
            continue;
        }
        match r.check_integrity(info).await {
            Ok(report) => match r.trusts(&report.signer) {
                Ok(()) => println!("backup {} checked (no key): {report}", info.id),
                Err(e) => {
                    bad += 1;
                    println!("backup {} FAILED: {e}", info.id);
                }
            },
            Err(e) if e.is_damage() => {
                bad += 1;
                println!("backup {} FAILED: {e}", info.id);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if bad > 0 {
        return Err(Failure(format!("{bad} backup(s) failed the check"), false));
    }
    Ok(())
}

async fn verify_cmd(a: &Args) -> Result<(), Failure> {
    let (backup, info) = open(a, &choice(a)).await?;
    let report = backup.verify(None).await?;
    println!("backup {} verified: {report}", info.id);
    Ok(())
}

async fn restore_cmd(a: &Args) -> Result<(), Failure> {
    let to = a.to.as_ref().ok_or_else(|| usage("--to DIR is required"))?;
    let (backup, info) = open(a, &a.backup.clone().map_or(Choice::Newest, Choice::Id)).await?;
    let mut options = RestoreOptions::default().overwrite(a.overwrite);
    if a.no_owner {
        options = options.owners(false);
    }
    if !a.only.is_empty() {
        options = options.sources(a.only.clone());
    }
    let lock = ibs_recovery::RestoreLock::acquire(to).await?;
    let finished = tokio::select! {
        report = backup.restore_locked(&lock, &options) => Ok(report),
        signal = stop_signal() => Err(signal),
    };
    let report = match finished {
        Ok(Err(e)) if e.is_damage() && a.backup.is_none() => {
            return Err(Failure(
                format!(
                    "{e}\nThe newest backup is damaged. `ibs check --location … --all` shows which backups are \
                     intact (no key needed); restore one of them with --backup ID."
                ),
                false,
            ));
        }
        Ok(report) => report?,
        Err(signal) => {
            // The restore stops here. Its leftovers are removed once every
            // write still running has finished, under the lock it still
            // holds (see `main`).
            *lock_stopped() = Some(lock);
            return Err(Failure(format!("restore stopped by {signal}"), false));
        }
    };
    if !report.leftovers.is_empty() {
        println!(
            "removed what an interrupted restore had left in {}: {} staging folder(s)",
            to.display(),
            report.leftovers.staging_folders
        );
    }
    println!(
        "backup {} restored to {}: {} files, {} bytes, {} folders, {} symbolic links, {} hard links, {} sources",
        info.id,
        to.display(),
        report.files,
        report.bytes,
        report.folders,
        report.symlinks,
        report.hard_links,
        report.sources
    );
    for note in &report.not_applied {
        eprintln!("ibs: warning: {note}");
    }
    Ok(())
}

/// A restore stopped by a signal: the lock on its folder, for the clean-up
/// after the runtime has finished every write.
type Stopped = Option<ibs_recovery::RestoreLock>;

fn lock_stopped() -> std::sync::MutexGuard<'static, Stopped> {
    static STOPPED: std::sync::Mutex<Stopped> = std::sync::Mutex::new(None);
    STOPPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, with the signal's name; never
/// when signals cannot be watched.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

async fn prune_cmd(a: &Args) -> Result<(), Failure> {
    let target = target_for_read(a)?;
    let inst = instance(a)?;
    let retention = ibs_controller::job::plan_retention(
        &target,
        &inst,
        &policy(a)?,
        now(),
        None,
        &ibs_controller::CheckMemo::default(),
    )
    .await
    .map_err(alerted)?;
    for c in &retention.checked {
        println!("checked {} (no key): {c}", c.id);
    }
    for d in &retention.damaged {
        let alert = d.alert();
        println!(
            "{d}\nalert: {}: {}\nremediation: {}",
            alert.title, alert.description, alert.remediation
        );
    }
    let plan = &retention.plan;
    for w in &plan.warnings {
        match w {
            ibs_retention::Warning::Unrecognised { path } => {
                println!("left alone (not written by ibs): {path}")
            }
            ibs_retention::Warning::FromTheFuture { id, created } => {
                println!("kept {id}: its creation time {created} is in the future (clock skew?)")
            }
            ibs_retention::Warning::NotOurs { path } => println!("ignored (not this instance's): {path}"),
        }
    }
    if plan.deletions.is_empty() {
        println!("nothing to prune");
    }
    if a.dry_run {
        print_deletions(&plan.deletions, true);
    } else {
        let applied = ibs_controller::job::apply(&target, plan).await.map_err(alerted)?;
        print_deletions(&applied.deleted, false);
        for kept in &applied.kept_folders {
            println!("kept folder {kept}");
        }
    }
    if !retention.damaged.is_empty() {
        return Err(Failure(
            format!("{} damaged backup(s) found (see above)", retention.damaged.len()),
            false,
        ));
    }
    Ok(())
}

/// Threads for blocking work (file reads, SMB calls).
const BLOCKING_THREADS: usize = 2;

fn main() -> ExitCode {
    let result = parse(std::env::args_os()).and_then(|(verb, a)| {
        if verb == "keygen" {
            return keygen_cmd(&a);
        }
        // Few blocking threads: file reads run there, and every thread that
        // allocates large read buffers gets its own malloc arena, which keeps
        // freed memory (measured: peak RSS 134 MB with the default pool, 84 MB
        // with four threads, on 44k real files).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .max_blocking_threads(BLOCKING_THREADS)
            .enable_all()
            .build()
            .map_err(|e| Failure(format!("cannot start: {e}"), false))?;
        let result = rt.block_on(async {
            match verb.as_str() {
                "backup" => backup_cmd(&a).await,
                "list" => list_cmd(&a).await,
                "verify" => verify_cmd(&a).await,
                "check" => check_cmd(&a).await,
                "restore" => restore_cmd(&a).await,
                "prune" => prune_cmd(&a).await,
                other => Err(usage(format!("unknown command {other:?}\n\n{HELP}"))),
            }
        });
        // Every blocking task (file writes of a stopped restore) finishes first.
        rt.shutdown_timeout(std::time::Duration::from_secs(60));
        if let Some(lock) = lock_stopped().take() {
            let stopped = result.err().map_or_else(|| "restore stopped".to_owned(), |f| f.0);
            return match lock.remove_leftovers() {
                Ok(_) => Err(Failure(
                    format!(
                        "{stopped}; its staging folder is removed (what it had already moved into place, if it \
                         was stopped while placing, stays)"
                    ),
                    false,
                )),
                Err(e) => Err(Failure(format!("{stopped}; removing what it wrote failed: {e}"), false)),
            };
        }
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg, is_usage)) => {
            eprintln!("ibs: {msg}");
            ExitCode::from(if is_usage { 2 } else { 1 })
        }
    }
}
