//! `ibs restore`: a backup back into a folder, all or nothing.
//!
//! Files, folders, symbolic links (never followed), hard links, modes,
//! modification times, sparse holes and extended attributes come back;
//! owners too when run as root (`--no-owner` skips them), and then
//! setuid/setgid bits. What could not be applied is said once, not per file.
//! A restore stopped by a signal removes its staging folder (see `main`).

use ibs_recovery::{Choice, RestoreOptions};
use serde_json::json;

use crate::args::RestoreArgs;
use crate::common::{Ctx, Done, open, path_json};
use crate::report::{Failure, Kind};

/// A restore stopped by a signal: the lock on its folder, for the clean-up
/// after the runtime has finished every write.
type Stopped = Option<ibs_recovery::RestoreLock>;

/// The lock of a restore stopped by a signal, if any.
pub fn lock_stopped() -> std::sync::MutexGuard<'static, Stopped> {
    static STOPPED: std::sync::Mutex<Stopped> = std::sync::Mutex::new(None);
    STOPPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, with the signal's name; never
/// when signals cannot be watched.
pub async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

/// Runs `ibs restore`.
pub async fn run(a: &RestoreArgs, ctx: &Ctx) -> Result<Done, Failure> {
    let progress = &ctx.progress;
    let to = &a.to;
    let opened = open(&a.open, &a.backup.clone().map_or(Choice::Newest, Choice::Id), ctx).await?;
    let mut options = RestoreOptions::default().overwrite(a.overwrite);
    if a.no_owner {
        options = options.owners(false);
    }
    if !a.source.is_empty() {
        options = options.sources(a.source.clone());
    }
    options = progress.restore_options_for(options, &opened.backup);
    // A folder this restore creates is removed again if the restore fails
    // and leaves it empty (never a folder that was there before).
    let created = std::fs::symlink_metadata(to).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
    let lock = ibs_recovery::RestoreLock::acquire(to).await?;
    let finished = tokio::select! {
        report = opened.backup.restore_locked(&lock, &options) => Ok(report),
        signal = stop_signal() => Err(signal),
    };
    progress.finish();
    if created && matches!(finished, Ok(Err(_))) {
        let _ = std::fs::remove_dir(to);
    }
    let report = match finished {
        Ok(Err(e)) if e.is_damage() && a.backup.is_none() => {
            return Err(Failure::from(e).hint(
                "The newest backup is damaged. `ibs check --location …` shows which backups are intact (no key \
                 needed); restore one of them with --backup ID.",
            ));
        }
        Ok(report) => report?,
        Err(signal) => {
            // The restore stops here. Its leftovers are removed once every
            // write still running has finished, under the lock it still
            // holds (see `main`).
            *lock_stopped() = Some(lock);
            return Err(Failure::new(Kind::Other, format!("restore stopped by {signal}")));
        }
    };
    if !report.leftovers.is_empty() {
        ctx.say(format!(
            "removed what an interrupted restore had left in {}: {} staging folder(s)",
            to.display(),
            report.leftovers.staging_folders
        ));
    }
    ctx.say(format!(
        "backup {} restored to {}: {} files, {} bytes, {} folders, {} symbolic links, {} hard links, {} sources",
        opened.info.id,
        to.display(),
        report.files,
        report.bytes,
        report.folders,
        report.symlinks,
        report.hard_links,
        report.sources
    ));
    for note in &report.not_applied {
        ctx.warn(note);
    }
    Ok(Done::ok(json!({
        "id": opened.info.id.to_string(),
        "to": path_json(to),
        "files": report.files,
        "bytes": report.bytes,
        "folders": report.folders,
        "symlinks": report.symlinks,
        "hard_links": report.hard_links,
        "sources": report.sources,
        "not_applied": report.not_applied,
        "staging_folders_removed": report.leftovers.staging_folders,
        "skipped": super::check::skipped_json(&opened.skipped),
    })))
}
