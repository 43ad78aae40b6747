//! Chunked AEAD: AES-256-GCM in the STREAM construction (as age uses it).
//!
//! * Keys come from the file key by HKDF-SHA256 with a per-archive random salt
//!   ([`derive_key`]); the payload key uses info `ibs-envelope/v1 payload`.
//! * A **key commitment** (HKDF info `ibs-envelope/v1 commitment`, 32 bytes) is
//!   stored beside the ciphertext and checked before any chunk is opened, so one
//!   ciphertext cannot be made to decrypt under two different file keys (GCM
//!   alone is not key-committing).
//! * Chunk `i` uses the 96-bit nonce `i` as an 11-byte big-endian counter followed
//!   by one flag byte, `0x01` for the final chunk and `0x00` otherwise. Reordered,
//!   duplicated or dropped chunks fail to authenticate; a stream cut at a chunk
//!   boundary is caught because its new last chunk was not sealed as final.
//! * Each chunk authenticates caller-chosen associated data (the archive binds its
//!   header this way).
//!
//! Chunk `N` opens on its own ([`PayloadKey::open_chunk`]) without touching
//! the chunks before it: that is what random access into an archive uses.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::wrap::fill_random;
use crate::{Error, FileKey, Result};

/// Length of the per-archive HKDF salt.
pub const SALT_LEN: usize = 32;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Length of the GCM tag appended to each chunk.
pub const TAG_LEN: usize = 16;

const INFO_PAYLOAD: &[u8] = b"ibs-envelope/v1 payload";
const INFO_COMMITMENT: &[u8] = b"ibs-envelope/v1 commitment";

/// Derives a 256-bit subkey of `file_key`: HKDF-SHA256 with `salt` and `info`.
pub fn derive_key(file_key: &FileKey, salt: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(salt), file_key.expose());
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so this cannot fail.
    let _ = hk.expand(info, out.as_mut_slice());
    out
}

/// A fresh random salt.
pub fn generate_salt() -> Result<[u8; SALT_LEN]> {
    let mut salt = [0u8; SALT_LEN];
    fill_random(&mut salt)?;
    Ok(salt)
}

/// The chunk key of one stream, with its key commitment.
pub struct PayloadKey {
    cipher: Aes256Gcm,
    commitment: [u8; COMMITMENT_LEN],
}

impl std::fmt::Debug for PayloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayloadKey(<redacted>)")
    }
}

impl PayloadKey {
    /// Derives the payload key and commitment from a file key and salt.
    pub fn derive(file_key: &FileKey, salt: &[u8; SALT_LEN]) -> Self {
        let key = derive_key(file_key, salt, INFO_PAYLOAD);
        let commitment = *derive_key(file_key, salt, INFO_COMMITMENT);
        let cipher = Aes256Gcm::new(&(*key).into());
        PayloadKey { cipher, commitment }
    }

    /// The key commitment to store beside the ciphertext.
    pub fn commitment(&self) -> &[u8; COMMITMENT_LEN] {
        &self.commitment
    }

    /// Checks a stored commitment (constant time). A mismatch means a wrong
    /// key or forged data, and gives the coarse [`Error::DecryptionFailed`].
    pub fn verify_commitment(&self, stored: &[u8]) -> Result<()> {
        if stored.len() != COMMITMENT_LEN {
            return Err(Error::DecryptionFailed);
        }
        let diff = stored
            .iter()
            .zip(&self.commitment)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(())
        } else {
            Err(Error::DecryptionFailed)
        }
    }

    /// Encrypts `buf` in place as chunk `index` and appends the tag.
    pub fn seal_chunk(&self, index: u64, last: bool, aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
        self.cipher
            .encrypt_in_place(&nonce(index, last).into(), aad, buf)
            .map_err(|_| Error::TooManyChunks)
    }

    /// Authenticates and decrypts chunk `index` in place (ciphertext followed
    /// by its tag); on success `buf` holds the plaintext.
    pub fn open_chunk(&self, index: u64, last: bool, aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
        self.cipher
            .decrypt_in_place(&nonce(index, last).into(), aad, buf)
            .map_err(|_| Error::DecryptionFailed)
    }
}

fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Seals chunks in order, numbering them and refusing any after the final one.
#[derive(Debug)]
pub struct StreamSealer<'k> {
    key: &'k PayloadKey,
    next: u64,
    finished: bool,
}

impl<'k> StreamSealer<'k> {
    /// Starts at chunk 0.
    pub fn new(key: &'k PayloadKey) -> Self {
        StreamSealer {
            key,
            next: 0,
            finished: false,
        }
    }

    /// Seals the next chunk; returns its index.
    pub fn seal_next(&mut self, last: bool, aad: &[u8], buf: &mut Vec<u8>) -> Result<u64> {
        if self.finished {
            return Err(Error::TrailingData);
        }
        let index = self.next;
        self.key.seal_chunk(index, last, aad, buf)?;
        self.next = self.next.checked_add(1).ok_or(Error::TooManyChunks)?;
        self.finished = last;
        Ok(index)
    }
}

/// Opens chunks in order; [`StreamOpener::finish`] reports a missing final chunk.
#[derive(Debug)]
pub struct StreamOpener<'k> {
    key: &'k PayloadKey,
    next: u64,
    finished: bool,
}

impl<'k> StreamOpener<'k> {
    /// Starts at chunk 0.
    pub fn new(key: &'k PayloadKey) -> Self {
        StreamOpener {
            key,
            next: 0,
            finished: false,
        }
    }

    /// Opens the next chunk. `last` says whether the caller's framing puts this
    /// chunk at the end of the stream. A chunk cut short of its final chunk is
    /// reported as [`Error::Truncated`], a final chunk that is followed by more
    /// as [`Error::TrailingData`].
    pub fn open_next(&mut self, last: bool, aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
        if self.finished {
            return Err(Error::TrailingData);
        }
        let index = self.next;
        if let Err(e) = self.key.open_chunk(index, last, aad, buf) {
            // Tell truncation and extension apart from damage, without ever
            // returning plaintext that did not authenticate as what was asked.
            let mut probe = buf.clone();
            return Err(match self.key.open_chunk(index, !last, aad, &mut probe) {
                Ok(()) if last => Error::Truncated,
                Ok(()) => Error::TrailingData,
                Err(_) => e,
            });
        }
        self.next = self.next.checked_add(1).ok_or(Error::TooManyChunks)?;
        self.finished = last;
        Ok(())
    }

    /// Succeeds only if the final chunk has been opened.
    pub fn finish(self) -> Result<()> {
        if self.finished { Ok(()) } else { Err(Error::Truncated) }
    }
}

/// Encrypts a whole message: `salt ‖ commitment ‖ chunk₀ ‖ … ‖ chunkₙ`, each
/// chunk `chunk_size` bytes of plaintext (the last one possibly shorter, or
/// empty for an empty message) followed by its tag.
///
/// A convenience over [`PayloadKey`] for small messages and tests; the archive
/// format frames its chunks itself.
pub fn seal_message(file_key: &FileKey, aad: &[u8], plaintext: &[u8], chunk_size: usize) -> Result<Vec<u8>> {
    let chunk_size = chunk_size.max(1);
    let salt = generate_salt()?;
    let key = PayloadKey::derive(file_key, &salt);
    let mut out =
        Vec::with_capacity(SALT_LEN + COMMITMENT_LEN + plaintext.len() + TAG_LEN * (plaintext.len() / chunk_size + 1));
    out.extend_from_slice(&salt);
    out.extend_from_slice(key.commitment());
    let mut sealer = StreamSealer::new(&key);
    let mut chunks = plaintext.chunks(chunk_size).peekable();
    if chunks.peek().is_none() {
        let mut buf = Vec::with_capacity(TAG_LEN);
        sealer.seal_next(true, aad, &mut buf)?;
        out.extend_from_slice(&buf);
    }
    while let Some(chunk) = chunks.next() {
        let mut buf = Vec::with_capacity(chunk.len() + TAG_LEN);
        buf.extend_from_slice(chunk);
        sealer.seal_next(chunks.peek().is_none(), aad, &mut buf)?;
        out.extend_from_slice(&buf);
    }
    Ok(out)
}

/// Decrypts what [`seal_message`] made with the same `aad` and `chunk_size`.
pub fn open_message(file_key: &FileKey, aad: &[u8], sealed: &[u8], chunk_size: usize) -> Result<Zeroizing<Vec<u8>>> {
    let chunk_size = chunk_size.max(1);
    if sealed.len() < SALT_LEN + COMMITMENT_LEN {
        return Err(Error::Truncated);
    }
    let (salt, rest) = sealed.split_at(SALT_LEN);
    let (commitment, body) = rest.split_at(COMMITMENT_LEN);
    let mut salt_arr = [0u8; SALT_LEN];
    salt_arr.copy_from_slice(salt);
    let key = PayloadKey::derive(file_key, &salt_arr);
    key.verify_commitment(commitment)?;
    if body.len() < TAG_LEN {
        return Err(Error::Truncated);
    }
    let mut opener = StreamOpener::new(&key);
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    let mut chunks = body.chunks(chunk_size + TAG_LEN).peekable();
    while let Some(chunk) = chunks.next() {
        let mut buf = chunk.to_vec();
        opener.open_next(chunks.peek().is_none(), aad, &mut buf)?;
        out.extend_from_slice(&buf);
    }
    opener.finish()?;
    Ok(out)
}
