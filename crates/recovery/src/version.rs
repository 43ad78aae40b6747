//! Producer versions and the version rule of recovery.
//!
//! A version is dotted numbers, `MAJOR.MINOR[.BUILD[.REVISION]]` (for example
//! `1.2408.0.21`); its **release** is `MAJOR.MINOR` (`1.2408`). A recovering
//! instance may restore a backup only if the instance's release is the
//! backup's release or at most [`VersionRule::max_releases_newer`] releases
//! after it (default 1). A backup from a *newer* release than the instance is
//! always refused: old software does not understand new data.
//!
//! How far apart two releases are: if the rule knows the release history
//! ([`VersionRule::history`], oldest first), the number of releases
//! between them in that list; otherwise, within one major version, the
//! difference of the minor numbers (`1.4` → `1.5` is one release). Releases of
//! different major versions without a history are too far apart.

pub use ibs_repository::{Release, Version};

use crate::{RecoveryError, Result};

/// Which backups an instance may restore (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRule {
    max_releases_newer: u32,
    history: Vec<Release>,
}

impl Default for VersionRule {
    /// At most one release newer; no history.
    fn default() -> Self {
        VersionRule {
            max_releases_newer: 1,
            history: Vec::new(),
        }
    }
}

impl VersionRule {
    /// Allows the instance to be up to `n` releases newer than the backup.
    pub fn max_releases_newer(mut self, n: u32) -> Self {
        self.max_releases_newer = n;
        self
    }

    /// The release history, oldest first, used to count releases.
    pub fn history(mut self, releases: impl IntoIterator<Item = Release>) -> Self {
        self.history = releases.into_iter().collect();
        self.history.sort();
        self.history.dedup();
        self
    }

    /// How many releases `instance` is after `backup` (negative: before);
    /// `None` when that cannot be told.
    pub fn distance(&self, backup: Release, instance: Release) -> Option<i64> {
        let pos = |r| self.history.iter().position(|h| *h == r);
        if let (Some(b), Some(i)) = (pos(backup), pos(instance)) {
            return Some(i as i64 - b as i64);
        }
        if backup == instance {
            return Some(0);
        }
        if backup.0 == instance.0 {
            return Some(instance.1 as i64 - backup.1 as i64);
        }
        None
    }

    /// Checks that an instance at `instance` may restore a backup made by `backup`.
    pub fn check(&self, backup: &Version, instance: &Version) -> Result<()> {
        let (b, i) = (backup.release(), instance.release());
        let distance = self.distance(b, i);
        let allowed = i64::from(self.max_releases_newer);
        let why = match distance {
            Some(d) if (0..=allowed).contains(&d) => return Ok(()),
            Some(d) if d < 0 => format!(
                "the backup is from release {b}, newer than this instance's release {i}; update this instance to {b} first, or choose an older backup"
            ),
            Some(d) => format!(
                "this instance's release {i} is {d} releases after the backup's release {b}, and at most {allowed} is allowed; recover with an instance at release {b} (or at most {allowed} later), or choose a newer backup"
            ),
            None => format!(
                "releases {b} and {i} cannot be compared without a release history; recover with an instance at release {b}, or configure the release history"
            ),
        };
        Err(RecoveryError::VersionRule {
            backup: backup.clone(),
            instance: instance.clone(),
            reason: why,
        })
    }
}
