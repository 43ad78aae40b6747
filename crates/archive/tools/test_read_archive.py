#!/usr/bin/env python3
"""Tests of read_archive.py on version 2 archives made by write_v2_test.py (a
writer from the same reading of FORMAT.md section 14: these exercise the
reader's checks and --dump; the Rust tests feed it the Rust writer's archives).

    python3 -m unittest discover -s crates/archive/tools -p 'test_*.py'
"""

import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import tempfile
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from write_v2_test import Entry, write  # noqa: E402
from read_archive import escape  # noqa: E402

DATA = os.path.join(HERE, "..", "tests", "data")
READER = os.path.join(HERE, "read_archive.py")


def cert(name):
    with open(os.path.join(DATA, name + ".cer"), "rb") as f:
        return x509.load_der_x509_certificate(f.read())


def slurp(*path):
    with open(os.path.join(*path), "rb") as f:
        return f.read()


def pseudo(n, seed):
    out, x = bytearray(), seed
    while len(out) < n:
        x = hashlib.sha256(x.to_bytes(8, "little") + bytes(out[-8:])).digest()
        out += x
        x = int.from_bytes(x[:8], "little")
    return bytes(out[:n])


SPARSE_SIZE = 64 << 20


def tree():
    """(sources, entries) of every kind, odd names and times, in key order."""
    sparse = bytearray(SPARSE_SIZE)
    sparse[4096:8192] = pseudo(4096, 7)
    sparse[SPARSE_SIZE - 100:] = b"t" * 100
    big = (b"line of text\n" * 2000) + pseudo(9000, 3)
    E = Entry
    entries = [
        E("file", 0, b"a", b"one", mode=0o640, owner=(1234, 5678), names=(b"alice", b"staff"),
          mtime=(1700000000, 123456789)),
        E("folder", 0, b"d", mode=0o750, mtime=(-1, 500000000), owner=(0, 0), names=(b"", b"")),
        E("file", 0, b"d/big.bin", big, mode=0o4755, owner=(1234, 5678), mtime=(-86400 * 365 * 20, 1)),
        E("folder", 0, b"d/e", mode=0o700, mtime=(1000000000, 0)),
        E("file", 0, b"d/e/new\nline\ttab\\back\x01\x7f\xc2\x85", b"", mtime=(5, 999999999)),
        E("hardlink", 0, b"d/e/zz-link", target=b"d/big.bin"),
        E("file", 0, b"d/e/\xff\xfe invalid", b"x" * 5000, mode=0o600),
        E("file", 0, b"d/holes", bytes(1 << 20), extents=[], mode=0o600),
        E("file", 0, b"d/sparse", bytes(sparse), extents=[(4096, 4096), (SPARSE_SIZE - 100, 100)],
          mode=0o644, mtime=(1600000000, 42), xattrs=[(b"user.a", b"1"), (b"user.b", b"\0\xff")]),
        E("symlink", 0, b"d/z-abs", target=b"/etc/passwd", mtime=(1234567890, 5), owner=(4321, 8765)),
        E("file", 0, b"d-after", b"after"),
        E("symlink", 2, b"dangling", target=b"../../nowhere/\xff"),
        E("folder", 2, b"empty-folder", mode=0o555, mtime=(0, 0), xattrs=[(b"user.folder", b"f")]),
    ]
    return ["src", "empty", "zz.other"], entries


class V2(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        # Folders restored without write permission.
        for root, dirs, _ in os.walk(self.dir):
            for d in dirs:
                p = os.path.join(root, d)
                if not os.path.islink(p):
                    os.chmod(p, 0o700)
        self.tmp.cleanup()

    def run_reader(self, data, *args, key="recipient"):
        path = os.path.join(self.dir, "backup.ibs")
        with open(path, "wb") as f:
            f.write(data)
        return subprocess.run([sys.executable, READER, path, os.path.join(DATA, key + ".key"), "--cert",
                               os.path.join(DATA, key + ".cer")] + list(args), capture_output=True)

    def fails(self, data, stage, region, *args):
        out = self.run_reader(data, *args)
        err = out.stderr.decode()
        self.assertEqual(out.returncode, 1, err)
        self.assertIn("stage: %s\n" % stage, err)
        self.assertIn("region: %s\n" % region, err)
        return err

    def test_reads_and_dumps_every_kind(self):
        sources, entries = tree()
        data = write(entries, sources, [cert("other"), cert("recipient")], piece_bytes=100,
                     labels=[("fqdn", "azs.contoso.com")])
        dump = os.path.join(self.dir, "dump")
        os.mkdir(dump)
        out = self.run_reader(data, "--dump", dump)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        s = json.loads(out.stdout)
        self.assertEqual(s["version"], 2)
        self.assertIsNone(s["signer"])
        self.assertEqual(s["sources"], sources)
        self.assertGreater(s["pieces"], 3)
        self.assertEqual(len(s["entries"]), len(entries))
        for e, got in zip(entries, s["entries"]):
            self.assertEqual(got["kind"], e.kind)
            self.assertEqual(got["source"], sources[e.source])
            self.assertEqual(bytes.fromhex(got["path_hex"]), e.path)
            self.assertEqual(got["path"], escape(e.path))
            self.assertEqual(got["mode"], e.mode)
            self.assertEqual((got["mtime"], got["mtime_ns"]), e.mtime or (None, None))
            self.assertEqual((got["uid"], got["gid"]), e.owner or (None, None))
            if e.kind == "file":
                self.assertEqual(got["size"], len(e.data))
                self.assertEqual(got["extents"], None if e.extents is None else [list(x) for x in e.extents])
            if e.target is not None:
                self.assertEqual(bytes.fromhex(got["target_hex"]), e.target)
        self.assertEqual(s["entries"][4]["path"], "d/e/new\\nline\\ttab\\\\back\\x01\\x7f\\xc2\\x85")
        self.assertEqual(s["entries"][6]["path"], "d/e/\\xff\\xfe invalid")
        self.assertEqual(s["entries"][8]["xattrs"][1], dict(name="user.b", name_hex=b"user.b".hex(),
                                                            value_hex="00ff"))

        # The restored tree.
        root = os.fsencode(dump)
        self.assertEqual(sorted(os.listdir(root)), [s.encode() for s in sorted(sources)])
        self.assertEqual(os.listdir(os.path.join(root, b"empty")), [])
        inodes = {}
        for e in entries:
            p = os.path.join(root, sources[e.source].encode(), e.path)
            st = os.lstat(p)
            kind = {stat.S_IFREG: "file", stat.S_IFDIR: "folder", stat.S_IFLNK: "symlink"}[stat.S_IFMT(st.st_mode)]
            if e.kind == "hardlink":
                self.assertEqual(kind, "file")
                self.assertEqual(st.st_ino, inodes[e.target])
                self.assertEqual(st.st_nlink, 2)
                continue
            self.assertEqual(kind, e.kind, p)
            if e.kind == "file":
                inodes[e.path] = st.st_ino
                with open(p, "rb") as f:
                    self.assertEqual(f.read(), e.data, p)
            if e.kind == "symlink":
                self.assertEqual(os.readlink(p), e.target)
            if e.mode is not None and e.kind != "symlink":
                self.assertEqual(stat.S_IMODE(st.st_mode), e.mode, p)
            if e.xattrs is not None:
                self.assertEqual({os.fsencode(n): os.getxattr(p, n, follow_symlinks=False) for n in
                                  os.listxattr(p, follow_symlinks=False)}, dict(e.xattrs))
            if e.mtime is not None:
                self.assertEqual(st.st_mtime_ns, e.mtime[0] * 10 ** 9 + e.mtime[1], p)
            if e.owner is not None and os.geteuid() == 0:
                self.assertEqual((st.st_uid, st.st_gid), e.owner, p)
        st = os.stat(os.path.join(root, b"src/d/sparse"))
        self.assertEqual(st.st_size, SPARSE_SIZE)
        self.assertLess(st.st_blocks * 512, 1 << 20, "the sparse file is not sparse")
        self.assertLess(os.stat(os.path.join(root, b"src/d/holes")).st_blocks * 512, 64 << 10)

        # Lines: escaped names, one record per line.
        out = self.run_reader(data, "--format", "lines")
        lines = out.stdout.decode().split("\n")
        recs = [ln.split("\t") for ln in lines if ln.startswith("entry\t")]
        self.assertEqual(len(recs), len(entries))
        self.assertTrue(all(len(r) == 16 for r in recs), recs)
        self.assertEqual(recs[4][2], "d/e/new\\nline\\ttab\\\\back\\x01\\x7f\\xc2\\x85")
        self.assertEqual(recs[8][14], "4096+4096,%d+100" % (SPARSE_SIZE - 100))
        self.assertEqual(recs[7][14], "")
        self.assertIn("source\tempty", lines)
        self.assertIn("signer\t-", lines)
        self.assertEqual([ln for ln in lines if ln.startswith("xattr\t")],
                         ["xattr\tsrc\td/sparse\tuser.a\t31", "xattr\tsrc\td/sparse\tuser.b\t00ff",
                          "xattr\tzz.other\tempty-folder\tuser.folder\t66"])

    def test_dump_without_owners_drops_setuid(self):
        sources, entries = tree()
        data = write(entries, sources, [cert("recipient")])
        dump = os.path.join(self.dir, "dump")
        os.mkdir(dump)
        out = self.run_reader(data, "--dump", dump, "--no-owner")
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(dump, "src/d/big.bin")).st_mode), 0o755)
        # A second dump over the first refuses (nothing is replaced).
        out = self.run_reader(data, "--dump", dump)
        self.assertEqual(out.returncode, 2, out.stderr.decode())

    def test_dump_never_writes_through_a_symlink(self):
        data = write([Entry("folder", 0, b"d"), Entry("file", 0, b"d/x", b"x")], ["s"], [cert("recipient")])
        dump = os.path.join(self.dir, "dump")
        os.makedirs(os.path.join(self.dir, "elsewhere"))
        os.mkdir(dump)
        os.symlink(os.path.join(self.dir, "elsewhere"), os.path.join(dump, "s"))
        out = self.run_reader(data, "--dump", dump)
        self.assertEqual(out.returncode, 2, out.stderr.decode())
        self.assertEqual(os.listdir(os.path.join(self.dir, "elsewhere")), [])

    def test_empty_archive(self):
        data = write([], ["only"], [cert("recipient")])
        out = self.run_reader(data)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        s = json.loads(out.stdout)
        self.assertEqual((s["entries"], s["sources"], s["frames"], s["pieces"]), ([], ["only"], 0, 0))

    def test_signatures(self):
        key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        pems = []
        for k in (key, other):
            pems.append(os.path.join(self.dir, "pub%d.pem" % len(pems)))
            with open(pems[-1], "wb") as f:
                f.write(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        fp = hashlib.sha256(b"ibs-signer-ed25519\0" + raw).hexdigest()
        entries = [Entry("file", 0, b"f", b"data")]
        signed = write(entries, ["s"], [cert("recipient")], signer=key)
        out = self.run_reader(signed)
        self.assertEqual(json.loads(out.stdout)["signer"], fp)
        out = self.run_reader(signed, "--trust-signer", pems[1], "--trust-signer", pems[0])
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        err = self.fails(signed, "open", "signature", "--trust-signer", pems[1])
        self.assertIn(fp, err)
        unsigned = write(entries, ["s"], [cert("recipient")])
        self.fails(unsigned, "open", "signature", "--trust-signer", pems[0])
        # --allow-unsigned accepts a version 1 archive (it predates
        # signatures), never an unsigned version 2 one.
        err = self.fails(unsigned, "open", "signature", "--trust-signer", pems[0], "--allow-unsigned")
        self.assertIn("version 1 archives only", err)
        v1 = slurp(HERE, "..", "tests", "vectors", "v1", "ok-basic.ibs")
        self.fails(v1, "open", "signature", "--trust-signer", pems[0])
        # A bad signature is an error whoever is trusted; so is a changed footer field it covers.
        bad = bytearray(signed)
        bad[-64 - 30] ^= 1
        self.fails(bytes(bad), "open", "signature")
        bad = bytearray(signed)
        bad[-64 + 16] ^= 4  # chunk count
        self.fails(bytes(bad), "open", "signature")
        # A non-canonical S (S + L) is refused even though OpenSSL would too.
        L = 2 ** 252 + 27742317777372353535851937790883648493
        bad = bytearray(signed)
        s = int.from_bytes(bad[-64 - 32:-64], "little") + L
        bad[-64 - 32:-64] = s.to_bytes(32, "little")
        self.fails(bytes(bad), "open", "signature")

    def test_damage(self):
        sources, entries = tree()
        data = write(entries, sources, [cert("recipient")], piece_bytes=100, compress=False)
        n = len(data)
        root_offset, root_len = struct.unpack("<QI", data[n - 64:n - 52])
        s = json.loads(self.run_reader(data).stdout)
        self.assertGreater(s["frames"], 3)

        def flip(at, bit=1):
            b = bytearray(data)
            b[at] ^= bit
            return bytes(b)

        self.fails(flip(n - 1), "inspect", "footer")
        self.fails(flip(n - 10), "inspect", "footer")  # reserved
        self.fails(flip(n - 20), "inspect", "footer")  # archive id
        self.fails(flip(n - 64 + 12), "inspect", "footer")  # signature block length
        self.fails(flip(n - 64 + 8), "inspect", "archive")  # root length
        self.fails(flip(n - 65), "open", "signature")  # unsigned block 0x00 -> 0x01
        self.fails(flip(n - 64 + 16), "open", "root")  # chunk count: the root opens at the wrong counter
        self.fails(flip(root_offset + 3), "open", "root")
        self.fails(flip(hlen(data) - 1), "open", "header")
        self.fails(data + b"x", "inspect", "footer")
        # The first piece and the first data frame, found from the root's layout.
        self.fails(flip(hlen(data) + 20), "verify", first_chunk_region(data))
        self.fails(flip(root_offset - 30), "verify", last_chunk_region(data))

    def test_rules(self):
        c = [cert("recipient")]
        E = Entry

        def bad(entries, region="piece 0", sources=("s",)):
            # A valid first entry: the root checks the first key of each piece.
            entries = [E("file", 0, b"0")] + entries
            err = self.fails(write(entries, list(sources), c), "verify" if region != "root" else "open", region)
            if os.environ.get("SHOW_ERRORS"):
                print(err.splitlines()[0])

        bad([E("file", 0, b"b"), E("file", 0, b"a")])  # order
        bad([E("file", 0, b"a"), E("file", 0, b"a")])  # duplicate
        bad([E("folder", 0, b"a"), E("file", 0, b"a-b"), E("file", 0, b"a/b")])  # segment-wise order
        bad([E("file", 0, b"a/b")])  # no parent
        bad([E("file", 0, b"a"), E("file", 0, b"a/b")])  # parent not a folder
        bad([E("symlink", 0, b"l", target=b"."), E("file", 0, b"l/x")])  # through a link
        bad([E("folder", 0, b"a"), E("folder", 0, b"a/b"), E("file", 0, b"a/b/c/d")])  # grandparent only
        bad([E("hardlink", 0, b"a", target=b"b"), E("file", 0, b"b")])  # later target
        bad([E("folder", 0, b"a"), E("hardlink", 0, b"b", target=b"a")])  # not a file
        bad([E("file", 0, b"a"), E("hardlink", 1, b"b", target=b"a")], sources=("s", "t"))  # other source
        bad([E("file", 0, b"a/../b")])
        bad([E("file", 0, b"a//b")])
        bad([E("file", 0, b"/abs")])
        bad([E("file", 0, b"x" * 256)])
        bad([E("file", 0, b"nul\0")])
        bad([E("file", 0, b"f", b"abcd", extents=[(0, 2), (1, 2)])])  # overlapping
        bad([E("file", 0, b"f", b"abcd", extents=[(2, 4)])])  # past the size
        bad([E("file", 0, b"f", b"abcd", extents=[(0, 0)])])  # empty
        bad([E("file", 0, b"f", xattrs=[(b"b", b""), (b"a", b"")])])  # names not increasing
        bad([E("file", 0, b"f", xattrs=[(b"a", b"x" * 65536)])])  # too large
        bad([E("file", 0, b"f", mode=0o10000)])
        bad([E("file", 0, b"f", mtime=(0, 10 ** 9))])
        bad([E("symlink", 0, b"l", target=b"")])
        bad([E("file", 3, b"f")])  # source index
        bad([E("file", 0, b"f")], "root", sources=("s", "s"))
        bad([E("file", 0, b"f")], "root", sources=("..",))
        bad([E("file", 0, b"f")], "root", sources=("a/b",))
        # The limits themselves are fine.
        ok = write([E("file", 0, b"f", xattrs=[(b"a", b"x" * 65535)]),
                    E("file", 0, b"x" * 255), E("symlink", 0, b"y", target=b"t" * 4096)], ["s"], c)
        out = self.run_reader(ok)
        self.assertEqual(out.returncode, 0, out.stderr.decode())

    def test_manifest(self):
        data = write([Entry("file", 0, b"f", b"data")], ["s"], [cert("other"), cert("recipient")],
                     created=1763788530, producer="1.2408.0.21")
        s = json.loads(self.run_reader(data).stdout)
        folder = os.path.join(self.dir, "20251122T051530Z-001a2b3c")
        os.mkdir(folder)

        def manifest(**change):
            fields = [("id", "20251122T051530Z-001a2b3c"), ("archive-id", s["archive_id"]),
                      ("archive-size", str(len(data))), ("archive-sha256", hashlib.sha256(data).hexdigest()),
                      ("created", "1763788530"), ("producer-version", "1.2408.0.21"),
                      ("fqdn", "azs.contoso.com"), ("region", "local")]
            fields += [("recipient", r) for r in s["recipients"]]
            fields = [(k, change.get(k.replace("-", "_"), v)) for k, v in fields]
            text = "ibs-backup-manifest 1\n" + "".join("%s: %s\n" % kv for kv in fields if kv[1] is not None)
            path = os.path.join(folder, "backup.manifest")
            with open(path, "w") as f:
                f.write(text + change.get("extra", ""))
            return path

        out = self.run_reader(data, "--manifest", manifest(extra="future-key: ignored\r\n"))
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        for change in [dict(archive_size=str(len(data) + 1)), dict(archive_sha256="0" * 64),
                       dict(archive_id="0" * 32), dict(created="1"), dict(producer_version="1.2408.0.22"),
                       dict(recipient=s["recipients"][0]), dict(id="20251122T051530Z-001a2b3d"),
                       dict(id="not an id"), dict(region=None), dict(extra="id: again\n"),
                       dict(extra="bad\x01: x\n")]:
            self.fails(data, "inspect", "manifest", "--manifest", manifest(**change))
        # Version 1 archives have manifests too.
        v1 = slurp(HERE, "..", "tests", "vectors", "v1", "ok-basic.ibs")
        self.fails(v1, "inspect", "manifest", "--manifest", manifest())


def hlen(data):
    return struct.unpack("<I", data[10:14])[0]


def layout(data):
    """(kind, number) of each chunk in file order, from the test writer's
    habit: it seals pieces after the frames their entries filled."""
    sys.path.insert(0, HERE)
    import read_archive as ra
    key = serialization.load_pem_private_key(slurp(DATA, "recipient.key"), None)
    h = ra.inspect(data)
    _, _, root = ra.open_v2(data, h, key, None)
    chunks = [(f[1], "frame %d" % k) for k, f in enumerate(root["frames"])]
    chunks += [(p["offset"], "piece %d" % i) for i, p in enumerate(root["pieces"])]
    return [name for _, name in sorted(chunks)]


def first_chunk_region(data):
    return layout(data)[0]


def last_chunk_region(data):
    return layout(data)[-1]


if __name__ == "__main__":
    unittest.main()
