#!/usr/bin/env python3
"""An independent reader of the ibs archive format, versions 1 and 2, written
from FORMAT.md alone.

Needs only Python 3, `cryptography` and `zstandard`:

    python3 read_archive.py ARCHIVE PRIVATE_KEY.pem [--cert CERT] [--dump DIR]
        [--format json|lines] [--trust-signer PUB.pem ...] [--allow-unsigned]
        [--no-owner] [--manifest FILE]

Checks everything the spec says a reader must check (header MAC, key
commitment, every chunk tag, the index or the root and every index piece,
every entry's SHA-256; for version 2 also entry order, the tree rule, hard
link targets, sparse extents and the signature), then prints a summary.

Output, version 1 (unchanged): JSON (the default), or with `--format lines`
one tab-separated record per line (`field<TAB>value`,
`label<TAB>key<TAB>value`, `recipient<TAB>thumbprint`,
`frame<TAB>N<TAB>stored|zstd`,
`entry<TAB>source<TAB>path<TAB>size<TAB>sha256<TAB>offset<TAB>mode<TAB>mtime`
with `-` for an absent mode or mtime), for scripts. Version 1 entry names
cannot hold a tab or a line break (FORMAT.md section 7), so the records are
unambiguous.

Output, version 2: the JSON summary has, besides the version 1 fields
(`frames` counts data frames, `frame_encodings` is per data frame),
`version` (2), `signer` (the signer's fingerprint, 64 hex digits, or null),
`sources` (every source of the source table, in order, also those without
entries) and `pieces` (the number of index pieces). Each entry has `source`,
`kind` (file | folder | symlink | hardlink), `path` (the escaped display form
of section 14.5: printable UTF-8 as is, `\\\\`, `\\n`, `\\t`, `\\r`, and
`\\xNN` with lower-case hex for every other byte of a control character
or of invalid UTF-8 -- a C1 control U+0080-U+009F is shown as its two UTF-8
bytes, so the escapes always decode back to the exact bytes), `path_hex`
(the raw bytes), `mode`, `uid`, `gid`, `user`, `group` (escaped; "" when
stored empty, i.e. unknown), `mtime` (seconds, negative before 1970),
`mtime_ns` (the nanoseconds within that second, 0-999 999 999, as stored),
`size`, `sha256` and `offset` (its stream offset) for files, `extents`
(list of [offset, length] for a sparse file, else null), `target` (escaped)
and `target_hex` for links, and `xattrs` (list of {name, name_hex,
value_hex}, or null). A field the entry does not carry is null.

With `--format lines`, version 2 prints the fields `version`, `archive_id`,
`created`, `producer_version`, `frame_size`, `frames`, `data_length`,
`pieces`, `signer` (`-` if unsigned); then `label`, `recipient`, `frame`
records as for version 1; `source<TAB>name` per source in table order; and per
entry

    entry<TAB>source<TAB>path<TAB>size<TAB>sha256<TAB>offset<TAB>mode<TAB>mtime
         <TAB>kind<TAB>mtime_ns<TAB>uid<TAB>gid<TAB>user<TAB>group<TAB>extents<TAB>target

(one line; the first seven columns are version 1's), then one
`xattr<TAB>source<TAB>path<TAB>name<TAB>value-hex` record per extended
attribute. Names (paths, targets, user, group, xattr names) are printed in
the escaped form above, so no record holds a raw tab or line break; `mode`
is decimal as in version 1; `extents` is `offset+length` pairs joined by
`,` (empty for a sparse file of holes only); `-` marks a field the entry
does not carry (use JSON where a user or group literally named `-` matters).

With --cert (the recipient's certificate, DER or PEM) the reader picks the
stanza whose SHA-256 fingerprint matches it (section 4); without, it tries
every stanza.

Signatures (section 14.7): a signed archive's signature is always verified
(strictly: canonical S, no small-order public key or R), before any key is
used. With one or more `--trust-signer PUB.pem` (Ed25519 SubjectPublicKeyInfo
PEM, as `openssl pkey -pubout` writes it) the reader refuses an archive that
is unsigned (a version 1 archive only with `--allow-unsigned`: those predate
signatures; an unsigned version 2 archive always), or signed by a key not
trusted, naming the fingerprint found.

With --manifest FILE the reader checks a backup manifest (section 13.3)
against the archive: its syntax, `id` (shape; and equal to the folder's name
when FILE is named `backup.manifest`), `archive-id`, `archive-size`,
`archive-sha256`, `created` and `producer-version` against the header, and
the `recipient` lines, in order, against the header's stanzas.

With --dump DIR, version 1: writes each entry's plaintext to
DIR/<source>/<path>, after checking every name against the rules of section
7. Version 2: restores the tree (section 14.5) after the whole archive has
been verified: every source as a folder DIR/<source> (also when empty);
files with holes where they are sparse (extents written at their offsets,
then truncated to the size); folders (mode and times applied after their
contents); symbolic links as links, never followed; hard links as second
names of the earlier file (os.link; their own metadata is the file's, so
none is applied); extended attributes with os.setxattr (a file system that
refuses one makes --dump refuse). Names are used as bytes. Every folder is
opened relative to its parent with O_NOFOLLOW and every name created
exclusively, so nothing is written through a symbolic link or over an
existing name (a source's folder may exist). Modes: the stored 12 bits
(files without one 0600, folders 0700), never wider; setuid and setgid only
when the owners are applied. Times with nanoseconds (atime set to the mtime;
clamped to what os.utime takes, years 1677-2262). Owners (numeric uid/gid,
never the names) only when running as root and without `--no-owner`. The
contents are held in memory (a checking tool, not a restore engine).

Exits 1 if the archive is unreadable (or refused: signer, manifest),
printing on stderr

    unreadable: <what failed>
    stage: inspect | open | verify
    region: header | footer | archive | key | index | frame N | entry
            | root | piece N | signature | manifest

`stage` is the step of reading that failed. Version 1 (section 9):
`inspect` steps 1-2 (header and footer, no key), `open` steps 3-4, `verify`
step 5. Version 2 (section 14.8): `inspect` step 1 (header and footer: the
small keyless reads a catalogue makes), `open` steps 2-4 (signature block,
signature and trusted signers -- keyless, but they need the root's range --,
then file key, commitment, header MAC, root), `verify` step 5 (pieces,
frames, entries); the Rust reader draws the same lines. A refusal for the
signer (also of an unsigned version 1 archive) is at `open`, before any key
is used. The manifest check is keyless and belongs to `inspect` (after the
header and footer). `region` is the part of the archive at fault:
`archive` its length as a whole; `key` no stanza opens with the key given;
`entry` an entry's SHA-256; `index` the version 1 index; `root` the version
2 root (and its agreement with the footer); `piece N` index piece N (from
0, in file order) or an entry in it that breaks a rule (order, tree rule,
hard link target, encoding); `frame N` data frame N (counting data frames
only, from 0, as the root lists them -- not the chunk number); `signature`
the signature block, the signature, or a signer refused; `manifest` a
manifest that does not parse or does not match. Exits 2 if --dump refuses a
name (version 1: breaks the rules of section 7; version 2: exists already or
cannot be created without writing through something that is not a folder).
"""

import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import struct
import sys

import zstandard
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"\x89IBS\r\n\x1a\n"
FOOTER_MAGIC = b"\x89IBSEND\n"
PREFIX_LEN = 14
FOOTER_LEN = 48
MIN_HEADER = 456
MAX_INDEX = 256 << 20
MAX_SEALED_INDEX = MAX_INDEX + 17

# Version 2 (section 14).
FOOTER_MAGIC_V2 = b"\x89IBSEN2\n"
FOOTER_LEN_V2 = 64
MIN_HEADER_V2 = 457
MAX_ROOT = 256 << 20
MAX_SEALED_ROOT = MAX_ROOT + 17
MAX_PIECE = 4 << 20
MAX_SEALED_PIECE = MAX_PIECE + 17
MAX_SOURCES = 1024
MAX_XATTR_BYTES = 65536
PIECE_RECORD_MIN = 8 + 4 + 8 + 32 + 4 + 8 + 2 + 2
SIGNATURE_CONTEXT = b"ibs-archive v2 signature\x00"
SIGNER_CONTEXT = b"ibs-signer-ed25519\x00"
KINDS = ("file", "folder", "symlink", "hardlink")
FILE, FOLDER, SYMLINK, HARDLINK = range(4)
F_MODE, F_OWNER_IDS, F_OWNER_NAMES, F_MTIME, F_SPARSE, F_XATTRS = (1 << i for i in range(6))


class Unreadable(Exception):
    def __init__(self, region, message):
        super().__init__(message)
        self.region = region
        self.stage = None


class Refused(Exception):
    """--dump will not write a name (exit 2)."""


class Cursor:
    def __init__(self, data, region):
        self.data, self.pos, self.region = data, 0, region

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Unreadable(self.region, "field runs past the end at byte %d" % self.pos)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def left(self):
        return len(self.data) - self.pos

    def str16(self, limit):
        n = self.int("H")
        if n > limit:
            raise Unreadable(self.region, "string of %d bytes, limit %d" % (n, limit))
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable(self.region, "string at byte %d is not UTF-8" % self.pos)


def hkdf(key, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def open_chunk(aead, digest, counter, last, sealed, expected, exact, region=None):
    """Returns (encoding, raw bytes) of chunk `counter` (section 6)."""
    if region is None:
        region = "index" if last else "frame %d" % counter
    nonce = b"\0\0\0" + struct.pack(">Q", counter) + (b"\x01" if last else b"\x00")
    try:
        plain = aead.decrypt(nonce, sealed, digest)
    except Exception:
        raise Unreadable(region, "chunk %d failed authentication" % counter)
    if not plain:
        raise Unreadable(region, "empty chunk %d" % counter)
    encoding, payload = plain[0], plain[1:]
    if encoding == 0:
        raw = payload
    elif encoding == 1:
        try:
            params = zstandard.get_frame_parameters(payload)
        except zstandard.ZstdError:
            raise Unreadable(region, "chunk %d: not a zstd frame" % counter)
        if params.content_size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
            raise Unreadable(region, "zstd frame without content size")
        if params.content_size > expected:
            raise Unreadable(region, "chunk %d too large" % counter)
        # Exactly one frame: ZstdDecompressor.decompress() would silently
        # ignore a second frame, a skippable frame or trailing bytes.
        d = zstandard.ZstdDecompressor().decompressobj()
        try:
            raw = d.decompress(payload)
        except zstandard.ZstdError as e:
            raise Unreadable(region, "chunk %d: %s" % (counter, e))
        if not d.eof or d.unused_data:
            raise Unreadable(region, "chunk %d: zstd payload is not exactly one frame" % counter)
    else:
        raise Unreadable(region, "unknown encoding %d" % encoding)
    if (exact and len(raw) != expected) or len(raw) > expected:
        raise Unreadable(region, "chunk %d holds %d bytes, expected %d" % (counter, len(raw), expected))
    return ("stored", "zstd")[encoding], raw


def inspect(data):
    """Keyless steps: header and footer (section 9 steps 1-2; section 14.8 step 1)."""
    # Header (sections 3 and 14.2).
    if data[:8] != MAGIC:
        raise Unreadable("header", "not an ibs archive")
    version = struct.unpack("<H", data[8:10])[0] if len(data) >= 10 else 1
    if version not in (1, 2):
        raise Unreadable("header", "unsupported version %d" % version)
    footer_len = FOOTER_LEN if version == 1 else FOOTER_LEN_V2
    min_header = MIN_HEADER if version == 1 else MIN_HEADER_V2
    if len(data) < PREFIX_LEN + footer_len:
        raise Unreadable("archive", "%d bytes is too short for an archive" % len(data))
    hlen = struct.unpack("<I", data[10:14])[0]
    if not min_header <= hlen <= 1 << 20 or hlen + footer_len > len(data):
        raise Unreadable("header", "bad header length %d" % hlen)
    header = data[:hlen]
    c = Cursor(header[:hlen - 32], "header")
    c.take(PREFIX_LEN)
    h = dict(version=version, hlen=hlen, header=header, signer=None)
    h["archive_id"] = c.take(16)
    h["created"] = c.int("q")
    h["frame_size"] = c.int("I")
    compression, flags = c.int("B"), c.int("B")
    if not 4096 <= h["frame_size"] <= 16 << 20 or compression != 1 or flags != 0:
        raise Unreadable("header", "bad header parameters")
    h["salt"], h["commitment"] = c.take(32), c.take(32)
    h["producer"] = c.str16(256)
    labels = []
    n = c.int("H")
    if n > 64:
        raise Unreadable("header", "too many labels")
    for _ in range(n):
        k = c.str16(64)
        labels.append((k, c.str16(1024)))
    h["labels"] = labels
    r = c.int("H")
    if not 1 <= r <= 32:
        raise Unreadable("header", "bad recipient count")
    stanzas = []
    for _ in range(r):
        sha256, sha1 = c.take(32), c.take(20)
        w = c.int("H")
        if not 256 <= w <= 1024:
            raise Unreadable("header", "bad wrapped key length")
        stanzas.append((sha256, sha1, c.take(w)))
    h["stanzas"] = stanzas
    if version == 2:
        algorithm = c.int("B")
        if algorithm not in (0, 1):
            raise Unreadable("header", "unknown signer algorithm %d" % algorithm)
        if algorithm == 1:
            h["signer"] = c.take(32)
    if c.pos != len(c.data):
        raise Unreadable("header", "bytes after the header fields")
    if version == 2:
        return inspect_footer_v2(data, h)

    # Footer (section 8).
    footer = data[-FOOTER_LEN:]
    index_offset, index_len, frame_count = struct.unpack("<QQQ", footer[:24])
    if footer[40:] != FOOTER_MAGIC:
        raise Unreadable("footer", "no footer magic")
    if not 18 <= index_len <= MAX_SEALED_INDEX:
        raise Unreadable("footer", "bad index length %d" % index_len)
    if index_offset + index_len + FOOTER_LEN != len(data):
        raise Unreadable("archive", "the footer does not fit the archive's length")
    if footer[24:40] != h["archive_id"]:
        raise Unreadable("footer", "footer belongs to another archive")
    if index_offset < hlen:
        raise Unreadable("footer", "index offset inside the header")
    h.update(index_offset=index_offset, index_len=index_len, frame_count=frame_count)
    return h


def inspect_footer_v2(data, h):
    """The 64-byte footer of section 14.8, checked against the header and the length."""
    footer = data[-FOOTER_LEN_V2:]
    root_offset, root_len, sig_len, chunk_count, frame_count = struct.unpack("<QIIQQ", footer[:32])
    if footer[56:] != FOOTER_MAGIC_V2:
        raise Unreadable("footer", "no footer magic")
    # Section 14.8: reserved, 0; a reader must reject another value.
    if footer[48:56] != bytes(8):
        raise Unreadable("footer", "reserved footer bytes are not zero")
    if not 18 <= root_len <= MAX_SEALED_ROOT:
        raise Unreadable("footer", "bad root length %d" % root_len)
    if sig_len not in (1, 65):
        raise Unreadable("footer", "bad signature block length %d" % sig_len)
    if root_offset + root_len + sig_len + FOOTER_LEN_V2 != len(data):
        raise Unreadable("archive", "the footer does not fit the archive's length")
    if footer[32:48] != h["archive_id"]:
        raise Unreadable("footer", "footer belongs to another archive")
    # The block's length follows from the header's signer (section 14.7):
    # checked here, without a key, like the rest of the footer.
    if (sig_len == 65) != (h["signer"] is not None):
        raise Unreadable("signature", "the signature block does not match the header's signer")
    if root_offset < h["hlen"]:
        raise Unreadable("footer", "root offset inside the header")
    if chunk_count < frame_count + 1:
        raise Unreadable("footer", "chunk count %d cannot hold %d data frames and the root"
                         % (chunk_count, frame_count))
    h.update(root_offset=root_offset, root_len=root_len, sig_len=sig_len, chunk_count=chunk_count,
             frame_count=frame_count, footer=footer)
    return h


# Ed25519 arithmetic, only to reject what strict verification rejects and
# OpenSSL's verification (behind `cryptography`) may accept: a public key or
# R of small order, and non-canonical point encodings (section 14.7).
ED_P = 2 ** 255 - 19
ED_L = 2 ** 252 + 27742317777372353535851937790883648493
ED_D = -121665 * pow(121666, ED_P - 2, ED_P) % ED_P
ED_SQRT_M1 = pow(2, (ED_P - 1) // 4, ED_P)


def ed_decode(b):
    """The point (x, y) encoded by 32 bytes, or None if not a canonical encoding of one."""
    y = int.from_bytes(b, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= ED_P:
        return None
    x2 = (y * y - 1) * pow(ED_D * y * y + 1, ED_P - 2, ED_P) % ED_P
    if x2 == 0:
        return None if sign else (0, y)
    x = pow(x2, (ED_P + 3) // 8, ED_P)
    if (x * x - x2) % ED_P:
        x = x * ED_SQRT_M1 % ED_P
    if (x * x - x2) % ED_P:
        return None
    if x & 1 != sign:
        x = ED_P - x
    return (x, y)


def ed_small_order(point):
    def add(a, b):
        t = ED_D * a[0] * b[0] * a[1] * b[1] % ED_P
        return ((a[0] * b[1] + a[1] * b[0]) * pow(1 + t, ED_P - 2, ED_P) % ED_P,
                (a[1] * b[1] + a[0] * b[0]) * pow(1 - t, ED_P - 2, ED_P) % ED_P)
    for _ in range(3):
        point = add(point, point)
    return point == (0, 1)


def fingerprint(public_key):
    return hashlib.sha256(SIGNER_CONTEXT + public_key).hexdigest()


def check_signature(data, h, trusted, allow_unsigned):
    """Section 14.8 step 2 (keyless): the signature block, the signature, trust."""
    if h["version"] == 2:
        at = h["root_offset"] + h["root_len"]
        block = data[at:at + h["sig_len"]]
        want = 1 if h["signer"] is None else 65
        if len(block) != want or block[0] != (0 if h["signer"] is None else 1):
            raise Unreadable("signature", "the signature block disagrees with the header's signer")
        if h["signer"] is not None:
            pub, sig = h["signer"], block[1:]
            fp = fingerprint(pub)
            root = data[h["root_offset"]:at]
            message = (SIGNATURE_CONTEXT + hashlib.sha256(h["header"]).digest()
                       + hashlib.sha256(root).digest() + h["footer"][:48])
            a, r = ed_decode(pub), ed_decode(sig[:32])
            good = (a is not None and not ed_small_order(a) and r is not None and not ed_small_order(r)
                    and int.from_bytes(sig[32:], "little") < ED_L)
            if good:
                try:
                    Ed25519PublicKey.from_public_bytes(pub).verify(sig, message)
                except (InvalidSignature, ValueError):
                    good = False
            if not good:
                raise Unreadable("signature", "the signature of signer %s does not verify" % fp)
    if trusted:
        if h["signer"] is None:
            # --allow-unsigned is for version 1 archives, made before
            # signatures existed; anyone with the certificate can write an
            # unsigned version 2 one.
            if not (allow_unsigned and h["version"] == 1):
                raise Unreadable("signature", "the archive (version %d) is unsigned%s; trusted signers: "
                                 % (h["version"], " (--allow-unsigned accepts version 1 archives only)"
                                    if allow_unsigned else "")
                                 + ", ".join(sorted(fingerprint(k) for k in trusted)))
        elif h["signer"] not in trusted:
            raise Unreadable("signature", "signed by %s, which is not a trusted signer"
                             % fingerprint(h["signer"]))


def unwrap(h, private_key, certificate):
    """Section 4 and 5: the file key, commitment and header MAC; returns (aead, digest)."""
    # File key (section 4): the first stanza for our certificate, or, without
    # one, the first stanza that opens with our key.
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    stanzas = h["stanzas"]
    if certificate is not None:
        fingerprint = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
        candidates = [s for s in stanzas if s[0] == fingerprint][:1]
    else:
        candidates = stanzas
    if not candidates:
        raise Unreadable("key", "no stanza for this certificate; needed thumbprints: "
                         + ", ".join(s[1].hex().upper() for s in stanzas))
    file_key = None
    for sha256, sha1, wrapped in candidates:
        try:
            file_key = private_key.decrypt(wrapped, oaep)
            break
        except Exception:
            continue  # not our stanza (a certificate-less reader tries each one)
    if file_key is None and certificate is None:
        raise Unreadable("key", "no stanza opens with this key; needed thumbprints: "
                         + ", ".join(s[1].hex().upper() for s in stanzas))
    if file_key is None or len(file_key) != 32:
        raise Unreadable("header", "our stanza does not open: damaged or tampered with")

    # Keys, commitment and MAC (section 5).
    salt, header = h["salt"], h["header"]
    payload_key = hkdf(file_key, salt, b"ibs-envelope/v1 payload")
    if not hmac.compare_digest(hkdf(file_key, salt, b"ibs-envelope/v1 commitment"), h["commitment"]):
        raise Unreadable("header", "key commitment mismatch")
    mac_key = hkdf(file_key, salt, b"ibs-archive/v1 header mac")
    if not hmac.compare_digest(hmac.new(mac_key, header[:-32], hashlib.sha256).digest(), header[-32:]):
        raise Unreadable("header", "header MAC mismatch")
    return AESGCM(payload_key), hashlib.sha256(header).digest()


def open_archive(data, h, private_key, certificate):
    """Steps 3-4 of section 9: file key, commitment, header MAC, index."""
    aead, digest = unwrap(h, private_key, certificate)

    # Index (sections 6 and 7).
    frame_size, frame_count, index_offset = h["frame_size"], h["frame_count"], h["index_offset"]
    _, body = open_chunk(aead, digest, frame_count, True, data[index_offset:index_offset + h["index_len"]],
                         MAX_INDEX, False)
    c = Cursor(body, "index")
    total, n_frames = c.int("Q"), c.int("Q")
    if n_frames != -(-total // frame_size) or n_frames != frame_count:
        raise Unreadable("index", "frame count mismatch")
    lens = [c.int("I") for _ in range(n_frames)]
    offsets = [h["hlen"]]
    for i, ln in enumerate(lens):
        raw = min(frame_size, total - i * frame_size)
        if not 18 <= ln <= raw + 17:
            raise Unreadable("index", "impossible frame length")
        offsets.append(offsets[-1] + ln)
    if offsets[-1] != index_offset:
        raise Unreadable("index", "frames do not end at the index")
    entries, seen, pos = [], set(), 0
    for _ in range(c.int("Q")):
        source, path = c.str16(64), c.str16(4096)
        size, sha = c.int("Q"), c.take(32)
        flags, mode, mtime = c.int("B"), c.int("I"), c.int("q")
        if not source or not path or flags & ~3 or (source, path) in seen:
            raise Unreadable("index", "bad entry")
        seen.add((source, path))
        entries.append(dict(source=source, path=path, size=size, sha256=sha.hex(), offset=pos,
                            mode=mode if flags & 1 else None, mtime=mtime if flags & 2 else None))
        pos += size
    if pos != total or c.pos != len(body):
        raise Unreadable("index", "entries do not add up")
    return aead, digest, total, offsets, entries


def verify(data, h, aead, digest, total, offsets, entries):
    """Step 5 of section 9: one pass over the logical stream, checking each entry."""
    frame_size, n_frames = h["frame_size"], len(offsets) - 1
    encodings = []

    def stream():
        for i in range(n_frames):
            encoding, raw = open_chunk(aead, digest, i, False, data[offsets[i]:offsets[i + 1]],
                                       min(frame_size, total - i * frame_size), True)
            encodings.append(encoding)
            yield raw

    frames, buf = stream(), b""
    contents = []
    for e in entries:
        sha, left, parts = hashlib.sha256(), e["size"], []
        while left:
            if not buf:
                buf = next(frames)
            take = buf[:left]
            buf, left = buf[len(take):], left - len(take)
            sha.update(take)
            parts.append(take)
        if sha.hexdigest() != e["sha256"]:
            raise Unreadable("entry", "entry %s/%s: SHA-256 mismatch" % (e["source"], e["path"]))
        contents.append(b"".join(parts))
    for _ in frames:
        pass  # no frame is left over (the index adds up), but open every one
    return encodings, contents


# ---------------------------------------------------------------- version 2


SOURCE_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def source_problem(name):
    """Why `name` (bytes) breaks section 7's source-name rules, or None."""
    if not 1 <= len(name) <= 64 or name in (b".", b"..") or any(b not in SOURCE_CHARS for b in name):
        return "source name %s breaks the rules" % escape(name)
    return None


def path_problem(path):
    """Why `path` (bytes) breaks section 14.5's path rules, or None."""
    if not 1 <= len(path) <= 4096:
        return "path of %d bytes" % len(path)
    if b"\0" in path:
        return "path %s holds a NUL" % escape(path)
    for segment in path.split(b"/"):
        if segment in (b"", b".", b"..") or len(segment) > 255:
            return "path %s has an empty, '.', '..' or over-long segment" % escape(path)
    return None


def escape(name):
    """The display form of a name (section 14.5)."""
    out = []
    for ch in name.decode("utf-8", "surrogateescape"):
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append("\\x%02x" % (o - 0xDC00))  # a byte of invalid UTF-8
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or 0x7F <= o <= 0x9F:
            # Its UTF-8 bytes: a C1 control is two (FORMAT.md leaves open
            # whether \xNN is the code point or the bytes; bytes round-trip).
            out.extend("\\x%02x" % b for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def sort_key(source, path):
    """Section 14.5's order: segment by segment, i.e. '/' compared as 0x00."""
    return (source, path.replace(b"/", b"\0"))


def open_v2(data, h, private_key, certificate):
    """Section 14.8 steps 3-4: file key, commitment, header MAC; the root (section 14.6)."""
    aead, digest = unwrap(h, private_key, certificate)
    frame_size, root_offset = h["frame_size"], h["root_offset"]
    _, body = open_chunk(aead, digest, h["chunk_count"] - 1, True,
                         data[root_offset:root_offset + h["root_len"]], MAX_ROOT, False, "root")
    c = Cursor(body, "root")
    total, n_frames = c.int("Q"), c.int("Q")
    if n_frames != -(-total // frame_size):
        raise Unreadable("root", "%d data frames cannot hold %d bytes" % (n_frames, total))
    if n_frames != h["frame_count"]:
        raise Unreadable("root", "%d data frames, the footer says %d" % (n_frames, h["frame_count"]))
    if 4 * n_frames > c.left():
        raise Unreadable("root", "frame lengths run past the end")
    lens = [c.int("I") for _ in range(n_frames)]
    for k, ln in enumerate(lens):
        if not 18 <= ln <= min(frame_size, total - k * frame_size) + 17:
            raise Unreadable("root", "impossible length %d of data frame %d" % (ln, k))
    n_sources = c.int("H")
    if n_sources > MAX_SOURCES:
        raise Unreadable("root", "%d sources" % n_sources)
    sources = []
    for _ in range(n_sources):
        name = c.take(c.int("B"))
        problem = source_problem(name)
        if problem:
            raise Unreadable("root", problem)
        if c.int("B") != 0:
            raise Unreadable("root", "source %s has flags" % name.decode())
        if name in sources:
            raise Unreadable("root", "source %s appears twice" % name.decode())
        sources.append(name)
    n_entries, n_pieces = c.int("Q"), c.int("I")
    if n_pieces * PIECE_RECORD_MIN > c.left():
        raise Unreadable("root", "piece records run past the end")
    pieces = []
    for p in range(n_pieces):
        offset, sealed_len, before, sha = c.int("Q"), c.int("I"), c.int("Q"), c.take(32)
        count, stream_offset, source = c.int("I"), c.int("Q"), c.int("H")
        path = c.take(c.int("H"))
        if not 18 <= sealed_len <= MAX_SEALED_PIECE:
            raise Unreadable("root", "piece %d: impossible sealed length %d" % (p, sealed_len))
        if count < 1:
            raise Unreadable("root", "piece %d has no entries" % p)
        if source >= n_sources:
            raise Unreadable("root", "piece %d: source index %d out of range" % (p, source))
        problem = path_problem(path)
        if problem:
            raise Unreadable("root", "piece %d: %s" % (p, problem))
        if before > n_frames or (pieces and before < pieces[-1]["before"]):
            raise Unreadable("root", "piece %d: frames before it out of order" % p)
        if stream_offset > total or (pieces and stream_offset < pieces[-1]["stream_offset"]) \
                or (not pieces and stream_offset != 0):
            raise Unreadable("root", "piece %d: stream offset out of order" % p)
        key = sort_key(source, path)
        if pieces and key <= pieces[-1]["key"]:
            raise Unreadable("root", "piece %d: first key not after the previous piece's" % p)
        pieces.append(dict(offset=offset, sealed_len=sealed_len, before=before, sha256=sha, count=count,
                           stream_offset=stream_offset, key=key, source=source, path=path))
    if c.pos != len(body):
        raise Unreadable("root", "bytes after the piece records")
    if sum(p["count"] for p in pieces) != n_entries:
        raise Unreadable("root", "piece entry counts do not sum to %d entries" % n_entries)
    if not pieces and total:
        # Section 14.6 only ties T to the last piece's entries; with no piece
        # at all nothing would: T must then be 0.
        raise Unreadable("root", "%d bytes of data but no entries" % total)
    if h["chunk_count"] != n_frames + n_pieces + 1:
        raise Unreadable("root", "the footer's chunk count is not frames + pieces + 1")

    # The chunks tile the file: before data frame k come the pieces with
    # frames_before == k (so piece p is chunk before(p) + p); the root follows.
    pos, chunk, p = h["hlen"], 0, 0
    frames = []  # (chunk number, offset, sealed length, raw length) per data frame
    for k in range(n_frames + 1):
        while p < n_pieces and pieces[p]["before"] == k:
            if pieces[p]["offset"] != pos:
                raise Unreadable("root", "piece %d is not where its position says" % p)
            pieces[p]["chunk"] = chunk
            pos, chunk, p = pos + pieces[p]["sealed_len"], chunk + 1, p + 1
        if k < n_frames:
            frames.append((chunk, pos, lens[k], min(frame_size, total - k * frame_size)))
            pos, chunk = pos + lens[k], chunk + 1
    if pos != root_offset:
        raise Unreadable("root", "the chunks do not end at the root")
    return aead, digest, dict(total=total, frames=frames, sources=sources, entries=n_entries,
                              pieces=pieces)


def parse_entry(c, n_sources):
    """One entry of an index piece (section 14.4), its names checked (section 14.5)."""
    kind, source = c.int("B"), c.int("H")
    if kind > HARDLINK:
        raise Unreadable(c.region, "unknown entry kind %d" % kind)
    if source >= n_sources:
        raise Unreadable(c.region, "source index %d out of range" % source)
    path = c.take(c.int("H"))
    problem = path_problem(path)
    if problem:
        raise Unreadable(c.region, problem)
    e = dict(kind=kind, source=source, path=path, mode=None, uid=None, gid=None, user=None, group=None,
             mtime=None, mtime_ns=None, size=None, sha256=None, extents=None, target=None, xattrs=None)
    flags = c.int("B")
    if flags & ~0x3F:
        raise Unreadable(c.region, "unknown flags in entry %s" % escape(path))
    if flags & F_SPARSE and kind != FILE:
        raise Unreadable(c.region, "a %s that is sparse: %s" % (KINDS[kind], escape(path)))
    if flags & F_MODE:
        e["mode"] = c.int("H")
        if e["mode"] > 0o7777:
            raise Unreadable(c.region, "mode %o of %s" % (e["mode"], escape(path)))
    if flags & F_OWNER_IDS:
        e["uid"], e["gid"] = c.int("I"), c.int("I")
    if flags & F_OWNER_NAMES:
        e["user"], e["group"] = c.take(c.int("B")), c.take(c.int("B"))
        if b"\0" in e["user"] or b"\0" in e["group"]:
            raise Unreadable(c.region, "owner name with a NUL: %s" % escape(path))
    if flags & F_MTIME:
        e["mtime"], e["mtime_ns"] = c.int("q"), c.int("I")
        if e["mtime_ns"] >= 10 ** 9:
            raise Unreadable(c.region, "nanoseconds out of range: %s" % escape(path))
    if kind == FILE:
        e["size"], e["sha256"] = c.int("Q"), c.take(32)
        e["stream_len"] = e["size"]
        if flags & F_SPARSE:
            n = c.int("I")
            if 16 * n > c.left():
                raise Unreadable(c.region, "extents run past the end")
            extents, end = [], 0
            for _ in range(n):
                offset, length = c.int("Q"), c.int("Q")
                if length == 0 or offset < end or offset + length > e["size"]:
                    raise Unreadable(c.region, "bad extent [%d, +%d) of %s" % (offset, length, escape(path)))
                extents.append((offset, length))
                end = offset + length
            e["extents"] = extents
            e["stream_len"] = sum(ln for _, ln in extents)
    else:
        e["stream_len"] = 0
        if kind in (SYMLINK, HARDLINK):
            e["target"] = c.take(c.int("H"))
            if kind == SYMLINK and (not 1 <= len(e["target"]) <= 4096 or b"\0" in e["target"]):
                raise Unreadable(c.region, "bad symbolic link target of %s" % escape(path))
    if flags & F_XATTRS:
        n = c.int("H")
        if n < 1:
            raise Unreadable(c.region, "extended attributes flagged but none: %s" % escape(path))
        xattrs, used = [], 0
        for _ in range(n):
            name = c.take(c.int("B"))
            value = c.take(c.int("I"))
            used += len(name) + len(value)
            # "names and values at most 65 536 bytes per entry": read as their
            # sum over the entry's attributes.
            if not name or b"\0" in name or used > MAX_XATTR_BYTES or (xattrs and name <= xattrs[-1][0]):
                raise Unreadable(c.region, "bad extended attribute of %s" % escape(path))
            xattrs.append((name, value))
        e["xattrs"] = xattrs
    return e


def verify_v2(data, h, aead, digest, root):
    """Section 14.8 step 5: every piece in order, every data frame at its chunk
    number, every entry's rules and SHA-256. Returns (entries, data frame
    encodings, contents: each file's stream bytes, None for other kinds)."""
    total, n_sources = root["total"], len(root["sources"])
    encodings = []

    def stream():
        for k, (chunk, offset, sealed_len, raw_len) in enumerate(root["frames"]):
            encoding, raw = open_chunk(aead, digest, chunk, False, data[offset:offset + sealed_len], raw_len,
                                       True, "frame %d" % k)
            encodings.append(encoding)
            yield raw

    frames, buf = stream(), b""
    entries, contents = [], []
    previous = None  # the previous entry's key
    folders = []  # the tree rule's stack of open folders: (source, path)
    # Hard link targets: a dict of every file's (source, path) seen so far.
    # Simple, but it grows with the entries; the Rust reader looks targets up
    # in the pieces instead (binary search, section 14.5), in flat memory.
    files = {}
    stream_offset = 0
    pieces = root["pieces"]
    for p, rec in enumerate(pieces):
        region = "piece %d" % p
        sealed = data[rec["offset"]:rec["offset"] + rec["sealed_len"]]
        if hashlib.sha256(sealed).digest() != rec["sha256"]:
            raise Unreadable(region, "piece %d's SHA-256 differs from the root's" % p)
        _, raw = open_chunk(aead, digest, rec["chunk"], False, sealed, MAX_PIECE, False, region)
        c = Cursor(raw, region)
        count = c.int("I")
        if count != rec["count"]:
            raise Unreadable(region, "%d entries, the root says %d" % (count, rec["count"]))
        for i in range(count):
            e = parse_entry(c, n_sources)
            src, path = e["source"], e["path"]
            key = sort_key(src, path)
            if i == 0 and (key != rec["key"] or stream_offset != rec["stream_offset"]):
                raise Unreadable(region, "first entry or its stream offset is not the root's")
            if previous is not None and key <= previous:
                raise Unreadable(region, "entry %s/%s is not after the one before"
                                 % (root["sources"][src].decode(), escape(path)))
            previous = key
            # The tree rule, with a stack of open folders.
            while folders and not (folders[-1][0] == src and path.startswith(folders[-1][1] + b"/")):
                folders.pop()
            parent = path.rpartition(b"/")[0] if b"/" in path else None
            if (parent is None and folders) or (parent is not None and folders[-1:] != [(src, parent)]):
                raise Unreadable(region, "%s/%s: its parent is not a folder entry before it"
                                 % (root["sources"][src].decode(), escape(path)))
            if e["kind"] == FOLDER:
                folders.append((src, path))
            elif e["kind"] == FILE:
                files[(src, path)] = len(entries)
            elif e["kind"] == HARDLINK:
                if (src, e["target"]) not in files:
                    raise Unreadable(region, "hard link %s/%s: no earlier file %s"
                                     % (root["sources"][src].decode(), escape(path), escape(e["target"])))
                e["link_to"] = files[(src, e["target"])]
            # Its stream bytes.
            e["offset"] = stream_offset if e["kind"] == FILE else None
            sha, left, parts = hashlib.sha256(), e["stream_len"], []
            if stream_offset + left > total:
                raise Unreadable(region, "entries hold more than the root's %d bytes" % total)
            while left:
                if not buf:
                    buf = next(frames)
                take = buf[:left]
                buf, left = buf[len(take):], left - len(take)
                sha.update(take)
                parts.append(take)
            stream_offset += e["stream_len"]
            if e["kind"] == FILE:
                if sha.digest() != e["sha256"]:
                    raise Unreadable("entry", "entry %s/%s: SHA-256 mismatch"
                                     % (root["sources"][src].decode(), escape(path)))
                contents.append(b"".join(parts))
            else:
                contents.append(None)
            entries.append(e)
        if c.pos != len(raw):
            raise Unreadable(region, "bytes after the last entry")
        following = pieces[p + 1]["stream_offset"] if p + 1 < len(pieces) else total
        if stream_offset != following:
            raise Unreadable(region, "its entries' stream lengths do not reach the next offset")
    for _ in frames:
        pass  # no frame is left over (the stream adds up), but open every one
    return entries, encodings, contents


def entry_json(e, sources):
    def opt(v, f):
        return None if v is None else f(v)
    return dict(source=sources[e["source"]].decode(), kind=KINDS[e["kind"]], path=escape(e["path"]),
                path_hex=e["path"].hex(), mode=e["mode"], uid=e["uid"], gid=e["gid"],
                user=opt(e["user"], escape), group=opt(e["group"], escape), mtime=e["mtime"],
                mtime_ns=e["mtime_ns"], size=e["size"], sha256=opt(e["sha256"], bytes.hex), offset=e["offset"],
                extents=opt(e["extents"], lambda x: [list(t) for t in x]),
                target=opt(e["target"], escape), target_hex=opt(e["target"], bytes.hex),
                xattrs=opt(e["xattrs"], lambda x: [dict(name=escape(n), name_hex=n.hex(), value_hex=v.hex())
                                                  for n, v in x]))


def read(data, private_key, certificate=None, trusted=(), allow_unsigned=False, manifest=None):
    """Reads and checks the whole archive; returns (summary, contents of each
    entry). Version 2 adds `_entries` and `_sources` (raw, for --dump) to the
    summary; main() drops them before printing."""
    stage = "inspect"
    try:
        h = inspect(data)
        if manifest is not None:
            check_manifest(manifest[0], manifest[1], data, h)
        stage = "open"
        check_signature(data, h, trusted, allow_unsigned)
        if h["version"] == 1:
            aead, digest, total, offsets, entries = open_archive(data, h, private_key, certificate)
            stage = "verify"
            encodings, contents = verify(data, h, aead, digest, total, offsets, entries)
        else:
            aead, digest, root = open_v2(data, h, private_key, certificate)
            stage = "verify"
            raw_entries, encodings, contents = verify_v2(data, h, aead, digest, root)
    except Unreadable as e:
        e.stage = stage
        raise
    if h["version"] == 1:
        summary = dict(archive_id=h["archive_id"].hex(), created=h["created"], producer_version=h["producer"],
                       labels=dict(h["labels"]), frame_size=h["frame_size"], frames=len(encodings),
                       data_length=total, recipients=[s[1].hex().upper() for s in h["stanzas"]],
                       frame_encodings=encodings, entries=entries)
        return summary, contents
    sources = root["sources"]
    summary = dict(version=2, archive_id=h["archive_id"].hex(), created=h["created"],
                   producer_version=h["producer"], labels=dict(h["labels"]), frame_size=h["frame_size"],
                   frames=len(encodings), data_length=root["total"],
                   recipients=[s[1].hex().upper() for s in h["stanzas"]], frame_encodings=encodings,
                   signer=None if h["signer"] is None else fingerprint(h["signer"]),
                   sources=[s.decode() for s in sources], pieces=len(root["pieces"]),
                   entries=[entry_json(e, sources) for e in raw_entries],
                   _entries=raw_entries, _sources=sources)
    return summary, contents


# ---------------------------------------------------------------- manifest


MANIFEST_KEYS = ("id", "archive-id", "archive-size", "archive-sha256", "created", "producer-version",
                 "fqdn", "region")


def check_manifest(path, text, data, h):
    """Section 13.3: the manifest parses and agrees with the archive (keyless)."""
    def bad(why):
        raise Unreadable("manifest", why)
    if len(text) > 65536:
        bad("larger than 65536 bytes")
    try:
        text = text.decode("utf-8")
    except UnicodeDecodeError:
        bad("not UTF-8")
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    if lines[0] != "ibs-backup-manifest 1":
        bad("first line is not 'ibs-backup-manifest 1'")
    fields, recipients = {}, []
    for n, line in enumerate(lines[1:], 2):
        if not line:
            continue
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in line):
            bad("line %d has a control character" % n)
        key, sep, value = line.partition(": ")
        if not sep:
            bad("line %d is not 'key: value'" % n)
        if key == "recipient":
            recipients.append(value)
        elif key in MANIFEST_KEYS:
            if key in fields:
                bad("%s appears twice" % key)
            fields[key] = value
    for key in MANIFEST_KEYS:
        if key not in fields:
            bad("no %s" % key)
    m = re.fullmatch(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z-[0-9a-f]{8}", fields["id"])
    if not m:
        bad("id %r is not a backup id" % fields["id"])
    try:
        datetime.datetime(*(int(g) for g in m.groups()))
    except ValueError:
        bad("id %r names no time" % fields["id"])
    if os.path.basename(path) == "backup.manifest":
        folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
        if folder != fields["id"]:
            bad("id %s is not the folder's name %s" % (fields["id"], folder))
    if not re.fullmatch(r"[0-9a-f]{32}", fields["archive-id"]) or fields["archive-id"] != h["archive_id"].hex():
        bad("archive-id %s is not the archive's %s" % (fields["archive-id"], h["archive_id"].hex()))
    if not re.fullmatch(r"[0-9]+", fields["archive-size"]) or int(fields["archive-size"]) != len(data):
        bad("archive-size %s, the archive has %d bytes" % (fields["archive-size"], len(data)))
    digest = hashlib.sha256(data).hexdigest()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", fields["archive-sha256"]) or fields["archive-sha256"].lower() != digest:
        bad("archive-sha256 %s, the archive's is %s" % (fields["archive-sha256"], digest))
    if not re.fullmatch(r"-?[0-9]+", fields["created"]) or int(fields["created"]) != h["created"]:
        bad("created %s, the header says %d" % (fields["created"], h["created"]))
    if not re.fullmatch(r"[0-9]+\.[0-9]+(\.[0-9]+(\.[0-9]+)?)?", fields["producer-version"]) \
            or fields["producer-version"] != h["producer"]:
        bad("producer-version %s, the header says %s" % (fields["producer-version"], h["producer"]))
    thumbprints = [s[1].hex().upper() for s in h["stanzas"]]
    if any(not re.fullmatch(r"[0-9A-F]{40}", r) for r in recipients) or recipients != thumbprints:
        bad("recipients %s, the header's are %s" % (", ".join(recipients), ", ".join(thumbprints)))


# ---------------------------------------------------------------- dumping


def name_problem(source, path):
    """Why (source, path) must not be used on a file system (section 7), or None."""
    ok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
    if not 1 <= len(source.encode()) <= 64 or source in (".", "..") or any(ch not in ok for ch in source):
        return "source name %r breaks the rules" % source
    if not 1 <= len(path.encode()) <= 4096:
        return "path %r is not 1-4096 bytes" % path
    if any(ch == "\\" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in path):
        return "path %r has a backslash or a control character" % path
    if any(s in ("", ".", "..") for s in path.split("/")):
        return "path %r has an empty, '.' or '..' segment" % path
    return None


def dump(root, source, path, content):
    """Writes `content` to root/source/path, opening each folder relative to the
    one before (no path-length limit beyond each name's) and never following a
    symbolic link found on the way (section 7). An existing file is an error."""
    names = [source] + path.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names[:-1]:
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        out = os.open(names[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        with os.fdopen(out, "wb") as f:
            f.write(content)
    finally:
        os.close(fd)


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def open_folder(fd, path):
    """A new descriptor of folder `path` (bytes) under `fd`, walked one name at
    a time without following a symbolic link."""
    fd = os.dup(fd)
    for name in path.split(b"/") if path else ():
        try:
            inner = os.open(name, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = inner
    return fd


def write_all(fd, data, offset):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def apply_meta(e, owners, fd=None, name=None, dir_fd=None):
    """Owner, extended attributes, mode and times of entry `e` on `fd` (or on
    `name` in `dir_fd`, not following a symbolic link), in that order (chown
    may clear setuid bits and capabilities)."""
    own = owners and e["uid"] is not None
    target = fd if fd is not None else name
    kw = {} if fd is not None else dict(dir_fd=dir_fd, follow_symlinks=False)
    if own:
        os.chown(target, e["uid"], e["gid"], **kw)
    for xname, value in e["xattrs"] or ():
        if fd is not None:
            os.setxattr(fd, xname, value)
        else:  # no *xattr call takes a dir_fd: reach the name through /proc
            os.setxattr(b"/proc/self/fd/%d/%s" % (dir_fd, name), xname, value, follow_symlinks=False)
    if e["mode"] is not None and e["kind"] != SYMLINK:
        os.chmod(target, e["mode"] & (0o7777 if own else 0o1777), **kw)
    if e["mtime"] is not None:
        # os.utime takes 64-bit nanoseconds (years 1677-2262): clamp beyond,
        # as the kernel clamps a time the file system cannot hold.
        ns = min(max(e["mtime"] * 10 ** 9 + e["mtime_ns"], -(1 << 63)), (1 << 63) - 1)
        os.utime(target, ns=(ns, ns), **kw)


def dump_v2(root, summary, contents, owners):
    """Restores a verified version 2 archive under `root` (section 14.5)."""
    sources, entries = summary["_sources"], summary["_entries"]
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    source_fds, stack, folders = [], [], []
    try:
        for name in sources:
            try:
                os.mkdir(name, 0o700, dir_fd=root_fd)
            except FileExistsError:
                pass
            source_fds.append(os.open(name, DIR_FLAGS, dir_fd=root_fd))
        for e, content in zip(entries, contents):
            src, path = e["source"], e["path"]
            # The folders open on the way down: the archive's tree rule
            # guarantees the parent is the folder entry on top.
            while stack and not (stack[-1][0] == src and path.startswith(stack[-1][1] + b"/")):
                os.close(stack.pop()[2])
            parent = stack[-1][2] if stack else source_fds[src]
            name = path.rpartition(b"/")[2]
            kind = e["kind"]
            if kind == FOLDER:
                os.mkdir(name, 0o700, dir_fd=parent)
                stack.append((src, path, os.open(name, DIR_FLAGS, dir_fd=parent)))
                folders.append(e)  # its mode and times once everything is in place
            elif kind == FILE:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent)
                try:
                    if e["extents"] is None:
                        write_all(fd, content, 0)
                    else:
                        at = 0
                        for offset, length in e["extents"]:
                            write_all(fd, content[at:at + length], offset)
                            at += length
                        os.ftruncate(fd, e["size"])
                    apply_meta(e, owners, fd=fd)
                finally:
                    os.close(fd)
            elif kind == SYMLINK:
                os.symlink(e["target"], name, dir_fd=parent)
                apply_meta(e, owners, name=name, dir_fd=parent)
            else:  # hard link to an earlier file of the same source
                folder, _, target = e["target"].rpartition(b"/")
                at = open_folder(source_fds[src], folder)
                try:
                    os.link(target, name, src_dir_fd=at, dst_dir_fd=parent, follow_symlinks=False)
                finally:
                    os.close(at)
        while stack:
            os.close(stack.pop()[2])
        # Folders last, deepest first: a folder's mode may forbid writing in
        # it, and creating a name in it would change its mtime.
        for e in reversed(folders):
            fd = open_folder(source_fds[e["source"]], e["path"])
            try:
                apply_meta(e, owners, fd=fd)
            finally:
                os.close(fd)
    finally:
        for fd in [s[2] for s in stack] + source_fds + [root_fd]:
            os.close(fd)


# ---------------------------------------------------------------- output


def print_lines(summary):
    out = sys.stdout
    v2 = summary.get("version") == 2
    keys = ("archive_id", "created", "producer_version", "frame_size", "frames", "data_length")
    if v2:
        out.write("version\t2\n")
    for key in keys:
        out.write("%s\t%s\n" % (key, summary[key]))
    if v2:
        out.write("pieces\t%d\nsigner\t%s\n" % (summary["pieces"], summary["signer"] or "-"))
    for k, v in summary["labels"].items():
        out.write("label\t%s\t%s\n" % (k, v))
    for r in summary["recipients"]:
        out.write("recipient\t%s\n" % r)
    for i, enc in enumerate(summary["frame_encodings"]):
        out.write("frame\t%d\t%s\n" % (i, enc))
    if not v2:
        for e in summary["entries"]:
            out.write("entry\t%s\n" % "\t".join(
                "-" if e[k] is None else str(e[k])
                for k in ("source", "path", "size", "sha256", "offset", "mode", "mtime")))
        return
    for s in summary["sources"]:
        out.write("source\t%s\n" % s)
    for e in summary["entries"]:
        ext = e["extents"]
        cols = [e[k] for k in ("source", "path", "size", "sha256", "offset", "mode", "mtime", "kind",
                               "mtime_ns", "uid", "gid", "user", "group")]
        cols.append(None if ext is None else ",".join("%d+%d" % tuple(x) for x in ext))
        cols.append(e["target"])
        out.write("entry\t%s\n" % "\t".join("-" if v is None else str(v) for v in cols))
        for x in e["xattrs"] or ():
            out.write("xattr\t%s\t%s\t%s\t%s\n" % (e["source"], e["path"], x["name"], x["value_hex"]))


def main():
    p = argparse.ArgumentParser(description="Read and check an ibs archive (FORMAT.md).")
    p.add_argument("archive")
    p.add_argument("key", help="the recipient's private key, PEM")
    p.add_argument("--cert", help="the recipient's certificate (DER or PEM), to pick its stanza")
    p.add_argument("--dump", metavar="DIR", help="write each entry to DIR/<source>/<path>")
    p.add_argument("--format", choices=("json", "lines"), default="json")
    p.add_argument("--trust-signer", metavar="PUB.pem", action="append", default=[],
                   help="an Ed25519 public key (SubjectPublicKeyInfo PEM) whose signature is required")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="with --trust-signer: accept a version 1 archive (unsigned: it predates signatures)")
    p.add_argument("--no-owner", action="store_true", help="--dump: never apply owners")
    p.add_argument("--manifest", metavar="FILE", help="check this backup manifest against the archive")
    args = p.parse_args()
    with open(args.archive, "rb") as f:
        data = f.read()
    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    cert = None
    if args.cert:
        with open(args.cert, "rb") as f:
            raw = f.read()
        cert = (x509.load_pem_x509_certificate(raw) if raw.startswith(b"-----")
                else x509.load_der_x509_certificate(raw))
    trusted = set()
    for name in args.trust_signer:
        with open(name, "rb") as f:
            pub = serialization.load_pem_public_key(f.read())
        if not isinstance(pub, Ed25519PublicKey):
            p.error("%s is not an Ed25519 public key" % name)
        trusted.add(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    manifest = None
    if args.manifest:
        with open(args.manifest, "rb") as f:
            manifest = (args.manifest, f.read())
    try:
        summary, contents = read(data, key, cert, trusted, args.allow_unsigned, manifest)
    except Unreadable as e:
        sys.stderr.write("unreadable: %s\nstage: %s\nregion: %s\n" % (e, e.stage, e.region))
        sys.exit(1)
    if args.dump and summary.get("version") == 2:
        owners = os.geteuid() == 0 and not args.no_owner
        try:
            dump_v2(os.fsencode(args.dump), summary, contents, owners)
        except OSError as e:
            sys.stderr.write("refused: %s\n" % e)
            sys.exit(2)
    elif args.dump:
        for e in summary["entries"]:
            problem = name_problem(e["source"], e["path"])
            if problem:
                sys.stderr.write("refused: %s\n" % problem)
                sys.exit(2)
        for e, content in zip(summary["entries"], contents):
            dump(args.dump, e["source"], e["path"], content)
    summary.pop("_entries", None)
    summary.pop("_sources", None)
    if args.format == "lines":
        print_lines(summary)
    else:
        json.dump(summary, sys.stdout, indent=1, sort_keys=True)
        print()


if __name__ == "__main__":
    main()
