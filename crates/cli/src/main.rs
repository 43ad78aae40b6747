//! `ibs`: the infrastructure backup command.
//!
//! ```text
//! ibs keygen      make the operator's certificate and key, or (--signing) the controller's signing key
//! ibs backup      one full backup of the sources, encrypted to the certificates, then retention
//! ibs list        the backups at a location and their state (no key)
//! ibs status      newest complete backup and its age, sizes, problems; exit 1 when overdue (no key)
//! ibs check       every backup's archive against its manifest, header and footer, signature (no key)
//! ibs verify      the whole backup decrypted and checked with the operator's key
//! ibs restore     a backup back into a folder, all or nothing
//! ibs prune       retention now
//! ibs completions a shell completion script
//! ```
//!
//! `ibs help COMMAND` shows each command's flags and examples (the same
//! definitions make the manual pages: `scripts/man.sh`). How it is built:
//! [`args`] is what the command line says (clap); each verb in
//! [`commands`] checks what clap could not, does its work and returns its
//! `--json` document ([`common::Done`], fields in `docs/cli-json.md`);
//! [`report`] reports every failure the same way (text or JSON on stderr,
//! with its kind, storage class, alert and remediation); [`progress`] draws
//! on a terminal and sets up logging.
//!
//! Credentials never come from the command line: SMB's from
//! `--credentials-file` or `IBS_SMB_*`, Azure's and S3's from their
//! variables; a location with `user:password@` in it is refused (exit 2)
//! without repeating them. Exit status: 0 success (warnings allowed), 1
//! failure (or, for `status`, `check` and `prune`, something needs
//! attention), 2 usage error.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

mod args;
mod commands;
mod common;
mod progress;
mod report;

use args::{Cli, Command};
use common::{Ctx, Done};
use report::{Failure, Kind};

/// Threads for blocking work (file reads, SMB calls).
const BLOCKING_THREADS: usize = 2;

/// Raises the soft limit on open files to the hard one: a backup's walk and
/// a restore's writer hold one folder handle per level of depth (a tree can
/// be ~2 000 levels deep within the 4 096-byte path limit), more than the
/// usual soft limit of 1 024. Failing to raise it is not an error (the
/// limit then stays as it was).
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
}

fn main() -> ExitCode {
    // Help and version to stdout with exit 0; a usage error to stderr with
    // exit 2 (as JSON when `--json` is among the arguments).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && std::env::args_os().any(|a| a == "--json") => {
            let text = e.render().to_string();
            let failure = Failure::new(Kind::Usage, text.trim_end().trim_start_matches("error: "));
            report::print_failure(&failure, true);
            return ExitCode::from(failure.exit_code());
        }
        Err(e) => e.exit(),
    };
    let ctx = Ctx::new(cli.global.json, cli.global.quiet);
    progress::init_logging(cli.global.verbose);
    raise_open_file_limit();
    let result = run(cli.command, &ctx);
    match result {
        // `completions` and `man` print a script or write files: no document.
        Ok(done) if done.doc.is_null() => ExitCode::SUCCESS,
        Ok(done) => {
            if ctx.json {
                let mut doc = done.doc;
                if let Some(map) = doc.as_object_mut() {
                    map.insert("warnings".to_owned(), serde_json::json!(ctx.take_warnings()));
                    map.insert("attention".to_owned(), serde_json::json!(done.attention));
                }
                common::print_stdout(doc);
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
            Command::Backup(a) => commands::backup::run(a, ctx).await,
            Command::List(a) => commands::list::list(a, ctx).await,
            Command::Status(a) => commands::list::status(a, ctx).await,
            Command::Check(a) => commands::check::check(a, ctx).await,
            Command::Verify(a) => commands::check::verify(a, ctx).await,
            Command::Restore(a) => commands::restore::run(a, ctx).await,
            Command::Prune(a) => commands::prune::run(a, ctx).await,
            Command::Keygen(_) | Command::Completions { .. } | Command::Man { .. } => unreachable!("handled above"),
        }
    });
    ctx.progress.finish();
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
    // Built, each verb carries the global flags (--json, -q, -v), its
    // display name `ibs-backup` (the page's title) and its bin name
    // `ibs backup` (what its synopsis says to type).
    let mut cmd = Cli::command();
    cmd.build();
    let mut pages = vec![("ibs".to_owned(), cmd.clone())];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("ibs-{}", sub.get_name());
        pages.push((name, sub.clone()));
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
