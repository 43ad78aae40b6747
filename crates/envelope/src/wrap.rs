//! File keys and recipient stanzas: RSA-OAEP (SHA-256, MGF1-SHA-256, empty
//! label) wrapping of a random 256-bit key to each recipient certificate.
//!
//! The parameters are OpenSSL's `pkeyutl -pkeyopt rsa_padding_mode:oaep
//! -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256`, so a stanza can be
//! made or opened with OpenSSL alone.

use std::fmt;

use rsa::Oaep;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Certificate, Error, Identity, Result, Sha256Fingerprint, Thumbprint};

/// Length of a file key in bytes.
pub const FILE_KEY_LEN: usize = 32;

/// A per-archive 256-bit symmetric key. Zeroized on drop; never shown by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct FileKey([u8; FILE_KEY_LEN]);

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

impl FileKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        let mut key = [0u8; FILE_KEY_LEN];
        fill_random(&mut key)?;
        Ok(FileKey(key))
    }

    /// A key from given bytes (test vectors, or a key recovered elsewhere).
    pub fn from_bytes(bytes: [u8; FILE_KEY_LEN]) -> Self {
        FileKey(bytes)
    }

    /// The secret key bytes; a copy made of them is not zeroized when the
    /// key is dropped.
    pub fn expose(&self) -> &[u8; FILE_KEY_LEN] {
        &self.0
    }
}

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Random(e.to_string()))
}

/// A file key wrapped to one recipient, with the recipient's fingerprints.
///
/// Stanzas are public: they are stored in the clear in an archive header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    /// SHA-256 fingerprint of the recipient certificate (used for matching).
    pub sha256: Sha256Fingerprint,
    /// SHA-1 thumbprint of the recipient certificate (shown to operators).
    pub thumbprint: Thumbprint,
    /// The RSA-OAEP ciphertext of the file key (the modulus size in bytes).
    pub wrapped_key: Vec<u8>,
}

/// Wraps `key` to every recipient, one stanza each, in the order given.
pub fn wrap_file_key(key: &FileKey, recipients: &[&Certificate]) -> Result<Vec<Stanza>> {
    recipients
        .iter()
        .map(|cert| {
            let wrapped_key = cert
                .public_key()
                .encrypt(&mut os_rng(), Oaep::<Sha256>::new(), key.expose())
                .map_err(|e| Error::KeyGeneration {
                    reason: format!("RSA-OAEP encryption failed: {e}"),
                })?;
            Ok(Stanza {
                sha256: cert.sha256_fingerprint(),
                thumbprint: cert.thumbprint(),
                wrapped_key,
            })
        })
        .collect()
}

/// Finds the stanza for one of `identities` (by SHA-256 fingerprint) and unwraps the file key.
///
/// When no identity matches, the error lists the thumbprints the data needs.
/// A matching stanza that does not decrypt gives the coarse
/// [`Error::DecryptionFailed`].
pub fn unwrap_file_key(stanzas: &[Stanza], identities: &[&Identity]) -> Result<FileKey> {
    for stanza in stanzas {
        for identity in identities {
            if identity.certificate().sha256_fingerprint() == stanza.sha256 {
                return unwrap_with(identity, &stanza.wrapped_key);
            }
        }
    }
    Err(Error::NoMatchingIdentity {
        needed: stanzas.iter().map(|s| s.thumbprint).collect(),
    })
}

/// Unwraps one RSA-OAEP ciphertext with `identity`'s key.
pub fn unwrap_with(identity: &Identity, wrapped_key: &[u8]) -> Result<FileKey> {
    let plain = zeroize::Zeroizing::new(
        identity
            .private_key()
            .decrypt_blinded(&mut os_rng(), Oaep::<Sha256>::new(), wrapped_key)
            .map_err(|_| Error::DecryptionFailed)?,
    );
    let bytes: [u8; FILE_KEY_LEN] = plain.as_slice().try_into().map_err(|_| Error::DecryptionFailed)?;
    Ok(FileKey(bytes))
}

/// The operating system's generator, as the infallible RNG the `rsa` crate wants.
///
/// If the kernel's generator ever fails, this panics: no key can be made safely
/// without it, and the `rsa` crate offers no fallible path. Every other failure in
/// this crate is an error.
pub(crate) type OsRng = rsa::rand_core::UnwrapErr<getrandom::SysRng>;

pub(crate) fn os_rng() -> OsRng {
    rsa::rand_core::UnwrapErr(getrandom::SysRng)
}
