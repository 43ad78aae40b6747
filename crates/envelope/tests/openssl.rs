//! OpenSSL on the other side: it must read the key pairs we write, unwrap the
//! file keys we wrap, wrap file keys we can unwrap, and write `.pfx` files we read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use common::{openssl, openssl_status, path_str};
use ibs_envelope::keygen::{self, KeySize, KeygenOptions, PfxEncoding};
use ibs_envelope::{Certificate, Error, FileKey, Identity, Password, unwrap_with, wrap_file_key};

const OAEP: &[&str] = &[
    "-pkeyopt",
    "rsa_padding_mode:oaep",
    "-pkeyopt",
    "rsa_oaep_md:sha256",
    "-pkeyopt",
    "rsa_mgf1_md:sha256",
];

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    path_str(&p).to_owned()
}

/// An OpenSSL-made self-signed RSA certificate and key (PEM), in `dir`.
fn openssl_key_pair(dir: &Path, bits: u32) -> (String, String) {
    let key = path_str(&dir.join(format!("k{bits}.pem"))).to_owned();
    let cert = path_str(&dir.join(format!("c{bits}.pem"))).to_owned();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        &format!("rsa:{bits}"),
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-subj",
        "/CN=openssl-made",
        "-days",
        "2",
    ]);
    (key, cert)
}

/// The digest OpenSSL prints for a DER certificate. OpenSSL 3.0 writes
/// "sha1 Fingerprint=", 1.1 "SHA1 Fingerprint=": only the digest is compared.
fn openssl_fingerprint(der_cert: &str, digest: &str) -> String {
    let out = String::from_utf8(openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        der_cert,
        "-noout",
        "-fingerprint",
        digest,
    ]))
    .unwrap();
    out.trim()
        .split_once("Fingerprint=")
        .map(|(_, hex)| hex.to_owned())
        .unwrap_or_default()
}

fn check_keygen(size: KeySize, encoding: PfxEncoding) {
    let dir = tempfile::tempdir().unwrap();
    let password = Password::new("pw for openssl");
    let mut options = KeygenOptions::new("ibs backup encryption", 1_700_000_000);
    options.key_size = size;
    options.pfx_encoding = encoding;
    let pair = keygen::generate(&options, &password).unwrap();
    let (cer, pfx) = pair.write_to(dir.path(), "backup").unwrap();
    let (cer, pfx) = (path_str(&cer), path_str(&pfx));

    // The .cer: OpenSSL parses it, agrees on both fingerprints, sees the key usage.
    assert_eq!(
        openssl_fingerprint(cer, "-sha1"),
        pair.certificate.thumbprint().to_colon_hex()
    );
    assert_eq!(
        openssl_fingerprint(cer, "-sha256"),
        pair.certificate.sha256_fingerprint().to_colon_hex()
    );
    let text = String::from_utf8(openssl(&["x509", "-inform", "DER", "-in", cer, "-noout", "-text"])).unwrap();
    assert!(text.contains("Key Encipherment"), "{text}");
    assert!(text.contains("Subject Key Identifier"), "{text}");
    assert!(text.contains(&format!("Public-Key: ({} bit)", size.bits())), "{text}");
    assert!(text.contains("CN = ibs backup encryption"), "{text}");
    // Self-signed: OpenSSL verifies the signature against the certificate itself.
    let pem = write(dir.path(), "c.pem", &openssl(&["x509", "-inform", "DER", "-in", cer]));
    openssl(&[
        "verify",
        "-CAfile",
        &pem,
        "-partial_chain",
        "-attime",
        "1700000100",
        &pem,
    ]);

    // The .pfx: OpenSSL opens it with the password and reports the encoding we asked for.
    let (ok, info) = openssl_status(&[
        "pkcs12",
        "-info",
        "-in",
        pfx,
        "-passin",
        "pass:pw for openssl",
        "-nodes",
    ]);
    assert!(ok, "{info}");
    assert!(info.contains("BEGIN PRIVATE KEY"), "{info}");
    assert!(info.contains("BEGIN CERTIFICATE"), "{info}");
    match encoding {
        PfxEncoding::Aes256Sha256 => {
            assert!(info.contains("MAC: sha256"), "{info}");
            assert!(info.contains("AES-256-CBC"), "{info}");
        }
        PfxEncoding::Legacy3DesSha1 => {
            assert!(info.contains("MAC: sha1"), "{info}");
            assert!(info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{info}");
        }
    }
    let (ok, out) = openssl_status(&["pkcs12", "-info", "-in", pfx, "-passin", "pass:wrong", "-nodes"]);
    assert!(!ok, "OpenSSL opened the .pfx with a wrong password: {out}");

    // OpenSSL decrypts a file key we wrapped to the certificate, with the key from our .pfx.
    let key_pem = write(
        dir.path(),
        "key.pem",
        &openssl(&[
            "pkcs12",
            "-in",
            pfx,
            "-passin",
            "pass:pw for openssl",
            "-nocerts",
            "-nodes",
        ]),
    );
    let file_key = FileKey::generate().unwrap();
    let stanza = wrap_file_key(&file_key, &[&Certificate::from_file(cer).unwrap()])
        .unwrap()
        .remove(0);
    let wrapped = write(dir.path(), "wrapped.bin", &stanza.wrapped_key);
    let mut args = vec![
        "pkeyutl",
        "-decrypt",
        "-inkey",
        key_pem.as_str(),
        "-in",
        wrapped.as_str(),
    ];
    args.extend_from_slice(OAEP);
    assert_eq!(openssl(&args), file_key.expose());

    // And we read our own .pfx back.
    let identity = Identity::from_file(pfx, &password).unwrap();
    assert_eq!(identity.certificate().thumbprint(), pair.certificate.thumbprint());
}

#[test]
fn keygen_2048_aes_pfx_is_read_by_openssl() {
    check_keygen(KeySize::Rsa2048, PfxEncoding::Aes256Sha256);
}

#[test]
fn keygen_3072_legacy_pfx_is_read_by_openssl() {
    check_keygen(KeySize::Rsa3072, PfxEncoding::Legacy3DesSha1);
}

#[test]
fn keygen_4096_is_read_by_openssl() {
    check_keygen(KeySize::Rsa4096, PfxEncoding::Aes256Sha256);
}

#[test]
fn keygen_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let pair = keygen::generate(&KeygenOptions::new("x", 1_700_000_000), &Password::new("p")).unwrap();
    pair.write_to(dir.path(), "k").unwrap();
    assert!(matches!(pair.write_to(dir.path(), "k"), Err(Error::Io { .. })));
}

#[test]
fn file_key_wrapped_by_openssl_is_unwrapped_by_us() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = openssl_key_pair(dir.path(), 2048);
    let pfx = path_str(&dir.path().join("id.pfx")).to_owned();
    openssl(&[
        "pkcs12",
        "-export",
        "-inkey",
        &key,
        "-in",
        &cert,
        "-out",
        &pfx,
        "-passout",
        "pass:s3cret",
    ]);
    let identity = Identity::from_file(&pfx, &Password::new("s3cret")).unwrap();

    let file_key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
    let plain = write(dir.path(), "key.bin", &file_key);
    let out = path_str(&dir.path().join("wrapped.bin")).to_owned();
    let mut args = vec![
        "pkeyutl",
        "-encrypt",
        "-certin",
        "-inkey",
        cert.as_str(),
        "-in",
        plain.as_str(),
        "-out",
        out.as_str(),
    ];
    args.extend_from_slice(OAEP);
    openssl(&args);
    let wrapped = std::fs::read(&out).unwrap();
    assert_eq!(unwrap_with(&identity, &wrapped).unwrap().expose(), &file_key);

    // PKCS#1 v1.5 or OAEP-SHA1 ciphertexts are not accepted as ours.
    let sha1_out = path_str(&dir.path().join("wrapped-sha1.bin")).to_owned();
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-certin",
        "-inkey",
        &cert,
        "-in",
        &plain,
        "-out",
        &sha1_out,
        "-pkeyopt",
        "rsa_padding_mode:oaep",
    ]);
    assert!(matches!(
        unwrap_with(&identity, &std::fs::read(&sha1_out).unwrap()),
        Err(Error::DecryptionFailed)
    ));
}

#[test]
fn openssl_pfx_variants_load() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = openssl_key_pair(dir.path(), 2048);
    let want = Certificate::from_file(&cert).unwrap().thumbprint();
    let cases: &[(&str, &[&str])] = &[
        ("modern", &[]),
        ("legacy", &["-legacy"]),
        ("empty", &[]),
        ("pässwörd€ ☃", &[]),
        ("nomac", &["-nomac"]),
        (
            "sha1mac",
            &["-macalg", "sha1", "-keypbe", "AES-128-CBC", "-certpbe", "AES-128-CBC"],
        ),
    ];
    for (password, extra) in cases {
        let password = if *password == "empty" { "" } else { password };
        let pfx = path_str(&dir.path().join(format!("v{}.pfx", extra.len()))).to_owned();
        let pass_arg = format!("pass:{password}");
        let mut args = vec![
            "pkcs12", "-export", "-inkey", &key, "-in", &cert, "-out", &pfx, "-passout", &pass_arg,
        ];
        args.extend_from_slice(extra);
        openssl(&args);
        let id = Identity::from_file(&pfx, &Password::new(password))
            .unwrap_or_else(|e| panic!("password {password:?} {extra:?}: {e}"));
        assert_eq!(id.certificate().thumbprint(), want);
        let wrong = Identity::from_file(&pfx, &Password::new(format!("{password}x"))).unwrap_err();
        assert!(
            matches!(wrong, Error::WrongPassword),
            "password {password:?} {extra:?}: {wrong:?}"
        );
    }
}

#[test]
fn pfx_without_key_or_with_a_foreign_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key_a, cert_a) = openssl_key_pair(dir.path(), 2048);
    let pfx = path_str(&dir.path().join("nokey.pfx")).to_owned();
    openssl(&[
        "pkcs12", "-export", "-nokeys", "-in", &cert_a, "-out", &pfx, "-passout", "pass:p",
    ]);
    assert!(matches!(
        Identity::from_file(&pfx, &Password::new("p")),
        Err(Error::NoPrivateKey)
    ));

    let nocert = path_str(&dir.path().join("nocert.pfx")).to_owned();
    openssl(&[
        "pkcs12", "-export", "-nocerts", "-inkey", &key_a, "-out", &nocert, "-passout", "pass:p",
    ]);
    assert!(matches!(
        Identity::from_file(&nocert, &Password::new("p")),
        Err(Error::NoCertificate)
    ));

    // OpenSSL refuses to build a mismatched file, so build one with p12-keystore.
    let (key_b, _) = openssl_key_pair(&dir.path().join("."), 3072);
    let key_b_der = openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &key_b, "-outform", "DER"]);
    let cert_a_der = openssl(&["x509", "-in", &cert_a, "-outform", "DER"]);
    let chain = p12_keystore::PrivateKeyChain::new(
        vec![1u8],
        p12_keystore::PrivateKey::from_der(&key_b_der).unwrap(),
        [p12_keystore::Certificate::from_der(&cert_a_der).unwrap()],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("x", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    let mismatched = store.writer("p").write().unwrap();
    assert!(matches!(
        Identity::from_pkcs12(&mismatched, &Password::new("p")),
        Err(Error::KeyCertificateMismatch)
    ));
}

#[test]
fn non_rsa_and_small_keys_are_refused_with_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| path_str(&dir.path().join(n)).to_owned();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &d("ec.key"),
        "-out",
        &d("ec.pem"),
        "-subj",
        "/CN=ec",
        "-days",
        "1",
    ]);
    match Certificate::from_file(d("ec.pem")) {
        Err(e @ Error::UnsupportedKeyAlgorithm { .. }) => assert!(e.to_string().contains("ECDSA"), "{e}"),
        other => panic!("{other:?}"),
    }
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ed25519",
        "-nodes",
        "-keyout",
        &d("ed.key"),
        "-out",
        &d("ed.pem"),
        "-subj",
        "/CN=ed",
        "-days",
        "1",
    ]);
    assert!(matches!(
        Certificate::from_file(d("ed.pem")),
        Err(Error::UnsupportedKeyAlgorithm { .. })
    ));
    let (_, small) = openssl_key_pair(dir.path(), 1024);
    match Certificate::from_file(&small) {
        Err(
            e @ Error::KeyTooSmall {
                bits: 1024,
                minimum: 2048,
            },
        ) => assert!(e.to_string().contains("1024"), "{e}"),
        other => panic!("{other:?}"),
    }
}
