//! `ibs backup`: one full backup of the sources, then retention.
//!
//! Everything the command line says is checked before anything is written:
//! the certificates, the sources (none inside the backup folder), the values
//! the backup records. On a live system a file deleted during the backup is
//! skipped and one that keeps changing is captured as last read: the backup
//! still succeeds and says so in warnings. A backup stopped by Ctrl-C or
//! SIGTERM stops at its next entry and removes what it had written.

use std::sync::Arc;

use ibs_controller::{BackupSource, DirectorySource, Settings};
use ibs_envelope::{Certificate, SigningKey};
use ibs_retention::Policy;
use serde_json::{Value, json};

use crate::args::BackupArgs;
use crate::common::{Ctx, Done, access, instance, location, now};
use crate::report::{Failure, Kind, alert_json, usage};

/// The retention policy of `--keep-days` (the schedule's interval is the controller's).
pub fn policy(keep_days: Option<u32>) -> Result<Policy, Failure> {
    match keep_days {
        Some(d) => Policy::new(Policy::default().interval_hours(), d).map_err(|e| usage(format!("--keep-days: {e}"))),
        None => Ok(Policy::default()),
    }
}

/// Every certificate of every `--cert` file (a PEM file may hold several):
/// the backup is encrypted to all of them, each `.pfx` alone restores it.
fn certificates(a: &BackupArgs, ctx: &Ctx) -> Result<Vec<Certificate>, Failure> {
    let mut certificates = Vec::new();
    for path in &a.cert {
        let found = Certificate::from_file_all(path)
            .map_err(|e| Failure::new(Kind::Key, format!("--cert {}: {e}", path.display())))?;
        // Expired, or not meant for encipherment: still used (no trust is
        // checked; the operator's .pfx decrypts all the same), and said.
        for cert in &found {
            for warning in cert.warnings(now()) {
                ctx.warn(format!("--cert {} ({}): {warning}", path.display(), cert.thumbprint()));
            }
        }
        certificates.extend(found);
    }
    ibs_controller::job::check_recipients(&certificates).map_err(|e| usage(e.to_string()))?;
    Ok(certificates)
}

/// Runs `ibs backup`.
pub async fn run(a: &BackupArgs, ctx: &Ctx) -> Result<Done, Failure> {
    let progress = &ctx.progress;
    let certificates = certificates(a, ctx)?;
    let mut dirs = Vec::with_capacity(a.source.len());
    for (n, d) in &a.source {
        let mut source = DirectorySource::new(n.clone(), d.clone()).xattrs(a.xattrs);
        for pattern in &a.exclude {
            source = source
                .exclude(pattern.clone())
                .map_err(|e| usage(format!("--exclude: {e}")))?;
        }
        dirs.push(source);
    }
    let inst = instance(&a.at)?;
    let settings = Settings {
        location: location(&a.at)?,
        access: access(&a.at)?,
        certificates,
        fqdn: inst.fqdn().to_owned(),
        region: inst.region().to_owned(),
        policy: policy(a.keep_days)?,
        producer_version: a
            .producer_version
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        signer: match &a.sign {
            None => None,
            Some(path) => {
                Some(Arc::new(SigningKey::from_file(path).map_err(|e| {
                    Failure::new(Kind::Key, format!("--sign {}: {e}", path.display()))
                })?))
            }
        },
    };
    // Before anything is written: a source inside the backup folder, or a
    // value the backup would record that could not be read back, is a usage error.
    let stop = ibs_controller::Stop::new();
    let mut sources: Vec<Arc<dyn BackupSource>> = Vec::with_capacity(dirs.len());
    for source in dirs {
        let source = settings.prepare_source(source).map_err(|e| usage(e.to_string()))?;
        sources.push(stop.wrap(Arc::new(source)));
    }
    ibs_controller::job::check_recorded(&settings.producer_version, &inst).map_err(|e| usage(e.to_string()))?;
    ibs_controller::job::check_sources(&sources).map_err(|e| usage(e.to_string()))?;
    // Observed from the first call: a share that stalls while it is checked
    // shows the spinner too.
    let target = ibs_controller::open_target_observed(&settings.location, &settings.access, progress.call_observer())?;
    ibs_controller::validate_target(&target, &inst).await?;
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
    // Ctrl-C or SIGTERM stops the capture at its next entry; the job then
    // removes what it had written (its partial archive and folder) instead
    // of leaving them for retention's grace period. A second one ends the
    // process at once (an upload that hangs, or a stop after the capture, in
    // the commit or retention): what it leaves lists as incomplete.
    let stopper = stop.clone();
    let watcher = tokio::spawn(async move {
        let signal = super::restore::stop_signal().await;
        stopper.stop(signal);
        let again = super::restore::stop_signal().await;
        std::process::exit(if again == "SIGINT" { 130 } else { 143 });
    });
    let job = ibs_controller::run_job_with_progress(&spec, &sources, now(), Some(progress.backup_fn())).await;
    watcher.abort();
    progress.finish();
    let s = job?;
    let secs = start.elapsed().as_secs_f64().max(1e-3);
    ctx.say(format!(
        "backup {} complete{}: {} entries, {} bytes of data, {} bytes written, {:.1} s ({:.0} MB/s)",
        s.id,
        if s.has_warnings() { " with warnings (below)" } else { "" },
        s.entries,
        s.data_bytes,
        s.archive_bytes,
        secs,
        s.data_bytes as f64 / secs / 1e6
    ));
    if let Some(key) = &settings.signer {
        ctx.say(format!("signed by {}", key.verifying_key().fingerprint()));
    }
    if s.attempts > 1 {
        ctx.say("the first attempt ran out of capacity; space was freed and the second attempt succeeded");
    }
    super::prune::print_deletions(ctx, &s.deleted, false);
    super::prune::print_damaged(ctx, &s.damaged);
    for u in &s.untrusted {
        ctx.warn(u.to_string());
    }
    for u in &s.unrecognised {
        ctx.say(format!("left alone (not written by ibs): {u}"));
    }
    for kept in &s.kept_folders {
        ctx.say(format!("kept folder {kept}"));
    }
    if let Some(f) = &s.retention_failed {
        ctx.warn(format!(
            "the backup is complete, but retention after it failed: {}\nalert: {}: {}\nremediation: {}",
            f.error, f.alert.title, f.alert.description, f.alert.remediation
        ));
    }
    for w in s.warnings.kept() {
        ctx.warn(w);
    }
    if s.warnings.not_kept() > 0 {
        ctx.warn(format!(
            "and {} more items skipped or changed during capture (only the first {} are listed)",
            s.warnings.not_kept(),
            ibs_controller::Warnings::KEPT
        ));
    }
    Ok(Done::ok(json!({
        "id": s.id.to_string(),
        "entries": s.entries,
        "bytes_in": s.data_bytes,
        "bytes_out": s.archive_bytes,
        "seconds": secs,
        "attempts": s.attempts,
        "signer": settings.signer.as_ref().map(|k| k.verifying_key().fingerprint().to_string()),
        "deleted": super::prune::deletions_json(&s.deleted),
        "damaged": s.damaged.iter().map(|d| json!({
            "message": d.to_string(),
            "alert": alert_json(&d.alert()),
        })).collect::<Vec<_>>(),
        "untrusted": super::prune::untrusted_json(&s.untrusted),
        "unrecognised": s.unrecognised,
        "kept_folders": s.kept_folders,
        "retention_failed": s.retention_failed.as_ref().map_or(Value::Null, |f| json!({
            "message": f.error,
            "alert": alert_json(&f.alert),
        })),
        "warnings_not_listed": s.warnings.not_kept(),
    })))
}
