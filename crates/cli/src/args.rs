//! What the command line says: every verb and flag, with their help, parsed
//! by clap. Values clap can check alone (numbers and their ranges, choices)
//! are checked here; what needs files or several flags together is checked
//! by each command before it does anything.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The instance backed up when `--fqdn` is not given.
pub const DEFAULT_FQDN: &str = "azurestack.local";
/// The region backed up when `--region` is not given.
pub const DEFAULT_REGION: &str = "local";

pub const LOC_HELP: &str = "Where backups are: \\\\host\\share\\folder, smb://host[:port]/share/folder, \
az://container/prefix (Azure Blob), s3://bucket/prefix (S3), or a local folder";

/// `ibs --version`: the release and the archive format versions.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nwrites archive format version 2; reads format versions 1 and 2"
);

const AFTER_HELP: &str = "\
Exit status: 0 success (warnings allowed), 1 failure (or, for status and check, something needs \
attention), 2 usage error.
SMB credentials: --credentials-file F (smbclient's format: username = …, password = …, domain = …) \
or IBS_SMB_USERNAME / IBS_SMB_PASSWORD (/ IBS_SMB_DOMAIN); never in the location.
Azure: AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY (AZURE_STORAGE_ENDPOINT). \
S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (AWS_ENDPOINT).
`ibs help COMMAND` or `ibs COMMAND --help` shows a command's flags and examples.";

/// `ibs`: full, encrypted backups of an infrastructure's control-plane state,
/// and their recovery.
#[derive(Debug, Parser)]
#[command(
    name = "ibs",
    version = LONG_VERSION,
    about = "Full, encrypted backups of infrastructure state: take, list, check, verify, restore, prune",
    after_help = AFTER_HELP,
    propagate_version = true,
    disable_help_subcommand = false,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
    /// Flags every verb takes.
    #[command(flatten)]
    pub global: Global,
}

/// Flags every verb takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Print one JSON document on stdout (and errors as JSON on stderr); see docs/cli-json.md
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress display and no informational notes (warnings and errors still show)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log what the libraries do to stderr (-v: info, -vv: debug, -vvv: trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make the operator's certificate and key (.cer, .pfx), or the controller's signing key
    #[command(after_help = "Examples:
  ibs keygen --out keys                          keys/backup-encryption.cer, .pfx and .password
  ibs keygen --out keys --name ops --bits 4096 --password-file ops.pw
  ibs keygen --signing --out keys                keys/backup-signing.sign.key and .sign.pub")]
    Keygen(KeygenArgs),
    /// Take a full backup of the sources, encrypted to the certificates, then apply retention
    #[command(after_help = "Examples:
  ibs backup --location /mnt/backups --cert ops.cer --source identity=/var/lib/identity
  ibs backup --location smb://fs1/backups/azs --credentials-file smb.auth --cert ops.cer \\
             --source ca=/srv/ca --source keyvault=/srv/kv --exclude '**/*.tmp' --sign ctl.sign.key")]
    Backup(BackupArgs),
    /// List the backups at a location and their state (no key needed)
    #[command(after_help = "Examples:
  ibs list --location /mnt/backups
  ibs list --location az://backups/azs --json")]
    List(ListArgs),
    /// Summarise a location for monitoring: newest complete backup and its age, sizes, problems (exit 1 when something needs attention); reads manifests and headers, not whole archives (that is `check`)
    #[command(after_help = "Examples:
  ibs status --location /mnt/backups
  ibs status --location /mnt/backups --interval-hours 6 --json   (exit 1: newest older than 6 h, or problems)")]
    Status(StatusArgs),
    /// Check backups without any key: archive size and SHA-256 against the manifest, header and footer, signature
    #[command(after_help = "Examples:
  ibs check --location /mnt/backups                       every backup
  ibs check --location /mnt/backups --backup 20261130T120000Z-1a2b3c4d
  ibs check --location /mnt/backups --trust-signer ctl.sign.pub")]
    Check(CheckArgs),
    /// Decrypt and check a whole backup with the operator's key, writing nothing
    #[command(after_help = "Examples:
  ibs verify --location /mnt/backups --pfx ops.pfx --password-file ops.password
  ibs verify --location /mnt/backups --pfx old.pfx --password-file old.pw --pfx new.pfx --password-file new.pw")]
    Verify(VerifyArgs),
    /// Restore a backup into a folder (the newest restorable one unless --backup)
    #[command(after_help = "Examples:
  ibs restore --location /mnt/backups --pfx ops.pfx --password-file ops.password --to /srv/restored
  ibs restore --location /mnt/backups --backup 20261130T120000Z-1a2b3c4d --source ca \\
              --pfx ops.pfx --password-file ops.password --to /srv/ca-restored --trust-signer ctl.sign.pub")]
    Restore(RestoreArgs),
    /// Apply retention now: delete expired and abandoned backups (never the newest complete one)
    #[command(after_help = "Examples:
  ibs prune --location /mnt/backups --dry-run
  ibs prune --location /mnt/backups --keep-days 14")]
    Prune(PruneArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "Examples:
  ibs completions bash > /etc/bash_completion.d/ibs
  ibs completions zsh > \"${fpath[1]}/_ibs\"
  ibs completions fish > ~/.config/fish/completions/ibs.fish")]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (ibs.1, ibs-backup.1, …) into a folder (scripts/man.sh)
    #[command(hide = true)]
    Man {
        /// The folder to write them into (created if missing)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `ibs keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The folder to write the key files into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The files' base name: a plain file name [default: backup-encryption, with --signing backup-signing]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// RSA key size
    #[arg(long, value_name = "BITS", value_parser = ["2048", "3072", "4096"])]
    pub bits: Option<String>,
    /// The .pfx password (the file's first line); without it a strong one is generated into NAME.password
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Accept an empty password file (the .pfx is then protected by an empty password)
    #[arg(long)]
    pub allow_empty_password: bool,
    /// Write the .pfx with 3DES/SHA-1 for old Windows versions that cannot read AES
    #[arg(long)]
    pub legacy_pfx: bool,
    /// Make the controller's Ed25519 signing key pair (NAME.sign.key, NAME.sign.pub) instead
    #[arg(long)]
    pub signing: bool,
}

/// The location and the instance whose backups are there.
#[derive(Debug, Args)]
pub struct LocationArgs {
    #[arg(long, value_name = "LOC", help = LOC_HELP)]
    pub location: String,
    /// The instance's FQDN (the first folder under the location)
    #[arg(long, value_name = "FQDN", default_value = DEFAULT_FQDN)]
    pub fqdn: String,
    /// The instance's region (the second folder under the location)
    #[arg(long, value_name = "REGION", default_value = DEFAULT_REGION)]
    pub region: String,
    /// SMB credentials in smbclient's format (else IBS_SMB_USERNAME / IBS_SMB_PASSWORD / IBS_SMB_DOMAIN)
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
}

/// How many days backups are kept (2–14).
fn keep_days() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(2..=14)
}

/// `ibs backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub at: LocationArgs,
    /// A recipient's certificate (.cer, DER or PEM; a PEM bundle gives several); repeat for several recipients
    #[arg(long, value_name = "FILE", required = true)]
    pub cert: Vec<PathBuf>,
    /// A source to back up, as NAME=DIR; repeat for several
    #[arg(long, value_name = "NAME=DIR", required = true, value_parser = parse_source)]
    pub source: Vec<(String, PathBuf)>,
    /// Leave out what matches a gitignore-style pattern (**/*.tmp, cache/, /logs), relative to each source; repeatable
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Sign the backup with the controller's key (NAME.sign.key from `keygen --signing`)
    #[arg(long, value_name = "FILE")]
    pub sign: Option<PathBuf>,
    /// Also record extended attributes
    #[arg(long)]
    pub xattrs: bool,
    /// The version of what is backed up, recorded in the backup [default: this ibs's version]
    #[arg(long, value_name = "V")]
    pub producer_version: Option<String>,
    /// Days backups are kept by the retention after the backup, 2–14 [default: 7]
    #[arg(long, value_name = "DAYS", value_parser = keep_days())]
    pub keep_days: Option<u32>,
}

/// `NAME=DIR`.
fn parse_source(v: &str) -> Result<(String, PathBuf), String> {
    let (name, dir) = v.split_once('=').ok_or_else(|| format!("takes NAME=DIR, got {v:?}"))?;
    if dir.is_empty() {
        return Err(format!("takes NAME=DIR, got {v:?}: the folder is missing"));
    }
    Ok((name.to_owned(), dir.into()))
}

/// `ibs list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub at: LocationArgs,
}

/// `ibs status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub at: LocationArgs,
    /// The backup schedule's interval, 4–12 hours: the newest complete backup older than this needs attention
    #[arg(long, value_name = "HOURS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=12))]
    pub interval_hours: u32,
}

/// Who may have written a backup.
#[derive(Debug, Args)]
pub struct SignerArgs {
    /// Refuse a backup not signed by this controller key (NAME.sign.pub); repeat during a key rotation
    #[arg(long, value_name = "FILE")]
    pub trust_signer: Vec<PathBuf>,
    /// With --trust-signer: accept format version 1 backups (made before signatures existed), and say so; an unsigned version 2 backup is refused all the same
    #[arg(long, requires = "trust_signer")]
    pub allow_unsigned: bool,
    /// The recovering instance's version, for the version rule (which backups it may restore)
    #[arg(long, value_name = "V")]
    pub instance_version: Option<String>,
}

/// `ibs check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub at: LocationArgs,
    /// Check this backup only [default: every backup]
    #[arg(long, value_name = "ID", value_parser = parse_backup_id)]
    pub backup: Option<String>,
    /// Every backup (the default; kept for scripts that pass it)
    #[arg(long, conflicts_with = "backup", hide = true)]
    pub all: bool,
    #[command(flatten)]
    pub signers: SignerArgs,
}

/// The operator's identities.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The operator's key (.pfx); repeat for several (old and new keys): any that opens the backup will do
    #[arg(long, value_name = "FILE", required = true)]
    pub pfx: Vec<PathBuf>,
    /// The .pfx password (first line); one for all, or one per --pfx in the same order [else IBS_PFX_PASSWORD]
    #[arg(long, value_name = "FILE")]
    pub password_file: Vec<PathBuf>,
}

/// Which backup to open, and what to accept.
#[derive(Debug, Args)]
pub struct OpenArgs {
    #[command(flatten)]
    pub at: LocationArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub signers: SignerArgs,
    /// Refuse a backup created before this (a backup id, or its time part YYYYMMDDTHHMMSSZ, UTC)
    #[arg(long, value_name = "ID", value_parser = parse_not_before)]
    pub not_before: Option<NotBefore>,
}

/// `--not-before`: as given, and as Unix seconds.
#[derive(Clone, Debug)]
pub struct NotBefore {
    /// The text given.
    pub given: String,
    /// Its time.
    pub time: i64,
}

/// A backup id (`YYYYMMDDTHHMMSSZ-xxxxxxxx`), as given.
fn parse_backup_id(v: &str) -> Result<String, String> {
    v.parse::<ibs_repository::BackupId>()
        .map(|_| v.to_owned())
        .map_err(|e| format!("{e} (a backup id is YYYYMMDDTHHMMSSZ-xxxxxxxx, as `ibs list` shows it)"))
}

fn parse_not_before(v: &str) -> Result<NotBefore, String> {
    let id = if v.len() == 16 {
        format!("{v}-00000000")
    } else {
        v.to_owned()
    };
    id.parse::<ibs_repository::BackupId>()
        .map(|id| NotBefore {
            given: v.to_owned(),
            time: id.created(),
        })
        .map_err(|_| format!("takes a backup id or its time part YYYYMMDDTHHMMSSZ (UTC), got {v:?}"))
}

/// `ibs verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub open: OpenArgs,
    /// Verify this backup [default: the newest, which must be complete]
    #[arg(long, value_name = "ID", value_parser = parse_backup_id)]
    pub backup: Option<String>,
}

/// `ibs restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub open: OpenArgs,
    /// Restore this backup [default: the newest restorable one, naming every newer one skipped]
    #[arg(long, value_name = "ID", value_parser = parse_backup_id)]
    pub backup: Option<String>,
    /// The folder to restore into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Restore only this source; repeatable [default: every source]
    #[arg(long, value_name = "NAME")]
    pub source: Vec<String>,
    /// Replace files that already exist in --to
    #[arg(long)]
    pub overwrite: bool,
    /// Do not give files back their owners (as root, owners are restored by default)
    #[arg(long)]
    pub no_owner: bool,
}

/// `ibs prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub at: LocationArgs,
    /// Days backups are kept, 2–14 [default: 7]
    #[arg(long, value_name = "DAYS", value_parser = keep_days())]
    pub keep_days: Option<u32>,
    /// Say what would be deleted, delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Count only backups signed by this controller key (NAME.sign.pub) as the controller's: a newer backup signed by another key, or by none, is never kept in place of one it signed; repeat during a key rotation
    #[arg(long, value_name = "FILE")]
    pub trust_signer: Vec<PathBuf>,
    /// With --trust-signer: count format version 1 backups (made before signatures existed) too
    #[arg(long, requires = "trust_signer")]
    pub allow_unsigned: bool,
}
