//! Where and how to connect: the share, its folder, time limit and encryption.

use std::time::Duration;

use ibs_storage::{ErrorKind, Location, ObjectPath, Result, StorageError};

use crate::SmbCredentials;

/// Whether to ask for SMB encryption (see the [crate docs](crate#encryption)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// Ask for it; fall back to unencrypted transport if the server does not offer it.
    #[default]
    Request,
    /// Do not ask.
    Off,
}

/// Where and how an [`SmbTarget`](crate::SmbTarget) connects: server, port,
/// share and base folder, credentials, timeout, encryption.
#[derive(Clone, Debug)]
pub struct SmbConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) share: String,
    pub(crate) base: ObjectPath,
    pub(crate) credentials: SmbCredentials,
    pub(crate) timeout: Duration,
    pub(crate) encryption: Encryption,
    pub(crate) write_chunk: usize,
}

impl SmbConfig {
    /// A share on `host` (port 445), at the share's root.
    pub fn new(host: impl Into<String>, share: impl Into<String>, credentials: SmbCredentials) -> Self {
        SmbConfig {
            host: host.into(),
            port: 445,
            share: share.into(),
            base: ObjectPath::root(),
            credentials,
            timeout: Duration::from_secs(30),
            encryption: Encryption::Request,
            write_chunk: 4 << 20,
        }
    }

    /// From a parsed [`Location::Smb`].
    pub fn from_location(location: &Location, credentials: SmbCredentials) -> Result<Self> {
        match location {
            Location::Smb {
                host,
                port,
                share,
                path,
            } => Ok(SmbConfig::new(host.clone(), share.clone(), credentials)
                .port(port.unwrap_or(445))
                .base(path.clone())),
            other => Err(StorageError::new(
                ErrorKind::InvalidInput,
                "not an SMB location",
                other.to_string(),
                "expected \\\\host\\share or smb://host/share",
            )),
        }
    }

    /// TCP port (default 445).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Folder inside the share that is this target's root.
    pub fn base(mut self, base: ObjectPath) -> Self {
        self.base = base;
        self
    }

    /// Time limit of each call (default 30 s); see the
    /// [crate docs](crate#time-limits) for exactly what it bounds. Also set as
    /// libsmbclient's own timeout (at least 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Encryption preference (default: request).
    pub fn encryption(mut self, encryption: Encryption) -> Self {
        self.encryption = encryption;
        self
    }

    /// Bytes sent per write call of an upload (default 4 MiB).
    pub fn write_chunk(mut self, bytes: usize) -> Self {
        self.write_chunk = bytes.max(64 << 10);
        self
    }

    pub(crate) fn display(&self) -> String {
        let base = if self.base.is_root() {
            String::new()
        } else {
            format!("\\{}", self.base.as_str().replace('/', "\\"))
        };
        let port = if self.port == 445 {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        format!("\\\\{}{port}\\{}{base}", self.host, self.share)
    }
}
