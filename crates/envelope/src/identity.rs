//! Identities: a `.pfx` (PKCS#12) file's RSA private key with its certificate.
//!
//! Read with `p12-keystore`, which handles both the modern encoding (PBES2 with
//! AES-256-CBC, HMAC-SHA256 MAC; Windows "AES256-SHA256", Firefox, OpenSSL 3)
//! and the legacy one (pbeWithSHAAnd3-KeyTripleDES-CBC and RC2-40, HMAC-SHA1
//! MAC; Windows "TripleDES-SHA1", macOS, OpenSSL `-legacy`).
//!
//! The decrypted PKCS#8 bytes pass through `p12-keystore`'s own buffers, which
//! it does not zeroize; the parsed key is held in an [`rsa::RsaPrivateKey`],
//! which zeroizes its components on drop. Nothing here persists the key.

use std::fmt;
use std::path::Path;

use p12_keystore::Pkcs12Archive;
use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use zeroize::Zeroizing;

use crate::cert::{MIN_RSA_BITS, algorithm_name, public_key_bits};
use crate::{Certificate, Error, Password, Result};

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// A private key and the certificate it belongs to, loaded from a `.pfx`.
///
/// `Debug` shows the certificate only; the key is zeroized on drop.
pub struct Identity {
    certificate: Certificate,
    key: RsaPrivateKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("certificate", &self.certificate)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// Opens a `.pfx` file's contents with `password`.
    ///
    /// Errors: [`Error::WrongPassword`] when the MAC or the decryption fails
    /// under the password; [`Error::NoPrivateKey`], [`Error::NoCertificate`],
    /// [`Error::KeyCertificateMismatch`] for incomplete files;
    /// [`Error::InvalidPfx`] for bytes that are not PKCS#12 at all. Never panics.
    pub fn from_pkcs12(pfx: &[u8], password: &Password) -> Result<Self> {
        let archive = parse_pkcs12(pfx, password)?;
        if archive.keys.is_empty() {
            return Err(Error::NoPrivateKey);
        }
        let mut certificates = Vec::new();
        let mut last_error = None;
        for bag in &archive.certs {
            match Certificate::from_der(bag.cert.as_der()) {
                Ok(c) => certificates.push(c),
                Err(e) => last_error = Some(e),
            }
        }
        if certificates.is_empty() {
            return Err(last_error.unwrap_or(Error::NoCertificate));
        }
        let mut key_error = None;
        for bag in &archive.keys {
            let key = match rsa_private_key(bag.key.as_der()) {
                Ok(key) => key,
                Err(e) => {
                    key_error = Some(e);
                    continue;
                }
            };
            if let Some(cert) = certificates
                .iter()
                .find(|c| c.public_key().n() == key.n() && c.public_key().e() == key.e())
            {
                return Ok(Identity {
                    certificate: cert.clone(),
                    key,
                });
            }
        }
        Err(key_error.unwrap_or(Error::KeyCertificateMismatch))
    }

    /// Reads a `.pfx` file and opens it with `password`.
    pub fn from_file(path: impl AsRef<Path>, password: &Password) -> Result<Self> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| Error::Io {
            action: "cannot read .pfx file",
            path: path.to_owned(),
            source,
        })?);
        Self::from_pkcs12(&bytes, password)
    }

    /// Builds an identity from a private key and its certificate.
    pub(crate) fn from_parts(key: RsaPrivateKey, certificate: Certificate) -> Result<Self> {
        if certificate.public_key().n() != key.n() || certificate.public_key().e() != key.e() {
            return Err(Error::KeyCertificateMismatch);
        }
        Ok(Identity { certificate, key })
    }

    /// The certificate this identity decrypts for.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    pub(crate) fn private_key(&self) -> &RsaPrivateKey {
        &self.key
    }
}

fn parse_pkcs12(pfx: &[u8], password: &Password) -> Result<Pkcs12Archive> {
    if crate::ber::is_ber(pfx) {
        let der = Zeroizing::new(crate::ber::normalize_pfx(pfx, password)?);
        return parse_der_pkcs12(&der, password);
    }
    parse_der_pkcs12(pfx, password)
}

fn parse_der_pkcs12(pfx: &[u8], password: &Password) -> Result<Pkcs12Archive> {
    // p12-keystore is not fuzzed by its authors; a panic on hostile input must
    // still reach the caller as an error (the workspace builds with unwind).
    let result = std::panic::catch_unwind(|| Pkcs12Archive::from_pkcs12(pfx, password.expose()));
    match result {
        Ok(Ok(archive)) => Ok(archive),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(Error::InvalidPfx {
            reason: "the PKCS#12 structure could not be decoded".into(),
        }),
    }
}

fn classify(e: p12_keystore::error::Error) -> Error {
    use p12_keystore::error::Error as P;
    match e {
        // The MAC is the password check; files without a MAC fail at decryption
        // (bad padding), which is the same answer for the operator.
        P::MacError(_) | P::UnpadError | P::Pkcs5Error(_) => Error::WrongPassword,
        other => Error::InvalidPfx {
            reason: other.to_string(),
        },
    }
}

fn rsa_private_key(pkcs8: &[u8]) -> Result<RsaPrivateKey> {
    let info = rsa::pkcs8::PrivateKeyInfoRef::try_from(pkcs8).map_err(|e| Error::InvalidPfx {
        reason: format!("the private key is not valid PKCS#8: {e}"),
    })?;
    let oid = info.algorithm.oid.to_string();
    if oid != OID_RSA_ENCRYPTION {
        return Err(Error::UnsupportedKeyAlgorithm {
            algorithm: algorithm_name(&oid),
        });
    }
    let key = RsaPrivateKey::from_pkcs8_der(pkcs8).map_err(|e| Error::InvalidPfx {
        reason: format!("the RSA private key is malformed: {e}"),
    })?;
    let bits = public_key_bits(key.as_public_key());
    if bits < MIN_RSA_BITS {
        return Err(Error::KeyTooSmall {
            bits,
            minimum: MIN_RSA_BITS,
        });
    }
    Ok(key)
}
