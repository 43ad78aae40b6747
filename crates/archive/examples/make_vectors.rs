//! Regenerates the test vectors in `tests/vectors/` (committed; run only when
//! the set of vectors changes):
//!
//! ```text
//! cargo run -p ibs-archive --example make_vectors
//! ```
//!
//! Every vector is `NAME.ibs` with `NAME.expect` beside it, saying what a reader
//! must report (see `tests/vectors/README.md`). Archives are encrypted to the
//! committed key pair in `tests/data/` (`recipient`), so any implementation can
//! check them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use futures::executor::block_on;
use ibs_archive::format::{FOOTER_LEN, MIN_FRAME_SIZE};
use ibs_archive::{ArchiveReader, ArchiveWriter, EntryMeta, WriterOptions};
use ibs_envelope::{Certificate, Identity, Password};
use sha2::{Digest, Sha256};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
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

struct Spec<'a> {
    source: &'a str,
    path: &'a str,
    data: Vec<u8>,
    mode: Option<u32>,
    mtime: Option<i64>,
}

fn spec(source: &'static str, path: &'static str, data: Vec<u8>) -> Spec<'static> {
    Spec {
        source,
        path,
        data,
        mode: None,
        mtime: None,
    }
}

fn write(recipients: &[&Certificate], entries: &[Spec<'_>], created: i64) -> Res<Vec<u8>> {
    let options = WriterOptions::default()
        .frame_size(MIN_FRAME_SIZE)
        .created(created)
        .producer_version("1.2408.0.21")
        .label("fqdn", "azs.contoso.com")
        .label("region", "local");
    let mut w = ArchiveWriter::new(Vec::new(), recipients, options)?;
    for e in entries {
        let mut meta = EntryMeta::new(e.source, e.path);
        if let Some(m) = e.mode {
            meta = meta.mode(m);
        }
        if let Some(t) = e.mtime {
            meta = meta.mtime(t);
        }
        w.add_entry(meta, &e.data[..])?;
    }
    Ok(w.finish()?.0)
}

fn ok_expect(description: &str, entries: &[Spec<'_>]) -> String {
    let mut s = format!("# {description}\nexpect: ok\nentries: {}\n", entries.len());
    for e in entries {
        let _ = writeln!(
            s,
            "entry: {}/{} {} {}",
            e.source,
            e.path,
            e.data.len(),
            hex(&Sha256::digest(&e.data))
        );
    }
    s
}

fn err_expect(description: &str, stage: &str, kind: &str, region: &str) -> String {
    format!("# {description}\nexpect: error\nstage: {stage}\nkind: {kind}\nregion: {region}\n")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn frame_offsets(bytes: &[u8], id: &Identity) -> Res<Vec<usize>> {
    let r = block_on(ArchiveReader::open(bytes.to_vec(), &[id]))?;
    let mut out: Vec<usize> = r.frame_offsets().iter().map(|o| *o as usize).collect();
    if let (Some(last), Some(len)) = (out.last().copied(), r.frame_lens().last()) {
        out.push(last + *len as usize);
    } else {
        out.push(r.info().header.as_bytes().len());
    }
    Ok(out)
}

fn main() -> Res<()> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    std::fs::create_dir_all(&out)?;
    for f in std::fs::read_dir(&out)? {
        let p = f?.path();
        if matches!(p.extension().and_then(|e| e.to_str()), Some("ibs" | "expect")) {
            std::fs::remove_file(p)?;
        }
    }
    let cert = Certificate::from_file(data("recipient.cer"))?;
    let other = Certificate::from_file(data("other.cer"))?;
    let id = Identity::from_file(data("recipient.pfx"), &Password::new("ibs-test-vectors"))?;
    let save = |name: &str, bytes: &[u8], expect: String| -> Res<()> {
        std::fs::write(out.join(format!("{name}.ibs")), bytes)?;
        std::fs::write(out.join(format!("{name}.expect")), expect)?;
        Ok(())
    };
    let created = 1_763_769_600; // 2025-11-22T00:00:00Z

    // Valid archives.
    let basic_entries = vec![
        Spec {
            mode: Some(0o600),
            mtime: Some(1_763_700_000),
            ..spec("identity", "directory/users.json", text(20_000))
        },
        spec("ca", "root.cer", noise(1500, 1)),
        spec("rbac", "assignments/empty.json", Vec::new()),
        spec("key-vault", "vaults/v1.bin", noise(9000, 2)),
    ];
    let basic = write(&[&cert], &basic_entries, created)?;
    save(
        "ok-basic",
        &basic,
        ok_expect(
            "four entries in four sources: text spanning frames (zstd), blobs (stored), an empty entry; 4 KiB frames",
            &basic_entries,
        ),
    )?;
    save(
        "ok-empty",
        &write(&[&cert], &[], created)?,
        ok_expect("an archive with no entries: no data frames, only the index", &[]),
    )?;
    let two_entries = vec![spec("rm", "plans.json", text(3000))];
    save(
        "ok-two-recipients",
        &write(&[&other, &cert], &two_entries, created)?,
        ok_expect(
            "encrypted to two certificates (other, recipient); either key opens it",
            &two_entries,
        ),
    )?;
    let boundary_entries = vec![
        spec("a", "one-frame", noise(MIN_FRAME_SIZE as usize, 3)),
        spec("a", "two-frames", text(2 * MIN_FRAME_SIZE as usize)),
    ];
    save(
        "ok-frame-boundaries",
        &write(&[&cert], &boundary_entries, created)?,
        ok_expect("entries ending exactly on frame boundaries", &boundary_entries),
    )?;

    // Damaged archives, all derived from ok-basic unless said otherwise.
    let off = frame_offsets(&basic, &id)?;
    let frames = off.len() - 1;
    let index_at = off[frames];
    let n = basic.len();
    let hlen = off[0];
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = basic.clone();
        f(&mut b);
        b
    };
    let cut_in_last_frame = (off[frames - 1] + off[frames]) / 2;
    save(
        "bad-truncated-final-frame",
        &basic[..cut_in_last_frame],
        err_expect(
            "cut in the middle of the last data frame",
            "inspect",
            "Malformed",
            "footer",
        ),
    )?;
    save(
        "bad-truncated-footer",
        &basic[..n - 1],
        err_expect(
            "the last byte of the footer is missing",
            "inspect",
            "Malformed",
            "footer",
        ),
    )?;
    let mut shortened = basic[..index_at - 5].to_vec();
    shortened.extend_from_slice(&basic[index_at..]);
    let len = shortened.len();
    let new_offset = (index_at - 5) as u64;
    shortened[len - FOOTER_LEN..len - FOOTER_LEN + 8].copy_from_slice(&new_offset.to_le_bytes());
    save(
        "bad-shortened-final-frame",
        &shortened,
        err_expect(
            "5 bytes removed from the last frame and the footer's index offset moved to match",
            "open",
            "Malformed",
            "index",
        ),
    )?;
    save(
        "bad-magic",
        &mutate(&|b| b[0] ^= 0x01),
        err_expect("first magic byte flipped", "inspect", "Malformed", "header"),
    )?;
    save(
        "bad-unknown-version",
        &mutate(&|b| b[8] = 2),
        err_expect("format version 2", "inspect", "Malformed", "header"),
    )?;
    save(
        "bad-header-field",
        &mutate(&|b| b[30] ^= 0x01),
        err_expect("a bit of the creation time flipped", "open", "Damaged", "header"),
    )?;
    save(
        "bad-header-mac",
        &mutate(&|b| b[hlen - 1] ^= 0x01),
        err_expect("a bit of the header MAC flipped", "open", "Damaged", "header"),
    )?;
    save(
        "bad-wrapped-key",
        &mutate(&|b| b[hlen - 40] ^= 0x01),
        err_expect("a bit of the wrapped file key flipped", "open", "Damaged", "header"),
    )?;
    save(
        "bad-frame-ciphertext",
        &mutate(&|b| b[off[1] + 10] ^= 0x01),
        err_expect("a bit of frame 1's ciphertext flipped", "verify", "Damaged", "frame 1"),
    )?;
    save(
        "bad-frame-tag",
        &mutate(&|b| b[off[1] - 1] ^= 0x80),
        err_expect("a bit of frame 0's tag flipped", "verify", "Damaged", "frame 0"),
    )?;
    save(
        "bad-index",
        &mutate(&|b| b[index_at + 3] ^= 0x01),
        err_expect("a bit of the sealed index flipped", "open", "Damaged", "index"),
    )?;
    save(
        "bad-footer-archive-id",
        &mutate(&|b| b[n - 20] ^= 0x01),
        err_expect(
            "a bit of the footer's archive id flipped",
            "inspect",
            "Malformed",
            "footer",
        ),
    )?;
    save(
        "bad-footer-frame-count",
        &mutate(&|b| b[n - 32] ^= 0x01),
        err_expect(
            "the footer's frame count changed (so the index is opened as the wrong chunk)",
            "open",
            "Damaged",
            "index",
        ),
    )?;
    let mut garbage = basic.clone();
    garbage.extend_from_slice(b"trailing garbage");
    save(
        "bad-trailing-garbage",
        &garbage,
        err_expect("16 bytes appended after the footer", "inspect", "Malformed", "footer"),
    )?;
    // Swapped frames: noise only, so the frames are stored and equally long.
    let swap_entries = vec![spec("a", "blob", noise(3 * MIN_FRAME_SIZE as usize, 4))];
    let plain = write(&[&cert], &swap_entries, created)?;
    let so = frame_offsets(&plain, &id)?;
    let mut swapped = plain.clone();
    swapped[so[0]..so[1]].copy_from_slice(&plain[so[1]..so[2]]);
    swapped[so[1]..so[2]].copy_from_slice(&plain[so[0]..so[1]]);
    save(
        "bad-swapped-frames",
        &swapped,
        err_expect("frames 0 and 1 swapped", "verify", "Damaged", "frame 0"),
    )?;
    // Splices with a second archive of the same shape.
    let twin = write(&[&cert], &basic_entries, created)?;
    assert_eq!(twin.len(), basic.len(), "same shape");
    let mut spliced = twin[..hlen].to_vec();
    spliced.extend_from_slice(&basic[hlen..]);
    save(
        "bad-spliced-header",
        &spliced,
        err_expect(
            "the header of another archive on this body",
            "inspect",
            "Malformed",
            "footer",
        ),
    )?;
    let mut spliced = basic.clone();
    spliced[off[1]..off[2]].copy_from_slice(&twin[off[1]..off[2]]);
    save(
        "bad-spliced-frame",
        &spliced,
        err_expect("frame 1 taken from another archive", "verify", "Damaged", "frame 1"),
    )?;
    let mut spliced = basic[..index_at].to_vec();
    spliced.extend_from_slice(&twin[index_at..n - 24]);
    spliced.extend_from_slice(&basic[n - 24..]);
    save(
        "bad-spliced-index",
        &spliced,
        err_expect(
            "index taken from another archive (footer kept)",
            "open",
            "Damaged",
            "index",
        ),
    )?;
    save(
        "bad-wrong-recipient",
        &write(&[&other], &two_entries, created)?,
        err_expect(
            "encrypted only to `other`; the `recipient` key cannot open it",
            "open",
            "Key",
            "key",
        ),
    )?;
    save(
        "bad-not-an-archive",
        &noise(200, 9),
        err_expect("200 random bytes", "inspect", "Malformed", "header"),
    )?;
    println!("vectors written to {}", out.display());
    Ok(())
}
