//! Signing keys against other tools: OpenSSL and Python's `cryptography` must
//! read the key files we write, byte for byte as they would write them, and
//! we must read theirs; signatures must verify both ways.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{openssl, openssl_status, path_str};
use ibs_envelope::{Error, SigningKey, VerifyingKey};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    path_str(&p).to_owned()
}

#[test]
fn openssl_reads_our_keys_as_it_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let key_file = write(dir.path(), "k.sign.key", key.to_pem().as_bytes());
    let pub_file = write(dir.path(), "k.sign.pub", key.verifying_key().to_pem().as_bytes());
    // The public key OpenSSL derives is our .sign.pub, byte for byte; and
    // OpenSSL writes our private key back unchanged.
    let derived = openssl(&["pkey", "-in", &key_file, "-pubout"]);
    assert_eq!(String::from_utf8(derived).unwrap(), key.verifying_key().to_pem());
    let rewritten = openssl(&["pkey", "-in", &key_file]);
    assert_eq!(String::from_utf8(rewritten).unwrap(), *key.to_pem());
    let public_rewritten = openssl(&["pkey", "-pubin", "-in", &pub_file]);
    assert_eq!(
        String::from_utf8(public_rewritten).unwrap(),
        key.verifying_key().to_pem()
    );
    let text = String::from_utf8(openssl(&["pkey", "-in", &key_file, "-noout", "-text"])).unwrap();
    assert!(text.contains("ED25519 Private-Key"), "{text}");

    // Our signature verifies in OpenSSL, and OpenSSL's (Ed25519 is
    // deterministic) is the same bytes.
    let message = b"archive header: 2026-11-30T10:00:00Z, 3 sources";
    let msg_file = write(dir.path(), "msg", message);
    let sig_file = write(dir.path(), "sig", &key.sign(message));
    let (verified, output) = openssl_status(&[
        "pkeyutl", "-verify", "-pubin", "-inkey", &pub_file, "-rawin", "-in", &msg_file, "-sigfile", &sig_file,
    ]);
    assert!(verified, "{output}");
    let theirs = openssl(&["pkeyutl", "-sign", "-inkey", &key_file, "-rawin", "-in", &msg_file]);
    assert_eq!(theirs, key.sign(message));
    // A changed message does not verify in OpenSSL either.
    let other_file = write(dir.path(), "other", b"archive header: 2026-11-30T10:00:01Z, 3 sources");
    let (verified, _) = openssl_status(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        &pub_file,
        "-rawin",
        "-in",
        &other_file,
        "-sigfile",
        &sig_file,
    ]);
    assert!(!verified);
}

#[test]
fn we_read_keys_openssl_made_and_verify_its_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("openssl.key");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", path_str(&key_file)]);
    let public_pem = openssl(&["pkey", "-in", path_str(&key_file), "-pubout"]);
    let pub_file = write(dir.path(), "openssl.pub", &public_pem);

    let key = SigningKey::from_file(&key_file).unwrap();
    let public = VerifyingKey::from_file(Path::new(&pub_file)).unwrap();
    assert_eq!(key.verifying_key(), public);
    assert_eq!(public.to_pem().as_bytes(), &public_pem[..]);
    assert_eq!(key.to_pem().as_bytes(), &std::fs::read(&key_file).unwrap()[..]);

    let message = b"signed by openssl";
    let msg_file = write(dir.path(), "msg", message);
    let signature = openssl(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        path_str(&key_file),
        "-rawin",
        "-in",
        &msg_file,
    ]);
    let signature: [u8; 64] = signature.as_slice().try_into().unwrap();
    public.verify(message, &signature).unwrap();
    assert!(matches!(
        public.verify(b"signed by someone else", &signature),
        Err(Error::SignatureInvalid)
    ));
}

#[test]
fn keys_of_other_kinds_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["-algorithm", "ed448"], "Ed448"),
        (&["-algorithm", "x25519"], "X25519"),
        (&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "RSA"),
        (&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "ECDSA"),
        (
            &["-algorithm", "ed25519", "-aes256", "-pass", "pass:secret"],
            "password-protected",
        ),
    ];
    for (i, (args, named)) in cases.iter().enumerate() {
        let key_file = dir.path().join(format!("k{i}.key"));
        let mut all = vec!["genpkey"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-out", path_str(&key_file)]);
        openssl(&all);
        let err = SigningKey::from_file(&key_file).unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, Error::BadSigningKey(_)), "{args:?}: {shown}");
        assert!(
            shown.contains(named) && shown.contains(&format!("k{i}.key")),
            "{args:?}: {shown}"
        );
        if !named.contains("password") {
            let pub_file = write(
                dir.path(),
                &format!("k{i}.pub"),
                &openssl(&["pkey", "-in", path_str(&key_file), "-pubout"]),
            );
            let err = VerifyingKey::from_file(Path::new(&pub_file)).unwrap_err().to_string();
            assert!(err.contains(named), "{args:?}: {err}");
        }
    }
}

/// A Python 3 with `cryptography` (Debian: python3-cryptography;
/// `scripts/install-deps.sh` installs it). `IBS_PYTHON` overrides the search.
fn python() -> String {
    let candidates = std::env::var("IBS_PYTHON")
        .map(|p| vec![p])
        .unwrap_or_else(|_| vec!["python3".into(), "/usr/bin/python3".into()]);
    candidates
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import cryptography"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no python3 with cryptography: run scripts/install-deps.sh")
}

const PYTHON_CHECK: &str = r#"
import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ed25519
key = s.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
pub = s.load_pem_public_key(open(sys.argv[2], "rb").read())
assert isinstance(key, ed25519.Ed25519PrivateKey) and isinstance(pub, ed25519.Ed25519PublicKey)
raw = lambda k: k.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
assert raw(key.public_key()) == raw(pub)
pub.verify(open(sys.argv[3], "rb").read(), b"signed by ibs")
# What cryptography writes for the same keys is what we wrote.
assert key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()) == open(sys.argv[1], "rb").read()
assert pub.public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo) == open(sys.argv[2], "rb").read()
mine = ed25519.Ed25519PrivateKey.generate()
open(sys.argv[4], "wb").write(mine.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
open(sys.argv[5], "wb").write(mine.sign(b"signed by python"))
"#;

#[test]
fn python_cryptography_reads_our_keys_and_we_read_its() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let key_file = write(dir.path(), "k.sign.key", key.to_pem().as_bytes());
    let pub_file = write(dir.path(), "k.sign.pub", key.verifying_key().to_pem().as_bytes());
    let sig_file = write(dir.path(), "sig", &key.sign(b"signed by ibs"));
    let theirs = dir.path().join("py.key");
    let their_sig = dir.path().join("py.sig");
    let out = Command::new(python())
        .args(["-c", PYTHON_CHECK, &key_file, &pub_file, &sig_file])
        .arg(&theirs)
        .arg(&their_sig)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let python_key = SigningKey::from_file(&theirs).unwrap();
    let signature: [u8; 64] = std::fs::read(&their_sig).unwrap().try_into().unwrap();
    python_key
        .verifying_key()
        .verify(b"signed by python", &signature)
        .unwrap();
}
