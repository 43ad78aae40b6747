//! What several verbs share: the run's output context, the location and
//! instance, the operator's identities, and opening a backup.

use std::sync::{Arc, Mutex, PoisonError};

use ibs_controller::Access;
use ibs_envelope::{Identity, Password};
use ibs_recovery::{BackupInfo, Choice, Recovery};
use ibs_repository::InstanceLayout;
use ibs_storage::{Location, ReadTarget};
use ibs_storage_smb::SmbCredentials;
use serde_json::Value;

use crate::args::{KeyArgs, LocationArgs, OpenArgs, SignerArgs};
use crate::progress::Progress;
use crate::report::{Failure, Kind, usage};

/// The run's output rules: text or one JSON document on stdout, notes and
/// warnings on stderr.
pub struct Ctx {
    /// `--json`: stdout holds one JSON document and nothing else.
    pub json: bool,
    /// `--quiet`: no progress and no informational notes.
    pub quiet: bool,
    /// Warnings kept for the JSON document (`--json`).
    warnings: Mutex<Vec<String>>,
    /// Progress on a terminal (drawn only when stderr is one, without
    /// `--json` and `--quiet`), and the stall spinner of storage calls.
    pub progress: Progress,
}

/// What a verb produced: its JSON document, and whether something needs the
/// operator's attention (exit 1 although the verb itself ran).
#[derive(Debug)]
pub struct Done {
    /// The `--json` document.
    pub doc: Value,
    /// What needs attention (printed on stderr in text mode; exit 1), if anything.
    pub attention: Vec<String>,
}

impl Done {
    /// A verb that succeeded with `doc`.
    pub fn ok(doc: Value) -> Self {
        Done {
            doc,
            attention: Vec::new(),
        }
    }
}

impl Ctx {
    /// The context for `--json` / `--quiet`.
    pub fn new(json: bool, quiet: bool) -> Self {
        Ctx {
            json,
            quiet,
            warnings: Mutex::new(Vec::new()),
            progress: Progress::for_stderr(json, quiet),
        }
    }

    /// A result line on stdout (text mode only).
    pub fn say(&self, line: impl std::fmt::Display) {
        if !self.json {
            print_stdout(line);
        }
    }

    /// An informational note on stderr (text mode, not `--quiet`).
    pub fn note(&self, line: impl std::fmt::Display) {
        if !self.json && !self.quiet {
            self.progress.println(&format!("ibs: {line}"));
        }
    }

    /// A warning: on stderr in text mode, in the document's `warnings` with `--json`.
    pub fn warn(&self, line: impl std::fmt::Display) {
        if self.json {
            self.warnings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line.to_string());
        } else {
            self.progress.println(&format!("ibs: warning: {line}"));
        }
    }

    /// The warnings kept for the JSON document.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Writes a line on stdout. A reader that went away (`ibs list | head -1`)
/// is not an error of the command: the line is dropped, as `println!`
/// would panic.
pub fn print_stdout(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(t: i64) -> String {
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

/// SMB credentials from `--credentials-file`, else from the `IBS_SMB_*`
/// environment ([`SmbCredentials::from_env`]), else none.
pub fn access(at: &LocationArgs) -> Result<Access, Failure> {
    if let Some(f) = &at.credentials_file {
        let text = std::fs::read_to_string(f).map_err(|e| Failure::local("cannot read", f, e))?;
        let credentials = SmbCredentials::from_auth_file(&text)
            .map_err(|e| usage(format!("--credentials-file {}: {e}", f.display())))?;
        return Ok(Access::Smb(credentials));
    }
    match SmbCredentials::from_env() {
        Some(credentials) => Ok(Access::Smb(credentials)),
        // One rule for every verb, before anything is tried.
        None if matches!(location(at)?, Location::Smb { .. }) => Err(usage(
            "an SMB location needs a user name and a password (the domain is optional): give --credentials-file \
             FILE (smbclient's format: username = …, password = …, domain = …) or set IBS_SMB_USERNAME and \
             IBS_SMB_PASSWORD (and IBS_SMB_DOMAIN)",
        )),
        None => Ok(Access::Default),
    }
}

/// The parsed `--location`. A malformed one is a usage error (exit 2); one
/// with credentials in it (`smb://user:password@host/…`) is refused without
/// repeating them (see [`Location::parse`]).
pub fn location(at: &LocationArgs) -> Result<Location, Failure> {
    if at.location.trim().is_empty() {
        return Err(usage(format!("--location is empty: {}", crate::args::LOC_HELP)));
    }
    // Never repeats the location: it may hold credentials that must not be shown.
    Location::parse(&at.location).map_err(|e| usage(format!("--location: {}", e.detail())))
}

/// The instance (`--fqdn`, `--region`).
pub fn instance(at: &LocationArgs) -> Result<InstanceLayout, Failure> {
    InstanceLayout::new(&at.fqdn, &at.region).map_err(|e| usage(format!("--fqdn / --region: {e}")))
}

/// The target at `--location`, opened for reading only (every verb needs
/// the same credentials for it as `backup` does); a call that waits shows
/// the stall spinner on a terminal.
pub fn read_target(at: &LocationArgs, ctx: &Ctx) -> Result<Arc<dyn ReadTarget>, Failure> {
    let target = ibs_controller::open_target_observed(&location(at)?, &access(at)?, ctx.progress.call_observer())?;
    Ok(target)
}

/// A [`Recovery`] of the location, with the signer rules.
pub fn recovery(at: &LocationArgs, signers: &SignerArgs, ctx: &Ctx) -> Result<Recovery, Failure> {
    let mut r = Recovery::new(read_target(at, ctx)?, instance(at)?);
    if let Some(v) = &signers.instance_version {
        r = r.instance_version(v.parse().map_err(|e| usage(format!("--instance-version {v:?}: {e}")))?);
    }
    let trusted = trusted_signers(&signers.trust_signer)?;
    Ok(r.trust_signers(trusted).allow_unsigned(signers.allow_unsigned))
}

/// The `--trust-signer` keys.
pub fn trusted_signers(paths: &[std::path::PathBuf]) -> Result<Vec<ibs_envelope::VerifyingKey>, Failure> {
    paths
        .iter()
        .map(|path| {
            ibs_envelope::VerifyingKey::from_file(path)
                .map_err(|e| Failure::new(Kind::Key, format!("--trust-signer {}: {e}", path.display())))
        })
        .collect()
}

/// The variable that gives the password of every `--pfx` when no
/// `--password-file` does.
pub const PFX_PASSWORD_VAR: &str = "IBS_PFX_PASSWORD";

/// The operator's identities: every `--pfx` that opens, with its password.
/// A `.pfx` that cannot be opened is named (the second value) but does not
/// stop the run while another one opens; when none opens, that is the failure.
pub fn identities(keys: &KeyArgs, ctx: &Ctx) -> Result<(Vec<Identity>, Vec<String>), Failure> {
    let passwords: Vec<Result<Password, String>> = match keys.password_file.len() {
        0 => match std::env::var(PFX_PASSWORD_VAR) {
            Ok(p) => vec![Ok(Password::new(p))],
            Err(_) => {
                return Err(usage(format!(
                    "--password-file is required (one for every --pfx, or one per --pfx in the same order), \
                     or set {PFX_PASSWORD_VAR}"
                )));
            }
        },
        n if n == 1 || n == keys.pfx.len() => keys
            .password_file
            .iter()
            .map(|f| {
                std::fs::read(f)
                    .map_err(|e| format!("cannot read {}: {e}", f.display()))
                    .and_then(|b| Password::from_file_contents(&b).map_err(|e| format!("{}: {e}", f.display())))
            })
            .collect(),
        n => {
            return Err(usage(format!(
                "{} --pfx and {n} --password-file: give one --password-file for all of them, or one per --pfx \
                 in the same order",
                keys.pfx.len()
            )));
        }
    };
    let mut opened = Vec::new();
    let mut failed = Vec::new();
    for (i, pfx) in keys.pfx.iter().enumerate() {
        let password = if passwords.len() == 1 {
            &passwords[0]
        } else {
            &passwords[i]
        };
        let result = match password {
            Ok(pw) => Identity::from_file(pfx, pw).map_err(|e| e.to_string()),
            Err(why) => Err(why.clone()),
        };
        match result {
            Ok(id) => opened.push(id),
            Err(why) => {
                let from_env = if keys.password_file.is_empty() {
                    format!(" (the password is {PFX_PASSWORD_VAR}'s)")
                } else {
                    String::new()
                };
                let why = format!("{}: {why}{from_env}", pfx.display());
                if keys.pfx.len() > 1 {
                    ctx.warn(format!("cannot use key {why}"));
                }
                failed.push(why);
            }
        }
    }
    if opened.is_empty() {
        return Err(Failure::new(
            Kind::Key,
            if failed.len() == 1 {
                failed.remove(0)
            } else {
                format!("none of the --pfx files could be opened:\n  {}", failed.join("\n  "))
            },
        ));
    }
    Ok((opened, failed))
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

/// A backup opened with the operator's key.
pub struct Opened {
    /// The backup.
    pub backup: ibs_recovery::Backup,
    /// What the catalogue says of it.
    pub info: BackupInfo,
    /// Newer backups passed over, and why.
    pub skipped: Vec<(String, String)>,
}

/// Chooses (`choice`) and opens a backup: the newest restorable one for
/// [`Choice::Newest`], naming every newer one passed over; checks its signer
/// and `--not-before`.
pub async fn open(args: &OpenArgs, choice: &Choice, ctx: &Ctx) -> Result<Opened, Failure> {
    let (ids, unusable) = identities(&args.keys, ctx)?;
    let refs: Vec<&Identity> = ids.iter().collect();
    let r = recovery(&args.at, &args.signers, ctx)?;
    let mut cat = r.catalogue().await?;
    let mut skipped = Vec::new();
    // The newest restorable one: with trusted signers, a backup whose
    // signature does not check (unsigned, another signer, forged) is not
    // restorable either — skipped and named, like a damaged one. Bounded by
    // the number of backups.
    let (backup, info) = loop {
        let info = match r.choose(&cat, choice) {
            Ok(info) => info.clone(),
            // `verify` takes the newest backup, never an older one in its place.
            Err(e @ ibs_recovery::RecoveryError::NotRestorable { .. }) if *choice == Choice::Latest => {
                return Err(Failure::from(e).hint(
                    "the newest backup is checked, never an older one in its place: `ibs list` shows every backup \
                     and its state; choose another with --backup ID",
                ));
            }
            // Every backup there was skipped (signer not trusted, damaged):
            // none is restorable, and each reason was said above.
            Err(ibs_recovery::RecoveryError::NoBackups { location }) if !skipped.is_empty() => {
                return Err(ibs_recovery::RecoveryError::NoRestorable {
                    location,
                    reasons: skipped.iter().map(|(id, why)| format!("{id}: {why}")).collect(),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        // Only the newest restorable one passes over newer backups: one
        // chosen by --backup ID (or the newest, for verify) skips none.
        let passed_over = if *choice == Choice::Newest {
            r.skipped_newer(&cat, &info)
        } else {
            Vec::new()
        };
        for (newer, why) in passed_over {
            ctx.warn(format!("skipping the newer backup {}: {why}", newer.id));
            skipped.push((newer.id.to_string(), why.to_string()));
        }
        match r.open(&info, &refs).await {
            Ok(backup) => break (backup, info),
            Err(e) if *choice == Choice::Newest && r.checks_signers() && untrusted(&e) => {
                ctx.warn(format!("skipping the newer backup {}: {e}", info.id));
                skipped.push((info.id.to_string(), e.to_string()));
                cat.backups.retain(|b| b.id != info.id);
            }
            Err(
                e @ ibs_recovery::RecoveryError::Archive {
                    source: ibs_archive::Error::BadSignature { .. },
                    ..
                },
            ) => {
                return Err(Failure::from(e).hint(
                    "`ibs check --backup ID` tells damage on the storage location (the archive's SHA-256 against \
                     its manifest) from forgery; restore an older backup with --backup ID",
                ));
            }
            Err(e) if untrusted(&e) => {
                return Err(Failure::from(e).hint(
                    "`ibs list` shows each backup's signer; choose one your trusted signer made with --backup ID",
                ));
            }
            Err(e) => {
                let mut failure = Failure::from(e);
                if failure.kind == Kind::Key && !unusable.is_empty() {
                    failure = failure.hint(format!(
                        "these keys could not be opened and were not tried:\n  {}",
                        unusable.join("\n  ")
                    ));
                }
                return Err(failure);
            }
        }
    };
    // Authenticated by the header MAC (and the signature, when signed); the
    // catalogue found it equal to the manifest's and the id's.
    let created = backup.archive().info().fields().created;
    ctx.note(format!("backup {} was created at {}", info.id, utc(created)));
    if created > now().saturating_add(ibs_retention::Policy::default().clock_skew_secs()) {
        ctx.warn(format!(
            "backup {} is dated {}, in the future: the clock where it was made was wrong, or it was not made by \
             the controller; `ibs list` shows the others (choose one with --backup ID)",
            info.id,
            utc(created)
        ));
    }
    // With a whole id, backups of that very second sort by id (ids order
    // within a second); with a time part, by the time alone.
    if let Some(nb) = &args.not_before {
        let too_old =
            created < nb.time || (created == nb.time && nb.given.len() > 16 && info.id.as_str() < nb.given.as_str());
        if too_old {
            return Err(Failure::new(
                Kind::Backup,
                format!(
                    "backup {} was created at {}, before --not-before {} ({}): refused (an older backup \
                     replayed under a new name shows its old time)",
                    info.id,
                    utc(created),
                    nb.given,
                    utc(nb.time)
                ),
            ));
        }
    }
    match (backup.signer(), r.checks_signers()) {
        (ibs_archive::Signer::Verified(key), true) => {
            ctx.note(format!(
                "backup {} is signed by trusted signer {}",
                info.id,
                key.fingerprint()
            ));
        }
        (ibs_archive::Signer::UnsignedV1 | ibs_archive::Signer::Unsigned, true) => ctx.warn(format!(
            "backup {} is NOT signed (format version {}); accepted because of --allow-unsigned: nothing proves \
             the controller made it",
            info.id,
            backup.format_version()
        )),
        (ibs_archive::Signer::Verified(key), false) => ctx.warn(format!(
            "backup {} is signed by {}, but no --trust-signer was given: who made it was not checked",
            info.id,
            key.fingerprint()
        )),
        (ibs_archive::Signer::UnsignedV1 | ibs_archive::Signer::Unsigned, false) => ctx.warn(format!(
            "backup {} is not signed and no --trust-signer was given: who made it was not checked",
            info.id
        )),
    }
    Ok(Opened { backup, info, skipped })
}

/// The signer as JSON: its fingerprint, or null.
pub fn signer_json(signer: &ibs_archive::Signer) -> Value {
    match signer {
        ibs_archive::Signer::Verified(k) => Value::String(k.fingerprint().to_string()),
        ibs_archive::Signer::UnsignedV1 | ibs_archive::Signer::Unsigned => Value::Null,
    }
}

/// Paths shown in JSON: lossy UTF-8.
pub fn path_json(p: &std::path::Path) -> Value {
    Value::String(p.display().to_string())
}
