//! How a run ends: one error reporter for every verb (text or JSON on
//! stderr, with the failure's kind, class, alert and remediation), and the
//! exit codes.
//!
//! Exit codes: 0 success (warnings allowed), 1 failure — or, for `status`
//! and `check`, something needs attention —, 2 usage error.

use std::fmt::Write as _;

use ibs_storage::{Alert, ErrorKind, StorageError};
use serde_json::{Value, json};

/// What kind of failure ended the run: each has its own wording, and only a
/// storage failure shows a storage alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The command line is wrong (exit 2).
    Usage,
    /// The storage location failed: the alert says which of its failure
    /// classes and what to do.
    Storage,
    /// A backup source could not be read.
    Source,
    /// A key, certificate or password could not be used, or none opens the backup.
    Key,
    /// The backup is damaged, incomplete or not signed by a trusted signer.
    Backup,
    /// A local file or folder (keys, the restore folder) could not be used.
    Local,
    /// Anything else.
    Other,
}

impl Kind {
    /// The name in `--json` errors.
    fn name(self) -> &'static str {
        match self {
            Kind::Usage => "usage",
            Kind::Storage => "storage",
            Kind::Source => "source",
            Kind::Key => "key",
            Kind::Backup => "backup",
            Kind::Local => "local",
            Kind::Other => "other",
        }
    }
}

/// A failure to report.
#[derive(Debug)]
pub struct Failure {
    /// Its kind.
    pub kind: Kind,
    /// What happened (one or more lines).
    pub message: String,
    /// The operator alert, for failures that have one (storage, source).
    pub alert: Option<Alert>,
}

/// A usage error (exit 2).
pub fn usage(msg: impl Into<String>) -> Failure {
    Failure::new(Kind::Usage, msg)
}

impl Failure {
    /// A failure of `kind` saying `message`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            alert: None,
        }
    }

    /// A local file that could not be read or written.
    pub fn local(action: &str, path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Failure::new(Kind::Local, format!("{action} {}: {e}", path.display()))
    }

    /// The same failure, with `more` after its message (on the next line).
    pub fn hint(mut self, more: impl std::fmt::Display) -> Self {
        let _ = write!(self.message, "\n{more}");
        self
    }

    /// The exit code.
    pub fn exit_code(&self) -> u8 {
        if self.kind == Kind::Usage { 2 } else { 1 }
    }

    /// The `--json` document for stderr.
    pub fn to_json(&self) -> Value {
        let mut error = json!({
            "kind": self.kind.name(),
            "message": self.message,
        });
        if let Some(alert) = &self.alert {
            error["class"] = json!(class_name(alert.kind));
            error["alert"] = alert_json(alert);
        }
        json!({ "error": error })
    }

    /// The text for stderr.
    pub fn to_text(&self) -> String {
        let mut text = format!("ibs: {}", self.message);
        if let Some(alert) = &self.alert {
            let _ = write!(
                text,
                "\nalert: {}: {}\nremediation: {}",
                alert.title, alert.description, alert.remediation
            );
        }
        text
    }
}

/// A storage failure class's name in `--json` output.
pub fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::OutOfCapacity => "out_of_capacity",
        ErrorKind::Connectivity => "connectivity",
        ErrorKind::PathNotFound => "path_not_found",
        ErrorKind::Authentication => "authentication",
        ErrorKind::AlreadyExists => "already_exists",
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::PermissionDenied => "permission_denied",
        _ => "other",
    }
}

/// An alert as `--json` shows it.
pub fn alert_json(alert: &Alert) -> Value {
    json!({
        "class": class_name(alert.kind),
        "title": alert.title,
        "description": alert.description,
        "remediation": alert.remediation,
    })
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        let alert = e.alert();
        let kind = if e.kind() == ErrorKind::InvalidInput {
            Kind::Usage
        } else {
            Kind::Storage
        };
        Failure {
            kind,
            message: e.to_string(),
            alert: (kind == Kind::Storage).then_some(alert),
        }
    }
}

impl From<ibs_controller::ControllerError> for Failure {
    fn from(e: ibs_controller::ControllerError) -> Self {
        use ibs_controller::ControllerError as E;
        let kind = match &e {
            E::Source { .. } => Kind::Source,
            E::InvalidSetting { .. } => Kind::Usage,
            _ if e.kind() != ErrorKind::Other => Kind::Storage,
            _ => Kind::Other,
        };
        let alert = e.alert();
        Failure {
            kind,
            message: e.to_string(),
            // A source failure has its own alert (never a storage one); a
            // usage error none.
            alert: (kind != Kind::Usage).then_some(alert),
        }
    }
}

impl From<ibs_recovery::RecoveryError> for Failure {
    fn from(e: ibs_recovery::RecoveryError) -> Self {
        use ibs_recovery::RecoveryError as E;
        let message = e.to_string();
        match e {
            E::Storage(s) => Failure::from(s),
            E::Repository(ibs_repository::RepositoryError::Storage(s)) => Failure::from(s),
            E::Usage(_) => Failure::new(Kind::Usage, message),
            E::Archive { ref source, .. } => {
                let kind = match source.kind() {
                    ibs_archive::ErrorKind::Key => Kind::Key,
                    ibs_archive::ErrorKind::Malformed
                    | ibs_archive::ErrorKind::Damaged
                    | ibs_archive::ErrorKind::Untrusted => Kind::Backup,
                    _ => Kind::Other,
                };
                Failure::new(kind, message)
            }
            E::Exists(path) => Failure::new(
                Kind::Local,
                format!(
                    "{} already exists: restore into an empty folder, or add --overwrite to replace existing files",
                    // Its name comes from the backup: escaped, as every name a backup holds.
                    ibs_archive::escape_bytes(path.as_os_str().as_encoded_bytes())
                ),
            ),
            E::Io { .. } | E::UnsafePath { .. } | E::DestinationNotAFolder { .. } => Failure::new(Kind::Local, message),
            _ if e.is_damage() => Failure::new(Kind::Backup, message),
            E::NoRestorable { .. } | E::NotFound { .. } | E::NoBackups { .. } | E::VersionRule { .. } => {
                Failure::new(Kind::Backup, message)
            }
            _ => Failure::new(Kind::Other, message),
        }
    }
}

impl From<ibs_envelope::Error> for Failure {
    fn from(e: ibs_envelope::Error) -> Self {
        Failure::new(Kind::Key, e.to_string())
    }
}

/// Prints `failure` on stderr, as JSON or text.
pub fn print_failure(failure: &Failure, json: bool) {
    if json {
        eprintln!("{}", failure.to_json());
    } else {
        eprintln!("{}", failure.to_text());
    }
}
