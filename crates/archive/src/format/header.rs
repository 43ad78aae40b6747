//! The header: magic, version, parameters, labels, recipient stanzas,
//! signer, and a MAC under the archive's key.

use ibs_envelope::{FileKey, Identity, SALT_LEN, Sha256Fingerprint, Stanza, Thumbprint};
use sha2::{Digest, Sha256};

use super::{
    ArchiveId, ArchiveKeys, COMPRESSION_ZSTD, FORMAT_VERSION, FORMAT_VERSION_1, MAX_FRAME_SIZE, MIN_FRAME_SIZE,
};
use crate::bytes_io::{Cursor, put_string};
use crate::{Error, Region, Result};

/// The first eight bytes of every archive.
pub const MAGIC: [u8; 8] = *b"\x89IBS\r\n\x1a\n";
/// Bytes of the header needed to learn its length: magic, version, length.
pub const HEADER_PREFIX_LEN: usize = 14;
/// Length of the header MAC (HMAC-SHA256).
pub const HEADER_MAC_LEN: usize = 32;
/// Largest header a reader accepts.
pub const MAX_HEADER_LEN: u32 = 1 << 20;
/// Longest producer version string.
pub const MAX_PRODUCER_VERSION_LEN: usize = 256;
/// Most labels in a header.
pub const MAX_LABELS: usize = 64;
/// Longest label key.
pub const MAX_LABEL_KEY_LEN: usize = 64;
/// Longest label value.
pub const MAX_LABEL_VALUE_LEN: usize = 1024;
/// Most recipients in a header.
pub const MAX_RECIPIENTS: usize = 32;

const RSA_WRAPPED_MIN: usize = 256;
const RSA_WRAPPED_MAX: usize = 1024;

/// Everything the header records, before it is encoded and MACed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderFields {
    /// The archive's id (also in the footer).
    pub archive_id: ArchiveId,
    /// Creation time, Unix seconds (UTC).
    pub created: i64,
    /// Plaintext bytes per data frame (the last frame may be shorter).
    pub frame_size: u32,
    /// Compression algorithm ([`COMPRESSION_ZSTD`]).
    pub compression: u8,
    /// HKDF salt of this archive's keys.
    pub salt: [u8; SALT_LEN],
    /// Key commitment ([`ArchiveKeys::commitment`]).
    pub commitment: [u8; 32],
    /// Version of the system that made the backup (recovery's version rule reads it).
    pub producer_version: String,
    /// Free-form key/value labels (fqdn, region, host, …), in the clear.
    pub labels: Vec<(String, String)>,
    /// The file key wrapped to each recipient certificate.
    pub recipients: Vec<Stanza>,
    /// The format version (1 or 2; writers write 2).
    pub version: u16,
    /// The signer's Ed25519 public key (version 2), if the archive is signed.
    pub signer: Option<[u8; 32]>,
}

/// A decoded (or freshly sealed) header, with the exact bytes it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    fields: HeaderFields,
    bytes: Vec<u8>,
}

impl Header {
    /// From the first [`HEADER_PREFIX_LEN`] bytes: checks magic and version and
    /// returns the header's full length.
    pub fn peek_len(prefix: &[u8]) -> Result<usize> {
        let mut c = Cursor::new(prefix, Region::Header, 0);
        if c.array::<8>("magic")? != MAGIC {
            return Err(Error::NotAnArchive { offset: 0 });
        }
        let version = c.u16("format version")?;
        if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let len = c.u32("header length")?;
        let min = (HEADER_PREFIX_LEN + HEADER_MAC_LEN) as u32;
        if !(min..=MAX_HEADER_LEN).contains(&len) {
            return Err(Error::malformed(
                Region::Header,
                10,
                format!("header length {len} outside {min}..={MAX_HEADER_LEN}"),
            ));
        }
        Ok(len as usize)
    }

    /// Encodes `fields` and appends the MAC made with `keys`.
    pub(crate) fn seal(fields: HeaderFields, keys: &ArchiveKeys) -> Result<Header> {
        check_header_fields(&fields)?;
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&fields.version.to_le_bytes());
        out.extend_from_slice(&[0u8; 4]); // length, patched below
        out.extend_from_slice(&fields.archive_id.0);
        out.extend_from_slice(&fields.created.to_le_bytes());
        out.extend_from_slice(&fields.frame_size.to_le_bytes());
        out.push(fields.compression);
        out.push(0); // flags
        out.extend_from_slice(&fields.salt);
        out.extend_from_slice(&fields.commitment);
        put_string(&mut out, &fields.producer_version);
        out.extend_from_slice(&(fields.labels.len() as u16).to_le_bytes());
        for (k, v) in &fields.labels {
            put_string(&mut out, k);
            put_string(&mut out, v);
        }
        out.extend_from_slice(&(fields.recipients.len() as u16).to_le_bytes());
        for r in &fields.recipients {
            out.extend_from_slice(&r.sha256.0);
            out.extend_from_slice(&r.thumbprint.0);
            out.extend_from_slice(&(r.wrapped_key.len() as u16).to_le_bytes());
            out.extend_from_slice(&r.wrapped_key);
        }
        if fields.version >= FORMAT_VERSION {
            match &fields.signer {
                None => out.push(crate::v2::SIGNER_NONE),
                Some(key) => {
                    out.push(crate::v2::SIGNER_ED25519);
                    out.extend_from_slice(key);
                }
            }
        }
        let len = u32::try_from(out.len() + HEADER_MAC_LEN)
            .ok()
            .filter(|l| *l <= MAX_HEADER_LEN)
            .ok_or_else(|| Error::Usage("header larger than 1 MiB".into()))?;
        out[10..14].copy_from_slice(&len.to_le_bytes());
        let mac = keys.mac(&out);
        out.extend_from_slice(&mac);
        Ok(Header { fields, bytes: out })
    }

    /// Decodes a whole header (exactly [`Header::peek_len`] bytes). Checks its
    /// structure but not its MAC, which needs the key (`ArchiveReader::open` checks it).
    pub fn decode(bytes: &[u8]) -> Result<Header> {
        let len = Header::peek_len(bytes)?;
        if bytes.len() != len {
            return Err(Error::malformed(
                Region::Header,
                bytes.len().min(len) as u64,
                format!("header is {len} bytes, got {}", bytes.len()),
            ));
        }
        let mut c = Cursor::new(&bytes[..len - HEADER_MAC_LEN], Region::Header, 0);
        c.take(HEADER_PREFIX_LEN, "prefix")?;
        let archive_id = ArchiveId(c.array("archive id")?);
        let created = c.i64("creation time")?;
        let at = c.offset();
        let frame_size = c.u32("frame size")?;
        if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&frame_size) {
            return Err(Error::malformed(
                Region::Header,
                at,
                format!("frame size {frame_size} outside {MIN_FRAME_SIZE}..={MAX_FRAME_SIZE}"),
            ));
        }
        let at = c.offset();
        let compression = c.u8("compression")?;
        if compression != COMPRESSION_ZSTD {
            return Err(Error::malformed(
                Region::Header,
                at,
                format!("unknown compression {compression}"),
            ));
        }
        let at = c.offset();
        if c.u8("flags")? != 0 {
            return Err(Error::malformed(Region::Header, at, "unknown header flags"));
        }
        let salt = c.array("salt")?;
        let commitment = c.array("key commitment")?;
        let producer_version = c.string("producer version", MAX_PRODUCER_VERSION_LEN)?;
        let at = c.offset();
        let n_labels = usize::from(c.u16("label count")?);
        if n_labels > MAX_LABELS {
            return Err(Error::malformed(
                Region::Header,
                at,
                format!("{n_labels} labels, at most {MAX_LABELS}"),
            ));
        }
        let mut labels = Vec::with_capacity(n_labels);
        for _ in 0..n_labels {
            let k = c.string("label key", MAX_LABEL_KEY_LEN)?;
            let v = c.string("label value", MAX_LABEL_VALUE_LEN)?;
            labels.push((k, v));
        }
        let at = c.offset();
        let n_recipients = usize::from(c.u16("recipient count")?);
        if !(1..=MAX_RECIPIENTS).contains(&n_recipients) {
            return Err(Error::malformed(
                Region::Header,
                at,
                format!("{n_recipients} recipients, expected 1..={MAX_RECIPIENTS}"),
            ));
        }
        let mut recipients = Vec::with_capacity(n_recipients);
        for _ in 0..n_recipients {
            let sha256 = Sha256Fingerprint(c.array("recipient SHA-256 fingerprint")?);
            let thumbprint = Thumbprint(c.array("recipient thumbprint")?);
            let at = c.offset();
            let wlen = usize::from(c.u16("wrapped key length")?);
            if !(RSA_WRAPPED_MIN..=RSA_WRAPPED_MAX).contains(&wlen) {
                return Err(Error::malformed(
                    Region::Header,
                    at,
                    format!("wrapped key of {wlen} bytes, expected {RSA_WRAPPED_MIN}..={RSA_WRAPPED_MAX}"),
                ));
            }
            let wrapped_key = c.take(wlen, "wrapped key")?.to_vec();
            recipients.push(Stanza {
                sha256,
                thumbprint,
                wrapped_key,
            });
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        let signer = if version >= FORMAT_VERSION {
            let at = c.offset();
            match c.u8("signer algorithm")? {
                crate::v2::SIGNER_NONE => None,
                crate::v2::SIGNER_ED25519 => Some(c.array("signer public key")?),
                other => {
                    return Err(Error::malformed(
                        Region::Header,
                        at,
                        format!("unknown signer algorithm {other}"),
                    ));
                }
            }
        } else {
            None
        };
        c.expect_end("header fields")?;
        Ok(Header {
            fields: HeaderFields {
                archive_id,
                created,
                frame_size,
                compression,
                salt,
                commitment,
                producer_version,
                labels,
                recipients,
                version,
                signer,
            },
            bytes: bytes.to_vec(),
        })
    }

    /// The decoded fields.
    pub fn fields(&self) -> &HeaderFields {
        &self.fields
    }

    /// The exact encoded bytes, MAC included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the encoded header: the associated data of every chunk.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.bytes).into()
    }

    /// Unwraps the file key with one of `identities`, checks the key
    /// commitment and the header MAC, and returns the archive's keys.
    ///
    /// No matching identity gives [`ibs_envelope::Error::NoMatchingIdentity`]
    /// (inside [`Error::Envelope`]) listing the thumbprints the archive needs.
    pub(crate) fn unlock(&self, identities: &[&Identity]) -> Result<ArchiveKeys> {
        let file_key = ibs_envelope::unwrap_file_key(&self.fields.recipients, identities).map_err(|e| match e {
            ibs_envelope::Error::DecryptionFailed => Error::Authentication { region: Region::Header },
            other => Error::Envelope(other),
        })?;
        self.unlock_with(&file_key)
    }

    /// Like `Header::unlock`, with the file key already in hand.
    pub(crate) fn unlock_with(&self, file_key: &FileKey) -> Result<ArchiveKeys> {
        let keys = ArchiveKeys::derive(file_key, &self.fields.salt);
        keys.verify_commitment(&self.fields.commitment)?;
        let (body, mac) = self.bytes.split_at(self.bytes.len() - HEADER_MAC_LEN);
        let expected = keys.mac(body);
        let diff = expected.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(Error::Authentication { region: Region::Header });
        }
        Ok(keys)
    }
}

fn check_header_fields(f: &HeaderFields) -> Result<()> {
    let usage = |m: String| Err(Error::Usage(m));
    if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&f.frame_size) {
        return usage(format!(
            "frame size {} outside {MIN_FRAME_SIZE}..={MAX_FRAME_SIZE}",
            f.frame_size
        ));
    }
    if f.producer_version.len() > MAX_PRODUCER_VERSION_LEN {
        return usage(format!("producer version longer than {MAX_PRODUCER_VERSION_LEN} bytes"));
    }
    if f.labels.len() > MAX_LABELS {
        return usage(format!("more than {MAX_LABELS} labels"));
    }
    for (k, v) in &f.labels {
        if k.len() > MAX_LABEL_KEY_LEN || v.len() > MAX_LABEL_VALUE_LEN {
            return usage(format!(
                "label {k:?} too long (key ≤ {MAX_LABEL_KEY_LEN}, value ≤ {MAX_LABEL_VALUE_LEN} bytes)"
            ));
        }
    }
    if f.version != FORMAT_VERSION && f.version != FORMAT_VERSION_1 {
        return usage(format!("format version {} is not one this library writes", f.version));
    }
    if f.version == FORMAT_VERSION_1 && f.signer.is_some() {
        return usage("a version 1 archive cannot be signed".into());
    }
    if !(1..=MAX_RECIPIENTS).contains(&f.recipients.len()) {
        return usage(format!("an archive needs 1..={MAX_RECIPIENTS} recipients"));
    }
    if f.recipients
        .iter()
        .any(|r| !(RSA_WRAPPED_MIN..=RSA_WRAPPED_MAX).contains(&r.wrapped_key.len()))
    {
        return usage("wrapped keys must be 256..=1024 bytes (RSA 2048..8192)".into());
    }
    Ok(())
}
