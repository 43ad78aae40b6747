//! Signing-key files (`.sign.key`, PKCS#8 PEM) and public-key files
//! (`.sign.pub`, SubjectPublicKeyInfo PEM) on arbitrary bytes: an error, never
//! a panic; whatever parses writes back to a file that parses to the same key,
//! and a parsed key signs what its public half verifies.
#![no_main]

use ibs_envelope::{SigningKey, VerifyingKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = SigningKey::from_pem(data) {
        let public = key.verifying_key();
        let again = SigningKey::from_pem(key.to_pem().as_bytes()).expect("our own .sign.key parses");
        assert_eq!(again.verifying_key(), public);
        let signature = key.sign(data);
        public
            .verify(data, &signature)
            .expect("a key's signature verifies under its public half");
        assert!(!format!("{key:?}").contains(&key.to_pem()[28..60]));
    }
    if let Ok(public) = VerifyingKey::from_pem(data) {
        assert_eq!(
            VerifyingKey::from_pem(public.to_pem().as_bytes()).expect("our own .sign.pub parses"),
            public
        );
        assert_eq!(
            VerifyingKey::from_bytes(public.as_bytes()).expect("its bytes parse"),
            public
        );
        let fingerprint = public.fingerprint();
        assert_eq!(
            fingerprint.to_string().parse::<ibs_envelope::SignerFingerprint>().ok(),
            Some(fingerprint)
        );
    }
});
