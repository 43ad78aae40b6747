//! `ibs list` and `ibs status`: what is at a location, without any key.

use ibs_recovery::{BackupInfo, BackupState, Recovery};
use serde_json::{Value, json};

use crate::args::{ListArgs, StatusArgs};
use crate::common::{Ctx, Done, instance, now, read_target, utc};
use crate::report::Failure;

/// A backup's state as `--json` names it: `complete`, `incomplete` or `damaged`.
fn state_name(state: BackupState) -> &'static str {
    if state.is_complete() {
        "complete"
    } else if state == BackupState::Incomplete {
        "incomplete"
    } else {
        "damaged"
    }
}

/// One backup as `list --json` and `status --json` show it.
fn backup_json(b: &BackupInfo) -> Value {
    let mut v = json!({
        "id": b.id.to_string(),
        "state": state_name(b.state),
        "created": utc(b.created),
        "bytes": b.size,
        "producer_version": b.producer_version,
        "recipients": b.recipients.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "format_version": b.format_version,
        "signer": b.signer.map(|s| s.to_string()),
    });
    if !b.state.is_complete() {
        v["reason"] = json!(b.problem.clone().unwrap_or_else(|| b.state.to_string()));
    }
    v
}

/// Runs `ibs list`.
pub async fn list(a: &ListArgs, ctx: &Ctx) -> Result<Done, Failure> {
    let inst = instance(&a.at)?;
    let root = inst.backup_root().to_string();
    let cat = Recovery::new(read_target(&a.at, ctx)?, inst).catalogue().await?;
    if cat.backups.is_empty() {
        ctx.say(format!("no backups at {root}"));
    } else {
        ctx.say(format!(
            "{:<26} {:<11} {:>12} {:<12} {:<16} recipients",
            "id", "state", "bytes", "version", "signer"
        ));
    }
    for b in &cat.backups {
        // The signer as the header claims it (checked when opened): 16 hex
        // digits here; `verify` prints it whole.
        let signer = match (b.format_version, b.signer) {
            (_, Some(fp)) => fp.to_string()[..16].to_owned(),
            (Some(_), None) => "unsigned".to_owned(),
            (None, None) => "-".to_owned(),
        };
        ctx.say(format!(
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
        ));
    }
    for u in &cat.unrecognised {
        ctx.say(format!("unrecognised (not written by ibs, left alone): {u}"));
    }
    Ok(Done::ok(json!({
        "location": root,
        "backups": cat.backups.iter().map(backup_json).collect::<Vec<_>>(),
        "unrecognised": cat.unrecognised.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })))
}

/// A duration in seconds as `2 d 3 h`, `5 h 10 min` or `42 min`.
fn age(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min")
    }
}

/// Runs `ibs status`: exit 1 (attention) when there is no complete backup,
/// the newest complete one is older than `--interval-hours`, or a backup is
/// damaged.
pub async fn status(a: &StatusArgs, ctx: &Ctx) -> Result<Done, Failure> {
    let inst = instance(&a.at)?;
    let root = inst.backup_root().to_string();
    let target = read_target(&a.at, ctx)?;
    let cat = Recovery::new(target.clone(), inst).catalogue().await?;
    let capacity = target.capacity().await?;
    let now = now();
    let complete: Vec<&BackupInfo> = cat.backups.iter().filter(|b| b.state.is_complete()).collect();
    // A backup dated beyond the clock-skew tolerance (a wrong clock where it
    // was made, or a forged manifest) would look fresh for as long as its date
    // is ahead: it is reported and does not count as the newest, as for
    // retention.
    let future_limit = now.saturating_add(ibs_retention::Policy::default().clock_skew_secs());
    let (future, present): (Vec<&BackupInfo>, Vec<&BackupInfo>) =
        complete.iter().partition(|b| b.created > future_limit);
    let newest = present.iter().max_by_key(|b| (b.created, b.id.as_str()));
    let oldest = cat.backups.iter().min_by_key(|b| (b.created, b.id.as_str()));
    let incomplete: Vec<&BackupInfo> = cat
        .backups
        .iter()
        .filter(|b| b.state == BackupState::Incomplete)
        .collect();
    let damaged: Vec<&BackupInfo> = cat
        .backups
        .iter()
        .filter(|b| !b.state.is_complete() && b.state != BackupState::Incomplete)
        .collect();
    let total: u64 = cat.backups.iter().map(|b| b.size).sum();
    let interval = i64::from(a.interval_hours) * 3600;
    let mut attention = Vec::new();
    match newest {
        None => attention.push(format!("no complete backup at {root}")),
        Some(b) if now - b.created > interval => attention.push(format!(
            "the newest complete backup {} is {} old, older than the {} h interval",
            b.id,
            age(now - b.created),
            a.interval_hours
        )),
        Some(_) => {}
    }
    if !damaged.is_empty() {
        attention.push(format!("{} damaged backup(s)", damaged.len()));
    }
    for b in &future {
        attention.push(format!(
            "backup {} is dated {}, in the future (a wrong clock where it was made?): it does not count as the newest",
            b.id,
            utc(b.created)
        ));
    }
    match newest {
        Some(b) => ctx.say(format!(
            "newest complete backup: {} ({}, {} old)",
            b.id,
            utc(b.created),
            age(now - b.created)
        )),
        None => ctx.say("newest complete backup: none"),
    }
    ctx.say(format!(
        "backups: {} ({} complete), {total} bytes in all",
        cat.backups.len(),
        complete.len()
    ));
    if let Some(b) = oldest {
        ctx.say(format!("oldest kept: {} ({})", b.id, utc(b.created)));
    }
    for b in &incomplete {
        ctx.say(format!(
            "incomplete: {} ({})",
            b.id,
            b.problem.as_deref().unwrap_or("not committed")
        ));
    }
    for b in &damaged {
        ctx.say(format!(
            "damaged: {} ({})",
            b.id,
            b.problem.as_deref().unwrap_or("damaged")
        ));
    }
    for u in &cat.unrecognised {
        ctx.say(format!("unrecognised (not written by ibs): {u}"));
    }
    match (capacity.free_bytes, capacity.total_bytes) {
        (Some(free), Some(total)) => ctx.say(format!("space left: {free} of {total} bytes")),
        (Some(free), None) => ctx.say(format!("space left: {free} bytes")),
        _ => ctx.say("space left: not known (the storage does not say)"),
    }
    if attention.is_empty() {
        ctx.say(format!(
            "ok: the newest complete backup is within the {} h interval",
            a.interval_hours
        ));
    }
    Ok(Done {
        doc: json!({
            "location": root,
            "newest_complete": newest.map(|b| json!({
                "id": b.id.to_string(),
                "created": utc(b.created),
                "age_seconds": now - b.created,
            })),
            "backups": cat.backups.len(),
            "complete": complete.len(),
            "bytes": total,
            "oldest": oldest.map(|b| json!({ "id": b.id.to_string(), "created": utc(b.created) })),
            "incomplete": incomplete.iter().map(|b| backup_json(b)).collect::<Vec<_>>(),
            "damaged": damaged.iter().map(|b| backup_json(b)).collect::<Vec<_>>(),
            "future": future.iter().map(|b| backup_json(b)).collect::<Vec<_>>(),
            "unrecognised": cat.unrecognised.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "free_bytes": capacity.free_bytes,
            "total_bytes": capacity.total_bytes,
            "interval_hours": a.interval_hours,
            "overdue": newest.is_none_or(|b| now - b.created > interval),
        }),
        attention,
    })
}
