//! `ibs check` (no key: every backup's archive against its manifest, its
//! header and footer, its signature) and `ibs verify` (the operator's key:
//! the whole backup decrypted and checked, nothing written).

use ibs_recovery::{BackupInfo, BackupState, Choice};
use serde_json::{Value, json};

use crate::args::{CheckArgs, VerifyArgs};
use crate::common::{Ctx, Done, instance, open, recovery, signer_json};
use crate::progress::Progress;
use crate::report::{Failure, Kind};

/// Hex digits of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `ibs check`: every backup (or `--backup ID`); exit 1 (attention)
/// when any backup that looks complete fails, each named with the reason.
/// Incomplete backups are listed as skipped (never committed, or still
/// being written); a named one that is incomplete is a failure.
pub async fn check(a: &CheckArgs, ctx: &Ctx, progress: &Progress) -> Result<Done, Failure> {
    let r = recovery(&a.at, &a.signers)?;
    let cat = r.catalogue().await?;
    let chosen: Vec<&BackupInfo> = match &a.backup {
        // The named backup; one that is damaged or incomplete is refused, named.
        Some(id) => vec![r.choose(&cat, &Choice::Id(id.clone()))?],
        None => cat.backups.iter().collect(),
    };
    if chosen.is_empty() {
        return Err(Failure::new(
            Kind::Backup,
            format!("no backups at {}", instance(&a.at)?.backup_root()),
        ));
    }
    let mut results = Vec::with_capacity(chosen.len());
    let mut failed = 0usize;
    for info in chosen {
        if info.state == BackupState::Incomplete {
            ctx.say(format!(
                "backup {} skipped: incomplete (never committed, or still being written)",
                info.id
            ));
            results.push(json!({ "id": info.id.to_string(), "result": "skipped", "reason": "incomplete" }));
            continue;
        }
        let checked = r.check_integrity(info).await;
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
pub async fn verify(a: &VerifyArgs, ctx: &Ctx, progress: &Progress) -> Result<Done, Failure> {
    let opened = open(&a.open, &a.backup.clone().map_or(Choice::Latest, Choice::Id), ctx).await?;
    let verified = opened.backup.verify(Some(&progress.verify_fn())).await;
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
