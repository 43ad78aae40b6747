//! Certificates and PKCS#12 files made by other tools (Windows, macOS, Firefox,
//! OpenSSL): every one must load, and decrypt what was encrypted to the `.cer`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::read_fixture;
use ibs_envelope::fuzzing::{open_message, seal_message};
use ibs_envelope::{Certificate, Error, FileKey, Identity, Password, Thumbprint, unwrap_file_key, wrap_file_key};

const PFX_FILES: &[&str] = &[
    "ValidCertificatePathTest1EE_windows_aes.p12.pfx",
    "ValidCertificatePathTest1EE_windows_tdes.p12.pfx",
    "ValidCertificatePathTest1EE_macos.p12",
    "ValidCertificatePathTest1EE_firefox.p12",
    "ValidCertificatePathTest1EE.p12",
];
const THUMBPRINT: &str = "E128464BE734D0F84BD928516C50F15A18B52B96";

fn cer() -> Certificate {
    Certificate::parse(&read_fixture("ValidCertificatePathTest1EE.cer")).unwrap()
}

#[test]
fn der_and_pem_certificates_give_the_same_key_and_thumbprint() {
    let der = cer();
    let pem = Certificate::parse(&read_fixture("ValidCertificatePathTest1EE.cer.pem")).unwrap();
    assert_eq!(der.thumbprint().to_string(), THUMBPRINT);
    assert_eq!(pem.thumbprint(), der.thumbprint());
    assert_eq!(pem.der(), der.der());
    assert_eq!(der.key_bits(), 2048);
    assert!(
        der.subject().contains("Valid EE Certificate Test1"),
        "{}",
        der.subject()
    );
    let v = der.validity();
    assert!(v.not_before < v.not_after);
    // PKITS certificates were issued 2010 and expire 2030.
    assert!(v.contains(1_600_000_000));
}

#[test]
fn pem_with_bom_crlf_and_bag_attributes_is_accepted() {
    let pem = String::from_utf8(read_fixture("ValidCertificatePathTest1EE.cer.pem")).unwrap();
    let messy = format!(
        "\u{feff}Bag Attributes\r\n    localKeyID: 01 00 00 00 \r\n    friendlyName: backup\r\nsubject=/CN=x\r\nissuer=/CN=y\r\n{}\r\nBag Attributes: trailing\r\n",
        pem.trim().replace('\n', "\r\n")
    );
    let cert = Certificate::parse(messy.as_bytes()).unwrap();
    assert_eq!(cert.thumbprint().to_string(), THUMBPRINT);
}

#[test]
fn every_fixture_pfx_loads_and_decrypts_what_was_encrypted_to_the_cer() {
    let recipient = cer();
    let file_key = FileKey::generate().unwrap();
    let stanzas = wrap_file_key(&file_key, &[&recipient]).unwrap();
    let sealed = seal_message(&file_key, b"aad", b"key vault secrets", 7).unwrap();
    for name in PFX_FILES {
        let identity = Identity::from_pkcs12(&read_fixture(name), &Password::new("password"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(identity.certificate().thumbprint().to_string(), THUMBPRINT, "{name}");
        let recovered = unwrap_file_key(&stanzas, &[&identity]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(recovered, file_key, "{name}");
        let plain = open_message(&recovered, b"aad", &sealed, 7).unwrap();
        assert_eq!(plain.as_slice(), b"key vault secrets", "{name}");
    }
}

#[test]
fn wrong_password_is_a_distinct_error_for_every_fixture() {
    for name in PFX_FILES {
        for wrong in ["Password", "", "password ", "pässword"] {
            let err = Identity::from_pkcs12(&read_fixture(name), &Password::new(wrong)).unwrap_err();
            assert!(matches!(err, Error::WrongPassword), "{name} with {wrong:?}: {err:?}");
            assert!(err.to_string().contains("password"), "{err}");
        }
    }
}

#[test]
fn truncated_and_damaged_pfx_give_errors_not_panics() {
    let pfx = read_fixture("ValidCertificatePathTest1EE_windows_aes.p12.pfx");
    let password = Password::new("password");
    for len in (0..pfx.len()).step_by(37) {
        assert!(
            Identity::from_pkcs12(&pfx[..len], &password).is_err(),
            "truncated to {len}"
        );
    }
    for i in (0..pfx.len()).step_by(11) {
        let mut bad = pfx.clone();
        bad[i] ^= 0x5a;
        // A flip may land in ignored padding; it must never panic, and a
        // success must still be the right key.
        if let Ok(id) = Identity::from_pkcs12(&bad, &password) {
            assert_eq!(id.certificate().thumbprint().to_string(), THUMBPRINT);
        }
    }
    assert!(matches!(
        Identity::from_pkcs12(b"not a pfx", &password),
        Err(Error::InvalidPfx { .. })
    ));
}

#[test]
fn no_matching_identity_lists_the_needed_thumbprints() {
    let recipient = cer();
    let other = ibs_envelope::keygen::generate(
        &ibs_envelope::keygen::KeygenOptions::new("other", 1_700_000_000),
        &Password::new("x"),
    )
    .unwrap();
    let other_id = Identity::from_pkcs12(&other.pfx, &Password::new("x")).unwrap();
    let stanzas = wrap_file_key(&FileKey::generate().unwrap(), &[&recipient]).unwrap();
    match unwrap_file_key(&stanzas, &[&other_id]) {
        Err(Error::NoMatchingIdentity { needed }) => {
            assert_eq!(needed, vec![Thumbprint::from_hex(THUMBPRINT).unwrap()]);
        }
        other => panic!("expected NoMatchingIdentity, got {other:?}"),
    }
    let msg = unwrap_file_key(&stanzas, &[&other_id]).unwrap_err().to_string();
    assert!(msg.contains(THUMBPRINT), "{msg}");
}

#[test]
fn garbage_certificates_give_clear_errors() {
    for bytes in [
        &b""[..],
        b"\x30",
        b"\x30\x82\xff\xff",
        b"hello",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    ] {
        assert!(
            matches!(Certificate::parse(bytes), Err(Error::InvalidCertificate { .. })),
            "{bytes:?}"
        );
    }
    let mut der = read_fixture("ValidCertificatePathTest1EE.cer");
    der.push(0);
    assert!(matches!(
        Certificate::parse(&der),
        Err(Error::InvalidCertificate { .. })
    ));
}
