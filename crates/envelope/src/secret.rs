//! Secret values: zeroized on drop, never shown by `Debug`.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A password for a `.pfx` file.
///
/// Zeroized on drop; `Debug` prints `Password(<redacted>)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Password(String);

impl Password {
    /// Wraps a password as typed: nothing is trimmed (a password file's
    /// line ending is: [`Password::from_file_contents`]).
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// Reads a password file: the first line, without its line ending.
    ///
    /// An empty file gives the empty password. A UTF-8 byte-order mark is ignored.
    pub fn from_file_contents(contents: &[u8]) -> crate::Result<Self> {
        let contents = Zeroizing::new(contents.to_vec());
        let text = std::str::from_utf8(&contents).map_err(|_| crate::Error::InvalidPfx {
            reason: "the password file is not UTF-8 text".into(),
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let line = text.split('\n').next().unwrap_or("");
        let line = line.strip_suffix('\r').unwrap_or(line);
        Ok(Password(line.to_owned()))
    }

    /// The password text, for handing to a PKCS#12 implementation.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Password::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let p = Password::new("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn password_file_first_line_without_line_ending() {
        for (bytes, want) in [
            (&b"secret\n"[..], "secret"),
            (b"secret\r\nsecond", "secret"),
            (b"\xef\xbb\xbfp\xc3\xa4ss", "p\u{e4}ss"),
            (b"", ""),
            (b"with space \n", "with space "),
        ] {
            assert_eq!(Password::from_file_contents(bytes).unwrap().expose(), want);
        }
        assert!(Password::from_file_contents(b"\xff\xfe").is_err());
    }
}
