//! A local folder the user running ibs may not write is a permission failure
//! naming the folder and the user, never an authentication failure about
//! credentials. The denial is real: as root (which file modes do not stop),
//! the folder is made immutable with `chattr +i`; as another user, read-only
//! with mode 0555.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use ibs_storage::conformance::skip_or_fail;
use ibs_storage::{CommitMode, ErrorKind, LocalTarget, ObjectPath, StorageTarget};

/// A folder that refuses writes for as long as it lives.
struct Locked(PathBuf);

impl Locked {
    fn new(dir: &Path) -> Option<Self> {
        std::fs::create_dir(dir).unwrap();
        if ibs_testkit::is_root() {
            let ok = Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            return ok.then(|| Locked(dir.to_owned()));
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        Some(Locked(dir.to_owned()))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        if ibs_testkit::is_root() {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[tokio::test]
async fn a_folder_the_user_may_not_write_is_a_permission_failure_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let locked_dir = dir.path().join("locked");
    let Some(_locked) = Locked::new(&locked_dir) else {
        return skip_or_fail("chattr +i failed: the file system does not support immutable folders");
    };
    let target = LocalTarget::new(dir.path()).unwrap();
    let locked = ObjectPath::parse("locked").unwrap();

    // Writing a new object into the folder: the real EPERM/EACCES of open(2).
    let err = match target
        .put(&locked.child("backup.bin").unwrap(), CommitMode::CreateNew)
        .await
    {
        Ok(mut w) => {
            // Not denied at open (never on Linux); the write or commit must be.
            w.write(Bytes::from_static(b"x")).await.unwrap();
            w.commit().await.unwrap_err()
        }
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains(&locked_dir.display().to_string()),
        "names the folder: {text}"
    );
    assert!(text.contains("the user running ibs (uid "), "names the user: {text}");
    assert!(text.contains("(permission denied)"), "{text}");
    let alert = err.alert();
    assert_eq!(alert.kind, ErrorKind::PermissionDenied);
    for words in [&alert.title, &alert.description, &alert.remediation] {
        assert!(!words.contains("password"), "{words}");
        assert!(!words.contains("credential"), "{words}");
        assert!(!words.contains("domain"), "{words}");
    }
    assert!(alert.remediation.contains("user running ibs"), "{}", alert.remediation);

    // Creating a folder inside it, too.
    let err = target.create_dir_all(&locked.child("sub").unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("locked"), "{err}");

    // Elsewhere in the same target, writing still works.
    let mut w = target
        .put(&ObjectPath::parse("free.bin").unwrap(), CommitMode::CreateNew)
        .await
        .unwrap();
    w.write(Bytes::from_static(b"ok")).await.unwrap();
    w.commit().await.unwrap();
}
