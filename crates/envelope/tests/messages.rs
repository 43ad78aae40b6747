//! Messages an operator can act on: a private-key file given where a
//! certificate is expected says what it is (and quotes none of it); an expired
//! certificate, or one not issued for encryption, is accepted with a warning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use common::{fixture, openssl, path_str, read_fixture};
use ibs_envelope::keygen::{self, KeygenOptions};
use ibs_envelope::{Certificate, CertificateWarning, Error, Password};

const PFX_FILES: &[&str] = &[
    "ValidCertificatePathTest1EE_windows_aes.p12.pfx",
    "ValidCertificatePathTest1EE_windows_tdes.p12.pfx",
    "ValidCertificatePathTest1EE_macos.p12",
    "ValidCertificatePathTest1EE_firefox.p12",
    "ValidCertificatePathTest1EE.p12",
];

/// The error's Display and Debug, checked to quote nothing of `secret`.
fn message_quoting_nothing_of(err: &Error, secret: &[u8]) -> String {
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("Der("), "{shown}");
    // No 16-byte run of the file (as bytes or base64 text) appears in the message.
    for window in shown.as_bytes().windows(16) {
        assert!(!secret.windows(16).any(|w| w == window), "{shown} quotes the file");
    }
    err.to_string()
}

#[test]
fn a_pfx_given_as_a_certificate_says_it_is_a_pkcs12_file_and_asks_for_the_cer() {
    for name in PFX_FILES {
        let path = fixture(name);
        for err in [
            Certificate::from_file(&path).unwrap_err(),
            Certificate::from_file_all(&path).unwrap_err(),
            Certificate::from_der(&read_fixture(name)).unwrap_err(),
        ] {
            assert!(matches!(err, Error::PrivateKeyNotCertificate { .. }), "{name}: {err:?}");
            let msg = message_quoting_nothing_of(&err, &read_fixture(name));
            assert!(msg.contains("PKCS#12 (.pfx)"), "{name}: {msg}");
            assert!(msg.contains("private key"), "{name}: {msg}");
            assert!(msg.contains("the certificate (the .cer)"), "{name}: {msg}");
        }
    }
}

#[test]
fn a_pfx_made_by_keygen_is_named_too() {
    let password = Password::new("pw");
    let pair = keygen::generate(&KeygenOptions::new("ibs", 1_700_000_000), &password).unwrap();
    let err = Certificate::parse(&pair.pfx).unwrap_err();
    assert!(err.to_string().contains("PKCS#12"), "{err}");
}

fn write_openssl_keys(dir: &Path) -> Vec<(String, &'static str)> {
    let plain = path_str(&dir.join("key.pem")).to_owned();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &plain,
    ]);
    let rsa = path_str(&dir.join("rsa.pem")).to_owned();
    openssl(&["rsa", "-in", &plain, "-traditional", "-out", &rsa]);
    let enc = path_str(&dir.join("enc.pem")).to_owned();
    openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        &plain,
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:secret",
        "-out",
        &enc,
    ]);
    let der = path_str(&dir.join("key.der")).to_owned();
    openssl(&["pkey", "-in", &plain, "-outform", "DER", "-out", &der]);
    vec![
        (plain, "-----BEGIN PRIVATE KEY-----"),
        (rsa, "-----BEGIN RSA PRIVATE KEY-----"),
        (enc, "-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        (der, ""),
    ]
}

#[test]
fn a_private_key_given_as_a_certificate_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for (path, begin) in write_openssl_keys(dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains(begin));
        for err in [
            Certificate::from_file(&path).unwrap_err(),
            Certificate::from_file_all(&path).unwrap_err(),
        ] {
            assert!(matches!(err, Error::PrivateKeyNotCertificate { .. }), "{path}: {err:?}");
            let msg = message_quoting_nothing_of(&err, &bytes);
            assert!(msg.contains("private key"), "{path}: {msg}");
            assert!(msg.contains(".cer"), "{path}: {msg}");
        }
    }
}

/// An OpenSSL-made self-signed RSA certificate with the extra `-addext`s given.
fn openssl_cert(dir: &Path, name: &str, days: &str, addext: &[&str]) -> String {
    let key = path_str(&dir.join(format!("{name}.key"))).to_owned();
    let cert = path_str(&dir.join(format!("{name}.pem"))).to_owned();
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-subj",
        "/CN=ibs-test",
        "-days",
        days,
    ];
    for ext in addext {
        args.extend(["-addext", ext]);
    }
    openssl(&args);
    cert
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[test]
fn an_expired_certificate_is_accepted_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cert = Certificate::from_file(openssl_cert(dir.path(), "short", "1", &[])).unwrap();
    // Valid today: no warning. Two days on (the clock is the caller's), expired.
    assert_eq!(cert.warnings(now()), []);
    let later = now() + 2 * 86_400;
    let warnings = cert.warnings(later);
    assert_eq!(
        warnings,
        [CertificateWarning::Expired {
            not_after: cert.validity().not_after
        }]
    );
    let text = warnings[0].to_string();
    assert!(text.contains("expired on 20"), "{text}");
    assert!(text.contains("UTC"), "{text}");
    // Before its validity starts: a different sentence.
    let early = cert.warnings(cert.validity().not_before - 1);
    assert!(
        matches!(early[..], [CertificateWarning::NotYetValid { .. }]),
        "{early:?}"
    );
    assert!(early[0].to_string().contains("clock"), "{}", early[0]);
}

#[test]
fn a_certificate_whose_key_usage_excludes_encipherment_is_accepted_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let signing_only = Certificate::from_file(openssl_cert(
        dir.path(),
        "sign",
        "30",
        &["keyUsage=critical,digitalSignature"],
    ))
    .unwrap();
    assert!(!signing_only.allows_encipherment());
    let warnings = signing_only.warnings(now());
    assert_eq!(warnings, [CertificateWarning::NoEncipherment]);
    assert!(warnings[0].to_string().contains("encipherment"), "{}", warnings[0]);

    for usage in ["keyUsage=critical,keyEncipherment", "keyUsage=dataEncipherment"] {
        let c = Certificate::from_file(openssl_cert(dir.path(), "enc", "30", &[usage])).unwrap();
        assert!(c.allows_encipherment(), "{usage}");
        assert_eq!(c.warnings(now()), [], "{usage}");
    }
    // No key usage extension at all allows every use.
    let none = Certificate::from_file(openssl_cert(dir.path(), "none", "30", &[])).unwrap();
    assert!(none.allows_encipherment());

    // Our own keygen's certificate carries keyEncipherment.
    let pair = keygen::generate(&KeygenOptions::new("ibs", 1_700_000_000), &Password::new("pw")).unwrap();
    let ours = Certificate::parse(&pair.cer).unwrap();
    assert!(ours.allows_encipherment());
    assert_eq!(ours.warnings(1_700_000_100), []);
}

#[test]
fn a_pem_with_a_certificate_and_its_key_still_gives_the_certificate() {
    // Unchanged: the certificate blocks are read, the key block is ignored.
    let dir = tempfile::tempdir().unwrap();
    let cert = openssl_cert(dir.path(), "both", "30", &[]);
    let mut both = std::fs::read(dir.path().join("both.key")).unwrap();
    both.extend(std::fs::read(&cert).unwrap());
    assert_eq!(Certificate::parse_all(&both).unwrap().len(), 1);
}
