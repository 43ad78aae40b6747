//! The keys of one archive, derived from its file key and salt, and the
//! chunks they seal: every data frame, index piece, root and (version 1)
//! index is one chunk of the archive's STREAM, stored or zstd-compressed
//! behind an encoding byte.

use std::fmt;

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use ibs_envelope::{FileKey, PayloadKey, SALT_LEN, TAG_LEN};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::header::HEADER_MAC_LEN;
use crate::{Error, Region, Result};

/// Frame encoding byte: the payload is the plaintext itself.
pub const ENCODING_STORED: u8 = 0;
/// Frame encoding byte: the payload is one zstd frame that declares its content size.
pub const ENCODING_ZSTD: u8 = 1;

const INFO_HEADER_MAC: &[u8] = b"ibs-archive/v1 header mac";

/// The keys of one archive, derived from its file key and salt.
pub struct ArchiveKeys {
    payload: PayloadKey,
    header_mac: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for ArchiveKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ArchiveKeys(<redacted>)")
    }
}

impl ArchiveKeys {
    /// Derives the payload key, key commitment and header MAC key.
    pub fn derive(file_key: &FileKey, salt: &[u8; SALT_LEN]) -> Self {
        ArchiveKeys {
            payload: PayloadKey::derive(file_key, salt),
            header_mac: ibs_envelope::derive_key(file_key, salt, INFO_HEADER_MAC),
        }
    }

    /// The key commitment stored in the header.
    pub fn commitment(&self) -> &[u8; 32] {
        self.payload.commitment()
    }

    pub(super) fn verify_commitment(&self, stored: &[u8]) -> Result<()> {
        self.payload
            .verify_commitment(stored)
            .map_err(|_| Error::Authentication { region: Region::Header })
    }

    pub(super) fn mac(&self, data: &[u8]) -> [u8; HEADER_MAC_LEN] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match hmac::Hmac::<Sha256>::new_from_slice(self.header_mac.as_slice()) {
            Ok(mac) => mac,
            Err(_) => return [0u8; HEADER_MAC_LEN],
        };
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Seals one chunk: the plaintext is compressed with `compressor` if
    /// one is given and that makes it smaller, otherwise stored; prefixed
    /// with its encoding byte; and sealed as chunk `counter` of the
    /// archive's STREAM with the header digest as associated data.
    ///
    /// Whether to compress a chunk, and at which level, is the writer's
    /// policy (its `FrameCompressor`); readers only ever see a stored or a
    /// zstd chunk.
    ///
    /// Data frames are never `last`; the index (version 1) or root (version 2) is.
    pub fn seal_chunk(
        &self,
        header_digest: &[u8; 32],
        counter: u64,
        last: bool,
        plain: &[u8],
        compressor: Option<&mut zstd::bulk::Compressor<'_>>,
    ) -> Result<Vec<u8>> {
        let region = if last { Region::Index } else { Region::Frame(counter) };
        let mut out = Vec::new();
        if let Some(compressor) = compressor {
            // Compressed straight into the spare capacity after the encoding
            // byte (no zero-fill first), with room for the tag.
            out.reserve_exact(1 + zstd::zstd_safe::compress_bound(plain.len()) + TAG_LEN);
            out.push(ENCODING_ZSTD);
            let mut cursor = std::io::Cursor::new(out);
            cursor.set_position(1);
            let n = compressor
                .compress_to_buffer(plain, &mut cursor)
                .map_err(|e| Error::Compression {
                    region,
                    reason: e.to_string(),
                })?;
            out = cursor.into_inner();
            debug_assert_eq!(out.len(), 1 + n);
            if n >= plain.len() {
                out.clear();
            } else {
                // The bound is the plaintext's size: a frame that compressed
                // 4× would hold 4× its size while it waits for upload (an
                // object store buffers 8 MiB parts of them). Shrinking gives
                // the tail back in place.
                out.shrink_to(1 + n + TAG_LEN);
            }
        }
        if out.is_empty() {
            out.reserve_exact(1 + plain.len() + TAG_LEN);
            out.push(ENCODING_STORED);
            out.extend_from_slice(plain);
        }
        self.payload
            .seal_chunk(counter, last, header_digest, &mut out)
            .map_err(|_| Error::Usage("an archive cannot hold 2^88 frames".into()))?;
        Ok(out)
    }

    /// Opens chunk `counter` and returns its plaintext (decrypted in place; a
    /// stored chunk's plaintext is not copied again).
    ///
    /// `expected_len` is the plaintext length the index promises for a data
    /// frame; for the index (`last`) it is the largest length accepted.
    pub fn open_chunk(
        &self,
        header_digest: &[u8; 32],
        counter: u64,
        last: bool,
        sealed: Vec<u8>,
        expected_len: usize,
        decompressor: &mut zstd::bulk::Decompressor<'_>,
    ) -> Result<Bytes> {
        let region = if last { Region::Index } else { Region::Frame(counter) };
        self.open_chunk_in(
            header_digest,
            counter,
            last,
            sealed,
            expected_len,
            !last,
            region,
            decompressor,
        )
    }

    /// [`open_chunk`](Self::open_chunk) with the region named in errors
    /// given, and `exact` saying whether the plaintext must be exactly
    /// `len` bytes (a data frame) or at most `len` (an index, piece or root).
    #[allow(clippy::too_many_arguments)]
    pub fn open_chunk_in(
        &self,
        header_digest: &[u8; 32],
        counter: u64,
        last: bool,
        mut sealed: Vec<u8>,
        expected_len: usize,
        exact: bool,
        region: Region,
        decompressor: &mut zstd::bulk::Decompressor<'_>,
    ) -> Result<Bytes> {
        let at_most = !exact;
        self.payload
            .open_chunk(counter, last, header_digest, &mut sealed)
            .map_err(|_| Error::Authentication { region })?;
        let (&encoding, payload) = sealed
            .split_first()
            .ok_or_else(|| Error::malformed(region, 0, "empty chunk"))?;
        match encoding {
            ENCODING_STORED => {
                if (at_most && payload.len() > expected_len) || (!at_most && payload.len() != expected_len) {
                    return Err(Error::malformed(
                        region,
                        0,
                        format!("{} stored bytes, expected {expected_len}", payload.len()),
                    ));
                }
                Ok(Bytes::from(sealed).slice(1..))
            }
            ENCODING_ZSTD => {
                // Exactly one frame: no second frame, skippable frame or
                // trailing bytes (some libraries skip those silently).
                match zstd::zstd_safe::find_frame_compressed_size(payload) {
                    Ok(n) if n == payload.len() => {}
                    _ => {
                        return Err(Error::malformed(
                            region,
                            1,
                            "the zstd payload is not exactly one frame (trailing bytes or a second frame)",
                        ));
                    }
                }
                let declared = zstd::zstd_safe::get_frame_content_size(payload)
                    .ok()
                    .flatten()
                    .ok_or_else(|| Error::malformed(region, 1, "zstd frame does not declare its content size"))?;
                let len = usize::try_from(declared).unwrap_or(usize::MAX);
                if (at_most && len > expected_len) || (!at_most && len != expected_len) {
                    return Err(Error::malformed(
                        region,
                        1,
                        format!("zstd frame declares {declared} bytes, expected {expected_len}"),
                    ));
                }
                // Decompressed straight into the spare capacity (no zero-fill first).
                let mut out = Vec::new();
                out.try_reserve_exact(len).map_err(|_| {
                    Error::malformed(region, 1, format!("no memory for the {len} bytes the frame declares"))
                })?;
                let n = decompressor
                    .decompress_to_buffer(payload, &mut out)
                    .map_err(|e| Error::Compression {
                        region,
                        reason: e.to_string(),
                    })?;
                if n != len {
                    return Err(Error::malformed(
                        region,
                        1,
                        format!("zstd frame holds {n} bytes, declared {len}"),
                    ));
                }
                Ok(Bytes::from(out))
            }
            other => Err(Error::malformed(region, 0, format!("unknown frame encoding {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zstd_chunk_is_exactly_one_frame() {
        let keys = ArchiveKeys::derive(&FileKey::from_bytes([7; 32]), &[1; SALT_LEN]);
        let digest = [3u8; 32];
        let raw = b"hello hello hello hello";
        let frame = zstd::bulk::compress(raw, 1).unwrap();
        let skippable = [0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0];
        let mut decompressor = zstd::bulk::Decompressor::new().unwrap();
        for (extra, ok) in [
            (&[][..], true),
            (&frame[..], false),
            (&skippable[..], false),
            (&b"junk"[..], false),
            (&[0u8][..], false),
        ] {
            let mut chunk = vec![ENCODING_ZSTD];
            chunk.extend_from_slice(&frame);
            chunk.extend_from_slice(extra);
            keys.payload.seal_chunk(0, false, &digest, &mut chunk).unwrap();
            let opened = keys.open_chunk(&digest, 0, false, chunk, raw.len(), &mut decompressor);
            assert_eq!(opened.is_ok(), ok, "extra {extra:?}: {opened:?}");
        }
    }
}
