//! Recipients: X.509 certificates (`.cer`, DER or PEM) holding RSA public keys.
//!
//! The certificate only transports a public key: no chain, expiry or trust is
//! checked (the operator's certificate is usually self-signed). The validity
//! period is exposed so callers can warn about an expired certificate.

use std::fmt;
use std::path::Path;

use rsa::RsaPublicKey;
use rsa::pkcs1::der::Decode as _;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::pem::{base64_decode, find};
use crate::{Error, Result};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds the cost of hostile input).
pub const MAX_RSA_BITS: usize = 8192;

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// The SHA-1 thumbprint of a certificate's DER encoding, as Windows shows it.
///
/// `Display` gives 40 upper-case hex digits (`E128464B…`);
/// [`Thumbprint::to_colon_hex`] gives OpenSSL's `E1:28:46:…` form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Thumbprint(pub [u8; 20]);

/// The SHA-256 fingerprint of a certificate's DER encoding.
///
/// This is what recipient stanzas are matched by; `Display` gives 64
/// upper-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Fingerprint(pub [u8; 32]);

macro_rules! hex_type {
    ($ty:ident, $n:expr) => {
        impl $ty {
            /// The digest as OpenSSL's `-fingerprint` prints it: upper-case hex pairs joined by colons.
            pub fn to_colon_hex(&self) -> String {
                self.0
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }

            /// Parses hex digits, in either case, ignoring colons and spaces.
            pub fn from_hex(text: &str) -> Option<Self> {
                let digits: Vec<u8> = text.bytes().filter(|b| *b != b':' && *b != b' ').collect();
                if digits.len() != 2 * $n {
                    return None;
                }
                let mut out = [0u8; $n];
                for (i, pair) in digits.chunks_exact(2).enumerate() {
                    let s = std::str::from_utf8(pair).ok()?;
                    out[i] = u8::from_str_radix(s, 16).ok()?;
                }
                Some($ty(out))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in &self.0 {
                    write!(f, "{b:02X}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($ty))
            }
        }
    };
}
hex_type!(Thumbprint, 20);
hex_type!(Sha256Fingerprint, 32);

/// A certificate's validity period, in seconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Start of the period.
    pub not_before: i64,
    /// End of the period.
    pub not_after: i64,
}

impl Validity {
    /// Whether `unix_seconds` lies within the period.
    pub fn contains(&self, unix_seconds: i64) -> bool {
        self.not_before <= unix_seconds && unix_seconds <= self.not_after
    }
}

/// A recipient: an X.509 certificate with an RSA public key of at least 2048 bits.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    public_key: RsaPublicKey,
    bits: usize,
    subject: String,
    validity: Validity,
    thumbprint: Thumbprint,
    sha256: Sha256Fingerprint,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject)
            .field("bits", &self.bits)
            .field("thumbprint", &self.thumbprint)
            .field("validity", &self.validity)
            .finish()
    }
}

impl Certificate {
    /// Parses a `.cer` file's contents: DER, or PEM (with a UTF-8 BOM, CRLF
    /// line endings, and text such as OpenSSL's "Bag Attributes" around the
    /// block all tolerated).
    ///
    /// A PEM file with several certificates is refused (never silently cut
    /// to its first): read it with [`Certificate::parse_all`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut all = Self::parse_all(bytes)?;
        match all.len() {
            1 => Ok(all.remove(0)),
            n => Err(Error::InvalidCertificate {
                reason: format!("the file holds {n} certificates where one is expected"),
            }),
        }
    }

    /// Parses a `.cer` file's contents that may hold several certificates:
    /// DER (one), or PEM with one or more `CERTIFICATE` blocks (a bundle),
    /// in file order. Each must be a valid RSA ≥ 2048 certificate.
    pub fn parse_all(bytes: &[u8]) -> Result<Vec<Self>> {
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        if bytes.first() == Some(&0x30) {
            return Ok(vec![Self::from_der(bytes)?]);
        }
        let blocks = pem_certificates_to_der(bytes)?;
        blocks
            .iter()
            .enumerate()
            .map(|(i, der)| {
                Self::from_der(der).map_err(|e| match e {
                    Error::InvalidCertificate { reason } if blocks.len() > 1 => Error::InvalidCertificate {
                        reason: format!("certificate {} of {}: {reason}", i + 1, blocks.len()),
                    },
                    other => other,
                })
            })
            .collect()
    }

    /// Reads and parses a `.cer` file holding one certificate.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::parse(&read_file(path.as_ref())?)
    }

    /// Reads and parses a `.cer` file holding one or more certificates (see
    /// [`Certificate::parse_all`]).
    pub fn from_file_all(path: impl AsRef<Path>) -> Result<Vec<Self>> {
        Self::parse_all(&read_file(path.as_ref())?)
    }

    /// Parses a DER-encoded certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (rest, x509) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| Error::InvalidCertificate { reason: e.to_string() })?;
        if !rest.is_empty() {
            return Err(Error::InvalidCertificate {
                reason: format!("{} bytes follow the certificate", rest.len()),
            });
        }
        let der = &der[..der.len() - rest.len()];
        let spki = x509.public_key();
        let public_key =
            rsa_public_key_from_spki(&spki.algorithm.algorithm.to_id_string(), &spki.subject_public_key.data)?;
        let bits = public_key_bits(&public_key);
        let validity = x509.validity();
        Ok(Certificate {
            der: der.to_vec(),
            bits,
            subject: x509.subject().to_string(),
            validity: Validity {
                not_before: validity.not_before.timestamp(),
                not_after: validity.not_after.timestamp(),
            },
            thumbprint: Thumbprint(Sha1::digest(der).into()),
            sha256: Sha256Fingerprint(Sha256::digest(der).into()),
            public_key,
        })
    }

    /// The certificate's DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The RSA public key.
    pub(crate) fn public_key(&self) -> &RsaPublicKey {
        &self.public_key
    }

    /// Size of the RSA modulus in bits.
    pub fn key_bits(&self) -> usize {
        self.bits
    }

    /// The subject's distinguished name, as text (`CN=…, O=…`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The validity period (not checked by this crate).
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// SHA-1 thumbprint of the DER, as Windows shows it.
    pub fn thumbprint(&self) -> Thumbprint {
        self.thumbprint
    }

    /// SHA-256 fingerprint of the DER.
    pub fn sha256_fingerprint(&self) -> Sha256Fingerprint {
        self.sha256
    }
}

/// Builds and checks an RSA public key from a SubjectPublicKeyInfo's algorithm
/// OID and key bits (a DER `RSAPublicKey`).
pub(crate) fn rsa_public_key_from_spki(algorithm_oid: &str, key_bits: &[u8]) -> Result<RsaPublicKey> {
    if algorithm_oid != OID_RSA_ENCRYPTION {
        return Err(Error::UnsupportedKeyAlgorithm {
            algorithm: algorithm_name(algorithm_oid),
        });
    }
    let pkcs1 = rsa::pkcs1::RsaPublicKeyRef::from_der(key_bits).map_err(|e| Error::InvalidCertificate {
        reason: format!("the RSA public key is malformed: {e}"),
    })?;
    let n_bytes = pkcs1.modulus.as_bytes();
    let e_bytes = pkcs1.public_exponent.as_bytes();
    let n_bits = bit_length(n_bytes);
    if n_bits > MAX_RSA_BITS {
        return Err(Error::InvalidCertificate {
            reason: format!("the RSA key has {n_bits} bits, more than the {MAX_RSA_BITS} this library handles"),
        });
    }
    if n_bits < MIN_RSA_BITS {
        return Err(Error::KeyTooSmall {
            bits: n_bits,
            minimum: MIN_RSA_BITS,
        });
    }
    let precision = u32::try_from(n_bytes.len() * 8).unwrap_or(u32::MAX);
    let n = rsa::BoxedUint::from_be_slice(n_bytes, precision).map_err(|e| Error::InvalidCertificate {
        reason: format!("bad RSA modulus: {e:?}"),
    })?;
    let e_precision = u32::try_from(e_bytes.len().max(1) * 8).unwrap_or(u32::MAX);
    let e = rsa::BoxedUint::from_be_slice(e_bytes, e_precision).map_err(|e| Error::InvalidCertificate {
        reason: format!("bad RSA exponent: {e:?}"),
    })?;
    RsaPublicKey::new_with_size_limits(n, e, MIN_RSA_BITS..=MAX_RSA_BITS).map_err(|e| Error::InvalidCertificate {
        reason: format!("unusable RSA public key: {e}"),
    })
}

pub(crate) fn public_key_bits(key: &RsaPublicKey) -> usize {
    use rsa::traits::PublicKeyParts;
    key.n().bits() as usize
}

fn bit_length(big_endian: &[u8]) -> usize {
    let trimmed: &[u8] = match big_endian.iter().position(|b| *b != 0) {
        Some(i) => &big_endian[i..],
        None => return 0,
    };
    trimmed.len() * 8 - trimmed[0].leading_zeros() as usize
}

pub(crate) fn algorithm_name(oid: &str) -> String {
    let name = match oid {
        "1.2.840.10045.2.1" => "ECDSA (id-ecPublicKey)",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.3.101.110" => "X25519",
        "1.2.840.10040.4.1" => "DSA",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS (a PSS-only RSA key cannot be used for encryption)",
        _ => return format!("an unsupported algorithm (OID {oid})"),
    };
    name.to_string()
}

/// Extracts the first `CERTIFICATE` block of a PEM text and decodes it.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        action: "cannot read certificate",
        path: path.to_owned(),
        source,
    })
}

/// Every `CERTIFICATE` block of a PEM text, decoded, in order (text around
/// and between the blocks is ignored).
fn pem_certificates_to_der(text: &[u8]) -> Result<Vec<Vec<u8>>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = find(rest, BEGIN) {
        let start = at + BEGIN.len();
        let len = find(&rest[start..], END).ok_or_else(|| Error::InvalidCertificate {
            reason: "a PEM block has no \"-----END CERTIFICATE-----\" line".into(),
        })?;
        let body: Vec<u8> = rest[start..start + len]
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        out.push(base64_decode(&body).ok_or_else(|| Error::InvalidCertificate {
            reason: "a PEM block is not valid base64".into(),
        })?);
        rest = &rest[start + len + END.len()..];
    }
    if out.is_empty() {
        return Err(Error::InvalidCertificate {
            reason: "neither DER nor PEM: no \"-----BEGIN CERTIFICATE-----\" line found".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_hex_forms() {
        let t = Thumbprint::from_hex("e1:28:46:4b:e7:34:d0:f8:4b:d9:28:51:6c:50:f1:5a:18:b5:2b:96").unwrap();
        assert_eq!(t.to_string(), "E128464BE734D0F84BD928516C50F15A18B52B96");
        assert!(t.to_colon_hex().starts_with("E1:28:46"));
        assert!(Thumbprint::from_hex("E128").is_none());
        assert!(Thumbprint::from_hex("ZZ28464BE734D0F84BD928516C50F15A18B52B96").is_none());
    }

    #[test]
    fn bit_length_counts_leading_zeros() {
        assert_eq!(bit_length(&[0, 0x01, 0xff]), 9);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[0, 0]), 0);
    }
}
