//! From libsmbclient's errors to the failure classes: errno mapping, the
//! probes that tell apart what one errno covers, the time-limit error, and
//! what an operator checks at a share.

use ibs_storage::{ErrorKind, Remediation, StorageError, classify_io};
use pavao::SmbError;

use crate::SmbConfig;
use crate::target::Inner;

/// What an operator checks at an SMB share.
pub(crate) static SMB: Remediation = Remediation {
    connectivity: "Fix the network connectivity between the system and the storage location \
        (file server up, port 445 reachable, firewall and DNS), then retry the backup.",
    path_not_found: "Check the file server's name (it must resolve, in DNS, from this system), the share \
        and the folder (they must open from another machine), then update the backup storage path in the \
        backup settings.",
    authentication: "Check the user name, password and domain for the storage location, and that the \
        account may read and write the share; update the credentials in the backup settings.",
};

/// The connectivity error of a call that waited its whole bound
/// ([`SmbConfig::timeout`], which is what the text names), with `note`
/// (what else the caller should know) appended.
pub(crate) fn timed_out(config: &SmbConfig, what: &'static str, path: &str, note: &str) -> StorageError {
    StorageError::new(
        ErrorKind::Connectivity,
        what,
        path,
        format!(
            "no answer from {} within {} s, the time limit of each SMB operation{note} \
             (server down, frozen or unreachable)",
            config.display(),
            config.timeout.as_secs_f64()
        ),
    )
    .with_retryable(true)
    .with_remediation(&SMB)
}

impl Inner {
    /// A classified error for a failed call on `path`, with probes where one
    /// errno covers two situations.
    pub(crate) fn error(&self, what: &'static str, path: &str, e: SmbError) -> StorageError {
        self.error_with(what, path, e, "")
    }

    /// [`Inner::error`] with `note` (what else the caller should know) in the text.
    pub(crate) fn error_with(&self, what: &'static str, path: &str, e: SmbError, note: &str) -> StorageError {
        // The path as the caller named it (relative to the target); the share is in `Display`.
        let shown = path.to_owned();
        let io = match e {
            SmbError::Io(io) => io,
            other => {
                return StorageError::new(ErrorKind::Other, what, shown, other.to_string()).with_source(other);
            }
        };
        let kind = classify_io(&io);
        // libsmbclient reports a server name it cannot resolve as EINVAL (or
        // ENOENT, or a connection error, by version): look the name up
        // ourselves before classifying. Only after a failure, never before
        // connecting: libsmbclient also resolves NetBIOS names, which the
        // system's resolver may not.
        // A missing file on a share that answers is the common case: look
        // the name up only when the share's root cannot be found either.
        let suspect = match kind {
            ErrorKind::Other => true,
            ErrorKind::Connectivity => io.kind() != std::io::ErrorKind::TimedOut,
            ErrorKind::PathNotFound => self
                .probe_root()
                .is_some_and(|root| classify_io(&root) == ErrorKind::PathNotFound),
            _ => false,
        };
        if let Some(lookup) = suspect
            .then(|| unresolvable(&self.config.host, self.config.port))
            .flatten()
        {
            return StorageError::new(
                ErrorKind::PathNotFound,
                what,
                shown,
                format!(
                    "the file server name {:?} cannot be resolved ({lookup}), so the file share path {} \
                     cannot be resolved",
                    self.config.host,
                    self.config.display()
                ),
            )
            .with_source(io)
            .with_retryable(is_temporary(&lookup))
            .with_remediation(&SMB);
        }
        let detail = match kind {
            ErrorKind::PathNotFound => match self.probe_root() {
                Some(root) if classify_io(&root) == ErrorKind::PathNotFound => format!(
                    "the share {:?} does not exist on {} (check the share name)",
                    self.config.share, self.config.host
                ),
                _ => format!("no such file or folder on the share ({io})"),
            },
            ErrorKind::Authentication => match self.probe_root() {
                Some(root) if classify_io(&root) == ErrorKind::Authentication => format!(
                    "the server refused the login of {} (check user name, domain and password)",
                    self.config.credentials.account()
                ),
                _ => format!(
                    "{} can log in but is not allowed to do this here (check the share and folder permissions): {io}",
                    self.config.credentials.account()
                ),
            },
            ErrorKind::OutOfCapacity => format!("the share is full ({io})"),
            // libsmbclient's own timeout (set to ours) fired: name the limit.
            ErrorKind::Connectivity if io.kind() == std::io::ErrorKind::TimedOut => format!(
                "no answer from {} within {} s, the time limit of each SMB operation, as libsmbclient \
                 applies it ({io}{note})",
                self.config.display(),
                self.config.timeout.as_secs_f64().max(1.0)
            ),
            ErrorKind::Connectivity => format!("cannot reach {} ({io}{note})", self.config.display()),
            _ => io.to_string(),
        };
        let retryable = matches!(kind, ErrorKind::Connectivity | ErrorKind::Other);
        StorageError::new(kind, what, shown, detail)
            .with_source(io)
            .with_retryable(retryable)
            .with_remediation(&SMB)
    }

    /// The error of a stat of the share's root, if it fails.
    fn probe_root(&self) -> Option<std::io::Error> {
        let client = self.client.lock().ok()?.clone()?;
        match client.stat("/") {
            Ok(_) => None,
            Err(SmbError::Io(io)) => Some(io),
            Err(_) => None,
        }
    }
}

/// The resolver's error when `host` does not resolve to any address (an IP
/// address always does; IPv6 may come in brackets).
pub(crate) fn unresolvable(host: &str, port: u16) -> Option<std::io::Error> {
    use std::net::ToSocketAddrs;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match (bare, port).to_socket_addrs() {
        Ok(addrs) if addrs.len() > 0 => None,
        Ok(_) => Some(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name has no address",
        )),
        Err(e) => Some(e),
    }
}

/// Whether a lookup failure may pass by itself (`EAI_AGAIN`: the resolver
/// did not answer), so that trying again can help. std gives the resolver's
/// text only.
fn is_temporary(lookup: &std::io::Error) -> bool {
    lookup.to_string().contains("Temporary failure")
}

/// pavao reports a failed opendir as `BadFileDescriptor`; the errno is still
/// this thread's last OS error right after the call.
pub(crate) fn with_errno(e: SmbError) -> SmbError {
    match e {
        SmbError::BadFileDescriptor => SmbError::Io(std::io::Error::last_os_error()),
        other => other,
    }
}

pub(crate) fn is_not_found(e: &SmbError) -> bool {
    matches!(e, SmbError::Io(io) if classify_io(io) == ErrorKind::PathNotFound)
}

pub(crate) fn is_exists(e: &SmbError) -> bool {
    matches!(e, SmbError::Io(io) if io.kind() == std::io::ErrorKind::AlreadyExists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SmbCredentials;

    #[test]
    fn an_unreachable_share_names_port_445_and_a_missing_one_the_share() {
        let config = SmbConfig::new("fs", "backups", SmbCredentials::new("", "u", "p"));
        let err = timed_out(&config, "cannot list", "a", "");
        assert_eq!(err.kind(), ErrorKind::Connectivity);
        assert!(err.alert().remediation.contains("port 445"), "{:?}", err.alert());
        let missing = StorageError::new(ErrorKind::PathNotFound, "cannot stat", "a", "gone").with_remediation(&SMB);
        assert!(missing.alert().remediation.contains("share"));
    }
}
