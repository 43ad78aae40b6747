//! `ibs prune`: retention now, as a backup applies it after itself.

use ibs_retention::Deletion;
use serde_json::{Value, json};

use crate::args::PruneArgs;
use crate::common::{Ctx, Done, access, instance, location, now};
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

/// Runs `ibs prune`: exit 1 when a damaged backup was found (named above).
pub async fn run(a: &PruneArgs, ctx: &Ctx) -> Result<Done, Failure> {
    let target =
        ibs_controller::open_target_observed(&location(&a.at)?, &access(&a.at)?, ctx.progress.call_observer())?;
    let inst = instance(&a.at)?;
    let policy = super::backup::policy(a.keep_days)?;
    let retention = ibs_controller::job::plan_retention(
        &target,
        &inst,
        &policy,
        now(),
        None,
        &ibs_controller::CheckMemo::default(),
    )
    .await?;
    for c in &retention.checked {
        ctx.say(format!("checked {} (no key): {c}", c.id));
    }
    for d in &retention.damaged {
        let alert = d.alert();
        ctx.say(format!(
            "{d}\nalert: {}: {}\nremediation: {}",
            alert.title, alert.description, alert.remediation
        ));
    }
    let plan = &retention.plan;
    let mut notes = Vec::new();
    for w in &plan.warnings {
        let line = match w {
            ibs_retention::Warning::Unrecognised { path } => format!("left alone (not written by ibs): {path}"),
            ibs_retention::Warning::FromTheFuture { id, created } => {
                format!("kept {id}: its creation time {created} is in the future (clock skew?)")
            }
            ibs_retention::Warning::NotOurs { path } => format!("ignored (not this instance's): {path}"),
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
    let damaged = retention.damaged.len();
    Ok(Done {
        doc: json!({
            "dry_run": a.dry_run,
            (if a.dry_run { "would_delete" } else { "deleted" }): deletions_json(&deleted),
            "checked": retention.checked.iter().map(|c| c.id.to_string()).collect::<Vec<_>>(),
            "damaged": retention.damaged.iter().map(|d| json!({
                "message": d.to_string(),
                "alert": alert_json(&d.alert()),
            })).collect::<Vec<_>>(),
            "notes": notes,
            "kept_folders": kept_folders,
        }),
        attention: if damaged > 0 {
            vec![format!("{damaged} damaged backup(s) found (see above)")]
        } else {
            Vec::new()
        },
    })
}
