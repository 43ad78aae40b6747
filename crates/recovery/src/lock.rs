//! The restore folder's lock, and the leftovers of an interrupted restore.

use std::path::{Path, PathBuf};

use crate::{RecoveryError, Result};

/// What an earlier, interrupted restore had left in a restore folder, and
/// this one removed (see [`RestoreLock::remove_leftovers`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Staging folders (`.ibs-restore-<tag>/`, holding the marker
    /// [`STAGING_MARKER`]) removed with their contents.
    pub staging_folders: u64,
}

impl Leftovers {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.staging_folders == 0
    }
}

/// The file a restore creates first in its staging folder: only a folder
/// holding it is ever removed as a leftover (a folder of that name restored
/// from a backup, or made by someone else, is not: sources named
/// `.ibs-restore-…` are refused, so no restored source can carry it).
pub const STAGING_MARKER: &str = ".ibs-restore-staging";

/// Whether `name` is a staging folder's: `.ibs-restore-` and 16 hex digits.
pub(crate) fn is_staging_name(name: &str) -> bool {
    name.strip_prefix(".ibs-restore-")
        .is_some_and(|tag| tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An exclusive hold on a restore folder: an advisory lock (`flock`) on the
/// folder itself, released when this is dropped (or the process ends). Two
/// restores never write into one folder at once, and leftovers are removed
/// only under the lock, so a restore never removes another one's files.
/// [`Backup::restore_to`](crate::Backup::restore_to) takes one itself; a tool that may stop a restore
/// takes it first ([`Backup::restore_locked`](crate::Backup::restore_locked)) and keeps it until it has
/// cleaned up ([`RestoreLock::remove_leftovers`]).
#[derive(Debug)]
pub struct RestoreLock {
    folder: PathBuf,
    _held: std::fs::File,
}

impl RestoreLock {
    /// Creates `dir` if needed and locks it; refused (not waited for) while
    /// another restore holds it.
    pub async fn acquire(dir: &Path) -> Result<Self> {
        if let Err(source) = tokio::fs::create_dir_all(dir).await {
            if let Some(not_a_folder) = first_non_folder(dir) {
                return Err(RecoveryError::DestinationNotAFolder {
                    path: dir.to_owned(),
                    not_a_folder,
                });
            }
            return Err(RecoveryError::Io {
                action: "cannot create",
                path: dir.to_owned(),
                source,
            });
        }
        let held = lock_restore_folder(dir).await?;
        Ok(RestoreLock {
            folder: dir.to_owned(),
            _held: held,
        })
    }

    /// The restore folder this lock holds, as given (not canonicalised).
    pub fn path(&self) -> &Path {
        &self.folder
    }

    /// Removes what an interrupted restore (killed, or stopped by a signal)
    /// left in the folder: its staging folders, directly in it, named
    /// `.ibs-restore-<16 hex digits>` and holding the marker
    /// [`STAGING_MARKER`] a restore creates first. Nothing else is touched;
    /// symbolic links are never followed. Blocking.
    pub fn remove_leftovers(&self) -> Result<Leftovers> {
        remove_restore_leftovers(&self.folder)
    }
}

/// `dir` or the nearest of its parents that exists, when that is not a
/// folder (symbolic links followed, as creating the folder follows them).
fn first_non_folder(dir: &Path) -> Option<PathBuf> {
    let existing = dir.ancestors().find(|p| !p.as_os_str().is_empty() && p.exists())?;
    (!existing.is_dir()).then(|| existing.to_owned())
}

pub(crate) fn remove_restore_leftovers(dir: &Path) -> Result<Leftovers> {
    let io = |action: &'static str, p: &Path| {
        let path = p.to_owned();
        move |source| RecoveryError::Io { action, path, source }
    };
    let mut found = Leftovers::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(io("cannot list", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("cannot list", dir))?;
        let name = entry.file_name();
        let is_dir = entry.file_type().map_err(io("cannot inspect", &entry.path()))?.is_dir();
        let marked =
            || std::fs::symlink_metadata(entry.path().join(STAGING_MARKER)).is_ok_and(|m| m.file_type().is_file());
        if is_dir && name.to_str().is_some_and(is_staging_name) && marked() {
            std::fs::remove_dir_all(entry.path()).map_err(io("cannot remove", &entry.path()))?;
            found.staging_folders += 1;
        }
    }
    Ok(found)
}

/// Takes an exclusive advisory lock (`flock`) on the restore folder itself,
/// held until the returned file is dropped: a second restore into the same
/// folder is refused instead of removing the first one's temporary files.
async fn lock_restore_folder(dir: &Path) -> Result<std::fs::File> {
    let at = dir.to_owned();
    blocking(move || {
        let folder = std::fs::File::open(&at).map_err(|source| RecoveryError::Io {
            action: "cannot open",
            path: at.clone(),
            source,
        })?;
        match rustix::fs::flock(&folder, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(folder),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(RecoveryError::Usage(format!(
                "another restore is writing into {}; wait for it to finish, or restore into another folder",
                at.display()
            ))),
            Err(e) => Err(RecoveryError::Io {
                action: "cannot lock",
                path: at,
                source: e.into(),
            }),
        }
    })
    .await
}

/// Runs blocking file-system work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(RecoveryError::Task)?
}
