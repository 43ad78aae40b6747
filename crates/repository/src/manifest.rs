//! The manifest: a backup's commit marker, readable without any key.
//!
//! A backup is **complete** only when its manifest exists and agrees with the
//! archive. [`commit_backup`](crate::commit_backup) puts the archive first
//! and the manifest last with
//! [`CommitMode::CreateNew`](ibs_storage::CommitMode::CreateNew); a job that
//! dies before the manifest leaves an **incomplete** folder that retention
//! deletes. The manifest repeats, in the clear, what a keyless catalogue
//! needs (time, producer version, recipients) and the archive's size and
//! SHA-256, so the whole archive can be checked without any key.

use ibs_archive::ArchiveId;
use ibs_envelope::Thumbprint;

use crate::layout::BackupId;
use crate::{RepositoryError, Result};

/// First line of every manifest.
pub const MANIFEST_MAGIC: &str = "ibs-backup-manifest 1";
/// Largest manifest a reader accepts.
pub const MAX_MANIFEST_LEN: u64 = 64 << 10;

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
    /// The manifest's text, as committed beside the archive and read back by
    /// [`Manifest::parse`].
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
        let bad = |line: usize, reason: String| RepositoryError::Manifest { line, reason };
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
        let id = id.parse().map_err(|e: RepositoryError| bad(l, e.to_string()))?;
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
        Err(RepositoryError::InvalidInput(format!(
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
