//! Recipients: X.509 certificates (`.cer`, DER or PEM) holding RSA public keys.
//!
//! The certificate only transports a public key: no chain, expiry or trust is
//! checked (the operator's certificate is usually self-signed). An expired
//! certificate, or one whose key usage leaves out encipherment, is accepted:
//! [`Certificate::warnings`] names what the operator should know about it.
//!
//! A file holding a private key (a PKCS#12 `.pfx`, a PEM private key) given
//! where a certificate is expected is refused with
//! [`Error::PrivateKeyNotCertificate`], which names the kind of file and never
//! quotes it.

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
    /// First second the certificate is valid (its `notBefore`).
    pub not_before: i64,
    /// Last second the certificate is valid (its `notAfter`, inclusive).
    pub not_after: i64,
}

impl Validity {
    /// Whether `unix_seconds` lies within the period.
    pub fn contains(&self, unix_seconds: i64) -> bool {
        self.not_before <= unix_seconds && unix_seconds <= self.not_after
    }
}

/// Something about a certificate that does not stop a backup but that the
/// operator should hear about, as a `warning:` line (its `Display` is that
/// sentence). Returned by [`Certificate::warnings`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateWarning {
    /// The validity period ended before the time given. Backups are still
    /// encrypted to it (no trust is checked), but it is due to be renewed.
    Expired {
        /// End of the validity period, in seconds since the Unix epoch.
        not_after: i64,
    },
    /// The validity period starts after the time given (a clock, or a
    /// certificate issued for later).
    NotYetValid {
        /// Start of the validity period, in seconds since the Unix epoch.
        not_before: i64,
    },
    /// The certificate's key usage extension allows neither key nor data
    /// encipherment: the file key is still wrapped to it, but the certificate
    /// was not issued for encryption.
    NoEncipherment,
}

impl fmt::Display for CertificateWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateWarning::Expired { not_after } => write!(
                f,
                "the certificate expired on {}; backups are still encrypted to it, but issue a new one (and keep the old .pfx for the backups made before)",
                utc_date(*not_after)
            ),
            CertificateWarning::NotYetValid { not_before } => write!(
                f,
                "the certificate is valid only from {}; backups are still encrypted to it, but check this computer's clock",
                utc_date(*not_before)
            ),
            CertificateWarning::NoEncipherment => f.write_str(
                "the certificate's key usage allows neither key nor data encipherment; backups are still encrypted to it, but issue an encryption certificate (keyEncipherment) for the next ones",
            ),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`, or the raw seconds when out of range.
fn utc_date(unix_seconds: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix_seconds) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{unix_seconds} s after 1970"),
    }
}

/// A recipient: an X.509 certificate with an RSA public key of at least 2048 bits.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    /// False when a key usage extension is present and allows neither
    /// keyEncipherment nor dataEncipherment.
    allows_encipherment: bool,
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
        if let Some(what) = pem_private_key_kind(bytes)
            && find(bytes, b"-----BEGIN CERTIFICATE-----").is_none()
        {
            return Err(Error::PrivateKeyNotCertificate { what });
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
    ///
    /// DER that is a PKCS#12 (`.pfx`) file or a private key is refused with
    /// [`Error::PrivateKeyNotCertificate`].
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (rest, x509) = x509_parser::parse_x509_certificate(der).map_err(|e| match der_private_key_kind(der) {
            Some(what) => Error::PrivateKeyNotCertificate { what },
            None => Error::InvalidCertificate { reason: e.to_string() },
        })?;
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
        // An unreadable key usage extension counts as absent: it is only
        // ever a warning.
        let allows_encipherment = match x509.key_usage() {
            Ok(Some(ext)) => ext.value.key_encipherment() || ext.value.data_encipherment(),
            Ok(None) | Err(_) => true,
        };
        Ok(Certificate {
            der: der.to_vec(),
            allows_encipherment,
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

    /// The validity period (not checked by this crate; see
    /// [`Certificate::warnings`]).
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// Whether the key usage allows key or data encipherment (true when the
    /// certificate has no key usage extension, which allows every use).
    pub fn allows_encipherment(&self) -> bool {
        self.allows_encipherment
    }

    /// What the operator should be told about this certificate at
    /// `now_unix_seconds` (the clock is the caller's): expired or not yet
    /// valid, a key usage without encipherment. None of these stops a
    /// backup; each `Display`s as one sentence for a `warning:` line.
    pub fn warnings(&self, now_unix_seconds: i64) -> Vec<CertificateWarning> {
        let mut out = Vec::new();
        if now_unix_seconds > self.validity.not_after {
            out.push(CertificateWarning::Expired {
                not_after: self.validity.not_after,
            });
        } else if now_unix_seconds < self.validity.not_before {
            out.push(CertificateWarning::NotYetValid {
                not_before: self.validity.not_before,
            });
        }
        if !self.allows_encipherment {
            out.push(CertificateWarning::NoEncipherment);
        }
        out
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

/// What kind of private-key file `der` looks like, from its first fields
/// only (it is never decoded further, nor quoted): a PKCS#12 `PFX` is a
/// SEQUENCE opening with `INTEGER 3`, a PKCS#8 or PKCS#1 private key one
/// opening with `INTEGER 0`. A certificate opens with a SEQUENCE.
fn der_private_key_kind(der: &[u8]) -> Option<&'static str> {
    if der.first() != Some(&0x30) {
        return None;
    }
    // Skip the outer length: short form, BER indefinite (0x80), or long form.
    let skip = match *der.get(1)? {
        n if n <= 0x80 => 2,
        n => 2 + usize::from(n & 0x7f),
    };
    match der.get(skip..skip + 3)? {
        [0x02, 0x01, 0x03] => Some("a PKCS#12 (.pfx) file"),
        [0x02, 0x01, 0x00] => Some("a private key (DER)"),
        _ => None,
    }
}

/// What kind of PEM private key `text` holds, from its `BEGIN` line's label.
fn pem_private_key_kind(text: &[u8]) -> Option<&'static str> {
    const KINDS: &[(&[u8], &str)] = &[
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
            "an encrypted private key (PEM)",
        ),
        (b"-----BEGIN RSA PRIVATE KEY-----", "an RSA private key (PEM)"),
        (b"-----BEGIN EC PRIVATE KEY-----", "an EC private key (PEM)"),
        (b"-----BEGIN OPENSSH PRIVATE KEY-----", "an OpenSSH private key"),
        (b"-----BEGIN PRIVATE KEY-----", "a private key (PEM)"),
        (b"-----BEGIN PKCS12-----", "a PKCS#12 (.pfx) file in PEM"),
    ];
    KINDS
        .iter()
        .find(|(begin, _)| find(text, begin).is_some())
        .map(|(_, what)| *what)
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
