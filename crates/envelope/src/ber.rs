//! Reading BER-encoded PKCS#12 files (as Firefox/NSS writes them).
//!
//! NSS encodes a `.pfx` with indefinite lengths and chunked (constructed)
//! OCTET STRINGs, both inside the outer structure and inside the MAC-protected
//! `authSafe` content. `p12-keystore` reads DER only, so for such a file we:
//!
//! 1. verify the MAC ourselves, over the `authSafe` octets exactly as stored
//!    (RFC 7292 §5: the PKCS#12 KDF, then HMAC), which is the password check;
//! 2. re-encode the file as DER (definite lengths, primitive OCTET STRINGs,
//!    nested BER inside OCTET STRINGs re-encoded too) without the MAC, and hand
//!    that to `p12-keystore`.
//!
//! Parsing is bounded in depth and never panics.

use hmac::{KeyInit, Mac};
use pkcs12::kdf::{Pkcs12KeyType, derive_key_utf8};

use crate::{Error, Password, Result};

const MAX_DEPTH: usize = 48;

#[derive(Debug)]
enum Node<'a> {
    Prim { tag: &'a [u8], data: Vec<u8> },
    Cons { tag: &'a [u8], children: Vec<Node<'a>> },
}

fn invalid(reason: &str) -> Error {
    Error::InvalidPfx {
        reason: format!("BER decoding failed: {reason}"),
    }
}

/// Parses one BER element; returns it and the bytes after it.
fn parse(input: &[u8], depth: usize) -> Result<(Node<'_>, &[u8])> {
    if depth > MAX_DEPTH {
        return Err(invalid("nested too deeply"));
    }
    let first = *input.first().ok_or_else(|| invalid("unexpected end of data"))?;
    let mut pos = 1;
    if first & 0x1f == 0x1f {
        loop {
            let b = *input.get(pos).ok_or_else(|| invalid("unexpected end in tag"))?;
            pos += 1;
            if b & 0x80 == 0 {
                break;
            }
            if pos > 6 {
                return Err(invalid("tag too long"));
            }
        }
    }
    let tag = &input[..pos];
    let constructed = first & 0x20 != 0;
    let len_byte = *input.get(pos).ok_or_else(|| invalid("unexpected end in length"))?;
    pos += 1;
    if len_byte == 0x80 {
        if !constructed {
            return Err(invalid("indefinite length on a primitive element"));
        }
        let mut rest = &input[pos..];
        let mut children = Vec::new();
        loop {
            if rest.len() >= 2 && rest[0] == 0 && rest[1] == 0 {
                return Ok((Node::Cons { tag, children }, &rest[2..]));
            }
            if rest.is_empty() {
                return Err(invalid("missing end-of-contents"));
            }
            let (child, r) = parse(rest, depth + 1)?;
            children.push(child);
            rest = r;
        }
    }
    let len = if len_byte & 0x80 == 0 {
        usize::from(len_byte)
    } else {
        let n = usize::from(len_byte & 0x7f);
        if n > 4 {
            return Err(invalid("length too large"));
        }
        let bytes = input
            .get(pos..pos + n)
            .ok_or_else(|| invalid("unexpected end in length"))?;
        pos += n;
        bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let end = pos.checked_add(len).ok_or_else(|| invalid("length overflow"))?;
    let content = input
        .get(pos..end)
        .ok_or_else(|| invalid("element longer than the data"))?;
    let node = if constructed {
        let mut children = Vec::new();
        let mut rest = content;
        while !rest.is_empty() {
            let (child, r) = parse(rest, depth + 1)?;
            children.push(child);
            rest = r;
        }
        Node::Cons { tag, children }
    } else {
        Node::Prim {
            tag,
            data: content.to_vec(),
        }
    };
    Ok((node, &input[end..]))
}

/// The concatenated octets of a (possibly constructed) OCTET STRING.
fn octets(node: &Node<'_>, out: &mut Vec<u8>) {
    match node {
        Node::Prim { data, .. } => out.extend_from_slice(data),
        Node::Cons { children, .. } => children.iter().for_each(|c| octets(c, out)),
    }
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn emit(out: &mut Vec<u8>, tag: &[u8], content: &[u8]) {
    out.extend_from_slice(tag);
    push_len(out, content.len());
    out.extend_from_slice(content);
}

/// Re-encodes as DER. `implicit_octets` marks a `[0]` that is an IMPLICIT
/// OCTET STRING (the third field of an EncryptedContentInfo).
fn to_der(node: &Node<'_>, implicit_octets: bool, depth: usize, out: &mut Vec<u8>) -> Result<()> {
    match node {
        Node::Prim { tag, data } => {
            if tag == &[0x04] && data.len() >= 2 && data[0] == 0x30 && data[1] == 0x80 {
                // Nested BER inside an OCTET STRING (authSafe, SafeContents).
                if let Ok((inner, [])) = parse(data, depth + 1) {
                    let mut der = Vec::new();
                    to_der(&inner, false, depth + 1, &mut der)?;
                    emit(out, tag, &der);
                    return Ok(());
                }
            }
            emit(out, tag, data);
        }
        Node::Cons { tag, children } => {
            if tag == &[0x24] || (implicit_octets && tag == &[0xa0]) {
                let mut data = Vec::new();
                octets(node, &mut data);
                if tag == &[0x24] {
                    return to_der(&Node::Prim { tag: &[0x04], data }, false, depth, out);
                }
                emit(out, &[0x80], &data);
                return Ok(());
            }
            // EncryptedContentInfo ::= SEQUENCE { contentType OID, algorithm SEQUENCE, [0] IMPLICIT OCTET STRING }
            let encrypted_content_info = tag == &[0x30]
                && children.len() == 3
                && matches!(&children[0], Node::Prim { tag: [0x06], .. })
                && matches!(&children[1], Node::Cons { tag: [0x30], .. });
            let mut content = Vec::new();
            for (i, child) in children.iter().enumerate() {
                to_der(child, encrypted_content_info && i == 2, depth + 1, &mut content)?;
            }
            emit(out, tag, &content);
        }
    }
    Ok(())
}

fn children<'n, 'a>(node: &'n Node<'a>) -> &'n [Node<'a>] {
    match node {
        Node::Cons { children, .. } => children,
        Node::Prim { .. } => &[],
    }
}

fn prim<'n>(node: Option<&'n Node<'_>>, want: u8) -> Result<&'n [u8]> {
    match node {
        Some(Node::Prim { tag, data }) if tag == &[want] => Ok(data),
        _ => Err(invalid("unexpected structure")),
    }
}

/// Re-encodes one whole BER value as DER — indefinite lengths made
/// definite, constructed strings joined — with no PFX structure or MAC
/// around it: the converter alone (what the `ber_to_der` fuzz target runs).
pub(crate) fn to_der_all(input: &[u8]) -> Result<Vec<u8>> {
    let (root, rest) = parse(input, 0)?;
    if !rest.is_empty() {
        return Err(invalid("data follows the value"));
    }
    let mut out = Vec::new();
    to_der(&root, false, 0, &mut out)?;
    Ok(out)
}

/// Whether a PFX uses BER constructs that a DER reader refuses.
pub(crate) fn is_ber(pfx: &[u8]) -> bool {
    pfx.len() >= 2 && pfx[0] == 0x30 && pfx[1] == 0x80
}

/// Verifies the MAC of a BER PFX and returns the file re-encoded as DER, without its MAC.
pub(crate) fn normalize_pfx(pfx: &[u8], password: &Password) -> Result<Vec<u8>> {
    let (root, rest) = parse(pfx, 0)?;
    if !rest.is_empty() {
        return Err(invalid("data follows the PFX"));
    }
    let fields = children(&root);
    let auth_safe = fields.get(1).ok_or_else(|| invalid("no authSafe"))?;
    // ContentInfo { contentType, [0] EXPLICIT OCTET STRING }
    let explicit = children(auth_safe)
        .get(1)
        .ok_or_else(|| invalid("authSafe has no content"))?;
    let octet_string = children(explicit)
        .first()
        .ok_or_else(|| invalid("authSafe content is empty"))?;
    let mut signed = Vec::new();
    octets(octet_string, &mut signed);
    // Without a MAC, decryption is the password check.
    if let Some(mac_data) = fields.get(2) {
        verify_mac(mac_data, password, &signed)?;
    }
    let mut der = Vec::new();
    let mut content = Vec::new();
    for field in fields.iter().take(2) {
        to_der(field, false, 1, &mut content)?;
    }
    emit(&mut der, &[0x30], &content);
    Ok(der)
}

fn verify_mac(mac_data: &Node<'_>, password: &Password, signed: &[u8]) -> Result<()> {
    let f = children(mac_data);
    let digest_info = children(f.first().ok_or_else(|| invalid("empty macData"))?);
    let algorithm = children(digest_info.first().ok_or_else(|| invalid("empty DigestInfo"))?);
    let oid = prim(algorithm.first(), 0x06)?;
    let expected = prim(digest_info.get(1), 0x04)?;
    let salt = prim(f.get(1), 0x04)?;
    let iterations = match f.get(2) {
        Some(node) => {
            let bytes = prim(Some(node), 0x02)?;
            if bytes.is_empty() || bytes.len() > 4 || bytes[0] & 0x80 != 0 {
                return Err(invalid("bad MAC iteration count"));
            }
            bytes.iter().fold(0i32, |acc, b| (acc << 8) | i32::from(*b))
        }
        None => 1,
    };
    if !(1..=10_000_000).contains(&iterations) {
        return Err(invalid("MAC iteration count out of range"));
    }
    const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    let computed = match oid {
        SHA1 => hmac_pkcs12::<sha1::Sha1, hmac::Hmac<sha1::Sha1>>(password, salt, iterations, 20, signed)?,
        SHA256 => hmac_pkcs12::<sha2::Sha256, hmac::Hmac<sha2::Sha256>>(password, salt, iterations, 32, signed)?,
        _ => {
            return Err(Error::InvalidPfx {
                reason: "unsupported MAC digest in a BER-encoded PFX".into(),
            });
        }
    };
    let diff = computed.len() ^ expected.len();
    let bytes_diff = computed.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff == 0 && bytes_diff == 0 {
        Ok(())
    } else {
        Err(Error::WrongPassword)
    }
}

fn hmac_pkcs12<D, M>(password: &Password, salt: &[u8], iterations: i32, len: usize, data: &[u8]) -> Result<Vec<u8>>
where
    D: sha2::Digest + sha2::digest::FixedOutputReset + sha2::digest::block_api::BlockSizeUser,
    M: Mac + KeyInit,
{
    let key = zeroize::Zeroizing::new(
        derive_key_utf8::<D>(password.expose(), salt, Pkcs12KeyType::Mac, iterations, len).map_err(|e| {
            Error::InvalidPfx {
                reason: format!("password cannot be encoded: {e}"),
            }
        })?,
    );
    let mut mac = <M as KeyInit>::new_from_slice(&key).map_err(|_| invalid("bad MAC key"))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}
