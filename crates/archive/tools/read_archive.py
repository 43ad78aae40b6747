#!/usr/bin/env python3
"""An independent reader of the ibs archive format, written from FORMAT.md alone.

Needs only Python 3, `cryptography` and `zstandard`:

    python3 read_archive.py ARCHIVE PRIVATE_KEY.pem [--cert CERT] [--dump DIR] [--format json|lines]

Checks everything the spec says a reader must check (header MAC, key
commitment, every chunk tag, the index, every entry's SHA-256), then prints a
summary: JSON (the default), or with `--format lines` one tab-separated record
per line (`field<TAB>value`, `recipient<TAB>thumbprint`, `frame<TAB>N<TAB>stored|zstd`,
`entry<TAB>source<TAB>path<TAB>size<TAB>sha256<TAB>offset<TAB>mode<TAB>mtime`
with `-` for an absent mode or mtime), for scripts. Entry names cannot hold a
tab or a line break (FORMAT.md section 7), so the records are unambiguous.

With --cert (the recipient's certificate, DER or PEM) the reader picks the
stanza whose SHA-256 fingerprint matches it (section 4); without, it tries
every stanza. With --dump, writes each entry's plaintext to DIR/<source>/<path>,
after checking every name against the rules of section 7.

Exits 1 if the archive is unreadable, printing on stderr

    unreadable: <what failed>
    stage: inspect | open | verify
    region: header | footer | archive | key | index | frame N | entry

`stage` is the step of section 9 that failed (`inspect`: steps 1-2, no key;
`open`: steps 3-4; `verify`: step 5); `region` is the part of the archive at
fault (`archive`: its length as a whole; `key`: no stanza opens with the key
given; `entry`: an entry's SHA-256). Exits 2 if --dump refuses a name.
"""

import argparse
import hashlib
import hmac
import json
import os
import struct
import sys

import zstandard
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"\x89IBS\r\n\x1a\n"
FOOTER_MAGIC = b"\x89IBSEND\n"
PREFIX_LEN = 14
FOOTER_LEN = 48
MIN_HEADER = 456
MAX_INDEX = 256 << 20
MAX_SEALED_INDEX = MAX_INDEX + 17


class Unreadable(Exception):
    def __init__(self, region, message):
        super().__init__(message)
        self.region = region
        self.stage = None


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


def open_chunk(aead, digest, counter, last, sealed, expected, exact):
    """Returns (encoding, raw bytes) of chunk `counter` (section 6)."""
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
    """Steps 1-2 of section 9: header and footer, no key."""
    # Header (section 3).
    if data[:8] != MAGIC:
        raise Unreadable("header", "not an ibs archive")
    if len(data) >= 10 and struct.unpack("<H", data[8:10])[0] != 1:
        raise Unreadable("header", "unsupported version %d" % struct.unpack("<H", data[8:10])[0])
    if len(data) < PREFIX_LEN + FOOTER_LEN:
        raise Unreadable("archive", "%d bytes is too short for an archive" % len(data))
    hlen = struct.unpack("<I", data[10:14])[0]
    if not MIN_HEADER <= hlen <= 1 << 20 or hlen + FOOTER_LEN > len(data):
        raise Unreadable("header", "bad header length %d" % hlen)
    header = data[:hlen]
    c = Cursor(header[:hlen - 32], "header")
    c.take(PREFIX_LEN)
    h = dict(hlen=hlen, header=header)
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
    if c.pos != len(c.data):
        raise Unreadable("header", "bytes after the header fields")

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


def open_archive(data, h, private_key, certificate):
    """Steps 3-4 of section 9: file key, commitment, header MAC, index."""
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
    digest = hashlib.sha256(header).digest()
    aead = AESGCM(payload_key)

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


def read(data, private_key, certificate=None):
    """Reads and checks the whole archive; returns (summary, contents of each entry)."""
    stage = "inspect"
    try:
        h = inspect(data)
        stage = "open"
        aead, digest, total, offsets, entries = open_archive(data, h, private_key, certificate)
        stage = "verify"
        encodings, contents = verify(data, h, aead, digest, total, offsets, entries)
    except Unreadable as e:
        e.stage = stage
        raise
    summary = dict(archive_id=h["archive_id"].hex(), created=h["created"], producer_version=h["producer"],
                   labels=dict(h["labels"]), frame_size=h["frame_size"], frames=len(encodings),
                   data_length=total, recipients=[s[1].hex().upper() for s in h["stanzas"]],
                   frame_encodings=encodings, entries=entries)
    return summary, contents


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


def print_lines(summary):
    out = sys.stdout
    for key in ("archive_id", "created", "producer_version", "frame_size", "frames", "data_length"):
        out.write("%s\t%s\n" % (key, summary[key]))
    for k, v in summary["labels"].items():
        out.write("label\t%s\t%s\n" % (k, v))
    for r in summary["recipients"]:
        out.write("recipient\t%s\n" % r)
    for i, enc in enumerate(summary["frame_encodings"]):
        out.write("frame\t%d\t%s\n" % (i, enc))
    for e in summary["entries"]:
        out.write("entry\t%s\n" % "\t".join(
            "-" if e[k] is None else str(e[k])
            for k in ("source", "path", "size", "sha256", "offset", "mode", "mtime")))


def main():
    p = argparse.ArgumentParser(description="Read and check an ibs archive (FORMAT.md).")
    p.add_argument("archive")
    p.add_argument("key", help="the recipient's private key, PEM")
    p.add_argument("--cert", help="the recipient's certificate (DER or PEM), to pick its stanza")
    p.add_argument("--dump", metavar="DIR", help="write each entry to DIR/<source>/<path>")
    p.add_argument("--format", choices=("json", "lines"), default="json")
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
    try:
        summary, contents = read(data, key, cert)
    except Unreadable as e:
        sys.stderr.write("unreadable: %s\nstage: %s\nregion: %s\n" % (e, e.stage, e.region))
        sys.exit(1)
    if args.dump:
        for e in summary["entries"]:
            problem = name_problem(e["source"], e["path"])
            if problem:
                sys.stderr.write("refused: %s\n" % problem)
                sys.exit(2)
        for e, content in zip(summary["entries"], contents):
            dump(args.dump, e["source"], e["path"], content)
    if args.format == "lines":
        print_lines(summary)
    else:
        json.dump(summary, sys.stdout, indent=1, sort_keys=True)
        print()


if __name__ == "__main__":
    main()
