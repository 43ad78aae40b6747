//! Certificates, keys and envelope encryption for `ibs` backups.
//!
//! ```
//! use ibs_envelope::{
//!     Certificate, FileKey, Identity, Password, PayloadKey, generate_salt, keygen, unwrap_file_key,
//!     wrap_file_key,
//! };
//!
//! # fn main() -> Result<(), ibs_envelope::Error> {
//! // The operator makes a key pair once; the .cer goes to the backup service.
//! let password = Password::new("correct horse battery staple");
//! let pair = keygen::generate(&keygen::KeygenOptions::new("backup-encryption", 1_700_000_000), &password)?;
//! let recipient = Certificate::parse(&pair.cer)?;
//!
//! // Backing up: a fresh file key, wrapped to the certificate; data sealed in chunks.
//! let file_key = FileKey::generate()?;
//! let stanzas = wrap_file_key(&file_key, &[&recipient])?;
//! let salt = generate_salt()?;
//! let key = PayloadKey::derive(&file_key, &salt);
//! let mut chunk = b"subscriptions, plans, offers".to_vec();
//! key.seal_chunk(0, true, b"header", &mut chunk)?;
//!
//! // Recovering: open the .pfx, find our stanza, unwrap, verify the commitment, open.
//! let identity = Identity::from_pkcs12(&pair.pfx, &password)?;
//! let recovered = unwrap_file_key(&stanzas, &[&identity])?;
//! let key = PayloadKey::derive(&recovered, &salt);
//! key.verify_commitment(PayloadKey::derive(&file_key, &salt).commitment())?;
//! key.open_chunk(0, true, b"header", &mut chunk)?;
//! assert_eq!(chunk, b"subscriptions, plans, offers");
//! # Ok(())
//! # }
//! ```
//!
//! The backing-up side holds only an operator's X.509 certificate (a `.cer`,
//! DER or PEM, RSA ≥ 2048 bits). Each backup gets a fresh random 256-bit
//! [`FileKey`], wrapped with RSA-OAEP (SHA-256) to each recipient certificate
//! ([`wrap_file_key`]), and the data is sealed in chunks with AES-256-GCM in the
//! STREAM construction ([`PayloadKey`]). Recovery opens the
//! operator's password-protected `.pfx` ([`Identity`]) and unwraps the file key
//! ([`unwrap_file_key`]). [`keygen`] makes new self-signed key pairs.
//!
//! The controller also signs what it writes with an Ed25519 [`SigningKey`],
//! so that recovery can check, with the [`VerifyingKey`] or its
//! [`SignerFingerprint`], who wrote an archive ([`signing`]).
//!
//! Every parser here takes untrusted bytes and returns an [`Error`], never a
//! panic. Secrets ([`FileKey`], [`Password`], private keys) are zeroized on
//! drop and redacted from `Debug`.
//!
//! # RUSTSEC-2023-0071 (Marvin)
//!
//! The `rsa` crate's decryption is not constant-time. The attack needs an
//! oracle that decrypts attacker-chosen ciphertexts many times and reports
//! timing; here RSA decryption happens only offline, during recovery, on
//! stanzas read from the operator's own share, and never as a network service.
//! Decryption uses blinding (the `rsa` crate's `RsaPrivateKey::decrypt_blinded`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod ber;
mod cert;
mod error;
mod identity;
pub mod keygen;
mod pem;
mod secret;
pub mod signing;
mod stream;
mod wrap;

pub use cert::{Certificate, CertificateWarning, MAX_RSA_BITS, MIN_RSA_BITS, Sha256Fingerprint, Thumbprint, Validity};
pub use error::{Error, Result};
pub use identity::Identity;
pub use secret::Password;
pub use signing::{PUBLIC_KEY_LEN, SIGNATURE_LEN, SignerFingerprint, SigningKey, VerifyingKey};
pub use stream::{COMMITMENT_LEN, PayloadKey, SALT_LEN, TAG_LEN, derive_key, generate_salt};
pub use wrap::{FILE_KEY_LEN, FileKey, Stanza, unwrap_file_key, unwrap_with, wrap_file_key};

/// Hooks for the fuzz targets in `fuzz/` and for the tests (not part of the
/// API, no stability promise); compiled always, so that the stable replay of
/// the seed corpora and the workspace's lints see the same code.
#[doc(hidden)]
pub mod fuzzing {
    /// The STREAM construction one chunk at a time, and whole messages
    /// sealed with it: the archive frames its chunks itself
    /// ([`PayloadKey`](crate::PayloadKey)), so only tests use these.
    pub use crate::stream::{StreamOpener, StreamSealer, open_message, seal_message};

    /// The BER→DER converter used for BER-encoded PFX files (NSS, Firefox),
    /// on one whole value.
    pub fn ber_to_der(input: &[u8]) -> crate::Result<Vec<u8>> {
        crate::ber::to_der_all(input)
    }
}
