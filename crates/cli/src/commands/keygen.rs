//! `ibs keygen`: the operator's certificate and key, or the controller's
//! signing key.
//!
//! It checks every argument, and that no output file exists, before writing
//! anything; never overwrites a key; on a failure after the first write,
//! removes what this run wrote. An empty password file is refused unless
//! `--allow-empty-password` says it is meant.

use std::path::PathBuf;

use ibs_envelope::{Password, SigningKey, keygen};
use serde_json::{Value, json};

use crate::args::KeygenArgs;
use crate::common::{Ctx, Done, now, path_json};
use crate::report::{Failure, Kind, usage};

fn random_password() -> Result<String, Failure> {
    let mut b = [0u8; 18];
    getrandom::fill(&mut b)
        .map_err(|e| Failure::new(Kind::Other, format!("the system's random generator failed: {e}")))?;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    Ok(b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect())
}

/// Why a `--name` cannot name key files: it must stay one plain file name
/// inside `--out`.
fn bad_key_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name == "." || name.starts_with("..") {
        Some("is or starts with `..` / `.`")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("contains NUL or a control character")
    } else {
        None
    }
}

/// What one `ibs keygen` run has written so far: removed again if the run fails.
#[derive(Default)]
struct Written {
    files: Vec<PathBuf>,
    /// Folders this run created, deepest first.
    dirs: Vec<PathBuf>,
}

impl Written {
    /// Creates `dir` and any missing parents, remembering which were new.
    fn create_dir_all(&mut self, dir: &std::path::Path) -> Result<(), Failure> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err()) {
            missing.push(d.to_owned());
            at = d.parent();
        }
        std::fs::create_dir_all(dir).map_err(|e| Failure::local("cannot create", dir, e))?;
        self.dirs = missing;
        Ok(())
    }

    /// Removes what was written (files, then the folders if they are empty).
    fn undo(&mut self) {
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.drain(..) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// `ibs keygen`: checks every argument and that no output file exists before
/// writing anything; never overwrites a key; on a failure after the first
/// write, removes what this run wrote. An empty password file is refused
/// unless `--allow-empty-password` says it is meant.
pub fn run(a: &KeygenArgs, ctx: &Ctx) -> Result<Done, Failure> {
    if a.signing {
        return signing(a, ctx);
    }
    let out = &a.out;
    let name = a.name.as_deref().unwrap_or("backup-encryption");
    if let Some(why) = bad_key_name(name) {
        return Err(usage(format!(
            "--name {name:?} {why}: give a plain file name (the files are written as NAME.cer, NAME.pfx \
             and NAME.password inside --out)"
        )));
    }
    let key_size = match &a.bits {
        Some(bits) => bits
            .parse()
            .ok()
            .and_then(keygen::KeySize::from_bits)
            .ok_or_else(|| usage("--bits takes 2048, 3072 or 4096"))?,
        None => keygen::KeySize::default(),
    };
    if a.allow_empty_password && a.password_file.is_none() {
        return Err(usage(
            "--allow-empty-password only applies with --password-file (without one, a strong password is generated)",
        ));
    }
    let given = match &a.password_file {
        Some(f) => {
            let password =
                Password::from_file_contents(&std::fs::read(f).map_err(|e| Failure::local("cannot read", f, e))?)?;
            if password.expose().is_empty() && !a.allow_empty_password {
                return Err(usage(format!(
                    "the password file {} is empty (its first line is the password): the .pfx would be \
                     protected by an empty password. Put a password in it, leave out --password-file to \
                     have one generated, or add --allow-empty-password if an empty one is really meant",
                    f.display()
                )));
            }
            Some(password)
        }
        None => None,
    };
    let cer_path = out.join(format!("{name}.cer"));
    let pfx_path = out.join(format!("{name}.pfx"));
    let pw_path = out.join(format!("{name}.password"));
    let mut outputs = vec![&cer_path, &pfx_path];
    if given.is_none() {
        outputs.push(&pw_path);
    }
    refuse_existing(&outputs)?;
    let (password, generated) = match given {
        Some(p) => (p, false),
        // No password given: make a strong one and keep it beside the .pfx (mode 0600).
        None => (Password::new(random_password()?), true),
    };
    let mut options = keygen::KeygenOptions::new(name, now() - 300);
    options.key_size = key_size;
    if a.legacy_pfx {
        options.pfx_encoding = keygen::PfxEncoding::Legacy3DesSha1;
    }
    let pair = keygen::generate(&options, &password)?;
    let mut written = Written::default();
    let result = (|| {
        written.create_dir_all(out)?;
        if generated {
            write_private(&pw_path, &[password.expose().as_bytes(), b"\n"])?;
            written.files.push(pw_path.clone());
        }
        // Writes both or neither; refuses to overwrite.
        pair.write_to(out, name)?;
        Ok(())
    })();
    if let Err(e) = result {
        written.undo();
        return Err(e);
    }
    ctx.say(format!(
        "certificate: {} (give this to the backup service)",
        cer_path.display()
    ));
    ctx.say(format!(
        "private key: {} (keep offline; needed for recovery)",
        pfx_path.display()
    ));
    if generated {
        ctx.say(format!(
            "password:    {} (keep with the .pfx, or move it somewhere safer)",
            pw_path.display()
        ));
    }
    ctx.say(format!("thumbprint:  {}", pair.certificate.thumbprint()));
    Ok(Done::ok(json!({
        "kind": "certificate",
        "certificate": path_json(&cer_path),
        "pfx": path_json(&pfx_path),
        "password_file": if generated { path_json(&pw_path) } else { Value::Null },
        "thumbprint": pair.certificate.thumbprint().to_string(),
    })))
}

/// `ibs keygen --signing`: the controller's Ed25519 key pair, as
/// `NAME.sign.key` (0600) and `NAME.sign.pub`, under the same rules as the
/// certificate keygen (arguments and existing files checked before anything
/// is written, no overwrite, what was written removed on a failure).
fn signing(a: &KeygenArgs, ctx: &Ctx) -> Result<Done, Failure> {
    let not_with = [
        (a.bits.is_some(), "--bits"),
        (a.password_file.is_some(), "--password-file"),
        (a.allow_empty_password, "--allow-empty-password"),
        (a.legacy_pfx, "--legacy-pfx"),
    ];
    if let Some((_, flag)) = not_with.iter().find(|(given, _)| *given) {
        return Err(usage(format!(
            "{flag} does not apply to --signing: a signing key is Ed25519 (no size to choose) and its file is \
             protected by its permissions (mode 0600), not a password"
        )));
    }
    let out = &a.out;
    let name = a.name.as_deref().unwrap_or("backup-signing");
    if let Some(why) = bad_key_name(name) {
        return Err(usage(format!(
            "--name {name:?} {why}: give a plain file name (the files are written as NAME.sign.key and \
             NAME.sign.pub inside --out)"
        )));
    }
    let key_path = out.join(format!("{name}.sign.key"));
    let pub_path = out.join(format!("{name}.sign.pub"));
    refuse_existing(&[&key_path, &pub_path])?;
    let key = SigningKey::generate()?;
    let public = key.verifying_key();
    let mut written = Written::default();
    let result = (|| {
        written.create_dir_all(out)?;
        write_new(&key_path, &[key.to_pem().as_bytes()], 0o600)?;
        written.files.push(key_path.clone());
        write_new(&pub_path, &[public.to_pem().as_bytes()], 0o644)?;
        written.files.push(pub_path.clone());
        Ok(())
    })();
    if let Err(e) = result {
        written.undo();
        return Err(e);
    }
    ctx.say(format!(
        "signing key: {} (for the controller only; keep it readable by it alone)",
        key_path.display()
    ));
    ctx.say(format!(
        "public key:  {} (for recovery, to check who wrote a backup)",
        pub_path.display()
    ));
    ctx.say(format!("fingerprint: {}", public.fingerprint()));
    Ok(Done::ok(json!({
        "kind": "signing",
        "signing_key": path_json(&key_path),
        "public_key": path_json(&pub_path),
        "fingerprint": public.fingerprint().to_string(),
    })))
}

/// A usage error naming every one of `outputs` that exists (keygen never
/// overwrites keys). `symlink_metadata`: a dangling link is in the way too.
fn refuse_existing(outputs: &[&PathBuf]) -> Result<(), Failure> {
    let existing: Vec<String> = outputs
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    Err(usage(format!(
        "{} already exist(s); keygen never overwrites keys: choose another --name or --out, or move the old \
         files away",
        existing.join(", ")
    )))
}

/// Creates `path` (never replacing a file) with mode 0600 and writes `parts` to it.
fn write_private(path: &std::path::Path, parts: &[&[u8]]) -> Result<(), Failure> {
    write_new(path, parts, 0o600)
}

/// Creates `path` (never replacing a file) with `mode`, writes `parts` to it
/// and syncs it.
fn write_new(path: &std::path::Path, parts: &[&[u8]], mode: u32) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Failure::local("cannot create", path, e))?;
    parts
        .iter()
        .try_for_each(|part| f.write_all(part))
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            // Created by this call: do not leave half a file behind.
            let _ = std::fs::remove_file(path);
            Failure::local("cannot write", path, e)
        })
}
