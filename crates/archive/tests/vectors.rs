//! The committed test vectors: the Rust reader, and an independent Python
//! reader written from FORMAT.md, must both report what each `.expect` says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{data_dir, python_failure, python_reader, recipient, region_of};
use futures::executor::block_on;
use ibs_archive::{ArchiveReader, Entry, EntryKind, Error, ErrorKind, Signer, check_signature, escape_bytes, inspect};
use ibs_envelope::VerifyingKey;

struct Expect {
    name: String,
    ok: bool,
    stage: String,
    kind: String,
    region: String,
    /// Version 2: `none` or the signer's fingerprint.
    signer: Option<String>,
    /// Version 2: the source table, in order.
    sources: Option<Vec<String>>,
    /// The `entry:` lines, as written.
    entries: Vec<String>,
}

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Every vector on disk, by name (`v1/NAME`, `v2/NAME`).
fn vector_names() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for version in ["v1", "v2"] {
        let Ok(dir) = std::fs::read_dir(vector_dir().join(version)) else {
            continue;
        };
        names.extend(
            dir.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "expect"))
                .map(|p| format!("{version}/{}", p.file_stem().unwrap().to_string_lossy())),
        );
    }
    names.sort();
    names
}

fn vector(name: &str) -> (Vec<u8>, Expect) {
    let p = &vector_dir().join(format!("{name}.expect"));
    let text = std::fs::read_to_string(p).unwrap();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{k}: "))
                    .or_else(|| (l == format!("{k}:")).then_some(""))
            })
            .map(str::to_owned)
    };
    let entries: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("entry: "))
        .map(str::to_owned)
        .collect();
    if let Some(n) = field("entries") {
        assert_eq!(n.parse::<usize>().unwrap(), entries.len(), "{}", p.display());
    }
    let expect = Expect {
        name: name.to_owned(),
        ok: field("expect").as_deref() == Some("ok"),
        stage: field("stage").unwrap_or_default(),
        kind: field("kind").unwrap_or_default(),
        region: field("region").unwrap_or_default(),
        signer: field("signer"),
        sources: field("sources").map(|s| s.split_whitespace().map(str::to_owned).collect()),
        entries,
    };
    assert!(
        expect.ok || !expect.region.is_empty(),
        "{}: an error vector names its region",
        p.display()
    );
    assert!(
        !expect.ok || name.starts_with("v1/") || (expect.signer.is_some() && expect.sources.is_some()),
        "{}: a version 2 vector names its signer and sources",
        p.display()
    );
    (std::fs::read(p.with_extension("ibs")).unwrap(), expect)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The committed signing key the signed vectors are signed with.
fn signer_key() -> VerifyingKey {
    VerifyingKey::from_file(&data_dir().join("signer.sign.pub")).unwrap()
}

/// An entry as a `.expect` line (tests/vectors/README.md): version 1 names
/// the entry, its size and SHA-256; version 2 adds its kind and every field
/// it records.
fn entry_line(e: &Entry, v2: bool) -> String {
    use std::fmt::Write as _;
    let mut s = format!("entry: {}/{}", e.source, escape_bytes(e.path.as_bytes()));
    if !v2 {
        let _ = write!(s, " {} {}", e.size, hex(&e.sha256));
        return s;
    }
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

fn kind_word(name: &str, err: &Error) -> &'static str {
    match err.kind() {
        ErrorKind::Malformed => "Malformed",
        ErrorKind::Damaged => "Damaged",
        ErrorKind::Key => "Key",
        other => panic!("{name}: unexpected kind {other:?}: {err}"),
    }
}

/// What a readable archive holds: its entries' lines, signer and sources.
struct Read {
    entries: Vec<String>,
    signer: Signer,
    sources: Vec<String>,
}

/// The Rust reader reports what vector `name` expects. Stage `inspect` is
/// keyless: header and footer ([`inspect`]). Stage `open` begins with the
/// signature (version 2; [`check_signature`], keyless, FORMAT.md §14.8 step
/// 2), and [`ArchiveReader::open`] must refuse a bad one the same way: the
/// signature is checked before any key is used.
fn check_rust(name: &str) {
    let (bytes, expect) = vector(name);
    let v2 = name.starts_with("v2/");
    let outcome: Result<Read, (&str, Error)> = block_on(async {
        let info = inspect(&bytes).await.map_err(|e| ("inspect", Error::from(e)))?;
        if let Err(e) = check_signature(&bytes, &info).await.map_err(Error::from) {
            // Opening refuses it the same way, before any key is used.
            let again = Error::from(
                ArchiveReader::open(bytes.clone(), &[recipient()])
                    .await
                    .expect_err("open accepts what check_signature refused"),
            );
            assert_eq!(region_of(&again), region_of(&e), "{name}: {again}");
            assert_eq!(again.kind(), e.kind(), "{name}: {again}");
            return Err(("open", e));
        }
        let r = ArchiveReader::open(bytes.clone(), &[recipient()])
            .await
            .map_err(|e| ("open", Error::from(e)))?;
        r.verify(None).await.map_err(|e| ("verify", Error::from(e)))?;
        let mut entries = Vec::new();
        for e in r.load_entries().await.map_err(|e| ("verify", Error::from(e)))? {
            let data = r.read_entry(&e).await.map_err(|e| ("verify", Error::from(e)))?;
            assert_eq!(data.len() as u64, e.stream_len());
            entries.push(entry_line(&e, v2));
        }
        Ok(Read {
            entries,
            signer: r.signer(),
            sources: r.sources().to_vec(),
        })
    });
    match outcome {
        Ok(read) => {
            assert!(expect.ok, "{name}: expected an error at {}, but it read", expect.stage);
            assert_eq!(read.entries, expect.entries, "{name}");
            if let Some(sources) = &expect.sources {
                assert_eq!(&read.sources, sources, "{name}");
            }
            match expect.signer.as_deref() {
                None => assert_eq!(read.signer, Signer::UnsignedV1, "{name}"),
                Some("none") => {
                    assert_eq!(read.signer, Signer::Unsigned, "{name}");
                    // Refused under trust, also where version 1 archives are allowed.
                    for allow_v1 in [false, true] {
                        let refused = read.signer.check_trust(&[signer_key()], allow_v1).unwrap_err();
                        assert_eq!(refused.kind(), ErrorKind::Untrusted, "{name}");
                    }
                }
                Some(fp) => {
                    assert_eq!(
                        read.signer.fingerprint().map(|f| f.to_string()).as_deref(),
                        Some(fp),
                        "{name}"
                    );
                    read.signer.check_trust(&[signer_key()], false).unwrap();
                }
            }
        }
        Err((stage, err)) => {
            assert!(!expect.ok, "{name}: expected to read, failed at {stage}: {err}");
            assert_eq!(stage, expect.stage, "{name}: {err}");
            assert_eq!(kind_word(name, &err), expect.kind, "{name}: {err}");
            assert_eq!(region_of(&err), expect.region, "{name}: {err}");
        }
    }
}

/// The Python reader's `--format lines` output of a version 2 archive, as
/// `.expect` lines: (entries, signer, sources).
fn python_v2_listing(stdout: &str) -> (Vec<String>, String, Vec<String>) {
    let mut entries: Vec<(String, String)> = Vec::new(); // ("source\tpath", line)
    let mut signer = String::new();
    let mut sources = Vec::new();
    let some = |v: &str| v != "-";
    for l in stdout.lines() {
        let cols: Vec<&str> = l.split('\t').collect();
        match cols[0] {
            "signer" => signer = if cols[1] == "-" { "none".into() } else { cols[1].into() },
            "source" => sources.push(cols[1].to_owned()),
            "entry" => {
                let c = &cols[1..];
                assert_eq!(c.len(), 15, "entry record of 15 columns: {l:?}");
                let mut s = format!("entry: {}/{}", c[0], c[1]);
                if c[7] == "file" {
                    s.push_str(&format!(" {} {}", c[2], c[3]));
                } else {
                    s.push_str(" - -");
                }
                s.push_str(&format!(" kind={}", c[7]));
                if some(c[5]) {
                    s.push_str(&format!(" mode={:04o}", c[5].parse::<u32>().unwrap()));
                }
                if some(c[9]) {
                    s.push_str(&format!(" uid={} gid={}", c[9], c[10]));
                }
                if some(c[11]) {
                    s.push_str(&format!(" user={} group={}", c[11], c[12]));
                }
                if some(c[6]) {
                    s.push_str(&format!(" mtime={} mtime_ns={}", c[6], c[8]));
                }
                if some(c[13]) {
                    s.push_str(&format!(" extents={}", c[13]));
                }
                if some(c[14]) {
                    s.push_str(&format!(" target={}", c[14]));
                }
                entries.push((format!("{}\t{}", c[0], c[1]), s));
            }
            "xattr" => {
                let key = format!("{}\t{}", cols[1], cols[2]);
                let last = entries.last_mut().filter(|(k, _)| *k == key);
                let (_, s) = last.unwrap_or_else(|| panic!("xattr record not after its entry: {l:?}"));
                s.push_str(&format!(" xattr={}={}", cols[3], cols[4]));
            }
            _ => {}
        }
    }
    (entries.into_iter().map(|(_, s)| s).collect(), signer, sources)
}

/// The independent Python reader, written from FORMAT.md, agrees on vector `name`.
fn check_python(name: &str) {
    let (_, expect) = vector(name);
    let archive = vector_dir().join(format!("{}.ibs", expect.name));
    let v2 = name.starts_with("v2/");
    let trust = data_dir().join("signer.sign.pub");
    let mut args: Vec<&OsStr> = Vec::new();
    if v2 {
        args.extend([OsStr::new("--format"), OsStr::new("lines")]);
        if expect.signer.as_deref().is_some_and(|s| s != "none") {
            args.extend([OsStr::new("--trust-signer"), trust.as_os_str()]);
        }
    }
    let out = python_reader(&archive, "recipient", &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if expect.ok && v2 {
        assert!(out.status.success(), "{}: {stderr}", expect.name);
        let (entries, signer, sources) = python_v2_listing(&stdout);
        assert_eq!(entries, expect.entries, "{}", expect.name);
        assert_eq!(Some(signer), expect.signer, "{}", expect.name);
        assert_eq!(Some(sources), expect.sources, "{}", expect.name);
    } else if expect.ok {
        assert!(out.status.success(), "{}: {stderr}", expect.name);
        for line in &expect.entries {
            let v: Vec<&str> = line.strip_prefix("entry: ").unwrap().split(' ').collect();
            let (source, path) = v[0].split_once('/').unwrap();
            for needle in [
                format!("\"source\": \"{source}\""),
                format!("\"path\": \"{path}\""),
                format!("\"size\": {}", v[1]),
                format!("\"sha256\": \"{}\"", v[2]),
            ] {
                assert!(
                    stdout.contains(&needle),
                    "{}: {needle} missing from {stdout}",
                    expect.name
                );
            }
        }
    } else {
        // The same step and the same part of the archive as the Rust reader
        // (both are held to the vector's expectation), not only "unreadable".
        let (stage, region) = python_failure(&out);
        assert_eq!(
            (stage.as_str(), region.as_str()),
            (expect.stage.as_str(), expect.region.as_str()),
            "{}: {stderr}",
            expect.name
        );
    }
}

/// One test case per vector, for each reader.
macro_rules! vectors {
    ($($name:ident => $file:literal,)*) => {
        const NAMES: &[&str] = &[$($file),*];
        mod rust_reader {
            $(#[test] fn $name() { super::check_rust($file) })*
        }
        mod python_reader {
            $(#[test] fn $name() { super::check_python($file) })*
        }
    };
}

vectors! {
    v1_bad_footer_archive_id => "v1/bad-footer-archive-id",
    v1_bad_footer_frame_count => "v1/bad-footer-frame-count",
    v1_bad_frame_ciphertext => "v1/bad-frame-ciphertext",
    v1_bad_frame_tag => "v1/bad-frame-tag",
    v1_bad_header_field => "v1/bad-header-field",
    v1_bad_header_mac => "v1/bad-header-mac",
    v1_bad_index => "v1/bad-index",
    v1_bad_magic => "v1/bad-magic",
    v1_bad_not_an_archive => "v1/bad-not-an-archive",
    v1_bad_shortened_final_frame => "v1/bad-shortened-final-frame",
    v1_bad_spliced_frame => "v1/bad-spliced-frame",
    v1_bad_spliced_header => "v1/bad-spliced-header",
    v1_bad_spliced_index => "v1/bad-spliced-index",
    v1_bad_swapped_frames => "v1/bad-swapped-frames",
    v1_bad_trailing_garbage => "v1/bad-trailing-garbage",
    v1_bad_truncated_final_frame => "v1/bad-truncated-final-frame",
    v1_bad_truncated_footer => "v1/bad-truncated-footer",
    v1_bad_unknown_version => "v1/bad-unknown-version",
    v1_bad_wrapped_key => "v1/bad-wrapped-key",
    v1_bad_wrong_recipient => "v1/bad-wrong-recipient",
    v1_ok_basic => "v1/ok-basic",
    v1_ok_empty => "v1/ok-empty",
    v1_ok_frame_boundaries => "v1/ok-frame-boundaries",
    v1_ok_two_recipients => "v1/ok-two-recipients",
    v2_bad_content => "v2/bad-content",
    v2_bad_extent_past_size => "v2/bad-extent-past-size",
    v2_bad_extents_overlap => "v2/bad-extents-overlap",
    v2_bad_extra_chunk => "v2/bad-extra-chunk",
    v2_bad_frame => "v2/bad-frame",
    v2_bad_hardlink_to_folder => "v2/bad-hardlink-to-folder",
    v2_bad_hardlink_to_later => "v2/bad-hardlink-to-later",
    v2_bad_hardlink_to_missing => "v2/bad-hardlink-to-missing",
    v2_bad_header_mac => "v2/bad-header-mac",
    v2_bad_name_dotdot => "v2/bad-name-dotdot",
    v2_bad_name_nul => "v2/bad-name-nul",
    v2_bad_order => "v2/bad-order",
    v2_bad_order_across_pieces => "v2/bad-order-across-pieces",
    v2_bad_order_depth_first => "v2/bad-order-depth-first",
    v2_bad_piece_flipped => "v2/bad-piece-flipped",
    v2_bad_piece_removed => "v2/bad-piece-removed",
    v2_bad_piece_replaced => "v2/bad-piece-replaced",
    v2_bad_pieces_swapped => "v2/bad-pieces-swapped",
    v2_bad_repeated => "v2/bad-repeated",
    v2_bad_repeated_across_pieces => "v2/bad-repeated-across-pieces",
    v2_bad_root => "v2/bad-root",
    v2_bad_signature => "v2/bad-signature",
    v2_bad_signature_block_byte => "v2/bad-signature-block-byte",
    v2_bad_signature_noncanonical => "v2/bad-signature-noncanonical",
    v2_bad_signature_other_key => "v2/bad-signature-other-key",
    v2_bad_signature_stripped => "v2/bad-signature-stripped",
    v2_bad_signed_footer_chunk_count => "v2/bad-signed-footer-chunk-count",
    v2_bad_signed_footer_reserved => "v2/bad-signed-footer-reserved",
    v2_bad_signed_root => "v2/bad-signed-root",
    v2_bad_signer_algorithm => "v2/bad-signer-algorithm",
    v2_bad_signer_weak_key => "v2/bad-signer-weak-key",
    v2_bad_trailing_garbage => "v2/bad-trailing-garbage",
    v2_bad_tree_no_parent => "v2/bad-tree-no-parent",
    v2_bad_tree_through_symlink => "v2/bad-tree-through-symlink",
    v2_bad_truncated_footer => "v2/bad-truncated-footer",
    v2_bad_unknown_version => "v2/bad-unknown-version",
    v2_bad_wrong_recipient => "v2/bad-wrong-recipient",
    v2_ok_empty => "v2/ok-empty",
    v2_ok_empty_sources => "v2/ok-empty-sources",
    v2_ok_frame_boundaries => "v2/ok-frame-boundaries",
    v2_ok_kinds => "v2/ok-kinds",
    v2_ok_many_pieces => "v2/ok-many-pieces",
    v2_ok_metadata => "v2/ok-metadata",
    v2_ok_names => "v2/ok-names",
    v2_ok_sparse => "v2/ok-sparse",
    v2_ok_two_recipients => "v2/ok-two-recipients",
    v2_ok_unsigned => "v2/ok-unsigned",
}

#[test]
fn every_vector_on_disk_has_a_test_case() {
    assert_eq!(vector_names(), NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>());
}
