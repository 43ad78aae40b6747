//! Fixture identities: operator key pairs made with the same key generator
//! `ibs keygen` uses, so tests never depend on a private key of someone's.
//!
//! RSA key generation and the PKCS#12 KDF take a moment each, so
//! [`cached`] makes each pair once per test binary; tests running in
//! parallel that ask for the same pair wait for one another, pairs of other
//! names are made at the same time.
//!
//! Committed key files stay beside the tests they were made for (the
//! archive's vector keys in `crates/archive/tests/data/`); the envelope's
//! certificates and `.pfx` files exported by Windows, macOS, Firefox and
//! OpenSSL, which tests of other crates read too, are found by [`fixture`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ibs_envelope::keygen::{self, KeygenOptions};
use ibs_envelope::{Certificate, Identity, Password};

/// The password of every generated `.pfx`.
pub const PASSWORD: &str = "pw";

/// A generated operator key pair: the certificate backups are encrypted to,
/// the identity that opens them, and both as the files `ibs keygen` writes.
pub struct KeyPair {
    /// The certificate (public key).
    pub cert: Certificate,
    /// The identity (private key) loaded from [`KeyPair::pfx`].
    pub identity: Identity,
    /// The certificate as a `.cer` file (DER).
    pub cer: Vec<u8>,
    /// The identity as a `.pfx` file, protected by [`PASSWORD`].
    pub pfx: Vec<u8>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// A new key pair whose certificate names `common_name` and is valid from
/// `not_before` (Unix seconds).
pub fn generate(common_name: &str, not_before: i64) -> KeyPair {
    let password = Password::new(PASSWORD);
    let pair = keygen::generate(&KeygenOptions::new(common_name, not_before), &password).expect("keygen");
    KeyPair {
        cert: Certificate::parse(&pair.cer).expect("a certificate keygen wrote"),
        identity: Identity::from_pkcs12(&pair.pfx, &password).expect("a .pfx keygen wrote"),
        cer: pair.cer,
        pfx: pair.pfx.to_vec(),
    }
}

/// The key pair of [`generate`]`(common_name, not_before)`, made once per
/// process and shared by every test that asks for the same one.
pub fn cached(common_name: &str, not_before: i64) -> &'static KeyPair {
    type Slots = HashMap<(String, i64), &'static OnceLock<KeyPair>>;
    static SLOTS: OnceLock<Mutex<Slots>> = OnceLock::new();
    let slot: &'static OnceLock<KeyPair> = {
        let mut slots = SLOTS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots
            .entry((common_name.to_owned(), not_before))
            .or_insert_with(|| Box::leak(Box::new(OnceLock::new())))
    };
    // Generated outside the lock: other pairs are made meanwhile.
    slot.get_or_init(|| generate(common_name, not_before))
}

/// The path of the committed envelope fixture `name` (under
/// `crates/envelope/tests/data/fixtures/`; their README says where each
/// file comes from; the `.pfx` password is `password`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../envelope/tests/data/fixtures")
        .join(name)
}

/// The bytes of the committed envelope fixture `name`.
pub fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("reading fixture {name}: {e}"))
}
