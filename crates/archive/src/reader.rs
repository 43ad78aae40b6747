//! The random-access reader: open an archive through byte-range reads, list its
//! entries, stream one entry, or verify everything.
//!
//! Opening reads the header, the footer and the sealed index — three range
//! reads, whatever the archive's size. Reading an entry then reads only the
//! frames that hold it. [`inspect`] does the keyless part (header and footer
//! structure, recipients) for catalogues that hold no private key.

use std::fmt;
use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use futures::io::{AsyncWrite, AsyncWriteExt};
use ibs_envelope::{FileKey, Identity, Thumbprint};
use sha2::{Digest, Sha256};

use crate::format::{
    ArchiveKeys, Entry, FOOTER_LEN, Footer, HEADER_PREFIX_LEN, Header, HeaderFields, Index, open_index,
};
use crate::writer::{Progress, ProgressFn};
use crate::{Error, Region, Result};

/// Anything an archive can be read from by byte range: a file, a buffer, an
/// object on a storage target (the recovery crate adapts those).
#[async_trait]
pub trait RangeRead: Send + Sync {
    /// Total length in bytes.
    async fn size(&self) -> io::Result<u64>;
    /// Exactly `len` bytes starting at `offset` (an error if fewer exist).
    async fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

fn slice_range(data: &[u8], offset: u64, len: usize) -> io::Result<Vec<u8>> {
    usize::try_from(offset)
        .ok()
        .and_then(|start| data.get(start..start.checked_add(len)?))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "range past the end"))
}

#[async_trait]
impl RangeRead for Vec<u8> {
    async fn size(&self) -> io::Result<u64> {
        Ok(self.as_slice().len() as u64)
    }
    async fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        slice_range(self, offset, len)
    }
}

#[async_trait]
impl RangeRead for Bytes {
    async fn size(&self) -> io::Result<u64> {
        Ok(self.as_ref().len() as u64)
    }
    async fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        slice_range(self, offset, len)
    }
}

/// Positional reads (`pread`); each call blocks its thread for the read.
#[cfg(unix)]
#[async_trait]
impl RangeRead for std::fs::File {
    async fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    async fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

#[async_trait]
impl<T: RangeRead + ?Sized> RangeRead for Arc<T> {
    async fn size(&self) -> io::Result<u64> {
        (**self).size().await
    }
    async fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        (**self).read_range(offset, len).await
    }
}

#[async_trait]
impl<T: RangeRead + ?Sized> RangeRead for &T {
    async fn size(&self) -> io::Result<u64> {
        (**self).size().await
    }
    async fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        (**self).read_range(offset, len).await
    }
}

async fn read_at<R: RangeRead + ?Sized>(source: &R, offset: u64, len: usize) -> Result<Vec<u8>> {
    let out = source.read_range(offset, len).await.map_err(|error| Error::Read {
        offset,
        len: len as u64,
        error,
    })?;
    if out.len() != len {
        return Err(Error::Read {
            offset,
            len: len as u64,
            error: io::Error::new(io::ErrorKind::UnexpectedEof, format!("got {} bytes", out.len())),
        });
    }
    Ok(out)
}

/// What can be learnt about an archive without its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// The decoded header (MAC not yet checked unless the archive was opened).
    pub header: Header,
    /// The decoded footer.
    pub footer: Footer,
    /// Total length of the archive.
    pub archive_len: u64,
}

impl ArchiveInfo {
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
pub async fn inspect<R: RangeRead + ?Sized>(source: &R) -> Result<ArchiveInfo> {
    let archive_len = source.size().await.map_err(|error| Error::Read {
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
        ));
    }
    let prefix = read_at(source, 0, HEADER_PREFIX_LEN).await?;
    let header_len = Header::peek_len(&prefix)?;
    if header_len as u64 + FOOTER_LEN as u64 > archive_len {
        return Err(Error::malformed(
            Region::Header,
            10,
            format!("header of {header_len} bytes does not fit in a {archive_len}-byte archive"),
        ));
    }
    let header = Header::decode(&read_at(source, 0, header_len).await?)?;
    let footer_bytes = read_at(source, archive_len - FOOTER_LEN as u64, FOOTER_LEN).await?;
    let footer = Footer::decode(&footer_bytes, archive_len)?;
    footer.check_against(&header)?;
    Ok(ArchiveInfo {
        header,
        footer,
        archive_len,
    })
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

/// Largest read-ahead of a sequential reader (see `sealed_frame`).
const READ_AHEAD: u64 = 8 << 20;

/// Most threads one verify batch is split across.
const OPEN_PARALLEL: usize = 4;

/// An opened archive: header authenticated, index decrypted and checked.
pub struct ArchiveReader<R> {
    source: R,
    info: ArchiveInfo,
    keys: ArchiveKeys,
    digest: [u8; 32],
    index: Index,
    offsets: Vec<u64>,
    /// The last frame opened: entries read in order mostly share frames.
    last_frame: std::sync::Mutex<Option<(u64, Bytes)>>,
    /// Sealed frames read ahead for a sequential reader: frames
    /// `first..end`, as stored from `first`'s offset.
    ahead: std::sync::Mutex<Option<(u64, u64, Bytes)>>,
    /// Frames fetched one after the other so far (0 after a jump).
    streak: std::sync::atomic::AtomicU64,
}

impl<R> fmt::Debug for ArchiveReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("archive_id", &self.info.fields().archive_id)
            .field("entries", &self.index.entries.len())
            .finish_non_exhaustive()
    }
}

impl<R: RangeRead> ArchiveReader<R> {
    /// Opens an archive with whichever of `identities` is a recipient.
    ///
    /// With none, the error is [`ibs_envelope::Error::NoMatchingIdentity`]
    /// (inside [`Error::Envelope`]) listing the thumbprints needed.
    pub async fn open(source: R, identities: &[&Identity]) -> Result<Self> {
        let info = inspect(&source).await?;
        let keys = info.header.unlock(identities)?;
        Self::open_unlocked(source, info, keys).await
    }

    /// Opens an archive with its file key already unwrapped.
    pub async fn open_with_file_key(source: R, file_key: &FileKey) -> Result<Self> {
        let info = inspect(&source).await?;
        let keys = info.header.unlock_with(file_key)?;
        Self::open_unlocked(source, info, keys).await
    }

    async fn open_unlocked(source: R, info: ArchiveInfo, keys: ArchiveKeys) -> Result<Self> {
        let footer = info.footer;
        let sealed = read_at(&source, footer.index_offset, footer.index_len as usize).await?;
        let mut dec = decompressor()?;
        let index = open_index(&keys, &info.header, &footer, sealed, &mut dec)?;
        let offsets = index.frame_offsets(info.header.as_bytes().len() as u64);
        let digest = info.header.digest();
        Ok(ArchiveReader {
            source,
            info,
            keys,
            digest,
            index,
            offsets,
            last_frame: std::sync::Mutex::new(None),
            ahead: std::sync::Mutex::new(None),
            streak: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Header, footer and length.
    pub fn info(&self) -> &ArchiveInfo {
        &self.info
    }

    /// Every entry, in the order of its data.
    pub fn entries(&self) -> &[Entry] {
        &self.index.entries
    }

    /// The entry `path` of `source`, if present.
    pub fn find(&self, source: &str, path: &str) -> Option<&Entry> {
        self.index.entries.iter().find(|e| e.source == source && e.path == path)
    }

    /// The decrypted index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The underlying byte source.
    pub fn source(&self) -> &R {
        &self.source
    }

    fn frame_size(&self) -> u32 {
        self.info.fields().frame_size
    }

    /// Reads, authenticates and decompresses data frame `i` (or takes it from
    /// the one-frame cache, so small entries that share a frame are not
    /// decrypted once each).
    /// A decompressor is created in `dec` only on a cache miss.
    async fn frame(&self, i: u64, dec: &mut Option<zstd::bulk::Decompressor<'static>>) -> Result<Bytes> {
        if let Ok(slot) = self.last_frame.lock()
            && let Some((n, bytes)) = slot.as_ref()
            && *n == i
        {
            return Ok(bytes.clone());
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

    /// The sealed bytes of frame `i`. A reader going frame after frame gets
    /// the following frames read with it, as many as its streak of
    /// consecutive frames (so one entry of a few frames over-reads at most a
    /// frame or two) up to [`READ_AHEAD`] bytes in one range read: a remote
    /// target answers one request per 8 MiB instead of one per frame. A
    /// reader jumping to a frame reads only that frame.
    async fn sealed_frame(&self, i: u64) -> Result<Vec<u8>> {
        if let Ok(slot) = self.ahead.lock()
            && let Some((first, end, bytes)) = slot.as_ref()
            && (*first..*end).contains(&i)
        {
            let base = self.frame_span(*first)?.0;
            let (s, e) = self.frame_span(i)?;
            if let Some(sealed) = bytes.get((s - base) as usize..(e - base) as usize) {
                self.streak.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(sealed.to_vec());
            }
        }
        let sequential = i > 0
            && self
                .last_frame
                .lock()
                .is_ok_and(|slot| slot.as_ref().is_some_and(|(n, _)| *n + 1 == i));
        use std::sync::atomic::Ordering;
        let streak = if sequential {
            self.streak.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.streak.store(0, Ordering::Relaxed);
            0
        };
        let (start, mut end) = self.frame_span(i)?;
        let mut last = i;
        if streak > 0 {
            let frames = self.index.frame_lens.len() as u64;
            while last + 1 < frames && last - i < streak && self.frame_span(last + 1)?.1 - start <= READ_AHEAD {
                last += 1;
                end = self.frame_span(last)?.1;
            }
        }
        let read = read_at(&self.source, start, (end - start) as usize).await?;
        if last == i {
            return Ok(read);
        }
        let first_len = (self.frame_span(i)?.1 - start) as usize;
        let sealed = read[..first_len].to_vec();
        if let Ok(mut slot) = self.ahead.lock() {
            *slot = Some((i, last + 1, Bytes::from(read)));
        }
        Ok(sealed)
    }

    fn frame_span(&self, i: u64) -> Result<(u64, u64)> {
        let idx = usize::try_from(i).unwrap_or(usize::MAX);
        match (self.offsets.get(idx), self.offsets.get(idx.saturating_add(1))) {
            (Some(s), Some(e)) => Ok((*s, *e)),
            _ => Err(Error::malformed(Region::Index, 0, format!("no frame {i}"))),
        }
    }

    /// Opens a batch of frames `(index, sealed bytes, plaintext length)`, in
    /// order. A batch of several frames is split across scoped threads (one
    /// part per core, at most [`OPEN_PARALLEL`]; the calling thread takes the
    /// first part), so the caller is held for less time than opening them in
    /// turn would take. No runtime is assumed.
    fn open_frames(
        &self,
        sealed: Vec<(u64, Vec<u8>, usize)>,
        dec: &mut zstd::bulk::Decompressor<'static>,
    ) -> Result<Vec<Bytes>> {
        let open = |part: Vec<(u64, Vec<u8>, usize)>, dec: &mut zstd::bulk::Decompressor<'static>| {
            part.into_iter()
                .map(|(i, frame, plain_len)| self.keys.open_chunk(&self.digest, i, false, frame, plain_len, dec))
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
                .map(|part| scope.spawn(move || open(part, &mut decompressor()?)))
                .collect();
            let first = open(first, dec);
            // Every worker is joined, also when a part failed: `scope` alone
            // waits only for the workers' closures, then detaches them, so
            // they could still be exiting (running thread-local destructors)
            // after this returned. A fuzzer's leak check saw exactly that.
            let parts: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
            let mut out = first?;
            for part in parts {
                out.extend(part.map_err(|_| Error::WorkerLost)??);
            }
            Ok(out)
        })
    }

    fn open_frame(&self, i: u64, sealed: Vec<u8>, dec: &mut zstd::bulk::Decompressor<'static>) -> Result<Bytes> {
        let plain_len = self.index.frame_plain_len(i, self.frame_size());
        self.keys.open_chunk(&self.digest, i, false, sealed, plain_len, dec)
    }

    /// Streams one entry's plaintext, reading only its frames. The stream ends
    /// with an error instead of its last piece if the content does not match
    /// its SHA-256.
    pub fn entry_stream<'a>(&'a self, entry: &'a Entry) -> impl Stream<Item = Result<Bytes>> + 'a {
        struct St {
            frame: u64,
            end_frame: u64,
            done: u64,
            hasher: Sha256,
            dec: Option<zstd::bulk::Decompressor<'static>>,
            finished: bool,
        }
        let frames = entry.frames(self.frame_size());
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
                check_hash(entry, st.hasher.clone())?;
                return Ok(None);
            }
            let plain = self.frame(st.frame, &mut st.dec).await?;
            let f = u64::from(self.frame_size());
            let frame_start = st.frame * f;
            let from = (entry.offset + st.done - frame_start) as usize;
            let take = ((entry.size - st.done) as usize).min(plain.len().saturating_sub(from));
            let piece = plain.slice(from..from + take);
            st.hasher.update(&piece);
            st.done += take as u64;
            st.frame += 1;
            if st.frame >= st.end_frame {
                st.finished = true;
                check_hash(entry, st.hasher.clone())?;
            }
            Ok(Some((piece, st)))
        })
    }

    /// Reads a whole entry into memory (checked against its SHA-256).
    pub async fn read_entry(&self, entry: &Entry) -> Result<Vec<u8>> {
        use futures::TryStreamExt;
        let mut out = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0).min(64 << 20));
        let mut stream = std::pin::pin!(self.entry_stream(entry));
        while let Some(piece) = stream.try_next().await? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    /// Copies an entry to `sink` and returns its size. On a content mismatch
    /// the last piece is withheld and the error returned.
    pub async fn copy_entry<W: AsyncWrite + Unpin>(&self, entry: &Entry, sink: &mut W) -> Result<u64> {
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

    /// Authenticates every frame, decompresses it and checks every entry's
    /// SHA-256, streaming: nothing is written anywhere and memory stays at a
    /// few frames. `progress` is called after every frame.
    pub async fn verify(&self, progress: Option<&ProgressFn>) -> Result<VerifyReport> {
        let mut dec = decompressor()?;
        let frame_count = self.index.frame_lens.len() as u64;
        let f = u64::from(self.frame_size());
        let mut entries = self.index.entries.iter().peekable();
        let mut hasher = Sha256::new();
        let mut in_entry = 0u64; // bytes of the current entry hashed so far
        let mut report = VerifyReport {
            frames: 0,
            entries: 0,
            data_len: 0,
            archive_len: self.info.archive_len,
        };
        let mut prog = Progress::default();
        // Empty entries before the first frame (and between frames) complete at once.
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
                let plain_len = self.index.frame_plain_len(i, self.frame_size());
                sealed.push((i, batch[(s - start) as usize..(e - start) as usize].to_vec(), plain_len));
            }
            drop(batch);
            let opened = self.open_frames(sealed, &mut dec)?;
            for (i, plain) in (next..=last).zip(opened) {
                let (_, e) = self.frame_span(i)?;
                let mut data = &plain[..];
                let mut pos = i * f;
                while let Some(entry) = entries.peek() {
                    let need = entry.size - in_entry;
                    let take = need.min(data.len() as u64) as usize;
                    hasher.update(&data[..take]);
                    data = &data[take..];
                    in_entry += take as u64;
                    pos += take as u64;
                    if in_entry == entry.size {
                        check_hash(entry, std::mem::take(&mut hasher))?;
                        report.entries += 1;
                        in_entry = 0;
                        entries.next();
                    } else {
                        break;
                    }
                }
                debug_assert!(data.is_empty() && pos == i * f + plain.len() as u64);
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
        // Trailing empty entries (or all of them, in an archive without data).
        for entry in entries {
            check_hash(entry, std::mem::take(&mut hasher))?;
            report.entries += 1;
        }
        Ok(report)
    }
}

fn check_hash(entry: &Entry, hasher: Sha256) -> Result<()> {
    let got: [u8; 32] = hasher.finalize().into();
    if got == entry.sha256 {
        Ok(())
    } else {
        Err(Error::ContentMismatch {
            source_name: entry.source.clone(),
            path: entry.path.clone(),
        })
    }
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
/// let root = archive.find("ca", "root.cer").expect("entry present");
/// assert_eq!(archive.read_entry(root)?, b"DER");
/// archive.verify()?;
/// # Ok(()) }
/// ```
pub mod blocking {
    use std::io::Write;
    use std::path::Path;

    use futures::executor::block_on;
    use ibs_envelope::Identity;

    use super::{ArchiveInfo, ArchiveReader, RangeRead, VerifyReport};
    use crate::format::Entry;
    use crate::{Error, Result};

    /// An opened archive with blocking methods (see [`ArchiveReader`]).
    #[derive(Debug)]
    pub struct Archive<R>(ArchiveReader<R>);

    /// Opens the archive file at `path`.
    #[cfg(unix)]
    pub fn open_file(path: &Path, identities: &[&Identity]) -> Result<Archive<std::fs::File>> {
        let file = std::fs::File::open(path).map_err(|error| Error::Read {
            offset: 0,
            len: 0,
            error: std::io::Error::new(error.kind(), format!("{}: {error}", path.display())),
        })?;
        Archive::open(file, identities)
    }

    /// Keyless header and footer checks (see [`super::inspect`]).
    pub fn inspect<R: RangeRead>(source: &R) -> Result<ArchiveInfo> {
        block_on(super::inspect(source))
    }

    impl<R: RangeRead> Archive<R> {
        /// Opens with whichever of `identities` is a recipient.
        pub fn open(source: R, identities: &[&Identity]) -> Result<Self> {
            block_on(ArchiveReader::open(source, identities)).map(Archive)
        }

        /// Header, footer and length.
        pub fn info(&self) -> &ArchiveInfo {
            self.0.info()
        }

        /// Every entry.
        pub fn entries(&self) -> &[Entry] {
            self.0.entries()
        }

        /// The entry `path` of `source`.
        pub fn find(&self, source: &str, path: &str) -> Option<&Entry> {
            self.0.find(source, path)
        }

        /// A whole entry in memory, checked.
        pub fn read_entry(&self, entry: &Entry) -> Result<Vec<u8>> {
            block_on(self.0.read_entry(entry))
        }

        /// Copies an entry to `sink`, checked; returns its size.
        pub fn copy_entry<W: Write>(&self, entry: &Entry, sink: &mut W) -> Result<u64> {
            let mut sink = futures::io::AllowStdIo::new(sink);
            block_on(self.0.copy_entry(entry, &mut sink))
        }

        /// Verifies every frame and entry.
        pub fn verify(&self) -> Result<VerifyReport> {
            block_on(self.0.verify(None))
        }

        /// The async reader inside.
        pub fn into_inner(self) -> ArchiveReader<R> {
            self.0
        }
    }
}
