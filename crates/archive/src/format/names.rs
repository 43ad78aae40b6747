//! The rules for names: source names and entry paths, as writers check
//! them and restores re-check them.

use crate::{Error, Result};

/// Longest source name.
pub const MAX_SOURCE_LEN: usize = 64;
/// Longest entry path.
pub const MAX_PATH_LEN: usize = 4096;
/// Largest entry mode: the permission bits `0o777` with sticky, setgid and setuid.
pub const MAX_MODE: u32 = 0o7777;

/// A source name: 1–64 bytes of ASCII letters, digits, `.`, `_` and `-`, not `.` or `..`.
pub fn check_source_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SOURCE_LEN
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "source name {name:?} must be 1-{MAX_SOURCE_LEN} ASCII letters, digits, '.', '_' or '-'"
        )))
    }
}

/// An entry path: relative, `/`-separated, 1–4096 bytes, no empty, `.` or `..`
/// segment, no backslash, NUL or other control character.
pub fn check_entry_path(path: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Usage(format!("entry path {path:?} {why}")));
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return bad("must be 1-4096 bytes");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("contains a control character or backslash");
    }
    if path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("must be relative with no empty, '.' or '..' segment");
    }
    Ok(())
}
