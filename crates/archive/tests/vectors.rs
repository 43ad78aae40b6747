//! The committed test vectors: the Rust reader, and an independent Python
//! reader written from FORMAT.md, must both report what each `.expect` says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::{python_failure, python_reader, recipient, region_of};
use futures::executor::block_on;
use ibs_archive::{ArchiveReader, Error, ErrorKind, inspect};

/// (source/path, size, SHA-256 hex) of each entry.
type Listing = Vec<(String, u64, String)>;

struct Expect {
    name: String,
    ok: bool,
    stage: String,
    kind: String,
    region: String,
    entries: Listing,
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
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .map(str::to_owned)
    };
    let entries = text
        .lines()
        .filter_map(|l| l.strip_prefix("entry: "))
        .map(|l| {
            let v: Vec<&str> = l.split(' ').collect();
            (v[0].to_owned(), v[1].parse().unwrap(), v[2].to_owned())
        })
        .collect::<Vec<_>>();
    if let Some(n) = field("entries") {
        assert_eq!(n.parse::<usize>().unwrap(), entries.len(), "{}", p.display());
    }
    let expect = Expect {
        name: name.to_owned(),
        ok: field("expect").as_deref() == Some("ok"),
        stage: field("stage").unwrap_or_default(),
        kind: field("kind").unwrap_or_default(),
        region: field("region").unwrap_or_default(),
        entries,
    };
    assert!(
        expect.ok || !expect.region.is_empty(),
        "{}: an error vector names its region",
        p.display()
    );
    (std::fs::read(p.with_extension("ibs")).unwrap(), expect)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The Rust reader reports what vector `name` expects.
fn check_rust(name: &str) {
    let (bytes, expect) = vector(name);
    let outcome: Result<Listing, (&str, Error)> = block_on(async {
        inspect(&bytes).await.map_err(|e| ("inspect", e))?;
        let r = ArchiveReader::open(bytes.clone(), &[recipient()])
            .await
            .map_err(|e| ("open", e))?;
        r.verify(None).await.map_err(|e| ("verify", e))?;
        let mut seen = Vec::new();
        for e in r.load_entries().await.map_err(|e| ("verify", e))? {
            let data = r.read_entry(&e).await.map_err(|e| ("verify", e))?;
            assert_eq!(data.len() as u64, e.size);
            seen.push((format!("{}/{}", e.source, e.path), e.size, hex(&e.sha256)));
        }
        Ok(seen)
    });
    match outcome {
        Ok(seen) => {
            assert!(expect.ok, "{name}: expected an error at {}, but it read", expect.stage);
            assert_eq!(seen, expect.entries, "{name}");
        }
        Err((stage, err)) => {
            assert!(!expect.ok, "{name}: expected to read, failed at {stage}: {err}");
            assert_eq!(stage, expect.stage, "{name}: {err}");
            let kind = match err.kind() {
                ErrorKind::Malformed => "Malformed",
                ErrorKind::Damaged => "Damaged",
                ErrorKind::Key => "Key",
                other => panic!("{name}: unexpected kind {other:?}: {err}"),
            };
            assert_eq!(kind, expect.kind, "{name}: {err}");
            assert_eq!(region_of(&err), expect.region, "{name}: {err}");
        }
    }
}

/// The independent Python reader, written from FORMAT.md, agrees on vector `name`.
fn check_python(name: &str) {
    let (_, expect) = vector(name);
    let archive = vector_dir().join(format!("{}.ibs", expect.name));
    let out = python_reader(&archive, "recipient", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if expect.ok {
        assert!(out.status.success(), "{}: {stderr}", expect.name);
        for (name, size, sha) in &expect.entries {
            let (source, path) = name.split_once('/').unwrap();
            for needle in [
                format!("\"source\": \"{source}\""),
                format!("\"path\": \"{path}\""),
                format!("\"size\": {size}"),
                format!("\"sha256\": \"{sha}\""),
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
}

#[test]
fn every_vector_on_disk_has_a_test_case() {
    assert_eq!(vector_names(), NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>());
}
