//! The one error type of this crate.
//!
//! Rules: parse errors say which file kind failed and why, with the detail the
//! underlying parser gives; decryption and verification errors stay coarse (`DecryptionFailed`,
//! `WrongPassword`, `NoMatchingIdentity`, `SignatureInvalid`) so they tell an attacker nothing about
//! where or why authentication failed. No variant ever carries key material or
//! a password.

use crate::Thumbprint;

/// Everything that can go wrong in `ibs-envelope`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a DER or PEM X.509 certificate.
    #[error("not a valid X.509 certificate: {reason}")]
    InvalidCertificate {
        /// What the parser found wrong.
        reason: String,
    },
    /// A file holding a private key (a PKCS#12 `.pfx`, a PEM or DER private
    /// key) was given where a certificate is expected. Names the kind of
    /// file only; nothing of its contents.
    #[error(
        "this is not a certificate: the file looks like {what}, which holds a private key; backup needs only the certificate (the .cer), so give the .cer and keep the private key for recovery"
    )]
    PrivateKeyNotCertificate {
        /// The kind of file found ("a PKCS#12 (.pfx) file", "an RSA private key (PEM)", …).
        what: &'static str,
    },
    /// The certificate (or PFX key) holds a key that is not RSA.
    #[error(
        "the certificate's key is {algorithm}, but backups are encrypted with RSA keys only: issue an RSA certificate (2048 bits or more)"
    )]
    UnsupportedKeyAlgorithm {
        /// The algorithm found (a name where known, else the OID).
        algorithm: String,
    },
    /// The RSA key is shorter than the policy allows.
    #[error(
        "the RSA key has {bits} bits, below the minimum of {minimum}: issue a certificate with a key of at least {minimum} bits"
    )]
    KeyTooSmall {
        /// Modulus size of the key found, in bits.
        bits: usize,
        /// Smallest modulus accepted, in bits ([`MIN_RSA_BITS`](crate::MIN_RSA_BITS)).
        minimum: usize,
    },
    /// The bytes are not a PKCS#12 (.pfx) file this crate can read.
    #[error("not a readable PKCS#12 (.pfx) file: {reason}")]
    InvalidPfx {
        /// What the parser found wrong.
        reason: String,
    },
    /// The PFX's integrity check or decryption failed under the given password.
    #[error(
        "the password does not open this .pfx file: check the password (or the password file) for this certificate"
    )]
    WrongPassword,
    /// The PFX holds no private key (a certificate-only export).
    #[error(
        "the .pfx file holds no private key: export the certificate again with its private key (\"Yes, export the private key\")"
    )]
    NoPrivateKey,
    /// The PFX holds a private key but no certificate.
    #[error("the .pfx file holds a private key but no certificate: export it again with its certificate")]
    NoCertificate,
    /// The PFX's private key belongs to none of its certificates.
    #[error(
        "the private key in the .pfx file does not belong to its certificate: the file is inconsistent, export it again"
    )]
    KeyCertificateMismatch,
    /// None of the identities given can open any recipient stanza.
    #[error("{}", no_matching_identity_message(needed))]
    NoMatchingIdentity {
        /// The SHA-1 thumbprints of the certificates the data was encrypted to.
        needed: Vec<Thumbprint>,
    },
    /// Unwrapping a file key or opening a chunk failed: wrong key, or damaged or forged data.
    #[error("decryption failed: the data is damaged or was not encrypted to this key")]
    DecryptionFailed,
    /// The encrypted stream ended before its final chunk.
    #[error("the encrypted stream is truncated: its final chunk is missing")]
    Truncated,
    /// Data follows the final chunk of an encrypted stream.
    #[error("data follows the final chunk of the encrypted stream")]
    TrailingData,
    /// A chunk counter would overflow (more than 2^64 chunks).
    #[error("too many chunks in one stream")]
    TooManyChunks,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// Key or certificate generation failed.
    #[error("key generation failed: {reason}")]
    KeyGeneration {
        /// Which step failed (RSA key generation, certificate or `.pfx`
        /// encoding, RSA-OAEP wrapping) and the underlying library's message.
        reason: String,
    },
    /// The bytes are not a usable Ed25519 signing (private) key: not PKCS#8
    /// PEM, another algorithm, or inconsistent. The reason never quotes the key.
    #[error("not a usable Ed25519 signing key: {0}")]
    BadSigningKey(String),
    /// The bytes are not a usable Ed25519 public key: not SubjectPublicKeyInfo
    /// PEM, another algorithm, not a canonical point, or a weak (small-order) one.
    #[error("not a usable Ed25519 public key: {0}")]
    BadVerifyingKey(String),
    /// A signature does not verify under the public key given. Deliberately
    /// coarse: it says nothing about which check failed.
    #[error("the signature does not verify: the data was changed, or was not signed by this key")]
    SignatureInvalid,
    /// The text is not a signer fingerprint (64 hex digits).
    #[error("not a signer fingerprint: {0}")]
    BadFingerprint(String),
    /// Reading or writing a key file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot read", "cannot write").
        action: &'static str,
        /// The key file's path, as given.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

fn no_matching_identity_message(needed: &[Thumbprint]) -> String {
    let list: Vec<String> = needed.iter().map(ToString::to_string).collect();
    format!(
        "none of the .pfx files given can decrypt this data: it was encrypted to the certificate(s) with SHA-1 thumbprint {}; supply the .pfx of one of them",
        if list.is_empty() {
            "(none recorded)".to_string()
        } else {
            list.join(", ")
        }
    )
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
