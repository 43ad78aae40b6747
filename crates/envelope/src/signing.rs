//! Ed25519 signing keys: the controller signs what it writes, so that
//! recovery can tell its archives from ones an attacker with write access to
//! the share put there.
//!
//! Encryption says nothing about who wrote an archive: anyone holding the
//! operator's certificate (it is public) can make one. The controller
//! therefore keeps a [`SigningKey`] (`NAME.sign.key`) and recovery is given
//! the matching [`VerifyingKey`] (`NAME.sign.pub`), or just its
//! [`SignerFingerprint`] to compare with the key an archive names.
//!
//! ```
//! use ibs_envelope::{SignerFingerprint, SigningKey, VerifyingKey};
//!
//! # fn main() -> Result<(), ibs_envelope::Error> {
//! // The controller, once: a key pair, written as NAME.sign.key and NAME.sign.pub.
//! let key = SigningKey::generate()?;
//! let (key_pem, pub_pem) = (key.to_pem(), key.verifying_key().to_pem());
//!
//! // Each backup: sign.
//! let key = SigningKey::from_pem(key_pem.as_bytes())?;
//! let signature = key.sign(b"what the controller wrote");
//!
//! // Recovery: check the signature with the public key, and the key by its fingerprint.
//! let public = VerifyingKey::from_pem(pub_pem.as_bytes())?;
//! public.verify(b"what the controller wrote", &signature)?;
//! assert!(public.verify(b"what an attacker wrote", &signature).is_err());
//! let expected: SignerFingerprint = public.fingerprint().to_string().parse()?;
//! assert_eq!(public.fingerprint(), expected);
//! # Ok(())
//! # }
//! ```
//!
//! # Key files
//!
//! PEM exactly as OpenSSL writes it, so the usual tools work on the files:
//! `openssl genpkey -algorithm ed25519` makes a key [`SigningKey::from_pem`]
//! reads, and `openssl pkey -in NAME.sign.key -pubout` prints `NAME.sign.pub`
//! byte for byte.
//!
//! - The private key is PKCS#8 (RFC 5208 / RFC 8410), label `PRIVATE KEY`,
//!   unencrypted: the file is protected by its permissions (`ibs keygen`
//!   creates it 0600), as an SSH host key is. The DER for Ed25519 is fixed,
//!   `30 2e 02 01 00 30 05 06 03 2b 65 70 04 22 04 20 ‖ seed`; the version-2
//!   form (RFC 5958, public key attached as `[1]`) is read too, and its
//!   public key must be the seed's.
//! - The public key is a SubjectPublicKeyInfo, label `PUBLIC KEY`:
//!   `30 2a 30 05 06 03 2b 65 70 03 21 00 ‖ public key`.
//!
//! These fixed encodings are compared byte for byte rather than parsed with a
//! general DER decoder: anything else (parameters present, attributes, long
//! length forms, another algorithm) is refused, which is what a strict parser
//! of this one key type should do anyway, and it keeps the `pkcs8`/`spki`
//! crates out of the build.
//!
//! # Verification rules
//!
//! [`VerifyingKey::from_bytes`] refuses encodings that are not canonical
//! (a y coordinate ≥ p, or the sign bit set on x = 0) and points with a
//! small-order component (weak keys, for which one signature can verify
//! against many messages; an honestly made key never has one).
//! [`VerifyingKey::verify`] is `verify_strict`: it also refuses a
//! non-canonical S and a small-order R. So exactly one public key encoding and
//! one signature per message verify, whatever other implementations allow.
//!
//! # The fingerprint
//!
//! A [`SignerFingerprint`] is SHA-256 over `"ibs-signer-ed25519\0"` followed by
//! the 32 public key bytes. The prefix keeps it from colliding with any other
//! hash this project takes of 32 bytes (an SSH or X.509 fingerprint of the
//! same key differs, as it should: they hash other encodings).
//!
//! # Crate choice: `ed25519-dalek` 3.0
//!
//! ed25519-dalek 3.0 (curve25519-dalek 5, `ed25519` 3, `signature` 3) is
//! built on the same RustCrypto 2025 generation as the rest of this crate
//! (sha2 0.11, digest 0.11, the `signature` 3 that `rsa` already uses), so it
//! adds four crates (ed25519-dalek, curve25519-dalek and its derive macro,
//! ed25519; plus fiat-crypto, unused on 64-bit Linux but in the lock file) and
//! no second version of anything: `cargo tree -d` is unchanged. The 2.x line
//! would have pulled sha2 0.10, curve25519-dalek 4, `signature` 2 and
//! `ed25519` 2 beside the versions in use. Features: only `zeroize` (the
//! secret key is wiped on drop); not `fast` (precomputed base-point tables:
//! compile time and binary size for a key that signs a few times per backup),
//! not `pkcs8`/`pem` (see above), not `rand_core` (the seed comes from
//! `getrandom` directly).

use std::fmt;
use std::io::Read as _;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::Signer as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::pem::{self, PemError};
use crate::wrap::fill_random;
use crate::{Error, Result};

/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
const SEED_LEN: usize = 32;

/// Domain separation for [`SignerFingerprint`].
const FINGERPRINT_DOMAIN: &[u8] = b"ibs-signer-ed25519\0";

/// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }`
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const PKCS8_V1_LEN: usize = PKCS8_V1_PREFIX.len() + SEED_LEN;
/// The same with version 1 and, after the seed, `[1] IMPLICIT BIT STRING (public key)`.
const PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const PKCS8_V2_PUBLIC: [u8; 3] = [0x81, 0x21, 0x00];
const PKCS8_V2_LEN: usize = PKCS8_V2_PREFIX.len() + SEED_LEN + PKCS8_V2_PUBLIC.len() + PUBLIC_KEY_LEN;
/// `SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (32 bytes) }`
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
const SPKI_LEN: usize = SPKI_PREFIX.len() + PUBLIC_KEY_LEN;

const PRIVATE_LABEL: &str = "PRIVATE KEY";
const PUBLIC_LABEL: &str = "PUBLIC KEY";
/// Key files are a few hundred bytes; anything much larger is the wrong file.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// An Ed25519 secret key: the controller's, for signing what it writes.
///
/// Zeroized on drop; `Debug` prints `SigningKey(<redacted>, fingerprint …)`,
/// never the secret. Not `Clone`, so the secret exists once.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        fill_random(&mut *seed)?;
        Ok(Self::from_seed(&seed))
    }

    /// The key with this 32-byte seed (RFC 8032's "secret key"); for test
    /// vectors and keys made elsewhere.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SigningKey {
            inner: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// Parses an unencrypted PKCS#8 `PRIVATE KEY` PEM holding an Ed25519 key
    /// (as `ibs keygen --signing` and `openssl genpkey -algorithm ed25519`
    /// write). Text around the block and a UTF-8 byte-order mark are ignored.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let der =
            pem::decode_one(pem, PRIVATE_LABEL).map_err(|e| Error::BadSigningKey(pem_problem(&e, PRIVATE_LABEL)))?;
        Self::from_pkcs8_der(&der)
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let v1 = der.len() == PKCS8_V1_LEN && der[..PKCS8_V1_PREFIX.len()] == PKCS8_V1_PREFIX;
        let v2 = der.len() == PKCS8_V2_LEN && der[..PKCS8_V2_PREFIX.len()] == PKCS8_V2_PREFIX;
        if !v1 && !v2 {
            return Err(Error::BadSigningKey(der_problem(der, PRIVATE_LABEL)));
        }
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        seed.copy_from_slice(&der[PKCS8_V1_PREFIX.len()..PKCS8_V1_PREFIX.len() + SEED_LEN]);
        let key = Self::from_seed(&seed);
        if v2 {
            let tail = &der[PKCS8_V2_PREFIX.len() + SEED_LEN..];
            if tail[..PKCS8_V2_PUBLIC.len()] != PKCS8_V2_PUBLIC {
                return Err(Error::BadSigningKey(
                    "the PKCS#8 (version 2) key has something other than a public key after the secret".into(),
                ));
            }
            if tail[PKCS8_V2_PUBLIC.len()..] != key.verifying_key().as_bytes()[..] {
                return Err(Error::BadSigningKey(
                    "the public key stored with the secret key is not the secret key's own: the file is inconsistent"
                        .into(),
                ));
            }
        }
        Ok(key)
    }

    /// The key as PKCS#8 (version 1) PEM, byte for byte as OpenSSL writes it.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let mut der = Zeroizing::new([0u8; PKCS8_V1_LEN]);
        der[..PKCS8_V1_PREFIX.len()].copy_from_slice(&PKCS8_V1_PREFIX);
        der[PKCS8_V1_PREFIX.len()..].copy_from_slice(self.inner.as_bytes());
        let mut out = Zeroizing::new(String::new());
        pem::encode_into(PRIVATE_LABEL, &*der, &mut out);
        out
    }

    /// Reads a `.sign.key` file (see [`SigningKey::from_pem`]). Errors name
    /// the file, never its contents.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = read_key_file(path, "cannot read signing key")?;
        Self::from_pem(&bytes).map_err(|e| match e {
            Error::BadSigningKey(reason) => Error::BadSigningKey(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// The public half: what a reader is given to check this key's
    /// signatures (recovery's trusted signers).
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: self.inner.verifying_key(),
        }
    }

    /// Signs `message` (pure Ed25519, RFC 8032: deterministic, no context).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.inner.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey(<redacted>, fingerprint {})",
            self.verifying_key().fingerprint()
        )
    }
}

/// An Ed25519 public key: what recovery checks signatures with.
///
/// Only canonical encodings of points without a small-order component are
/// accepted (see the [module documentation](self)). `Debug` shows the
/// fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey {
    inner: ed25519_dalek::VerifyingKey,
}

impl VerifyingKey {
    /// The key with these 32 bytes (RFC 8032's encoding). Refuses an
    /// encoding that is not a point, not canonical, or a weak key (a point
    /// of small order, or with a small-order component).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let inner = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| Error::BadVerifyingKey("the 32 bytes are not a point on the Ed25519 curve".into()))?;
        let point = inner.to_edwards();
        if point.compress().as_bytes() != bytes {
            return Err(Error::BadVerifyingKey(
                "the point is not canonically encoded (another encoding of it is the standard one)".into(),
            ));
        }
        if inner.is_weak() || !point.is_torsion_free() {
            return Err(Error::BadVerifyingKey(
                "a weak key (a point of small order, or with a small-order component): no key made from a secret is one"
                    .into(),
            ));
        }
        Ok(VerifyingKey { inner })
    }

    /// The 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.inner.as_bytes()
    }

    /// Parses a SubjectPublicKeyInfo `PUBLIC KEY` PEM holding an Ed25519 key
    /// (as `openssl pkey -pubout` writes). Text around the block and a UTF-8
    /// byte-order mark are ignored.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let der =
            pem::decode_one(pem, PUBLIC_LABEL).map_err(|e| Error::BadVerifyingKey(pem_problem(&e, PUBLIC_LABEL)))?;
        if der.len() != SPKI_LEN || der[..SPKI_PREFIX.len()] != SPKI_PREFIX {
            return Err(Error::BadVerifyingKey(der_problem(&der, PUBLIC_LABEL)));
        }
        let mut bytes = [0u8; PUBLIC_KEY_LEN];
        bytes.copy_from_slice(&der[SPKI_PREFIX.len()..]);
        Self::from_bytes(&bytes)
    }

    /// The key as SubjectPublicKeyInfo PEM, byte for byte as OpenSSL writes it.
    pub fn to_pem(&self) -> String {
        let mut der = [0u8; SPKI_LEN];
        der[..SPKI_PREFIX.len()].copy_from_slice(&SPKI_PREFIX);
        der[SPKI_PREFIX.len()..].copy_from_slice(self.as_bytes());
        let mut out = String::new();
        pem::encode_into(PUBLIC_LABEL, &der, &mut out);
        out
    }

    /// Reads a `.sign.pub` file (see [`VerifyingKey::from_pem`]). Errors name
    /// the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = read_key_file(path, "cannot read public key")?;
        Self::from_pem(&bytes).map_err(|e| match e {
            Error::BadVerifyingKey(reason) => Error::BadVerifyingKey(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// The key's fingerprint (see [`SignerFingerprint`]).
    pub fn fingerprint(&self) -> SignerFingerprint {
        let mut hash = Sha256::new();
        hash.update(FINGERPRINT_DOMAIN);
        hash.update(self.as_bytes());
        SignerFingerprint(hash.finalize().into())
    }

    /// Checks `signature` over `message`, strictly (`verify_strict`: no
    /// non-canonical S, no small-order R). The error is the coarse
    /// [`Error::SignatureInvalid`] whatever failed.
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> Result<()> {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.inner
            .verify_strict(message, &signature)
            .map_err(|_| Error::SignatureInvalid)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey(fingerprint {})", self.fingerprint())
    }
}

/// Names a signer: SHA-256 of `"ibs-signer-ed25519\0"` followed by the 32
/// public key bytes.
///
/// `Display` gives 64 lower-case hex digits; `FromStr` takes 64 hex digits in
/// either case and nothing else.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignerFingerprint(pub [u8; 32]);

impl fmt::Display for SignerFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SignerFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerFingerprint({self})")
    }
}

impl FromStr for SignerFingerprint {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return Err(Error::BadFingerprint(format!(
                "expected 64 hex digits, found {} characters",
                text.chars().count()
            )));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (Some(hi), Some(lo)) = (hex_value(pair[0]), hex_value(pair[1])) else {
                return Err(Error::BadFingerprint("expected 64 hex digits (0-9, a-f)".into()));
            };
            *byte = (hi << 4) | lo;
        }
        Ok(SignerFingerprint(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Reads a key file into a buffer wiped on drop, refusing anything larger
/// than a key file can be.
fn read_key_file(path: &Path, action: &'static str) -> Result<Zeroizing<Vec<u8>>> {
    let io = |source| Error::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // Sized up front: growing the buffer would leave copies of the key in freed memory.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE as usize + 1));
    file.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_KEY_FILE} bytes, so not a key file"),
        )));
    }
    Ok(bytes)
}

/// Says what is wrong with a PEM text that should hold a `wanted` block,
/// with a hint where the file is recognisably another kind of key.
fn pem_problem(error: &PemError, wanted: &str) -> String {
    match error {
        PemError::NotPem => format!("not PEM text: no \"-----BEGIN {wanted}-----\" line"),
        PemError::Missing { found } => {
            let hint = found.iter().find_map(|label| label_hint(label, wanted));
            let list = found.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ");
            match hint {
                Some(hint) => format!("no \"{wanted}\" block (found {list}): {hint}"),
                None => format!("no \"{wanted}\" block (found {list})"),
            }
        }
        PemError::Several(n) => format!("{n} \"{wanted}\" blocks where one is expected"),
        PemError::NoEnd => "a PEM block has no matching \"-----END …-----\" line".into(),
        PemError::BadLabel => "a \"-----BEGIN\" line is malformed".into(),
        PemError::BadBase64 => format!("the \"{wanted}\" block is not valid base64"),
    }
}

fn label_hint(label: &str, wanted: &str) -> Option<&'static str> {
    Some(match (label, wanted) {
        (PUBLIC_LABEL, PRIVATE_LABEL) => "this is a public key; the signing key is the matching .sign.key file",
        (PRIVATE_LABEL, PUBLIC_LABEL) => {
            "this is a private key; give the public key (.sign.pub), which `openssl pkey -in KEY -pubout` prints"
        }
        ("ENCRYPTED PRIVATE KEY", _) => {
            "the key is password-protected; ibs reads unencrypted keys protected by file permissions (decrypt it with `openssl pkey -in KEY -out NEW.sign.key`)"
        }
        ("OPENSSH PRIVATE KEY", _) => {
            "this is an OpenSSH key; make a signing key with `ibs keygen --signing` or `openssl genpkey -algorithm ed25519`"
        }
        ("CERTIFICATE", _) => "this is an X.509 certificate, not an Ed25519 key",
        _ if label.ends_with(" PRIVATE KEY") => {
            "a key of another algorithm or encoding; signing keys are Ed25519 in PKCS#8"
        }
        _ => return None,
    })
}

/// Says why a decoded PEM block is not the Ed25519 encoding expected, naming
/// the algorithm when the DER names a well-known other one. Only the
/// algorithm's name is told, never bytes of the key.
fn der_problem(der: &[u8], label: &str) -> String {
    const OTHERS: [(&[u8], &str); 5] = [
        (&[0x06, 0x03, 0x2b, 0x65, 0x71], "Ed448"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x6e], "X25519"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x6f], "X448"),
        (
            &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            "RSA",
        ),
        (&[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01], "ECDSA"),
    ];
    let header = der.len().min(24);
    if let Some((_, name)) = OTHERS.iter().find(|(oid, _)| pem::find(&der[..header], oid).is_some()) {
        return format!("the key is {name}; signing keys are Ed25519 (`ibs keygen --signing`)");
    }
    let form = if label == PRIVATE_LABEL {
        "PKCS#8"
    } else {
        "SubjectPublicKeyInfo"
    };
    format!(
        "the \"{label}\" block ({} bytes) is not the {form} encoding of an Ed25519 key",
        der.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
        bytes.try_into().unwrap()
    }

    fn test_key() -> SigningKey {
        SigningKey::from_seed(&[7u8; 32])
    }

    #[test]
    fn rfc8032_test_1() {
        let key = SigningKey::from_seed(&array(&hex(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        )));
        let public = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        assert_eq!(key.verifying_key().as_bytes()[..], public[..]);
        let signature = hex(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        );
        assert_eq!(key.sign(b"")[..], signature[..]);
        let verifying = VerifyingKey::from_bytes(&array(&public)).unwrap();
        verifying.verify(b"", &array(&signature)).unwrap();
    }

    #[test]
    fn sign_verify_round_trip_and_every_flipped_bit_fails() {
        let key = test_key();
        let public = key.verifying_key();
        let message = b"archive header, 2026-11-30";
        let signature = key.sign(message);
        public.verify(message, &signature).unwrap();
        for bit in 0..message.len() * 8 {
            let mut changed = *message;
            changed[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(
                public.verify(&changed, &signature),
                Err(Error::SignatureInvalid)
            ));
        }
        for bit in 0..SIGNATURE_LEN * 8 {
            let mut changed = signature;
            changed[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(public.verify(message, &changed), Err(Error::SignatureInvalid)),
                "bit {bit}"
            );
        }
        let other = SigningKey::from_seed(&[8u8; 32]).verifying_key();
        assert!(matches!(
            other.verify(message, &signature),
            Err(Error::SignatureInvalid)
        ));
    }

    #[test]
    fn generated_keys_differ_and_work() {
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::generate().unwrap();
        assert_ne!(a.verifying_key(), b.verifying_key());
        a.verifying_key().verify(b"x", &a.sign(b"x")).unwrap();
    }

    #[test]
    fn pem_round_trips_in_openssl_layout() {
        let key = test_key();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"));
        assert!(pem.ends_with("\n-----END PRIVATE KEY-----\n"));
        assert_eq!(pem.lines().count(), 3);
        let again = SigningKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(again.verifying_key(), key.verifying_key());

        let public = key.verifying_key().to_pem();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"));
        assert_eq!(public.lines().count(), 3);
        assert_eq!(VerifyingKey::from_pem(public.as_bytes()).unwrap(), key.verifying_key());
        // CRLF, a byte-order mark and text around the block are tolerated.
        let windows = format!("\u{feff}my key\r\n{}", public.replace('\n', "\r\n"));
        assert_eq!(VerifyingKey::from_pem(windows.as_bytes()).unwrap(), key.verifying_key());
    }

    fn private_pem(der: &[u8]) -> String {
        let mut out = String::new();
        pem::encode_into(PRIVATE_LABEL, der, &mut out);
        out
    }

    #[test]
    fn pkcs8_version_2_needs_the_matching_public_key() {
        let key = test_key();
        let mut der = PKCS8_V2_PREFIX.to_vec();
        der.extend_from_slice(&[7u8; 32]);
        der.extend_from_slice(&PKCS8_V2_PUBLIC);
        der.extend_from_slice(key.verifying_key().as_bytes());
        let parsed = SigningKey::from_pem(private_pem(&der).as_bytes()).unwrap();
        assert_eq!(parsed.verifying_key(), key.verifying_key());

        let mut wrong = der.clone();
        *wrong.last_mut().unwrap() ^= 1;
        let err = SigningKey::from_pem(private_pem(&wrong).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("inconsistent"), "{err}");
        let mut bad_tag = der;
        bad_tag[48] = 0xa1;
        assert!(SigningKey::from_pem(private_pem(&bad_tag).as_bytes()).is_err());
    }

    #[test]
    fn other_encodings_are_refused() {
        let mut v1 = PKCS8_V1_PREFIX.to_vec();
        v1.extend_from_slice(&[7u8; 32]);
        // Explicit NULL parameters, a trailing byte, a shortened seed, a long-form length.
        let mut with_null = vec![
            0x30, 0x30, 0x02, 0x01, 0x00, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00,
        ];
        with_null.extend_from_slice(&v1[12..]);
        let mut trailing = v1.clone();
        trailing.push(0);
        let mut long_form = vec![0x30, 0x81, 0x2e];
        long_form.extend_from_slice(&v1[2..]);
        for der in [with_null, trailing, v1[..47].to_vec(), long_form, Vec::new()] {
            let err = SigningKey::from_pem(private_pem(&der).as_bytes()).unwrap_err();
            assert!(matches!(err, Error::BadSigningKey(_)), "{err}");
        }
        // An Ed448 key (what `openssl genpkey -algorithm ed448` writes) is named.
        let ed448 = "-----BEGIN PRIVATE KEY-----\nMEcCAQAwBQYDK2VxBDsEORg2boeAHdLsv76weA3sw4tYN0G15ZNMYBMYIuOv+K4r\nS/6hU0CypUtHN8/JCmxpP0TRGvbq2N1mDg==\n-----END PRIVATE KEY-----\n";
        let err = SigningKey::from_pem(ed448.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("Ed448"), "{err}");
    }

    #[test]
    fn wrong_kind_of_pem_gets_a_hint() {
        let key = test_key();
        let err = SigningKey::from_pem(key.verifying_key().to_pem().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("this is a public key"), "{err}");
        let err = VerifyingKey::from_pem(key.to_pem().as_bytes()).unwrap_err().to_string();
        assert!(err.contains("this is a private key"), "{err}");
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nZm9v\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = SigningKey::from_pem(encrypted.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("password-protected"), "{err}");
    }

    #[test]
    fn garbage_and_truncations_are_errors_not_panics() {
        let pem = test_key().to_pem();
        let public = test_key().verifying_key().to_pem();
        for text in [pem.as_bytes(), public.as_bytes()] {
            // Everything short of the final newline.
            for cut in 0..text.len() - 1 {
                assert!(SigningKey::from_pem(&text[..cut]).is_err());
                assert!(VerifyingKey::from_pem(&text[..cut]).is_err());
            }
        }
        for garbage in [
            &b""[..],
            b"\0\0\0",
            b"-----BEGIN",
            b"-----BEGIN -----",
            b"\xff\xfe-----BEGIN PRIVATE KEY-----",
        ] {
            assert!(SigningKey::from_pem(garbage).is_err());
            assert!(VerifyingKey::from_pem(garbage).is_err());
        }
    }

    #[test]
    fn errors_never_quote_the_key() {
        let pem = test_key().to_pem();
        let body = pem.lines().nth(1).unwrap();
        let mut damaged = pem.replace(body, &format!("{}*", &body[..63]));
        damaged.push_str("trailing text\n");
        for text in [damaged.clone(), pem[..pem.len() - 5].to_string()] {
            let err = SigningKey::from_pem(text.as_bytes()).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(&body[20..40]), "{shown}");
        }
    }

    #[test]
    fn weak_and_non_canonical_public_keys_are_refused() {
        // Identity, the point of order 2, one of order 4 (y = 0), and the
        // identity with the sign bit set (non-canonical).
        let mut order_2 = [0xffu8; 32];
        order_2[0] = 0xec;
        order_2[31] = 0x7f;
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut signed_identity = identity;
        signed_identity[31] = 0x80;
        for bytes in [identity, order_2, [0u8; 32], signed_identity] {
            assert!(matches!(
                VerifyingKey::from_bytes(&bytes),
                Err(Error::BadVerifyingKey(_))
            ));
        }

        // y + p for small y: the same point as y, encoded non-canonically.
        let mut found = 0;
        for y in 2u8..=18 {
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + y;
            bytes[31] = 0x7f;
            if let Ok(dalek) = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                && !dalek.is_weak()
            {
                found += 1;
                let err = VerifyingKey::from_bytes(&bytes).unwrap_err().to_string();
                assert!(err.contains("canonical"), "{err}");
            }
        }
        assert!(found > 0, "no non-canonical test point");

        // A real key plus a point of order 4: a mixed-order point.
        let real = test_key().verifying_key().inner.to_edwards();
        let torsion = ed25519_dalek::VerifyingKey::from_bytes(&[0u8; 32])
            .unwrap()
            .to_edwards();
        let mixed = ed25519_dalek::VerifyingKey::from(real + torsion);
        let err = VerifyingKey::from_bytes(mixed.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("weak"), "{err}");

        // The same through a PEM file.
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&identity);
        let mut text = String::new();
        pem::encode_into(PUBLIC_LABEL, &der, &mut text);
        assert!(matches!(
            VerifyingKey::from_pem(text.as_bytes()),
            Err(Error::BadVerifyingKey(_))
        ));
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = SigningKey::from_seed(&[0xabu8; 32]);
        let shown = format!("{key:?}");
        assert!(shown.starts_with("SigningKey(<redacted>, fingerprint "), "{shown}");
        assert!(!shown.to_lowercase().contains("abababab"), "{shown}");
        assert!(!shown.contains(&key.to_pem()[28..60]));
        let fingerprint = key.verifying_key().fingerprint().to_string();
        assert!(shown.contains(&fingerprint));
        assert_eq!(
            format!("{:?}", key.verifying_key()),
            format!("VerifyingKey(fingerprint {fingerprint})")
        );
    }

    #[test]
    fn fingerprint_is_domain_separated_sha256_in_lower_hex() {
        let key = test_key().verifying_key();
        let mut input = b"ibs-signer-ed25519\0".to_vec();
        input.extend_from_slice(key.as_bytes());
        let want: [u8; 32] = Sha256::digest(&input).into();
        let fingerprint = key.fingerprint();
        assert_eq!(fingerprint.0, want);
        let text = fingerprint.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(text.parse::<SignerFingerprint>().unwrap(), fingerprint);
        assert_eq!(text.to_uppercase().parse::<SignerFingerprint>().unwrap(), fingerprint);
        assert_eq!(format!("{fingerprint:?}"), format!("SignerFingerprint({text})"));
        for bad in [
            "",
            &text[..62],
            &format!("{text}0"),
            &format!("{}g", &text[..63]),
            &format!(" {}", &text[1..]),
        ] {
            assert!(
                matches!(bad.parse::<SignerFingerprint>(), Err(Error::BadFingerprint(_))),
                "{bad:?}"
            );
        }
        // Non-ASCII of the right byte length is an error, not a panic on a char boundary.
        let odd = format!("é{}", &text[2..]);
        assert!(odd.parse::<SignerFingerprint>().is_err());
    }

    #[test]
    fn key_files_read_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = test_key();
        let key_path = dir.path().join("c.sign.key");
        let pub_path = dir.path().join("c.sign.pub");
        std::fs::write(&key_path, key.to_pem().as_bytes()).unwrap();
        std::fs::write(&pub_path, key.verifying_key().to_pem()).unwrap();
        assert_eq!(
            SigningKey::from_file(&key_path).unwrap().verifying_key(),
            VerifyingKey::from_file(&pub_path).unwrap()
        );
        let err = SigningKey::from_file(&pub_path).unwrap_err().to_string();
        assert!(err.contains("c.sign.pub"), "{err}");
        let err = VerifyingKey::from_file(&dir.path().join("missing.pub"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pub"), "{err}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_KEY_FILE as usize + 1]).unwrap();
        assert!(matches!(SigningKey::from_file(&big), Err(Error::Io { .. })));
    }
}
