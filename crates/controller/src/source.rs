//! Backup sources: what a backup captures.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
pub use ibs_archive::{EntryMeta, EntryPath, Extent};
use tokio::io::AsyncReadExt;

use crate::{ControllerError, Result};

/// The standard infrastructure sources. An embedding service registers one
/// [`BackupSource`] per name it has.
pub mod names {
    /// Deployment inputs (the answers the system was deployed with).
    pub const DEPLOYMENT_INPUTS: &str = "deployment-inputs";
    /// The internal identity store (users, groups, service principals).
    pub const INTERNAL_IDENTITY: &str = "identity";
    /// Federated identity configuration (AD FS / Entra ID trust).
    pub const FEDERATED_IDENTITY: &str = "federated-identity";
    /// Internal certificate authority root certificates.
    pub const CA_ROOTS: &str = "ca";
    /// Resource-manager configuration: subscriptions, plans, offers, quotas.
    pub const RESOURCE_MANAGER: &str = "resource-manager";
    /// Key vault secrets and vaults.
    pub const KEY_VAULT: &str = "key-vault";
    /// Role-based access control assignments.
    pub const RBAC: &str = "rbac";
    /// All of them, in capture order.
    pub const ALL: [&str; 7] = [
        DEPLOYMENT_INPUTS,
        INTERNAL_IDENTITY,
        FEDERATED_IDENTITY,
        CA_ROOTS,
        RESOURCE_MANAGER,
        KEY_VAULT,
        RBAC,
    ];
}

/// Where a source writes its entries (the running backup's archive).
///
/// Entries come in key order (FORMAT.md §14.5: a depth-first walk with each
/// folder's children sorted by name bytes, a folder before its contents);
/// one out of order, repeated, or under a path that is a file or link is
/// refused with both names. Parent folders not given are recorded without
/// metadata.
#[async_trait]
pub trait EntrySink: Send {
    /// Starts an entry of the current source: a file, folder or link with
    /// its metadata ([`EntryMeta`]; its source must be the current source's
    /// name). A file's data follows through [`write`](Self::write).
    async fn begin(&mut self, entry: EntryMeta) -> Result<()>;
    /// Appends data to the entry (files only; a sparse file's extents' data).
    async fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Ends the entry: a file's size is what [`write`](Self::write) gave
    /// (a sparse file's must add up to its extents).
    async fn end(&mut self) -> Result<()>;
    /// Records something the source skipped or could not capture exactly;
    /// the backup goes on and the job ends "succeeded with warnings". A
    /// sink keeps a bounded number of them (see [`Warnings`]).
    fn warn(&mut self, warning: CaptureWarning);
}

/// A named source of backup data, captured while the system keeps running.
#[async_trait]
pub trait BackupSource: Send + Sync {
    /// Its name (see [`names`]).
    fn name(&self) -> &str;
    /// Writes every entry of the source to `sink`.
    async fn capture(&self, sink: &mut dyn EntrySink) -> Result<()>;
}

/// Stops a capture cleanly: sources wrapped with [`Stop::wrap`] fail with
/// [`ControllerError::Stopped`] at their next entry or piece of data once
/// [`Stop::stop`] was called, and the job removes what the attempt had
/// written (its partial upload and folder), as for any failed attempt —
/// rather than leaving a partial archive behind, as a process killed
/// mid-upload does. Clones share one flag.
#[derive(Clone, Debug, Default)]
pub struct Stop(std::sync::Arc<StopState>);

/// The flag (checked at every entry and piece) and the reason.
#[derive(Debug, Default)]
struct StopState {
    set: std::sync::atomic::AtomicBool,
    reason: std::sync::Mutex<Option<String>>,
}

impl Stop {
    /// A flag not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops every capture wrapped with this flag, saying why.
    pub fn stop(&self, reason: impl Into<String>) {
        let mut r = self.0.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.get_or_insert_with(|| reason.into());
        self.0.set.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Why it was stopped, if it was.
    pub fn reason(&self) -> Option<String> {
        if !self.0.set.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.0
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `source`, stopping at its next entry or piece of data once this flag is set.
    pub fn wrap(&self, source: std::sync::Arc<dyn BackupSource>) -> std::sync::Arc<dyn BackupSource> {
        std::sync::Arc::new(Stoppable {
            inner: source,
            stop: self.clone(),
        })
    }

    fn check(&self) -> Result<()> {
        match self.reason() {
            Some(reason) => Err(ControllerError::Stopped { reason }),
            None => Ok(()),
        }
    }
}

/// A source that stops when its [`Stop`] is set.
struct Stoppable {
    inner: std::sync::Arc<dyn BackupSource>,
    stop: Stop,
}

#[async_trait]
impl BackupSource for Stoppable {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn capture(&self, sink: &mut dyn EntrySink) -> Result<()> {
        self.stop.check()?;
        let mut sink = StoppableSink { sink, stop: &self.stop };
        self.inner.capture(&mut sink).await
    }
}

/// The sink of a [`Stoppable`] source.
struct StoppableSink<'a> {
    sink: &'a mut dyn EntrySink,
    stop: &'a Stop,
}

#[async_trait]
impl EntrySink for StoppableSink<'_> {
    async fn begin(&mut self, entry: EntryMeta) -> Result<()> {
        self.stop.check()?;
        self.sink.begin(entry).await
    }

    async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.stop.check()?;
        self.sink.write(data).await
    }

    async fn end(&mut self) -> Result<()> {
        self.stop.check()?;
        self.sink.end().await
    }

    fn warn(&mut self, warning: CaptureWarning) {
        self.sink.warn(warning);
    }
}

/// What went wrong with one item of a live source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaptureProblem {
    /// The file or folder was listed, then deleted or moved before it was
    /// read: it is not in the backup.
    Vanished,
    /// The file kept changing through every re-read: the backup holds the
    /// last read, which may not match any one moment of the file (for a file
    /// that is only appended to, it is a prefix of what was written).
    ChangedDuringCapture,
    /// The source had nothing to capture (no entry at all: an empty root,
    /// or everything excluded): often an unmounted or emptied folder. The
    /// backup records the source with no entries; retention may then delete
    /// older backups that hold its data, so this is worth an operator's look.
    Empty,
    /// The path is longer than the archive format's 4096 bytes (or, with
    /// the source root before it, than the system's path limit): the file
    /// (or the folder and all in it) is skipped. (Any other name is
    /// recorded as it is: names are bytes.)
    UnrecordableName,
    /// A FIFO, socket or device: the archive records files, folders and
    /// links only, so it is skipped.
    SpecialFile,
    /// Its extended attributes exceed what the archive format records for
    /// one entry (64 KiB of names and values, names up to 255 bytes): the
    /// entry is captured without them.
    ExtendedAttributesTooLarge,
}

impl fmt::Display for CaptureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaptureProblem::Vanished => "vanished during capture (deleted or moved); skipped",
            CaptureProblem::ChangedDuringCapture => {
                "changed during capture (kept changing through every re-read); captured as last read"
            }
            CaptureProblem::Empty => {
                "the source holds nothing to back up (an unmounted or emptied folder, or everything excluded?)"
            }
            CaptureProblem::UnrecordableName => {
                "its path is longer than the 4096 bytes this archive format can record (or than the system's path \
                 limit); skipped (with everything in it, for a folder)"
            }
            CaptureProblem::SpecialFile => "a FIFO, socket or device, which a backup does not record; skipped",
            CaptureProblem::ExtendedAttributesTooLarge => {
                "its extended attributes exceed the 64 KiB this archive format records per entry; captured without them"
            }
        })
    }
}

/// One item a live source skipped or captured inexactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureWarning {
    /// Name of the source that met the item.
    pub source: String,
    /// The item: for a [`DirectorySource`], the file or folder's path on
    /// disk, escaped for display (FORMAT.md §14.5: a backslash as `\\`,
    /// `\n`, `\t`, other control characters and invalid UTF-8 as `\xNN`).
    pub path: String,
    /// Whether it was skipped or captured inexactly, and why.
    pub problem: CaptureProblem,
}

impl fmt::Display for CaptureWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source {}: {}: {}", self.source, self.path, self.problem)
    }
}

/// The warnings of one backup, bounded in memory: the first
/// [`Warnings::KEPT`] are kept, the rest only counted (a million changing
/// files must not grow a job's memory).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Warnings {
    kept: Vec<CaptureWarning>,
    not_kept: u64,
}

impl Warnings {
    /// How many warnings are kept; later ones are counted only.
    pub const KEPT: usize = 100;

    /// Records a warning: kept while fewer than [`Warnings::KEPT`] are, else
    /// only counted.
    pub fn push(&mut self, warning: CaptureWarning) {
        if self.kept.len() < Self::KEPT {
            self.kept.push(warning);
        } else {
            self.not_kept += 1;
        }
    }

    /// Whether no warning was recorded (the capture was exact).
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// How many warnings were recorded, kept or only counted.
    pub fn total(&self) -> u64 {
        self.kept.len() as u64 + self.not_kept
    }

    /// The first [`Warnings::KEPT`] of them, in the order they happened.
    pub fn kept(&self) -> &[CaptureWarning] {
        &self.kept
    }

    /// How many more there were than are kept.
    pub fn not_kept(&self) -> u64 {
        self.not_kept
    }
}

/// Files up to this size are read whole and checked for change before they
/// enter the archive (re-read if they changed); larger ones are streamed and
/// checked once the read is done.
pub const CONSISTENT_READ_MAX: u64 = 8 << 20;

/// How many times a changing small file is re-read before it is captured as
/// last read (or, in strict mode, fails the source).
const REREADS: usize = 3;

/// Entries one step of the walk lists at most (at most one folder read per
/// step).
const WALK_BATCH: usize = 256;

/// Entries per hand-off from the reader to the capture at most.
const BATCH_ENTRIES: usize = 64;

/// A batch is handed over once its files' data reaches this (so a batch
/// holds up to this plus one file of [`CONSISTENT_READ_MAX`]).
const BATCH_BYTES: u64 = 2 << 20;

/// Hand-offs queued between the reader and the capture at most.
const BATCHES_AHEAD: usize = 8;

/// The read-ahead budget: bytes of file data, in KiB, read and not yet
/// taken by the sink.
const PREFETCH_KIB: u32 = 16 << 10;

/// The longest path the archive format records (FORMAT.md §14.5).
const MAX_PATH: usize = 4096;

/// The system's limit on a path given to a call (`PATH_MAX`, with its
/// terminating zero).
const SYSTEM_PATH_MAX: usize = 4096;

/// Names and values of one entry's extended attributes, at most (FORMAT.md §14.4).
const MAX_XATTR_BYTES: usize = 64 << 10;

/// Everything under a folder — files, folders, symbolic links and hard
/// links, with their metadata — read consistently while the system keeps
/// running.
///
/// What is captured (archive format version 2, FORMAT.md §14):
///
/// * **folders**, each before its contents, in key order: a depth-first walk
///   with each folder's children sorted by name bytes;
/// * **regular files**, their data read as described below; a file with
///   holes (fewer blocks allocated than its size) is recorded as sparse:
///   its data extents are found with `lseek(SEEK_DATA/SEEK_HOLE)` and only
///   their bytes are read and stored, so a 256 MiB file holding 18 bytes
///   reads one page;
/// * **symbolic links**, their target bytes as `readlink` gives them (never
///   followed; absolute, relative and dangling alike);
/// * **hard links**: a file with more than one link whose inode was already
///   captured by this source is recorded as a second name of the first
///   path captured;
/// * **names as bytes**: any name the file system holds (invalid UTF-8,
///   newlines, tabs, backslashes) is recorded as it is;
/// * **metadata** of every entry: the 12 mode bits (with setuid, setgid and
///   sticky), owner uid and gid, user and group names (from `/etc/passwd`
///   and `/etc/group`, read once per capture: the workspace forbids
///   `unsafe`, so the C library's `getpwuid_r` is not called, and an id
///   known only to a directory service such as LDAP or SSSD is recorded
///   without a name), and the modification time in nanoseconds (before 1970
///   too);
/// * **extended attributes** (`llistxattr`/`lgetxattr`, never following a
///   link) only when asked for with [`DirectorySource::xattrs`].
///
/// What is skipped, each with a warning: FIFOs, sockets and devices
/// ([`CaptureProblem::SpecialFile`]), and paths longer than the format's
/// 4096 bytes ([`CaptureProblem::UnrecordableName`]). The root folder's own
/// metadata is not recorded (a source restores into a folder of its name).
///
/// Live capture rules:
///
/// * a file that changes while it is read is read again (small files) or
///   checked after the read (large ones); one that keeps changing is captured
///   as last read and reported ([`CaptureProblem::ChangedDuringCapture`]);
/// * a file or folder that vanishes between the listing and its read is
///   skipped and reported ([`CaptureProblem::Vanished`]);
/// * a source with nothing to capture is reported ([`CaptureProblem::Empty`]);
/// * reports go to [`EntrySink::warn`] and the job succeeds with warnings.
///   [`DirectorySource::strict`] turns each of them into a failure of the
///   source instead;
/// * any other failure (the root missing or not a folder, a folder or file
///   that cannot be read, a file replaced by a folder) fails the source with a
///   [`ControllerError::Source`] naming the path.
///
/// [`DirectorySource::exclude`] takes gitignore-style patterns, matched
/// against paths relative to the root (as bytes: they match names that are
/// not UTF-8 too); [`DirectorySource::exclude_folder`] skips one folder by
/// identity (how a local storage location inside the source is kept out,
/// see [`crate::Settings::prepare_source`]).
///
/// Memory: the walk streams. It holds the sorted names of each folder on
/// the way from the root to the current one (depth × the widest folder).
/// One walker thread (its own, for the whole capture) lists
/// in key order and hands the entries over in batches of at most 64, whose
/// small files are read on the blocking pool, two batches at a time, ahead
/// of the archive writer — up to 16 MiB of file data and 8 batches — so
/// reading overlaps with compression and encryption, keeps more than one
/// core busy, and costs no hand-off per file. Lookups are relative to the
/// open folder (`fstatat`, `openat`); a file is read with one `open` and
/// one `fstat` on the open file (its `fstatat` from the listing is the
/// "before" of the change check). Entries still enter the archive in key
/// order. Open files: one folder handle per level of depth (a tree deeper
/// than about a thousand levels needs a higher `RLIMIT_NOFILE` than the
/// usual soft limit of 1 024; the `ibs` command raises its soft limit to
/// the hard one). It does not
/// grow with the number of files, with one exception: to find hard links,
/// the capture remembers the (device, inode) and path of every captured
/// file that has more than one link (and the reader their (device, inode)
/// once more), so that map grows with the number of multiply-linked files
/// (about 100 bytes each plus the path).
#[derive(Clone, Debug)]
pub struct DirectorySource {
    name: String,
    root: PathBuf,
    strict: bool,
    xattrs: bool,
    excludes: Excludes,
    skip_folders: Vec<PathBuf>,
}

/// Gitignore-style exclusion patterns, compiled.
#[derive(Clone, Debug)]
struct Excludes {
    patterns: Vec<String>,
    /// Patterns that match files and folders.
    any: GlobSet,
    /// Patterns with a trailing `/`: folders only.
    folders: GlobSet,
}

impl Excludes {
    fn new(patterns: Vec<String>) -> std::result::Result<Self, String> {
        let mut any = GlobSetBuilder::new();
        let mut folders = GlobSetBuilder::new();
        for p in &patterns {
            let (glob, folder_only) = gitignore_glob(p)?;
            if folder_only {
                folders.add(glob);
            } else {
                any.add(glob);
            }
        }
        Ok(Excludes {
            any: any.build().map_err(|e| e.to_string())?,
            folders: folders.build().map_err(|e| e.to_string())?,
            patterns,
        })
    }

    /// Whether the path `rel` (relative to the root, `/`-separated bytes)
    /// is excluded; matched as bytes, so names that are not UTF-8 match too.
    fn excludes(&self, rel: &[u8], is_folder: bool) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let rel = Path::new(std::ffi::OsStr::from_bytes(rel));
        self.any.is_match(rel) || (is_folder && self.folders.is_match(rel))
    }
}

/// One gitignore pattern as a glob over `/`-separated paths relative to the
/// root, and whether it matches folders only. Gitignore's rules: a trailing
/// `/` matches folders only; a pattern with a `/` at its start or in its
/// middle is relative to the root, one without matches at any depth; `*`
/// and `?` never match `/`, `**` matches any number of folders. Negation
/// (`!`) is refused: an exclusion list that re-includes is easy to get wrong
/// in a backup, and nothing needs it yet.
fn gitignore_glob(pattern: &str) -> std::result::Result<(globset::Glob, bool), String> {
    if pattern.is_empty() {
        return Err("an empty pattern excludes nothing; give a gitignore-style pattern such as `**/*.tmp`".into());
    }
    if pattern.starts_with('!') {
        return Err(format!(
            "{pattern:?}: negated patterns (!) are not supported; list only what to exclude"
        ));
    }
    let (body, folder_only) = match pattern.strip_suffix('/') {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    let anchored = body.contains('/');
    let body = body.trim_start_matches('/');
    if body.is_empty() {
        return Err(format!("{pattern:?} would exclude the whole source"));
    }
    // Paths are matched relative to the source root, without `./` or `..`:
    // such a pattern would silently match nothing.
    if body.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!(
            "{pattern:?}: patterns are relative to the source folder and cannot contain `.` or `..` segments \
             (write `/f1` for a file at the top, `f1` for any depth)"
        ));
    }
    if body.split('/').all(|seg| seg == "**") {
        return Err(format!("{pattern:?} would exclude the whole source"));
    }
    let glob = if anchored {
        body.to_owned()
    } else {
        format!("**/{body}")
    };
    let glob = GlobBuilder::new(&glob)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("{pattern:?} is not a valid pattern: {e}"))?;
    Ok((glob, folder_only))
}

/// What a capture records of an inode, from `lstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    /// Size in bytes.
    size: u64,
    /// Modification time: Unix seconds (negative before 1970) and nanoseconds.
    mtime: (i64, u32),
    /// The low 12 bits of `st_mode`.
    mode: u32,
    /// Owner uid and gid.
    owner: (u32, u32),
    /// Identity, for hard links and for the change check.
    dev: u64,
    ino: u64,
    /// Number of hard links.
    nlink: u64,
    /// Bytes allocated (`st_blocks` × 512).
    allocated: u64,
}

fn stat_of(m: &std::fs::Metadata) -> Stat {
    use std::os::unix::fs::MetadataExt;
    Stat {
        size: m.len(),
        // `st_mtime_nsec` is in 0..1e9 (the seconds count toward the past).
        mtime: (m.mtime(), u32::try_from(m.mtime_nsec()).unwrap_or(0).min(999_999_999)),
        mode: m.mode() & 0o7777,
        owner: (m.uid(), m.gid()),
        dev: m.dev(),
        ino: m.ino(),
        nlink: m.nlink(),
        allocated: m.blocks().saturating_mul(512),
    }
}

/// [`stat_of`] from a `stat` the system gave (`fstatat`, `fstat`). The
/// field types differ between architectures, hence the casts.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn stat_at(st: &rustix::fs::Stat) -> Stat {
    Stat {
        size: st.st_size as u64,
        mtime: (st.st_mtime as i64, (st.st_mtime_nsec as u32).min(999_999_999)),
        mode: (st.st_mode as u32) & 0o7777,
        owner: (st.st_uid as u32, st.st_gid as u32),
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        nlink: st.st_nlink as u64,
        allocated: (st.st_blocks as u64).saturating_mul(512),
    }
}

/// The type of what a `stat` describes.
#[allow(clippy::unnecessary_cast)]
fn file_type(st: &rustix::fs::Stat) -> rustix::fs::FileType {
    rustix::fs::FileType::from_raw_mode(st.st_mode as rustix::fs::RawMode)
}

/// What must not change while a file is read: size, time, mode, owner and
/// inode.
type Stamp = (u64, (i64, u32), u32, (u32, u32), u64);

impl Stat {
    fn stamp(&self) -> Stamp {
        (self.size, self.mtime, self.mode, self.owner, self.ino)
    }

    /// Whether the file may have holes: fewer bytes allocated than its size.
    fn looks_sparse(&self) -> bool {
        self.allocated < self.size
    }
}

/// How close to "now" a modification time must be to count as racy: file
/// times come from the kernel's coarse clock (one tick, a few ms), so two
/// writes within a tick leave the same size and time, and an equal stamp
/// before and after a read proves nothing while the file's time is that
/// recent ("racy git"). Such files are waited for, not trusted.
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether the file was modified so recently that its stamp cannot tell a
/// rewrite within the same clock tick. Times far in the future were set on
/// purpose (not by a write in progress) and are not racy.
fn racy(stat: &Stat) -> bool {
    let now = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i128::from(d.as_secs()) * 1_000_000_000 + i128::from(d.subsec_nanos()),
        Err(_) => return false,
    };
    let mtime = i128::from(stat.mtime.0) * 1_000_000_000 + i128::from(stat.mtime.1);
    (now - mtime).abs() <= RACY_WINDOW.as_nanos() as i128
}

/// A sparse file's size and data extents.
type Sparse = (u64, Vec<Extent>);

/// A hook run before a folder is read (tests race through it).
type FolderHook = Box<dyn FnMut(&Path) + Send>;

/// A file's read, done on the blocking pool.
enum Read {
    /// Read whole (a sparse file: its extents' bytes, in order); `changed`
    /// when it kept changing through every re-read.
    Whole {
        data: Vec<u8>,
        stat: Stat,
        extents: Option<Sparse>,
        changed: bool,
    },
    /// Larger than [`CONSISTENT_READ_MAX`]: streamed by the capture instead.
    Large,
    /// Gone since the listing.
    Vanished,
}

fn vanished(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// Reads a file whole, again while it changes under the reader (blocking).
///
/// `listed` is the file's `lstat` from the walk: it is the "before" of the
/// first read, so a file that is read once costs one `open` and one `fstat`
/// on the open file (the "after"), not a stat by path before and after. A
/// read counts only if the stamp it starts from was not racy when the read
/// began and the open file's stamp (inode included: a file replaced since
/// it was listed is another inode) is the same after it; a re-read starts
/// from the last read's "after". After [`REREADS`] re-reads the last read
/// is returned as changed. The error is the reason (the caller names the
/// path).
fn read_consistent(at: &Located, listed: &Stat) -> std::result::Result<Read, String> {
    if listed.size > CONSISTENT_READ_MAX {
        return Ok(Read::Large);
    }
    let mut before = *listed;
    let mut attempt = 0;
    loop {
        let last_try = attempt == REREADS;
        attempt += 1;
        if racy(&before) && !last_try {
            // Its stamp is still valid as "before": only time must pass.
            std::thread::sleep(RACY_WINDOW);
            continue;
        }
        let file = match open_listed_file(at) {
            Ok(file) => file,
            Err(e) if vanished(&e) => return Ok(Read::Vanished),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Err(replaced(rustix::fs::FileType::Symlink));
            }
            Err(e) => return Err(format!("cannot read the file: {e}")),
        };
        let read = read_small(&file, &before);
        let after = match rustix::fs::fstat(&file) {
            Ok(st) if file_type(&st) == rustix::fs::FileType::RegularFile => stat_at(&st),
            Ok(st) => {
                // A folder opens and then fails to read; a FIFO opens (non-blocking) and reads nothing.
                return Err(replaced(file_type(&st)));
            }
            Err(e) => return Err(format!("cannot stat the file: {e}")),
        };
        let (data, extents, complete) = match read {
            Ok(Some(read)) => read,
            // It grew past the in-memory limit since it was listed: streamed instead.
            Ok(None) => return Ok(Read::Large),
            Err(e) => return Err(format!("cannot read the file: {e}")),
        };
        let settled = !racy(&before)
            && after.stamp() == before.stamp()
            && complete
            && (extents.is_some() || data.len() as u64 == after.size);
        if settled || last_try {
            return Ok(Read::Whole {
                data,
                stat: after,
                extents,
                changed: !settled,
            });
        }
        before = after;
    }
}

/// Where a listed file is: its folder's open handle and its name there,
/// so that opening it looks up one name, not the whole path.
struct Located {
    dir: std::sync::Arc<OwnedFd>,
    name: std::ffi::OsString,
}

/// Opens a file the walk listed as a regular file, for reading (blocking):
/// relative to its folder's handle, never following a link (`ELOOP` if it
/// became one) and non-blocking, so that a FIFO put in its place is not
/// waited on (the caller's `fstat` then tells what it is). A device node put
/// there between the listing and this open is opened like any file; the
/// walk's own `lstat` has the same window.
///
/// A regular file under a conflicting lease (an SMB oplock or NFS
/// delegation held by the kernel for another client) fails a non-blocking
/// open with `EAGAIN`; a FIFO never does, so the file is then opened again,
/// waiting for the lease to be broken as a plain open does.
fn open_listed_file(at: &Located) -> std::io::Result<std::fs::File> {
    open_no_follow(&*at.dir, at.name.as_os_str())
}

/// [`open_listed_file`] relative to `dir` (or the working folder when `name`
/// is a whole path).
fn open_no_follow(dir: impl AsFd, name: &std::ffi::OsStr) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(&dir, name, flags | OFlags::NONBLOCK, Mode::empty()) {
        Err(rustix::io::Errno::AGAIN) => rustix::fs::openat(&dir, name, flags, Mode::empty())?,
        opened => opened?,
    };
    Ok(std::fs::File::from(fd))
}

/// How many bytes a small file may have grown since it was listed and still
/// be read whole (more, and it is streamed: the read-ahead budget counted
/// its listed size).
const GROWTH: u64 = 4 << 10;

/// Reads a small open file (blocking): all of it, or only its data extents
/// when `stat` says it has holes. The flag is `false` when an extent ended
/// early (the file shrank; the rest is zeros). `None` when the file has
/// grown past [`CONSISTENT_READ_MAX`] or by more than [`GROWTH`] (it is
/// then streamed). No `fstat`:
/// the buffer is sized from `stat`, read to the end of the file.
#[allow(clippy::type_complexity)]
fn read_small(file: &std::fs::File, stat: &Stat) -> std::io::Result<Option<(Vec<u8>, Option<Sparse>, bool)>> {
    use std::io::Read as _;
    let extents = if stat.looks_sparse() {
        data_extents(file, stat.size)
    } else {
        None
    };
    let Some(extents) = extents else {
        // Room for one byte more than listed, so that the end is seen
        // without another read in the usual case; through `take` (which
        // asks no `fstat` for a size hint, unlike `File`'s own
        // `read_to_end`), one byte past the limit at most.
        // A file that grew by more than [`GROWTH`] since it was listed is
        // streamed instead: the read-ahead budget counted its listed size.
        let limit = stat.size.saturating_add(GROWTH).min(CONSISTENT_READ_MAX);
        let mut data = Vec::with_capacity(usize::try_from(stat.size.min(CONSISTENT_READ_MAX)).unwrap_or(0) + 1);
        file.take(limit + 1).read_to_end(&mut data)?;
        if data.len() as u64 > limit {
            return Ok(None);
        }
        return Ok(Some((data, None, true)));
    };
    let total: u64 = extents.iter().map(|x| x.len).sum();
    let mut data = vec![0u8; usize::try_from(total).unwrap_or(0)];
    let mut complete = true;
    let mut at = 0usize;
    for x in &extents {
        let len = usize::try_from(x.len).unwrap_or(0);
        complete &= read_at_most(file, x.offset, &mut data[at..at + len])?;
        at += len;
    }
    Ok(Some((data, Some((stat.size, extents)), complete)))
}

/// Fills `buf` from `offset` (blocking); `false` when the file ended first
/// (the rest of `buf` is left as it was: zeros).
fn read_at_most(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The data extents of the first `size` bytes of a file with holes, found
/// with `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)` (blocking). `None` when the
/// file is dense after all (one extent covering it; a compressed file
/// system also allocates fewer blocks than the size) or the file system
/// cannot tell (it is then read whole).
fn data_extents(file: &std::fs::File, size: u64) -> Option<Vec<Extent>> {
    use rustix::fs::{SeekFrom, seek};
    let mut extents = Vec::new();
    let mut at = 0u64;
    while at < size {
        let start = match seek(file, SeekFrom::Data(at)) {
            Ok(start) => start,
            // No data after `at`: holes to the end.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return None,
        };
        if start >= size {
            break;
        }
        let end = match seek(file, SeekFrom::Hole(start)) {
            Ok(end) => end.min(size),
            Err(_) => return None,
        };
        if end <= start {
            return None;
        }
        extents.push(Extent {
            offset: start,
            len: end - start,
        });
        at = end;
    }
    if let [only] = extents.as_slice()
        && only.offset == 0
        && only.len == size
    {
        return None;
    }
    Some(extents)
}

/// Extended attributes of one entry, sorted by name.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The extended attributes of `path`, not following a link (blocking).
/// None on a file system without them.
fn read_xattrs(path: &Path) -> std::io::Result<Xattrs> {
    use rustix::io::Errno;
    let mut list = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut list[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let want = rustix::fs::llistxattr_query(path)?;
                list.resize(want.max(list.len() * 2), 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    let mut value = vec![0u8; 256];
    for name in list[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name_os = std::ffi::OsStr::from_bytes(name);
        let n = loop {
            match rustix::fs::lgetxattr(path, name_os, &mut value[..]) {
                Ok(n) => break Some(n),
                Err(Errno::RANGE) => {
                    let want = rustix::fs::lgetxattr_query(path, name_os)?;
                    value.resize(want.max(value.len() * 2), 0);
                }
                // Removed since the listing.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(n) = n {
            out.push((name.to_vec(), value[..n].to_vec()));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether the archive format can record these extended attributes on one
/// entry (FORMAT.md §14.4).
fn xattrs_fit(x: &Xattrs) -> bool {
    x.iter().all(|(n, _)| n.len() <= 255) && x.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>() <= MAX_XATTR_BYTES
}

/// User and group names by id, from `/etc/passwd` and `/etc/group`, read
/// once per capture.
#[derive(Debug, Default)]
struct OwnerNames {
    users: std::collections::HashMap<u32, Vec<u8>>,
    groups: std::collections::HashMap<u32, Vec<u8>>,
}

impl OwnerNames {
    /// Reads the two files (blocking); a missing or unreadable one names nobody.
    fn load() -> Self {
        let read = |p: &str| std::fs::read(p).map(|t| parse_id_names(&t)).unwrap_or_default();
        OwnerNames {
            users: read("/etc/passwd"),
            groups: read("/etc/group"),
        }
    }

    /// The names of an owner, empty when unknown.
    fn of(&self, (uid, gid): (u32, u32)) -> (Vec<u8>, Vec<u8>) {
        let name = |m: &std::collections::HashMap<u32, Vec<u8>>, id| m.get(&id).cloned().unwrap_or_default();
        (name(&self.users, uid), name(&self.groups, gid))
    }
}

/// `name:x:id:…` lines (`/etc/passwd`, `/etc/group`) as id → name; the
/// first line of an id wins, as in the C library's lookup. NIS markers
/// (`+`, `-`) and comments are ignored.
fn parse_id_names(text: &[u8]) -> std::collections::HashMap<u32, Vec<u8>> {
    let mut out = std::collections::HashMap::new();
    for line in text.split(|b| *b == b'\n') {
        let mut fields = line.split(|b| *b == b':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if name.is_empty() || name.len() > 255 || name.contains(&0) || matches!(name[0], b'+' | b'-' | b'#') {
            continue;
        }
        let Some(id) = std::str::from_utf8(id).ok().and_then(|s| s.trim().parse::<u32>().ok()) else {
            continue;
        };
        out.entry(id).or_insert_with(|| name.to_vec());
    }
    out
}

/// Why a file listed as a regular file cannot be read: it is now a `now`.
fn replaced(now: rustix::fs::FileType) -> String {
    format!(
        "was listed as a regular file but is now a {}; it was replaced during the backup",
        kind_of(now)
    )
}

/// What a file system object is, in words.
fn kind_of(t: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType;
    match t {
        FileType::Directory => "folder",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::BlockDevice | FileType::CharacterDevice => "device",
        _ => "file",
    }
}

/// What the walk leaves out.
struct Filter {
    excludes: Excludes,
    skip: Vec<PathBuf>,
}

/// One step of the walk's output, in key order.
enum Item {
    /// A folder; its contents follow.
    Folder { rel: Vec<u8>, stat: Stat, xattrs: Xattrs },
    /// A symbolic link and its target.
    Symlink {
        rel: Vec<u8>,
        stat: Stat,
        target: Vec<u8>,
        xattrs: Xattrs,
    },
    /// A regular file, as listed (read later, at `at`).
    File {
        path: PathBuf,
        at: Located,
        rel: Vec<u8>,
        listed: Stat,
        xattrs: Xattrs,
    },
    /// Something skipped or gone.
    Problem(PathBuf, CaptureProblem),
}

/// One open folder of the walk: its children's names, sorted by bytes.
struct Level {
    dir: PathBuf,
    /// The folder, open: its children are looked up relative to it.
    fd: std::sync::Arc<OwnedFd>,
    rel: Vec<u8>,
    names: Vec<std::ffi::OsString>,
    next: usize,
}

/// The streaming, depth-first walk behind [`DirectorySource::capture`]
/// (blocking: each [`Walker::next_batch`] runs on the blocking pool). It
/// holds the sorted names of the folders from the root to the current one.
struct Walker {
    root: PathBuf,
    filter: Filter,
    xattrs: bool,
    /// The identities of [`Filter::skip`], taken when the walk starts.
    skip: Vec<(u64, u64)>,
    stack: Vec<Level>,
    started: bool,
    /// Runs before each folder below the root is read (tests race through it).
    before_folder: Option<FolderHook>,
}

/// Opens a folder to list it and look up its children (blocking): `at` a
/// folder's handle and a name there, never following a link; or a path
/// (the root, which may be reached through links).
fn open_folder(at: Option<&OwnedFd>, path: &Path) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(match (at, path.file_name()) {
        (Some(dir), Some(name)) => rustix::fs::openat(dir, name, flags | OFlags::NOFOLLOW, Mode::empty())?,
        _ => rustix::fs::open(path, flags, Mode::empty())?,
    })
}

/// The names in an open folder, sorted by bytes (blocking).
fn list(dir: &OwnedFd) -> std::io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsString::from_vec(name));
        }
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

impl Walker {
    fn new(root: PathBuf, filter: Filter, xattrs: bool) -> Self {
        Walker {
            root,
            filter,
            xattrs,
            skip: Vec::new(),
            stack: Vec::new(),
            started: false,
            before_folder: None,
        }
    }

    /// The next entries in key order, up to [`WALK_BATCH`], reading at most
    /// one folder; none when the walk is done (blocking). The error is the
    /// path that failed and why.
    fn next_batch(&mut self) -> std::result::Result<Vec<Item>, (PathBuf, String)> {
        use std::os::unix::fs::MetadataExt;
        if !self.started {
            self.started = true;
            self.skip = self
                .filter
                .skip
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| (m.dev(), m.ino()))
                .collect();
            let opened = open_folder(None, &self.root).and_then(|fd| Ok((list(&fd)?, fd)));
            let (names, fd) = match opened {
                Ok(opened) => opened,
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                    return Err((
                        self.root.clone(),
                        "the source root is not a folder: give the folder to back up".into(),
                    ));
                }
                Err(e) if vanished(&e) => {
                    return Err((
                        self.root.clone(),
                        "the source root does not exist: check the source's path".into(),
                    ));
                }
                Err(e) => return Err((self.root.clone(), format!("cannot read the folder: {e}"))),
            };
            self.stack.push(Level {
                dir: self.root.clone(),
                fd: std::sync::Arc::new(fd),
                rel: Vec::new(),
                names,
                next: 0,
            });
        }
        let mut out = Vec::new();
        while out.len() < WALK_BATCH {
            let Some(level) = self.stack.last_mut() else { break };
            let Some(name) = level.names.get(level.next) else {
                self.stack.pop();
                continue;
            };
            let path = level.dir.join(name);
            let mut rel = level.rel.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            // Beyond what the format records, or (the root's path included)
            // beyond the system's path limit, which the extended attributes
            // and the streaming of a large file reach by path.
            if rel.len() > MAX_PATH || path.as_os_str().len() >= SYSTEM_PATH_MAX {
                level.next += 1;
                if !self.filter.excludes.excludes(&rel, false) {
                    out.push(Item::Problem(path, CaptureProblem::UnrecordableName));
                }
                continue;
            }
            let looked_up = rustix::fs::statat(&*level.fd, name.as_os_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map_err(std::io::Error::from);
            let meta = match looked_up {
                Ok(m) => m,
                Err(e) if vanished(&e) => {
                    level.next += 1;
                    out.push(Item::Problem(path, CaptureProblem::Vanished));
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NAMETOOLONG.raw_os_error()) => {
                    // Recordable, but beyond the system's path limit from the root.
                    level.next += 1;
                    out.push(Item::Problem(path, CaptureProblem::UnrecordableName));
                    continue;
                }
                Err(e) => return Err((path, format!("cannot stat: {e}"))),
            };
            let ft = file_type(&meta);
            let is_dir = ft == rustix::fs::FileType::Directory;
            if is_dir && !out.is_empty() {
                // One folder read per step, first: its entries come next time.
                break;
            }
            level.next += 1;
            let stat = stat_at(&meta);
            if self.filter.excludes.excludes(&rel, is_dir) || (is_dir && self.skip.contains(&(stat.dev, stat.ino))) {
                continue;
            }
            if is_dir {
                if let Some(hook) = self.before_folder.as_mut() {
                    hook(&path);
                }
                let parent = std::sync::Arc::clone(&level.fd);
                let opened = open_folder(Some(&parent), &path).and_then(|fd| Ok((list(&fd)?, fd)));
                let (names, fd) = match opened {
                    Ok(opened) => opened,
                    Err(e) if vanished(&e) => {
                        out.push(Item::Problem(path, CaptureProblem::Vanished));
                        continue;
                    }
                    Err(e) => return Err((path, format!("cannot read the folder: {e}"))),
                };
                let Some(xattrs) = self.xattrs_of(&path, &mut out)? else {
                    continue;
                };
                out.push(Item::Folder {
                    rel: rel.clone(),
                    stat,
                    xattrs,
                });
                self.stack.push(Level {
                    dir: path,
                    fd: std::sync::Arc::new(fd),
                    rel,
                    names,
                    next: 0,
                });
            } else if ft == rustix::fs::FileType::Symlink {
                let target = match rustix::fs::readlinkat(&*level.fd, name.as_os_str(), Vec::new())
                    .map_err(std::io::Error::from)
                {
                    Ok(t) => t.into_bytes(),
                    Err(e) if vanished(&e) => {
                        out.push(Item::Problem(path, CaptureProblem::Vanished));
                        continue;
                    }
                    Err(e) => return Err((path, format!("cannot read the link: {e}"))),
                };
                if target.len() > MAX_PATH {
                    out.push(Item::Problem(path, CaptureProblem::UnrecordableName));
                    continue;
                }
                let Some(xattrs) = self.xattrs_of(&path, &mut out)? else {
                    continue;
                };
                out.push(Item::Symlink {
                    rel,
                    stat,
                    target,
                    xattrs,
                });
            } else if ft == rustix::fs::FileType::RegularFile {
                let at = Located {
                    dir: std::sync::Arc::clone(&level.fd),
                    name: name.clone(),
                };
                let Some(xattrs) = self.xattrs_of(&path, &mut out)? else {
                    continue;
                };
                out.push(Item::File {
                    at,
                    path,
                    rel,
                    listed: stat,
                    xattrs,
                });
            } else {
                out.push(Item::Problem(path, CaptureProblem::SpecialFile));
            }
        }
        Ok(out)
    }

    /// The extended attributes to record for `path` (none unless asked
    /// for); `None` when it vanished (reported in `out`).
    fn xattrs_of(&self, path: &Path, out: &mut Vec<Item>) -> std::result::Result<Option<Xattrs>, (PathBuf, String)> {
        if !self.xattrs {
            return Ok(Some(Vec::new()));
        }
        match read_xattrs(path) {
            Ok(x) if xattrs_fit(&x) => Ok(Some(x)),
            Ok(_) => {
                out.push(Item::Problem(
                    path.to_owned(),
                    CaptureProblem::ExtendedAttributesTooLarge,
                ));
                Ok(Some(Vec::new()))
            }
            Err(e) if vanished(&e) => {
                out.push(Item::Problem(path.to_owned(), CaptureProblem::Vanished));
                Ok(None)
            }
            Err(e) => Err((path.to_owned(), format!("cannot read the extended attributes: {e}"))),
        }
    }
}

impl DirectorySource {
    /// Source `name` reading everything under `root`, tolerant of a live
    /// system (see the type's docs), excluding nothing, without extended
    /// attributes.
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        DirectorySource {
            name: name.into(),
            root: root.into(),
            strict: false,
            xattrs: false,
            excludes: Excludes {
                patterns: Vec::new(),
                any: GlobSet::empty(),
                folders: GlobSet::empty(),
            },
            skip_folders: Vec::new(),
        }
    }

    /// Strict mode: a file that vanishes or keeps changing, or anything
    /// skipped, fails the source (and so the backup) instead of being
    /// reported as a warning.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Captures extended attributes (every namespace the process can read:
    /// `user.*`, and as root `trusted.*`, `security.*`, POSIX ACLs as
    /// `system.posix_acl_*`), off by default. Attributes beyond the
    /// format's 64 KiB per entry are left out with a warning
    /// ([`CaptureProblem::ExtendedAttributesTooLarge`]).
    #[must_use]
    pub fn xattrs(mut self, capture: bool) -> Self {
        self.xattrs = capture;
        self
    }

    /// Excludes what matches a gitignore-style `pattern`, relative to the
    /// root: `*.tmp` or `**/*.tmp` (at any depth), `cache/` (folders named
    /// `cache` at any depth, with everything in them), `/logs` or
    /// `data/old` (relative to the root). An excluded folder is not read at
    /// all. Negation (`!`) is refused.
    pub fn exclude(mut self, pattern: impl Into<String>) -> Result<Self> {
        let mut patterns = self.excludes.patterns.clone();
        patterns.push(pattern.into());
        self.excludes = Excludes::new(patterns).map_err(|reason| ControllerError::InvalidSetting {
            setting: "exclude",
            reason,
        })?;
        Ok(self)
    }

    /// Skips the folder at `path` (and everything in it) wherever it appears
    /// under the root. Folders are compared by identity (device and inode,
    /// taken when a capture starts), so a spelling through a symbolic link or
    /// a bind mount matches too; a folder that does not exist skips nothing.
    #[must_use]
    pub fn exclude_folder(mut self, path: impl Into<PathBuf>) -> Self {
        self.skip_folders.push(path.into());
        self
    }

    /// The folder the source reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The exclusion patterns given to [`DirectorySource::exclude`].
    pub fn excludes(&self) -> &[String] {
        &self.excludes.patterns
    }

    /// An entry `rel` with the metadata of `stat` (a file unless made otherwise).
    fn meta(&self, rel: &[u8], stat: &Stat, xattrs: Xattrs, names: &OwnerNames) -> EntryMeta {
        let (user, group) = names.of(stat.owner);
        let mut meta = EntryMeta::new(self.name.clone(), rel.to_vec())
            .mode(stat.mode)
            .mtime_ns(stat.mtime.0, stat.mtime.1)
            .owner(stat.owner.0, stat.owner.1)
            .owner_names(user, group);
        for (name, value) in xattrs {
            meta = meta.xattr(name, value);
        }
        meta
    }

    fn error(&self, path: &Path, reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ControllerError {
        ControllerError::source(self.name.clone(), path, reason)
    }

    /// Reports a problem with one item, or fails the source in strict mode.
    fn problem(&self, sink: &mut dyn EntrySink, path: &Path, problem: CaptureProblem) -> Result<()> {
        if self.strict {
            return Err(self.error(
                path,
                match problem {
                    CaptureProblem::Vanished => "vanished during the backup (strict mode)".to_owned(),
                    CaptureProblem::ChangedDuringCapture => format!(
                        "kept changing while it was read ({REREADS} re-reads; strict mode); retry when it is quiet \
                         or exclude it"
                    ),
                    CaptureProblem::Empty => "holds nothing to back up (strict mode)".to_owned(),
                    CaptureProblem::UnrecordableName => {
                        "has a path longer than the 4096 bytes this archive format can record (strict mode)".to_owned()
                    }
                    CaptureProblem::SpecialFile => {
                        "is a FIFO, socket or device, which a backup does not record (strict mode); exclude it"
                            .to_owned()
                    }
                    CaptureProblem::ExtendedAttributesTooLarge => {
                        "has extended attributes beyond the 64 KiB this archive format records per entry \
                         (strict mode)"
                            .to_owned()
                    }
                },
            ));
        }
        sink.warn(CaptureWarning {
            source: self.name.clone(),
            // Escaped: a name may hold a newline or bytes that are not UTF-8.
            path: escape_path(path),
            problem,
        });
        Ok(())
    }

    /// Streams a file larger than [`CONSISTENT_READ_MAX`] (only its data
    /// extents when it has holes); a change during the read is reported
    /// (captured as read) or, strict, fails the source. The stat it was
    /// captured with, or `None` when it vanished.
    async fn stream_large(
        &self,
        path: &Path,
        rel: &[u8],
        xattrs: Xattrs,
        names: &OwnerNames,
        sink: &mut dyn EntrySink,
    ) -> Result<Option<Stat>> {
        use tokio::io::AsyncSeekExt;
        // Opened first — never following a link, never waiting on a FIFO —
        // and every check made on the open file, as for a small one.
        let opened = {
            let owned = path.to_owned();
            tokio::task::spawn_blocking(move || {
                let file = open_no_follow(rustix::fs::CWD, owned.as_os_str())?;
                let st = rustix::fs::fstat(&file)?;
                let before = (file_type(&st) == rustix::fs::FileType::RegularFile).then(|| stat_at(&st));
                let extents = match before {
                    Some(b) if b.looks_sparse() => data_extents(&file, b.size),
                    _ => None,
                };
                Ok::<_, std::io::Error>((file, before.ok_or_else(|| file_type(&st)), extents))
            })
            .await
            .map_err(|source| ControllerError::Task {
                task: "file read",
                source,
            })?
        };
        let (file, before, extents) = match opened {
            Ok(opened) => opened,
            Err(e) if vanished(&e) => {
                self.problem(sink, path, CaptureProblem::Vanished)?;
                return Ok(None);
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Err(self.error(path, replaced(rustix::fs::FileType::Symlink)));
            }
            Err(e) => return Err(self.error(path, format!("cannot read the file: {e}"))),
        };
        let mut before = before.map_err(|kind| self.error(path, replaced(kind)))?;
        let stat_error = |e: std::io::Error| self.error(path, format!("cannot stat the file: {e}"));
        for _ in 0..REREADS {
            if !racy(&before) {
                break;
            }
            tokio::time::sleep(RACY_WINDOW).await;
            before = stat_at(&rustix::fs::fstat(&file).map_err(|e| stat_error(e.into()))?);
        }
        let mut file = tokio::fs::File::from_std(file);
        let mut meta = self.meta(rel, &before, xattrs, names);
        if let Some(extents) = &extents {
            meta = meta.sparse(before.size, extents.clone());
        }
        sink.begin(meta).await?;
        let read_error = |e: std::io::Error| self.error(path, format!("cannot read the file: {e}"));
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut short = false;
        match &extents {
            None => loop {
                let n = file.read(&mut buf).await.map_err(read_error)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                sink.write(&buf[..n]).await?;
            },
            Some(extents) => {
                for x in extents {
                    file.seek(std::io::SeekFrom::Start(x.offset))
                        .await
                        .map_err(read_error)?;
                    let mut left = x.len;
                    while left > 0 {
                        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                        let mut n = file.read(&mut buf[..want]).await.map_err(read_error)?;
                        if n == 0 {
                            // The file shrank: the extent's rest is zeros.
                            short = true;
                            buf[..want].fill(0);
                            n = want;
                        }
                        sink.write(&buf[..n]).await?;
                        left -= n as u64;
                        total += n as u64;
                    }
                }
            }
        }
        let after = Some(stat_of(&file.metadata().await.map_err(stat_error)?));
        sink.end().await?;
        let complete = match &extents {
            None => total == before.size,
            Some(_) => !short,
        };
        if racy(&before) || after.map(|a| a.stamp()) != Some(before.stamp()) || !complete {
            self.problem(sink, path, CaptureProblem::ChangedDuringCapture)?;
        }
        Ok(Some(before))
    }
}

/// A path for a message, escaped as FORMAT.md §14.5 says: printable UTF-8
/// as is, a backslash as `\\`, `\n`, `\t`, `\r`, other control characters
/// and bytes of invalid UTF-8 as `\xNN`.
fn escape_path(path: &Path) -> String {
    ibs_archive::escape_bytes(path.as_os_str().as_bytes())
}

/// An entry on its way to the sink, in key order.
enum Ready {
    /// Listed, nothing to read.
    Listed(Item),
    /// A regular file and its read (none when it is a second link to a file
    /// the reader has read already, or to be streamed by the capture).
    File {
        path: PathBuf,
        rel: Vec<u8>,
        listed: Stat,
        xattrs: Xattrs,
        read: Option<std::result::Result<Read, String>>,
    },
}

/// Entries with their files read, and the read-ahead budget their data
/// holds (returned when they are dropped).
type ReadBatch = (Vec<Ready>, Option<tokio::sync::OwnedSemaphorePermit>);

/// What the capture's walker sends, in key order.
enum Batch {
    /// The next entries, being read on the blocking pool.
    Entries(tokio::task::JoinHandle<ReadBatch>),
    /// The walk failed at this path, for this reason; nothing follows.
    Failed(PathBuf, String),
    /// The walk is done.
    Done,
}

/// The budget a file's read takes, in KiB (its size when listed).
fn budget_kib(size: u64) -> u32 {
    u32::try_from(size.min(CONSISTENT_READ_MAX).div_ceil(1024))
        .unwrap_or(PREFETCH_KIB)
        .clamp(1, PREFETCH_KIB)
}

/// Closes the read-ahead budget when the capture ends (also when it is
/// dropped midway), so that a walker waiting for budget stops.
struct CloseOnDrop(std::sync::Arc<tokio::sync::Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A listed entry and whether its file is to be read (not when it is large
/// or a second name of a file with more than one link already listed).
type Listed = (Item, bool);

/// Reads the files of one batch of listed entries (blocking).
fn read_batch(listed: Vec<Listed>) -> Vec<Ready> {
    listed
        .into_iter()
        .map(|(item, read)| match item {
            Item::File {
                path,
                at,
                rel,
                listed,
                xattrs,
            } => Ready::File {
                read: read.then(|| read_consistent(&at, &listed)),
                path,
                rel,
                listed,
                xattrs,
            },
            other => Ready::Listed(other),
        })
        .collect()
}

/// Batches of files read at the same time at most (one per core helps on
/// a machine with a few cores; the reads are in memory or in the page cache).
const READERS: usize = 2;

/// The capture's walker (blocking; runs on a thread of its own for the
/// whole capture, not the blocking pool's: it waits for the readers, which
/// need that pool): walks in key order and hands the entries over in
/// batches, each batch's files read on the blocking pool while the walk
/// goes on (up to [`READERS`] batches at once), so one hand-off carries
/// many files and reading keeps more than one core busy. It stops when the
/// capture stops listening or the budget is closed.
fn walk_ahead(
    mut walker: Walker,
    tx: &tokio::sync::mpsc::Sender<Batch>,
    budget: &std::sync::Arc<tokio::sync::Semaphore>,
    runtime: &tokio::runtime::Handle,
) {
    use std::sync::Arc;
    use tokio::sync::OwnedSemaphorePermit;
    // (device, inode) of files with more than one link already listed: a
    // later name of the same file is not read again (the capture records
    // it as a link, or streams it if the first name could not be captured).
    let mut claimed: std::collections::HashSet<(u64, u64)> = std::collections::HashSet::new();
    let readers = Arc::new(tokio::sync::Semaphore::new(READERS));
    let mut items: Vec<Listed> = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut bytes = 0u64;
    // Starts reading the batch so far and sends it; `false` when the capture stopped.
    let dispatch = |items: &mut Vec<Listed>, held: &mut Option<OwnedSemaphorePermit>, bytes: &mut u64| {
        *bytes = 0;
        if items.is_empty() {
            return true;
        }
        let Ok(reader) = runtime.block_on(Arc::clone(&readers).acquire_owned()) else {
            return false;
        };
        let (listed, permit) = (std::mem::take(items), held.take());
        let task = runtime.spawn_blocking(move || {
            let read = read_batch(listed);
            drop(reader);
            (read, permit)
        });
        tx.blocking_send(Batch::Entries(task)).is_ok()
    };
    loop {
        let listed = match walker.next_batch() {
            Ok(listed) => listed,
            Err((path, reason)) => {
                if dispatch(&mut items, &mut held, &mut bytes) {
                    let _ = tx.blocking_send(Batch::Failed(path, reason));
                }
                return;
            }
        };
        if listed.is_empty() {
            if dispatch(&mut items, &mut held, &mut bytes) {
                let _ = tx.blocking_send(Batch::Done);
            }
            return;
        }
        for item in listed {
            let Item::File { listed: stat, .. } = &item else {
                items.push((item, false));
                continue;
            };
            let stat = *stat;
            let known_link = stat.nlink > 1 && !claimed.insert((stat.dev, stat.ino));
            let read = !known_link && stat.size <= CONSISTENT_READ_MAX;
            if read {
                let cost = budget_kib(stat.size);
                let permit = match Arc::clone(budget).try_acquire_many_owned(cost) {
                    Ok(permit) => permit,
                    Err(tokio::sync::TryAcquireError::Closed) => return,
                    Err(tokio::sync::TryAcquireError::NoPermits) => {
                        // What this batch holds is returned only once the capture has written it.
                        if !dispatch(&mut items, &mut held, &mut bytes) {
                            return;
                        }
                        match runtime.block_on(Arc::clone(budget).acquire_many_owned(cost)) {
                            Ok(permit) => permit,
                            Err(_) => return,
                        }
                    }
                };
                match held.as_mut() {
                    Some(h) => h.merge(permit),
                    None => held = Some(permit),
                }
                bytes += stat.size;
            }
            items.push((item, read));
            if (items.len() >= BATCH_ENTRIES || bytes >= BATCH_BYTES) && !dispatch(&mut items, &mut held, &mut bytes) {
                return;
            }
        }
        if tx.capacity() == tx.max_capacity() && !dispatch(&mut items, &mut held, &mut bytes) {
            // (The capture has taken everything: it gets what there is rather than wait.)
            return;
        }
    }
}

#[async_trait]
impl BackupSource for DirectorySource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, sink: &mut dyn EntrySink) -> Result<()> {
        // One walker lists in key order on a thread of its own and hands batches of entries over, their small files read on the
        // blocking pool (two batches at once) ahead of the sink, bounded in
        // batches and in bytes; everything is consumed in key order.
        let names = tokio::task::spawn_blocking(OwnerNames::load).await.unwrap_or_default();
        let filter = Filter {
            excludes: self.excludes.clone(),
            skip: self.skip_folders.clone(),
        };
        let walker = Walker::new(self.root.clone(), filter, self.xattrs);
        let (tx, mut rx) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
        let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(PREFETCH_KIB as usize));
        let _close = CloseOnDrop(std::sync::Arc::clone(&budget));
        let runtime = tokio::runtime::Handle::current();
        // A thread of its own, not the blocking pool's: the walker waits for
        // the readers and the sink, which need the pool (the `ibs` command
        // gives it two threads; two captures at once must not take both).
        let walk = std::thread::Builder::new()
            .name("ibs-walk".into())
            .spawn(move || walk_ahead(walker, &tx, &budget, &runtime))
            .map_err(|e| self.error(&self.root, format!("cannot start the folder walk: {e}")))?;
        // (device, inode) → the first path captured, of files with more than one link.
        let mut links: std::collections::HashMap<(u64, u64), EntryPath> = std::collections::HashMap::new();
        let mut captured = 0u64;
        let mut batch = Vec::new().into_iter();
        let mut held = None;
        loop {
            let Some(next) = batch.next() else {
                // Every entry of the batch is in the archive: its budget goes
                // back before the next batch is awaited (the walker may be
                // waiting for it).
                drop(held.take());
                match rx.recv().await {
                    Some(Batch::Entries(task)) => {
                        let (items, permit) = task.await.map_err(|source| ControllerError::Task {
                            task: "file read",
                            source,
                        })?;
                        batch = items.into_iter();
                        held = permit;
                        continue;
                    }
                    Some(Batch::Failed(path, reason)) => return Err(self.error(&path, reason)),
                    Some(Batch::Done) => break,
                    None => {
                        // The reader stopped without a word: it panicked.
                        // Its sender is gone: the thread has ended or is ending.
                        let how = match walk.join() {
                            Err(_) => "the folder walk stopped before its end (its thread panicked)",
                            Ok(()) => "the folder walk stopped before its end",
                        };
                        return Err(self.error(&self.root, how));
                    }
                }
            };
            match next {
                Ready::Listed(Item::Problem(path, problem)) => self.problem(sink, &path, problem)?,
                Ready::Listed(Item::Folder { rel, stat, xattrs }) => {
                    sink.begin(self.meta(&rel, &stat, xattrs, &names).folder()).await?;
                    sink.end().await?;
                    captured += 1;
                }
                Ready::Listed(Item::Symlink {
                    rel,
                    stat,
                    target,
                    xattrs,
                }) => {
                    sink.begin(self.meta(&rel, &stat, xattrs, &names).symlink(target))
                        .await?;
                    sink.end().await?;
                    captured += 1;
                }
                Ready::Listed(Item::File { .. }) => {}
                Ready::File {
                    path,
                    rel,
                    listed: stat,
                    xattrs,
                    read,
                } => {
                    let read = match read {
                        None => None,
                        Some(read) => Some(read.map_err(|reason| self.error(&path, reason))?),
                    };
                    // A second name of a file already captured (by its stat when listed, or when read).
                    let identity = match &read {
                        Some(Read::Whole { stat, .. }) => (stat.nlink, stat.dev, stat.ino),
                        _ => (stat.nlink, stat.dev, stat.ino),
                    };
                    if identity.0 > 1
                        && let Some(first) = links.get(&(identity.1, identity.2))
                        && !matches!(read, Some(Read::Vanished))
                    {
                        sink.begin(EntryMeta::new(self.name.clone(), rel).hard_link(first))
                            .await?;
                        sink.end().await?;
                        captured += 1;
                        continue;
                    }
                    let captured_as = match read {
                        None | Some(Read::Large) => self.stream_large(&path, &rel, xattrs, &names, sink).await?,
                        Some(Read::Whole {
                            data,
                            stat,
                            extents,
                            changed,
                        }) => {
                            if changed && self.strict {
                                return self.problem(sink, &path, CaptureProblem::ChangedDuringCapture);
                            }
                            let mut meta = self.meta(&rel, &stat, xattrs, &names);
                            if let Some((size, extents)) = extents {
                                meta = meta.sparse(size, extents);
                            }
                            sink.begin(meta).await?;
                            sink.write(&data).await?;
                            sink.end().await?;
                            if changed {
                                self.problem(sink, &path, CaptureProblem::ChangedDuringCapture)?;
                            }
                            Some(stat)
                        }
                        Some(Read::Vanished) => {
                            self.problem(sink, &path, CaptureProblem::Vanished)?;
                            None
                        }
                    };
                    if let Some(stat) = captured_as {
                        captured += 1;
                        if stat.nlink > 1 {
                            links
                                .entry((stat.dev, stat.ino))
                                .or_insert_with(|| EntryPath::from(rel));
                        }
                    }
                }
            }
        }
        if captured == 0 {
            self.problem(sink, &self.root, CaptureProblem::Empty)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn filter(patterns: &[&str]) -> Filter {
        Filter {
            excludes: Excludes::new(patterns.iter().map(|p| (*p).to_owned()).collect()).unwrap(),
            skip: Vec::new(),
        }
    }

    /// The whole walk, step by step as a capture takes it.
    fn walk(root: &Path, filter: Filter, hook: Option<FolderHook>) -> Vec<Item> {
        let mut w = Walker::new(root.to_owned(), filter, false);
        w.before_folder = hook;
        let mut all = Vec::new();
        loop {
            let batch = w.next_batch().unwrap();
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }

    /// The relative paths of the entries (folders with a trailing `/`).
    fn rels(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Folder { rel, .. } => Some(format!("{}/", escape_path(Path::new(OsStr::from_bytes(rel))))),
                Item::File { rel, .. } | Item::Symlink { rel, .. } => {
                    Some(escape_path(Path::new(OsStr::from_bytes(rel))))
                }
                Item::Problem(..) => None,
            })
            .collect()
    }

    fn files(items: &[Item]) -> Vec<String> {
        rels(items).into_iter().filter(|r| !r.ends_with('/')).collect()
    }

    use std::ffi::OsStr;

    #[test]
    fn a_folder_that_vanishes_after_it_was_listed_is_reported_not_fatal() {
        let root = tempfile::tempdir().unwrap();
        for d in ["a", "b/c"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        std::fs::write(root.path().join("a/x"), b"x").unwrap();
        std::fs::write(root.path().join("b/c/y"), b"y").unwrap();
        let gone = root.path().join("b");
        let hook_gone = gone.clone();
        let items = walk(
            root.path(),
            filter(&[]),
            Some(Box::new(move |dir: &Path| {
                if dir == hook_gone {
                    std::fs::remove_dir_all(dir).unwrap();
                }
            })),
        );
        assert_eq!(rels(&items), ["a/", "a/x"]);
        let problems: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Item::Problem(p, problem) => Some((p.clone(), *problem)),
                _ => None,
            })
            .collect();
        assert_eq!(problems, [(gone, CaptureProblem::Vanished)]);
    }

    #[test]
    fn the_walk_is_in_key_order_with_names_as_bytes() {
        let root = tempfile::tempdir().unwrap();
        for d in ["a", "a/x", "b\\c"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        for f in ["a-b", "a/x/1", "a/y", "a.txt", "b\\c/z", "B"] {
            std::fs::write(root.path().join(f), f).unwrap();
        }
        for name in [&b"bad\xff"[..], b"new\nline", b"tab\tname"] {
            std::fs::write(root.path().join(OsStr::from_bytes(name)), name).unwrap();
        }
        std::os::unix::fs::symlink("a/y", root.path().join("l")).unwrap();
        let items = walk(root.path(), filter(&[]), None);
        assert_eq!(
            rels(&items),
            [
                "B",
                "a/",
                "a/x/",
                "a/x/1",
                "a/y",
                "a-b",
                "a.txt",
                "b\\\\c/",
                "b\\\\c/z",
                "bad\\xff",
                "l",
                "new\\nline",
                "tab\\tname"
            ]
        );
        let keys: Vec<&[u8]> = items
            .iter()
            .filter_map(|i| match i {
                Item::Folder { rel, .. } | Item::File { rel, .. } | Item::Symlink { rel, .. } => Some(&rel[..]),
                Item::Problem(..) => None,
            })
            .collect();
        assert!(
            keys.windows(2)
                .all(|w| ibs_archive::path_cmp(w[0], w[1]) == std::cmp::Ordering::Less)
        );
    }

    #[test]
    fn a_walk_step_reads_at_most_one_folder_and_lists_a_bounded_number_of_entries() {
        let root = tempfile::tempdir().unwrap();
        for i in 0..600 {
            std::fs::write(root.path().join(format!("f{i:03}")), b"").unwrap();
        }
        std::fs::create_dir(root.path().join("g")).unwrap();
        std::fs::write(root.path().join("g/x"), b"").unwrap();
        let mut w = Walker::new(root.path().to_owned(), filter(&[]), false);
        let mut sizes = Vec::new();
        loop {
            let batch = w.next_batch().unwrap();
            if batch.is_empty() {
                break;
            }
            sizes.push(batch.len());
        }
        // 600 files in steps of 256, then the folder `g` with its file.
        assert_eq!(sizes, [256, 256, 88, 2]);
    }

    #[test]
    fn owner_names_come_from_the_passwd_and_group_files() {
        let passwd = b"root:x:0:0:root:/root:/bin/bash\n# comment\n+nis::::::\nsvc:x:1234:5678::/:/bin/false\n\
                       dup:x:1234:1::/:/bin/false\nbroken line\n";
        let users = parse_id_names(passwd);
        assert_eq!(users.get(&0).unwrap(), b"root");
        assert_eq!(users.get(&1234).unwrap(), b"svc");
        assert_eq!(users.len(), 2);
        let groups = parse_id_names(b"wheel:x:10:alice,bob\nops::5678:\n");
        assert_eq!(groups.get(&5678).unwrap(), b"ops");
        let names = OwnerNames { users, groups };
        assert_eq!(names.of((1234, 5678)), (b"svc".to_vec(), b"ops".to_vec()));
        assert_eq!(names.of((99, 99)), (Vec::new(), Vec::new()));
    }

    #[test]
    fn a_file_with_holes_has_its_data_extents_found() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_at(b"head", 0).unwrap();
        f.write_at(b"middle", 32 << 20).unwrap();
        drop(f);
        let stat = stat_of(&std::fs::symlink_metadata(&path).unwrap());
        if !stat.looks_sparse() {
            return ibs_storage::conformance::skip_or_fail("this file system does not make holes");
        }
        let file = std::fs::File::open(&path).unwrap();
        let (data, extents, complete) = read_small(&file, &Stat { size: 64 << 20, ..stat }).unwrap().unwrap();
        let (size, extents) = extents.unwrap();
        assert!(complete);
        assert_eq!(size, 64 << 20);
        assert_eq!(extents.len(), 2, "{extents:?}");
        assert_eq!(extents[0].offset, 0);
        assert_eq!(extents[1].offset, 32 << 20);
        assert!(extents.iter().all(|x| x.len <= 1 << 20), "{extents:?}");
        assert_eq!(data.len() as u64, extents.iter().map(|x| x.len).sum::<u64>());
        assert!(data.starts_with(b"head"));
        let second = usize::try_from(extents[0].len).unwrap();
        assert!(data[second..].starts_with(b"middle"));
        // A dense file has none.
        std::fs::write(dir.path().join("dense"), vec![1u8; 10_000]).unwrap();
        let dense = std::fs::File::open(dir.path().join("dense")).unwrap();
        assert!(data_extents(&dense, 10_000).is_none());
    }

    #[test]
    fn patterns_that_would_silently_match_nothing_or_everything_are_refused() {
        for p in ["./f1", "a/../b", "**/", "**", "/**/**", "."] {
            assert!(gitignore_glob(p).is_err(), "{p:?}");
        }
        for p in ["f1", "/f1", "**/*.tmp", "cache/", "a/**/b"] {
            assert!(gitignore_glob(p).is_ok(), "{p:?}");
        }
    }

    #[test]
    fn gitignore_patterns() {
        let root = tempfile::tempdir().unwrap();
        for d in ["cache", "sub/cache/deep", "sub/keep", "logs", "sub/logs"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        for f in [
            "a.tmp",
            "a.json",
            "cache/x",
            "sub/cache/deep/y",
            "sub/keep/b.tmp",
            "sub/keep/b.json",
            "sub/keep/cache",
            "logs/l",
            "sub/logs/l",
        ] {
            std::fs::write(root.path().join(f), f).unwrap();
        }
        // Names that are not UTF-8 match too.
        std::fs::write(root.path().join(OsStr::from_bytes(b"bad\xff.tmp")), b"x").unwrap();
        std::fs::write(root.path().join(OsStr::from_bytes(b"bad\xff.json")), b"x").unwrap();
        let w = walk(root.path(), filter(&["**/*.tmp", "cache/", "/logs"]), None);
        // `cache/` is a folder at any depth (the file named cache stays); `/logs` is anchored.
        assert_eq!(
            files(&w),
            [
                "a.json",
                "bad\\xff.json",
                "sub/keep/b.json",
                "sub/keep/cache",
                "sub/logs/l"
            ]
        );
        let w = walk(root.path(), filter(&["*.tmp", "sub/keep"]), None);
        assert_eq!(
            files(&w),
            [
                "a.json",
                "bad\\xff.json",
                "cache/x",
                "logs/l",
                "sub/cache/deep/y",
                "sub/logs/l"
            ]
        );
        for bad in ["", "!keep", "/", "a[", "["] {
            assert!(Excludes::new(vec![bad.to_owned()]).is_err(), "{bad:?}");
        }
    }
}
