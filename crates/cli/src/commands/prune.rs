//! `ibs prune`: retention now, as a backup applies it after itself.

use ibs_retention::Deletion;
use serde_json::{Value, json};

use crate::args::PruneArgs;
use crate::common::{Ctx, Done, access, instance, location, now, trusted_signers};
use crate::report::{Failure, alert_json};

/// Prints what retention deleted (or would delete).
pub fn print_deletions(ctx: &Ctx, deleted: &[Deletion], dry_run: bool) {
    for d in deleted {
        ctx.say(format!(
            "{} {} ({} bytes): {}",
            if dry_run { "would delete" } else { "deleted" },
            d.id,
            d.size,
            d.reason
        ));
    }
}

/// Deletions as JSON.
pub fn deletions_json(deleted: &[Deletion]) -> Value {
    Value::Array(
        deleted
            .iter()
            .map(|d| json!({ "id": d.id.to_string(), "bytes": d.size, "reason": d.reason.to_string() }))
            .collect(),
    )
}

/// Prints damaged backups, each with its alert.
pub fn print_damaged(ctx: &Ctx, damaged: &[ibs_controller::DamagedBackup]) {
    for d in damaged {
        let alert = d.alert();
        ctx.say(format!(
            "{d}\nalert: {}: {}\nremediation: {}",
            alert.title, alert.description, alert.remediation
        ));
    }
}

/// Untrusted backups as JSON.
pub fn untrusted_json(untrusted: &[ibs_controller::UntrustedBackup]) -> Value {
    Value::Array(
        untrusted
            .iter()
            .map(|u| {
                json!({
                    "id": u.id,
                    "signer": u.signer.map(|f| f.to_string()),
                    "message": u.to_string(),
                })
            })
            .collect(),
    )
}

/// Runs `ibs prune`: exit 1 when a damaged backup, or one no trusted signer
/// signed, was found (named above).
pub async fn run(a: &PruneArgs, ctx: &Ctx) -> Result<Done, Failure> {
    let target =
        ibs_controller::open_target_observed(&location(&a.at)?, &access(&a.at)?, ctx.progress.call_observer())?;
    let inst = instance(&a.at)?;
    let policy = super::backup::policy(a.keep_days)?;
    let trust = ibs_controller::SignerTrust::keys(trusted_signers(&a.trust_signer)?).allow_v1(a.allow_unsigned);
    let retention = ibs_controller::job::plan_retention(
        &target,
        &inst,
        &policy,
        now(),
        None,
        &ibs_controller::CheckMemo::default(),
        &trust,
    )
    .await?;
    // In the order the checks found them: damaged or untrusted newer ones
    // first, then the one kept in their place.
    print_damaged(ctx, &retention.listed_damaged);
    print_damaged(ctx, &retention.damaged);
    for u in &retention.untrusted {
        ctx.say(u.to_string());
    }
    for c in &retention.checked {
        ctx.say(format!("checked {} (no key): {c}", c.id));
    }
    let plan = &retention.plan;
    let mut notes = Vec::new();
    if !trust.checks_signers()
        && plan
            .deletions
            .iter()
            .any(|d| d.reason != ibs_retention::Reason::IncompleteGarbage)
    {
        let line = "who made the backups was not checked (no --trust-signer): the backup kept in place of the \
                    deleted ones may have been written by anyone with the certificate";
        ctx.note(line);
        notes.push(line.to_owned());
    }
    for w in &plan.warnings {
        let line = match w {
            ibs_retention::Warning::Unrecognised { path } => format!("left alone (not written by ibs): {path}"),
            ibs_retention::Warning::FromTheFuture { id, created } => {
                format!("kept {id}: its creation time {created} is in the future (clock skew?)")
            }
            ibs_retention::Warning::NotOurs { path } => format!("ignored (not this instance's): {path}"),
            ibs_retention::Warning::NoTrustedBackup { id } => format!(
                "kept {id} in place of the others although no trusted signer signed it: no complete backup here \
                 is known to be signed by a trusted signer (signing just turned on, or a new key?)"
            ),
        };
        ctx.say(&line);
        notes.push(line);
    }
    if plan.deletions.is_empty() {
        ctx.say("nothing to prune");
    }
    let (deleted, kept_folders) = if a.dry_run {
        print_deletions(ctx, &plan.deletions, true);
        (plan.deletions.clone(), Vec::new())
    } else {
        let applied = ibs_controller::job::apply(&target, plan).await?;
        print_deletions(ctx, &applied.deleted, false);
        for kept in &applied.kept_folders {
            ctx.say(format!("kept folder {kept}"));
        }
        (applied.deleted, applied.kept_folders)
    };
    let damaged: Vec<_> = retention.listed_damaged.iter().chain(&retention.damaged).collect();
    let mut attention = Vec::new();
    if !damaged.is_empty() {
        attention.push(format!("{} damaged backup(s) found", damaged.len()));
    }
    if !retention.untrusted.is_empty() {
        attention.push(format!(
            "{} backup(s) not signed by a trusted signer found",
            retention.untrusted.len()
        ));
    }
    Ok(Done {
        doc: json!({
            "dry_run": a.dry_run,
            (if a.dry_run { "would_delete" } else { "deleted" }): deletions_json(&deleted),
            "checked": retention.checked.iter().map(|c| c.id.to_string()).collect::<Vec<_>>(),
            "damaged": damaged.iter().map(|d| json!({
                "message": d.to_string(),
                "alert": alert_json(&d.alert()),
            })).collect::<Vec<_>>(),
            "untrusted": untrusted_json(&retention.untrusted),
            "notes": notes,
            "kept_folders": kept_folders,
        }),
        attention,
    })
}
