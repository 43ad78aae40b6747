//! Regenerates the version 2 test vectors in `tests/vectors/v2/` (committed;
//! run only when the set of vectors changes):
//!
//! ```text
//! cargo run -p ibs-archive --example make_vectors
//! ```
//!
//! Every vector is `NAME.ibs` with `NAME.expect` beside it, saying what a reader
//! must report (see `tests/vectors/README.md`). Archives are encrypted to the
//! committed key pair in `tests/data/` (`recipient`) and signed archives by the
//! committed signing key (`tests/data/signer.sign.key`), so any implementation
//! can check them. The bytes differ on every run (file keys, salts and archive
//! ids are random); the expectations do not.
//!
//! `tests/vectors/v1/` holds the version 1 vectors, made by the last version 1
//! writer: frozen, never regenerated, and never touched by this program.
//!
//! Valid archives come from [`ArchiveWriter`]. The writer refuses what the
//! negative vectors need (entries out of order, a hard link to a folder, a
//! name with NUL, …), so those are put together here from the sans-IO pieces
//! ([`seal_header`](ibs_archive::fuzzing::seal_header), [`ArchiveKeys::seal_chunk`], [`encode_entry`],
//! [`Root`], [`FooterV2`], [`signature_message`]): see [`Craft`].
// A generator run by hand: a broken assumption should stop it loudly.
#![allow(clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ibs_archive::fuzzing::format::{ArchiveKeys, COMPRESSION_ZSTD, FORMAT_VERSION, MIN_FRAME_SIZE};
use ibs_archive::fuzzing::v2::{FOOTER_LEN_V2, FooterV2, PieceRecord, Root, encode_entry, signature_message};
use ibs_archive::{
    ArchiveId, ArchiveWriter, EMPTY_SHA256, Entry, EntryKind, EntryMeta, Extent, Header, HeaderFields, WriterOptions,
    escape_bytes,
};
use ibs_envelope::{Certificate, FileKey, SigningKey};
use ibs_testkit::data::noise;
use sha2::{Digest, Sha256};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Every vector uses the smallest frames, so a few KiB span several.
const FRAME: u32 = MIN_FRAME_SIZE;
/// 2025-11-22T00:00:00Z.
const CREATED: i64 = 1_763_769_600;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("{{\"objectId\":{i},\"displayName\":\"user{i}\",\"enabled\":true}}\n").as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The committed signing key: `tests/data/signer.sign.key`, made once from a
/// fixed seed (written with its public half when missing).
fn signer() -> Res<Arc<SigningKey>> {
    let path = data("signer.sign.key");
    if !path.exists() {
        let seed: [u8; 32] = Sha256::digest(b"ibs-archive test vectors signer").into();
        let key = SigningKey::from_seed(&seed);
        std::fs::write(&path, key.to_pem().as_bytes())?;
        std::fs::write(data("signer.sign.pub"), key.verifying_key().to_pem())?;
    }
    Ok(Arc::new(SigningKey::from_file(&path)?))
}

// ------------------------------------------------------------ entries

/// An entry as a vector means it, with its stream bytes: what the writer is
/// given, what the crafted archives encode, and what `.expect` lists.
#[derive(Clone)]
struct V {
    e: Entry,
    data: Vec<u8>,
}

fn file(source: &str, path: impl AsRef<[u8]>, data: Vec<u8>) -> V {
    let e = Entry::file(
        source,
        path.as_ref().to_vec(),
        data.len() as u64,
        Sha256::digest(&data).into(),
    );
    V { e, data }
}

fn other_kind(source: &str, path: impl AsRef<[u8]>, kind: EntryKind) -> V {
    let mut e = Entry::file(source, path.as_ref().to_vec(), 0, EMPTY_SHA256);
    e.kind = kind;
    V { e, data: Vec::new() }
}

fn folder(source: &str, path: impl AsRef<[u8]>) -> V {
    other_kind(source, path, EntryKind::Folder)
}

fn symlink(source: &str, path: impl AsRef<[u8]>, target: &[u8]) -> V {
    other_kind(
        source,
        path,
        EntryKind::Symlink {
            target: target.to_vec(),
        },
    )
}

fn hard_link(source: &str, path: impl AsRef<[u8]>, target: &[u8]) -> V {
    other_kind(
        source,
        path,
        EntryKind::HardLink {
            target: target.to_vec().into(),
        },
    )
}

impl V {
    fn mode(mut self, mode: u32) -> Self {
        self.e.mode = Some(mode);
        self
    }
    fn mtime(mut self, secs: i64, nanos: u32) -> Self {
        self.e.mtime = Some(secs);
        self.e.mtime_nanos = nanos;
        self
    }
    fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.e.owner = Some((uid, gid));
        self
    }
    fn names(mut self, user: &[u8], group: &[u8]) -> Self {
        self.e.owner_names = Some((user.to_vec(), group.to_vec()));
        self
    }
    fn xattr(mut self, name: &[u8], value: &[u8]) -> Self {
        self.e.xattrs.push((name.to_vec(), value.to_vec()));
        self
    }
    /// A sparse file of `size` bytes whose data (already in `self.data`) lies in `extents`.
    fn sparse(mut self, size: u64, extents: &[(u64, u64)]) -> Self {
        self.e.size = size;
        self.e.extents = Some(extents.iter().map(|&(offset, len)| Extent { offset, len }).collect());
        self
    }

    /// What the writer is given for it.
    fn meta(&self) -> EntryMeta {
        let e = &self.e;
        let mut m = EntryMeta::new(e.source.clone(), e.path.clone());
        match &e.kind {
            EntryKind::File => {}
            EntryKind::Folder => m = m.folder(),
            EntryKind::Symlink { target } => m = m.symlink(target.clone()),
            EntryKind::HardLink { target } => m = m.hard_link(target.clone()),
        }
        if let Some(mode) = e.mode {
            m = m.mode(mode);
        }
        if let Some(secs) = e.mtime {
            m = m.mtime_ns(secs, e.mtime_nanos);
        }
        if let Some((u, g)) = e.owner {
            m = m.owner(u, g);
        }
        if let Some((u, g)) = &e.owner_names {
            m = m.owner_names(u.clone(), g.clone());
        }
        if let Some(x) = &e.extents {
            m = m.sparse(e.size, x.clone());
        }
        for (n, v) in &e.xattrs {
            m = m.xattr(n.clone(), v.clone());
        }
        m
    }
}

/// One `entry:` line of a version 2 `.expect` (tests/vectors/README.md).
fn entry_line(e: &Entry) -> String {
    let mut s = format!("entry: {}/{}", e.source, escape_bytes(e.path.as_bytes()));
    if e.is_file() {
        let _ = write!(s, " {} {}", e.size, hex(&e.sha256));
    } else {
        s.push_str(" - -");
    }
    let _ = write!(s, " kind={}", e.kind.name());
    if let Some(m) = e.mode {
        let _ = write!(s, " mode={m:04o}");
    }
    if let Some((u, g)) = e.owner {
        let _ = write!(s, " uid={u} gid={g}");
    }
    if let Some((u, g)) = &e.owner_names {
        let _ = write!(s, " user={} group={}", escape_bytes(u), escape_bytes(g));
    }
    if let Some(t) = e.mtime {
        let _ = write!(s, " mtime={t} mtime_ns={}", e.mtime_nanos);
    }
    if let Some(x) = &e.extents {
        let list: Vec<String> = x.iter().map(|x| format!("{}+{}", x.offset, x.len)).collect();
        let _ = write!(s, " extents={}", list.join(","));
    }
    match &e.kind {
        EntryKind::Symlink { target } => {
            let _ = write!(s, " target={}", escape_bytes(target));
        }
        EntryKind::HardLink { target } => {
            let _ = write!(s, " target={}", escape_bytes(target.as_bytes()));
        }
        _ => {}
    }
    for (n, v) in &e.xattrs {
        let _ = write!(s, " xattr={}={}", escape_bytes(n), hex(v));
    }
    s
}

fn ok_expect(description: &str, signer: Option<&Arc<SigningKey>>, sources: &[&str], entries: &[V]) -> String {
    let mut s = format!("# {description}\nexpect: ok\n");
    match signer {
        Some(k) => {
            let _ = writeln!(s, "signer: {}", k.verifying_key().fingerprint());
        }
        None => s.push_str("signer: none\n"),
    }
    let _ = writeln!(s, "sources: {}", sources.join(" "));
    let _ = writeln!(s, "entries: {}", entries.len());
    for v in entries {
        s.push_str(&entry_line(&v.e));
        s.push('\n');
    }
    s
}

fn err_expect(description: &str, stage: &str, kind: &str, region: &str) -> String {
    format!("# {description}\nexpect: error\nstage: {stage}\nkind: {kind}\nregion: {region}\n")
}

// ------------------------------------------------------------ valid archives

/// Writes `entries` with the writer, recording `sources` (in this order; the
/// ones without entries too).
fn write(
    recipients: &[&Certificate],
    signer: Option<&Arc<SigningKey>>,
    sources: &[&str],
    entries: &[V],
) -> Res<Vec<u8>> {
    let mut options = WriterOptions::default()
        .frame_size(FRAME)
        .created(CREATED)
        .producer_version("1.2511.0.1")
        .label("fqdn", "azs.contoso.com")
        .label("region", "local");
    if let Some(k) = signer {
        options = options.signer(Arc::clone(k));
    }
    let mut w = ArchiveWriter::new(Vec::new(), recipients, options)?;
    let mut entries = entries.iter().peekable();
    for s in sources {
        w.add_source(s)?;
        while let Some(v) = entries.next_if(|v| v.e.source == *s) {
            let got = w.add_entry(v.meta(), &v.data[..])?;
            assert_eq!(entry_line(&got), entry_line(&v.e), "the writer recorded what was asked");
        }
    }
    assert!(entries.next().is_none(), "every entry's source is listed");
    Ok(w.finish()?.0)
}

// ------------------------------------------------------------ crafting

/// Puts version 2 archives together chunk by chunk, for the negative vectors
/// the writer refuses to make. Everything is stored (not compressed).
struct Craft {
    keys: ArchiveKeys,
    header: Header,
    digest: [u8; 32],
    signer: Option<Arc<SigningKey>>,
}

/// A chunk to seal: a data frame's plaintext, or the entries of an index piece.
enum Chunk {
    Frame(Vec<u8>),
    Piece(Vec<(u16, Entry)>),
}

/// A sealed chunk, with what its piece record needs; `listed: false` puts
/// it in the file without the root knowing of it.
#[derive(Clone)]
struct Sealed {
    bytes: Vec<u8>,
    piece: Option<(u32, u64, u16, Vec<u8>)>,
    listed: bool,
}

/// A crafted archive and where its parts are.
struct Built {
    bytes: Vec<u8>,
    /// Start of each chunk sealed, in file order.
    chunk_at: Vec<usize>,
    root_at: usize,
    signature_at: usize,
}

impl Built {
    fn footer_at(&self) -> usize {
        self.bytes.len() - FOOTER_LEN_V2
    }
}

impl Craft {
    fn new(cert: &Certificate, signer: Option<&Arc<SigningKey>>) -> Res<Self> {
        Self::with_header_signer(cert, signer, signer.map(|k| *k.verifying_key().as_bytes()))
    }

    /// `header_signer` is the public key the header names (`signer` signs).
    fn with_header_signer(
        cert: &Certificate,
        signer: Option<&Arc<SigningKey>>,
        header_signer: Option<[u8; 32]>,
    ) -> Res<Self> {
        let file_key = FileKey::generate()?;
        let salt = ibs_envelope::generate_salt()?;
        let keys = ArchiveKeys::derive(&file_key, &salt);
        let header = ibs_archive::fuzzing::seal_header(
            HeaderFields {
                archive_id: ArchiveId::generate()?,
                created: CREATED,
                frame_size: FRAME,
                compression: COMPRESSION_ZSTD,
                salt,
                commitment: *keys.commitment(),
                producer_version: "1.2511.0.1".into(),
                labels: Vec::new(),
                recipients: ibs_envelope::wrap_file_key(&file_key, &[cert])?,
                version: FORMAT_VERSION,
                signer: header_signer,
            },
            &keys,
        )?;
        Ok(Craft {
            digest: header.digest(),
            keys,
            header,
            signer: signer.cloned(),
        })
    }

    /// Seals each chunk as the one at its position (chunk `c`, `last = 0`).
    fn seal(&self, chunks: Vec<Chunk>) -> Res<Vec<Sealed>> {
        let mut stream = 0u64;
        let mut out = Vec::new();
        for (c, chunk) in chunks.into_iter().enumerate() {
            let (plain, piece) = match chunk {
                Chunk::Frame(plain) => (plain, None),
                Chunk::Piece(entries) => {
                    let mut raw = (entries.len() as u32).to_le_bytes().to_vec();
                    for (s, e) in &entries {
                        encode_entry(&mut raw, e, *s);
                    }
                    let (s, first) = &entries[0];
                    let info = (entries.len() as u32, stream, *s, first.path.as_bytes().to_vec());
                    stream += entries.iter().map(|(_, e)| e.stream_len()).sum::<u64>();
                    (raw, Some(info))
                }
            };
            out.push(Sealed {
                bytes: self.keys.seal_chunk(&self.digest, c as u64, false, &plain, None)?,
                piece,
                listed: true,
            });
        }
        Ok(out)
    }

    /// Lays the chunks out after the header, lists the listed ones in a
    /// root (`tweak` may change it), seals it as the last chunk, signs, and
    /// appends the footer.
    fn assemble(&self, sources: &[&str], chunks: &[Sealed], tweak: impl FnOnce(&mut Root)) -> Res<Built> {
        let mut bytes = self.header.as_bytes().to_vec();
        let mut root = Root {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            ..Root::default()
        };
        let mut chunk_at = Vec::new();
        for ch in chunks {
            chunk_at.push(bytes.len());
            if ch.listed {
                match &ch.piece {
                    None => root.frame_lens.push(ch.bytes.len() as u32),
                    Some((entries, stream_offset, first_source, first_path)) => {
                        root.entry_count += u64::from(*entries);
                        root.pieces.push(PieceRecord {
                            offset: bytes.len() as u64,
                            sealed_len: ch.bytes.len() as u32,
                            frames_before: root.frame_lens.len() as u64,
                            sha256: Sha256::digest(&ch.bytes).into(),
                            entries: *entries,
                            stream_offset: *stream_offset,
                            first_source: *first_source,
                            first_path: first_path.clone(),
                        });
                    }
                }
            }
            bytes.extend_from_slice(&ch.bytes);
        }
        // The data length: every frame full but the last.
        let frames = root.frame_lens.len() as u64;
        let last_plain = chunks
            .iter()
            .rev()
            .find(|c| c.listed && c.piece.is_none())
            .map_or(0, |c| c.bytes.len() as u64 - 17);
        root.data_len = frames.saturating_sub(1) * u64::from(FRAME) + last_plain;
        tweak(&mut root);
        let counter = root.frame_lens.len() as u64 + root.pieces.len() as u64;
        let sealed_root = self
            .keys
            .seal_chunk(&self.digest, counter, true, &root.encode(), None)?;
        let footer = FooterV2 {
            root_offset: bytes.len() as u64,
            root_len: sealed_root.len() as u32,
            signature_len: if self.signer.is_some() { 65 } else { 1 },
            chunk_count: counter + 1,
            frame_count: root.frame_lens.len() as u64,
            archive_id: self.header.fields().archive_id,
        }
        .encode();
        let root_at = bytes.len();
        bytes.extend_from_slice(&sealed_root);
        let signature_at = bytes.len();
        match &self.signer {
            None => bytes.push(0),
            Some(k) => {
                bytes.push(1);
                bytes.extend_from_slice(&k.sign(&signature_message(&self.digest, &sealed_root, &footer)));
            }
        }
        bytes.extend_from_slice(&footer);
        Ok(Built {
            bytes,
            chunk_at,
            root_at,
            signature_at,
        })
    }

    /// The usual shape: the entries' data in frames, then one index piece
    /// per group of entries (all of source 0 unless a group says otherwise).
    fn simple(&self, sources: &[&str], groups: &[Vec<V>]) -> Res<Built> {
        let chunks = self.seal(layout(sources, groups))?;
        self.assemble(sources, &chunks, |_| {})
    }
}

/// Frames of the groups' data, then one piece per group.
fn layout(sources: &[&str], groups: &[Vec<V>]) -> Vec<Chunk> {
    let stream: Vec<u8> = groups.iter().flatten().flat_map(|v| v.data.clone()).collect();
    let mut chunks: Vec<Chunk> = stream
        .chunks(FRAME as usize)
        .map(|f| Chunk::Frame(f.to_vec()))
        .collect();
    for g in groups {
        chunks.push(Chunk::Piece(
            g.iter()
                .map(|v| {
                    let s = sources.iter().position(|s| *s == v.e.source).expect("listed source");
                    (s as u16, v.e.clone())
                })
                .collect(),
        ));
    }
    chunks
}

/// Reads the footer of a version 2 archive: (root offset, root length).
fn root_span(bytes: &[u8]) -> (usize, usize) {
    let f = &bytes[bytes.len() - FOOTER_LEN_V2..];
    let offset = u64::from_le_bytes(f[0..8].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(f[8..12].try_into().expect("4 bytes"));
    (offset as usize, len as usize)
}

fn main() -> Res<()> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/v2");
    std::fs::create_dir_all(&out)?;
    for f in std::fs::read_dir(&out)? {
        let p = f?.path();
        if matches!(p.extension().and_then(|e| e.to_str()), Some("ibs" | "expect")) {
            std::fs::remove_file(p)?;
        }
    }
    let cert = Certificate::from_file(data("recipient.cer"))?;
    let other = Certificate::from_file(data("other.cer"))?;
    let key = signer()?;
    let signed = Some(&key);
    let save = |name: &str, bytes: &[u8], expect: String| -> Res<()> {
        std::fs::write(out.join(format!("{name}.ibs")), bytes)?;
        std::fs::write(out.join(format!("{name}.expect")), expect)?;
        Ok(())
    };
    let ok = |name: &str,
              description: &str,
              recipients: &[&Certificate],
              signer: Option<&Arc<SigningKey>>,
              sources: &[&str],
              entries: &[V]|
     -> Res<Vec<u8>> {
        let bytes = write(recipients, signer, sources, entries)?;
        save(name, &bytes, ok_expect(description, signer, sources, entries))?;
        Ok(bytes)
    };

    // ---------------------------------------------------------------- valid

    let kinds = vec![
        folder("host", "conf").mode(0o755),
        file("host", "conf/app.json", text(6000)).mode(0o644),
        hard_link("host", "conf/app.link", b"conf/app.json"),
        symlink("host", "conf/current", b"app.json"),
        symlink("host", "conf/dangling", b"missing/nowhere"),
        folder("host", "conf/empty").mode(0o750),
        symlink("host", "conf/etc-hosts", b"/etc/hosts"),
        file("host", "top.txt", b"top\n".to_vec()),
    ];
    let kinds_bytes = ok(
        "ok-kinds",
        "every entry kind: folders (one empty, mode 0750), a file, a hard link to it, relative, dangling and absolute symbolic links; signed",
        &[&cert],
        signed,
        &["host"],
        &kinds,
    )?;
    let names = vec![
        file("names", b"back\\slash", b"1".to_vec()),
        file("names", b"bad\xff.txt", b"2".to_vec()),
        file("names", "caf\u{e9}.txt", b"3".to_vec()),
        folder("names", b"dir\xfe"),
        file("names", b"dir\xfe/inner", b"4".to_vec()),
        file("names", b"new\nline", b"5".to_vec()),
        file("names", b"tab\there", b"6".to_vec()),
    ];
    ok(
        "ok-names",
        "names as bytes: a backslash, invalid UTF-8 (also a folder), UTF-8, a newline, a tab; signed",
        &[&cert],
        signed,
        &["names"],
        &names,
    )?;
    let meta = vec![
        folder("meta", "sticky")
            .mode(0o1777)
            .owner(0, 0)
            .names(b"root", b"root"),
        file("meta", "sticky/1900.txt", b"old".to_vec()).mtime(-2_208_988_800, 0),
        file("meta", "sticky/1969.txt", b"just before".to_vec()).mtime(-1, 999_999_999),
        file("meta", "sticky/ns.txt", b"precise".to_vec())
            .mode(0o4755)
            .mtime(1_763_700_000, 123_456_789)
            .owner(1000, 1000)
            .names(b"alice", b""),
        file("meta", "sticky/xattrs.txt", b"labelled".to_vec())
            .owner(4_294_967_294, 65_534)
            .names(b"nobody", b"nogroup")
            .xattr(b"security.selinux", b"system_u:object_r:etc_t:s0\0")
            .xattr(b"user.bin", &[0, 1, 2, 0xff])
            .xattr(b"user.comment", b"hello"),
    ];
    ok(
        "ok-metadata",
        "modes with setuid and sticky bits, owner ids and names (one unknown), mtimes before 1970 and with nanoseconds, extended attributes; signed",
        &[&cert],
        signed,
        &["meta"],
        &meta,
    )?;
    let sparse = vec![
        file("disk", "holes-only.img", Vec::new()).sparse(10_000, &[]),
        file("disk", "vm.img", noise(4096 + 5000, 11)).sparse(65_536, &[(8192, 4096), (20_000, 5000)]),
        file("disk", "z-after.txt", text(100)),
    ];
    ok(
        "ok-sparse",
        "sparse files: holes at the start, middle and end (data spans three frames); one of holes only; a dense file after them; signed",
        &[&cert],
        signed,
        &["disk"],
        &sparse,
    )?;
    let two = vec![file("rm", "plans.json", text(3000))];
    ok(
        "ok-two-recipients",
        "encrypted to two certificates (other, recipient); either key opens it; signed",
        &[&other, &cert],
        signed,
        &["rm"],
        &two,
    )?;
    let sources = vec![file("b-full", "only.txt", b"only".to_vec())];
    ok(
        "ok-empty-sources",
        "three sources, the first and last without entries (each restores as an empty folder); signed",
        &[&cert],
        signed,
        &["a-empty", "b-full", "c-empty"],
        &sources,
    )?;
    ok(
        "ok-empty",
        "no sources and no entries: no data frames, no index piece, only the root; unsigned",
        &[&cert],
        None,
        &[],
        &[],
    )?;
    let many: Vec<V> = (0..2100)
        .map(|i| {
            file("many", format!("f{i:04}"), format!("entry {i:04} data\n").into_bytes())
                .mode(0o600)
                .mtime(1_700_000_000 + i, 0)
        })
        .collect();
    ok(
        "ok-many-pieces",
        "2100 small entries: more than 64 KiB of index, so three index pieces, each sealed between data frames; signed",
        &[&cert],
        signed,
        &["many"],
        &many,
    )?;
    let basic = [
        file("ca", "root.cer", noise(1500, 1)).mode(0o644),
        file("identity", "directory/users.json", text(20_000))
            .mode(0o600)
            .mtime(1_763_700_000, 0),
        file("key-vault", "vaults/v1.bin", noise(9000, 2)),
        file("rbac", "assignments/empty.json", Vec::new()),
    ];
    let basic_with_parents: Vec<V> = vec![
        basic[0].clone(),
        folder("identity", "directory"),
        basic[1].clone(),
        folder("key-vault", "vaults"),
        basic[2].clone(),
        folder("rbac", "assignments"),
        basic[3].clone(),
    ];
    let unsigned_bytes = ok(
        "ok-unsigned",
        "files in four sources: text spanning frames (zstd), blobs (stored), an empty file; unsigned",
        &[&cert],
        None,
        &["ca", "identity", "key-vault", "rbac"],
        &basic_with_parents,
    )?;
    let boundaries = vec![
        file("a", "one-frame", noise(FRAME as usize, 3)),
        file("a", "two-frames", text(2 * FRAME as usize)),
    ];
    ok(
        "ok-frame-boundaries",
        "files ending exactly on frame boundaries; unsigned",
        &[&cert],
        None,
        &["a"],
        &boundaries,
    )?;

    // ---------------------------------------------------------------- crafted, invalid

    let craft = Craft::new(&cert, None)?;
    let piece0 = |name: &str, description: &str, kind: &str, entries: Vec<V>| -> Res<()> {
        let b = craft.simple(&["s"], &[entries])?;
        save(name, &b.bytes, err_expect(description, "verify", kind, "piece 0"))
    };
    piece0(
        "bad-tree-through-symlink",
        "a symbolic link l, then an entry l/x: written through a link (the tree rule)",
        "Malformed",
        vec![symlink("s", "l", b"/tmp"), file("s", "l/x", b"x".to_vec())],
    )?;
    piece0(
        "bad-tree-no-parent",
        "an entry a/b without a folder entry a before it (the tree rule)",
        "Malformed",
        vec![file("s", "a/b", b"x".to_vec())],
    )?;
    piece0(
        "bad-hardlink-to-later",
        "a hard link a to b, which comes after it",
        "Malformed",
        vec![hard_link("s", "a", b"b"), file("s", "b", b"x".to_vec())],
    )?;
    piece0(
        "bad-hardlink-to-missing",
        "a hard link c to b, which is not in the archive",
        "Malformed",
        vec![file("s", "a", b"x".to_vec()), hard_link("s", "c", b"b")],
    )?;
    piece0(
        "bad-hardlink-to-folder",
        "a hard link h to the folder d",
        "Malformed",
        vec![folder("s", "d"), hard_link("s", "h", b"d")],
    )?;
    piece0(
        "bad-name-nul",
        "a path holding a NUL byte (b\\x00c, after a)",
        "Malformed",
        vec![file("s", "a", b"x".to_vec()), file("s", b"b\0c", b"y".to_vec())],
    )?;
    piece0(
        "bad-name-dotdot",
        "a path with a '..' segment (a/../escape)",
        "Malformed",
        vec![folder("s", "a"), file("s", "a/../escape", b"x".to_vec())],
    )?;
    piece0(
        "bad-order",
        "entries out of order: b, then a",
        "Malformed",
        vec![file("s", "b", b"x".to_vec()), file("s", "a", b"y".to_vec())],
    )?;
    piece0(
        "bad-order-depth-first",
        "a-b before a/c: not in key order (a path sorts before the longer paths it prefixes, '/' lowest)",
        "Malformed",
        vec![
            folder("s", "a"),
            file("s", "a-b", b"x".to_vec()),
            file("s", "a/c", b"y".to_vec()),
        ],
    )?;
    piece0(
        "bad-repeated",
        "the entry a twice",
        "Malformed",
        vec![file("s", "a", b"x".to_vec()), file("s", "a", b"x".to_vec())],
    )?;
    piece0(
        "bad-extent-past-size",
        "a sparse file of 100 bytes with an extent [50, 150)",
        "Malformed",
        vec![file("s", "a", noise(100, 5)).sparse(100, &[(50, 100)])],
    )?;
    piece0(
        "bad-extents-overlap",
        "a sparse file whose extents [0, 50) and [40, 60) overlap",
        "Malformed",
        vec![file("s", "a", noise(70, 6)).sparse(100, &[(0, 50), (40, 20)])],
    )?;
    {
        let mut v = file("s", "a", b"content".to_vec());
        v.e.sha256 = Sha256::digest(b"other content").into();
        let b = craft.simple(&["s"], &[vec![v]])?;
        save(
            "bad-content",
            &b.bytes,
            err_expect(
                "a file whose recorded SHA-256 is not its content's",
                "verify",
                "Damaged",
                "entry",
            ),
        )?;
    }
    let b = craft.simple(
        &["s"],
        &[
            vec![file("s", "a", b"x".to_vec()), file("s", "z", b"y".to_vec())],
            vec![file("s", "m", b"z".to_vec())],
        ],
    )?;
    save(
        "bad-order-across-pieces",
        &b.bytes,
        err_expect(
            "piece 0 holds a and z, piece 1 starts with m: the first keys increase, the entries do not",
            "verify",
            "Malformed",
            "piece 1",
        ),
    )?;
    let b = craft.simple(
        &["s"],
        &[
            vec![file("s", "a", b"x".to_vec()), file("s", "b", b"y".to_vec())],
            vec![file("s", "b", b"y".to_vec())],
        ],
    )?;
    save(
        "bad-repeated-across-pieces",
        &b.bytes,
        err_expect(
            "b is the last entry of piece 0 and the first of piece 1",
            "verify",
            "Malformed",
            "piece 1",
        ),
    )?;

    // Two pieces between frames: frame 0, piece 0, frame 1, piece 1.
    let two_pieces = || -> Res<Vec<Sealed>> {
        let g0 = vec![file("s", "a", noise(FRAME as usize, 7))];
        let g1 = vec![file("s", "b", noise(1000, 8))];
        let mut chunks = layout(&["s"], &[g0.clone(), g1.clone()]);
        // layout() gives frame 0, frame 1, piece 0, piece 1: move piece 0 between the frames.
        let p0 = chunks.remove(2);
        chunks.insert(1, p0);
        craft.seal(chunks)
    };
    let sealed = two_pieces()?;
    let good = craft.assemble(&["s"], &sealed, |_| {})?;
    {
        let (p0, f1) = (good.chunk_at[1], good.chunk_at[2]);
        let mut b = good.bytes[..p0].to_vec();
        b.extend_from_slice(&good.bytes[f1..]);
        let removed = (f1 - p0) as u64;
        let n = b.len();
        let root_offset = good.root_at as u64 - removed;
        b[n - FOOTER_LEN_V2..n - FOOTER_LEN_V2 + 8].copy_from_slice(&root_offset.to_le_bytes());
        save(
            "bad-piece-removed",
            &b,
            err_expect(
                "piece 0's bytes removed (the footer's root offset moved to match): the root lists a piece that is not there",
                "open",
                "Malformed",
                "root",
            ),
        )?;
        let mut b = good.bytes.clone();
        let p1 = good.chunk_at[3];
        let len = good.root_at - p1;
        b[p1..p1 + len].copy_from_slice(&noise(len, 9));
        save(
            "bad-piece-replaced",
            &b,
            err_expect(
                "piece 1's bytes replaced by others of the same length",
                "verify",
                "Damaged",
                "piece 1",
            ),
        )?;
    }
    {
        // Pieces side by side, swapped, the root rewritten to their new
        // places and hashes: only the chunk numbers tell.
        let g0 = vec![file("s", "a", b"one".to_vec())];
        let g1 = vec![file("s", "b", b"two".to_vec())];
        let mut sealed = craft.seal(layout(&["s"], &[g0, g1]))?;
        let (x, y) = (sealed[1].bytes.clone(), sealed[2].bytes.clone());
        assert_eq!(x.len(), y.len());
        sealed[1].bytes = y;
        sealed[2].bytes = x;
        let b = craft.assemble(&["s"], &sealed, |_| {})?;
        save(
            "bad-pieces-swapped",
            &b.bytes,
            err_expect(
                "pieces 0 and 1 swapped, and the root's records rewritten to their new offsets and hashes: each opens at the wrong chunk number",
                "verify",
                "Damaged",
                "piece 0",
            ),
        )?;
    }
    {
        // Frame 0 repeated right after itself, the root not listing it.
        let g = vec![file("s", "a", noise(FRAME as usize + 100, 10))];
        let mut sealed = craft.seal(layout(&["s"], &[g]))?;
        let mut replay = sealed[0].clone();
        replay.listed = false;
        sealed.insert(1, replay);
        let b = craft.assemble(&["s"], &sealed, |_| {})?;
        save(
            "bad-extra-chunk",
            &b.bytes,
            err_expect(
                "frame 0 repeated right after itself, a chunk the root does not list",
                "open",
                "Malformed",
                "root",
            ),
        )?;
    }
    {
        let b = craft.simple(&["s"], &[vec![file("s", "a", text(100))]])?;
        let mut x = b.bytes.clone();
        x[b.root_at + 5] ^= 0x01;
        save(
            "bad-root",
            &x,
            err_expect("a bit of the sealed root flipped (unsigned)", "open", "Damaged", "root"),
        )?;
        let mut x = b.bytes.clone();
        x[b.chunk_at[0] + 5] ^= 0x01;
        save(
            "bad-frame",
            &x,
            err_expect("a bit of frame 0 flipped", "verify", "Damaged", "frame 0"),
        )?;
        let mut x = b.bytes.clone();
        x[b.chunk_at[1] + 5] ^= 0x01;
        save(
            "bad-piece-flipped",
            &x,
            err_expect(
                "a bit of piece 0 flipped (its SHA-256 in the root no longer matches)",
                "verify",
                "Damaged",
                "piece 0",
            ),
        )?;
    }

    // ---------------------------------------------------------------- signatures, footer, header

    {
        // The signature's S plus the group order L: the same point equation
        // holds, but S is not canonical (FORMAT.md §14.7: strict verification).
        let (root_at, root_len) = root_span(&kinds_bytes);
        let s_at = root_at + root_len + 1 + 32;
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut b = kinds_bytes.clone();
        let mut carry = 0u16;
        for (i, l) in L.iter().enumerate() {
            let sum = u16::from(b[s_at + i]) + u16::from(*l) + carry;
            b[s_at + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        save(
            "bad-signature-noncanonical",
            &b,
            err_expect(
                "ok-kinds with the signature's S replaced by S + L (non-canonical; a lax verifier accepts it)",
                "open",
                "Damaged",
                "signature",
            ),
        )?;
        let mut b = kinds_bytes.clone();
        b[root_at + root_len] = 0;
        save(
            "bad-signature-block-byte",
            &b,
            err_expect(
                "ok-kinds with its signature block's first byte 0 (unsigned) while the header names a signer",
                "open",
                "Malformed",
                "signature",
            ),
        )?;
        // A small-order public key (the identity point) as the header's signer.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let c = Craft::with_header_signer(&cert, Some(&key), Some(weak))?;
        let b = c.simple(&["s"], &[vec![file("s", "a", b"x".to_vec())]])?;
        save(
            "bad-signer-weak-key",
            &b.bytes,
            err_expect(
                "the header names a small-order Ed25519 public key (the identity point) as its signer: strict verification refuses it",
                "open",
                "Damaged",
                "signature",
            ),
        )?;
    }
    let (root_at, root_len) = root_span(&kinds_bytes);
    let sig_at = root_at + root_len;
    let n = kinds_bytes.len();
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = kinds_bytes.clone();
        f(&mut b);
        b
    };
    save(
        "bad-signature",
        &mutate(&|b| b[sig_at + 1 + 10] ^= 0x01),
        err_expect(
            "ok-kinds with a bit of the signature flipped",
            "open",
            "Damaged",
            "signature",
        ),
    )?;
    save(
        "bad-signed-root",
        &mutate(&|b| b[root_at + 20] ^= 0x01),
        err_expect(
            "ok-kinds with a bit of the sealed root flipped, the signature kept: refused by the signature check, before any key is used",
            "open",
            "Damaged",
            "signature",
        ),
    )?;
    save(
        "bad-signed-footer-chunk-count",
        &mutate(&|b| {
            let at = n - FOOTER_LEN_V2 + 16;
            let m = u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes")) + 1;
            b[at..at + 8].copy_from_slice(&m.to_le_bytes());
        }),
        err_expect(
            "ok-kinds with the footer's chunk count changed (a signed field)",
            "open",
            "Damaged",
            "signature",
        ),
    )?;
    save(
        "bad-signed-footer-reserved",
        &mutate(&|b| b[n - FOOTER_LEN_V2 + 50] = 1),
        err_expect(
            "ok-kinds with a reserved footer byte set (not signed: the reserved rule refuses it)",
            "inspect",
            "Malformed",
            "footer",
        ),
    )?;
    {
        let mut b = kinds_bytes[..sig_at].to_vec();
        b.push(0);
        let mut footer = kinds_bytes[n - FOOTER_LEN_V2..].to_vec();
        footer[12..16].copy_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&footer);
        save(
            "bad-signature-stripped",
            &b,
            err_expect(
                "ok-kinds with its signature block replaced by the unsigned one (0x00, footer adjusted); the header still names the signer: the footer's block length disagrees with the header",
                "inspect",
                "Malformed",
                "signature",
            ),
        )?;
    }
    {
        // A signer in the header of an archive whose signature comes from another key.
        let stranger = Arc::new(SigningKey::from_seed(&[7; 32]));
        let c = Craft::new(&cert, Some(&stranger))?;
        let mut b = c.simple(&["s"], &[vec![file("s", "a", b"x".to_vec())]])?;
        // Re-sign with the vectors' key: a valid signature, by the wrong key.
        let root = b.bytes[b.root_at..b.signature_at].to_vec();
        let footer: [u8; FOOTER_LEN_V2] = b.bytes[b.footer_at()..].try_into()?;
        let sig = key.sign(&signature_message(&c.digest, &root, &footer));
        b.bytes[b.signature_at + 1..b.signature_at + 65].copy_from_slice(&sig);
        save(
            "bad-signature-other-key",
            &b.bytes,
            err_expect(
                "signed by the vectors' key, but the header names another signer",
                "open",
                "Damaged",
                "signature",
            ),
        )?;
    }
    {
        let hlen = u32::from_le_bytes(unsigned_bytes[10..14].try_into()?) as usize;
        let mut b = unsigned_bytes.clone();
        assert_eq!(b[hlen - 33], 0, "the signer algorithm byte of an unsigned header");
        b[hlen - 33] = 2;
        save(
            "bad-signer-algorithm",
            &b,
            err_expect(
                "ok-unsigned with signer algorithm 2 in the header",
                "inspect",
                "Malformed",
                "header",
            ),
        )?;
        let mut b = unsigned_bytes.clone();
        b.truncate(b.len() - 1);
        save(
            "bad-truncated-footer",
            &b,
            err_expect("ok-unsigned without its last byte", "inspect", "Malformed", "footer"),
        )?;
        let mut b = unsigned_bytes.clone();
        b.extend_from_slice(b"trailing garbage");
        save(
            "bad-trailing-garbage",
            &b,
            err_expect("ok-unsigned with 16 bytes appended", "inspect", "Malformed", "footer"),
        )?;
        let mut b = unsigned_bytes.clone();
        b[8] = 3;
        save(
            "bad-unknown-version",
            &b,
            err_expect("format version 3", "inspect", "Malformed", "header"),
        )?;
        let mut b = unsigned_bytes.clone();
        b[hlen - 1] ^= 0x01;
        save(
            "bad-header-mac",
            &b,
            err_expect("a bit of the header MAC flipped", "open", "Damaged", "header"),
        )?;
    }
    save(
        "bad-wrong-recipient",
        &write(&[&other], None, &["rm"], &two)?,
        err_expect(
            "encrypted only to `other`; the `recipient` key cannot open it",
            "open",
            "Key",
            "key",
        ),
    )?;
    println!("vectors written to {}", out.display());
    Ok(())
}
