//! How a backup sits on a storage target, and its manifest (the commit marker).
//!
//! ```text
//! <share>/<fqdn>/<region>/MASBackup/
//!     20261122T051530Z-1a2b3c4d/          one folder per backup, named by its id
//!         backup.ibs                      the archive (ibs-archive FORMAT.md)
//!         backup.manifest                 written last, atomically: the commit marker
//! ```
//!
//! A backup is **complete** only when its manifest exists and agrees with the
//! archive. Writers put the archive first and the manifest last with
//! [`CommitMode::CreateNew`](ibs_storage::CommitMode::CreateNew); a job that
//! dies before the manifest leaves an **incomplete** folder that retention
//! deletes. The manifest repeats, in the clear, what a keyless catalogue
//! needs (time, producer version, recipients) and the archive's size and
//! SHA-256, so the whole archive can be checked without any key.

use std::fmt;
use std::str::FromStr;

use ibs_archive::ArchiveId;
use ibs_envelope::Thumbprint;
use ibs_storage::{InstanceLayout, ObjectPath};
use time::OffsetDateTime;

use crate::{RecoveryError, Result};

/// File name of the archive inside a backup folder.
pub const ARCHIVE_NAME: &str = "backup.ibs";
/// File name of the manifest (commit marker) inside a backup folder.
pub const MANIFEST_NAME: &str = "backup.manifest";
/// First line of every manifest.
pub const MANIFEST_MAGIC: &str = "ibs-backup-manifest 1";
/// Largest manifest a reader accepts.
pub const MAX_MANIFEST_LEN: u64 = 64 << 10;

/// A backup's id: its UTC creation time, a sequence number within that
/// second and 24 random bits, `YYYYMMDDTHHMMSSZ-ssxxxxxx` (`ss`: two hex
/// digits, `xxxxxx`: six). Ids sort in creation order, also within one
/// second: [`BackupId::next`] gives a backup the next sequence number after
/// the ids already at the location for the same second. (Ids written before
/// the sequence existed have eight random hex digits in its place; they
/// parse the same, and order arbitrarily only against ids of the very same
/// second.)
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupId(String);

impl BackupId {
    /// A fresh id for a backup created at `unix_seconds`, with sequence
    /// number 0 (see [`BackupId::next`] to order it after existing ones).
    pub fn generate(unix_seconds: i64) -> Result<Self> {
        Self::next(unix_seconds, std::iter::empty())
    }

    /// A fresh id for a backup created at `unix_seconds` that sorts after
    /// every id in `existing` of the same second (the ids already at the
    /// location); past 256 in one second they share sequence `ff`.
    pub fn next<'a>(unix_seconds: i64, existing: impl IntoIterator<Item = &'a BackupId>) -> Result<Self> {
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).map_err(RecoveryError::Random)?;
        // An id's year has four digits (and a negative one would not parse).
        let t = OffsetDateTime::from_unix_timestamp(unix_seconds)
            .ok()
            .filter(|t| (0..=9999).contains(&t.year()))
            .ok_or_else(|| RecoveryError::Usage(format!("time {unix_seconds} out of range")))?;
        let second = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z-",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
        );
        let taken = existing
            .into_iter()
            .filter_map(|id| id.0.strip_prefix(&second))
            .filter_map(|rest| u8::from_str_radix(rest.get(..2)?, 16).ok())
            .max();
        // An id made before the sequence existed (8 random digits) can look
        // like any sequence number: past ff the order within this one second
        // falls back to the random digits rather than failing.
        let sequence = taken.map_or(0, |n| n.saturating_add(1));
        let random = u32::from_be_bytes(r) & 0x00ff_ffff;
        Ok(BackupId(format!("{second}{sequence:02x}{random:06x}")))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The creation time encoded in the id, Unix seconds.
    pub fn created(&self) -> i64 {
        // Parsing checked that the time is a real one.
        self.time().unwrap_or(0)
    }

    /// The time the id names, if its date and time of day exist.
    fn time(&self) -> Option<i64> {
        let n = |r: std::ops::Range<usize>| self.0.get(r)?.parse::<u16>().ok();
        let date = time::Date::from_calendar_date(
            i32::from(n(0..4)?),
            time::Month::try_from(u8::try_from(n(4..6)?).ok()?).ok()?,
            u8::try_from(n(6..8)?).ok()?,
        )
        .ok()?;
        let hms = |r| u8::try_from(n(r)?).ok();
        let tm = time::Time::from_hms(hms(9..11)?, hms(11..13)?, hms(13..15)?).ok()?;
        Some(time::PrimitiveDateTime::new(date, tm).assume_utc().unix_timestamp())
    }
}

impl FromStr for BackupId {
    type Err = RecoveryError;
    fn from_str(s: &str) -> Result<Self> {
        let b = s.as_bytes();
        let shape = b.len() == 25
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'T'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && b[15] == b'Z'
            && b[16] == b'-'
            && b[17..].iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
        let id = BackupId(s.to_owned());
        // (Not `created() != 0`: 19700101T000000Z is a time like any other.)
        if shape && id.time().is_some() {
            Ok(id)
        } else {
            Err(RecoveryError::Usage(format!(
                "{s:?} is not a backup id (expected YYYYMMDDTHHMMSSZ- and 8 hex digits)"
            )))
        }
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupId({})", self.0)
    }
}

/// Whether `name`, inside a backup folder, is a file ibs writes there: the
/// archive, the manifest, or an uncommitted upload of either (its
/// [partial name](ibs_storage::partial_path)). Anything else in a backup
/// folder was put there by someone else and is never deleted by retention.
pub fn is_our_name(name: &str) -> bool {
    if name == ARCHIVE_NAME || name == MANIFEST_NAME {
        return true;
    }
    [ARCHIVE_NAME, MANIFEST_NAME].iter().any(|own| {
        name.strip_prefix('.')
            .and_then(|n| n.strip_prefix(own))
            .and_then(|n| n.strip_prefix(ibs_storage::PARTIAL_MARKER))
            .is_some_and(|tag| tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// The paths of one backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupPaths {
    /// The backup's folder.
    pub folder: ObjectPath,
    /// The archive.
    pub archive: ObjectPath,
    /// The manifest.
    pub manifest: ObjectPath,
}

impl BackupPaths {
    /// Where backup `id` of `instance` lives.
    pub fn new(instance: &InstanceLayout, id: &BackupId) -> Result<Self> {
        let folder = instance.backup_root().child(id.as_str())?;
        Ok(BackupPaths {
            archive: folder.child(ARCHIVE_NAME)?,
            manifest: folder.child(MANIFEST_NAME)?,
            folder,
        })
    }
}

/// The commit marker of a backup: plain UTF-8 `key: value` lines after the
/// [`MANIFEST_MAGIC`] line. Unknown keys are ignored (room to grow); every key
/// below is required once, except `recipient` (one or more).
///
/// ```text
/// ibs-backup-manifest 1
/// id: 20261122T051530Z-1a2b3c4d
/// archive-id: 0f1e…(32 hex)
/// archive-size: 123456
/// archive-sha256: 9a…(64 hex)
/// created: 1763788530
/// producer-version: 1.2408.0.21
/// fqdn: azs.contoso.com
/// region: local
/// recipient: AD35BAAAAC9E231A422478BFAE81A1AEB02A3425
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The backup's id (equals its folder's name).
    pub id: BackupId,
    /// The archive's id (equals the archive header's).
    pub archive_id: ArchiveId,
    /// The archive's size in bytes.
    pub archive_size: u64,
    /// SHA-256 of the archive's bytes.
    pub archive_sha256: [u8; 32],
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Version of the system that made the backup.
    pub producer_version: String,
    /// External domain fqdn of the instance.
    pub fqdn: String,
    /// Region of the instance.
    pub region: String,
    /// Thumbprints of the certificates the archive is encrypted to.
    pub recipients: Vec<Thumbprint>,
}

impl Manifest {
    /// The manifest as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "{MANIFEST_MAGIC}\nid: {}\narchive-id: {}\narchive-size: {}\narchive-sha256: {}\ncreated: {}\nproducer-version: {}\nfqdn: {}\nregion: {}\n",
            self.id,
            self.archive_id,
            self.archive_size,
            hex(&self.archive_sha256),
            self.created,
            one_line(&self.producer_version),
            one_line(&self.fqdn),
            one_line(&self.region),
        );
        for r in &self.recipients {
            s.push_str(&format!("recipient: {r}\n"));
        }
        s.into_bytes()
    }

    /// Parses a manifest (untrusted bytes: an error, never a panic).
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let bad = |line: usize, reason: String| RecoveryError::Manifest { line, reason };
        if bytes.len() as u64 > MAX_MANIFEST_LEN {
            return Err(bad(0, format!("larger than {MAX_MANIFEST_LEN} bytes")));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad(0, "not UTF-8".into()))?;
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, MANIFEST_MAGIC)) => {}
            _ => return Err(bad(1, format!("first line must be {MANIFEST_MAGIC:?}"))),
        }
        let mut fields: Vec<(&str, &str, usize)> = Vec::new();
        for (i, line) in lines {
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once(": ")
                .ok_or_else(|| bad(i + 1, "expected `key: value`".into()))?;
            if line.chars().any(char::is_control) {
                return Err(bad(i + 1, "control character".into()));
            }
            fields.push((k, v, i + 1));
        }
        let one = |key: &str| -> Result<(&str, usize)> {
            let mut found = fields.iter().filter(|(k, _, _)| *k == key);
            match (found.next(), found.next()) {
                (Some((_, v, l)), None) => Ok((*v, *l)),
                (None, _) => Err(bad(0, format!("missing {key}"))),
                (Some(_), Some((_, _, l))) => Err(bad(*l, format!("{key} appears twice"))),
            }
        };
        let (id, l) = one("id")?;
        let id = id.parse().map_err(|e: RecoveryError| bad(l, e.to_string()))?;
        let (v, l) = one("archive-id")?;
        let archive_id = v
            .parse()
            .map_err(|_| bad(l, "archive-id is not 32 hex digits".into()))?;
        let (v, l) = one("archive-size")?;
        let archive_size = v.parse().map_err(|_| bad(l, "archive-size is not a number".into()))?;
        let (v, l) = one("archive-sha256")?;
        let archive_sha256 = unhex32(v).ok_or_else(|| bad(l, "archive-sha256 is not 64 hex digits".into()))?;
        let (v, l) = one("created")?;
        let created = v.parse().map_err(|_| bad(l, "created is not a number".into()))?;
        let producer_version = one("producer-version")?.0.to_owned();
        let fqdn = one("fqdn")?.0.to_owned();
        let region = one("region")?.0.to_owned();
        let recipients = fields
            .iter()
            .filter(|(k, _, _)| *k == "recipient")
            .map(|(_, v, l)| {
                Thumbprint::from_hex(v).ok_or_else(|| bad(*l, "recipient is not a SHA-1 thumbprint".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        if recipients.is_empty() {
            return Err(bad(0, "no recipient".into()));
        }
        Ok(Manifest {
            id,
            archive_id,
            archive_size,
            archive_sha256,
            created,
            producer_version,
            fqdn,
            region,
            recipients,
        })
    }
}

/// Checks a text value before it goes into a manifest (and the archive
/// header beside it): one line, no control characters, no leading or
/// trailing space, at most 256 bytes — what [`Manifest::parse`] reads back
/// unchanged. A writer checks every value before it writes anything, so a
/// committed backup never fails to list for a bad label.
pub fn check_manifest_value(field: &str, value: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(RecoveryError::Usage(format!(
            "{field} {value:?} cannot be recorded: {why}"
        )))
    };
    if value.is_empty() {
        bad("it is empty")
    } else if value.len() > 256 {
        bad("it is longer than 256 bytes")
    } else if value.chars().any(char::is_control) {
        bad("it contains a line break or another control character")
    } else if value.trim() != value {
        bad("it starts or ends with white space")
    } else {
        Ok(())
    }
}

/// Values are single lines without control characters (the parser refuses them).
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    // `from_str_radix` alone would take a sign ("+f").
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
