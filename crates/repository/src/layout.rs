//! Where backups sit at a location, and their names.
//!
//! ```
//! use ibs_repository::{BackupId, BackupPaths, InstanceLayout};
//!
//! let layout = InstanceLayout::new("AzureStack.Contoso.com", "westus").unwrap();
//! assert_eq!(layout.backup_root().as_str(), "azurestack.contoso.com/westus/MASBackup");
//! assert_eq!(layout.oem_folder("HLH").unwrap().as_str(), "azurestack.contoso.com/westus/HLH");
//! let id: BackupId = "20261122T051530Z-001a2b3c".parse().unwrap();
//! let paths = BackupPaths::new(&layout, &id).unwrap();
//! assert_eq!(paths.manifest.as_str(), "azurestack.contoso.com/westus/MASBackup/20261122T051530Z-001a2b3c/backup.manifest");
//! ```

use std::fmt;
use std::str::FromStr;

use ibs_storage::ObjectPath;
use time::OffsetDateTime;

use crate::{RepositoryError, Result};

/// The folder under `<fqdn>/<region>/` that belongs to ibs.
pub const BACKUP_FOLDER: &str = "MASBackup";
/// File name of the archive inside a backup folder.
pub const ARCHIVE_NAME: &str = "backup.ibs";
/// File name of the manifest (commit marker) inside a backup folder.
pub const MANIFEST_NAME: &str = "backup.manifest";

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
        getrandom::fill(&mut r).map_err(RepositoryError::Random)?;
        // An id's year has four digits (and a negative one would not parse).
        let t = OffsetDateTime::from_unix_timestamp(unix_seconds)
            .ok()
            .filter(|t| (0..=9999).contains(&t.year()))
            .ok_or_else(|| {
                RepositoryError::InvalidInput(format!(
                    "time {unix_seconds} is out of the range of backup ids (years 0 to 9999)"
                ))
            })?;
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
    type Err = RepositoryError;
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
            Err(RepositoryError::InvalidInput(format!(
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
    /// The backup's folder, `<fqdn>/<region>/MASBackup/<id>`.
    pub folder: ObjectPath,
    /// The archive in it ([`ARCHIVE_NAME`]).
    pub archive: ObjectPath,
    /// The manifest in it ([`MANIFEST_NAME`]), written last: the backup
    /// lists as complete only once it exists.
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

/// One cloud instance's folders at a location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceLayout {
    fqdn: String,
    region: String,
}

impl InstanceLayout {
    /// The layout for an instance's external domain FQDN and region.
    pub fn new(fqdn: &str, region: &str) -> Result<Self> {
        let fqdn = fqdn.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if fqdn.is_empty() || fqdn.len() > 253 || !fqdn.split('.').all(valid_label) {
            return Err(RepositoryError::InvalidInput(format!(
                "invalid external domain FQDN {fqdn:?}: expected DNS labels of letters, digits and '-', separated by '.'"
            )));
        }
        let region = region.trim().to_ascii_lowercase();
        if !valid_label(&region) {
            return Err(RepositoryError::InvalidInput(format!(
                "invalid region name {region:?}: expected letters, digits and '-'"
            )));
        }
        Ok(InstanceLayout { fqdn, region })
    }

    /// The external domain FQDN as normalised by [`InstanceLayout::new`]:
    /// lower case, no trailing dot.
    pub fn fqdn(&self) -> &str {
        &self.fqdn
    }

    /// The region as normalised by [`InstanceLayout::new`]: lower case.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// `<fqdn>/<region>`: this instance's folder.
    pub fn instance_root(&self) -> ObjectPath {
        join(&[&self.fqdn, &self.region])
    }

    /// `<fqdn>/<region>/MASBackup`: the only folder this library writes to.
    pub fn backup_root(&self) -> ObjectPath {
        join(&[&self.fqdn, &self.region, BACKUP_FOLDER])
    }

    /// `<fqdn>/<region>/<name>`: an OEM tool's folder (`HLH`, `Switches`,
    /// `DeploymentData`, `Registration`, or any other name but `MASBackup`),
    /// offered to OEM tools; this library never writes or deletes there.
    pub fn oem_folder(&self, name: &str) -> Result<ObjectPath> {
        if name.eq_ignore_ascii_case(BACKUP_FOLDER) {
            return Err(RepositoryError::InvalidInput(format!(
                "invalid OEM folder {name:?}: {BACKUP_FOLDER} belongs to ibs"
            )));
        }
        self.instance_root()
            .child(name)
            .map_err(|e| RepositoryError::InvalidInput(format!("invalid OEM folder {name:?}: {e}")))
    }

    /// Whether `path` lies inside this instance's `MASBackup` folder (and so may
    /// be written or deleted by this library).
    pub fn owns(&self, path: &ObjectPath) -> bool {
        path.starts_with(&self.backup_root()) && path != &self.backup_root()
    }
}

/// A path of segments already checked ([`InstanceLayout::new`] accepts only
/// DNS labels, which are valid segments).
fn join(segments: &[&str]) -> ObjectPath {
    segments
        .iter()
        .try_fold(ObjectPath::root(), |p, s| p.child(s))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_never_mix_and_oem_folders_are_siblings() {
        let a = InstanceLayout::new("AzureStack.Contoso.com.", "WestUS").unwrap();
        let b = InstanceLayout::new("azurestack.contoso.com", "eastus").unwrap();
        assert_eq!(a.backup_root().as_str(), "azurestack.contoso.com/westus/MASBackup");
        assert!(!b.owns(&a.backup_root().child("x").unwrap()));
        assert!(a.owns(&a.backup_root().child("x").unwrap()));
        assert!(!a.owns(&a.backup_root()));
        for oem in ["HLH", "Switches", "DeploymentData", "Registration", "AnyVendorTool"] {
            let p = a.oem_folder(oem).unwrap();
            assert_eq!(p.parent().unwrap(), a.instance_root());
            assert!(!a.owns(&p) && !a.owns(&p.child("f").unwrap()));
        }
        assert!(a.oem_folder("masbackup").is_err());
        assert!(a.oem_folder("../x").is_err());
        assert!(InstanceLayout::new("bad_fqdn", "r").is_err());
        assert!(InstanceLayout::new("a.b", "r/x").is_err());
        assert!(InstanceLayout::new("", "r").is_err());
    }
}
