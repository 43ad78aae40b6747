//! Who connects to the share: domain, user and password, from the caller,
//! the environment or an smbclient authentication file.

use std::fmt;

use ibs_storage::{ErrorKind, Result, StorageError};
use zeroize::Zeroizing;

use crate::error::SMB;

/// What every caller says when an SMB location is given no credentials:
/// one rule for every operation. A user name and a password are needed; the
/// domain is optional (`DOMAIN\\user` and `user@domain` set it too).
pub const CREDENTIALS_NEEDED: &str = "an SMB location needs a user name and a password (IBS_SMB_USERNAME and \
    IBS_SMB_PASSWORD, or a credentials file with `username =` and `password =` lines); a domain is optional \
    (IBS_SMB_DOMAIN, `domain =`, or DOMAIN\\user as the user name)";

/// Domain, user and password for the share. The password is zeroized on drop
/// and never shown by `Debug`.
#[derive(Clone)]
pub struct SmbCredentials {
    pub(crate) domain: String,
    pub(crate) user: String,
    pub(crate) password: Zeroizing<String>,
}

impl SmbCredentials {
    /// Credentials of `domain\user` (the domain may be empty).
    pub fn new(domain: impl Into<String>, user: impl Into<String>, password: impl Into<String>) -> Self {
        SmbCredentials {
            domain: domain.into(),
            user: user.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    /// The credentials in the environment, as `ibs` reads them:
    /// `IBS_SMB_USERNAME` and `IBS_SMB_PASSWORD` (both needed), and
    /// `IBS_SMB_DOMAIN` (empty when unset). `None` when either of the first
    /// two is unset or not UTF-8: the caller decides whether that is an error
    /// (for a local directory it is not).
    pub fn from_env() -> Option<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`SmbCredentials::from_env`] with the variables looked up by `var`.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let user = var("IBS_SMB_USERNAME")?;
        let password = Zeroizing::new(var("IBS_SMB_PASSWORD")?);
        Some(SmbCredentials {
            domain: var("IBS_SMB_DOMAIN").unwrap_or_default(),
            user,
            password,
        })
    }

    /// Parses the smbclient authentication-file format operators already use:
    /// `username = …`, `password = …`, `domain = …` lines (`#` comments). A
    /// `DOMAIN\user` or `user@domain` user name also sets the domain.
    pub fn from_auth_file(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            StorageError::new(ErrorKind::Authentication, "cannot read credentials", "", why).with_remediation(&SMB)
        };
        let (mut domain, mut user, mut password) = (String::new(), None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad("expected `key = value` lines (username, password, domain)"))?;
            match k.trim() {
                "username" | "user" => user = Some(v.trim().to_owned()),
                "password" => password = Some(Zeroizing::new(v.trim().to_owned())),
                "domain" | "workgroup" => domain = v.trim().to_owned(),
                _ => {}
            }
        }
        let mut user = user.ok_or_else(|| bad("no `username =` line"))?;
        if let Some((d, u)) = user.clone().split_once('\\') {
            domain = d.to_owned();
            user = u.to_owned();
        } else if let Some((u, d)) = user.clone().split_once('@') {
            domain = d.to_owned();
            user = u.to_owned();
        }
        let password = password.ok_or_else(|| bad("no `password =` line"))?;
        Ok(SmbCredentials { domain, user, password })
    }

    /// The user name (with the domain, when there is one).
    pub fn account(&self) -> String {
        if self.domain.is_empty() {
            self.user.clone()
        } else {
            format!("{}\\{}", self.domain, self.user)
        }
    }
}

impl fmt::Debug for SmbCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmbCredentials({}, password: <redacted>)", self.account())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_needs_user_and_password_and_the_domain_may_be_unset() {
        let vars = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| set.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
        };
        let c = SmbCredentials::from_vars(vars(&[
            ("IBS_SMB_USERNAME", "svc"),
            ("IBS_SMB_PASSWORD", "pw"),
            ("IBS_SMB_DOMAIN", "CONTOSO"),
        ]))
        .unwrap();
        assert_eq!(c.account(), "CONTOSO\\svc");
        assert_eq!(c.password.as_str(), "pw");
        let c = SmbCredentials::from_vars(vars(&[("IBS_SMB_USERNAME", "svc"), ("IBS_SMB_PASSWORD", "pw")])).unwrap();
        assert_eq!(c.account(), "svc");
        assert!(SmbCredentials::from_vars(vars(&[("IBS_SMB_USERNAME", "svc")])).is_none());
        assert!(SmbCredentials::from_vars(vars(&[("IBS_SMB_PASSWORD", "pw")])).is_none());
        assert!(!format!("{c:?}").contains("pw"));
    }
}
