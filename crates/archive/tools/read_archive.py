#!/usr/bin/env python3
"""An independent reader of the ibs archive format, written from FORMAT.md alone.

Needs only Python 3, `cryptography` and `zstandard`:

    python3 read_archive.py ARCHIVE PRIVATE_KEY.pem [--dump DIR]

Checks everything the spec says a reader must check (header MAC, key
commitment, every chunk tag, the index, every entry's SHA-256), then prints a
JSON summary. With --dump, writes each entry's plaintext to DIR/<source>/<path>.
Exits 1 with a message on stderr if the archive is unreadable.
"""

import hashlib
import hmac
import json
import os
import struct
import sys

import zstandard
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"\x89IBS\r\n\x1a\n"
FOOTER_MAGIC = b"\x89IBSEND\n"
FOOTER_LEN = 48
MAX_INDEX = 256 << 20


class Unreadable(Exception):
    pass


class Cursor:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Unreadable("field runs past the end at byte %d" % self.pos)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def str16(self, limit):
        n = self.int("H")
        if n > limit:
            raise Unreadable("string of %d bytes, limit %d" % (n, limit))
        return self.take(n).decode("utf-8")


def hkdf(key, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def open_chunk(aead, digest, counter, last, sealed, expected, exact):
    nonce = b"\0\0\0" + struct.pack(">Q", counter) + (b"\x01" if last else b"\x00")
    try:
        plain = aead.decrypt(nonce, sealed, digest)
    except Exception:
        raise Unreadable("chunk %d failed authentication" % counter)
    if not plain:
        raise Unreadable("empty chunk %d" % counter)
    encoding, payload = plain[0], plain[1:]
    if encoding == 0:
        raw = payload
    elif encoding == 1:
        params = zstandard.get_frame_parameters(payload)
        if params.content_size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
            raise Unreadable("zstd frame without content size")
        if params.content_size > expected:
            raise Unreadable("chunk %d too large" % counter)
        # Exactly one frame: ZstdDecompressor.decompress() would silently
        # ignore a second frame, a skippable frame or trailing bytes.
        d = zstandard.ZstdDecompressor().decompressobj()
        raw = d.decompress(payload)
        if not d.eof or d.unused_data:
            raise Unreadable("chunk %d: zstd payload is not exactly one frame" % counter)
    else:
        raise Unreadable("unknown encoding %d" % encoding)
    if (exact and len(raw) != expected) or len(raw) > expected:
        raise Unreadable("chunk %d holds %d bytes, expected %d" % (counter, len(raw), expected))
    return raw


def read(data, private_key):
    # Header (FORMAT.md section 3).
    if data[:8] != MAGIC:
        raise Unreadable("not an ibs archive")
    c = Cursor(data)
    c.take(8)
    version = c.int("H")
    if version != 1:
        raise Unreadable("unsupported version %d" % version)
    hlen = c.int("I")
    if not 46 <= hlen <= 1 << 20 or hlen + FOOTER_LEN > len(data):
        raise Unreadable("bad header length")
    header = data[:hlen]
    c = Cursor(header[:hlen - 32])
    c.take(14)
    archive_id = c.take(16)
    created = c.int("q")
    frame_size = c.int("I")
    compression, flags = c.int("B"), c.int("B")
    if not 4096 <= frame_size <= 16 << 20 or compression != 1 or flags != 0:
        raise Unreadable("bad header parameters")
    salt, commitment = c.take(32), c.take(32)
    producer = c.str16(256)
    labels = {}
    n = c.int("H")
    if n > 64:
        raise Unreadable("too many labels")
    for _ in range(n):
        k = c.str16(64)
        labels[k] = c.str16(1024)
    r = c.int("H")
    if not 1 <= r <= 32:
        raise Unreadable("bad recipient count")
    stanzas = []
    for _ in range(r):
        sha256, sha1 = c.take(32), c.take(20)
        w = c.int("H")
        if not 256 <= w <= 1024:
            raise Unreadable("bad wrapped key length")
        stanzas.append((sha256, sha1, c.take(w)))
    if c.pos != len(c.data):
        raise Unreadable("bytes after the header fields")

    # Footer (section 8).
    footer = data[-FOOTER_LEN:]
    index_offset, index_len, frame_count = struct.unpack("<QQQ", footer[:24])
    if footer[40:] != FOOTER_MAGIC:
        raise Unreadable("no footer magic")
    if not 18 <= index_len <= MAX_INDEX or index_offset + index_len + FOOTER_LEN != len(data):
        raise Unreadable("footer does not fit the archive")
    if footer[24:40] != archive_id or index_offset < hlen:
        raise Unreadable("footer does not match the header")

    # File key (section 4): the stanza for our certificate.
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    file_key = None
    for sha256, sha1, wrapped in stanzas:
        try:
            file_key = private_key.decrypt(wrapped, oaep)
            break
        except Exception:
            continue  # not our stanza (a certificate-less reader tries each one)
    if file_key is None or len(file_key) != 32:
        raise Unreadable("no stanza opens with this key; needed thumbprints: "
                         + ", ".join(s[1].hex().upper() for s in stanzas))

    # Keys, commitment and MAC (section 5).
    payload_key = hkdf(file_key, salt, b"ibs-envelope/v1 payload")
    if not hmac.compare_digest(hkdf(file_key, salt, b"ibs-envelope/v1 commitment"), commitment):
        raise Unreadable("key commitment mismatch")
    mac_key = hkdf(file_key, salt, b"ibs-archive/v1 header mac")
    if not hmac.compare_digest(hmac.new(mac_key, header[:-32], hashlib.sha256).digest(), header[-32:]):
        raise Unreadable("header MAC mismatch")
    digest = hashlib.sha256(header).digest()
    aead = AESGCM(payload_key)

    # Index (sections 6 and 7).
    body = open_chunk(aead, digest, frame_count, True, data[index_offset:index_offset + index_len], MAX_INDEX, False)
    c = Cursor(body)
    total, n_frames = c.int("Q"), c.int("Q")
    if n_frames != -(-total // frame_size) or n_frames != frame_count:
        raise Unreadable("frame count mismatch")
    lens = [c.int("I") for _ in range(n_frames)]
    offsets = [hlen]
    for i, ln in enumerate(lens):
        raw = min(frame_size, total - i * frame_size)
        if not 18 <= ln <= raw + 17:
            raise Unreadable("impossible frame length")
        offsets.append(offsets[-1] + ln)
    if offsets[-1] != index_offset:
        raise Unreadable("frames do not end at the index")
    entries, seen, pos = [], set(), 0
    for _ in range(c.int("Q")):
        source, path = c.str16(64), c.str16(4096)
        size, sha = c.int("Q"), c.take(32)
        flags, mode, mtime = c.int("B"), c.int("I"), c.int("q")
        if not source or not path or flags & ~3 or (source, path) in seen:
            raise Unreadable("bad entry")
        seen.add((source, path))
        entries.append(dict(source=source, path=path, size=size, sha256=sha.hex(), offset=pos,
                            mode=mode if flags & 1 else None, mtime=mtime if flags & 2 else None))
        pos += size
    if pos != total or c.pos != len(body):
        raise Unreadable("entries do not add up")

    # Data (section 7): one pass over the logical stream, checking each entry.
    def stream():
        for i in range(n_frames):
            yield open_chunk(aead, digest, i, False, data[offsets[i]:offsets[i + 1]],
                             min(frame_size, total - i * frame_size), True)

    frames, buf = stream(), b""
    contents = []
    for e in entries:
        h, left, parts = hashlib.sha256(), e["size"], []
        while left:
            if not buf:
                buf = next(frames)
            take = buf[:left]
            buf, left = buf[len(take):], left - len(take)
            h.update(take)
            parts.append(take)
        if h.hexdigest() != e["sha256"]:
            raise Unreadable("entry %s/%s: SHA-256 mismatch" % (e["source"], e["path"]))
        contents.append(b"".join(parts))
    summary = dict(archive_id=archive_id.hex(), created=created, producer_version=producer,
                   labels=labels, frame_size=frame_size, frames=n_frames, entries=entries)
    return summary, contents


def main():
    if len(sys.argv) not in (3, 5):
        sys.exit(__doc__)
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    with open(sys.argv[2], "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    try:
        summary, contents = read(data, key)
    except Unreadable as e:
        print("unreadable: %s" % e, file=sys.stderr)
        sys.exit(1)
    if len(sys.argv) == 5 and sys.argv[3] == "--dump":
        for e, content in zip(summary["entries"], contents):
            target = os.path.join(sys.argv[4], e["source"], *e["path"].split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(content)
    json.dump(summary, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
