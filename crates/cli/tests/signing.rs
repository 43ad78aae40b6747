//! Backup authenticity end to end (issue #22): a backup forged with only the
//! certificate, or signed by someone else's key, is refused by `verify` and
//! `restore` given `--trust-signer`; rotation of the signing key keeps both
//! generations restorable; a format version 1 backup (unsigned by nature)
//! restores with `--allow-unsigned` only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ibs_testkit::cli::{Binary, KeyFiles, path_str as s, text};

const FQDN: &str = "azs.contoso.com";
const IBS: Binary = Binary::new(env!("CARGO_BIN_EXE_ibs"));

/// A certificate pair in `dir`.
fn keys(dir: &Path) -> KeyFiles {
    IBS.keygen(dir, "op")
}

fn signing_key(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let (out, _) = IBS.ok(&["keygen", "--signing", "--out", s(dir), "--name", name]);
    let fp = out
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .unwrap()
        .to_owned();
    (
        dir.join(format!("{name}.sign.key")),
        dir.join(format!("{name}.sign.pub")),
        fp,
    )
}

fn data(dir: &Path) -> PathBuf {
    let src = dir.join("rbac");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("assignments.json"), br#"[{"role":"Owner"}]"#).unwrap();
    src
}

/// `ibs backup`, returning the new backup's id.
fn backup(share: &Path, keys: &KeyFiles, src: &Path, extra: &[&str]) -> String {
    let source = format!("rbac={}", src.display());
    let mut args = vec![
        "backup",
        "--location",
        s(share),
        "--cert",
        s(&keys.cer),
        "--fqdn",
        FQDN,
        "--source",
        &source,
    ];
    args.extend(extra);
    let (out, _) = IBS.ok(&args);
    out.split_whitespace().nth(1).unwrap().to_owned()
}

/// A backup written through the library with only the certificate (what
/// anyone with the `.cer` and write access to the share can do), signed by
/// `signer` if given. Returns its id.
fn forge(share: &Path, cer: &Path, src: &Path, signer: Option<ibs_envelope::SigningKey>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    forge_at(share, cer, src, signer, now)
}

/// [`forge`], dated `now` (Unix seconds).
fn forge_at(share: &Path, cer: &Path, src: &Path, signer: Option<ibs_envelope::SigningKey>, now: i64) -> String {
    use ibs_controller::{BackupSource, DirectorySource, JobSpec};
    let spec = JobSpec {
        target: Arc::new(ibs_storage::LocalTarget::new(share).unwrap()),
        instance: ibs_repository::InstanceLayout::new(FQDN, "local").unwrap(),
        certificates: vec![ibs_envelope::Certificate::from_file(cer).unwrap()],
        producer_version: env!("CARGO_PKG_VERSION").into(),
        policy: ibs_retention::Policy::default(),
        checks: Default::default(),
        signer: signer.map(Arc::new),
    };
    let sources: Vec<Arc<dyn BackupSource>> = vec![Arc::new(DirectorySource::new("rbac", src))];
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(ibs_controller::job::write_backup(&spec, &sources, now, None))
        .unwrap()
        .id
        .to_string()
}

fn restore_args<'a>(share: &'a Path, keys: &'a KeyFiles, to: &'a Path) -> Vec<&'a str> {
    vec![
        "restore",
        "--location",
        s(share),
        "--fqdn",
        FQDN,
        "--pfx",
        s(&keys.pfx),
        "--password-file",
        s(&keys.password),
        "--to",
        s(to),
    ]
}

#[test]
fn a_backup_forged_with_only_the_certificate_is_refused_when_the_signer_is_trusted() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let keys = keys(&work.path().join("keys"));
    let (sign_key, sign_pub, fp) = signing_key(&work.path().join("keys"), "controller");
    let src = data(work.path());
    let genuine = backup(&share, &keys, &src, &["--sign", s(&sign_key)]);
    // Forged: unsigned, then signed by the forger's own key; each the newest in turn.
    std::fs::write(
        src.join("assignments.json"),
        br#"[{"role":"Owner","principal":"attacker"}]"#,
    )
    .unwrap();
    let unsigned = forge(&share, &keys.cer, &src, None);
    let other = ibs_envelope::SigningKey::generate().unwrap();
    let other_fp = other.verifying_key().fingerprint().to_string();
    let signed_by_other = forge(&share, &keys.cer, &src, Some(other));

    let (list, _) = IBS.ok(&["list", "--location", s(&share), "--fqdn", FQDN]);
    let line = |id: &str| list.lines().find(|l| l.starts_with(id)).unwrap().to_owned();
    assert!(line(&genuine).contains(&fp[..16]), "{list}");
    assert!(line(&unsigned).contains("unsigned"), "{list}");
    assert!(line(&signed_by_other).contains(&other_fp[..16]), "{list}");

    let trust = ["--trust-signer", s(&sign_pub)];
    // Keyless: `check` verifies signatures too, and with --trust-signer refuses the forged ones.
    let out = IBS.run(&[
        "check",
        "--location",
        s(&share),
        "--fqdn",
        FQDN,
        "--all",
        "--trust-signer",
        s(&sign_pub),
    ]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("backup {genuine} checked (no key)"))
            && stdout.contains(&format!("signature by {fp} verifies")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("backup {unsigned} FAILED")), "{stdout}");
    assert!(stdout.contains(&format!("backup {signed_by_other} FAILED")), "{stdout}");
    for (id, why) in [
        (&unsigned, "not signed".to_owned()),
        (
            &signed_by_other,
            format!("signed by {other_fp}, which is not a trusted signer"),
        ),
    ] {
        let to = work.path().join(format!("out-{id}"));
        let mut args = restore_args(&share, &keys, &to);
        args.extend(["--backup", id.as_str()]);
        args.extend(trust);
        let err = IBS.fails(&args);
        assert!(err.contains(why.as_str()), "{id}: {err}");
        assert!(!to.join("rbac").exists(), "a refused backup wrote nothing");
        let err = IBS.fails(&[
            "verify",
            "--location",
            s(&share),
            "--fqdn",
            FQDN,
            "--backup",
            id,
            "--pfx",
            s(&keys.pfx),
            "--password-file",
            s(&keys.password),
            "--trust-signer",
            s(&sign_pub),
        ]);
        assert!(err.contains(why.as_str()), "{id}: {err}");
    }
    // --allow-unsigned is for format version 1 backups (made before
    // signatures existed): an unsigned version 2 backup — what anyone with the
    // certificate can write — stays refused with it, by id and as the newest.
    let to = work.path().join("allow-unsigned");
    let mut args = restore_args(&share, &keys, &to);
    args.extend(["--backup", unsigned.as_str()]);
    args.extend(trust);
    args.push("--allow-unsigned");
    let err = IBS.fails(&args);
    assert!(err.contains("not signed"), "{err}");
    assert!(!to.join("rbac").exists(), "a refused backup wrote nothing");
    let mut args = restore_args(&share, &keys, &to);
    args.extend(trust);
    args.push("--allow-unsigned");
    let (stdout, stderr) = IBS.ok(&args);
    assert!(stdout.contains(&format!("backup {genuine} restored")), "{stdout}");
    assert!(
        stderr.contains(&format!("skipping the newer backup {unsigned}")),
        "{stderr}"
    );
    std::fs::remove_dir_all(&to).unwrap();
    // Without --backup, restore takes the newest backup the trusted signer
    // made, naming every newer one it skipped and why (as for damaged ones);
    // verify checks the newest and refuses it, saying how to choose.
    let to = work.path().join("newest");
    let mut args = restore_args(&share, &keys, &to);
    args.extend(trust);
    let (stdout, stderr) = IBS.ok(&args);
    assert!(stdout.contains(&format!("backup {genuine} restored")), "{stdout}");
    assert!(
        stderr.contains(&format!("skipping the newer backup {signed_by_other}")),
        "{stderr}"
    );
    assert!(stderr.contains(&other_fp), "{stderr}");
    assert!(
        stderr.contains(&format!("skipping the newer backup {unsigned}")),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(to.join("rbac/assignments.json")).unwrap(),
        br#"[{"role":"Owner"}]"#
    );
    let err = IBS.fails(&[
        "verify",
        "--location",
        s(&share),
        "--fqdn",
        FQDN,
        "--pfx",
        s(&keys.pfx),
        "--password-file",
        s(&keys.password),
        "--trust-signer",
        s(&sign_pub),
    ]);
    assert!(err.contains(&other_fp) && err.contains("--backup ID"), "{err}");
    // The genuine one restores by id too, and says who signed it.
    let to = work.path().join("by-id");
    let mut args = restore_args(&share, &keys, &to);
    args.extend(["--backup", genuine.as_str()]);
    args.extend(trust);
    let (_, stderr) = IBS.ok(&args);
    assert!(stderr.contains(&format!("signed by trusted signer {fp}")), "{stderr}");
    assert_eq!(
        std::fs::read(to.join("rbac/assignments.json")).unwrap(),
        br#"[{"role":"Owner"}]"#
    );
    // Without --trust-signer nothing is refused, but the operator is told.
    let to = work.path().join("unchecked");
    let (_, stderr) = IBS.ok(&restore_args(&share, &keys, &to));
    assert!(stderr.contains("who made it was not checked"), "{stderr}");
}

#[test]
fn rotating_the_signing_key_keeps_both_generations_restorable() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let keys = keys(&work.path().join("keys"));
    let (old_key, old_pub, old_fp) = signing_key(&work.path().join("keys"), "old");
    let (new_key, new_pub, _) = signing_key(&work.path().join("keys"), "new");
    let src = data(work.path());
    let first = backup(&share, &keys, &src, &["--sign", s(&old_key)]);
    let second = backup(&share, &keys, &src, &["--sign", s(&new_key)]);
    for id in [&first, &second] {
        let to = work.path().join(format!("out-{id}"));
        let mut args = restore_args(&share, &keys, &to);
        args.extend([
            "--backup",
            id.as_str(),
            "--trust-signer",
            s(&old_pub),
            "--trust-signer",
            s(&new_pub),
        ]);
        IBS.ok(&args);
    }
    // A replayed older backup: refused when the operator says how old is too old.
    let to = work.path().join("replayed");
    let mut args = restore_args(&share, &keys, &to);
    args.extend(["--backup", first.as_str(), "--not-before", second.as_str()]);
    let err = IBS.fails(&args);
    assert!(err.contains("before --not-before"), "{err}");
    let mut args = restore_args(&share, &keys, &to);
    args.extend(["--backup", second.as_str(), "--not-before", &second[..16]]);
    let (_, stderr) = IBS.ok(&args);
    assert!(stderr.contains("was created at 20"), "{stderr}");
    // Once the old key is no longer trusted, its backups are refused, naming it.
    let to = work.path().join("old-only");
    let mut args = restore_args(&share, &keys, &to);
    args.extend(["--backup", first.as_str(), "--trust-signer", s(&new_pub)]);
    let err = IBS.fails(&args);
    assert!(err.contains(&old_fp), "{err}");
}

#[test]
fn a_version_1_backup_restores_with_allow_unsigned_and_is_refused_without_it() {
    use ibs_repository::{BackupId, CommitDetails, InstanceLayout, commit_backup};
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    // A backup made by a version 1 writer: the frozen test vector, with its manifest.
    let archive_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../archive/tests");
    let archive = std::fs::read(archive_dir.join("vectors/v1/ok-basic.ibs")).unwrap();
    let info = ibs_archive::blocking::inspect(&archive).unwrap();
    assert_eq!(info.version(), 1);
    let fields = info.fields();
    let id = BackupId::generate(fields.created).unwrap();
    std::fs::create_dir_all(&share).unwrap();
    let target: std::sync::Arc<dyn ibs_storage::StorageTarget> =
        std::sync::Arc::new(ibs_storage::LocalTarget::new(&share).unwrap());
    let details = CommitDetails {
        archive_id: fields.archive_id,
        producer_version: fields.producer_version.clone(),
        recipients: info.recipient_thumbprints(),
    };
    let instance = InstanceLayout::new(FQDN, "local").unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(commit_backup(&target, &instance, id, archive.into(), details))
        .unwrap();
    let password = work.path().join("password");
    std::fs::write(&password, "ibs-test-vectors").unwrap();
    let keys = KeyFiles {
        cer: archive_dir.join("data/recipient.cer"),
        pfx: archive_dir.join("data/recipient.pfx"),
        password,
    };
    let (_, sign_pub, _) = signing_key(&work.path().join("keys"), "controller");

    let to = work.path().join("refused");
    let mut args = restore_args(&share, &keys, &to);
    args.extend(["--trust-signer", s(&sign_pub)]);
    let err = IBS.fails(&args);
    assert!(err.contains("not signed"), "{err}");
    assert!(!to.join("ca").exists());

    let to = work.path().join("allowed");
    let mut args = restore_args(&share, &keys, &to);
    args.extend(["--trust-signer", s(&sign_pub), "--allow-unsigned"]);
    let (stdout, stderr) = IBS.ok(&args);
    assert!(stderr.contains("is NOT signed (format version 1)"), "{stderr}");
    assert!(stdout.contains("4 files"), "{stdout}");
    assert_eq!(std::fs::read(to.join("ca/root.cer")).unwrap().len(), 1500);
    // --allow-unsigned alone means nothing: a usage error, not a silent no-op.
    let x = work.path().join("x");
    let mut args = restore_args(&share, &keys, &x);
    args.push("--allow-unsigned");
    assert_eq!(IBS.run(&args).status.code(), Some(2));
}

#[test]
fn a_signed_backup_of_another_instance_is_not_restored_as_this_one() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let keys = keys(&work.path().join("keys"));
    let (sign_key, sign_pub, _) = signing_key(&work.path().join("keys"), "controller");
    let src = data(work.path());
    let source = format!("rbac={}", src.display());
    let (out, _) = IBS.ok(&[
        "backup",
        "--location",
        s(&share),
        "--cert",
        s(&keys.cer),
        "--fqdn",
        "staging.contoso.com",
        "--source",
        &source,
        "--sign",
        s(&sign_key),
    ]);
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    // Copied into this instance's folder, its (unauthenticated) manifest edited to match.
    let from = share.join("staging.contoso.com/local/MASBackup").join(&id);
    let to = share.join(FQDN).join("local/MASBackup").join(&id);
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(from.join("backup.ibs"), to.join("backup.ibs")).unwrap();
    let manifest = std::fs::read_to_string(from.join("backup.manifest"))
        .unwrap()
        .replace("fqdn: staging.contoso.com", &format!("fqdn: {FQDN}"));
    std::fs::write(to.join("backup.manifest"), manifest).unwrap();
    let (list, _) = IBS.ok(&["list", "--location", s(&share), "--fqdn", FQDN]);
    assert!(
        list.contains("damaged") && list.contains("staging.contoso.com"),
        "{list}"
    );
    let out_dir = work.path().join("out");
    let mut args = restore_args(&share, &keys, &out_dir);
    args.extend(["--backup", id.as_str(), "--trust-signer", s(&sign_pub)]);
    let err = IBS.fails(&args);
    assert!(err.contains("staging.contoso.com"), "{err}");
    assert!(!out_dir.join("rbac").exists());
}

#[test]
fn a_flag_a_command_does_not_use_is_a_usage_error() {
    // `restore --dry-run` used to restore: a flag is never silently ignored.
    for args in [
        &["restore", "--dry-run", "--to", "/nonexistent"][..],
        &["list", "--not-before", "20261130T000000Z"],
        &["backup", "--trust-signer", "x.sign.pub"],
        &["check", "--to", "/tmp"],
        &["keygen", "--location", "/tmp"],
    ] {
        let out = IBS.run(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("unexpected argument"), "{args:?}: {stderr}");
    }
}

/// A newer backup nobody trusted signed (another key's, or none) does not
/// make `prune --trust-signer` delete the backups the controller signed: it
/// is reported (exit 1) and never kept in their place. Without
/// --trust-signer the newest, whoever made it, is kept — and prune says
/// that who made it was not checked.
#[test]
fn prune_with_trust_signer_keeps_the_controllers_newest_backup() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let keys = keys(&work.path().join("keys"));
    let (sign_key, sign_pub, _) = signing_key(&work.path().join("keys"), "controller");
    let key = || Some(ibs_envelope::SigningKey::from_file(&sign_key).unwrap());
    let src = data(work.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = 86_400;
    let signed: Vec<String> = [10, 9, 5]
        .iter()
        .map(|d| forge_at(&share, &keys.cer, &src, key(), now - d * day))
        .collect();
    let impostor = ibs_envelope::SigningKey::generate().unwrap();
    let impostor_fp = impostor.verifying_key().fingerprint().to_string();
    let other = forge_at(&share, &keys.cer, &src, Some(impostor), now - 3600);
    let unsigned = forge_at(&share, &keys.cer, &src, None, now - 1800);
    let prune = |extra: &[&str]| {
        let mut args = vec![
            "prune",
            "--location",
            s(&share),
            "--fqdn",
            FQDN,
            "--keep-days",
            "2",
            "--dry-run",
            "--json",
        ];
        args.extend(extra);
        let out = IBS.run(&args);
        let (stdout, stderr) = text(&out);
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
        (out.status.code(), doc, stderr)
    };
    let would = |doc: &serde_json::Value| {
        doc["would_delete"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (code, doc, _) = prune(&["--trust-signer", s(&sign_pub)]);
    assert_eq!(code, Some(1), "the untrusted backups need attention: {doc}");
    assert_eq!(would(&doc), signed[..2], "{doc}");
    assert_eq!(doc["checked"], serde_json::json!([signed[2]]), "{doc}");
    let untrusted: Vec<_> = doc["untrusted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap().to_owned(), u["signer"].clone()))
        .collect();
    assert_eq!(
        untrusted,
        [
            (other.clone(), serde_json::json!(impostor_fp)),
            (unsigned.clone(), serde_json::Value::Null)
        ],
        "{doc}"
    );
    // Not for real: the controller's newest is still there after a real prune.
    let (code, _, _) = {
        let mut args = vec!["prune", "--location", s(&share), "--fqdn", FQDN, "--keep-days", "2"];
        args.extend(["--trust-signer", s(&sign_pub)]);
        let out = IBS.run(&args);
        (out.status.code(), (), ())
    };
    assert_eq!(code, Some(1));
    let (list, _) = IBS.ok(&["list", "--location", s(&share), "--fqdn", FQDN]);
    for id in [&signed[2], &other, &unsigned] {
        assert!(list.contains(id.as_str()), "{id} kept: {list}");
    }
    for id in &signed[..2] {
        assert!(!list.contains(id.as_str()), "{id} expired: {list}");
    }
    // Without --trust-signer: the newest (unsigned) stands in for the rest,
    // and prune says who made it was not checked.
    let (code, doc, _) = prune(&[]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(would(&doc), [signed[2].clone()], "{doc}");
    assert!(
        doc["notes"]
            .to_string()
            .contains("who made the backups was not checked"),
        "{doc}"
    );
}

/// Damage is told as damage: one flipped byte in a signed backup's
/// signature fails its check "changed after it was signed (damaged … or
/// forged)" with a hint to `ibs check` (not to a trusted signer nobody
/// named); a flipped byte in a data frame says the key is right.
#[test]
fn a_damaged_signed_backup_is_reported_as_damage_with_the_way_to_tell() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let keys = keys(&work.path().join("keys"));
    let (sign_key, _, _) = signing_key(&work.path().join("keys"), "controller");
    let src = data(work.path());
    std::fs::write(src.join("big.bin"), ibs_testkit::data::multiplicative(3 << 20, 7)).unwrap();
    let id = backup(&share, &keys, &src, &["--sign", s(&sign_key)]);
    let archive = ibs_testkit::cli::backup_folders(&share, FQDN)[0].join("backup.ibs");
    let original = std::fs::read(&archive).unwrap();
    let restore = |name: &str| {
        let to = work.path().join(name);
        let mut args = restore_args(&share, &keys, &to);
        args.extend(["--backup", id.as_str()]);
        IBS.fails(&args)
    };
    // In the signature (just before the 64-byte footer).
    let mut bytes = original.clone();
    let at = bytes.len() - 64 - 10;
    bytes[at] ^= 1;
    std::fs::write(&archive, &bytes).unwrap();
    let err = restore("sig");
    assert!(
        err.contains("changed after it was signed (damaged on the storage location, or forged)"),
        "{err}"
    );
    assert!(err.contains("ibs check --backup ID"), "{err}");
    assert!(!err.contains("your trusted signer"), "{err}");
    // In a data frame (the middle of 3 MiB of incompressible data).
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&archive, &bytes).unwrap();
    let err = restore("frame");
    assert!(
        err.contains("failed authentication") && err.contains("the key is right"),
        "{err}"
    );
    // The folder the failed restore created is not left behind, empty.
    assert!(!work.path().join("frame").exists());
}
