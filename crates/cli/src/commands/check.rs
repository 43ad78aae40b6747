//! `ibs check` (no key: every backup's archive against its manifest, its
//! header and footer, its signature) and `ibs verify` (the operator's key:
//! the whole backup decrypted and checked, nothing written).

use ibs_recovery::{BackupInfo, BackupState, Choice};
use serde_json::{Value, json};

use crate::args::{CheckArgs, VerifyArgs};
use crate::common::{Ctx, Done, instance, open, recovery, signer_json};
use crate::report::{Failure, Kind};

/// Hex digits of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `ibs check`: every backup (or `--backup ID`); exit 1 (attention)
/// when any backup that looks complete fails, each named with the reason.
/// Incomplete backups are listed as skipped (never committed, or still
/// being written); a named one that is incomplete is a failure.
pub async fn check(a: &CheckArgs, ctx: &Ctx) -> Result<Done, Failure> {
    let progress = &ctx.progress;
    let r = recovery(&a.at, &a.signers, ctx)?;
    let cat = r.catalogue().await?;
    let root = instance(&a.at)?.backup_root().to_string();
    let chosen: Vec<&BackupInfo> = match &a.backup {
        // The named backup, whatever the catalogue thinks of it: a damaged
        // one is checked (and fails, with its reason).
        Some(id) => vec![cat.backups.iter().find(|b| b.id.as_str() == id).ok_or_else(|| {
            Failure::new(
                Kind::Backup,
                format!("backup {id} not found at {root} (`ibs list` shows the backups there)"),
            )
        })?],
        None => cat.backups.iter().collect(),
    };
    if chosen.is_empty() {
        ctx.say(format!("no backups at {root}"));
        return Ok(Done {
            doc: json!({ "backups": [], "failed": 0 }),
            attention: vec![format!("no backups at {root}")],
        });
    }
    let mut results = Vec::with_capacity(chosen.len());
    let mut failed = 0usize;
    for info in chosen {
        if info.state == BackupState::Incomplete && a.backup.is_none() {
            ctx.say(format!(
                "backup {} skipped: incomplete (never committed, or still being written)",
                info.id
            ));
            results.push(json!({ "id": info.id.to_string(), "result": "skipped", "reason": "incomplete" }));
            continue;
        }
        let bar = progress.check_fn(info.id.as_str(), info.archive_size().unwrap_or(0));
        let checked = r.check_integrity_with_progress(info, Some(&bar)).await;
        progress.finish();
        match checked {
            Ok(report) => match r.trusts(&report.signer) {
                Ok(()) => {
                    ctx.say(format!("backup {} checked (no key): {report}", info.id));
                    results.push(json!({
                        "id": info.id.to_string(),
                        "result": "ok",
                        "archive_bytes": report.archive_bytes,
                        "sha256": hex(&report.archive_sha256),
                        "signer": signer_json(&report.signer),
                    }));
                }
                Err(e) => {
                    failed += 1;
                    ctx.say(format!("backup {} FAILED: {e}", info.id));
                    results.push(json!({ "id": info.id.to_string(), "result": "failed", "reason": e.to_string() }));
                }
            },
            Err(e) if e.is_damage() => {
                failed += 1;
                ctx.say(format!("backup {} FAILED: {e}", info.id));
                results.push(json!({ "id": info.id.to_string(), "result": "failed", "reason": e.to_string() }));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Done {
        doc: json!({ "backups": results, "failed": failed }),
        attention: if failed > 0 {
            vec![format!("{failed} backup(s) failed the check")]
        } else {
            Vec::new()
        },
    })
}

/// Runs `ibs verify`: the newest backup (which must be complete) or `--backup ID`.
pub async fn verify(a: &VerifyArgs, ctx: &Ctx) -> Result<Done, Failure> {
    let progress = &ctx.progress;
    let opened = open(&a.open, &a.backup.clone().map_or(Choice::Latest, Choice::Id), ctx).await?;
    let bar = progress.verify_fn_with_total(opened.backup.verify_len());
    let verified = opened.backup.verify(Some(&bar)).await;
    progress.finish();
    let report = verified?;
    ctx.say(format!("backup {} verified: {report}", opened.info.id));
    Ok(Done::ok(json!({
        "id": opened.info.id.to_string(),
        "entries": report.entries,
        "frames": report.frames,
        "bytes": report.data_len,
        "archive_bytes": report.check.archive_bytes,
        "sha256": hex(&report.check.archive_sha256),
        "signer": signer_json(&report.check.signer),
        "skipped": skipped_json(&opened.skipped),
    })))
}

/// Newer backups passed over, as JSON.
pub fn skipped_json(skipped: &[(String, String)]) -> Value {
    Value::Array(
        skipped
            .iter()
            .map(|(id, why)| json!({ "id": id, "reason": why }))
            .collect(),
    )
}
