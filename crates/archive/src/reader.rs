//! The random-access reader: open an archive through byte-range reads, list its
//! entries, stream one entry, or verify everything.
//!
//! Opening reads the header, the footer and the sealed index — three range
//! reads, whatever the archive's size. Reading an entry then reads only the
//! frames that hold it. [`inspect`] does the keyless part (header and footer
//! structure, recipients) for catalogues that hold no private key.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use futures::io::{AsyncWrite, AsyncWriteExt};
use ibs_envelope::{FileKey, Identity, SignerFingerprint, Thumbprint, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::entry::{Entry, EntryKind, path_cmp};
use crate::format::{
    ArchiveKeys, FOOTER_LEN, FORMAT_VERSION_1, Footer, HEADER_PREFIX_LEN, Header, HeaderFields, MIN_SEALED_FRAME_LEN,
    open_index,
};
use crate::read_ahead::ReadAhead;
use crate::v2::{
    FOOTER_LEN_V2, FooterV2, MAX_PIECE_LEN, MAX_ROOT_LEN, Root, TreeCheck, decode_piece, signature_message,
};
use crate::writer::{Progress, ProgressFn};
use crate::{Error, ReadError, Region, Result};

/// Anything an archive can be read from by byte range: a file, a buffer, an
/// object on a storage target (the recovery crate adapts those).
///
/// The signature agrees with a storage target's `read_range`: a range in,
/// [`Bytes`] out, and the source's own error type, which the reader hands
/// back typed inside [`ReadError::Read`].
#[async_trait]
pub trait RangeRead: Send + Sync {
    /// What a failed read is.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Total length in bytes.
    async fn size(&self) -> Result<u64, Self::Error>;
    /// The bytes of `range`, all of them (a range past the end is an error).
    async fn read_range(&self, range: Range<u64>) -> Result<Bytes, Self::Error>;
}

/// The bytes of `range` there are in `data`: an in-memory buffer cannot
/// fail, and a range past its end gives fewer bytes, which the reader
/// reports ([`Error::ShortRead`]).
fn slice_range(data: &[u8], range: &Range<u64>) -> std::ops::Range<usize> {
    let clamp = |at: u64| usize::try_from(at).unwrap_or(usize::MAX).min(data.len());
    let end = clamp(range.end);
    clamp(range.start).min(end)..end
}

/// A buffer in memory: reading it cannot fail.
#[async_trait]
impl RangeRead for Vec<u8> {
    type Error = Infallible;
    async fn size(&self) -> Result<u64, Infallible> {
        Ok(self.as_slice().len() as u64)
    }
    async fn read_range(&self, range: Range<u64>) -> Result<Bytes, Infallible> {
        Ok(Bytes::copy_from_slice(&self[slice_range(self, &range)]))
    }
}

/// A buffer in memory: reading it cannot fail, and ranges are not copied.
#[async_trait]
impl RangeRead for Bytes {
    type Error = Infallible;
    async fn size(&self) -> Result<u64, Infallible> {
        Ok(self.as_ref().len() as u64)
    }
    async fn read_range(&self, range: Range<u64>) -> Result<Bytes, Infallible> {
        Ok(self.slice(slice_range(self, &range)))
    }
}

/// Positional reads (`pread`), off the async thread.
///
/// Inside a tokio runtime each call runs on the runtime's blocking pool
/// (`spawn_blocking`, on a duplicate of the file handle), so a slow disk or
/// network file system never holds an async worker. Outside one (the
/// [`blocking`] API, or any `futures::executor::block_on`) there is no pool
/// and no async thread to keep free: the read runs on the calling thread,
/// which asked to block. This is what object_store's local store does.
#[cfg(unix)]
#[async_trait]
impl RangeRead for std::fs::File {
    type Error = io::Error;
    async fn size(&self) -> io::Result<u64> {
        off_thread(self, |file| Ok(file.metadata()?.len())).await
    }
    async fn read_range(&self, range: Range<u64>) -> io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let len = range
            .end
            .checked_sub(range.start)
            .and_then(|len| usize::try_from(len).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "reversed or oversized range"))?;
        off_thread(self, move |file| {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, range.start)?;
            Ok(Bytes::from(buf))
        })
        .await
    }
}

/// Runs `f` on the file on tokio's blocking pool when there is a runtime,
/// else in place (see the [`RangeRead`] implementation for `File`).
#[cfg(unix)]
async fn off_thread<T: Send + 'static>(
    file: &std::fs::File,
    f: impl FnOnce(&std::fs::File) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let file = file.try_clone()?;
            runtime
                .spawn_blocking(move || f(&file))
                .await
                .map_err(io::Error::other)?
        }
        Err(_) => f(file),
    }
}

#[async_trait]
impl<T: RangeRead + ?Sized> RangeRead for Arc<T> {
    type Error = T::Error;
    async fn size(&self) -> Result<u64, T::Error> {
        (**self).size().await
    }
    async fn read_range(&self, range: Range<u64>) -> Result<Bytes, T::Error> {
        (**self).read_range(range).await
    }
}

#[async_trait]
impl<T: RangeRead + ?Sized> RangeRead for &T {
    type Error = T::Error;
    async fn size(&self) -> Result<u64, T::Error> {
        (**self).size().await
    }
    async fn read_range(&self, range: Range<u64>) -> Result<Bytes, T::Error> {
        (**self).read_range(range).await
    }
}

/// `Result` of a reader over a source whose errors are `E`.
type ReadResult<T, E> = std::result::Result<T, ReadError<E>>;

/// Exactly `len` bytes at `offset`, as a vector (opening a chunk decrypts it in place).
async fn read_at<R: RangeRead + ?Sized>(source: &R, offset: u64, len: usize) -> ReadResult<Vec<u8>, R::Error> {
    read_bytes_at(source, offset, len).await.map(Vec::from)
}

/// Exactly `len` bytes at `offset`, as the source gave them.
async fn read_bytes_at<R: RangeRead + ?Sized>(source: &R, offset: u64, len: usize) -> ReadResult<Bytes, R::Error> {
    let short = |got: usize| Error::ShortRead {
        offset,
        len: len as u64,
        got: got as u64,
    };
    let end = offset.checked_add(len as u64).ok_or_else(|| short(0))?;
    let out = source.read_range(offset..end).await.map_err(|error| ReadError::Read {
        offset,
        len: len as u64,
        error,
    })?;
    if out.len() != len {
        return Err(short(out.len()).into());
    }
    Ok(out)
}

/// The footer of either format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFooter {
    /// Version 1: where the index is.
    V1(Footer),
    /// Version 2: where the root and the signature are.
    V2(FooterV2),
}

impl ArchiveFooter {
    /// The archive id the footer carries.
    pub fn archive_id(&self) -> crate::ArchiveId {
        match self {
            ArchiveFooter::V1(f) => f.archive_id,
            ArchiveFooter::V2(f) => f.archive_id,
        }
    }

    /// The number of data frames.
    pub fn frame_count(&self) -> u64 {
        match self {
            ArchiveFooter::V1(f) => f.frame_count,
            ArchiveFooter::V2(f) => f.frame_count,
        }
    }
}

/// What can be learnt about an archive without its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// The decoded header (MAC not yet checked unless the archive was opened).
    pub header: Header,
    /// The decoded footer: the archive id, the frame count, and where the
    /// index (version 1) or the root and signature (version 2) are.
    pub footer: ArchiveFooter,
    /// Total length of the archive in bytes (the source's size).
    pub archive_len: u64,
}

impl ArchiveInfo {
    /// The format version (1 or 2).
    pub fn version(&self) -> u16 {
        self.fields().version
    }

    /// The fingerprint of the signer the header names (a claim until the
    /// signature is checked: [`check_signature`], or opening the archive).
    pub fn signer_fingerprint(&self) -> Option<SignerFingerprint> {
        self.fields()
            .signer
            .and_then(|k| VerifyingKey::from_bytes(&k).ok())
            .map(|k| k.fingerprint())
    }

    /// The header's fields: id, creation time, producer version, labels, recipients.
    pub fn fields(&self) -> &HeaderFields {
        self.header.fields()
    }

    /// SHA-1 thumbprints of the certificates the archive is encrypted to.
    pub fn recipient_thumbprints(&self) -> Vec<Thumbprint> {
        self.fields().recipients.iter().map(|s| s.thumbprint).collect()
    }

    /// The value of header label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.fields()
            .labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads and checks the header and footer, without any key: magic, version,
/// every length and bound, the footer's positions against the archive length,
/// and that header and footer carry the same archive id.
pub async fn inspect<R: RangeRead + ?Sized>(source: &R) -> ReadResult<ArchiveInfo, R::Error> {
    let archive_len = source.size().await.map_err(|error| ReadError::Read {
        offset: 0,
        len: 0,
        error,
    })?;
    let min = (HEADER_PREFIX_LEN + FOOTER_LEN) as u64;
    if archive_len < min {
        if archive_len >= 8 {
            // Say "not an archive" rather than "too short" when the magic is wrong.
            Header::peek_len(&read_at(source, 0, archive_len.min(HEADER_PREFIX_LEN as u64) as usize).await?)?;
        }
        return Err(Error::malformed(
            Region::Archive,
            archive_len,
            format!("{archive_len} bytes is too short for an archive"),
        )
        .into());
    }
    let prefix = read_at(source, 0, HEADER_PREFIX_LEN).await?;
    let header_len = Header::peek_len(&prefix)?;
    if header_len as u64 + FOOTER_LEN as u64 > archive_len {
        return Err(Error::malformed(
            Region::Header,
            10,
            format!("header of {header_len} bytes does not fit in a {archive_len}-byte archive"),
        )
        .into());
    }
    let header = Header::decode(&read_at(source, 0, header_len).await?)?;
    let footer = if header.fields().version == FORMAT_VERSION_1 {
        let footer_bytes = read_at(source, archive_len - FOOTER_LEN as u64, FOOTER_LEN).await?;
        let footer = Footer::decode(&footer_bytes, archive_len)?;
        footer.check_against(&header)?;
        ArchiveFooter::V1(footer)
    } else {
        if header_len as u64 + FOOTER_LEN_V2 as u64 > archive_len {
            return Err(Error::malformed(
                Region::Archive,
                archive_len,
                format!("{archive_len} bytes is too short for a version 2 archive"),
            )
            .into());
        }
        let footer_bytes = read_at(source, archive_len - FOOTER_LEN_V2 as u64, FOOTER_LEN_V2).await?;
        let footer = FooterV2::decode(&footer_bytes, archive_len)?;
        check_footer_v2(&footer, &header)?;
        ArchiveFooter::V2(footer)
    };
    Ok(ArchiveInfo {
        header,
        footer,
        archive_len,
    })
}

fn check_footer_v2(f: &FooterV2, header: &Header) -> Result<()> {
    let at = f.root_offset + u64::from(f.root_len) + u64::from(f.signature_len);
    if f.archive_id != header.fields().archive_id {
        return Err(Error::malformed(
            Region::Footer,
            at + 32,
            "footer belongs to another archive (archive ids differ)",
        ));
    }
    let signed = header.fields().signer.is_some();
    if signed != (f.signature_len > 1) {
        return Err(Error::malformed(
            Region::Signature,
            at + 12,
            "the signature block does not match the header's signer",
        ));
    }
    let body = f
        .root_offset
        .checked_sub(header.as_bytes().len() as u64)
        .ok_or_else(|| Error::malformed(Region::Footer, at, "root offset points inside the header"))?;
    let chunks = f.chunk_count - 1;
    if chunks > body / MIN_SEALED_FRAME_LEN as u64 || (chunks == 0 && body != 0) {
        return Err(Error::malformed(
            Region::Footer,
            at + 16,
            format!("{chunks} chunks cannot fill {body} bytes"),
        ));
    }
    Ok(())
}

/// Who signed an archive, once the signature has been checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// A version 1 archive: made before signatures existed, so unsigned by
    /// nature. A reader that trusts signers may accept it only when told to
    /// (FORMAT.md §14.7; [`check_trust`](Self::check_trust)'s `allow_v1`).
    UnsignedV1,
    /// A version 2 archive written without a signing key. A reader that
    /// trusts signers always refuses it: anyone holding the recipients'
    /// certificates can write one.
    Unsigned,
    /// Signed, and the signature verifies with this key (which may or may not be trusted).
    Verified(VerifyingKey),
}

impl Signer {
    /// The signer's fingerprint, when signed.
    pub fn fingerprint(&self) -> Option<SignerFingerprint> {
        match self {
            Signer::UnsignedV1 | Signer::Unsigned => None,
            Signer::Verified(k) => Some(k.fingerprint()),
        }
    }

    /// Checks this signer against the keys a reader trusts (FORMAT.md §14.7):
    /// signed by one of `trusted`, or a version 1 archive (unsigned by
    /// nature) when `allow_v1`. An unsigned version 2 archive is refused
    /// whatever `allow_v1` says. With no trusted key at all, everything
    /// passes (the caller says so to its user).
    pub fn check_trust(&self, trusted: &[VerifyingKey], allow_v1: bool) -> Result<()> {
        if trusted.is_empty() {
            return Ok(());
        }
        match self {
            Signer::UnsignedV1 if allow_v1 => Ok(()),
            Signer::UnsignedV1 | Signer::Unsigned => Err(Error::Untrusted { found: None }),
            Signer::Verified(k) if trusted.contains(k) => Ok(()),
            Signer::Verified(k) => Err(Error::Untrusted {
                found: Some(k.fingerprint()),
            }),
        }
    }
}

/// Verifies a version 2 archive's signature block against its header, the
/// sealed root and the footer, without any key but the signer's public one
/// (which the header carries). `tail` is the sealed root followed by the
/// signature block. Version 1 archives are [`Signer::UnsignedV1`].
pub fn verify_signature(info: &ArchiveInfo, tail: &[u8]) -> Result<Signer> {
    let ArchiveFooter::V2(footer) = &info.footer else {
        return Ok(Signer::UnsignedV1);
    };
    let root_len = footer.root_len as usize;
    if tail.len() != root_len + footer.signature_len as usize {
        return Err(Error::malformed(
            Region::Signature,
            footer.root_offset,
            "root and signature block length",
        ));
    }
    let (root, block) = tail.split_at(root_len);
    let at = footer.root_offset + root_len as u64;
    match (info.fields().signer, block) {
        (None, [0]) => Ok(Signer::Unsigned),
        (Some(key), [1, sig @ ..]) if sig.len() == crate::v2::SIGNATURE_LEN => {
            // A key strict verification refuses (small order, not a point)
            // verifies nothing: the signature does not verify (FORMAT.md §14.7).
            let key = VerifyingKey::from_bytes(&key).map_err(|_| Error::BadSignature {
                found: fingerprint_of(&key),
            })?;
            let mut signature = [0u8; crate::v2::SIGNATURE_LEN];
            signature.copy_from_slice(sig);
            let message = signature_message(&info.header.digest(), root, &footer.encode());
            key.verify(&message, &signature).map_err(|_| Error::BadSignature {
                found: key.fingerprint(),
            })?;
            Ok(Signer::Verified(key))
        }
        _ => Err(Error::malformed(
            Region::Signature,
            at,
            "the signature block does not match the header's signer",
        )),
    }
}

/// The fingerprint of a signer public key, also one that is not a valid
/// Ed25519 key (FORMAT.md §14.2).
fn fingerprint_of(key: &[u8; 32]) -> SignerFingerprint {
    let mut h = Sha256::new();
    h.update(b"ibs-signer-ed25519\0");
    h.update(key);
    SignerFingerprint(h.finalize().into())
}

/// Reads the root and signature block and checks the signature, keyless
/// (see [`verify_signature`]). One range read of the root's size.
pub async fn check_signature<R: RangeRead + ?Sized>(source: &R, info: &ArchiveInfo) -> ReadResult<Signer, R::Error> {
    let ArchiveFooter::V2(footer) = &info.footer else {
        return Ok(Signer::UnsignedV1);
    };
    let tail = read_at(
        source,
        footer.root_offset,
        footer.root_len as usize + footer.signature_len as usize,
    )
    .await?;
    verify_signature(info, &tail).map_err(ReadError::from)
}

/// FORMAT.md §14.8 step 2, before any key is used: a version 2 archive's
/// root and signature block, read in one range, with the signature checked
/// (`None` for version 1). A forged or altered signed archive is refused
/// whoever opens it, before its file key is unwrapped or its root decrypted.
async fn signed_tail<R: RangeRead + ?Sized>(
    source: &R,
    info: &ArchiveInfo,
) -> ReadResult<Option<(Vec<u8>, Signer)>, R::Error> {
    let ArchiveFooter::V2(footer) = &info.footer else {
        return Ok(None);
    };
    let tail = read_at(
        source,
        footer.root_offset,
        footer.root_len as usize + footer.signature_len as usize,
    )
    .await?;
    let signer = verify_signature(info, &tail)?;
    Ok(Some((tail, signer)))
}

/// What a full verification covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Data frames authenticated and decompressed.
    pub frames: u64,
    /// Entries whose SHA-256 matched.
    pub entries: u64,
    /// Plaintext bytes checked.
    pub data_len: u64,
    /// Archive bytes read.
    pub archive_len: u64,
}

/// Largest range a verification reads at once (several frames per read).
const VERIFY_READ: u64 = 8 << 20;

/// Largest read of a sequential reader, read-ahead included ([`ReadAhead`]).
const READ_AHEAD: u64 = 8 << 20;

/// Index pieces kept decoded (each at most 4 MiB raw; 64 KiB as this
/// library writes them).
const PIECE_CACHE: usize = 4;

/// Most threads one verify batch is split across.
const OPEN_PARALLEL: usize = 4;

/// How entries are held: a version 1 index whole, a version 2 root with
/// pieces read on demand.
enum Entries {
    V1 { entries: Vec<Entry>, sources: Vec<String> },
    V2 { root: Root },
}

/// An opened archive: header authenticated, signature (if any) verified,
/// index (version 1) or root (version 2) decrypted and checked.
///
/// A version 2 archive's entries are read piece by piece as they are needed
/// ([`entries`](Self::entries) streams them, [`find`](Self::find) reads one
/// piece): memory is flat in the number of entries. A version 1 archive's
/// index is held whole (those archives are few and small).
pub struct ArchiveReader<R: RangeRead> {
    /// Frames read in order are read ahead ([`READ_AHEAD`] at most).
    source: ReadAhead<R>,
    info: ArchiveInfo,
    /// Shared with the blocking pool that opens [`verify`](Self::verify)'s batches.
    keys: Arc<ArchiveKeys>,
    digest: [u8; 32],
    entries: Entries,
    signer: Signer,
    data_len: u64,
    frame_lens: Vec<u32>,
    frame_offsets: Vec<u64>,
    /// Chunk number of each data frame (version 2; version 1: the frame's number).
    frame_counters: Option<Vec<u64>>,
    /// The last index piece read (lookups near each other share it).
    piece_cache: std::sync::Mutex<std::collections::VecDeque<(usize, Arc<Vec<Entry>>)>>,
    /// The last frame opened: entries read in order mostly share frames.
    last_frame: std::sync::Mutex<Option<(u64, Bytes)>>,
    /// Frames opened ahead of a reader going through them in order
    /// ([`DecodeAhead`]); `None` while a call is using it.
    ahead: std::sync::Mutex<Option<DecodeAhead<R::Error>>>,
}

/// Plaintext bytes of frames opened ahead of a reader going through the
/// frames in order (at least one frame).
const DECODE_AHEAD: u64 = 3 << 20;

/// Most frames opened ahead at once (small frames: each is a blocking-pool task).
const DECODE_AHEAD_FRAMES: usize = 8;

/// A frame being opened ahead, or the failure to read its sealed bytes
/// (kept for the call that needs that frame).
enum Opening<E> {
    Running(tokio::task::JoinHandle<Result<Bytes>>),
    Failed(ReadError<E>),
}

/// Frames opened (decrypted, decompressed) on tokio's blocking pool ahead of
/// a reader asking for frame after frame, so that a restore's single stream
/// keeps both cores busy: the next frames are opened while the caller hashes
/// and writes out this one. Started only once two frames in a row were asked
/// for (a lookup of one entry opens only its own frames), only inside a
/// runtime, and bounded: [`DECODE_AHEAD`] bytes of plaintext, never past the
/// last frame. A frame whose sealed bytes could not be read or which fails to
/// open is reported to the call that asks for that frame, not before.
struct DecodeAhead<E> {
    /// The frame asked for last (`u64::MAX`: none yet).
    last: u64,
    /// The next frame to start opening.
    next: u64,
    queue: std::collections::VecDeque<(u64, Opening<E>)>,
    /// Decompressors of finished tasks, reused (a zstd context is costly to create).
    decompressors: Arc<std::sync::Mutex<Vec<zstd::bulk::Decompressor<'static>>>>,
}

/// A [`DecodeAhead`] taken out of its reader, put back when the call is
/// done or dropped.
struct Lease<'a, E> {
    slot: &'a std::sync::Mutex<Option<DecodeAhead<E>>>,
    ahead: Option<DecodeAhead<E>>,
}

impl<E> Drop for Lease<'_, E> {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = self.ahead.take();
        }
    }
}

impl<E> Default for DecodeAhead<E> {
    fn default() -> Self {
        DecodeAhead {
            last: u64::MAX,
            next: 0,
            queue: std::collections::VecDeque::new(),
            decompressors: Arc::default(),
        }
    }
}

impl<R: RangeRead> fmt::Debug for ArchiveReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("archive_id", &self.info.fields().archive_id)
            .field("version", &self.info.version())
            .field(
                "entries",
                &match &self.entries {
                    Entries::V1 { entries, .. } => entries.len() as u64,
                    Entries::V2 { root } => root.entry_count,
                },
            )
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl<R: RangeRead> ArchiveReader<R> {
    /// Opens an archive with whichever of `identities` is a recipient.
    ///
    /// With none, the error is [`ibs_envelope::Error::NoMatchingIdentity`]
    /// (inside [`Error::Envelope`]) listing the thumbprints needed. A version
    /// 2 archive's signature, when it has one, is verified first, before any
    /// key is used (FORMAT.md §14.8 step 2; whether its signer is trusted is
    /// the caller's question: [`Signer::check_trust`]).
    pub async fn open(source: R, identities: &[&Identity]) -> ReadResult<Self, R::Error> {
        let info = inspect(&source).await?;
        let tail = signed_tail(&source, &info).await?;
        let keys = info.header.unlock(identities)?;
        Self::open_unlocked(source, info, keys, tail).await
    }

    /// Opens an archive with its file key already unwrapped.
    pub async fn open_with_file_key(source: R, file_key: &FileKey) -> ReadResult<Self, R::Error> {
        let info = inspect(&source).await?;
        let tail = signed_tail(&source, &info).await?;
        let keys = info.header.unlock_with(file_key)?;
        Self::open_unlocked(source, info, keys, tail).await
    }

    async fn open_unlocked(
        source: R,
        info: ArchiveInfo,
        keys: ArchiveKeys,
        tail: Option<(Vec<u8>, Signer)>,
    ) -> ReadResult<Self, R::Error> {
        let digest = info.header.digest();
        let header_len = info.header.as_bytes().len() as u64;
        let frame_size = info.fields().frame_size;
        let mut dec = decompressor()?;
        let (entries, signer, data_len, frame_lens, frame_offsets, frame_counters) = match info.footer {
            ArchiveFooter::V1(footer) => {
                let sealed = read_at(&source, footer.index_offset, footer.index_len as usize).await?;
                let index = open_index(&keys, &info.header, &footer, sealed, &mut dec)?;
                let offsets = index.frame_offsets(header_len);
                let mut sources: Vec<String> = Vec::new();
                for e in &index.entries {
                    if !sources.contains(&e.source) {
                        sources.push(e.source.clone());
                    }
                }
                let _ = frame_size;
                (
                    Entries::V1 {
                        entries: index.entries,
                        sources,
                    },
                    Signer::UnsignedV1,
                    index.data_len,
                    index.frame_lens,
                    offsets,
                    None,
                )
            }
            ArchiveFooter::V2(footer) => {
                let Some((mut tail, signer)) = tail else {
                    return Err(Error::Usage("a version 2 archive opened without its root".into()).into());
                };
                tail.truncate(footer.root_len as usize);
                let body = keys.open_chunk_in(
                    &digest,
                    footer.chunk_count - 1,
                    true,
                    tail,
                    MAX_ROOT_LEN,
                    false,
                    Region::Root,
                    &mut dec,
                )?;
                let root = Root::decode(&body, frame_size)?;
                let pieces = root.pieces.len() as u64;
                if root.frame_lens.len() as u64 != footer.frame_count
                    || root.frame_lens.len() as u64 + pieces + 1 != footer.chunk_count
                {
                    return Err(Error::malformed(
                        Region::Root,
                        0,
                        format!(
                            "root lists {} frames and {pieces} pieces; the footer says {} frames, {} chunks",
                            root.frame_lens.len(),
                            footer.frame_count,
                            footer.chunk_count
                        ),
                    )
                    .into());
                }
                let layout = root.layout(header_len, footer.root_offset)?;
                let (data_len, frame_lens) = (root.data_len, root.frame_lens.clone());
                (
                    Entries::V2 { root },
                    signer,
                    data_len,
                    frame_lens,
                    layout.frame_offsets,
                    Some(layout.frame_counters),
                )
            }
        };
        Ok(ArchiveReader {
            source: ReadAhead::new(source, info.archive_len, READ_AHEAD),
            info,
            keys: Arc::new(keys),
            digest,
            entries,
            signer,
            data_len,
            frame_lens,
            frame_offsets,
            frame_counters,
            piece_cache: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(PIECE_CACHE)),
            last_frame: std::sync::Mutex::new(None),
            ahead: std::sync::Mutex::new(Some(DecodeAhead::default())),
        })
    }

    /// Also reads up to `depth` chunks of 8 MiB ahead of a reader going
    /// through the frames in order, in the background on the tokio runtime
    /// ([`ReadAhead::prefetch`]): a remote target's latency then overlaps
    /// with decryption and decompression. Memory: `depth` × 8 MiB more at
    /// most.
    #[must_use]
    pub fn prefetch(mut self, depth: usize) -> Self
    where
        R: 'static,
    {
        self.source = self.source.prefetch(depth);
        self
    }

    /// Header, footer and length.
    pub fn info(&self) -> &ArchiveInfo {
        &self.info
    }

    /// Who signed the archive (the signature has been verified).
    pub fn signer(&self) -> Signer {
        self.signer
    }

    /// The number of entries, known from the index before any entry is read
    /// (the total a restore's progress counts up to).
    pub fn entry_count(&self) -> u64 {
        match &self.entries {
            Entries::V1 { entries, .. } => entries.len() as u64,
            Entries::V2 { root } => root.entry_count,
        }
    }

    /// The sources, with or without entries (version 1 records only sources
    /// that have entries), in the order of the archive.
    pub fn sources(&self) -> &[String] {
        match &self.entries {
            Entries::V1 { sources, .. } => sources,
            Entries::V2 { root } => &root.sources,
        }
    }

    /// Total stream bytes of all entries.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Sealed length of each data frame.
    pub fn frame_lens(&self) -> &[u32] {
        &self.frame_lens
    }

    /// Offset of each data frame in the archive (version 2: index pieces may
    /// lie between frames).
    pub fn frame_offsets(&self) -> &[u64] {
        &self.frame_offsets
    }

    /// Every entry, in archive order, read piece by piece (version 2): the
    /// order and tree rules of FORMAT.md §14.5 and every hard link's target
    /// are checked as they stream, and the stream ends with the first error.
    pub fn entries(&self) -> impl Stream<Item = ReadResult<Entry, R::Error>> + '_ {
        futures::stream::try_unfold(EntryCursor::new(self), |mut cursor| async move {
            Ok(cursor.next().await?.map(|e| (e, cursor)))
        })
    }

    /// Every entry in memory at once (memory grows with the count: prefer
    /// [`entries`](Self::entries) for large archives).
    pub async fn load_entries(&self) -> ReadResult<Vec<Entry>, R::Error> {
        use futures::TryStreamExt;
        self.entries().try_collect().await
    }

    /// The entry `path` of `source`, if present. Version 2: reads the one
    /// piece that would hold it (binary search on the root's first keys).
    pub async fn find(&self, source: &str, path: impl AsRef<[u8]>) -> ReadResult<Option<Entry>, R::Error> {
        let path = path.as_ref();
        match &self.entries {
            Entries::V1 { entries, .. } => Ok(entries
                .iter()
                .find(|e| e.source == source && e.path.as_bytes() == path)
                .cloned()),
            Entries::V2 { root } => {
                let Some(s) = root.sources.iter().position(|n| n == source) else {
                    return Ok(None);
                };
                let s = s as u16;
                let key_cmp = |src: u16, p: &[u8]| src.cmp(&s).then_with(|| path_cmp(p, path));
                let after = root
                    .pieces
                    .partition_point(|r| key_cmp(r.first_source, &r.first_path) != std::cmp::Ordering::Greater);
                let Some(i) = after.checked_sub(1) else {
                    return Ok(None);
                };
                let piece = self.piece(i).await?;
                let found = piece
                    .binary_search_by(|e| {
                        let src = root.sources.iter().position(|n| *n == e.source).unwrap_or(usize::MAX) as u16;
                        key_cmp(src, e.path.as_bytes())
                    })
                    .ok()
                    .map(|j| piece[j].clone());
                Ok(found)
            }
        }
    }

    /// Reads, checks and decodes index piece `i` (or takes it from the cache
    /// of the last few pieces used: hard-link checks and lookups near each
    /// other go back and forth between a few pieces).
    async fn piece(&self, i: usize) -> ReadResult<Arc<Vec<Entry>>, R::Error> {
        if let Ok(mut cache) = self.piece_cache.lock()
            && let Some(at) = cache.iter().position(|(n, _)| *n == i)
        {
            let hit = cache.remove(at);
            if let Some((_, entries)) = &hit {
                let entries = Arc::clone(entries);
                cache.extend(hit);
                return Ok(entries);
            }
        }
        let Entries::V2 { root } = &self.entries else {
            return Err(Error::Usage("a version 1 archive has no index pieces".into()).into());
        };
        let rec = root
            .pieces
            .get(i)
            .ok_or_else(|| Error::Usage(format!("no index piece {i}")))?;
        let sealed = read_at(&self.source, rec.offset, rec.sealed_len as usize).await?;
        let region = Region::Piece(i as u64);
        if <[u8; 32]>::from(Sha256::digest(&sealed)) != rec.sha256 {
            return Err(Error::Authentication { region }.into());
        }
        let mut dec = decompressor()?;
        let body = self.keys.open_chunk_in(
            &self.digest,
            root.piece_counter(i),
            false,
            sealed,
            MAX_PIECE_LEN,
            false,
            region,
            &mut dec,
        )?;
        let next = root.pieces.get(i + 1).map_or(root.data_len, |r| r.stream_offset);
        let entries: Vec<Entry> = decode_piece(&body, i, rec, next, &root.sources)?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        let entries = Arc::new(entries);
        if let Ok(mut cache) = self.piece_cache.lock() {
            if cache.len() >= PIECE_CACHE {
                cache.pop_front();
            }
            cache.push_back((i, Arc::clone(&entries)));
        }
        Ok(entries)
    }

    /// The byte source the archive is read from, as given to
    /// [`ArchiveReader::open`].
    pub fn source(&self) -> &R {
        self.source.get_ref()
    }

    fn frame_size(&self) -> u32 {
        self.info.fields().frame_size
    }

    fn frame_counter(&self, i: u64) -> u64 {
        match &self.frame_counters {
            None => i,
            Some(c) => c.get(i as usize).copied().unwrap_or(u64::MAX),
        }
    }

    fn frame_plain_len(&self, i: u64) -> usize {
        let f = u64::from(self.frame_size());
        (self.data_len.saturating_sub(i * f)).min(f) as usize
    }

    /// Reads, authenticates and decompresses data frame `i` (or takes it from
    /// the one-frame cache, so small entries that share a frame are not
    /// decrypted once each).
    /// A decompressor is created in `dec` only on a cache miss.
    async fn frame(&self, i: u64, dec: &mut Option<zstd::bulk::Decompressor<'static>>) -> ReadResult<Bytes, R::Error> {
        if let Ok(slot) = self.last_frame.lock()
            && let Some((n, bytes)) = slot.as_ref()
            && *n == i
        {
            return Ok(bytes.clone());
        }
        // The frames ahead, when this reader goes through them in order; the
        // state is taken out while in use (a concurrent or cancelled call
        // opens its frame in place instead).
        let ahead = self.ahead.lock().ok().and_then(|mut a| a.take());
        if let Some(ahead) = ahead {
            let mut lease = Lease {
                slot: &self.ahead,
                ahead: Some(ahead),
            };
            let plain = match lease.ahead.as_mut() {
                Some(ahead) => self.frame_ahead(ahead, i).await,
                None => None,
            };
            drop(lease);
            if let Some(plain) = plain {
                let plain = plain?;
                if let Ok(mut slot) = self.last_frame.lock() {
                    *slot = Some((i, plain.clone()));
                }
                return Ok(plain);
            }
        }
        let sealed = self.sealed_frame(i).await?;
        let dec = match dec {
            Some(d) => d,
            None => dec.insert(decompressor()?),
        };
        let plain = self.open_frame(i, sealed, dec)?;
        if let Ok(mut slot) = self.last_frame.lock() {
            *slot = Some((i, plain.clone()));
        }
        Ok(plain)
    }

    /// Frame `i` from the frames opened ahead, starting or continuing them
    /// when the frame before `i` was the one asked for last; `None` when
    /// this call should open the frame itself (not in order, no runtime).
    async fn frame_ahead(&self, ahead: &mut DecodeAhead<R::Error>, i: u64) -> Option<ReadResult<Bytes, R::Error>> {
        let in_order = ahead.last.checked_add(1) == Some(i);
        ahead.last = i;
        while ahead.queue.front().is_some_and(|(j, _)| *j < i) {
            ahead.queue.pop_front();
        }
        if ahead.queue.front().is_none_or(|(j, _)| *j != i) {
            ahead.queue.clear();
            if !in_order {
                return None;
            }
            ahead.next = i;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let depth = usize::try_from(DECODE_AHEAD.div_ceil(u64::from(self.frame_size().max(1))))
            .unwrap_or(1)
            .clamp(1, DECODE_AHEAD_FRAMES);
        // Frame `i` is started first when the queue starts again here (its
        // read is not held up by the next frames'); the rest after it.
        self.open_ahead(ahead, &runtime, 1).await;
        let (_, opening) = ahead.queue.pop_front()?;
        let plain = match opening {
            Opening::Running(task) => match task.await {
                Ok(plain) => plain.map_err(ReadError::from),
                Err(_) => Err(Error::WorkerLost.into()),
            },
            Opening::Failed(e) => Err(e),
        };
        if plain.is_err() {
            // Nothing after a failure is needed.
            ahead.queue.clear();
            ahead.last = u64::MAX;
        } else {
            self.open_ahead(ahead, &runtime, depth).await;
        }
        Some(plain)
    }

    /// Starts opening frames from `ahead.next` until `depth` are queued or
    /// the last frame is.
    async fn open_ahead(&self, ahead: &mut DecodeAhead<R::Error>, runtime: &tokio::runtime::Handle, depth: usize) {
        let frames = self.frame_lens.len() as u64;
        while ahead.queue.len() < depth && ahead.next < frames {
            let j = ahead.next;
            ahead.next += 1;
            // Copied out of the read-ahead buffer by the task, not here.
            let sealed = match self.frame_span(j) {
                Ok((start, end)) => read_bytes_at(&self.source, start, (end - start) as usize).await,
                Err(e) => Err(e.into()),
            };
            let sealed = match sealed {
                Ok(sealed) => sealed,
                Err(e) => {
                    ahead.queue.push_back((j, Opening::Failed(e)));
                    break;
                }
            };
            let keys = Arc::clone(&self.keys);
            let digest = self.digest;
            let (counter, plain_len) = (self.frame_counter(j), self.frame_plain_len(j));
            let pool = Arc::clone(&ahead.decompressors);
            let task = runtime.spawn_blocking(move || {
                let mut dec = match pool.lock().ok().and_then(|mut p| p.pop()) {
                    Some(dec) => dec,
                    None => decompressor()?,
                };
                let sealed = Vec::from(sealed);
                let plain = open_data_frame(&keys, &digest, j, counter, sealed, plain_len, &mut dec);
                if let Ok(mut p) = pool.lock() {
                    p.push(dec);
                }
                plain
            });
            ahead.queue.push_back((j, Opening::Running(task)));
        }
    }

    /// The sealed bytes of frame `i`. A reader going frame after frame has
    /// the following frames read with them ([`ReadAhead`]): a remote target
    /// answers one request per few MiB instead of one per frame.
    async fn sealed_frame(&self, i: u64) -> ReadResult<Vec<u8>, R::Error> {
        let (start, end) = self.frame_span(i)?;
        read_at(&self.source, start, (end - start) as usize).await
    }

    /// Start and end offset of data frame `i` (pieces may lie between frames).
    fn frame_span(&self, i: u64) -> Result<(u64, u64)> {
        let idx = usize::try_from(i).unwrap_or(usize::MAX);
        match (self.frame_offsets.get(idx), self.frame_lens.get(idx)) {
            (Some(s), Some(l)) => Ok((*s, *s + u64::from(*l))),
            _ => Err(Error::malformed(Region::Index, 0, format!("no frame {i}"))),
        }
    }

    fn open_frame(&self, i: u64, sealed: Vec<u8>, dec: &mut zstd::bulk::Decompressor<'static>) -> Result<Bytes> {
        self.open_frame_len(i, sealed, self.frame_plain_len(i), dec)
    }

    fn open_frame_len(
        &self,
        i: u64,
        sealed: Vec<u8>,
        plain_len: usize,
        dec: &mut zstd::bulk::Decompressor<'static>,
    ) -> Result<Bytes> {
        open_data_frame(
            &self.keys,
            &self.digest,
            i,
            self.frame_counter(i),
            sealed,
            plain_len,
            dec,
        )
    }

    /// Streams one entry's stream bytes (a sparse file's extents, in order;
    /// nothing for a folder or link), reading only its frames. The stream
    /// ends with an error instead of its last piece if the content does not
    /// match its SHA-256.
    pub fn entry_stream<'a>(&'a self, entry: &'a Entry) -> impl Stream<Item = ReadResult<Bytes, R::Error>> + 'a {
        self.pieces(entry, true)
    }

    /// [`entry_stream`](Self::entry_stream) without the SHA-256 check, for
    /// a caller that checks the content itself with
    /// [`Entry::check_content`] — on another thread, so that hashing runs
    /// beside the reading (the recovery crate's restore does). Every piece
    /// is still authenticated (its frame's tag): what is not checked here
    /// is only that the pieces are this entry's, whole. Bytes taken this way
    /// must not be trusted or shown before that check passed.
    pub fn entry_stream_unchecked<'a>(
        &'a self,
        entry: &'a Entry,
    ) -> impl Stream<Item = ReadResult<Bytes, R::Error>> + 'a {
        self.pieces(entry, false)
    }

    fn pieces<'a>(&'a self, entry: &'a Entry, check: bool) -> impl Stream<Item = ReadResult<Bytes, R::Error>> + 'a {
        struct St {
            frame: u64,
            end_frame: u64,
            done: u64,
            hasher: Sha256,
            dec: Option<zstd::bulk::Decompressor<'static>>,
            finished: bool,
        }
        let frames = entry.frames(self.frame_size());
        let len = entry.stream_len();
        let st = St {
            frame: frames.start,
            end_frame: frames.end,
            done: 0,
            hasher: Sha256::new(),
            dec: None,
            finished: false,
        };
        futures::stream::try_unfold(st, move |mut st| async move {
            if st.finished {
                return Ok(None);
            }
            if st.frame >= st.end_frame {
                st.finished = true;
                if check {
                    check_hash(entry, st.hasher.clone())?;
                }
                return Ok(None);
            }
            let plain = self.frame(st.frame, &mut st.dec).await?;
            let f = u64::from(self.frame_size());
            let frame_start = st.frame * f;
            let from = (entry.offset + st.done - frame_start) as usize;
            let take = ((len - st.done) as usize).min(plain.len().saturating_sub(from));
            let piece = plain.slice(from..from + take);
            if check {
                st.hasher.update(&piece);
            }
            st.done += take as u64;
            st.frame += 1;
            if st.frame >= st.end_frame {
                st.finished = true;
                if check {
                    check_hash(entry, st.hasher.clone())?;
                }
            }
            Ok(Some((piece, st)))
        })
    }

    /// Reads a whole entry's stream bytes into memory (checked against its SHA-256).
    pub async fn read_entry(&self, entry: &Entry) -> ReadResult<Vec<u8>, R::Error> {
        use futures::TryStreamExt;
        let mut out = Vec::with_capacity(usize::try_from(entry.stream_len()).unwrap_or(0).min(64 << 20));
        let mut stream = std::pin::pin!(self.entry_stream(entry));
        while let Some(piece) = stream.try_next().await? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    /// Copies an entry's stream bytes to `sink` and returns how many. On a
    /// content mismatch the last piece is withheld and the error returned.
    pub async fn copy_entry<W: AsyncWrite + Unpin>(&self, entry: &Entry, sink: &mut W) -> ReadResult<u64, R::Error> {
        use futures::TryStreamExt;
        let mut stream = std::pin::pin!(self.entry_stream(entry));
        let mut n = 0u64;
        while let Some(piece) = stream.try_next().await? {
            sink.write_all(&piece).await.map_err(Error::Sink)?;
            n += piece.len() as u64;
        }
        sink.flush().await.map_err(Error::Sink)?;
        Ok(n)
    }

    /// Authenticates every frame and piece, decompresses them and checks every
    /// entry's SHA-256, the order and tree rules and every hard link,
    /// streaming: nothing is written anywhere and memory stays at a few
    /// frames and one piece. `progress` is called after every frame.
    pub async fn verify(&self, progress: Option<&ProgressFn>) -> ReadResult<VerifyReport, R::Error> {
        let mut dec = decompressor()?;
        let frame_count = self.frame_lens.len() as u64;
        let mut cursor = EntryCursor::new(self);
        let mut current = cursor.next().await?;
        let mut hasher = Sha256::new();
        let mut in_entry = 0u64; // bytes of the current entry hashed so far
        let mut report = VerifyReport {
            frames: 0,
            entries: 0,
            data_len: 0,
            archive_len: self.info.archive_len,
        };
        let mut prog = Progress::default();
        let mut next = 0u64;
        while next < frame_count {
            // One range read covering as many whole frames as fit in VERIFY_READ.
            let (start, _) = self.frame_span(next)?;
            let mut last = next;
            while last + 1 < frame_count && self.frame_span(last + 1)?.1 - start <= VERIFY_READ {
                last += 1;
            }
            let (_, end) = self.frame_span(last)?;
            let batch = read_at(&self.source, start, (end - start) as usize).await?;
            let mut sealed = Vec::with_capacity((last - next + 1) as usize);
            for i in next..=last {
                let (s, e) = self.frame_span(i)?;
                sealed.push((
                    i,
                    self.frame_counter(i),
                    batch[(s - start) as usize..(e - start) as usize].to_vec(),
                    self.frame_plain_len(i),
                ));
            }
            drop(batch);
            // Opening a batch is seconds of CPU on a large archive: not on an async worker.
            let (keys, digest) = (Arc::clone(&self.keys), self.digest);
            let (opened, back) = run_blocking(move || {
                let opened = open_frames(&keys, &digest, sealed, &mut dec);
                (opened, dec)
            })
            .await?;
            dec = back;
            let opened = opened?;
            for (i, plain) in (next..=last).zip(opened) {
                let (_, e) = self.frame_span(i)?;
                let mut data = &plain[..];
                loop {
                    let Some(entry) = current.as_ref() else {
                        if data.is_empty() {
                            break;
                        }
                        return Err(Error::malformed(Region::Frame(i), 0, "data after the last entry").into());
                    };
                    let len = entry.stream_len();
                    let take = (len - in_entry).min(data.len() as u64) as usize;
                    hasher.update(&data[..take]);
                    data = &data[take..];
                    in_entry += take as u64;
                    if in_entry == len {
                        check_hash(entry, std::mem::take(&mut hasher))?;
                        report.entries += 1;
                        in_entry = 0;
                        current = cursor.next().await?;
                    } else {
                        break;
                    }
                }
                report.frames += 1;
                report.data_len += plain.len() as u64;
                prog.frames_done = report.frames;
                prog.entries_done = report.entries;
                prog.bytes_in = report.data_len;
                prog.bytes_out = e;
                if let Some(p) = progress {
                    p(&prog);
                }
            }
            next = last + 1;
        }
        // Trailing entries without data (or all of them, in an archive without data).
        while let Some(entry) = current {
            if entry.stream_len() != 0 {
                return Err(Error::malformed(
                    Region::Archive,
                    0,
                    format!("entry {} has no data in the frames", entry.display_name()),
                )
                .into());
            }
            check_hash(&entry, std::mem::take(&mut hasher))?;
            report.entries += 1;
            current = cursor.next().await?;
        }
        Ok(report)
    }
}

/// Walks the entries in order, one piece at a time, checking the order and
/// tree rules (version 2) and every hard link's target.
struct EntryCursor<'a, R: RangeRead> {
    reader: &'a ArchiveReader<R>,
    piece: usize,
    pos: usize,
    current: Option<Arc<Vec<Entry>>>,
    tree: TreeCheck,
    source_index: u16,
}

impl<'a, R: RangeRead> EntryCursor<'a, R> {
    fn new(reader: &'a ArchiveReader<R>) -> Self {
        EntryCursor {
            reader,
            piece: 0,
            pos: 0,
            current: None,
            tree: TreeCheck::default(),
            source_index: 0,
        }
    }

    async fn next(&mut self) -> ReadResult<Option<Entry>, R::Error> {
        let root = match &self.reader.entries {
            Entries::V1 { entries, .. } => {
                let e = entries.get(self.pos).cloned();
                self.pos += 1;
                return Ok(e);
            }
            Entries::V2 { root } => root,
        };
        loop {
            if let Some(piece) = &self.current
                && let Some(e) = piece.get(self.pos)
            {
                let e = e.clone();
                self.pos += 1;
                let region = Region::Piece(self.piece as u64);
                // Sources appear in the order of their index: find this one's from the last.
                while root
                    .sources
                    .get(usize::from(self.source_index))
                    .is_some_and(|s| *s != e.source)
                {
                    self.source_index += 1;
                }
                if usize::from(self.source_index) >= root.sources.len() {
                    return Err(Error::malformed(
                        region,
                        0,
                        format!("entry {} is out of source order", e.display_name()),
                    )
                    .into());
                }
                self.tree
                    .check(self.source_index, e.path.as_bytes(), e.kind == EntryKind::Folder)
                    .map_err(|why| Error::malformed(region, 0, why))?;
                if let EntryKind::HardLink { target } = &e.kind {
                    let found = self.reader.find(&e.source, target.as_bytes()).await?;
                    if !found.is_some_and(|t| t.kind == EntryKind::File) {
                        return Err(Error::malformed(
                            region,
                            0,
                            format!(
                                "hard link {} to {target}, which is not an earlier file",
                                e.display_name()
                            ),
                        )
                        .into());
                    }
                }
                return Ok(Some(e));
            }
            if self.current.is_some() {
                self.piece += 1;
                self.pos = 0;
            }
            if self.piece >= root.pieces.len() {
                self.current = None;
                return Ok(None);
            }
            self.current = Some(self.reader.piece(self.piece).await?);
        }
    }
}

/// A batch of sealed frames: `(frame number, chunk counter, sealed bytes,
/// plaintext length)`.
type Batch = Vec<(u64, u64, Vec<u8>, usize)>;

/// Opens a batch of frames, in order. A batch of several frames is split
/// across scoped threads (one part per core, at most [`OPEN_PARALLEL`]; the
/// calling thread takes the first part), so the caller is held for less time
/// than opening them in turn would take. No runtime is assumed (the caller
/// runs this off the async threads: [`run_blocking`]).
fn open_frames(
    keys: &ArchiveKeys,
    digest: &[u8; 32],
    sealed: Batch,
    dec: &mut zstd::bulk::Decompressor<'static>,
) -> Result<Vec<Bytes>> {
    let open = |part: Batch, dec: &mut zstd::bulk::Decompressor<'static>| {
        part.into_iter()
            .map(|(i, counter, frame, plain_len)| open_data_frame(keys, digest, i, counter, frame, plain_len, dec))
            .collect::<Result<Vec<Bytes>>>()
    };
    let parts = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, OPEN_PARALLEL)
        .min(sealed.len());
    if parts <= 1 {
        return open(sealed, dec);
    }
    let per_part = sealed.len().div_ceil(parts);
    let mut work = sealed.into_iter();
    let first: Vec<_> = work.by_ref().take(per_part).collect();
    let mut rest = Vec::new();
    loop {
        let part: Vec<_> = work.by_ref().take(per_part).collect();
        if part.is_empty() {
            break;
        }
        rest.push(part);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .into_iter()
            .map(|part| {
                // A thread the system cannot start is an error, not a panic.
                std::thread::Builder::new()
                    .name("ibs-open".into())
                    .spawn_scoped(scope, move || open(part, &mut decompressor()?))
            })
            .collect();
        let first = open(first, dec);
        // Every worker is joined, also when a part failed: `scope` alone
        // waits only for the workers' closures, then detaches them, so
        // they could still be exiting (running thread-local destructors)
        // after this returned. A fuzzer's leak check saw exactly that.
        let parts: Vec<_> = handles.into_iter().map(|h| h.map(|h| h.join())).collect();
        let mut out = first?;
        for part in parts {
            out.extend(part.map_err(Error::WorkerSpawn)?.map_err(|_| Error::WorkerLost)??);
        }
        Ok(out)
    })
}

/// Runs `f` on tokio's blocking pool when called inside a runtime, so that
/// CPU-heavy work does not hold an async worker; in place outside one (the
/// [`blocking`] API: its thread asked to block). A task the pool lost
/// (it panicked, or the runtime is shutting down) is [`Error::WorkerLost`].
async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime.spawn_blocking(f).await.map_err(|_| Error::WorkerLost),
        Err(_) => Ok(f()),
    }
}

fn check_hash(entry: &Entry, hasher: Sha256) -> Result<()> {
    entry.check_digest(hasher.finalize().into())
}

/// Opens data frame `i`, sealed as chunk `counter`: exactly `plain_len`
/// bytes of plaintext (every reader of data frames opens them here).
fn open_data_frame(
    keys: &ArchiveKeys,
    digest: &[u8; 32],
    i: u64,
    counter: u64,
    sealed: Vec<u8>,
    plain_len: usize,
    dec: &mut zstd::bulk::Decompressor<'static>,
) -> Result<Bytes> {
    keys.open_chunk_in(digest, counter, false, sealed, plain_len, true, Region::Frame(i), dec)
}

fn decompressor() -> Result<zstd::bulk::Decompressor<'static>> {
    zstd::bulk::Decompressor::new().map_err(|e| Error::Compression {
        region: Region::Archive,
        reason: e.to_string(),
    })
}

/// Blocking conveniences for test harnesses and tools without an async runtime.
///
/// ```
/// use ibs_archive::{blocking, ArchiveWriter, EntryMeta, WriterOptions};
/// # use ibs_envelope::{keygen, Certificate, Identity, Password};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let password = Password::new("pw");
/// # let pair = keygen::generate(&keygen::KeygenOptions::new("doc", 1_700_000_000), &password)?;
/// # let cert = Certificate::parse(&pair.cer)?;
/// # let identity = Identity::from_pkcs12(&pair.pfx, &password)?;
/// # let mut w = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default())?;
/// # w.add_entry(EntryMeta::new("ca", "root.cer"), &b"DER"[..])?;
/// # let (bytes, _) = w.finish()?;
/// let archive = blocking::Archive::open(bytes, &[&identity])?;
/// let root = archive.find("ca", "root.cer")?.expect("entry present");
/// assert_eq!(archive.read_entry(&root)?, b"DER");
/// archive.verify()?;
/// # Ok(()) }
/// ```
pub mod blocking {
    use std::io::Write;
    use std::path::Path;

    use futures::executor::block_on;
    use ibs_envelope::Identity;

    use super::{ArchiveInfo, ArchiveReader, RangeRead, ReadResult, Signer, VerifyReport};
    use crate::ReadError;
    use crate::entry::Entry;

    /// An opened archive with blocking methods (see [`ArchiveReader`]).
    #[derive(Debug)]
    pub struct Archive<R: RangeRead>(ArchiveReader<R>);

    /// Opens the archive file at `path`.
    #[cfg(unix)]
    pub fn open_file(path: &Path, identities: &[&Identity]) -> ReadResult<Archive<std::fs::File>, std::io::Error> {
        let file = std::fs::File::open(path).map_err(|error| ReadError::Read {
            offset: 0,
            len: 0,
            error: std::io::Error::new(error.kind(), format!("{}: {error}", path.display())),
        })?;
        Archive::open(file, identities)
    }

    /// Keyless header and footer checks (see [`super::inspect`]).
    pub fn inspect<R: RangeRead>(source: &R) -> ReadResult<ArchiveInfo, R::Error> {
        block_on(super::inspect(source))
    }

    impl<R: RangeRead> Archive<R> {
        /// Opens with whichever of `identities` is a recipient.
        pub fn open(source: R, identities: &[&Identity]) -> ReadResult<Self, R::Error> {
            block_on(ArchiveReader::open(source, identities)).map(Archive)
        }

        /// Header, footer and length.
        pub fn info(&self) -> &ArchiveInfo {
            self.0.info()
        }

        /// Who signed it (verified).
        pub fn signer(&self) -> Signer {
            self.0.signer()
        }

        /// Every entry, in order, in memory (checked as in [`ArchiveReader::entries`]).
        pub fn entries(&self) -> ReadResult<Vec<Entry>, R::Error> {
            block_on(self.0.load_entries())
        }

        /// The entry `path` of `source`, if present (see [`ArchiveReader::find`]).
        pub fn find(&self, source: &str, path: impl AsRef<[u8]>) -> ReadResult<Option<Entry>, R::Error> {
            block_on(self.0.find(source, path))
        }

        /// A whole entry in memory, checked.
        pub fn read_entry(&self, entry: &Entry) -> ReadResult<Vec<u8>, R::Error> {
            block_on(self.0.read_entry(entry))
        }

        /// Copies an entry to `sink`, checked; returns its size.
        pub fn copy_entry<W: Write>(&self, entry: &Entry, sink: &mut W) -> ReadResult<u64, R::Error> {
            let mut sink = futures::io::AllowStdIo::new(sink);
            block_on(self.0.copy_entry(entry, &mut sink))
        }

        /// Verifies every frame and entry.
        pub fn verify(&self) -> ReadResult<VerifyReport, R::Error> {
            block_on(self.0.verify(None))
        }

        /// The async reader inside.
        pub fn into_inner(self) -> ArchiveReader<R> {
            self.0
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use futures::executor::block_on;
    use ibs_envelope::{Certificate, Identity, Password, SigningKey};

    use super::*;
    use crate::{ArchiveWriter, EntryMeta, WriterOptions};

    fn data(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
    }

    fn signed_archive() -> Vec<u8> {
        let cert = Certificate::from_file(data("recipient.cer")).unwrap();
        let key = Arc::new(SigningKey::from_seed(&[3; 32]));
        let mut w = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default().signer(key)).unwrap();
        w.add_entry(EntryMeta::new("s", "a"), &b"x"[..]).unwrap();
        w.finish().unwrap().0
    }

    /// FORMAT.md §14.8: the signature is step 2, before the file key is
    /// unwrapped (step 3): a forged or altered archive is refused as such
    /// whoever opens it, before any private key is used on its header.
    #[test]
    fn the_signature_is_checked_before_any_key_is_used() {
        let mut bytes = signed_archive();
        let other = Identity::from_file(data("other.pfx"), &Password::new("ibs-test-vectors")).unwrap();
        let err = Error::from(block_on(ArchiveReader::open(bytes.clone(), &[&other])).unwrap_err());
        assert!(matches!(err, Error::Envelope(_)), "{err}");
        let sig = bytes.len() - crate::v2::FOOTER_LEN_V2 - 30;
        bytes[sig] ^= 1;
        let err = Error::from(block_on(ArchiveReader::open(bytes.clone(), &[&other])).unwrap_err());
        assert!(matches!(err, Error::BadSignature { .. }), "{err}");
        let err =
            Error::from(block_on(ArchiveReader::open_with_file_key(bytes, &FileKey::from_bytes([0; 32]))).unwrap_err());
        assert!(matches!(err, Error::BadSignature { .. }), "{err}");
    }

    /// Contents for many entries over many small frames: compressible and
    /// incompressible, empty, within one frame and across several.
    fn many_frames() -> (Vec<u8>, FileKey, Vec<Vec<u8>>) {
        let cert = Certificate::from_file(data("recipient.cer")).unwrap();
        let key = FileKey::from_bytes([9; 32]);
        let options = WriterOptions::default().frame_size(crate::format::MIN_FRAME_SIZE);
        let enc = crate::ArchiveEncoder::with_file_key(&key, &[&cert], options).unwrap();
        let mut w = ArchiveWriter::from_encoder(enc, Vec::new());
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut contents = Vec::new();
        for n in 0..120usize {
            let len = [0, 10, 700, 4096, 5000, 30_000][n % 6] + n;
            let body: Vec<u8> = (0..len)
                .map(|i| {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    if n % 3 == 0 {
                        (seed >> 56) as u8
                    } else {
                        b"{\"id\": 1}\n"[i % 10]
                    }
                })
                .collect();
            w.add_entry(EntryMeta::new("s", format!("f{n:03}")), &body[..]).unwrap();
            contents.push(body);
        }
        (w.finish().unwrap().0, key, contents)
    }

    fn multi_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    }

    /// Read in order inside a runtime, the frames are opened ahead on the
    /// blocking pool, bounded, and every entry comes back whole; read in
    /// reverse and skipping, too (the queue starts again where asked).
    #[test]
    fn frames_read_in_order_are_opened_ahead_and_every_entry_comes_back_whole() {
        let (bytes, key, contents) = many_frames();
        multi_thread().block_on(async {
            let r = ArchiveReader::open_with_file_key(bytes, &key).await.unwrap();
            let frames = r.frame_lens().len() as u64;
            assert!(frames > 100, "{frames} frames");
            let entries = r.load_entries().await.unwrap();
            let mut most_ahead = 0;
            for (e, body) in entries.iter().zip(&contents) {
                assert_eq!(&r.read_entry(e).await.unwrap(), body, "{}", e.path);
                let ahead = r.ahead.lock().unwrap();
                let ahead = ahead.as_ref().expect("put back after each call");
                assert!(ahead.queue.len() <= DECODE_AHEAD_FRAMES && ahead.next <= frames);
                most_ahead = most_ahead.max(ahead.queue.len());
            }
            assert!(most_ahead > 1, "frames were opened ahead ({most_ahead})");
            for (e, body) in entries
                .iter()
                .zip(&contents)
                .rev()
                .chain(entries.iter().zip(&contents).step_by(7))
            {
                assert_eq!(&r.read_entry(e).await.unwrap(), body, "{}", e.path);
            }
        });
    }

    /// A frame that fails to open is reported to the read that needs it:
    /// the entries before it come back whole although it was opened ahead
    /// of them, and the entries after it still read.
    #[test]
    fn a_damaged_frame_opened_ahead_fails_only_the_entry_that_holds_it() {
        let (mut bytes, key, contents) = many_frames();
        let (offsets, damaged) = multi_thread().block_on(async {
            let r = ArchiveReader::open_with_file_key(bytes.clone(), &key).await.unwrap();
            (r.frame_offsets().to_vec(), r.frame_offsets().len() as u64 / 2)
        });
        bytes[offsets[damaged as usize] as usize + 20] ^= 0x40;
        multi_thread().block_on(async {
            let r = ArchiveReader::open_with_file_key(bytes, &key).await.unwrap();
            let f = u64::from(crate::format::MIN_FRAME_SIZE);
            let mut failed = 0;
            for (e, body) in r.load_entries().await.unwrap().iter().zip(&contents) {
                let holds = e.stream_len() > 0 && e.frames(f as u32).contains(&damaged);
                match r.read_entry(e).await {
                    Ok(got) => {
                        assert!(!holds, "{} holds the damaged frame {damaged}", e.path);
                        assert_eq!(&got, body, "{}", e.path);
                    }
                    Err(err) => {
                        assert!(holds, "{} failed: {err}", e.path);
                        let err = Error::from(err);
                        assert!(
                            matches!(err, Error::Authentication { region: Region::Frame(n) } if n == damaged),
                            "{err}"
                        );
                        failed += 1;
                    }
                }
            }
            assert!(failed >= 1);
        });
    }

    /// A read dropped while it waits puts the queue back: the next reads
    /// still go ahead and come back whole.
    #[test]
    fn a_read_dropped_midway_leaves_the_reader_whole() {
        use futures::StreamExt;
        let (bytes, key, contents) = many_frames();
        multi_thread().block_on(async {
            let r = ArchiveReader::open_with_file_key(bytes, &key).await.unwrap();
            let entries = r.load_entries().await.unwrap();
            let big = entries.iter().position(|e| e.stream_len() > 20_000).unwrap();
            for e in &entries[..big] {
                r.read_entry(e).await.unwrap();
            }
            {
                let mut stream = std::pin::pin!(r.entry_stream(&entries[big]));
                stream.next().await.unwrap().unwrap();
                let mut next = stream.next();
                // Polled once (it may be waiting on a frame), then dropped.
                let _ = futures::poll!(&mut next);
            }
            assert!(r.ahead.lock().unwrap().is_some());
            for (e, body) in entries.iter().zip(&contents).skip(big) {
                assert_eq!(&r.read_entry(e).await.unwrap(), body, "{}", e.path);
            }
        });
    }

    /// A file reads the same on tokio's blocking pool (inside a runtime) and
    /// in place (outside one, as the blocking API reads it).
    #[cfg(unix)]
    #[test]
    fn a_file_reads_inside_and_outside_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(block_on(file.size()).unwrap(), 10);
        assert_eq!(block_on(file.read_range(2..5)).unwrap(), &b"234"[..]);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            assert_eq!(file.size().await.unwrap(), 10);
            assert_eq!(file.read_range(2..5).await.unwrap(), &b"234"[..]);
            assert!(file.read_range(8..12).await.is_err());
        });
    }

    /// A signer key strict verification refuses is a signature that does not
    /// verify (FORMAT.md §14.7), named by its fingerprint.
    #[test]
    fn a_small_order_signer_key_is_a_bad_signature() {
        let bytes = signed_archive();
        let mut info = block_on(inspect(&bytes)).unwrap();
        let mut fields = info.header.fields().clone();
        let mut weak = [0u8; 32];
        weak[0] = 1;
        fields.signer = Some(weak);
        info.header = Header::seal(fields, &ArchiveKeys::derive(&FileKey::from_bytes([0; 32]), &[0; 32])).unwrap();
        let ArchiveFooter::V2(f) = info.footer else {
            panic!("version 2")
        };
        let tail = &bytes[f.root_offset as usize..bytes.len() - crate::v2::FOOTER_LEN_V2];
        match verify_signature(&info, tail) {
            Err(Error::BadSignature { found }) => assert_eq!(found, fingerprint_of(&weak)),
            other => panic!("{other:?}"),
        }
    }
}
