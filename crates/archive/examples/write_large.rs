//! Writes a large archive of generated data and reports throughput and peak RSS.
//!
//! ```text
//! cargo run --release -p ibs-archive --example write_large -- [GiB] [text|noise] [OUT]
//! ```
//! Defaults: 2 GiB of JSON-like text to `/dev/null`. The data is generated on the
//! fly, so the process's memory is the writer's own. Peak RSS is read from
//! `/proc/self/status` (`VmHWM`) at the end.

use std::io::{self, Read};
use std::time::Instant;

use ibs_archive::{ArchiveWriter, EntryMeta, WriterOptions};
use ibs_testkit::data::{Xorshift64, json_lines};
use ibs_testkit::keys;

/// `left` bytes cycling through a 32 MiB block of JSON lines or pseudo-random
/// bytes (made once, so generating input costs the writer almost nothing).
struct Cycle<'a> {
    block: &'a [u8],
    left: u64,
    pos: usize,
}

impl Read for Cycle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64)
            .min(self.left)
            .min((self.block.len() - self.pos) as u64) as usize;
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.block.len();
        self.left -= n as u64;
        Ok(n)
    }
}

fn block(text: bool) -> Vec<u8> {
    let len = 32 << 20;
    if text {
        return json_lines(len);
    }
    let mut rng = Xorshift64::with_state(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let gib: f64 = args.next().map_or(Ok(2.0), |s| s.parse())?;
    let text = args.next().is_none_or(|k| k != "noise");
    let out = args.next().unwrap_or_else(|| "/dev/null".into());
    let cert = keys::generate("bench", 1_700_000_000).cert;
    let size = (gib * f64::from(1u32 << 30)) as u64;
    let block = block(text);
    let sink = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    let start = Instant::now();
    let mut w = ArchiveWriter::new(sink, &[&cert], WriterOptions::default())?;
    // Four sources, like a backup's; each one entry of a quarter of the data.
    for i in 0..4 {
        let data = Cycle {
            block: &block,
            left: size / 4,
            pos: (i as usize) << 20,
        };
        w.add_entry(EntryMeta::new(format!("source-{i}"), "state.bin"), data)?;
    }
    let (_, summary) = w.finish()?;
    let secs = start.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?");
    println!(
        "{} data: {:.2} GiB in, {:.2} GiB out, {:.1} s, {:.0} MiB/s; peak RSS {}",
        if text { "text" } else { "noise" },
        summary.data_len as f64 / f64::from(1u32 << 30),
        summary.archive_len as f64 / f64::from(1u32 << 30),
        secs,
        summary.data_len as f64 / secs / f64::from(1u32 << 20),
        hwm.trim_start_matches("VmHWM:").trim()
    );
    Ok(())
}
