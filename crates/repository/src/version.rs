//! Producer versions: dotted numbers, `MAJOR.MINOR[.BUILD[.REVISION]]` (for
//! example `1.2408.0.21`), recorded in every manifest and archive header;
//! the **release** is `MAJOR.MINOR`. (Which versions may restore which
//! backups is the recovery reader's rule.)

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::{RepositoryError, Result};

/// A dotted numeric version.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Version(Vec<u64>);

impl Version {
    /// The release: the first two numbers.
    pub fn release(&self) -> Release {
        Release(self.0[0], self.0.get(1).copied().unwrap_or(0))
    }
}

impl FromStr for Version {
    type Err = RepositoryError;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Option<Vec<u64>> = s.trim().split('.').map(|p| p.parse().ok()).collect();
        match parts {
            Some(p) if (1..=4).contains(&p.len()) => Ok(Version(p)),
            _ => Err(RepositoryError::InvalidInput(format!(
                "{s:?} is not a version (expected numbers like 1.2408.0.21)"
            ))),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self})")
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| self.0.get(i).unwrap_or(&0).cmp(other.0.get(i).unwrap_or(&0)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

/// A release: `MAJOR.MINOR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Release(pub u64, pub u64);

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}
