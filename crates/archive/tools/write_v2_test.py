#!/usr/bin/env python3
"""A small writer of format version 2 (FORMAT.md section 14), for testing
read_archive.py only: written from the same reading of the spec, so it checks
the reader's code paths, not the spec (the Rust writer's archives do that).

    from write_v2_test import write, Entry
    data = write([Entry("file", 0, b"a", data=b"hi")], ["src"], [cert])
"""

import hashlib
import hmac
import os
import struct

import zstandard
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KINDS = {"file": 0, "folder": 1, "symlink": 2, "hardlink": 3}


class Entry:
    def __init__(self, kind, source, path, data=b"", mode=None, owner=None, names=None, mtime=None,
                 extents=None, size=None, target=None, xattrs=None):
        self.kind, self.source, self.path, self.data = kind, source, path, data
        self.mode, self.owner, self.names, self.mtime = mode, owner, names, mtime
        self.extents, self.size, self.target, self.xattrs = extents, size, target, xattrs

    def stream(self):
        """Its stream bytes: the content, or the extents' bytes of a sparse file."""
        if self.kind != "file":
            return b""
        if self.extents is None:
            return self.data
        return b"".join(self.data[o:o + n] for o, n in self.extents)

    def encode(self):
        flags = ((self.mode is not None) | (self.owner is not None) << 1 | (self.names is not None) << 2
                 | (self.mtime is not None) << 3 | (self.extents is not None) << 4 | (self.xattrs is not None) << 5)
        out = struct.pack("<BHH", KINDS[self.kind], self.source, len(self.path)) + self.path + bytes([flags])
        if self.mode is not None:
            out += struct.pack("<H", self.mode)
        if self.owner is not None:
            out += struct.pack("<II", *self.owner)
        if self.names is not None:
            out += b"".join(bytes([len(n)]) + n for n in self.names)
        if self.mtime is not None:
            out += struct.pack("<qI", *self.mtime)
        if self.kind == "file":
            size = len(self.data) if self.size is None else self.size
            out += struct.pack("<Q", size) + hashlib.sha256(self.stream()).digest()
            if self.extents is not None:
                out += struct.pack("<I", len(self.extents))
                out += b"".join(struct.pack("<QQ", o, n) for o, n in self.extents)
        elif self.kind in ("symlink", "hardlink"):
            out += struct.pack("<H", len(self.target)) + self.target
        if self.xattrs is not None:
            out += struct.pack("<H", len(self.xattrs))
            out += b"".join(bytes([len(n)]) + n + struct.pack("<I", len(v)) + v for n, v in self.xattrs)
        return out


def hkdf(key, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def str16(s):
    b = s.encode()
    return struct.pack("<H", len(b)) + b


def write(entries, sources, certs, frame_size=4096, piece_bytes=65536, signer=None, created=1763788530,
          producer="1.2408.0.21", labels=(), compress=True, archive_id=None, stream_extra=b""):
    """The bytes of a version 2 archive. `signer` is an Ed25519PrivateKey or
    None; `stream_extra` is data no entry holds (to break the rules)."""
    file_key, salt = os.urandom(32), os.urandom(32)
    archive_id = archive_id or os.urandom(16)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    body = archive_id + struct.pack("<qIBB", created, frame_size, 1, 0) + salt
    body += hkdf(file_key, salt, b"ibs-envelope/v1 commitment") + str16(producer)
    body += struct.pack("<H", len(labels)) + b"".join(str16(k) + str16(v) for k, v in labels)
    body += struct.pack("<H", len(certs))
    for cert in certs:
        der = cert.public_bytes(serialization.Encoding.DER)
        wrapped = cert.public_key().encrypt(file_key, oaep)
        body += hashlib.sha256(der).digest() + hashlib.sha1(der).digest() + struct.pack("<H", len(wrapped)) + wrapped
    if signer is None:
        body += b"\0"
    else:
        body += b"\1" + signer.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    hlen = 14 + len(body) + 32
    header = b"\x89IBS\r\n\x1a\n" + struct.pack("<HI", 2, hlen) + body
    header += hmac.new(hkdf(file_key, salt, b"ibs-archive/v1 header mac"), header, hashlib.sha256).digest()
    digest = hashlib.sha256(header).digest()
    aead = AESGCM(hkdf(file_key, salt, b"ibs-envelope/v1 payload"))

    out = bytearray(header)
    state = dict(chunk=0, frames=0)
    frame_lens, records = [], []

    def seal(raw, last=False):
        payload = b"\0" + raw
        if compress and raw:
            z = b"\1" + zstandard.ZstdCompressor(level=3, write_content_size=True).compress(raw)
            if len(z) < len(payload):
                payload = z
        nonce = b"\0\0\0" + struct.pack(">Q", state["chunk"]) + (b"\1" if last else b"\0")
        state["chunk"] += 1
        sealed = aead.encrypt(nonce, payload, digest)
        return sealed

    stream, piece, piece_count, first = b"", b"", 0, None
    offset = 0

    def flush_frames(final):
        nonlocal stream
        while len(stream) >= frame_size or (final and stream):
            sealed = seal(stream[:frame_size])
            stream = stream[frame_size:]
            out.extend(sealed)
            frame_lens.append(len(sealed))
            state["frames"] += 1

    def flush_piece():
        nonlocal piece, piece_count
        if not piece_count:
            return
        at = len(out)
        sealed = seal(struct.pack("<I", piece_count) + piece)
        out.extend(sealed)
        src, path, off = first
        records.append(struct.pack("<QIQ", at, len(sealed), state["frames"]) + hashlib.sha256(sealed).digest()
                       + struct.pack("<IQHH", piece_count, off, src, len(path)) + path)
        piece, piece_count = b"", 0

    for e in entries:
        if not piece_count:
            first = (e.source, e.path, offset)
        piece += e.encode()
        piece_count += 1
        s = e.stream()
        stream += s
        offset += len(s)
        flush_frames(False)
        if len(piece) >= piece_bytes:
            flush_piece()
    stream += stream_extra
    offset += len(stream_extra)
    flush_frames(True)
    flush_piece()
    root = struct.pack("<QQ", offset, len(frame_lens)) + b"".join(struct.pack("<I", n) for n in frame_lens)
    root += struct.pack("<H", len(sources)) + b"".join(bytes([len(s)]) + s.encode() + b"\0" for s in sources)
    root += struct.pack("<QI", len(entries), len(records)) + b"".join(records)
    root_offset = len(out)
    sealed_root = seal(root, last=True)
    out.extend(sealed_root)
    sig_len = 1 if signer is None else 65
    footer = struct.pack("<QIIQQ", root_offset, len(sealed_root), sig_len, state["chunk"], len(frame_lens))
    footer += archive_id
    if signer is None:
        out.extend(b"\0")
    else:
        message = b"ibs-archive v2 signature\0" + digest + hashlib.sha256(sealed_root).digest() + footer
        out.extend(b"\1" + signer.sign(message))
    out.extend(footer + bytes(8) + b"\x89IBSEN2\n")
    return bytes(out)


def cases(certs):
    """(name, archive bytes, expected stage, expected region[, the Rust
    reader's stage and region where they differ]) of archives that break one
    rule of section 14 each (or none), for both readers to judge alike."""
    E = Entry
    ok_first = E("file", 0, b"0", b"zero")  # a valid first key: the root lists it

    def case(name, entries, region="piece 0", sources=("s",), **kw):
        stage = "ok" if region is None else "open" if region == "root" else "verify"
        return (name, write([ok_first] + entries, list(sources), certs, **kw), stage, region or "-")

    out = [
        case("ok-every-kind", [
            E("folder", 0, b"d", mode=0o755, mtime=(-1, 5)),
            E("file", 0, b"d/f", b"data" * 3000, owner=(1, 2), names=(b"u", b"")),
            E("hardlink", 0, b"d/h", target=b"d/f"),
            E("file", 0, b"d/holes", bytes(100000), extents=[(4096, 10), (90000, 10)],
              xattrs=[(b"user.a", b"1"), (b"user.b", b"")]),
            E("symlink", 0, b"d/l", target=b"/abs/\xff"),
        ], None, sources=("s", "empty"), piece_bytes=60),
        case("order", [E("file", 0, b"b"), E("file", 0, b"a")]),
        case("duplicate", [E("file", 0, b"a"), E("file", 0, b"a")]),
        case("order-segment-wise", [E("folder", 0, b"a"), E("file", 0, b"a-b"), E("file", 0, b"a/b")]),
        # Each entry its own piece: the root's first keys are out of order.
        case("order-across-pieces", [E("file", 0, b"b"), E("file", 0, b"a")], "root", piece_bytes=1),
        case("tree-no-parent", [E("file", 0, b"a/b")]),
        case("tree-parent-is-file", [E("file", 0, b"a"), E("file", 0, b"a/b")]),
        case("tree-through-symlink", [E("symlink", 0, b"l", target=b"."), E("file", 0, b"l/x")]),
        case("tree-grandparent-only", [E("folder", 0, b"a"), E("file", 0, b"a/b/c")]),
        case("hardlink-later", [E("hardlink", 0, b"a", target=b"b"), E("file", 0, b"b")]),
        case("hardlink-to-folder", [E("folder", 0, b"a"), E("hardlink", 0, b"b", target=b"a")]),
        case("hardlink-to-link", [E("hardlink", 0, b"a", target=b"0"), E("hardlink", 0, b"b", target=b"a")]),
        case("hardlink-other-source", [E("file", 1, b"a"), E("hardlink", 1, b"b", target=b"0")],
             sources=("s", "t")),
        case("hardlink-empty-target", [E("hardlink", 0, b"a", target=b"")]),
        case("path-dotdot", [E("file", 0, b"a/../b")]),
        case("path-empty-segment", [E("file", 0, b"a//b")]),
        case("path-trailing-slash", [E("folder", 0, b"a/")]),
        case("path-segment-256", [E("file", 0, b"x" * 256)]),
        case("path-nul", [E("file", 0, b"a\0")]),
        case("extents-overlap", [E("file", 0, b"f", b"abcd", extents=[(0, 2), (1, 2)])]),
        case("extents-past-size", [E("file", 0, b"f", b"abcd", extents=[(2, 4)])]),
        case("extents-empty-one", [E("file", 0, b"f", b"abcd", extents=[(0, 0)])]),
        case("sparse-folder", [E("folder", 0, b"f", extents=[])]),
        case("xattrs-none", [E("file", 0, b"f", xattrs=[])]),
        case("xattrs-order", [E("file", 0, b"f", xattrs=[(b"b", b""), (b"a", b"")])]),
        case("xattrs-same-name", [E("file", 0, b"f", xattrs=[(b"a", b""), (b"a", b"")])]),
        case("xattrs-empty-name", [E("file", 0, b"f", xattrs=[(b"", b"")])]),
        case("xattrs-too-large", [E("file", 0, b"f", xattrs=[(b"a", b"x" * 65536)])]),
        case("xattrs-at-limit", [E("file", 0, b"f", xattrs=[(b"a", b"x" * 65535)])], None),
        case("mode-too-wide", [E("file", 0, b"f", mode=0o10000)]),
        case("nanoseconds", [E("file", 0, b"f", mtime=(0, 10 ** 9))]),
        case("owner-name-nul", [E("file", 0, b"f", names=(b"a\0", b""))]),
        case("symlink-empty", [E("symlink", 0, b"l", target=b"")]),
        case("symlink-nul", [E("symlink", 0, b"l", target=b"a\0b")]),
        case("source-index", [E("file", 3, b"f")]),
        case("sources-twice", [], "root", sources=("s", "s")),
        case("source-dotdot", [], "root", sources=("..",)),
        case("source-slash", [], "root", sources=("a/b",)),
    ]
    # Data but no entry at all: section 14.6 says P = 0 means E = T = 0.
    out.append(("no-entries-but-data", write([], ["s"], certs, stream_extra=b"x" * 10), "open", "root",
                "open", "root"))
    return out


if __name__ == "__main__":
    import sys
    from cryptography import x509
    out_dir, cert_files = sys.argv[1], sys.argv[2:]
    certs = []
    for name in cert_files:
        with open(name, "rb") as f:
            certs.append(x509.load_der_x509_certificate(f.read()))
    with open(os.path.join(out_dir, "cases.txt"), "w") as listing:
        for name, data, *expected in cases(certs):
            with open(os.path.join(out_dir, name + ".ibs"), "wb") as f:
                f.write(data)
            listing.write("\t".join([name] + expected) + "\n")
