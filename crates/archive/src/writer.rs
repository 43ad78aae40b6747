//! The streaming writer: entries in, archive bytes out, compression on all cores.
//!
//! [`ArchiveEncoder`] is the sink-agnostic engine: feed it entry data with
//! [`ArchiveEncoder::write`] and take the archive's bytes, in order, from
//! [`ArchiveEncoder::next_output`]. Full frames go to a pool of worker threads
//! that compress and seal them; at most `depth` frames are in flight, so memory
//! is bounded by about `depth × 2 × frame size` whatever the archive's size.
//! [`ArchiveWriter`] (any [`std::io::Write`]) and [`AsyncArchiveWriter`] (any
//! [`futures::io::AsyncWrite`]) drive it for you.
//!
//! The writer never seeks: the header goes first, frames follow in order, the
//! sealed index and the footer come last. An archive cut short anywhere has no
//! valid footer and is rejected by every reader.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ibs_envelope::{Certificate, FileKey, SigningKey};
use sha2::{Digest, Sha256};

use crate::entry::{Entry, EntryKind, EntryPath, Extent, is_ancestor, parent_of};
use crate::format::{
    ArchiveId, ArchiveKeys, COMPRESSION_ZSTD, DEFAULT_FRAME_SIZE, FORMAT_VERSION, Header, HeaderFields,
    check_source_name,
};
use crate::v2::{
    FOOTER_LEN_V2, FooterV2, MAX_SOURCES, PIECE_TARGET_LEN, PieceRecord, Root, TreeCheck, check_entry_fields,
    encode_entry, signature_message,
};
use crate::{Error, Result};

mod compressor;

pub use compressor::FrameCompressor;

/// Called with the writer's progress after every entry and every piece of output.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How far a writer, a verification, a check or a restore has got; each
/// operation's docs say what its totals are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Plaintext (entry stream) bytes gone through: taken in by a writer,
    /// checked by a verification, restored or checked by a restore.
    pub bytes_in: u64,
    /// Bytes on the other side: archive bytes written by a writer or read by
    /// a verification or check; file content written by a restore.
    pub bytes_out: u64,
    /// Entries completed.
    pub entries_done: u64,
    /// Data frames completed.
    pub frames_done: u64,
}

/// Options of a writer. Start from [`WriterOptions::default`].
#[derive(Clone)]
pub struct WriterOptions {
    frame_size: u32,
    level: i32,
    adaptive: bool,
    threads: usize,
    depth: usize,
    created: Option<i64>,
    producer_version: String,
    labels: Vec<(String, String)>,
    archive_id: Option<ArchiveId>,
    progress: Option<ProgressFn>,
    signer: Option<Arc<SigningKey>>,
}

impl Default for WriterOptions {
    /// 1 MiB frames, zstd level 3 (adaptive), one worker per core, two frames in flight per
    /// worker, creation time now, producer version empty.
    fn default() -> Self {
        WriterOptions {
            frame_size: DEFAULT_FRAME_SIZE,
            level: 3,
            adaptive: true,
            threads: 0,
            depth: 0,
            created: None,
            producer_version: String::new(),
            labels: Vec::new(),
            archive_id: None,
            progress: None,
            signer: None,
        }
    }
}

impl fmt::Debug for WriterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterOptions")
            .field("frame_size", &self.frame_size)
            .field("level", &self.level)
            .field("adaptive", &self.adaptive)
            .field("threads", &self.threads)
            .field("depth", &self.depth)
            .field("created", &self.created)
            .field("producer_version", &self.producer_version)
            .field("labels", &self.labels)
            .field("archive_id", &self.archive_id)
            .field("progress", &self.progress.is_some())
            .field("signer", &self.signer.as_ref().map(|k| k.verifying_key().fingerprint()))
            .finish()
    }
}

impl WriterOptions {
    /// Plaintext bytes per frame (4 KiB to 16 MiB; default 1 MiB).
    pub fn frame_size(mut self, bytes: u32) -> Self {
        self.frame_size = bytes;
        self
    }

    /// zstd compression level (default 3).
    pub fn level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Whether frames whose probe shows the level would not pay are
    /// compressed at level 1 instead (default true; see [`FrameCompressor`]).
    /// Off, every compressible frame is compressed at [`level`](Self::level).
    pub fn adaptive_level(mut self, adaptive: bool) -> Self {
        self.adaptive = adaptive;
        self
    }

    /// Worker threads (default: one per available core).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Frames in flight at most (default: twice the worker count, at least 2).
    pub fn depth(mut self, frames: usize) -> Self {
        self.depth = frames;
        self
    }

    /// Creation time in Unix seconds (default: now).
    pub fn created(mut self, unix_seconds: i64) -> Self {
        self.created = Some(unix_seconds);
        self
    }

    /// The producing system's version, read by recovery's version rule.
    pub fn producer_version(mut self, version: impl Into<String>) -> Self {
        self.producer_version = version.into();
        self
    }

    /// Adds a clear-text label to the header (fqdn, region, host, …).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// A fixed archive id (default: random). Only for reproducible tests.
    pub fn archive_id(mut self, id: ArchiveId) -> Self {
        self.archive_id = Some(id);
        self
    }

    /// A progress callback.
    pub fn progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// Signs the archive with this controller key (FORMAT.md §14.7): its
    /// public key goes into the header, the signature after the root.
    pub fn signer(mut self, key: Arc<SigningKey>) -> Self {
        self.signer = Some(key);
        self
    }
}

/// What a finished archive holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// The archive's id.
    pub archive_id: ArchiveId,
    /// Total archive bytes written.
    pub archive_len: u64,
    /// Total plaintext bytes of all entries.
    pub data_len: u64,
    /// Number of data frames.
    pub frames: u64,
    /// Number of entries (folders the writer added for parents included).
    pub entries: u64,
    /// The sources, in the order of their index (with or without entries).
    pub sources: Vec<String>,
    /// The signer's fingerprint, when signed.
    pub signer: Option<ibs_envelope::SignerFingerprint>,
}

/// Names and metadata of an entry about to be written: a file by default,
/// or a folder, symbolic link or hard link.
///
/// ```
/// use ibs_archive::EntryMeta;
/// let key = EntryMeta::new("ca", "private/root.key").mode(0o600).mtime_ns(1_700_000_000, 5).owner(0, 0);
/// let dir = EntryMeta::new("ca", "private").folder().mode(0o700);
/// let link = EntryMeta::new("ca", "current").symlink("private/root.key");
/// assert_eq!(key.path(), "private/root.key");
/// # let _ = (dir, link);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    entry: Entry,
}

impl EntryMeta {
    /// A file `path` of `source` (rules: [`check_source_name`], FORMAT.md §14.5).
    pub fn new(source: impl Into<String>, path: impl Into<EntryPath>) -> Self {
        EntryMeta {
            entry: Entry::file(source, path, 0, crate::entry::EMPTY_SHA256),
        }
    }

    /// Makes it a folder (no data).
    pub fn folder(mut self) -> Self {
        self.entry.kind = EntryKind::Folder;
        self
    }

    /// Makes it a symbolic link to `target` (any bytes but NUL; never followed).
    pub fn symlink(mut self, target: impl Into<Vec<u8>>) -> Self {
        self.entry.kind = EntryKind::Symlink { target: target.into() };
        self
    }

    /// Makes it a hard link to the earlier file entry `target` of the same source.
    pub fn hard_link(mut self, target: impl Into<EntryPath>) -> Self {
        self.entry.kind = EntryKind::HardLink { target: target.into() };
        self
    }

    /// Unix permission bits: the low 12 bits of `st_mode` (`0..=0o7777`,
    /// with setuid, setgid and sticky); the writer refuses any other bit.
    pub fn mode(mut self, mode: u32) -> Self {
        self.entry.mode = Some(mode);
        self
    }

    /// Modification time in whole Unix seconds (nanoseconds 0; see
    /// [`mtime_ns`](Self::mtime_ns)).
    pub fn mtime(mut self, unix_seconds: i64) -> Self {
        self.entry.mtime = Some(unix_seconds);
        self.entry.mtime_nanos = 0;
        self
    }

    /// Modification time, Unix seconds (negative before 1970) and nanoseconds.
    pub fn mtime_ns(mut self, unix_seconds: i64, nanos: u32) -> Self {
        self.entry.mtime = Some(unix_seconds);
        self.entry.mtime_nanos = nanos;
        self
    }

    /// Numeric owner: user and group ids (`st_uid`, `st_gid`).
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.entry.owner = Some((uid, gid));
        self
    }

    /// Owner user and group names (empty when unknown).
    pub fn owner_names(mut self, user: impl Into<Vec<u8>>, group: impl Into<Vec<u8>>) -> Self {
        self.entry.owner_names = Some((user.into(), group.into()));
        self
    }

    /// A sparse file of logical length `size` whose data lies in `extents`
    /// (sorted, not overlapping); the data written for the entry is the
    /// extents' content, in order, and nothing else.
    pub fn sparse(mut self, size: u64, extents: Vec<Extent>) -> Self {
        self.entry.size = size;
        self.entry.extents = Some(extents);
        self
    }

    /// An extended attribute (kept in name order).
    pub fn xattr(mut self, name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        let name = name.into();
        match self.entry.xattrs.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(i) => self.entry.xattrs[i].1 = value.into(),
            Err(i) => self.entry.xattrs.insert(i, (name, value.into())),
        }
        self
    }

    /// The source it belongs to, as given to [`EntryMeta::new`].
    pub fn source(&self) -> &str {
        &self.entry.source
    }

    /// Its path within the source, as given to [`EntryMeta::new`] (checked
    /// when the entry is written, not here).
    pub fn path(&self) -> &EntryPath {
        &self.entry.path
    }

    /// What it is: a file unless [`folder`](Self::folder),
    /// [`symlink`](Self::symlink) or [`hard_link`](Self::hard_link) changed it.
    pub fn kind(&self) -> &EntryKind {
        &self.entry.kind
    }
}

struct Job {
    counter: u64,
    data: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<u8>>>,
}

/// Worker threads that compress and seal frames.
struct Pool {
    tx: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize, keys: Arc<ArchiveKeys>, digest: [u8; 32], level: i32, adaptive: bool) -> Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let keys = Arc::clone(&keys);
            let handle = std::thread::Builder::new()
                .name(format!("ibs-archive-{i}"))
                .spawn(move || worker(&rx, &keys, &digest, level, adaptive))
                .map_err(Error::WorkerSpawn)?;
            workers.push(handle);
        }
        Ok(Pool { tx: Some(tx), workers })
    }

    fn submit(&self, job: Job) -> Result<()> {
        self.tx
            .as_ref()
            .ok_or(Error::WorkerLost)?
            .send(job)
            .map_err(|_| Error::WorkerLost)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>, keys: &ArchiveKeys, digest: &[u8; 32], level: i32, adaptive: bool) {
    let mut compressor = FrameCompressor::new(level, adaptive).map_err(|e| e.to_string());
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = match compressor.as_mut() {
            Ok(c) => keys.seal_chunk(digest, job.counter, false, &job.data, c.pick(&job.data)),
            Err(reason) => Err(Error::Compression {
                region: crate::Region::Frame(job.counter),
                reason: reason.clone(),
            }),
        };
        let _ = job.reply.send(result);
    }
}

enum Pending {
    Ready(Bytes),
    Frame(oneshot::Receiver<Result<Vec<u8>>>),
    /// A sealed index piece: its record's offset is set when it is emitted.
    Piece(usize, Bytes),
    Tail,
}

struct OpenEntry {
    entry: Entry,
    source: u16,
    written: u64,
    hasher: Sha256,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Writing,
    Finishing,
    Done,
    Failed,
}

/// The sink-agnostic writing engine: entry data in, archive bytes out, in
/// order. Full frames go to a pool of worker threads that compress and seal
/// them; at most `depth` frames are in flight, so memory is bounded by about
/// `depth × 2 × frame size` whatever the archive's size. [`ArchiveWriter`]
/// and [`AsyncArchiveWriter`] drive it for a `Write` or an `AsyncWrite`.
///
/// Protocol: [`start_entry`](Self::start_entry), any number of
/// [`write`](Self::write)s, [`end_entry`](Self::end_entry); repeat; then
/// [`finish`](Self::finish). Between calls, move output from
/// [`next_output`](Self::next_output) (or [`next_ready`](Self::next_ready)) to
/// the sink until it returns `None`. `write` accepts nothing while the pipeline
/// is full: drain an output and call it again.
pub struct ArchiveEncoder {
    header: Header,
    keys: Arc<ArchiveKeys>,
    digest: [u8; 32],
    level: i32,
    frame_size: usize,
    depth: usize,
    pool: Pool,
    queue: VecDeque<Pending>,
    in_flight: usize,
    buf: Vec<u8>,
    next_counter: u64,
    data_frames: u64,
    data_len: u64,
    frame_lens: Vec<u32>,
    sources: Vec<String>,
    tree: TreeCheck,
    piece: Vec<u8>,
    piece_entries: u32,
    piece_first: Option<(u16, Vec<u8>, u64)>,
    pieces: Vec<PieceRecord>,
    piece_compressor: Option<FrameCompressor>,
    entry_count: u64,
    signer: Option<Arc<SigningKey>>,
    summary_sources: Vec<String>,
    current: Option<OpenEntry>,
    state: State,
    progress: Progress,
    progress_fn: Option<ProgressFn>,
}

impl fmt::Debug for ArchiveEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveEncoder")
            .field("archive_id", &self.header.fields().archive_id)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl ArchiveEncoder {
    /// Starts an archive encrypted to `recipients` (a fresh file key wrapped to each).
    pub fn new(recipients: &[&Certificate], options: WriterOptions) -> Result<Self> {
        let file_key = FileKey::generate()?;
        Self::with_file_key(&file_key, recipients, options)
    }

    /// Starts an archive with a given file key. Only for test vectors and
    /// tools that must reproduce an archive; [`ArchiveEncoder::new`] is what
    /// everything else uses.
    pub fn with_file_key(file_key: &FileKey, recipients: &[&Certificate], options: WriterOptions) -> Result<Self> {
        let stanzas = ibs_envelope::wrap_file_key(file_key, recipients)?;
        let salt = ibs_envelope::generate_salt()?;
        let keys = ArchiveKeys::derive(file_key, &salt);
        let archive_id = match options.archive_id {
            Some(id) => id,
            None => ArchiveId::generate()?,
        };
        let created = options.created.unwrap_or_else(now_unix);
        let header = Header::seal(
            HeaderFields {
                archive_id,
                created,
                frame_size: options.frame_size,
                compression: COMPRESSION_ZSTD,
                salt,
                commitment: *keys.commitment(),
                producer_version: options.producer_version,
                labels: options.labels,
                recipients: stanzas,
                version: FORMAT_VERSION,
                signer: options.signer.as_ref().map(|k| *k.verifying_key().as_bytes()),
            },
            &keys,
        )?;
        let threads = if options.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.threads
        };
        let depth = if options.depth == 0 { 2 * threads } else { options.depth }.max(2);
        let digest = header.digest();
        let keys = Arc::new(keys);
        let pool = Pool::new(threads, Arc::clone(&keys), digest, options.level, options.adaptive)?;
        let frame_size = options.frame_size as usize;
        let mut queue = VecDeque::with_capacity(depth + 2);
        queue.push_back(Pending::Ready(Bytes::copy_from_slice(header.as_bytes())));
        Ok(ArchiveEncoder {
            header,
            keys,
            digest,
            level: options.level,
            frame_size,
            depth,
            pool,
            queue,
            in_flight: 0,
            buf: Vec::with_capacity(frame_size),
            next_counter: 0,
            data_frames: 0,
            data_len: 0,
            frame_lens: Vec::new(),
            sources: Vec::new(),
            tree: TreeCheck::default(),
            piece: Vec::new(),
            piece_entries: 0,
            piece_first: None,
            pieces: Vec::new(),
            piece_compressor: None,
            entry_count: 0,
            signer: options.signer,
            summary_sources: Vec::new(),
            current: None,
            state: State::Writing,
            progress: Progress::default(),
            progress_fn: options.progress,
        })
    }

    /// The archive's header (already queued as the first output).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Progress so far.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Whether the pipeline is full (a `write` may accept nothing until an output is drained).
    pub fn is_saturated(&self) -> bool {
        self.in_flight >= self.depth
    }

    fn usable(&self, want: State) -> Result<()> {
        match self.state {
            s if s == want => Ok(()),
            State::Failed => Err(Error::Usage(
                "the archive writer failed earlier; start a new archive".into(),
            )),
            _ => Err(Error::Usage("the archive is already finished".into())),
        }
    }

    fn fail<T>(&mut self, e: Error) -> Result<T> {
        self.state = State::Failed;
        Err(e)
    }

    /// Records source `name` (a source with no entries is still recorded,
    /// and restores as an empty folder) and makes it the current one.
    /// Entries of a source are added together: once entries of a later
    /// source were added, an earlier source cannot take more.
    pub fn add_source(&mut self, name: &str) -> Result<()> {
        self.usable(State::Writing)?;
        self.source_index(name).map(|_| ())
    }

    fn source_index(&mut self, name: &str) -> Result<u16> {
        check_source_name(name)?;
        if let Some(i) = self.sources.iter().position(|s| s == name) {
            if i + 1 != self.sources.len() {
                return Err(Error::Usage(format!(
                    "source {name} was already finished: add every entry of a source together (entries must come in (source, path) order)"
                )));
            }
            return Ok(i as u16);
        }
        if self.sources.len() >= MAX_SOURCES {
            return Err(Error::Usage(format!("an archive holds at most {MAX_SOURCES} sources")));
        }
        self.sources.push(name.to_owned());
        Ok((self.sources.len() - 1) as u16)
    }

    /// Begins an entry. A file's data follows through [`write`](Self::write);
    /// other kinds take none. Entries come in (source, path) key order
    /// (FORMAT.md §14.5: a depth-first walk with each folder's children sorted
    /// by name bytes); an entry out of order, repeated, or under a path that
    /// is a file or link is refused with both names. A parent folder the
    /// caller did not add is added first, without metadata.
    pub fn start_entry(&mut self, meta: EntryMeta) -> Result<()> {
        self.usable(State::Writing)?;
        if let Some(open) = &self.current {
            return Err(Error::Usage(format!(
                "entry {} is still open",
                open.entry.display_name()
            )));
        }
        let mut entry = meta.entry;
        if entry.extents.is_none() {
            entry.size = 0;
        }
        if entry
            .owner_names
            .as_ref()
            .is_some_and(|(u, g)| u.is_empty() && g.is_empty())
        {
            entry.owner_names = None;
        }
        check_entry_fields(&entry).map_err(|why| Error::Usage(format!("entry {}: {why}", entry.display_name())))?;
        let source = self.source_index(&entry.source)?;
        // Parents not yet recorded, outermost first.
        let path = entry.path.as_bytes();
        let tree = std::mem::take(&mut self.tree);
        let same_source = tree.last().is_some_and(|(s, _)| s == source);
        let open = if same_source { tree.open_folders() } else { &[] };
        let deepest_open = open.iter().rev().find(|f| is_ancestor(f, path)).map_or(0, |f| f.len());
        let mut missing = Vec::new();
        let mut p = parent_of(path);
        while let Some(parent) = p {
            if parent.len() <= deepest_open {
                break;
            }
            missing.push(parent.to_vec());
            p = parent_of(parent);
        }
        missing.reverse();
        if let Some((s, last)) = tree.last()
            && s == source
            && missing.iter().any(|m| m.as_slice() == last)
        {
            let why = format!(
                "{} has no folder entry for its parent {} before it: {} was written as a file or link, which \
                 cannot hold entries",
                entry.path,
                crate::entry::escape_bytes(last),
                crate::entry::escape_bytes(last)
            );
            self.tree = tree;
            return Err(Error::Usage(format!("entry {}: {why}", entry.display_name())));
        }
        let mut trial = tree.clone();
        let checked = missing
            .iter()
            .try_for_each(|m| trial.check(source, m, true))
            .and_then(|()| trial.check(source, path, entry.kind == EntryKind::Folder));
        if let Err(why) = checked {
            // Nothing was recorded: the caller may go on with another entry.
            self.tree = tree;
            return Err(Error::Usage(format!("entry {}: {why}", entry.display_name())));
        }
        self.tree = trial;
        for m in missing {
            let mut folder = Entry::file(entry.source.clone(), m, 0, crate::entry::EMPTY_SHA256);
            folder.kind = EntryKind::Folder;
            folder.offset = self.data_len;
            self.add_to_piece(source, &folder)?;
        }
        entry.offset = self.data_len;
        self.current = Some(OpenEntry {
            entry,
            source,
            written: 0,
            hasher: Sha256::new(),
        });
        Ok(())
    }

    /// Takes up to all of `data` for the open entry and returns how much it took:
    /// nothing when the pipeline is full (drain an output first).
    pub fn write(&mut self, data: &[u8]) -> Result<usize> {
        self.usable(State::Writing)?;
        match &self.current {
            None => return Err(Error::Usage("write outside an entry: call start_entry first".into())),
            Some(open) if open.entry.kind != EntryKind::File => {
                return Err(Error::Usage(format!(
                    "entry {} is a {}: it has no data",
                    open.entry.display_name(),
                    open.entry.kind.name()
                )));
            }
            Some(_) => {}
        }
        if data.is_empty() {
            return Ok(0);
        }
        if self.buf.len() == self.frame_size {
            if self.is_saturated() {
                return Ok(0);
            }
            self.submit_frame()?;
        }
        let n = data.len().min(self.frame_size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if let Some(open) = self.current.as_mut() {
            open.hasher.update(&data[..n]);
            open.written += n as u64;
        }
        self.data_len += n as u64;
        self.progress.bytes_in += n as u64;
        if self.buf.len() == self.frame_size && !self.is_saturated() {
            self.submit_frame()?;
        }
        Ok(n)
    }

    fn submit_frame(&mut self) -> Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.frame_size));
        let (reply, rx) = oneshot::channel();
        let counter = self.next_counter;
        self.next_counter += 1;
        self.data_frames += 1;
        if let Err(e) = self.pool.submit(Job { counter, data, reply }) {
            return self.fail(e);
        }
        self.queue.push_back(Pending::Frame(rx));
        self.in_flight += 1;
        Ok(())
    }

    /// Ends the open entry and returns it as the index records it.
    pub fn end_entry(&mut self) -> Result<Entry> {
        self.usable(State::Writing)?;
        let open = self
            .current
            .take()
            .ok_or_else(|| Error::Usage("end_entry without an open entry".into()))?;
        let mut entry = open.entry;
        match &entry.extents {
            None => entry.size = open.written,
            Some(extents) => {
                let want: u64 = extents.iter().map(|x| x.len).sum();
                if want != open.written {
                    return self.fail(Error::Usage(format!(
                        "sparse entry {}: {} bytes written, its extents hold {want}",
                        entry.display_name(),
                        open.written
                    )));
                }
            }
        }
        entry.sha256 = open.hasher.finalize().into();
        self.add_to_piece(open.source, &entry)?;
        self.progress.entries_done += 1;
        self.report();
        Ok(entry)
    }

    fn add_to_piece(&mut self, source: u16, entry: &Entry) -> Result<()> {
        if self.piece_entries == 0 {
            self.piece.clear();
            self.piece.extend_from_slice(&[0; 4]);
            self.piece_first = Some((source, entry.path.as_bytes().to_vec(), entry.offset));
        }
        encode_entry(&mut self.piece, entry, source);
        self.piece_entries += 1;
        self.entry_count += 1;
        if self.piece.len() >= PIECE_TARGET_LEN {
            self.seal_piece()?;
        }
        Ok(())
    }

    /// Seals the entries gathered so far as the next index piece and queues it.
    fn seal_piece(&mut self) -> Result<()> {
        let Some((first_source, first_path, stream_offset)) = self.piece_first.take() else {
            return Ok(());
        };
        let entries = std::mem::take(&mut self.piece_entries);
        self.piece[..4].copy_from_slice(&entries.to_le_bytes());
        if self.piece_compressor.is_none() {
            match FrameCompressor::new(self.level, false) {
                Ok(c) => self.piece_compressor = Some(c),
                Err(e) => {
                    return self.fail(Error::Compression {
                        region: crate::Region::Piece(self.pieces.len() as u64),
                        reason: e.to_string(),
                    });
                }
            }
        }
        let counter = self.next_counter;
        let sealed = match self.keys.seal_chunk(
            &self.digest,
            counter,
            false,
            &self.piece,
            self.piece_compressor.as_mut().and_then(|c| c.pick(&self.piece)),
        ) {
            Ok(s) => s,
            Err(e) => return self.fail(e),
        };
        self.next_counter += 1;
        self.piece.clear();
        let Ok(sealed_len) = u32::try_from(sealed.len()) else {
            return self.fail(Error::Usage("index piece larger than 4 GiB".into()));
        };
        self.pieces.push(PieceRecord {
            offset: 0,
            sealed_len,
            frames_before: self.data_frames,
            sha256: Sha256::digest(&sealed).into(),
            entries,
            stream_offset,
            first_source,
            first_path,
        });
        self.queue
            .push_back(Pending::Piece(self.pieces.len() - 1, Bytes::from(sealed)));
        Ok(())
    }

    /// Ends the archive: the last partial frame, the index and the footer are
    /// queued. Keep taking outputs until `next_output` returns `None`.
    pub fn finish(&mut self) -> Result<()> {
        self.usable(State::Writing)?;
        if let Some(open) = &self.current {
            return Err(Error::Usage(format!(
                "entry {} is still open",
                open.entry.display_name()
            )));
        }
        if !self.buf.is_empty() {
            self.submit_frame()?;
        }
        self.seal_piece()?;
        self.queue.push_back(Pending::Tail);
        self.state = State::Finishing;
        Ok(())
    }

    /// The next piece of the archive, waiting for its frame if needed; `None`
    /// when everything queued so far has been taken.
    pub async fn next_output(&mut self) -> Result<Option<Bytes>> {
        let out = match self.queue.pop_front() {
            None => return Ok(None),
            Some(Pending::Ready(b)) => b,
            Some(Pending::Frame(rx)) => {
                let sealed = rx.await;
                self.frame_done(sealed)?
            }
            Some(Pending::Piece(i, b)) => self.piece_out(i, b),
            Some(Pending::Tail) => self.tail()?,
        };
        self.emitted(&out);
        Ok(Some(out))
    }

    fn piece_out(&mut self, i: usize, bytes: Bytes) -> Bytes {
        if let Some(rec) = self.pieces.get_mut(i) {
            rec.offset = self.progress.bytes_out;
        }
        bytes
    }

    /// Like [`next_output`](Self::next_output) but never waits: `None` when the
    /// next piece is not ready yet (or there is none).
    pub fn next_ready(&mut self) -> Result<Option<Bytes>> {
        let sealed = match self.queue.front_mut() {
            None => return Ok(None),
            Some(Pending::Ready(_) | Pending::Piece(..) | Pending::Tail) => None,
            Some(Pending::Frame(rx)) => match rx.try_recv() {
                Ok(None) => return Ok(None),
                Ok(Some(r)) => Some(Ok(r)),
                Err(canceled) => Some(Err(canceled)),
            },
        };
        let out = match (self.queue.pop_front(), sealed) {
            (Some(Pending::Ready(b)), _) => b,
            (Some(Pending::Piece(i, b)), _) => self.piece_out(i, b),
            (Some(Pending::Tail), _) => self.tail()?,
            (_, Some(sealed)) => self.frame_done(sealed)?,
            (_, None) => return Ok(None),
        };
        self.emitted(&out);
        Ok(Some(out))
    }

    fn emitted(&mut self, out: &Bytes) {
        self.progress.bytes_out += out.len() as u64;
        self.report();
    }

    fn frame_done(&mut self, sealed: Result<Result<Vec<u8>>, oneshot::Canceled>) -> Result<Bytes> {
        self.in_flight -= 1;
        let sealed = match sealed {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.fail(e),
            Err(_) => return self.fail(Error::WorkerLost),
        };
        let Ok(len) = u32::try_from(sealed.len()) else {
            return self.fail(Error::Usage("frame larger than 4 GiB".into()));
        };
        self.frame_lens.push(len);
        self.progress.frames_done += 1;
        // Submit a frame that waited for room in the pipeline.
        if self.state == State::Writing && self.buf.len() == self.frame_size {
            self.submit_frame()?;
        }
        Ok(Bytes::from(sealed))
    }

    fn tail(&mut self) -> Result<Bytes> {
        let root = Root {
            data_len: self.data_len,
            frame_lens: std::mem::take(&mut self.frame_lens),
            sources: self.sources.clone(),
            entry_count: self.entry_count,
            pieces: std::mem::take(&mut self.pieces),
        };
        let body = root.encode();
        let mut compressor = match FrameCompressor::new(self.level, false) {
            Ok(c) => c,
            Err(e) => {
                return self.fail(Error::Compression {
                    region: crate::Region::Root,
                    reason: e.to_string(),
                });
            }
        };
        let root_counter = self.next_counter;
        let sealed = match self
            .keys
            .seal_chunk(&self.digest, root_counter, true, &body, compressor.pick(&body))
        {
            Ok(s) => s,
            Err(e) => return self.fail(e),
        };
        let Ok(root_len) = u32::try_from(sealed.len()) else {
            return self.fail(Error::Usage("root larger than 4 GiB".into()));
        };
        let signature_len = if self.signer.is_some() { 65 } else { 1 };
        let footer = FooterV2 {
            root_offset: self.progress.bytes_out,
            root_len,
            signature_len,
            chunk_count: root_counter + 1,
            frame_count: self.data_frames,
            archive_id: self.header.fields().archive_id,
        }
        .encode();
        let mut out = sealed;
        match &self.signer {
            None => out.push(crate::v2::SIGNER_NONE),
            Some(key) => {
                let message = signature_message(&self.digest, &out, &footer);
                let signature = key.sign(&message);
                out.push(crate::v2::SIGNER_ED25519);
                out.extend_from_slice(&signature);
            }
        }
        out.extend_from_slice(&footer);
        debug_assert_eq!(footer.len(), FOOTER_LEN_V2);
        self.summary_sources = root.sources;
        self.state = State::Done;
        Ok(Bytes::from(out))
    }

    /// What the finished archive holds (complete once `next_output` returned `None` after `finish`).
    pub fn summary(&self) -> ArchiveSummary {
        ArchiveSummary {
            archive_id: self.header.fields().archive_id,
            archive_len: self.progress.bytes_out,
            data_len: self.data_len,
            frames: self.data_frames,
            entries: self.entry_count,
            sources: if self.state == State::Done {
                self.summary_sources.clone()
            } else {
                self.sources.clone()
            },
            signer: self.signer.as_ref().map(|k| k.verifying_key().fingerprint()),
        }
    }

    /// [`summary`](Self::summary), taking the encoder.
    pub fn into_summary(self) -> ArchiveSummary {
        self.summary()
    }

    /// Whether the whole archive has been produced.
    pub fn is_done(&self) -> bool {
        self.state == State::Done && self.queue.is_empty()
    }

    fn report(&self) {
        if let Some(f) = &self.progress_fn {
            f(&self.progress);
        }
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

const READ_CHUNK: usize = 256 << 10;

/// Writes an archive to any [`Write`] sink.
///
/// ```
/// use ibs_archive::{ArchiveWriter, EntryMeta, WriterOptions};
/// # use ibs_envelope::{keygen, Certificate, Password};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pair = keygen::generate(&keygen::KeygenOptions::new("doc", 1_700_000_000), &Password::new("pw"))?;
/// let cert = Certificate::parse(&pair.cer)?;
/// let mut w = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default().producer_version("1.2408.0"))?;
/// w.add_entry(EntryMeta::new("rbac", "assignments.json"), &b"[]"[..])?;
/// let (bytes, summary) = w.finish()?;
/// assert_eq!(summary.archive_len, bytes.len() as u64);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ArchiveWriter<W: Write> {
    enc: ArchiveEncoder,
    sink: W,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive to `recipients`, writing to `sink`.
    pub fn new(sink: W, recipients: &[&Certificate], options: WriterOptions) -> Result<Self> {
        Ok(ArchiveWriter {
            enc: ArchiveEncoder::new(recipients, options)?,
            sink,
        })
    }

    /// Wraps an encoder made with [`ArchiveEncoder::with_file_key`].
    pub fn from_encoder(enc: ArchiveEncoder, sink: W) -> Self {
        ArchiveWriter { enc, sink }
    }

    /// Adds one entry, reading its data from `reader` to the end.
    pub fn add_entry<R: Read>(&mut self, meta: EntryMeta, mut reader: R) -> Result<Entry> {
        let (source, path) = (meta.source().to_owned(), meta.path().to_string());
        let is_file = *meta.kind() == EntryKind::File;
        self.enc.start_entry(meta)?;
        let mut buf = vec![0u8; if is_file { READ_CHUNK } else { 0 }];
        if is_file {
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        self.enc.state = State::Failed;
                        return Err(Error::EntrySource {
                            source_name: source,
                            path,
                            error,
                        });
                    }
                };
                self.push(&buf[..n])?;
            }
        }
        let entry = self.enc.end_entry()?;
        while let Some(out) = self.enc.next_ready()? {
            self.emit(Some(out))?;
        }
        Ok(entry)
    }

    /// Adds an entry without data: a folder, a link, or an empty file.
    pub fn add(&mut self, meta: EntryMeta) -> Result<Entry> {
        self.add_entry(meta, io::empty())
    }

    /// Records a source (see [`ArchiveEncoder::add_source`]).
    pub fn add_source(&mut self, name: &str) -> Result<()> {
        self.enc.add_source(name)
    }

    fn push(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = self.enc.write(data)?;
            data = &data[n..];
            if n == 0 {
                let out = futures::executor::block_on(self.enc.next_output())?;
                self.emit(out)?;
            }
            while let Some(out) = self.enc.next_ready()? {
                self.emit(Some(out))?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, out: Option<Bytes>) -> Result<()> {
        if let Some(bytes) = out
            && let Err(e) = self.sink.write_all(&bytes)
        {
            self.enc.state = State::Failed;
            return Err(Error::Sink(e));
        }
        Ok(())
    }

    /// Writes the index and footer, flushes, and returns the sink and a summary.
    pub fn finish(mut self) -> Result<(W, ArchiveSummary)> {
        self.enc.finish()?;
        while let Some(out) = futures::executor::block_on(self.enc.next_output())? {
            self.emit(Some(out))?;
        }
        self.sink.flush().map_err(Error::Sink)?;
        Ok((self.sink, self.enc.into_summary()))
    }
}

/// Writes an archive to any [`AsyncWrite`] sink (use `tokio_util::compat` for
/// Tokio's `AsyncWrite`). Compression still runs on worker threads; the
/// futures only wait for them.
#[derive(Debug)]
pub struct AsyncArchiveWriter<W: AsyncWrite + Unpin> {
    enc: ArchiveEncoder,
    sink: W,
}

impl<W: AsyncWrite + Unpin> AsyncArchiveWriter<W> {
    /// Starts an archive to `recipients`, writing to `sink`.
    pub fn new(sink: W, recipients: &[&Certificate], options: WriterOptions) -> Result<Self> {
        Ok(AsyncArchiveWriter {
            enc: ArchiveEncoder::new(recipients, options)?,
            sink,
        })
    }

    /// Adds one entry, reading its data from `reader` to the end.
    pub async fn add_entry<R: AsyncRead + Unpin>(&mut self, meta: EntryMeta, mut reader: R) -> Result<Entry> {
        let (source, path) = (meta.source().to_owned(), meta.path().to_string());
        let is_file = *meta.kind() == EntryKind::File;
        self.enc.start_entry(meta)?;
        let mut buf = vec![0u8; if is_file { READ_CHUNK } else { 0 }];
        if is_file {
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        self.enc.state = State::Failed;
                        return Err(Error::EntrySource {
                            source_name: source,
                            path,
                            error,
                        });
                    }
                };
                let mut data = &buf[..n];
                while !data.is_empty() {
                    let n = self.enc.write(data)?;
                    data = &data[n..];
                    if n == 0 {
                        let out = self.enc.next_output().await?;
                        self.emit(out).await?;
                    }
                    while let Some(out) = self.enc.next_ready()? {
                        self.emit(Some(out)).await?;
                    }
                }
            }
        }
        let entry = self.enc.end_entry()?;
        while let Some(out) = self.enc.next_ready()? {
            self.emit(Some(out)).await?;
        }
        Ok(entry)
    }

    /// Records a source (see [`ArchiveEncoder::add_source`]).
    pub fn add_source(&mut self, name: &str) -> Result<()> {
        self.enc.add_source(name)
    }

    async fn emit(&mut self, out: Option<Bytes>) -> Result<()> {
        if let Some(bytes) = out
            && let Err(e) = self.sink.write_all(&bytes).await
        {
            self.enc.state = State::Failed;
            return Err(Error::Sink(e));
        }
        Ok(())
    }

    /// Writes the index and footer, flushes, and returns the sink and a summary.
    pub async fn finish(mut self) -> Result<(W, ArchiveSummary)> {
        self.enc.finish()?;
        while let Some(out) = self.enc.next_output().await? {
            self.emit(Some(out)).await?;
        }
        self.sink.flush().await.map_err(Error::Sink)?;
        Ok((self.sink, self.enc.into_summary()))
    }
}
