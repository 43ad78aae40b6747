//! Which chunks the writer compresses, and at which level: the writer's
//! policy, not the format's (a reader cannot tell which level wrote a
//! chunk, or why one was stored).

use std::fmt;

/// Chunks shorter than this are compressed without a probe.
pub const PROBE_MIN: usize = 256 * 1024;
/// Bytes per probed slice.
pub const PROBE_SLICE: usize = 16 * 1024;
/// A probe that compresses to more than this fraction (in 1/100) of its size
/// means "store the chunk".
pub const PROBE_KEEP: usize = 97;
/// The level of the fast compressor of an adaptive [`FrameCompressor`].
pub const FAST_LEVEL: i32 = 1;
/// An adaptive [`FrameCompressor`] takes `FAST_LEVEL` when its probe comes
/// out at most this much (in 1/1000) larger than the configured level's.
pub const FAST_SLACK_PER_MILLE: usize = 10;

/// The zstd compressors of one worker and its per-chunk policy: which
/// compressor [`ArchiveKeys::seal_chunk`](crate::format::ArchiveKeys::seal_chunk)
/// gets for a chunk ([`FrameCompressor::pick`]).
///
/// Chunks shorter than `PROBE_MIN` are compressed at the configured level.
/// Larger chunks are probed first: four evenly spread `PROBE_SLICE`-byte
/// slices are compressed on their own.
///
/// - If they do not shrink below `PROBE_KEEP` of their size (random data,
///   keys, already-compressed blobs) the chunk is stored without spending a
///   full compression on it.
/// - An adaptive compressor (the default for levels above `FAST_LEVEL`)
///   also probes the slices at `FAST_LEVEL`; when that comes out within
///   `FAST_SLACK_PER_MILLE` of the configured level's, the chunk is
///   compressed at `FAST_LEVEL`, which is about twice as fast. Data whose
///   redundancy is mostly in its symbols (GUIDs, base64 secrets, generated
///   JSON) compresses as small or smaller at level 1, so the configured level
///   is spent only where its deeper match search pays (the benchmark
///   corpora's figures are in `benches/RESULTS.md`).
///
/// The format is unchanged: a reader cannot tell which level wrote a chunk.
pub struct FrameCompressor {
    level: i32,
    main: zstd::bulk::Compressor<'static>,
    fast: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
}

impl fmt::Debug for FrameCompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameCompressor")
            .field("level", &self.level)
            .field("adaptive", &self.fast.is_some())
            .finish_non_exhaustive()
    }
}

impl FrameCompressor {
    /// Compresses at `level`; adaptive (see above) if `adaptive` and `level`
    /// is above `FAST_LEVEL`.
    pub fn new(level: i32, adaptive: bool) -> std::io::Result<Self> {
        let fast = if adaptive && level > FAST_LEVEL {
            Some(zstd::bulk::Compressor::new(FAST_LEVEL)?)
        } else {
            None
        };
        Ok(FrameCompressor {
            level,
            main: zstd::bulk::Compressor::new(level)?,
            fast,
            scratch: Vec::new(),
        })
    }

    /// The compressor to seal `plain` with, `None` to store it.
    pub fn pick(&mut self, plain: &[u8]) -> Option<&mut zstd::bulk::Compressor<'static>> {
        let choice = self.choose(plain);
        self.compressor(choice)
    }

    /// How `plain` is to be sealed. A failed probe compression counts as
    /// compressible at the configured level, so the full compression decides.
    fn choose(&mut self, plain: &[u8]) -> Choice {
        if plain.len() < PROBE_MIN {
            return Choice::Main;
        }
        let sampled = 4 * PROBE_SLICE;
        self.scratch.resize(zstd::zstd_safe::compress_bound(PROBE_SLICE), 0);
        let Some(packed) = probe(plain, &mut self.main, &mut self.scratch) else {
            return Choice::Main;
        };
        if packed * 100 > sampled * PROBE_KEEP {
            return Choice::Store;
        }
        if let Some(fast) = self.fast.as_mut()
            && let Some(fast_packed) = probe(plain, fast, &mut self.scratch)
            && fast_packed * 1000 <= packed * (1000 + FAST_SLACK_PER_MILLE)
        {
            return Choice::Fast;
        }
        Choice::Main
    }

    fn compressor(&mut self, choice: Choice) -> Option<&mut zstd::bulk::Compressor<'static>> {
        match choice {
            Choice::Store => None,
            Choice::Main => Some(&mut self.main),
            Choice::Fast => self.fast.as_mut(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Store,
    Main,
    Fast,
}

/// Compressed bytes of four evenly spread `PROBE_SLICE`s of `plain` (at least
/// `PROBE_MIN` long), each compressed on its own; `None` if one fails.
fn probe(plain: &[u8], compressor: &mut zstd::bulk::Compressor<'_>, scratch: &mut [u8]) -> Option<usize> {
    let stride = (plain.len() - PROBE_SLICE) / 3;
    let mut packed = 0;
    for i in 0..4 {
        let start = i * stride;
        packed += compressor
            .compress_to_buffer(&plain[start..start + PROBE_SLICE], scratch)
            .ok()?;
    }
    Some(packed)
}

#[cfg(test)]
mod tests {
    use ibs_envelope::FileKey;

    use super::*;
    use crate::format::ArchiveKeys;

    /// xorshift64*: deterministic test data without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    const LEN: usize = 1 << 20;

    fn noise(rng: &mut Rng) -> Vec<u8> {
        (0..LEN).map(|_| rng.next() as u8).collect()
    }

    /// Lines of random GUIDs: all the redundancy is in the symbols.
    fn guids(rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        while out.len() < LEN {
            let (a, b) = (rng.next(), rng.next());
            out.extend_from_slice(format!("{{\"objectId\": \"{a:016x}-{b:016x}\"}},\n").as_bytes());
        }
        out.truncate(LEN);
        out
    }

    /// One 4 KiB record repeated with a byte in every 8 changed: short
    /// matches that level 3's search finds and level 1's misses.
    fn mutated_records(rng: &mut Rng) -> Vec<u8> {
        let base: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        let mut out = Vec::with_capacity(LEN);
        while out.len() < LEN {
            let mut record = base.clone();
            for chunk in record.chunks_mut(8) {
                let i = rng.next() as usize % chunk.len();
                chunk[i] = rng.next() as u8;
            }
            out.extend_from_slice(&record);
        }
        out.truncate(LEN);
        out
    }

    fn zstd_len(data: &[u8], level: i32) -> usize {
        zstd::bulk::compress(data, level).unwrap().len()
    }

    #[test]
    fn adaptive_compressor_stores_noise_takes_level_1_where_it_is_as_good_and_level_3_where_it_pays() {
        let mut rng = Rng(0x1b5_2026);
        let mut c = FrameCompressor::new(3, true).unwrap();
        assert_eq!(c.choose(&noise(&mut rng)), Choice::Store);

        let text = guids(&mut rng);
        assert_eq!(c.choose(&text), Choice::Fast);
        // The premise: level 1 is no worse than level 3 on such data.
        assert!(zstd_len(&text, 1) * 1000 <= zstd_len(&text, 3) * (1000 + FAST_SLACK_PER_MILLE));

        let records = mutated_records(&mut rng);
        assert_eq!(c.choose(&records), Choice::Main);
        // The premise: level 3 is clearly smaller here.
        assert!(zstd_len(&records, 3) * 100 < zstd_len(&records, 1) * 95);

        // Small chunks are not probed; a fixed compressor never takes level 1.
        assert_eq!(c.choose(&text[..PROBE_MIN - 1]), Choice::Main);
        let mut fixed = FrameCompressor::new(3, false).unwrap();
        assert_eq!(fixed.choose(&text), Choice::Main);
        assert_eq!(fixed.choose(&noise(&mut rng)), Choice::Store);
        let mut level_1 = FrameCompressor::new(1, true).unwrap();
        assert_eq!(level_1.choose(&text), Choice::Main);
    }

    #[test]
    fn every_choice_round_trips() {
        let keys = ArchiveKeys::derive(&FileKey::from_bytes([9; 32]), &[3; 32]);
        let mut rng = Rng(7);
        let mut c = FrameCompressor::new(3, true).unwrap();
        let mut decompressor = zstd::bulk::Decompressor::new().unwrap();
        for (i, data) in [noise(&mut rng), guids(&mut rng), mutated_records(&mut rng)]
            .into_iter()
            .enumerate()
        {
            let sealed = keys
                .seal_chunk(&[5; 32], i as u64, false, &data, c.pick(&data))
                .unwrap();
            let plain = keys
                .open_chunk(&[5; 32], i as u64, false, sealed, data.len(), &mut decompressor)
                .unwrap();
            assert_eq!(plain.as_ref(), data.as_slice());
        }
    }
}
