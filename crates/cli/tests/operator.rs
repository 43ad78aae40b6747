//! The `ibs` command as an operator and a monitoring script use it: help and
//! version, `--json` on every verb (parsed, with the fields docs/cli-json.md
//! documents), errors as JSON, `status` and `check` exit codes, several
//! `.pfx` files with their own passwords, completions and man pages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

use ibs_testkit::cli::{Binary, path_str as s, text};
use serde_json::Value;

const IBS: Binary = Binary::new(env!("CARGO_BIN_EXE_ibs"));

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sample-state")
}

/// Runs `ibs` with `--json`: the exit code, stdout parsed (`Null` when
/// empty), stderr.
fn json(args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = IBS.run(&all);
    let (stdout, stderr) = text(&out);
    let doc = if stdout.is_empty() {
        Value::Null
    } else {
        // One document and nothing else on stdout.
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document ({e}): {stdout}"))
    };
    (out.status.code(), doc, stderr)
}

/// `json(args)`, asserting exit 0.
fn json_ok(args: &[&str]) -> Value {
    let (code, doc, stderr) = json(args);
    assert_eq!(code, Some(0), "{args:?}: {stderr}");
    assert!(
        doc["warnings"].is_array() && doc["attention"] == Value::Array(vec![]),
        "{doc}"
    );
    doc
}

/// Asserts `doc` has every field in `fields`.
fn has(doc: &Value, fields: &[&str]) {
    for f in fields {
        assert!(doc.get(f).is_some(), "missing {f:?} in {doc}");
    }
}

struct Setup {
    _work: tempfile::TempDir,
    share: PathBuf,
    keys: PathBuf,
}

fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let keys = work.path().join("keys");
    Setup {
        share,
        keys,
        _work: work,
    }
}

fn backup_args<'a>(share: &'a Path, cer: &'a Path, sources: &'a [String]) -> Vec<&'a str> {
    let mut args = vec!["backup", "--location", s(share), "--cert", s(cer)];
    for src in sources {
        args.extend(["--source", src.as_str()]);
    }
    args
}

fn sources() -> Vec<String> {
    ["identity", "rbac"]
        .iter()
        .map(|n| format!("{n}={}", sample().join(n).display()))
        .collect()
}

#[test]
fn help_version_and_completions_go_to_stdout_and_exit_zero() {
    for args in [
        &["--help"][..],
        &["help"],
        &["help", "backup"],
        &["backup", "--help"],
        &["status", "--help"],
        &["--version"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["completions", "fish"],
    ] {
        let out = IBS.run(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stdout.is_empty() && stderr.is_empty(), "{args:?}: {stderr}");
    }
    let (help, _) = IBS.ok(&["backup", "--help"]);
    assert!(
        help.contains("Examples:") && help.contains("--keep-days") && help.contains("2–14"),
        "{help}"
    );
    let (version, _) = IBS.ok(&["--version"]);
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")) && version.contains("format version"),
        "{version}"
    );
    let (bash, _) = IBS.ok(&["completions", "bash"]);
    assert!(bash.contains("complete") && bash.contains("restore"), "{bash}");
    // Unknown flags, bad values and a missing verb: exit 2 with clap's message.
    for args in [
        &["backup", "--no-such-flag"][..],
        &["prune", "--location", "/tmp", "--keep-days", "20"],
        &["prune", "--location", "/tmp", "--keep-days", "-1"],
        &["keygen", "--out", "/tmp/x", "--bits", "1024"],
        &["no-such-verb"],
        &[],
    ] {
        let out = IBS.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // With --json, a usage error is a JSON document on stderr too.
    let (code, doc, stderr) = json(&["list", "--bogus"]);
    assert_eq!((code, doc), (Some(2), Value::Null));
    let err: Value = serde_json::from_str(&stderr).unwrap();
    assert_eq!(err["error"]["kind"], "usage", "{err}");
}

#[test]
fn every_verb_prints_one_json_document_with_the_documented_fields() {
    let t = setup();
    let doc = json_ok(&["keygen", "--out", s(&t.keys), "--name", "ops"]);
    has(&doc, &["kind", "certificate", "pfx", "password_file", "thumbprint"]);
    assert_eq!(doc["kind"], "certificate");
    let thumbprint = doc["thumbprint"].as_str().unwrap().to_owned();
    assert!(
        thumbprint.len() == 40 && thumbprint.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
        "{thumbprint}"
    );
    let doc = json_ok(&["keygen", "--signing", "--out", s(&t.keys), "--name", "ctl"]);
    has(&doc, &["kind", "signing_key", "public_key", "fingerprint"]);
    let cer = t.keys.join("ops.cer");
    let pfx = t.keys.join("ops.pfx");
    let pw = t.keys.join("ops.password");
    let srcs = sources();
    let mut args = backup_args(&t.share, &cer, &srcs);
    let sign = t.keys.join("ctl.sign.key");
    args.extend(["--sign", s(&sign)]);
    let doc = json_ok(&args);
    has(
        &doc,
        &[
            "id",
            "entries",
            "bytes_in",
            "bytes_out",
            "seconds",
            "attempts",
            "signer",
            "deleted",
            "damaged",
            "unrecognised",
            "kept_folders",
            "retention_failed",
        ],
    );
    let id = doc["id"].as_str().unwrap().to_owned();
    assert!(
        doc["entries"].as_u64().unwrap() >= 3 && doc["bytes_out"].as_u64().unwrap() > 0,
        "{doc}"
    );

    let doc = json_ok(&["list", "--location", s(&t.share)]);
    has(&doc, &["backups", "unrecognised"]);
    let b = &doc["backups"][0];
    has(
        b,
        &[
            "id",
            "state",
            "created",
            "bytes",
            "producer_version",
            "recipients",
            "signer",
        ],
    );
    assert_eq!(
        (b["id"].as_str(), b["state"].as_str()),
        (Some(id.as_str()), Some("complete"))
    );
    assert_eq!(b["recipients"], serde_json::json!([thumbprint]));
    assert!(b.get("reason").is_none(), "{b}");

    let doc = json_ok(&["status", "--location", s(&t.share)]);
    has(
        &doc,
        &[
            "newest_complete",
            "backups",
            "complete",
            "bytes",
            "oldest",
            "incomplete",
            "damaged",
            "unrecognised",
            "free_bytes",
            "interval_hours",
            "overdue",
        ],
    );
    assert_eq!(doc["newest_complete"]["id"], id.as_str());
    assert_eq!(doc["overdue"], false);

    let ctl_pub = t.keys.join("ctl.sign.pub");
    let doc = json_ok(&["check", "--location", s(&t.share), "--trust-signer", s(&ctl_pub)]);
    assert_eq!(doc["failed"], 0);
    has(
        &doc["backups"][0],
        &["id", "result", "archive_bytes", "sha256", "signer"],
    );
    assert_eq!(doc["backups"][0]["result"], "ok");

    let keys = ["--pfx", s(&pfx), "--password-file", s(&pw)];
    let mut args = vec!["verify", "--location", s(&t.share), "--trust-signer", s(&ctl_pub)];
    args.extend(keys);
    let doc = json_ok(&args);
    has(
        &doc,
        &[
            "id",
            "entries",
            "frames",
            "bytes",
            "archive_bytes",
            "sha256",
            "signer",
            "skipped",
        ],
    );
    assert_eq!(
        doc["signer"],
        json_ok(&["list", "--location", s(&t.share)])["backups"][0]["signer"]
    );

    let to = t.share.parent().unwrap().join("restored");
    let mut args = vec!["restore", "--location", s(&t.share), "--to", s(&to)];
    args.extend(keys);
    let doc = json_ok(&args);
    has(
        &doc,
        &[
            "id",
            "to",
            "files",
            "bytes",
            "folders",
            "symlinks",
            "hard_links",
            "sources",
            "not_applied",
            "skipped",
        ],
    );
    // Not signature-checked without --trust-signer: said in `warnings`, not on stderr.
    assert!(doc["warnings"][0].as_str().unwrap().contains("not checked"), "{doc}");
    assert_eq!(doc["sources"], 2);

    let doc = json_ok(&["prune", "--location", s(&t.share), "--dry-run"]);
    has(
        &doc,
        &["dry_run", "would_delete", "checked", "damaged", "notes", "kept_folders"],
    );
    let doc = json_ok(&["prune", "--location", s(&t.share)]);
    has(&doc, &["deleted"]);
}

#[test]
fn a_failure_with_json_is_one_json_document_on_stderr_with_its_alert() {
    let t = setup();
    let keys = IBS.keygen(&t.keys, "ops");
    let missing = t.share.join("no-such-folder");
    let srcs = sources();
    let (code, doc, stderr) = json(&backup_args(&missing, &keys.cer, &srcs));
    assert_eq!((code, doc), (Some(1), Value::Null), "{stderr}");
    let err: Value = serde_json::from_str(&stderr).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let e = &err["error"];
    assert_eq!(
        (e["kind"].as_str(), e["class"].as_str()),
        (Some("storage"), Some("path_not_found")),
        "{err}"
    );
    for field in ["title", "description", "remediation"] {
        assert!(!e["alert"][field].as_str().unwrap().is_empty(), "{err}");
    }
    // A source that cannot be read is a source failure, never a storage alert.
    let bad_source = format!("ca={}", t.share.join("nothing-here").display());
    let (code, _, stderr) = json(&backup_args(&t.share, &keys.cer, std::slice::from_ref(&bad_source)));
    assert_eq!(code, Some(1), "{stderr}");
    let err: Value = serde_json::from_str(&stderr).unwrap();
    assert_eq!(err["error"]["kind"], "source", "{err}");
    assert!(
        !err["error"]["alert"]["title"].as_str().unwrap().contains("storage"),
        "{err}"
    );
}

/// A backup of the sample made `hours` ago, as the controller made it then
/// (the command always uses today's clock).
fn backup_hours_ago(share: &Path, cer: &Path, hours: i64) -> String {
    use ibs_controller::{BackupSource, DirectorySource, JobSpec};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let spec = JobSpec {
        target: std::sync::Arc::new(ibs_storage::LocalTarget::new(share).unwrap()),
        instance: ibs_repository::InstanceLayout::new("azurestack.local", "local").unwrap(),
        certificates: vec![ibs_envelope::Certificate::from_file(cer).unwrap()],
        producer_version: "1.2408.0".into(),
        policy: ibs_retention::Policy::default(),
        checks: Default::default(),
        signer: None,
    };
    let sources: Vec<std::sync::Arc<dyn BackupSource>> = vec![std::sync::Arc::new(DirectorySource::new(
        "identity",
        sample().join("identity"),
    ))];
    let summary = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(ibs_controller::job::write_backup(
            &spec,
            &sources,
            now - hours * 3600,
            None,
        ))
        .unwrap();
    summary.id.to_string()
}

#[test]
fn status_needs_attention_when_the_newest_backup_is_older_than_the_interval() {
    let t = setup();
    let keys = IBS.keygen(&t.keys, "ops");
    let loc = s(&t.share);
    // Nothing yet: attention.
    let (code, doc, _) = json(&["status", "--location", loc]);
    assert_eq!(code, Some(1));
    assert!(doc["newest_complete"].is_null() && doc["overdue"] == true, "{doc}");
    let old = backup_hours_ago(&t.share, &keys.cer, 7);
    // Seven hours old: fine for the default 12 h interval, overdue for 6 h.
    let out = IBS.run(&["status", "--location", loc]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&old) && stdout.contains("7 h"), "{stdout}");
    let out = IBS.run(&["status", "--location", loc, "--interval-hours", "6"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stderr.contains("older than the 6 h interval") && stderr.contains(&old),
        "{stderr}"
    );
    let (code, doc, _) = json(&["status", "--location", loc, "--interval-hours", "6"]);
    assert_eq!(code, Some(1));
    assert_eq!(doc["overdue"], true);
    assert_eq!(doc["newest_complete"]["id"], old.as_str());
    assert!(doc["attention"][0].as_str().unwrap().contains("6 h"), "{doc}");
    // A fresh backup: no attention.
    let srcs = sources();
    IBS.ok(&backup_args(&t.share, &keys.cer, &srcs));
    let (code, doc, _) = json(&["status", "--location", loc, "--interval-hours", "6"]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!((doc["backups"].as_u64(), doc["complete"].as_u64()), (Some(2), Some(2)));
    assert_eq!(doc["oldest"]["id"], old.as_str());
}

fn backup_folders(share: &Path) -> Vec<PathBuf> {
    ibs_testkit::cli::backup_folders(share, "azurestack.local")
}

#[test]
fn check_catches_one_flipped_byte_in_an_archive_body() {
    let t = setup();
    let keys = IBS.keygen(&t.keys, "ops");
    let srcs = sources();
    IBS.ok(&backup_args(&t.share, &keys.cer, &srcs));
    IBS.ok(&backup_args(&t.share, &keys.cer, &srcs));
    let loc = s(&t.share);
    let (stdout, _) = IBS.ok(&["check", "--location", loc]);
    assert_eq!(stdout.matches("checked (no key)").count(), 2, "{stdout}");
    let folders = backup_folders(&t.share);
    let damaged = folders[0].file_name().unwrap().to_str().unwrap().to_owned();
    let archive = folders[0].join("backup.ibs");
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&archive, bytes).unwrap();
    let out = IBS.run(&["check", "--location", loc]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("backup {damaged} FAILED")), "{stdout}");
    assert!(stderr.contains("1 backup(s) failed the check"), "{stderr}");
    let (code, doc, _) = json(&["check", "--location", loc]);
    assert_eq!(code, Some(1));
    assert_eq!(doc["failed"], 1);
    let failed: Vec<&Value> = doc["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["result"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{doc}");
    assert_eq!(failed[0]["id"], damaged.as_str());
    assert!(failed[0]["reason"].as_str().unwrap().contains("SHA-256"), "{doc}");
    // The intact one alone passes.
    let good = folders[1].file_name().unwrap().to_str().unwrap();
    IBS.ok(&["check", "--location", loc, "--backup", good]);
}

fn restore(share: &Path, to: &Path, keys: &[&str]) -> Output {
    let mut args = vec!["restore", "--location", s(share), "--to", s(to)];
    args.extend(keys);
    IBS.run(&args)
}

/// `--pfx P --password-file W` for each pair, in order.
fn keys<'a>(pairs: &[(&'a Path, &'a Path)]) -> Vec<&'a str> {
    pairs
        .iter()
        .flat_map(|(pfx, pw)| ["--pfx", s(pfx), "--password-file", s(pw)])
        .collect()
}

#[test]
fn two_pfx_files_with_their_own_passwords_restore_a_backup_encrypted_to_the_second() {
    let t = setup();
    let a = IBS.keygen(&t.keys, "a");
    let b = IBS.keygen(&t.keys, "b");
    assert_ne!(std::fs::read(&a.password).unwrap(), std::fs::read(&b.password).unwrap());
    let srcs = sources();
    IBS.ok(&backup_args(&t.share, &b.cer, &srcs));
    let work = t.share.parent().unwrap();
    // Paired by order: a.pfx with a's password, b.pfx with b's.
    let to = work.join("one");
    let out = restore(&t.share, &to, &keys(&[(&a.pfx, &a.password), (&b.pfx, &b.password)]));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("restored"), "{stdout}");
    assert!(to.join("identity").is_dir());
    // A .pfx that cannot be opened (b's password for a) is named, and the
    // restore goes on with the one that opens the backup.
    let to = work.join("two");
    let out = restore(&t.share, &to, &keys(&[(&a.pfx, &b.password), (&b.pfx, &b.password)]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: cannot use key") && stderr.contains("a.pfx"),
        "{stderr}"
    );
    // One password for every --pfx from IBS_PFX_PASSWORD.
    let to = work.join("three");
    let password = std::fs::read_to_string(&b.password).unwrap();
    let out = IBS
        .command()
        .args(["restore", "--location", s(&t.share), "--to", s(&to), "--pfx", s(&b.pfx)])
        .env("IBS_PFX_PASSWORD", password.trim_end())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    // Only a's key, which the backup is not encrypted to: a key failure, naming
    // the keys that could not be opened.
    let to = work.join("four");
    let out = restore(&t.share, &to, &keys(&[(&a.pfx, &a.password), (&b.pfx, &a.password)]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("b.pfx"), "{stderr}");
    // Three --pfx and two --password-file: which goes with which is unclear.
    let to = work.join("five");
    let out = restore(
        &t.share,
        &to,
        &[
            "--pfx",
            s(&a.pfx),
            "--pfx",
            s(&b.pfx),
            "--pfx",
            s(&a.pfx),
            "--password-file",
            s(&a.password),
            "--password-file",
            s(&b.password),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_are_written_from_the_same_definitions() {
    let dir = tempfile::tempdir().unwrap();
    IBS.ok(&["man", "--out", s(dir.path())]);
    for page in ["ibs.1", "ibs-backup.1", "ibs-restore.1", "ibs-status.1", "ibs-check.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
    let backup = std::fs::read_to_string(dir.path().join("ibs-backup.1")).unwrap();
    assert!(backup.contains("keep\\-days"), "{backup}");
    // The synopsis says what to type (`ibs backup`, not the page's name
    // `ibs-backup`), and the flags every verb takes are on every page.
    assert!(backup.contains("ibs backup"), "{backup}");
    assert!(
        backup.contains("\\-\\-json") && backup.contains("\\-\\-quiet"),
        "{backup}"
    );
    assert!(!dir.path().join("ibs-help.1").exists());
}

#[test]
fn completions_and_man_with_json_print_no_document_after_the_script() {
    let out = IBS.run(&["completions", "bash", "--json"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.trim_end().ends_with("fi") && !stdout.contains("null"),
        "{stdout}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (stdout, _) = IBS.ok(&["man", "--out", s(dir.path()), "--json"]);
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn a_backup_chosen_by_id_passes_over_no_newer_backup() {
    let t = setup();
    let keys = IBS.keygen(&t.keys, "ops");
    let srcs = sources();
    IBS.ok(&backup_args(&t.share, &keys.cer, &srcs));
    IBS.ok(&backup_args(&t.share, &keys.cer, &srcs));
    let folders = backup_folders(&t.share);
    let older = folders[0].file_name().unwrap().to_str().unwrap().to_owned();
    // The newer one as a killed backup leaves it: no manifest.
    std::fs::remove_file(folders[1].join("backup.manifest")).unwrap();
    let loc = s(&t.share);
    let key = ["--pfx", s(&keys.pfx), "--password-file", s(&keys.password)];
    let mut args = vec!["verify", "--location", loc, "--backup", older.as_str()];
    args.extend(key);
    let doc = json_ok(&args);
    assert_eq!(doc["skipped"], Value::Array(vec![]), "{doc}");
    assert!(!doc["warnings"].to_string().contains("skipping"), "{doc}");
    let (_, stderr) = IBS.ok(&args);
    assert!(!stderr.contains("skipping"), "{stderr}");
    // Restoring the newest restorable one does pass over the incomplete one.
    let to = t.share.parent().unwrap().join("to");
    let mut args = vec!["restore", "--location", loc, "--to", s(&to)];
    args.extend(key);
    let doc = json_ok(&args);
    assert_eq!(doc["id"], older.as_str());
    assert_eq!(doc["skipped"].as_array().unwrap().len(), 1, "{doc}");
}

#[test]
fn an_smb_location_without_credentials_is_one_usage_error_for_every_verb() {
    let t = setup();
    let keys = IBS.keygen(&t.keys, "ops");
    let loc = "smb://127.0.0.1/share/folder";
    let srcs = sources();
    let mut backup = vec!["backup", "--location", loc, "--cert", s(&keys.cer)];
    for src in &srcs {
        backup.extend(["--source", src.as_str()]);
    }
    let restore = [
        "restore",
        "--location",
        loc,
        "--pfx",
        s(&keys.pfx),
        "--password-file",
        s(&keys.password),
        "--to",
        "/nonexistent",
    ];
    for args in [
        &backup[..],
        &["list", "--location", loc],
        &["status", "--location", loc],
        &["check", "--location", loc],
        &["prune", "--location", loc],
        &restore,
    ] {
        let out = IBS
            .command()
            .args(args)
            .env_remove("IBS_SMB_USERNAME")
            .env_remove("IBS_SMB_PASSWORD")
            .env_remove("IBS_SMB_DOMAIN")
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("needs a user name and a password (the domain is optional)")
                && stderr.contains("--credentials-file")
                && stderr.contains("IBS_SMB_USERNAME"),
            "{args:?}: {stderr}"
        );
    }
}

/// `openssl <args>`, asserting it succeeded.
fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out).1);
}

#[test]
fn messages_an_operator_can_act_on() {
    let t = setup();
    let keys = IBS.keygen(&t.keys, "ops");
    let srcs = sources();
    // A .pfx given as --cert: says it is a PKCS#12 file and asks for the .cer.
    let out = IBS.run(&backup_args(&t.share, &keys.pfx, &srcs));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("PKCS#12") && stderr.contains(".cer"), "{stderr}");
    assert!(!stderr.contains("UnexpectedTag"), "{stderr}");
    // A certificate whose key usage excludes encipherment: used, with a warning.
    let signing_only = t.keys.join("signing-only.pem");
    let key = t.keys.join("signing-only.key");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        s(&key),
        "-out",
        s(&signing_only),
        "-subj",
        "/CN=ibs-test",
        "-days",
        "30",
        "-addext",
        "keyUsage=critical,digitalSignature",
    ]);
    let out = IBS.run(&backup_args(&t.share, &signing_only, &srcs));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("complete"), "{stdout}");
    assert!(
        stderr.contains("warning: --cert") && stderr.contains("signing-only.pem"),
        "{stderr}"
    );
    // --to naming a file: the destination must be a folder.
    IBS.ok(&backup_args(&t.share, &keys.cer, &srcs));
    let file = t.keys.join("ops.cer");
    let out = restore(
        &t.share,
        &file,
        &["--pfx", s(&keys.pfx), "--password-file", s(&keys.password)],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("must be a folder") && stderr.contains("ops.cer"),
        "{stderr}"
    );
    assert!(!stderr.contains("File exists"), "{stderr}");
    // A location the user running ibs may not write: a permission failure
    // naming the folder, never "check the user name, password and domain".
    let locked = t.share.parent().unwrap().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let immutable = std::process::Command::new("chattr").arg("+i").arg(&locked).status();
    if !immutable.is_ok_and(|s| s.success()) {
        ibs_storage::conformance::skip_or_fail("chattr +i is not available (needs root and a file system that has it)");
        return;
    }
    let (code, _, stderr) = json(&backup_args(&locked, &keys.cer, &srcs));
    let _ = std::process::Command::new("chattr").arg("-i").arg(&locked).status();
    assert_eq!(code, Some(1), "{stderr}");
    let err: Value = serde_json::from_str(&stderr).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(err["error"]["class"], "permission_denied", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("locked"), "{err}");
    let alert = err["error"]["alert"].to_string().to_lowercase();
    assert!(!alert.contains("password") && !alert.contains("domain"), "{alert}");
}

#[test]
fn check_reports_in_its_document_and_a_closed_pipe_is_no_crash() {
    let t = setup();
    let keys = IBS.keygen(&t.keys, "ops");
    let loc = s(&t.share);
    // No backups: a document saying so, exit 1.
    let (code, doc, stderr) = json(&["check", "--location", loc]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(doc["backups"], serde_json::json!([]));
    assert!(doc["attention"][0].as_str().unwrap().contains("no backups"), "{doc}");
    let srcs = sources();
    for _ in 0..3 {
        IBS.ok(&backup_args(&t.share, &keys.cer, &srcs));
    }
    // A malformed id is a usage error.
    assert_eq!(
        IBS.run(&["check", "--location", loc, "--backup", "nosuch"])
            .status
            .code(),
        Some(2)
    );
    // A damaged backup named with --backup is checked and fails in the document.
    let folder = backup_folders(&t.share)[0].clone();
    let id = folder.file_name().unwrap().to_str().unwrap().to_owned();
    std::fs::write(folder.join("backup.manifest"), b"truncated").unwrap();
    let (code, doc, _) = json(&["check", "--location", loc, "--backup", &id]);
    assert_eq!(code, Some(1));
    assert_eq!(
        (doc["backups"][0]["id"].as_str(), doc["backups"][0]["result"].as_str()),
        (Some(id.as_str()), Some("failed")),
        "{doc}"
    );
    // A reader that stops early (`| head -1`) ends the output, not in a panic.
    let script = format!(
        "{} check --location {loc} | head -1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
        env!("CARGO_BIN_EXE_ibs")
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(stdout.trim(), "101", "{stderr}");
}

#[test]
fn verbose_logs_what_the_libraries_do_on_stderr_and_nothing_by_default() {
    let t = setup();
    let loc = s(&t.share);
    let quiet = IBS
        .command()
        .args(["list", "--location", loc])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(text(&quiet).1.is_empty(), "{}", text(&quiet).1);
    for (args, env) in [
        (&["list", "--location", loc, "-vv"][..], None),
        (&["list", "--location", loc], Some("ibs=debug")),
    ] {
        let mut cmd = IBS.command();
        cmd.args(args).env_remove("RUST_LOG");
        if let Some(filter) = env {
            cmd.env("RUST_LOG", filter);
        }
        let out = cmd.output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        // A span per storage call, on stderr only.
        assert!(
            stderr.contains("storage") && stderr.contains("list"),
            "{args:?}: {stderr}"
        );
        assert!(!stdout.contains("DEBUG"), "{stdout}");
    }
}

/// A backup dated days ahead (a wrong clock where it was made, or a forged
/// manifest) would keep monitoring green for as long as its date is ahead:
/// `status` reports it and measures the age from the newest backup that is
/// not in the future.
#[test]
fn status_does_not_count_a_backup_dated_in_the_future_as_the_newest() {
    let t = setup();
    let ops = IBS.keygen(&t.keys, "ops");
    let loc = s(&t.share);
    let old = backup_hours_ago(&t.share, &ops.cer, 20);
    let ahead = backup_hours_ago(&t.share, &ops.cer, -48);
    let (code, doc, _) = json(&["status", "--location", loc]);
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(doc["newest_complete"]["id"], old.as_str(), "{doc}");
    assert_eq!(doc["overdue"], true, "20 h is older than the 12 h interval: {doc}");
    assert_eq!(doc["future"][0]["id"], ahead.as_str(), "{doc}");
    let attention = doc["attention"].to_string();
    assert!(
        attention.contains(&ahead) && attention.contains("in the future"),
        "{doc}"
    );
    // A restore of the newest takes it (it is complete and opens), and warns.
    let to = t.keys.join("restored");
    let out = restore(&t.share, &to, &keys(&[(&ops.pfx, &ops.password)]));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("backup {ahead} is dated")) && stderr.contains("in the future"),
        "{stderr}"
    );
}
