//! Self-signed RSA key pairs for backup encryption, written as `.cer` + `.pfx`.
//!
//! The certificate is signed with the key itself (PKCS#1 v1.5 / SHA-256, built on
//! the `rsa` crate so no other crypto provider is pulled in), carries the
//! `keyEncipherment` and `dataEncipherment` key usages, and a subject key
//! identifier computed by RFC 5280 method 1 (SHA-1 of the public key bits), and
//! `basicConstraints` CA:FALSE.

use std::fmt;
use std::path::{Path, PathBuf};

use p12_keystore::{EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKeyChain};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyUsagePurpose, PKCS_RSA_SHA256, PublicKeyData,
    SerialNumber, SignatureAlgorithm, SigningKey,
};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPublicKey as _;
use rsa::pkcs8::EncodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::wrap::{fill_random, os_rng};
use crate::{Certificate, Error, Identity, Password, Result};

/// RSA modulus sizes offered for new key pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeySize {
    /// 2048 bits (default; the minimum accepted).
    #[default]
    Rsa2048,
    /// 3072 bits.
    Rsa3072,
    /// 4096 bits.
    Rsa4096,
}

impl KeySize {
    /// The size in bits.
    pub fn bits(self) -> usize {
        match self {
            KeySize::Rsa2048 => 2048,
            KeySize::Rsa3072 => 3072,
            KeySize::Rsa4096 => 4096,
        }
    }

    /// The size for a bit count, if offered.
    pub fn from_bits(bits: usize) -> Option<Self> {
        match bits {
            2048 => Some(KeySize::Rsa2048),
            3072 => Some(KeySize::Rsa3072),
            4096 => Some(KeySize::Rsa4096),
            _ => None,
        }
    }
}

/// How the `.pfx` is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PfxEncoding {
    /// PBES2 with AES-256-CBC and an HMAC-SHA256 MAC (Windows 10 1709+, OpenSSL 3).
    #[default]
    Aes256Sha256,
    /// pbeWithSHAAnd3-KeyTripleDES-CBC and an HMAC-SHA1 MAC, for older Windows imports.
    Legacy3DesSha1,
}

/// Parameters of a new key pair.
#[derive(Clone, Debug)]
pub struct KeygenOptions {
    /// Common name of the certificate's subject.
    pub common_name: String,
    /// Modulus size.
    pub key_size: KeySize,
    /// Start of validity, seconds since the Unix epoch (the caller's clock).
    pub not_before: i64,
    /// Length of validity in days.
    pub validity_days: u32,
    /// Encoding of the `.pfx`.
    pub pfx_encoding: PfxEncoding,
}

impl KeygenOptions {
    /// Defaults (RSA-2048, AES-256 `.pfx`, 5 years) for a certificate valid from `now`.
    pub fn new(common_name: impl Into<String>, now_unix: i64) -> Self {
        KeygenOptions {
            common_name: common_name.into(),
            key_size: KeySize::default(),
            not_before: now_unix,
            validity_days: 5 * 365,
            pfx_encoding: PfxEncoding::default(),
        }
    }
}

/// A generated key pair: the certificate to hand to the backing-up side and
/// the password-protected `.pfx` to keep offline for recovery.
pub struct GeneratedKeyPair {
    /// The certificate, DER-encoded (`.cer`).
    pub cer: Vec<u8>,
    /// The PKCS#12 file (`.pfx`): holds the private key, encrypted under the password.
    pub pfx: Zeroizing<Vec<u8>>,
    /// The same certificate as `cer`, parsed: its thumbprint and validity,
    /// ready to encrypt backups to.
    pub certificate: Certificate,
}

impl fmt::Debug for GeneratedKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKeyPair")
            .field("certificate", &self.certificate)
            .field("pfx", &"<encrypted>")
            .finish()
    }
}

impl GeneratedKeyPair {
    /// Writes `DIR/NAME.cer` and `DIR/NAME.pfx`; refuses to overwrite either.
    /// The `.pfx` is created with mode 0600 on Unix. Returns the two paths.
    pub fn write_to(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        let cer_path = dir.join(format!("{name}.cer"));
        let pfx_path = dir.join(format!("{name}.pfx"));
        write_new(&cer_path, &self.cer, 0o644)?;
        if let Err(e) = write_new(&pfx_path, &self.pfx, 0o600) {
            let _ = std::fs::remove_file(&cer_path);
            return Err(e);
        }
        Ok((cer_path, pfx_path))
    }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let io = |source| Error::Io {
        action: "cannot write",
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Generates a self-signed RSA key pair and encodes it as `.cer` + `.pfx`.
pub fn generate(options: &KeygenOptions, password: &Password) -> Result<GeneratedKeyPair> {
    let key = RsaPrivateKey::new(&mut os_rng(), options.key_size.bits()).map_err(|e| Error::KeyGeneration {
        reason: format!("RSA key generation failed: {e}"),
    })?;
    let cer = self_signed_certificate(&key, options)?;
    let certificate = Certificate::from_der(&cer)?;
    let identity = Identity::from_parts(key, certificate.clone())?;
    let pfx = encode_pfx(&identity, password, options.pfx_encoding)?;
    Ok(GeneratedKeyPair { cer, pfx, certificate })
}

/// Encodes an identity as a password-protected PKCS#12 file.
pub fn encode_pfx(identity: &Identity, password: &Password, encoding: PfxEncoding) -> Result<Zeroizing<Vec<u8>>> {
    let fail = |e: p12_keystore::error::Error| Error::KeyGeneration {
        reason: format!("PKCS#12 encoding failed: {e}"),
    };
    let pkcs8 = identity
        .private_key()
        .to_pkcs8_der()
        .map_err(|e| Error::KeyGeneration {
            reason: format!("PKCS#8 encoding failed: {e}"),
        })?;
    let key = p12_keystore::PrivateKey::from_der(pkcs8.as_bytes()).map_err(fail)?;
    let cert = p12_keystore::Certificate::from_der(identity.certificate().der()).map_err(fail)?;
    let local_key_id = identity.certificate().thumbprint().0.to_vec();
    let chain = PrivateKeyChain::new(local_key_id, key, [cert]);
    let mut store = KeyStore::new();
    store.add_entry("ibs-backup-encryption", KeyStoreEntry::PrivateKeyChain(chain));
    let writer = store.writer(password.expose());
    let writer = match encoding {
        PfxEncoding::Aes256Sha256 => writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .mac_algorithm(MacAlgorithm::HmacSha256),
        PfxEncoding::Legacy3DesSha1 => writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(MacAlgorithm::HmacSha1),
    };
    writer.write().map(Zeroizing::new).map_err(fail)
}

fn self_signed_certificate(key: &RsaPrivateKey, options: &KeygenOptions) -> Result<Vec<u8>> {
    let fail = |e: rcgen::Error| Error::KeyGeneration {
        reason: format!("certificate encoding failed: {e}"),
    };
    let signer = RsaSigner::new(key)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, options.common_name.as_str());
    params.distinguished_name = dn;
    params.not_before =
        time::OffsetDateTime::from_unix_timestamp(options.not_before).map_err(|e| Error::KeyGeneration {
            reason: format!("bad start of validity: {e}"),
        })?;
    params.not_after = params.not_before + time::Duration::days(i64::from(options.validity_days));
    params.key_usages = vec![KeyUsagePurpose::KeyEncipherment, KeyUsagePurpose::DataEncipherment];
    // An end-entity certificate: rcgen writes the subject key identifier with basicConstraints.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_identifier_method = KeyIdMethod::PreSpecified(Sha1::digest(&signer.public_der).to_vec());
    let mut serial = [0u8; 16];
    fill_random(&mut serial)?;
    serial[0] &= 0x7f; // a positive INTEGER
    serial[0] |= 0x01; // of full length
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&signer).map_err(fail)?;
    Ok(cert.der().to_vec())
}

struct RsaSigner {
    key: rsa::pkcs1v15::SigningKey<Sha256>,
    /// DER `RSAPublicKey`: the bits of the SubjectPublicKeyInfo.
    public_der: Vec<u8>,
}

impl RsaSigner {
    fn new(key: &RsaPrivateKey) -> Result<Self> {
        let public_der = key
            .to_public_key()
            .to_pkcs1_der()
            .map_err(|e| Error::KeyGeneration {
                reason: format!("public key encoding failed: {e}"),
            })?
            .into_vec();
        Ok(RsaSigner {
            key: rsa::pkcs1v15::SigningKey::new(key.clone()),
            public_der,
        })
    }
}

impl PublicKeyData for RsaSigner {
    fn der_bytes(&self) -> &[u8] {
        &self.public_der
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_RSA_SHA256
    }
}

impl SigningKey for RsaSigner {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        self.key
            .try_sign(msg)
            .map(|sig| sig.to_vec())
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}
