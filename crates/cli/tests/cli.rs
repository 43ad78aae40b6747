//! The `ibs` command end to end: against a local directory and a real Samba
//! server, key rotation, a backup process killed mid-write, and each failure
//! class from a real fault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ibs_testkit::cli::{Binary, path_str as s};
use ibs_testkit::data::Xorshift64;
use ibs_testkit::samba::{SambaOptions, SambaServer};

const FQDN: &str = "azs.contoso.com";
const IBS: Binary = Binary::new(env!("CARGO_BIN_EXE_ibs"));

/// `ibs <args>`, asserting that it succeeded; its stdout.
fn ok(args: &[&str]) -> String {
    IBS.ok(args).0
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sample-state")
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let k = IBS.keygen(dir, name);
    (k.cer, k.pfx, k.password)
}

fn source_args() -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(sample()).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.push("--source".into());
            v.push(format!("{}={}", p.file_name().unwrap().to_str().unwrap(), p.display()));
        }
    }
    v
}

fn backup(location: &str, cert: &Path, extra: &[&str]) -> String {
    let sources = source_args();
    let mut args = vec!["backup", "--location", location, "--cert", s(cert), "--fqdn", FQDN];
    args.extend(sources.iter().map(String::as_str));
    args.extend(extra);
    ok(&args)
}

fn same_tree(a: &Path, b: &Path) {
    let status = Command::new("diff").arg("-r").arg(a).arg(b).status().unwrap();
    assert!(status.success(), "{} and {} differ", a.display(), b.display());
}

#[test]
fn local_round_trip_with_key_rotation() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer1, pfx1, pw1) = keygen(&work.path().join("keys"), "old");
    backup(s(&share), &cer1, &[]);
    // Rotation: a new key pair with the same password file, then a new backup.
    let keys2 = work.path().join("keys2");
    std::fs::create_dir(&keys2).unwrap();
    std::fs::copy(&pw1, keys2.join("pw")).unwrap();
    ok(&[
        "keygen",
        "--out",
        s(&keys2),
        "--name",
        "new",
        "--password-file",
        s(&keys2.join("pw")),
    ]);
    let (cer2, pfx2) = (keys2.join("new.cer"), keys2.join("new.pfx"));
    backup(s(&share), &cer2, &[]);

    let list = ok(&["list", "--location", s(&share), "--fqdn", FQDN]);
    let ids: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(list.lines().skip(1).all(|l| l.contains("complete")), "{list}");

    // Both .pfx: each backup opens with its own key.
    for id in &ids {
        let out = work.path().join(format!("restored-{id}"));
        ok(&[
            "restore",
            "--location",
            s(&share),
            "--fqdn",
            FQDN,
            "--backup",
            id,
            "--pfx",
            s(&pfx1),
            "--pfx",
            s(&pfx2),
            "--password-file",
            s(&pw1),
            "--to",
            s(&out),
        ]);
        for e in std::fs::read_dir(sample()).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                same_tree(&p, &out.join(p.file_name().unwrap()));
            }
        }
    }
    // Only the new .pfx: the old backup names the thumbprint it needs. (Both
    // backups may carry the same second: find the old one by its recipient.)
    let out = Command::new("openssl")
        .args([
            "x509",
            "-inform",
            "DER",
            "-noout",
            "-fingerprint",
            "-sha1",
            "-in",
            s(&cer1),
        ])
        .output()
        .unwrap();
    let thumb1 = String::from_utf8_lossy(&out.stdout)
        .split('=')
        .nth(1)
        .unwrap()
        .trim()
        .replace(':', "");
    let old_id = list
        .lines()
        .find(|l| l.ends_with(&thumb1))
        .unwrap_or_else(|| panic!("{thumb1} not in\n{list}"))
        .split_whitespace()
        .next()
        .unwrap();
    let err = IBS.fails(&[
        "verify",
        "--location",
        s(&share),
        "--fqdn",
        FQDN,
        "--backup",
        old_id,
        "--pfx",
        s(&pfx2),
        "--password-file",
        s(&pw1),
    ]);
    assert!(err.contains(&thumb1), "{err}");
    // Selected source only; and a second restore into the same place refuses to overwrite.
    let out = work.path().join("rbac-only");
    let rbac_only = [
        "restore",
        "--location",
        s(&share),
        "--fqdn",
        FQDN,
        "--pfx",
        s(&pfx1),
        "--pfx",
        s(&pfx2),
        "--password-file",
        s(&pw1),
        "--to",
        s(&out),
        "--source",
        "rbac",
    ];
    ok(&rbac_only);
    assert!(out.join("rbac").is_dir() && !out.join("identity").exists());
    let err = IBS.fails(&rbac_only);
    assert!(err.contains("already exists"), "{err}");
    // Usage errors exit 2.
    assert_eq!(IBS.run(&["backup"]).status.code(), Some(2));
    assert_eq!(IBS.run(&["frobnicate"]).status.code(), Some(2));
}

fn usage_error(args: &[&str]) -> String {
    let out = IBS.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "ibs {args:?}: {stderr}");
    stderr
}

#[test]
fn keygen_checks_every_argument_before_writing_anything() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    // A bad key size: no stray .password (nor folder).
    let err = usage_error(&["keygen", "--out", s(&keys), "--bits", "1000"]);
    assert!(err.contains("--bits"), "{err}");
    assert!(!keys.exists(), "{:?}", walk(&keys));
    // Names that would leave --out, or are not plain names.
    for name in ["../x", "a/b", "a\\b", "..", ".", "", "..x", "x\ty", "/abs"] {
        let err = usage_error(&["keygen", "--out", s(&keys), "--name", name]);
        assert!(err.contains("--name"), "{name:?}: {err}");
    }
    assert_eq!(walk(work.path()), Vec::<PathBuf>::new(), "something was written");
    assert!(!keys.exists());

    // An empty password file: refused unless asked for.
    std::fs::create_dir(&keys).unwrap();
    let empty = work.path().join("empty-pw");
    std::fs::write(&empty, "\n").unwrap();
    let args = ["keygen", "--out", s(&keys), "--name", "k", "--password-file", s(&empty)];
    let err = usage_error(&args);
    assert!(err.contains("empty") && err.contains("--allow-empty-password"), "{err}");
    assert_eq!(walk(&keys), Vec::<PathBuf>::new());
    let err = usage_error(&["keygen", "--out", s(&keys), "--allow-empty-password"]);
    assert!(err.contains("--password-file"), "{err}");
    let mut allowed = args.to_vec();
    allowed.push("--allow-empty-password");
    ok(&allowed);
    assert!(keys.join("k.cer").is_file() && keys.join("k.pfx").is_file());
    assert!(!keys.join("k.password").exists());
    // Help goes to stdout and exits 0 (#20).
    let help = IBS.run(&["keygen", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--allow-empty-password"));
}

#[test]
fn keygen_never_overwrites_and_writes_nothing_when_an_output_exists() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let pw = work.path().join("pw");
    std::fs::write(&pw, "Passw0rd-for-test\n").unwrap();
    for existing in ["k.cer", "k.pfx", "k.password"] {
        std::fs::write(keys.join(existing), b"precious").unwrap();
        let err = usage_error(&["keygen", "--out", s(&keys), "--name", "k"]);
        assert!(err.contains(existing) && err.contains("already exist"), "{err}");
        assert_eq!(
            walk(&keys),
            vec![keys.join(existing)],
            "keygen wrote beside an existing {existing}"
        );
        assert_eq!(std::fs::read(keys.join(existing)).unwrap(), b"precious");
        std::fs::remove_file(keys.join(existing)).unwrap();
    }
    // With --password-file no .password is written, so one lying there is no obstacle.
    std::fs::write(keys.join("k.password"), b"precious").unwrap();
    ok(&["keygen", "--out", s(&keys), "--name", "k", "--password-file", s(&pw)]);
    assert_eq!(std::fs::read(keys.join("k.password")).unwrap(), b"precious");
    // A dangling symbolic link is in the way too.
    std::os::unix::fs::symlink(work.path().join("nowhere"), keys.join("j.cer")).unwrap();
    let err = usage_error(&["keygen", "--out", s(&keys), "--name", "j"]);
    assert!(err.contains("j.cer"), "{err}");
    assert!(!keys.join("j.password").exists() && !work.path().join("nowhere").exists());
}

#[test]
fn keygen_signing_writes_a_key_pair_openssl_reads_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    let stdout = ok(&["keygen", "--signing", "--out", s(&keys), "--name", "ctl"]);
    let key = keys.join("ctl.sign.key");
    let public = keys.join("ctl.sign.pub");
    assert_eq!(walk(&keys).len(), 2, "{:?}", walk(&keys));
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // The fingerprint printed is the public key's; the two files are one key pair.
    let verifying = ibs_envelope::VerifyingKey::from_file(&public).unwrap();
    let fingerprint = verifying.fingerprint().to_string();
    assert!(stdout.contains(&format!("fingerprint: {fingerprint}")), "{stdout}");
    let signing = ibs_envelope::SigningKey::from_file(&key).unwrap();
    assert_eq!(signing.verifying_key(), verifying);
    // OpenSSL derives exactly the .sign.pub from the .sign.key.
    let out = Command::new("openssl")
        .args(["pkey", "-in", s(&key), "-pubout"])
        .output()
        .expect("the openssl binary must be installed (the .ci/run script installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, std::fs::read(&public).unwrap());

    // Never an overwrite, and nothing written beside an existing file.
    let before = (std::fs::read(&key).unwrap(), std::fs::read(&public).unwrap());
    let err = usage_error(&["keygen", "--signing", "--out", s(&keys), "--name", "ctl"]);
    assert!(err.contains("ctl.sign.key") && err.contains("already exist"), "{err}");
    assert_eq!((std::fs::read(&key).unwrap(), std::fs::read(&public).unwrap()), before);
    for existing in ["n.sign.key", "n.sign.pub"] {
        std::fs::write(keys.join(existing), b"precious").unwrap();
        let err = usage_error(&["keygen", "--signing", "--out", s(&keys), "--name", "n"]);
        assert!(err.contains(existing), "{err}");
        assert_eq!(std::fs::read(keys.join(existing)).unwrap(), b"precious");
        assert_eq!(walk(&keys).len(), 3, "keygen wrote beside an existing {existing}");
        std::fs::remove_file(keys.join(existing)).unwrap();
    }
    // The default name.
    ok(&["keygen", "--signing", "--out", s(&keys)]);
    assert!(keys.join("backup-signing.sign.key").is_file() && keys.join("backup-signing.sign.pub").is_file());
}

#[test]
fn keygen_signing_refuses_certificate_options_and_bad_names_before_writing() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    let pw = work.path().join("pw");
    std::fs::write(&pw, "Passw0rd-for-test\n").unwrap();
    for (extra, flag) in [
        (&["--bits", "4096"][..], "--bits"),
        (&["--password-file", s(&pw)], "--password-file"),
        (
            &["--password-file", s(&pw), "--allow-empty-password"],
            "--password-file",
        ),
        (&["--legacy-pfx"], "--legacy-pfx"),
    ] {
        let mut args = vec!["keygen", "--signing", "--out", s(&keys)];
        args.extend_from_slice(extra);
        let err = usage_error(&args);
        assert!(err.contains(flag) && err.contains("--signing"), "{extra:?}: {err}");
    }
    for name in ["../x", "a/b", "..", "", "x\ty"] {
        let err = usage_error(&["keygen", "--signing", "--out", s(&keys), "--name", name]);
        assert!(err.contains("--name"), "{name:?}: {err}");
    }
    let err = usage_error(&["keygen", "--signing"]);
    assert!(err.contains("--out"), "{err}");
    assert!(!keys.exists(), "{:?}", walk(&keys));
    assert!(String::from_utf8_lossy(&IBS.run(&["help", "keygen"]).stdout).contains("--signing"));
}

#[test]
fn a_backup_process_killed_mid_write_leaves_no_complete_backup_and_no_damage() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    backup(s(&share), &cer, &[]);
    // A large, incompressible source so the backup takes a while.
    let big = work.path().join("big");
    std::fs::create_dir(&big).unwrap();
    noise_file(&big.join("blob.bin"), 400 << 20, 0x9E37_79B9_7F4A_7C15);
    let mut child = IBS
        .command()
        .args([
            "backup",
            "--location",
            s(&share),
            "--cert",
            s(&cer),
            "--fqdn",
            FQDN,
            "--source",
        ])
        .arg(format!("key-vault={}", big.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the upload's temporary file has some bytes, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(60);
    let root = share.join(FQDN).join("local/MASBackup");
    let mut killed_mid_write = false;
    while Instant::now() < deadline {
        let partial_bytes: u64 = walk(&root)
            .iter()
            .filter(|p| p.to_string_lossy().contains(".ibs-partial-"))
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        if partial_bytes > 1 << 20 {
            child.kill().unwrap();
            killed_mid_write = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait().unwrap();
    assert!(killed_mid_write, "the backup finished before it could be killed");
    let list = ok(&["list", "--location", s(&share), "--fqdn", FQDN]);
    let complete = list.lines().filter(|l| l.contains(" complete ")).count();
    assert_eq!(complete, 1, "only the earlier backup is complete:\n{list}");
    assert!(list.contains("incomplete"), "{list}");
    // verify takes the newest backup, the killed one, and says so.
    let verify = [
        "verify",
        "--location",
        s(&share),
        "--fqdn",
        FQDN,
        "--pfx",
        s(&pfx),
        "--password-file",
        s(&pw),
    ];
    let killed_id = list
        .lines()
        .find(|l| l.contains("incomplete"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let err = IBS.fails(&verify);
    assert!(err.contains(killed_id) && err.contains("incomplete"), "{err}");
    // The earlier backup is intact.
    let good_id = list
        .lines()
        .find(|l| l.contains(" complete "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let out = ok(&[&verify[..], &["--backup", good_id]].concat());
    assert!(out.contains("verified") && out.contains("SHA-256"), "{out}");
}

/// Writes `len` incompressible pseudo-random bytes (xorshift from the state `seed`).
fn noise_file(path: &Path, len: u32, seed: u64) {
    std::fs::write(path, Xorshift64::with_state(seed).bytes(len as usize)).unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn credentials_file(server: &SambaServer, dir: &Path, password: &str) -> PathBuf {
    let f = dir.join(format!("creds-{password}"));
    std::fs::write(
        &f,
        format!("username = {}\npassword = {password}\n", server.credentials().account()),
    )
    .unwrap();
    f
}

#[test]
fn smb_round_trip_and_every_failure_class_from_a_real_fault() {
    let work = tempfile::tempdir().unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    let mut server = SambaServer::start(SambaOptions {
        tmpfs_bytes: Some(64 << 20),
        ..SambaOptions::default()
    })
    .unwrap();
    std::fs::create_dir(server.share_dir().join("backups")).unwrap();
    let loc = format!("smb://127.0.0.1:{}/backup/backups", server.port());
    let good = credentials_file(&server, work.path(), "ibs-test-Passw0rd");
    backup(&loc, &cer, &["--credentials-file", s(&good)]);
    let restored = work.path().join("restored");
    ok(&[
        "restore",
        "--location",
        &loc,
        "--fqdn",
        FQDN,
        "--credentials-file",
        s(&good),
        "--pfx",
        s(&pfx),
        "--password-file",
        s(&pw),
        "--to",
        s(&restored),
    ]);
    same_tree(&sample().join("rbac"), &restored.join("rbac"));

    // Authentication: a wrong password.
    let bad = credentials_file(&server, work.path(), "wrong");
    let err = fails_backup(&loc, &cer, &bad);
    assert!(err.contains("authentication"), "{err}");
    assert!(!err.contains("wrong"), "the password leaked: {err}");
    // Path: a folder that does not exist.
    let missing = format!("smb://127.0.0.1:{}/backup/no/such/folder", server.port());
    let err = fails_backup(&missing, &cer, &good);
    assert!(err.contains("path"), "{err}");
    // Out of capacity: a source larger than the 64 MiB share.
    let big = work.path().join("big");
    std::fs::create_dir(&big).unwrap();
    noise_file(&big.join("blob.bin"), 80 << 20, 7);
    let out = IBS.run(&[
        "backup",
        "--location",
        &loc,
        "--cert",
        s(&cer),
        "--fqdn",
        FQDN,
        "--credentials-file",
        s(&good),
        "--source",
        &format!("key-vault={}", big.display()),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.to_lowercase().contains("capacity"), "{err}");
    // The earlier backup survived (retention may not delete the newest complete one).
    ok(&[
        "verify",
        "--location",
        &loc,
        "--fqdn",
        FQDN,
        "--credentials-file",
        s(&good),
        "--pfx",
        s(&pfx),
        "--password-file",
        s(&pw),
    ]);
    // Connectivity: the server is stopped.
    server.stop().unwrap();
    let err = fails_backup(&loc, &cer, &good);
    assert!(err.to_lowercase().contains("connect"), "{err}");
}

#[test]
fn credentials_in_a_location_are_refused_without_repeating_them() {
    let work = tempfile::tempdir().unwrap();
    let creds = work.path().join("creds");
    std::fs::write(&creds, "username = bob\npassword = other\n").unwrap();
    for (args, loc) in [
        (vec!["list"], "smb://alice:S3cret@127.0.0.1/share"),
        (
            vec!["list", "--credentials-file", s(&creds)],
            "smb://alice:S3cret@127.0.0.1/share",
        ),
        (vec!["list"], r"\\alice:S3cret@127.0.0.1\share"),
        (vec!["prune", "--dry-run"], "smb://alice@127.0.0.1/share"),
        (vec!["list"], "az://S3cret@backups/x"),
        (vec!["list"], "s3://alice:S3cret@bucket"),
    ] {
        let mut all = args.clone();
        all.extend(["--location", loc]);
        let out = IBS.run(&all);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(2), "ibs {all:?}: {stdout}{stderr}");
        for secret in ["S3cret", "alice"] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "ibs {all:?} repeated {secret:?}: {stdout}{stderr}"
            );
        }
        assert!(stderr.contains("credentials"), "{stderr}");
        assert!(
            stderr.contains("--credentials-file") && stderr.contains("IBS_SMB_"),
            "{stderr}"
        );
    }
}

fn fails_backup(loc: &str, cer: &Path, creds: &Path) -> String {
    let sources = source_args();
    let mut args = vec![
        "backup",
        "--location",
        loc,
        "--cert",
        s(cer),
        "--fqdn",
        FQDN,
        "--credentials-file",
        s(creds),
    ];
    args.extend(sources.iter().map(String::as_str));
    IBS.fails(&args)
}

fn ibs_with_env(args: &[&str], env: &[(&str, String)]) -> Output {
    IBS.command()
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

fn backup_args<'a>(loc: &'a str, cer: &'a Path, sources: &'a [String]) -> Vec<&'a str> {
    let mut args = vec!["backup", "--location", loc, "--cert", s(cer), "--fqdn", FQDN];
    args.extend(sources.iter().map(String::as_str));
    args
}

#[test]
fn azure_blob_round_trip_through_azurite_and_failure_classes() {
    use ibs_testkit::azurite::{Azurite, AzuriteOptions};
    let work = tempfile::tempdir().unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    let mut azurite = Azurite::start(AzuriteOptions::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(azurite.create_container("backups")).unwrap();
    let env = azurite.env();
    let loc = "az://backups/lab";
    let sources = source_args();
    let run = |args: &[&str], env: &[(&str, String)]| {
        let out = ibs_with_env(args, env);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };

    // Two backups, listed, verified, restored, pruned: all through Azurite.
    for _ in 0..2 {
        let (code, text) = run(&backup_args(loc, &cer, &sources), &env);
        assert_eq!(code, Some(0), "{text}");
        std::thread::sleep(Duration::from_millis(1100));
    }
    let (code, listing) = run(&["list", "--location", loc, "--fqdn", FQDN], &env);
    assert_eq!(code, Some(0), "{listing}");
    assert_eq!(listing.matches("complete").count(), 2, "{listing}");
    let keys = ["--pfx", s(&pfx), "--password-file", s(&pw)];
    let mut verify = vec!["verify", "--location", loc, "--fqdn", FQDN];
    verify.extend(keys);
    let (code, text) = run(&verify, &env);
    assert_eq!(code, Some(0), "{text}");
    let restored = work.path().join("restored");
    let mut restore = vec!["restore", "--location", loc, "--fqdn", FQDN, "--to", s(&restored)];
    restore.extend(keys);
    let (code, text) = run(&restore, &env);
    assert_eq!(code, Some(0), "{text}");
    for source in ["identity", "rbac", "key-vault"] {
        same_tree(&sample().join(source), &restored.join(source));
    }
    // Prune runs with capacity unknown (both backups are young: nothing goes;
    // the controller's tests age backups through Azurite).
    let (code, text) = run(&["prune", "--location", loc, "--fqdn", FQDN], &env);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("nothing to prune"), "{text}");

    // Authentication: a wrong account key.
    let mut wrong = env.clone();
    for (k, v) in &mut wrong {
        if *k == "AZURE_STORAGE_ACCOUNT_KEY" {
            *v = "d3JvbmcgYWNjb3VudCBrZXkgZm9yIGlicyB0ZXN0cywgNjQgYnl0ZXMgbG9uZyBlbm91Z2ggdG8gbG9vaw==".into();
        }
    }
    let (code, text) = run(&backup_args(loc, &cer, &sources), &wrong);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.to_lowercase().contains("credentials"), "{text}");
    assert!(!text.contains("d3Jvbmcg"), "the key leaked: {text}");
    // Path: a container that does not exist.
    let (code, text) = run(&backup_args("az://no-such-container/lab", &cer, &sources), &env);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("path"), "{text}");
    // Connectivity: the emulator is stopped.
    azurite.stop();
    let started = Instant::now();
    let (code, text) = run(&backup_args(loc, &cer, &sources), &env);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.to_lowercase().contains("cannot be reached"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
}

/// Restores the newest backup at `share` to `to`.
/// `ibs restore` of `loc` with one key into `to`, then `extra` (e.g.
/// `--credentials-file F`, `--backup ID`, `--overwrite`).
fn restore_args<'a>(loc: &'a str, pfx: &'a Path, pw: &'a Path, to: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "restore",
        "--location",
        loc,
        "--fqdn",
        FQDN,
        "--pfx",
        s(pfx),
        "--password-file",
        s(pw),
        "--to",
        s(to),
    ];
    args.extend(extra);
    args
}

fn restore_newest(share: &Path, pfx: &Path, pw: &Path, to: &Path) {
    ok(&[
        "restore",
        "--location",
        s(share),
        "--fqdn",
        FQDN,
        "--pfx",
        s(pfx),
        "--password-file",
        s(pw),
        "--to",
        s(to),
    ]);
}

#[test]
fn a_live_backup_with_excludes_exits_zero_and_prints_its_warnings() {
    use std::io::Write;
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    let data = work.path().join("data");
    for d in ["cache", "svc/cache", "svc/conf"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    for f in [
        "a.json",
        "a.tmp",
        "cache/x",
        "svc/cache/y",
        "svc/conf/c.json",
        "svc/conf/c.tmp",
    ] {
        std::fs::write(data.join(f), f).unwrap();
    }
    // A log appended every 2 ms while the backup runs.
    let log = data.join("app.log");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, mut file) = (
            std::sync::Arc::clone(&stop),
            std::fs::File::options().create(true).append(true).open(&log).unwrap(),
        );
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writeln!(file, "line {n}").unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let source = format!("data={}", data.display());
    let args = [
        "backup",
        "--location",
        s(&share),
        "--cert",
        s(&cer),
        "--fqdn",
        FQDN,
        "--source",
        &source,
        "--exclude",
        "**/*.tmp",
        "--exclude",
        "cache/",
    ];
    // A writer stalled for a whole racy window on a busy machine could make
    // one capture look settled; the warning must show up in one of three.
    let mut warned = None;
    for _ in 0..3 {
        let out = IBS.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "exit {:?}: {stderr}", out.status.code());
        assert!(String::from_utf8_lossy(&out.stdout).contains("complete"));
        if !stderr.is_empty() {
            warned = Some(stderr);
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let stderr = warned.expect("no backup reported the log as changing");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "ibs: warning: source data: {}: changed during capture (kept changing through every re-read); \
             captured as last read",
            log.display()
        )
    );
    let to = work.path().join("restored");
    restore_newest(&share, &pfx, &pw, &to);
    let mut got: Vec<String> = walk(&to.join("data"))
        .iter()
        .map(|p| p.strip_prefix(to.join("data")).unwrap().display().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["a.json", "app.log", "svc/conf/c.json"]);
    // A bad pattern is a usage error.
    let mut bad = args.to_vec();
    bad.push("--exclude");
    bad.push("!a.json");
    let out = IBS.run(&bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("negated patterns"));
}

#[test]
fn a_missing_source_fails_with_a_source_alert_not_a_storage_alert() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, _, _) = keygen(&work.path().join("keys"), "k");
    let missing = work.path().join("no-such-folder");
    let source = format!("ca={}", missing.display());
    let err = IBS.fails(&[
        "backup",
        "--location",
        s(&share),
        "--cert",
        s(&cer),
        "--fqdn",
        FQDN,
        "--source",
        &source,
    ]);
    assert!(!err.contains("storage location"), "{err}");
    assert!(err.contains("Backup source ca could not be read"), "{err}");
    assert!(err.contains(&format!("source ca: {}", missing.display())), "{err}");
    assert!(
        err.contains(&format!("remediation: Check that {}", missing.display())),
        "{err}"
    );
}

#[test]
fn a_location_inside_a_source_is_left_out_of_its_backups() {
    let work = tempfile::tempdir().unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    let var = work.path().join("var");
    let share = var.join("backups");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(var.join("state.json"), b"{}").unwrap();
    let source = format!("var={}", var.display());
    let args = [
        "backup",
        "--location",
        s(&share),
        "--cert",
        s(&cer),
        "--fqdn",
        FQDN,
        "--source",
        &source,
    ];
    ok(&args);
    let second = ok(&args);
    // state.json and the folders on the way to MASBackup, never the backups.
    assert!(second.contains("4 entries"), "{second}");
    let to = work.path().join("restored");
    restore_newest(&share, &pfx, &pw, &to);
    let got: Vec<PathBuf> = walk(&to.join("var"));
    assert_eq!(
        got,
        [to.join("var/state.json")],
        "the earlier backup is not in the new one"
    );
    // A source inside the location's MASBackup folder is a usage error, before anything is written.
    let inside = share.join(FQDN).join("local/MASBackup");
    let source = format!("oops={}", inside.display());
    let before = walk(&share);
    let out = IBS.run(&[
        "backup",
        "--location",
        s(&share),
        "--cert",
        s(&cer),
        "--fqdn",
        FQDN,
        "--source",
        &source,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("inside the backup folder"));
    assert_eq!(walk(&share), before);
}

// ---- trust: never lose the last good backup, say exactly what was checked ----

fn backup_folders(share: &Path) -> Vec<PathBuf> {
    ibs_testkit::cli::backup_folders(share, FQDN)
}

/// A backup of the sample state made `days` ago at the local share, as the
/// controller made it then (the `ibs` command always uses today's clock).
fn backup_days_ago(share: &Path, cer: &Path, days: i64) {
    use ibs_controller::{BackupSource, DirectorySource, JobSpec};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let spec = JobSpec {
        target: std::sync::Arc::new(ibs_storage::LocalTarget::new(share).unwrap()),
        instance: ibs_repository::InstanceLayout::new(FQDN, "local").unwrap(),
        certificates: vec![ibs_envelope::Certificate::from_file(cer).unwrap()],
        producer_version: "1.2408.0".into(),
        policy: ibs_retention::Policy::default(),
        checks: Default::default(),
        signer: None,
    };
    let sources: Vec<std::sync::Arc<dyn BackupSource>> = ["identity", "rbac", "key-vault"]
        .iter()
        .map(|n| std::sync::Arc::new(DirectorySource::new(*n, sample().join(n))) as std::sync::Arc<dyn BackupSource>)
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(ibs_controller::job::write_backup(
            &spec,
            &sources,
            now - days * 86_400,
            None,
        ))
        .unwrap();
}

/// Flips one byte in the middle of a backup's archive (body damage: the
/// manifest, header and footer still look right).
fn flip_middle_byte(folder: &Path) {
    let archive = folder.join("backup.ibs");
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(archive, bytes).unwrap();
}

fn id_of(folder: &Path) -> &str {
    folder.file_name().unwrap().to_str().unwrap()
}

fn ibs_out(args: &[&str]) -> (Option<i32>, String, String) {
    let out = IBS.run(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_damaged_newest_backup_does_not_cost_the_good_ones() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    for days in [20, 19, 18, 17] {
        backup_days_ago(&share, &cer, days);
    }
    let folders = backup_folders(&share);
    assert_eq!(folders.len(), 4);
    let damaged = &folders[3];
    flip_middle_byte(damaged);
    // The keyless listing cannot see body damage; `check` can, with no key.
    let list = ok(&["list", "--location", s(&share), "--fqdn", FQDN]);
    assert_eq!(list.matches(" complete ").count(), 4, "{list}");
    let (code, out, _) = ibs_out(&["check", "--location", s(&share), "--fqdn", FQDN, "--all"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("backup {} FAILED", id_of(damaged))), "{out}");
    assert_eq!(out.matches("checked (no key)").count(), 3, "{out}");

    let (code, out, err) = ibs_out(&["prune", "--location", s(&share), "--fqdn", FQDN, "--keep-days", "7"]);
    // Damage found is an alert naming the backup (exit 1), after pruning.
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains(&format!("Backup {} at the storage location is damaged", id_of(damaged))),
        "{out}"
    );
    // The newest intact one (18 days) is kept; the rest are gone.
    let left = backup_folders(&share);
    assert_eq!(left, [folders[2].clone()], "{out}");
    ok(&[
        "verify",
        "--location",
        s(&share),
        "--fqdn",
        FQDN,
        "--pfx",
        s(&pfx),
        "--password-file",
        s(&pw),
    ]);
}

#[test]
fn prune_deletes_only_what_ibs_wrote() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, _, _) = keygen(&work.path().join("keys"), "k");
    backup(s(&share), &cer, &[]);
    backup_days_ago(&share, &cer, 30);
    let folders = backup_folders(&share);
    let root = share.join(FQDN).join("local/MASBackup");
    // A folder named like a backup, holding someone else's file; a file of
    // someone else's inside an expired backup; a file beside the backups.
    let foreign_folder = root.join("20200101T000000Z-deadbeef");
    std::fs::create_dir(&foreign_folder).unwrap();
    std::fs::write(foreign_folder.join("important.docx"), b"not ours").unwrap();
    std::fs::write(folders[0].join("notes.txt"), b"not ours either").unwrap();
    std::fs::write(root.join("README.txt"), b"OEM notes").unwrap();

    let list = ok(&["list", "--location", s(&share), "--fqdn", FQDN]);
    for name in ["important.docx", "notes.txt", "README.txt"] {
        assert!(
            list.lines()
                .any(|l| l.starts_with("unrecognised (not written by ibs, left alone): ") && l.contains(name)),
            "{list}"
        );
    }
    assert_eq!(list.matches(" complete ").count(), 2, "{list}");
    assert!(
        !list.contains("deadbeef "),
        "a foreign folder listed as a backup:\n{list}"
    );

    let out = ok(&["prune", "--location", s(&share), "--fqdn", FQDN, "--keep-days", "7"]);
    assert!(out.contains(&format!("deleted {}", id_of(&folders[0]))), "{out}");
    for name in ["important.docx", "notes.txt", "README.txt"] {
        assert!(out.contains(name), "prune does not report {name}:\n{out}");
    }
    assert_eq!(
        std::fs::read(foreign_folder.join("important.docx")).unwrap(),
        b"not ours"
    );
    assert_eq!(std::fs::read(folders[0].join("notes.txt")).unwrap(), b"not ours either");
    assert!(!folders[0].join("backup.ibs").exists() && !folders[0].join("backup.manifest").exists());
    assert_eq!(std::fs::read(root.join("README.txt")).unwrap(), b"OEM notes");
    assert!(folders[1].join("backup.manifest").exists());
}

#[test]
fn verify_checks_the_archive_against_its_manifest_and_says_what_it_checked() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    backup(s(&share), &cer, &[]);
    let verify = [
        "verify",
        "--location",
        s(&share),
        "--fqdn",
        FQDN,
        "--pfx",
        s(&pfx),
        "--password-file",
        s(&pw),
    ];
    let out = ok(&verify);
    for what in ["SHA-256", "manifest", "header", "frame", "entries"] {
        assert!(out.contains(what), "verify does not say it checked {what}: {out}");
    }
    // A manifest whose archive-sha256 is zeros: verify and check fail.
    let folder = &backup_folders(&share)[0];
    let manifest = folder.join("backup.manifest");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let zeroed: String = text
        .lines()
        .map(|l| {
            if l.starts_with("archive-sha256: ") {
                format!("archive-sha256: {}\n", "0".repeat(64))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&manifest, zeroed).unwrap();
    let err = IBS.fails(&verify);
    assert!(err.contains(id_of(folder)) && err.contains("SHA-256"), "{err}");
    let (code, out, _) = ibs_out(&["check", "--location", s(&share), "--fqdn", FQDN]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED"), "{out}");
}

#[test]
fn verify_takes_the_newest_backup_and_restore_names_what_it_skipped() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    backup(s(&share), &cer, &[]);
    backup(s(&share), &cer, &[]);
    let folders = backup_folders(&share);
    // The newest is damaged (its archive shortened: the listing sees it).
    let archive = folders[1].join("backup.ibs");
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() - 10]).unwrap();
    let keys = ["--pfx", s(&pfx), "--password-file", s(&pw)];
    let mut verify = vec!["verify", "--location", s(&share), "--fqdn", FQDN];
    verify.extend(keys);
    let err = IBS.fails(&verify);
    assert!(err.contains(id_of(&folders[1])) && err.contains("damaged"), "{err}");
    assert!(!err.contains("verified"), "{err}");
    // restore takes the newest restorable one, naming the newer one it skipped.
    let to = work.path().join("restored");
    let mut restore = vec!["restore", "--location", s(&share), "--fqdn", FQDN, "--to", s(&to)];
    restore.extend(keys);
    let (code, out, err) = ibs_out(&restore);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(id_of(&folders[0])), "{out}");
    assert!(
        err.contains(&format!("skipping the newer backup {}", id_of(&folders[1]))) && err.contains("damaged"),
        "{err}"
    );
}

#[test]
fn values_the_backup_records_are_checked_before_anything_is_written() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, _, _) = keygen(&work.path().join("keys"), "k");
    for version in ["1.0\nid: x", "", " 1.0", "not-a-version", "1.0\t"] {
        let sources = source_args();
        let mut args = vec!["backup", "--location", s(&share), "--cert", s(&cer), "--fqdn", FQDN];
        args.extend(sources.iter().map(String::as_str));
        args.extend(["--producer-version", version]);
        let (code, out, err) = ibs_out(&args);
        assert_eq!(code, Some(2), "{version:?}: {out}{err}");
        assert!(err.contains("producer version"), "{err}");
        assert!(!out.contains("complete"), "{out}");
        assert!(walk(&share).is_empty(), "{version:?} wrote {:?}", walk(&share));
    }
}

/// Starts `ibs restore` of the newest backup into `to` and, once it has
/// written more than a megabyte under a staging name, sends it `signal`.
fn interrupt_restore(share: &Path, pfx: &Path, pw: &Path, to: &Path, signal: &str) -> Output {
    let child = IBS
        .command()
        .args(["restore", "--location", s(share), "--fqdn", FQDN, "--pfx", s(pfx)])
        .args(["--password-file", s(pw), "--to", s(to)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    signal_once_written(child, signal, || {
        walk(to)
            .iter()
            .filter(|p| p.to_string_lossy().contains(".ibs-restore-"))
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum::<u64>()
            > 1 << 20
    })
}

/// Sends `child` `signal` (a `kill` option) once `written()` says it has
/// written enough (polled for at most a minute), and waits for it to end.
fn signal_once_written(child: std::process::Child, signal: &str, written: impl Fn() -> bool) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = false;
    while Instant::now() < deadline && !sent {
        if written() {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            sent = true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    assert!(sent, "the command finished before it could be stopped");
    out
}

#[test]
fn an_interrupted_restore_leaves_nothing_half_done_behind() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    let big = work.path().join("big");
    std::fs::create_dir(&big).unwrap();
    noise_file(&big.join("blob.bin"), 300 << 20, 0x2545_F491_4F6C_DD1D);
    backup(s(&share), &cer, &["--source", &format!("blobs={}", big.display())]);

    // Killed (SIGKILL): it cannot clean up; the next restore does, and says so.
    let killed = work.path().join("killed");
    let out = interrupt_restore(&share, &pfx, &pw, &killed, "-KILL");
    assert_eq!(out.status.code(), None, "killed by a signal");
    assert!(
        walk(&killed)
            .iter()
            .any(|p| p.to_string_lossy().contains(".ibs-restore-"))
    );
    let restored = ok(&restore_args(s(&share), &pfx, &pw, &killed, &[]));
    assert!(
        restored.contains("removed what an interrupted restore had left"),
        "{restored}"
    );
    let left: Vec<PathBuf> = walk(&killed)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".ibs-restore-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        std::fs::read(killed.join("blobs/blob.bin")).unwrap(),
        std::fs::read(big.join("blob.bin")).unwrap()
    );

    // Stopped (Ctrl-C, SIGTERM): it cleans up itself before it exits.
    for signal in ["-INT", "-TERM"] {
        let stopped = work.path().join(format!("stopped{signal}"));
        let out = interrupt_restore(&share, &pfx, &pw, &stopped, signal);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("SIG{}", &signal[1..])), "{err}");
        assert!(walk(&stopped).is_empty(), "{signal} left {:?}", walk(&stopped));
    }
}

/// A backup stopped by Ctrl-C or SIGTERM once its upload has begun stops
/// at its next entry and removes what it had written: no partial archive
/// and no backup folder stay on the share (a killed one leaves them for
/// retention, as `list` shows: incomplete).
#[test]
fn a_stopped_backup_removes_what_it_had_written() {
    let work = tempfile::tempdir().unwrap();
    let (cer, _, _) = keygen(&work.path().join("keys"), "k");
    let big = work.path().join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..40u32 {
        noise_file(
            &big.join(format!("blob{i:02}.bin")),
            8 << 20,
            0x9E37_79B9_7F4A_7C15 ^ u64::from(i),
        );
    }
    for signal in ["-INT", "-TERM"] {
        let share = work.path().join(format!("share{signal}"));
        std::fs::create_dir(&share).unwrap();
        let child = IBS
            .command()
            .args(["backup", "--location", s(&share), "--cert", s(&cer), "--fqdn", FQDN])
            .args(["--source", &format!("blobs={}", big.display())])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = signal_once_written(child, signal, || {
            walk(&share)
                .iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum::<u64>()
                > 4 << 20
        });
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("stopped (SIG{})", &signal[1..])) && err.contains("removed"),
            "{err}"
        );
        let left: Vec<PathBuf> = walk(&share).into_iter().filter(|p| p.is_file()).collect();
        assert!(left.is_empty(), "{signal} left {left:?}");
        let (listed, _) = IBS.ok(&["list", "--location", s(&share), "--fqdn", FQDN]);
        assert!(!listed.contains("incomplete"), "{listed}");
    }
}

/// A name in the way that came from the backup is shown escaped: a newline
/// or an escape sequence in it does not reach the terminal.
#[test]
fn a_name_in_the_way_is_shown_escaped() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let name = "a\nb\x1b[31m";
    std::fs::write(src.join(name), b"x").unwrap();
    backup(s(&share), &cer, &["--source", &format!("two={}", src.display())]);
    let to = work.path().join("out");
    std::fs::create_dir_all(to.join("two")).unwrap();
    std::fs::write(to.join("two").join(name), b"mine").unwrap();
    let err = IBS.fails(&restore_args(s(&share), &pfx, &pw, &to, &[]));
    assert!(err.contains("already exists"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains("a\nb"), "{err:?}");
    assert_eq!(std::fs::read(to.join("two").join(name)).unwrap(), b"mine");
}

#[test]
fn restore_overwrite_replaces_existing_files() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    backup(s(&share), &cer, &[]);
    let to = work.path().join("restored");
    restore_newest(&share, &pfx, &pw, &to);
    let file = walk(&to.join("rbac")).into_iter().next().unwrap();
    std::fs::write(&file, b"changed since").unwrap();
    let args = restore_args(s(&share), &pfx, &pw, &to, &[]);
    let err = IBS.fails(&args);
    assert!(err.contains("already exists") && err.contains("--overwrite"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"changed since");
    ok(&[&args[..], &["--overwrite"]].concat());
    same_tree(&sample().join("rbac"), &to.join("rbac"));
}

#[test]
fn what_the_listing_cannot_see_in_a_backup_folder_does_not_stop_prune_or_backup() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, _, _) = keygen(&work.path().join("keys"), "k");
    backup(s(&share), &cer, &[]);
    for days in [20, 19] {
        backup_days_ago(&share, &cer, days);
    }
    let folders = backup_folders(&share);
    // A symbolic link and an empty folder: the local listing shows neither.
    std::os::unix::fs::symlink("/etc/passwd", folders[0].join("link")).unwrap();
    std::fs::create_dir(folders[1].join("emptydir")).unwrap();
    let out = ok(&["prune", "--location", s(&share), "--fqdn", FQDN, "--keep-days", "7"]);
    for f in &folders[..2] {
        assert!(out.contains(&format!("deleted {}", id_of(f))), "{out}");
        assert!(
            out.contains(&format!(
                "kept folder {}",
                "azs.contoso.com/local/MASBackup/".to_owned() + id_of(f)
            )),
            "{out}"
        );
        assert!(!f.join("backup.manifest").exists() && !f.join("backup.ibs").exists());
    }
    assert!(
        std::fs::symlink_metadata(folders[0].join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(folders[1].join("emptydir").is_dir());
    // And a backup after that succeeds (exit 0).
    backup(s(&share), &cer, &[]);
}

#[test]
fn bad_sources_and_settings_are_usage_errors_before_anything_is_written() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, _, _) = keygen(&work.path().join("keys"), "k");
    let rbac = format!("rbac={}", sample().join("rbac").display());
    let cases: Vec<Vec<String>> = vec![
        vec!["--source".into(), format!("rb ac={}", sample().join("rbac").display())],
        vec!["--source".into(), format!("={}", sample().join("rbac").display())],
        vec!["--source".into(), rbac.clone(), "--source".into(), rbac.clone()],
        vec!["--source".into(), rbac.clone(), "--keep-days".into(), "0".into()],
        vec!["--source".into(), rbac.clone(), "--keep-days".into(), "15".into()],
        vec!["--source".into(), rbac.clone(), "--region".into(), "a b".into()],
    ];
    for extra in &cases {
        let mut args = vec!["backup", "--location", s(&share), "--cert", s(&cer), "--fqdn", FQDN];
        args.extend(extra.iter().map(String::as_str));
        let (code, out, err) = ibs_out(&args);
        assert_eq!(code, Some(2), "{extra:?}: {out}{err}");
        assert!(walk(&share).is_empty(), "{extra:?} wrote {:?}", walk(&share));
    }
}

#[test]
fn an_empty_source_is_a_warning() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, _, _) = keygen(&work.path().join("keys"), "k");
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, out, err) = ibs_out(&[
        "backup",
        "--location",
        s(&share),
        "--cert",
        s(&cer),
        "--fqdn",
        FQDN,
        "--source",
        &format!("rbac={}", empty.display()),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("complete with warnings"), "{out}");
    assert!(err.contains("holds nothing to back up"), "{err}");
}

/// `cer` as PEM text (the keygen writes DER), via OpenSSL.
fn pem_of(cer: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in", s(cer), "-outform", "PEM"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn thumbprint_of(cer: &Path) -> String {
    ibs_envelope::Certificate::from_file(cer)
        .unwrap()
        .thumbprint()
        .to_string()
}

#[test]
fn a_backup_encrypted_to_several_certificates_restores_with_each_pfx_alone() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    let (a_cer, a_pfx, a_pw) = keygen(&keys, "a");
    let (b_cer, b_pfx, b_pw) = keygen(&keys, "b");
    let (c_cer, c_pfx, c_pw) = keygen(&keys, "c");
    // Two --cert, and a PEM bundle of two more certificates (one repeated: refused).
    let bundle = work.path().join("bundle.pem");
    std::fs::write(&bundle, format!("{}{}", pem_of(&b_cer), pem_of(&c_cer))).unwrap();
    // Read as one certificate, a bundle is refused, never cut to its first.
    let one = ibs_envelope::Certificate::from_file(&bundle).unwrap_err().to_string();
    assert!(one.contains("2 certificates"), "{one}");
    assert_eq!(ibs_envelope::Certificate::from_file_all(&bundle).unwrap().len(), 2);
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let err = usage_error(&[
        "backup",
        "--location",
        s(&share),
        "--cert",
        s(&a_cer),
        "--cert",
        s(&bundle),
        "--cert",
        s(&c_cer),
        "--source",
        &format!("rbac={}", sample().join("rbac").display()),
    ]);
    assert!(err.contains("given twice"), "{err}");
    backup(s(&share), &a_cer, &["--cert", s(&bundle)]);
    let list = ok(&["list", "--location", s(&share), "--fqdn", FQDN]);
    for cer in [&a_cer, &b_cer, &c_cer] {
        assert!(list.contains(&thumbprint_of(cer)), "{list}");
    }
    for (pfx, pw) in [(&a_pfx, &a_pw), (&b_pfx, &b_pw), (&c_pfx, &c_pw)] {
        let to = work
            .path()
            .join(format!("restored-{}", pfx.file_stem().unwrap().to_str().unwrap()));
        restore_newest(&share, pfx, pw, &to);
        same_tree(&sample().join("rbac"), &to.join("rbac"));
    }
}

#[test]
fn more_certificates_than_the_format_allows_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("k.pem");
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            s(&key),
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // 33 certificates (one key, 33 names: 33 thumbprints) in one PEM bundle.
    let mut bundle = String::new();
    for i in 0..33 {
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-key",
                s(&key),
                "-subj",
                &format!("/CN=r{i}"),
                "-days",
                "2",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        bundle.push_str(&String::from_utf8(out.stdout).unwrap());
    }
    let path = work.path().join("bundle.pem");
    std::fs::write(&path, bundle).unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let err = usage_error(&[
        "backup",
        "--location",
        s(&share),
        "--cert",
        s(&path),
        "--source",
        &format!("rbac={}", sample().join("rbac").display()),
    ]);
    assert!(err.contains("33 certificates") && err.contains("at most 32"), "{err}");
    assert!(walk(&share).is_empty());
}

fn backup_of(loc: &str, cer: &Path, creds: &Path, source: &str, dir: &Path) -> Command {
    let mut c = IBS.command();
    c.args([
        "backup",
        "--location",
        loc,
        "--cert",
        s(cer),
        "--fqdn",
        FQDN,
        "--credentials-file",
        s(creds),
    ])
    .arg("--source")
    .arg(format!("{source}={}", dir.display()));
    c
}

#[test]
fn a_share_filled_by_another_tool_frees_the_oldest_backup_and_the_retry_succeeds() {
    let work = tempfile::tempdir().unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    let server = SambaServer::start(SambaOptions {
        tmpfs_bytes: Some(64 << 20),
        ..SambaOptions::default()
    })
    .unwrap();
    std::fs::create_dir(server.share_dir().join("backups")).unwrap();
    let loc = format!("smb://127.0.0.1:{}/backup/backups", server.port());
    let creds = credentials_file(&server, work.path(), "ibs-test-Passw0rd");
    // Three backups of 15 MiB of noise: 45 of the share's 64 MiB.
    let small = work.path().join("small");
    std::fs::create_dir(&small).unwrap();
    for i in 0..3 {
        noise_file(&small.join("blob.bin"), 15 << 20, 100 + i);
        let out = backup_of(&loc, &cer, &creds, "key-vault", &small).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(1100));
    }
    let list = ok(&[
        "list",
        "--location",
        &loc,
        "--fqdn",
        FQDN,
        "--credentials-file",
        s(&creds),
    ]);
    let ids: Vec<String> = list
        .lines()
        .filter(|l| l.contains(" complete "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{list}");
    // Another tool fills the share beside MASBackup: the next 15 MiB backup
    // does not fit in what is left. The oldest backup goes, the retry succeeds.
    let oem = server.share_dir().join("backups").join(FQDN).join("local").join("HLH");
    std::fs::create_dir_all(&oem).unwrap();
    noise_file(&oem.join("bmc-dump.bin"), 12 << 20, 3);
    let big = work.path().join("big");
    std::fs::create_dir(&big).unwrap();
    noise_file(&big.join("blob.bin"), 15 << 20, 7);
    let out = backup_of(&loc, &cer, &creds, "key-vault", &big).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("the first attempt ran out of capacity"), "{text}");
    assert!(
        text.contains(&format!("deleted {}", ids[0])) && text.contains("to make room for the next backup"),
        "{text}"
    );
    // The new backup is the newest and restores.
    let to = work.path().join("restored");
    ok(&restore_args(&loc, &pfx, &pw, &to, &["--credentials-file", s(&creds)]));
    assert_eq!(
        std::fs::read(to.join("key-vault/blob.bin")).unwrap(),
        std::fs::read(big.join("blob.bin")).unwrap()
    );
    // The other tool's file is untouched.
    assert_eq!(std::fs::metadata(oem.join("bmc-dump.bin")).unwrap().len(), 12 << 20);
}

#[test]
fn two_backups_at_once_to_one_smb_share_both_complete() {
    let work = tempfile::tempdir().unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    let server = SambaServer::start(SambaOptions::default()).unwrap();
    std::fs::create_dir(server.share_dir().join("backups")).unwrap();
    let loc = format!("smb://127.0.0.1:{}/backup/backups", server.port());
    let creds = credentials_file(&server, work.path(), "ibs-test-Passw0rd");
    let dirs: Vec<PathBuf> = (0..2)
        .map(|i| {
            let d = work.path().join(format!("src{i}"));
            std::fs::create_dir(&d).unwrap();
            noise_file(&d.join("blob.bin"), 8 << 20, 50 + i);
            d
        })
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            backup_of(&loc, &cer, &creds, "key-vault", d)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let list = ok(&[
        "list",
        "--location",
        &loc,
        "--fqdn",
        FQDN,
        "--credentials-file",
        s(&creds),
    ]);
    let ids: Vec<&str> = list
        .lines()
        .filter(|l| l.contains(" complete "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert_ne!(ids[0], ids[1]);
    assert!(!list.contains("damaged") && !list.contains("incomplete"), "{list}");
    // Each holds its own data.
    let mut restored = Vec::new();
    for id in &ids {
        let to = work.path().join(format!("restored-{id}"));
        ok(&restore_args(
            &loc,
            &pfx,
            &pw,
            &to,
            &["--credentials-file", s(&creds), "--backup", id],
        ));
        restored.push(std::fs::read(to.join("key-vault/blob.bin")).unwrap());
    }
    let originals: Vec<Vec<u8>> = dirs
        .iter()
        .map(|d| std::fs::read(d.join("blob.bin")).unwrap())
        .collect();
    restored.sort();
    let mut want = originals.clone();
    want.sort();
    assert_eq!(restored, want);
}

#[test]
fn two_restores_into_one_folder_at_once_never_mix() {
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    let big = work.path().join("big");
    std::fs::create_dir(&big).unwrap();
    noise_file(&big.join("blob.bin"), 64 << 20, 9);
    backup(s(&share), &cer, &["--source", &format!("blobs={}", big.display())]);
    let to = work.path().join("restored");
    let args = restore_args(s(&share), &pfx, &pw, &to, &[]);
    let children: Vec<_> = (0..2)
        .map(|_| {
            IBS.command()
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let ok_count = outs.iter().filter(|o| o.status.success()).count();
    // One restores; the other is refused (the folder is taken, or the files exist by then).
    assert_eq!(
        ok_count,
        1,
        "{:?}",
        outs.iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect::<Vec<_>>()
    );
    let refused = outs.iter().find(|o| !o.status.success()).unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("another restore") || err.contains("already exists"),
        "{err}"
    );
    same_tree(&sample().join("rbac"), &to.join("rbac"));
    assert_eq!(
        std::fs::read(to.join("blobs/blob.bin")).unwrap(),
        std::fs::read(big.join("blob.bin")).unwrap()
    );
    let left: Vec<PathBuf> = walk(&to)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".ibs-restore-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_restore_gives_files_back_their_modes_and_times() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (cer, pfx, pw) = keygen(&work.path().join("keys"), "k");
    let data = work.path().join("data");
    std::fs::create_dir_all(data.join("keys")).unwrap();
    // (file, mode, mtime): a private key, a script, a read-only file, a
    // setuid program (restored with setuid only by root, who restores its
    // owner too), times from 1960, 2001 and now-ish.
    let files = [
        ("keys/server.key", 0o600, -315_619_200i64),
        ("run.sh", 0o755, 978_307_200),
        ("readme.txt", 0o444, 1_700_000_000),
        ("tool", 0o4755, 1_600_000_000),
    ];
    for (name, mode, mtime) in files {
        let p = data.join(name);
        std::fs::write(&p, name).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(if mtime >= 0 {
            std::time::UNIX_EPOCH + Duration::from_secs(mtime as u64)
        } else {
            std::time::UNIX_EPOCH - Duration::from_secs(mtime.unsigned_abs())
        })
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    backup(s(&share), &cer, &["--source", &format!("state={}", data.display())]);
    let to = work.path().join("restored");
    ok(&restore_args(s(&share), &pfx, &pw, &to, &["--source", "state"]));
    for (name, mode, mtime) in files {
        let m = std::fs::metadata(to.join("state").join(name)).unwrap();
        let restores_owners = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
        let want = if restores_owners { mode } else { mode & 0o1777 };
        assert_eq!(m.permissions().mode() & 0o7777, want, "{name}");
        let got = match m.modified().unwrap().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        assert_eq!(got, mtime, "{name}");
        assert_eq!(std::fs::read(to.join("state").join(name)).unwrap(), name.as_bytes());
    }
}
