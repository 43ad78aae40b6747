//! Locations and object paths: where a target is, and the paths inside it.
//!
//! ```
//! use ibs_storage::{Location, ObjectPath};
//!
//! let loc = Location::parse(r"\\fileserver01.contoso.com\AzSBackups\lab").unwrap();
//! assert_eq!(loc.to_string(), r"\\fileserver01.contoso.com\AzSBackups\lab");
//! let p = ObjectPath::parse("azurestack.contoso.com/westus").unwrap();
//! assert_eq!(p.child("MASBackup").unwrap().as_str(), "azurestack.contoso.com/westus/MASBackup");
//! assert!(p.child("../x").is_err());
//! ```

use std::fmt;
use std::path::PathBuf;

use crate::{ErrorKind, Result, StorageError};

/// A `/`-separated path of an object or folder, relative to a location's root.
///
/// Every segment is non-empty, is not `.` or `..`, and contains no `/`, `\`,
/// NUL or control characters, so a path can never escape the location.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjectPath(String);

impl ObjectPath {
    /// The root of the location (the empty path).
    pub fn root() -> Self {
        ObjectPath(String::new())
    }

    /// Parses a `/`-separated path, checking every segment.
    pub fn parse(path: &str) -> Result<Self> {
        let mut out = ObjectPath::root();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            out = out.child(segment)?;
        }
        Ok(out)
    }

    /// This path with one more segment.
    pub fn child(&self, segment: &str) -> Result<Self> {
        check_segment(segment)?;
        Ok(if self.0.is_empty() {
            ObjectPath(segment.to_owned())
        } else {
            ObjectPath(format!("{}/{segment}", self.0))
        })
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, outermost first (none for the root).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment, if any.
    pub fn name(&self) -> Option<&str> {
        self.segments().last()
    }

    /// The path without its last segment.
    pub fn parent(&self) -> Option<ObjectPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => ObjectPath(self.0[..i].to_owned()),
            None => ObjectPath::root(),
        })
    }

    /// Whether `self` is `prefix` or lies under it.
    pub fn starts_with(&self, prefix: &ObjectPath) -> bool {
        prefix.0.is_empty()
            || self.0 == prefix.0
            || (self.0.starts_with(&prefix.0) && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("/")
        } else {
            f.write_str(&self.0)
        }
    }
}

fn check_segment(segment: &str) -> Result<()> {
    let bad = |why: &str| Err(StorageError::invalid_input("invalid path segment", segment, why));
    if segment.is_empty() {
        return bad("empty segment");
    }
    if segment == "." || segment == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if segment.len() > 255 {
        return bad("longer than 255 bytes");
    }
    if segment.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return bad("contains '/', '\\' or a control character");
    }
    Ok(())
}

/// Where backups are exported: an SMB share, a local directory, or an object
/// store's container or bucket, as [`Location::parse`] reads an operator's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An SMB share, from a UNC path or an `smb://` URL.
    Smb {
        /// Server host name or IP address.
        host: String,
        /// TCP port, when not the default 445.
        port: Option<u16>,
        /// Share name.
        share: String,
        /// Folder inside the share (may be the root).
        path: ObjectPath,
    },
    /// A local directory.
    Local(PathBuf),
    /// A container (Azure Blob) or bucket (S3), from `az://container/prefix`
    /// or `s3://bucket/prefix`; served by the `ibs-storage-object` crate.
    Object {
        /// Which service.
        provider: ObjectProvider,
        /// Container or bucket name.
        container: String,
        /// Prefix inside it (may be the root).
        path: ObjectPath,
    },
}

/// The object-store services a [`Location::Object`] can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectProvider {
    /// Azure Blob storage (`az://`).
    Azure,
    /// Amazon S3 or an S3-compatible service (`s3://`).
    S3,
}

impl ObjectProvider {
    /// The URL scheme: `az` or `s3`.
    pub fn scheme(self) -> &'static str {
        match self {
            ObjectProvider::Azure => "az",
            ObjectProvider::S3 => "s3",
        }
    }
}

/// Parses `container[/prefix…]` after an `az://` or `s3://` scheme.
fn parse_object(provider: ObjectProvider, rest: &str, fail: impl Fn(String) -> StorageError) -> Result<Location> {
    let mut segments = rest.split('/').filter(|s| !s.is_empty());
    let what = match provider {
        ObjectProvider::Azure => "container",
        ObjectProvider::S3 => "bucket",
    };
    let container = segments.next().ok_or_else(|| {
        fail(format!(
            "no {what} name: expected {}://{what}/prefix",
            provider.scheme()
        ))
    })?;
    let valid_chars = container.chars().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (c == '.' && provider == ObjectProvider::S3)
    });
    if !(3..=63).contains(&container.len())
        || !valid_chars
        || !container.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !container.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(fail(format!(
            "'{container}' is not a valid {what} name (3-63 lower-case letters, digits and hyphens)"
        )));
    }
    let mut path = ObjectPath::root();
    for segment in segments {
        path = path.child(segment).map_err(|e| fail(e.to_string()))?;
    }
    Ok(Location::Object {
        provider,
        container: container.to_owned(),
        path,
    })
}

/// Why a location with `user@` or `user:password@` in it is refused.
const NO_CREDENTIALS: &str = "a location cannot carry credentials (`user@` or `user:password@`): \
     it is shown in messages and logs. Remove them and pass them separately: SMB credentials come \
     from --credentials-file (smbclient's format) or the IBS_SMB_USERNAME / IBS_SMB_PASSWORD / \
     IBS_SMB_DOMAIN environment (`SmbCredentials` for library callers); Azure and S3 keys from \
     the AZURE_STORAGE_* / AWS_* environment";

/// Where userinfo (`user@`, `user:password@`) ends in `rest`, the text after a
/// location's scheme or leading `\\` (with `/` separators): the last `@` in
/// the first segment (server or container), or in the second one (share, or
/// what a password with a `/` in it spills into) when `second` says to look
/// there too. `None` when there is none.
fn userinfo_end(rest: &str, second: bool) -> Option<usize> {
    let first_end = rest.find('/').unwrap_or(rest.len());
    if !plain_authority(&rest[..first_end]) {
        // `user:pa/ss/word@host`: a password may hold any number of '/'.
        // The text is no location anyway; hide up to its last '@'.
        return rest.rfind('@');
    }
    let mut region = first_end;
    if second {
        // The share is the next segment that is not empty (`\\host\\share`
        // has an empty one before it, which parsing skips too).
        let after = &rest[first_end..];
        let start = after.find(|c| c != '/').unwrap_or(after.len());
        region += start + after[start..].find('/').unwrap_or(after.len() - start);
    }
    rest[..region].rfind('@')
}

/// Whether `first`, a location's first segment, has a shape a server part
/// can take: `host`, `host:port`, `[v6]` or `[v6]:port` (a port all digits).
/// Anything else with a ':' may be `user:password` cut short by a '/'.
fn plain_authority(first: &str) -> bool {
    let port = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(v6) = first.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((_, "")) => true,
            Some((_, after)) => after.strip_prefix(':').is_some_and(port),
            None => false,
        };
    }
    first.split_once(':').is_none_or(|(_, p)| port(p))
}

/// `text` with everything from `start` up to and including the `@` at `at`
/// replaced, so an error can name the location without its credentials.
fn without_userinfo(text: &str, start: usize, at: usize) -> String {
    format!("{}<credentials removed>{}", &text[..start], &text[start + at..])
}

impl Location {
    /// Parses `\\host\share[\sub…]`, `//host/share[/sub…]`,
    /// `smb://host[:port]/share[/sub…]`, `az://container[/prefix…]`,
    /// `s3://bucket[/prefix…]`, or a local path.
    ///
    /// A location never carries credentials: an `@` in the server part or the
    /// share name (`smb://user:password@host/share`, `\\user@host\share`,
    /// `az://key@container`) is refused, and the error names the location
    /// with that part removed — neither the user nor the password is repeated.
    /// Credentials are given separately ([`ErrorKind::PathNotFound`], like
    /// every malformed location).
    pub fn parse(text: &str) -> Result<Self> {
        let text_trimmed = text.trim();
        // Before anything echoes the text: refuse (and hide) credentials.
        let leading = text.len() - text.trim_start().len();
        let scheme_end = text_trimmed.find("://").map(|i| i + 3);
        let unc = text_trimmed.starts_with(r"\\") || text_trimmed.starts_with("//");
        let remote = if unc { Some(2) } else { scheme_end };
        if let Some(start) = remote {
            let rest = text_trimmed[start..].replace('\\', "/");
            let scheme = text_trimmed[..start].to_ascii_lowercase();
            // SMB: the server, then the share; elsewhere only the first
            // segment, unless it has a ':' (never valid there: a password split by '/').
            let second = unc || scheme == "smb://" || rest.split('/').next().is_some_and(|s| s.contains(':'));
            if let Some(at) = userinfo_end(&rest, second) {
                return Err(StorageError::new(
                    ErrorKind::PathNotFound,
                    "invalid storage location",
                    without_userinfo(text, leading + start, at),
                    NO_CREDENTIALS,
                ));
            }
        }
        let fail = |why: String| StorageError::new(ErrorKind::PathNotFound, "invalid storage location", text, why);
        if text_trimmed.is_empty() {
            return Err(fail("the location is empty".into()));
        }
        let (rest, from_url) = if let Some(rest) = text_trimmed.strip_prefix(r"\\") {
            (rest.replace('\\', "/"), false)
        } else if let Some(rest) = text_trimmed.strip_prefix("//") {
            (rest.to_owned(), false)
        } else if let Some(rest) = strip_prefix_ignore_case(text_trimmed, "smb://") {
            (rest.to_owned(), true)
        } else if let Some(rest) = strip_prefix_ignore_case(text_trimmed, "az://") {
            return parse_object(ObjectProvider::Azure, rest, fail);
        } else if let Some(rest) = strip_prefix_ignore_case(text_trimmed, "s3://") {
            return parse_object(ObjectProvider::S3, rest, fail);
        } else if text_trimmed.contains("://") {
            return Err(fail(
                "unsupported scheme: use a UNC path (\\\\server\\share), smb://server/share, \
                 az://container/prefix, s3://bucket/prefix, or a local path"
                    .into(),
            ));
        } else {
            return Ok(Location::Local(PathBuf::from(text_trimmed)));
        };
        let mut parts = rest.splitn(2, '/');
        let authority = parts.next().unwrap_or_default();
        let tail = parts.next().unwrap_or_default();
        // What follows a ':' in the server part is not repeated in an error:
        // it is a port, or (mistyped) a password, which may go on past a '/':
        // nothing after the ':' is shown.
        let authority_at = leading + if from_url { "smb://".len() } else { 2 };
        let hide_port = |why: String| {
            let shown = match authority.rsplit_once(':') {
                Some((host, _)) => format!("{}{host}:<hidden>", &text[..authority_at]),
                None => text.to_owned(),
            };
            StorageError::new(ErrorKind::PathNotFound, "invalid storage location", shown, why)
        };
        let (host, port) = if from_url {
            split_host_port(authority).map_err(hide_port)?
        } else if authority.contains(':') {
            return Err(hide_port(
                "a UNC path cannot name a port: use smb://server:port/share".into(),
            ));
        } else {
            (authority, None)
        };
        if host.is_empty() {
            return Err(fail("no server name".into()));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(fail(format!("'{host}' is not a valid server name")));
        }
        let mut segments = tail.split('/').filter(|s| !s.is_empty());
        let share = segments
            .next()
            .ok_or_else(|| fail("no share name: expected \\\\server\\share".into()))?;
        // ('\\' too: the `//server/share` form keeps backslashes, and a share
        // name cannot hold one.)
        if share.chars().any(|c| "\"*+,:;<=>?[]|\\".contains(c) || c.is_control()) || share.len() > 80 {
            return Err(fail(format!("'{share}' is not a valid share name")));
        }
        let mut path = ObjectPath::root();
        for segment in segments {
            path = path.child(segment).map_err(|e| fail(e.to_string()))?;
        }
        Ok(Location::Smb {
            host: host.to_owned(),
            port,
            share: share.to_owned(),
            path,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> std::result::Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in the server address")?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or("unexpected text after ']'")?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) => return Err("port 0 is not valid".into()),
            Ok(n) => Some(n),
            Err(_) => return Err("the port after ':' is not a number from 1 to 65535".into()),
        },
    };
    Ok((host, port))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Smb {
                host,
                port,
                share,
                path,
            } => {
                // A UNC path names no port and no IPv6 address (its ':' would
                // read as one): those print as smb:// URLs.
                let sep = if port.is_none() && !host.contains(':') {
                    write!(f, r"\\{host}\{share}")?;
                    '\\'
                } else {
                    if host.contains(':') {
                        write!(f, "smb://[{host}]")?;
                    } else {
                        write!(f, "smb://{host}")?;
                    }
                    if let Some(port) = port {
                        write!(f, ":{port}")?;
                    }
                    write!(f, "/{share}")?;
                    '/'
                };
                for s in path.segments() {
                    write!(f, "{sep}{s}")?;
                }
                trailing_separator(f, path.name().unwrap_or(share), sep)
            }
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Object {
                provider,
                container,
                path,
            } => {
                write!(f, "{}://{container}", provider.scheme())?;
                for s in path.segments() {
                    write!(f, "/{s}")?;
                }
                trailing_separator(f, path.name().unwrap_or(container), '/')
            }
        }
    }
}

/// Ends a printed location whose last name ends in white space with a
/// separator, which parsing ignores, so that the white space is not taken
/// for padding around the text and trimmed.
fn trailing_separator(f: &mut fmt::Formatter<'_>, last: &str, sep: char) -> fmt::Result {
    if last.ends_with(char::is_whitespace) {
        write!(f, "{sep}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smb(host: &str, port: Option<u16>, share: &str, path: &str) -> Location {
        Location::Smb {
            host: host.into(),
            port,
            share: share.into(),
            path: ObjectPath::parse(path).unwrap(),
        }
    }

    #[test]
    fn parses_unc_smb_url_and_local() {
        assert_eq!(
            Location::parse(r"\\fileserver01.contoso.com\AzSBackups").unwrap(),
            smb("fileserver01.contoso.com", None, "AzSBackups", "")
        );
        assert_eq!(
            Location::parse(r"\\fs\share\a\b\").unwrap(),
            smb("fs", None, "share", "a/b")
        );
        assert_eq!(Location::parse("//fs/share/a").unwrap(), smb("fs", None, "share", "a"));
        assert_eq!(
            Location::parse("smb://127.0.0.1:4455/share/x/y").unwrap(),
            smb("127.0.0.1", Some(4455), "share", "x/y")
        );
        assert_eq!(
            Location::parse("SMB://host/share").unwrap(),
            smb("host", None, "share", "")
        );
        assert_eq!(
            Location::parse("smb://[::1]:445/s").unwrap(),
            smb("::1", Some(445), "s", "")
        );
        assert_eq!(
            Location::parse("/var/backups").unwrap(),
            Location::Local("/var/backups".into())
        );
        assert_eq!(
            Location::parse("relative/dir").unwrap(),
            Location::Local("relative/dir".into())
        );
    }

    #[test]
    fn object_store_locations() {
        assert_eq!(
            Location::parse("az://backups/lab/east").unwrap(),
            Location::Object {
                provider: ObjectProvider::Azure,
                container: "backups".into(),
                path: ObjectPath::parse("lab/east").unwrap(),
            }
        );
        assert_eq!(
            Location::parse("S3://bucket-1/").unwrap(),
            Location::Object {
                provider: ObjectProvider::S3,
                container: "bucket-1".into(),
                path: ObjectPath::root(),
            }
        );
    }

    #[test]
    fn malformed_locations_say_what_is_wrong() {
        for (text, needle) in [
            ("", "empty"),
            (r"\\", "no server"),
            (r"\\server", "no share"),
            (r"\\server\", "no share"),
            ("smb://host", "no share"),
            ("smb://host:99999/share", "port"),
            ("smb://host:0/share", "port 0"),
            (r"\\host:445\share", "cannot name a port"),
            (r"\\bad host\share", "server name"),
            (r"\\host\sh*re", "share name"),
            (r"\\host\share\..\x", "not allowed"),
            ("https://example/x", "unsupported scheme"),
            ("az://", "no container"),
            ("s3://", "no bucket"),
            ("az://UPPER/x", "not a valid container"),
            ("az://ab/x", "not a valid container"),
            ("az://my.container/x", "not a valid container"),
            ("s3://-bucket", "not a valid bucket"),
            ("az://backups/../x", "not allowed"),
        ] {
            let err = Location::parse(text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
            assert_eq!(err.kind(), ErrorKind::PathNotFound);
        }
    }

    #[test]
    fn credentials_in_a_location_are_refused_and_never_repeated() {
        for (text, shown) in [
            (
                "smb://alice:S3cret@127.0.0.1/share",
                "smb://<credentials removed>@127.0.0.1/share",
            ),
            ("smb://alice@fs/share/x", "smb://<credentials removed>@fs/share/x"),
            (
                "SMB://alice:S3cret@[::1]:445/share",
                "SMB://<credentials removed>@[::1]:445/share",
            ),
            ("smb://alice:S3/cret@fs/share", "smb://<credentials removed>@fs/share"),
            (r"\\alice:S3cret@fs\share", r"\\<credentials removed>@fs\share"),
            (r"\\CONTOSO;alice@fs\share\x", r"\\<credentials removed>@fs\share\x"),
            ("//alice:S3cret@fs/share", "//<credentials removed>@fs/share"),
            ("az://alice:S3cret@backups/x", "az://<credentials removed>@backups/x"),
            ("az://S3cret@backups", "az://<credentials removed>@backups"),
            ("s3://alice:S3/cret@bucket/x", "s3://<credentials removed>@bucket/x"),
            // Found by the property tests: a password with two '/', and a
            // share after an empty segment.
            ("smb://alice:S3/cr/et@fs/share", "smb://<credentials removed>@fs/share"),
            (r"\\fs\\alice:S3cret@x", r"\\<credentials removed>@x"),
            (
                "https://alice:S3cret@example/x",
                "https://<credentials removed>@example/x",
            ),
            (
                "  smb://alice:S3cret@fs/share",
                "  smb://<credentials removed>@fs/share",
            ),
        ] {
            let err = Location::parse(text).unwrap_err();
            let msg = err.to_string();
            let debug = format!("{err:?}");
            for secret in ["alice", "S3cret", "S3/cret", "CONTOSO"] {
                assert!(
                    !msg.contains(secret) && !debug.contains(secret),
                    "{text:?}: {msg} / {debug}"
                );
            }
            assert!(msg.contains(shown), "{text:?}: {msg}");
            assert!(
                msg.contains("cannot carry credentials") && msg.contains("--credentials-file"),
                "{msg}"
            );
            assert!(msg.contains("IBS_SMB_"), "{msg}");
            assert_eq!(err.kind(), ErrorKind::PathNotFound);
        }
        // A mistyped `smb://user:password/share` (no '@'): the "port" is not repeated.
        for text in ["smb://fs:S3cret/share", r"\\fs:S3cret\share"] {
            let err = Location::parse(text).unwrap_err();
            let (msg, debug) = (err.to_string(), format!("{err:?}"));
            assert!(!msg.contains("S3cret") && !debug.contains("S3cret"), "{msg} / {debug}");
            assert!(msg.contains("fs:<hidden>"), "{msg}");
        }
        // An '@' deeper in the path is a folder name, not credentials.
        assert_eq!(
            Location::parse("smb://fs/share/team@lab").unwrap(),
            smb("fs", None, "share", "team@lab")
        );
        assert!(Location::parse("az://backups/team@lab").is_ok());
        assert!(matches!(Location::parse("./a@b").unwrap(), Location::Local(_)));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            r"\\fs.contoso.com\AzSBackups\lab",
            "smb://127.0.0.1:4455/share/x",
            "az://backups/lab/x",
            "s3://my.bucket",
            // Found by the property tests: an IPv6 server (no UNC form), and
            // a last name ending in white space (kept by a separator).
            "smb://[::1]/share",
            "smb://[fe80::1]:4455/share/x",
            r"\\fs\share \",
            "az://backups/lab /",
        ] {
            let loc = Location::parse(text).unwrap();
            assert_eq!(loc.to_string(), text);
            assert_eq!(Location::parse(&loc.to_string()).unwrap(), loc);
        }
    }

    #[test]
    fn object_paths_cannot_escape() {
        for bad in ["..", "a/../b", "a/./b", "a\\b", "a/b\0", "x/\u{7}"] {
            assert!(ObjectPath::parse(bad).is_err(), "{bad:?}");
        }
        let p = ObjectPath::parse("/a//b/c/").unwrap();
        assert_eq!(p.as_str(), "a/b/c");
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(p.name(), Some("c"));
        assert!(p.starts_with(&ObjectPath::parse("a/b").unwrap()));
        assert!(
            !ObjectPath::parse("a/bc")
                .unwrap()
                .starts_with(&ObjectPath::parse("a/b").unwrap())
        );
        assert!(p.starts_with(&ObjectPath::root()));
    }
}
