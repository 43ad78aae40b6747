//! How the controller opens its location: which backend serves each kind of
//! location, and what that backend needs besides the location itself.
//!
//! Each remote backend is a cargo feature of this crate: `smb` (on by
//! default; links Samba's libsmbclient) for `\\server\share` and `smb://`
//! locations, and `object-store` (an HTTP client) for `az://` and `s3://`
//! ones. A local directory needs neither. A location whose backend is not
//! compiled in is a settings error naming the feature.

use std::fmt;
use std::sync::Arc;

use ibs_storage::{CallObserver, LocalTarget, Location, ObservedTarget, StorageTarget};
#[cfg(feature = "object-store")]
use ibs_storage_object::{ObjectOptions, ObjectTarget};
#[cfg(feature = "smb")]
use ibs_storage_smb::{SmbConfig, SmbCredentials, SmbTarget};

use crate::{ControllerError, Result};

/// What the location's backend needs besides the location itself. What does
/// not concern the location's backend is not used (SMB credentials for a
/// local directory, say), so a caller may pass what it has. Never shows a
/// password in `Debug` output.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Access {
    /// Nothing more: a local directory, or an Azure Blob container or S3
    /// bucket configured from the environment variables `object_store` reads
    /// (see `ibs-storage-object`), with default options. Not enough for an
    /// SMB share.
    #[default]
    Default,
    /// The credentials of an SMB share (required for one).
    #[cfg(feature = "smb")]
    Smb(SmbCredentials),
    /// Options of an Azure Blob or S3 target (credentials and endpoint still
    /// come from the environment).
    #[cfg(feature = "object-store")]
    Object(ObjectOptions),
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Default => f.write_str("Default"),
            // The account, never the password.
            #[cfg(feature = "smb")]
            Access::Smb(credentials) => f.debug_tuple("Smb").field(&credentials.account()).finish(),
            #[cfg(feature = "object-store")]
            Access::Object(options) => f.debug_tuple("Object").field(options).finish(),
        }
    }
}

/// The storage target of a location: a local directory, an SMB share with
/// [`Access::Smb`] credentials (feature `smb`), or an Azure Blob container
/// or S3 bucket configured from the environment (feature `object-store`).
///
/// Every call to it is traced: the backend is wrapped in an
/// [`ObservedTarget`] (a `tracing` span per storage call, inside the span of
/// the job that makes it). To also hear of each call's start and end (a
/// command's spinner while a stalled share keeps a call waiting), open it
/// with [`open_target_observed`] instead — not by wrapping this target
/// again, which would trace every call twice.
pub fn open_target(location: &Location, access: &Access) -> Result<Arc<dyn StorageTarget>> {
    open_target_observed(location, access, None)
}

/// [`open_target`], telling `observer` (when given) of every storage call's
/// start and end — every write and the commit of an upload included (see
/// [`ObservedTarget`]).
pub fn open_target_observed(
    location: &Location,
    access: &Access,
    observer: Option<CallObserver>,
) -> Result<Arc<dyn StorageTarget>> {
    let backend = open_backend(location, access)?;
    let traced = ObservedTarget::new(backend);
    Ok(Arc::new(match observer {
        Some(observer) => traced.with_observer(observer),
        None => traced,
    }))
}

fn open_backend(location: &Location, access: &Access) -> Result<Arc<dyn StorageTarget>> {
    match location {
        Location::Local(dir) => Ok(Arc::new(LocalTarget::new(dir)?)),
        Location::Smb { .. } => open_smb(location, access),
        Location::Object { .. } => open_object(location, access),
    }
}

#[cfg(feature = "smb")]
fn open_smb(location: &Location, access: &Access) -> Result<Arc<dyn StorageTarget>> {
    let credentials = match access {
        Access::Smb(credentials) => credentials.clone(),
        _ => {
            return Err(ControllerError::InvalidSetting {
                setting: "credentials",
                reason: ibs_storage_smb::CREDENTIALS_NEEDED.into(),
            });
        }
    };
    Ok(Arc::new(SmbTarget::new(SmbConfig::from_location(
        location,
        credentials,
    )?)?))
}

#[cfg(not(feature = "smb"))]
fn open_smb(location: &Location, _: &Access) -> Result<Arc<dyn StorageTarget>> {
    Err(not_compiled_in(location, "SMB", "smb"))
}

#[cfg(feature = "object-store")]
fn open_object(location: &Location, access: &Access) -> Result<Arc<dyn StorageTarget>> {
    let options = match access {
        Access::Object(options) => options.clone(),
        _ => ObjectOptions::default(),
    };
    Ok(Arc::new(ObjectTarget::from_location(location, options)?))
}

#[cfg(not(feature = "object-store"))]
fn open_object(location: &Location, _: &Access) -> Result<Arc<dyn StorageTarget>> {
    Err(not_compiled_in(location, "object-store", "object-store"))
}

#[cfg(any(not(feature = "smb"), not(feature = "object-store")))]
fn not_compiled_in(location: &Location, what: &str, feature: &str) -> ControllerError {
    // Not "location": that setting's failures are reported as a path that
    // cannot be resolved, and this one is about the build, not the path.
    ControllerError::InvalidSetting {
        setting: "backend",
        reason: format!("{location}: this build has no {what} support (feature `{feature}`)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting_of(location: &str, access: &Access) -> (&'static str, String) {
        match open_target(&Location::parse(location).unwrap(), access) {
            Err(ControllerError::InvalidSetting { setting, reason }) => (setting, reason),
            other => panic!("{location}: {other:?}"),
        }
    }

    #[cfg(feature = "smb")]
    #[test]
    fn an_smb_share_needs_credentials_and_debug_shows_only_the_account() {
        let (setting, reason) = setting_of(r"\\fs\share", &Access::Default);
        assert_eq!(setting, "credentials");
        assert_eq!(reason, ibs_storage_smb::CREDENTIALS_NEEDED);
        assert!(reason.contains("user name and a password"), "{reason}");
        assert!(reason.contains("a domain is optional"), "{reason}");
        let access = Access::Smb(SmbCredentials::new("CONTOSO", "svc", "S3cret"));
        let shown = format!("{access:?}");
        assert!(shown.contains("svc") && !shown.contains("S3cret"), "{shown}");
    }

    #[cfg(not(feature = "smb"))]
    #[test]
    fn an_smb_share_without_the_smb_feature_is_a_settings_error_naming_it() {
        let (setting, reason) = setting_of(r"\\fs\share", &Access::Default);
        assert_eq!(setting, "backend");
        assert!(reason.contains("feature `smb`"), "{reason}");
    }

    #[cfg(not(feature = "object-store"))]
    #[test]
    fn an_object_store_without_its_feature_is_a_settings_error_naming_it() {
        let (setting, reason) = setting_of("s3://bucket/x", &Access::Default);
        assert_eq!(setting, "backend");
        assert!(reason.contains("feature `object-store`"), "{reason}");
    }

    #[tokio::test]
    async fn an_opened_target_is_observed_when_asked() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let events = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&events);
        let observer: CallObserver = Arc::new(move |_: &ibs_storage::CallEvent| {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        let location = Location::Local(dir.path().to_owned());
        let target = open_target_observed(&location, &Access::Default, Some(observer)).unwrap();
        target.capacity().await.unwrap();
        assert_eq!(events.load(Ordering::Relaxed), 2);
        // Named as the backend names itself: the wrapper does not show in messages.
        assert!(target.to_string().starts_with("local directory"), "{target}");
        assert!(open_target(&location, &Access::Default).is_ok());
    }

    #[test]
    fn a_local_directory_needs_nothing_more() {
        let dir = std::env::temp_dir();
        assert!(open_target(&Location::Local(dir), &Access::Default).is_ok());
    }
}
