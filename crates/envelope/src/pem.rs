//! PEM armour (RFC 7468) and the base64 under it, written here rather than
//! taken from a crate: certificates and signing keys need only a few lines of
//! it, and key material must pass through buffers this crate zeroizes.

use zeroize::Zeroizing;

/// Why a PEM text did not give the one block asked for. Carries labels only,
/// never any of the block's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PemError {
    /// No `-----BEGIN …-----` line at all.
    NotPem,
    /// No block with the label asked for; the labels of the blocks found.
    Missing { found: Vec<String> },
    /// Several blocks with the label asked for.
    Several(usize),
    /// A `BEGIN` line without its `END` line.
    NoEnd,
    /// A `BEGIN` line whose label is not printable upper-case text.
    BadLabel,
    /// The block's body is not base64.
    BadBase64,
}

const BEGIN: &[u8] = b"-----BEGIN ";
const DASHES: &[u8] = b"-----";
/// Longer than any label in use (`ENCRYPTED PRIVATE KEY`, `OPENSSH PRIVATE KEY`).
const MAX_LABEL: usize = 64;

/// The one block labelled `label` in `text`, decoded. Text around the block
/// (comments, OpenSSL's "Bag Attributes") and a UTF-8 byte-order mark are
/// ignored; blocks with other labels are ignored too, and named in the error
/// when the one asked for is missing. The decoded bytes (and the base64 they
/// came from) live only in buffers zeroized on drop.
pub(crate) fn decode_one(text: &[u8], label: &str) -> Result<Zeroizing<Vec<u8>>, PemError> {
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let mut found = Vec::new();
    let mut wanted = Vec::new();
    let mut rest = text;
    while let Some(at) = find(rest, BEGIN) {
        let after_begin = &rest[at + BEGIN.len()..];
        let label_len = find(after_begin, DASHES).ok_or(PemError::BadLabel)?;
        let this = &after_begin[..label_len];
        if this.len() > MAX_LABEL
            || !this
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' ')
        {
            return Err(PemError::BadLabel);
        }
        let body_start = &after_begin[label_len + DASHES.len()..];
        let mut end_line = Vec::with_capacity(this.len() + 19);
        end_line.extend_from_slice(b"-----END ");
        end_line.extend_from_slice(this);
        end_line.extend_from_slice(DASHES);
        let body_len = find(body_start, &end_line).ok_or(PemError::NoEnd)?;
        let this = String::from_utf8_lossy(this).into_owned();
        if this == label {
            wanted.push(&body_start[..body_len]);
        }
        found.push(this);
        rest = &body_start[body_len + end_line.len()..];
    }
    match wanted.len() {
        1 => {}
        0 if found.is_empty() => return Err(PemError::NotPem),
        0 => return Err(PemError::Missing { found }),
        n => return Err(PemError::Several(n)),
    }
    let body = wanted[0];
    // Sized up front so the base64 (itself the secret, encoded) is never
    // reallocated, which would leave a copy behind in freed memory.
    let mut compact = Zeroizing::new(Vec::with_capacity(body.len()));
    compact.extend(body.iter().copied().filter(|b| !b.is_ascii_whitespace()));
    base64_decode(&compact).map(Zeroizing::new).ok_or(PemError::BadBase64)
}

/// Appends `der` as a PEM block to `out`, exactly as OpenSSL writes it:
/// 64-character lines, `\n` line endings, a final newline. `out` is reserved
/// to its final size first, so a zeroizing caller's buffer never reallocates.
pub(crate) fn encode_into(label: &str, der: &[u8], out: &mut String) {
    let b64_len = der.len().div_ceil(3) * 4;
    let lines = b64_len.div_ceil(64);
    out.reserve(2 * (label.len() + 16) + b64_len + lines);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut column = 0;
    base64_encode(der, |c| {
        out.push(c);
        column += 1;
        if column == 64 {
            out.push('\n');
            column = 0;
        }
    });
    if column != 0 {
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, one character at a time (so the caller
/// chooses where the text goes).
fn base64_encode(input: &[u8], mut emit: impl FnMut(char)) {
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let acc = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                emit(char::from(ALPHABET[((acc >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                emit('=');
            }
        }
    }
}

/// Standard base64 with padding; `None` on any invalid input.
pub(crate) fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if !input.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let quads = input.len() / 4;
    for (i, quad) in input.chunks_exact(4).enumerate() {
        let pad = quad.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != quads) {
            return None;
        }
        let mut acc = 0u32;
        for &c in &quad[..4 - pad] {
            acc = (acc << 6) | value(c)?;
        }
        acc <<= 6 * pad as u32;
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(bytes: &[u8]) -> String {
        let mut s = String::new();
        base64_encode(bytes, |c| s.push(c));
        s
    }

    #[test]
    fn base64_known_answers() {
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert_eq!(base64_decode(b"Zg==").unwrap(), b"f");
        assert_eq!(base64_decode(b"Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode(b"Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode(b"Zm9vYmFy").unwrap(), b"foobar");
        assert!(base64_decode(b"Zm9").is_none());
        assert!(base64_decode(b"Z===").is_none());
        assert!(base64_decode(b"Zg==Zg==").is_none());
        assert!(base64_decode(b"Zm9*").is_none());
        for (plain, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), b64);
        }
    }

    #[test]
    fn base64_round_trips_every_length() {
        let data: Vec<u8> = (0..=255u8).collect();
        for n in 0..data.len() {
            assert_eq!(base64_decode(encode(&data[..n]).as_bytes()).unwrap(), &data[..n]);
        }
    }

    #[test]
    fn encode_wraps_at_64_like_openssl() {
        let mut out = String::new();
        encode_into("X", &[0u8; 49], &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "-----BEGIN X-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2], "AA==");
        assert_eq!(lines[3], "-----END X-----");
        assert!(out.ends_with("-----\n"));
        let mut exact = String::new();
        encode_into("X", &[0u8; 48], &mut exact);
        assert_eq!(exact.lines().count(), 3, "a full last line gets no empty line after it");
    }

    #[test]
    fn decode_one_finds_its_label_among_others() {
        let text = b"\xef\xbb\xbfcomment\r\n-----BEGIN PUBLIC KEY-----\r\nZm9v\r\n-----END PUBLIC KEY-----\r\n\
                     -----BEGIN PRIVATE KEY-----\nZm9v\nYmFy\n-----END PRIVATE KEY-----\n";
        assert_eq!(&**decode_one(text, "PRIVATE KEY").unwrap(), b"foobar");
        assert_eq!(&**decode_one(text, "PUBLIC KEY").unwrap(), b"foo");
        assert_eq!(
            decode_one(text, "CERTIFICATE"),
            Err(PemError::Missing {
                found: vec!["PUBLIC KEY".into(), "PRIVATE KEY".into()]
            })
        );
    }

    #[test]
    fn decode_one_refuses_malformed_text() {
        let cases: [(&[u8], PemError); 6] = [
            (b"", PemError::NotPem),
            (b"Zm9v", PemError::NotPem),
            (b"-----BEGIN A-----\nZm9v\n", PemError::NoEnd),
            (b"-----BEGIN A-----\nZm9v\n-----END B-----\n", PemError::NoEnd),
            (b"-----BEGIN a-----\nZm9v\n-----END a-----\n", PemError::BadLabel),
            (b"-----BEGIN A-----\nZm9\n-----END A-----\n", PemError::BadBase64),
        ];
        for (text, want) in cases {
            assert_eq!(decode_one(text, "A"), Err(want), "{}", String::from_utf8_lossy(text));
        }
        let two = b"-----BEGIN A-----\nZm9v\n-----END A-----\n-----BEGIN A-----\nZm9v\n-----END A-----\n";
        assert_eq!(decode_one(two, "A"), Err(PemError::Several(2)));
        assert_eq!(decode_one(b"-----BEGIN ", "A"), Err(PemError::BadLabel));
    }
}
