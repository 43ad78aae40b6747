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

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

mod args;
mod commands;
mod common;
mod progress;
mod report;

use args::{Cli, Command};
use common::{Ctx, Done};
use progress::Progress;
use report::{Failure, Kind};

/// Threads for blocking work (file reads, SMB calls).
const BLOCKING_THREADS: usize = 2;

fn main() -> ExitCode {
    // Help and version to stdout with exit 0; a usage error to stderr with exit 2.
    let cli = Cli::parse();
    let ctx = Ctx::new(cli.global.json, cli.global.quiet);
    progress::init_logging(cli.global.verbose);
    let result = run(cli.command, &ctx);
    match result {
        Ok(done) => {
            if ctx.json {
                let mut doc = done.doc;
                if let Some(map) = doc.as_object_mut() {
                    map.insert("warnings".to_owned(), serde_json::json!(ctx.take_warnings()));
                    map.insert("attention".to_owned(), serde_json::json!(done.attention));
                }
                println!("{doc}");
            } else {
                for why in &done.attention {
                    eprintln!("ibs: {why}");
                }
            }
            if done.attention.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(failure) => {
            report::print_failure(&failure, ctx.json);
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(command: Command, ctx: &Ctx) -> Result<Done, Failure> {
    match command {
        Command::Keygen(a) => return commands::keygen::run(&a, ctx),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ibs", &mut std::io::stdout());
            return Ok(Done::ok(serde_json::Value::Null));
        }
        Command::Man { out } => return write_man_pages(&out).map(|()| Done::ok(serde_json::Value::Null)),
        _ => {}
    }
    let progress = Progress::for_stderr(ctx.json, ctx.quiet);
    // Few blocking threads: file reads run there, and every thread that
    // allocates large read buffers gets its own malloc arena, which keeps
    // freed memory (measured: peak RSS 134 MB with the default pool, 84 MB
    // with four threads, on 44k real files).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Kind::Other, format!("cannot start: {e}")))?;
    let result = rt.block_on(async {
        match &command {
            Command::Backup(a) => commands::backup::run(a, ctx, &progress).await,
            Command::List(a) => commands::list::list(a, ctx).await,
            Command::Status(a) => commands::list::status(a, ctx).await,
            Command::Check(a) => commands::check::check(a, ctx, &progress).await,
            Command::Verify(a) => commands::check::verify(a, ctx, &progress).await,
            Command::Restore(a) => commands::restore::run(a, ctx, &progress).await,
            Command::Prune(a) => commands::prune::run(a, ctx).await,
            Command::Keygen(_) | Command::Completions { .. } | Command::Man { .. } => unreachable!("handled above"),
        }
    });
    progress.finish();
    // Every blocking task (file writes of a stopped restore) finishes first.
    rt.shutdown_timeout(std::time::Duration::from_secs(60));
    if let Some(lock) = commands::restore::lock_stopped().take() {
        let stopped = result.err().map_or_else(|| "restore stopped".to_owned(), |f| f.message);
        return match lock.remove_leftovers() {
            Ok(_) => Err(Failure::new(
                Kind::Other,
                format!(
                    "{stopped}; its staging folder is removed (what it had already moved into place, if it \
                     was stopped while placing, stays)"
                ),
            )),
            Err(e) => Err(Failure::new(
                Kind::Other,
                format!("{stopped}; removing what it wrote failed: {e}"),
            )),
        };
    }
    result
}

/// `ibs man --out DIR`: `ibs.1` and one page per verb (`ibs-backup.1`, …),
/// from the same definitions as `--help` (scripts/man.sh).
fn write_man_pages(out: &std::path::Path) -> Result<(), Failure> {
    std::fs::create_dir_all(out).map_err(|e| Failure::local("cannot create", out, e))?;
    let cmd = Cli::command();
    let mut pages = vec![("ibs".to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("ibs-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = out.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut buf)
            .map_err(|e| Failure::local("cannot render", &path, e))?;
        std::fs::write(&path, buf).map_err(|e| Failure::local("cannot write", &path, e))?;
    }
    Ok(())
}
