//! [`ReadAhead`]: sequential read-ahead over any [`RangeRead`].

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::reader::RangeRead;

/// Reads ahead for a reader that goes through a source in order: one range
/// read answers many small requests, so a remote target sees one request per
/// few MiB instead of one per frame.
///
/// A read that continues where the reading stream left off (within a small
/// gap) is extended by as many bytes as the stream has read in a row so
/// far, up to `max` in one read (1 frame, then 2, 4, … — an entry of a few
/// frames over-reads little); the extra bytes are kept (one buffer of at
/// most `max` bytes) and later reads inside them cost nothing. A read
/// elsewhere reads only what it asked for and leaves the buffer and the
/// stream alone, so lookups between reads (the archive reader fetches an
/// index piece now and then) do not restart the read-ahead; two jumps in a
/// row start a new stream there. A read of `max` bytes or more is passed
/// through.
///
/// [`ReadAhead::prefetch`] also reads the stream's next chunks in the
/// background (on the tokio runtime, when there is one) while the caller
/// works on the current one — a bounded pool of `depth` chunks of `max`
/// bytes, started once a stream reads `max` at a time — so a remote target's
/// latency overlaps with decryption and decompression instead of adding to
/// them.
///
/// ```
/// use ibs_archive::{RangeRead, ReadAhead};
///
/// # futures::executor::block_on(async {
/// let data = bytes::Bytes::from(vec![7u8; 1 << 20]);
/// let ahead = ReadAhead::new(data, 1 << 20, 256 << 10);
/// for at in (0..8u64).map(|i| i * 4096) {
///     assert_eq!(ahead.read_range(at..at + 4096).await.unwrap().len(), 4096);
/// }
/// # });
/// ```
pub struct ReadAhead<R: RangeRead> {
    inner: Arc<R>,
    len: u64,
    max: u64,
    state: Mutex<State>,
    /// Chunks being read in the background, in order ([`ReadAhead::prefetch`]).
    pending: Mutex<VecDeque<Pending<R::Error>>>,
    /// Starts a background read; `None` without prefetching.
    spawn: Option<Spawn<R::Error>>,
    /// Chunks read in the background at most.
    depth: usize,
}

/// Starts a background read of a range (`None` without a runtime).
type Spawn<E> = Box<dyn Fn(Range<u64>) -> Option<tokio::task::JoinHandle<Result<Bytes, E>>> + Send + Sync>;

/// A chunk being read in the background.
struct Pending<E> {
    range: Range<u64>,
    task: tokio::task::JoinHandle<Result<Bytes, E>>,
}

impl<E> Drop for Pending<E> {
    fn drop(&mut self) {
        // A chunk no one will take is not read on.
        self.task.abort();
    }
}

impl<R: RangeRead> std::fmt::Debug for ReadAhead<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("len", &self.len)
            .field("max", &self.max)
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    /// Bytes read ahead, from `buf_start`.
    buf_start: u64,
    buf: Bytes,
    /// Where the stream's next read is expected.
    next: u64,
    /// Bytes the stream has read in a row.
    run: u64,
    /// Where the last read that left the stream ended (a second stream's start).
    jumped_to: Option<u64>,
}

/// How far past the stream's position a read may start and still continue
/// it (the archive's index pieces lie between its frames).
const GAP: u64 = 1 << 20;

impl<R: RangeRead> ReadAhead<R> {
    /// Reads ahead over `inner`, whose length is `len`, at most `max` bytes
    /// in one read.
    pub fn new(inner: R, len: u64, max: u64) -> Self {
        ReadAhead {
            inner: Arc::new(inner),
            len,
            max,
            state: Mutex::new(State::default()),
            pending: Mutex::new(VecDeque::new()),
            spawn: None,
            depth: 0,
        }
    }

    /// Also reads up to `depth` chunks of `max` bytes ahead of a stream in
    /// the background, once it reads `max` bytes at a time (memory: `depth`
    /// × `max` more at most). Background reads run on the tokio runtime the
    /// reads are made on; without one, nothing is read in the background.
    /// A chunk whose read failed reports its error to the read that needs
    /// it; chunks a new stream makes useless are dropped unread.
    #[must_use]
    pub fn prefetch(mut self, depth: usize) -> Self
    where
        R: 'static,
    {
        let inner = Arc::clone(&self.inner);
        self.spawn = Some(Box::new(move |range| {
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            let inner = Arc::clone(&inner);
            Some(runtime.spawn(async move { inner.read_range(range).await }))
        }));
        self.depth = depth;
        self
    }

    /// Keeps `depth` chunks read in the background after `from`.
    fn top_up(&self, from: u64) {
        let Some(spawn) = &self.spawn else { return };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let mut start = pending.back().map_or(from, |p| p.range.end);
        while pending.len() < self.depth && start < self.len {
            let range = start..start.saturating_add(self.max).min(self.len);
            let Some(task) = spawn(range.clone()) else { return };
            start = range.end;
            pending.push_back(Pending { range, task });
        }
    }

    /// Drops the background reads (a new stream).
    fn drop_pending(&self) {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// The background chunk that holds `range`, if one does (chunks before
    /// it are dropped); `None` leaves the chunks alone.
    fn take_pending(&self, range: &Range<u64>) -> Option<Pending<R::Error>> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let at = pending
            .iter()
            .position(|p| p.range.start <= range.start && range.end <= p.range.end)?;
        pending.drain(..at);
        pending.pop_front()
    }

    /// The source read from.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a read at `start` continues a stream at `at`.
fn continues(at: u64, start: u64) -> bool {
    start >= at && start - at <= GAP
}

#[async_trait]
impl<R: RangeRead> RangeRead for ReadAhead<R> {
    type Error = R::Error;

    async fn size(&self) -> Result<u64, R::Error> {
        Ok(self.len)
    }

    async fn read_range(&self, range: Range<u64>) -> Result<Bytes, R::Error> {
        let want = range.end.saturating_sub(range.start);
        if want == 0 || want >= self.max {
            return self.inner.read_range(range).await;
        }
        // Under the lock: served from the buffer, or what to read.
        let plan = {
            let mut s = self.state();
            let buf_end = s.buf_start + s.buf.len() as u64;
            if range.start >= s.buf_start && range.end <= buf_end {
                let at = (range.start - s.buf_start) as usize;
                let out = s.buf.slice(at..at + want as usize);
                if continues(s.next, range.start) || range.start < s.next {
                    s.run += want;
                    s.next = s.next.max(range.end);
                }
                return Ok(out);
            }
            let extra = if continues(s.next, range.start) {
                Some(s.run)
            } else if s.jumped_to.is_some_and(|j| continues(j, range.start)) {
                // A second jump that continues the first: a new stream.
                s.run = 0;
                s.jumped_to = None;
                self.drop_pending();
                Some(want)
            } else {
                // A jump: read only this; the stream stays where it was.
                s.jumped_to = Some(range.end);
                None
            };
            extra.map(|extra| {
                // The part already in the buffer (a read straddling its end).
                let head = if range.start >= s.buf_start && range.start < buf_end {
                    s.buf.slice((range.start - s.buf_start) as usize..)
                } else {
                    Bytes::new()
                };
                let from = range.start + head.len() as u64;
                (head, from, extra.min(self.max - want))
            })
        };
        let Some((head, from, extra)) = plan else {
            return self.inner.read_range(range).await;
        };
        let (from, got) = match self.take_pending(&(from..range.end)) {
            // Read in the background already (or being read).
            Some(chunk) => {
                let start = chunk.range.start;
                let got = match (&mut { chunk }.task).await {
                    Ok(got) => got?,
                    // Aborted or panicked: read it now.
                    Err(_) => self.inner.read_range(start..range.end).await?,
                };
                (start, got)
            }
            None => {
                let end = range.end.saturating_add(extra).min(self.len.max(range.end));
                (from, self.inner.read_range(from..end).await?)
            }
        };
        let head = if from < range.start {
            // The chunk started before this read (the stream skipped a gap).
            Bytes::new()
        } else {
            head
        };
        let skip = range.start.saturating_sub(from) as usize;
        let got = got.slice(skip.min(got.len())..);
        let from = from.max(range.start);
        let needed = (range.end - from) as usize;
        if got.len() < needed {
            // A short read: the caller sees it (nothing is kept).
            return Ok(got);
        }
        let out = if head.is_empty() {
            got.slice(..needed)
        } else {
            let mut joined = BytesMut::with_capacity(want as usize);
            joined.extend_from_slice(&head);
            joined.extend_from_slice(&got[..needed]);
            joined.freeze()
        };
        let buf_end = from + got.len() as u64;
        let steady = {
            let mut s = self.state();
            s.run += want;
            s.next = range.end;
            s.jumped_to = None;
            if got.len() > needed {
                s.buf_start = from;
                s.buf = got;
            }
            s.run >= self.max
        };
        if steady {
            self.top_up(buf_end);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the reads that reach the source.
    struct Counted(Bytes, AtomicUsize, Mutex<Vec<Range<u64>>>);

    #[async_trait]
    impl RangeRead for Counted {
        type Error = std::convert::Infallible;
        async fn size(&self) -> Result<u64, Self::Error> {
            Ok(self.0.len() as u64)
        }
        async fn read_range(&self, range: Range<u64>) -> Result<Bytes, Self::Error> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.2
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(range.clone());
            self.0.read_range(range).await
        }
    }

    fn source(len: usize) -> (Bytes, ReadAhead<Counted>) {
        let data: Bytes = (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
        let ahead = ReadAhead::new(
            Counted(data.clone(), AtomicUsize::new(0), Mutex::new(Vec::new())),
            len as u64,
            64 << 10,
        );
        (data, ahead)
    }

    fn reads(a: &ReadAhead<Counted>) -> usize {
        a.get_ref().1.load(Ordering::Relaxed)
    }

    #[test]
    fn a_sequential_reader_gets_the_same_bytes_from_ever_fewer_reads() {
        futures::executor::block_on(async {
            let (data, a) = source(1 << 20);
            let mut at = 0u64;
            let mut n = 0;
            while at < data.len() as u64 {
                let len = (1000 + n * 37 % 3000) as u64;
                let end = (at + len).min(data.len() as u64);
                assert_eq!(
                    a.read_range(at..end).await.unwrap(),
                    data.slice(at as usize..end as usize)
                );
                at = end;
                n += 1;
            }
            // About 500 requests of 2 KiB on average over 1 MiB, in 64 KiB reads.
            assert!(reads(&a) < n / 10, "{} reads for {n} requests", reads(&a));
            // Never past the end.
            assert!(a.get_ref().2.lock().unwrap().iter().all(|r| r.end <= data.len() as u64));
        });
    }

    #[test]
    fn a_lookup_elsewhere_does_not_restart_the_stream_and_two_start_a_new_one() {
        futures::executor::block_on(async {
            let (data, a) = source(4 << 20);
            for i in 0..8u64 {
                a.read_range(i * 4096..(i + 1) * 4096).await.unwrap();
            }
            let run = a.state().run;
            // A lookup far ahead: read alone, the stream untouched.
            let far = 3_000_000..3_001_000;
            assert_eq!(
                a.read_range(far.clone()).await.unwrap(),
                data.slice(3_000_000..3_001_000)
            );
            assert_eq!(a.get_ref().2.lock().unwrap().last(), Some(&far));
            assert_eq!(a.state().run, run);
            a.read_range(8 * 4096..9 * 4096).await.unwrap();
            assert_eq!(a.state().run, run + 4096);
            // Two jumps in a row: the second continues the first, a new stream.
            a.read_range(2_000_000..2_004_096).await.unwrap();
            let before = reads(&a);
            a.read_range(2_004_096..2_008_192).await.unwrap();
            assert_eq!(reads(&a), before + 1);
            assert!(a.get_ref().2.lock().unwrap().last().unwrap().end > 2_008_192);
            assert_eq!(
                a.read_range(2_008_192..2_012_288).await.unwrap(),
                data.slice(2_008_192..2_012_288)
            );
            assert_eq!(reads(&a), before + 1, "served from what was read ahead");
        });
    }

    /// A source that takes a while per read and counts reads in flight.
    struct Slow {
        data: Bytes,
        in_flight: AtomicUsize,
        most: AtomicUsize,
        bytes: AtomicUsize,
    }

    #[async_trait]
    impl RangeRead for Slow {
        type Error = std::convert::Infallible;
        async fn size(&self) -> Result<u64, Self::Error> {
            Ok(self.data.len() as u64)
        }
        async fn read_range(&self, range: Range<u64>) -> Result<Bytes, Self::Error> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            self.bytes
                .fetch_add((range.end - range.start) as usize, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.data.read_range(range).await
        }
    }

    fn slow(len: usize) -> Slow {
        Slow {
            data: (0..len).map(|i| (i % 253) as u8).collect::<Vec<u8>>().into(),
            in_flight: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Reads `a` through in pieces of 3 000 bytes, working 1 ms on each
    /// 64 KiB (a decoder); checks every byte.
    async fn read_through(a: &ReadAhead<Slow>) {
        let data = a.get_ref().data.clone();
        let mut at = 0u64;
        while at < data.len() as u64 {
            let end = (at + 3000).min(data.len() as u64);
            assert_eq!(
                a.read_range(at..end).await.unwrap(),
                data.slice(at as usize..end as usize)
            );
            if at / 65_536 != end / 65_536 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            at = end;
        }
    }

    #[test]
    fn prefetching_reads_the_next_chunks_in_the_background_bounded_and_not_past_the_end() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let len = 2 << 20;
            let a = ReadAhead::new(slow(len), len as u64, 64 << 10).prefetch(3);
            read_through(&a).await;
            let s = a.get_ref();
            // Reads overlapped (the chunks ahead), at most the 3 chunks and the reader's own.
            let most = s.most.load(Ordering::SeqCst);
            assert!((2..=4).contains(&most), "{most} reads in flight at most");
            // Nothing past the end, and little read twice.
            assert!(
                s.bytes.load(Ordering::SeqCst) <= len + (64 << 10),
                "{}",
                s.bytes.load(Ordering::SeqCst)
            );
            assert!(a.pending.lock().unwrap().is_empty(), "no chunk past the end");
            // Without prefetching, one read at a time.
            let b = ReadAhead::new(slow(len), len as u64, 64 << 10);
            read_through(&b).await;
            assert_eq!(b.get_ref().most.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn prefetching_without_a_runtime_reads_in_place() {
        futures::executor::block_on(async {
            let (data, a) = source(1 << 20);
            let a = a.prefetch(2);
            let mut at = 0u64;
            while at < data.len() as u64 {
                let end = (at + 5000).min(data.len() as u64);
                assert_eq!(
                    a.read_range(at..end).await.unwrap(),
                    data.slice(at as usize..end as usize)
                );
                at = end;
            }
            assert!(a.pending.lock().unwrap().is_empty());
        });
    }

    #[test]
    fn a_read_straddling_the_buffer_reads_only_what_is_missing() {
        futures::executor::block_on(async {
            let (data, a) = source(1 << 20);
            a.read_range(0..10_000).await.unwrap();
            a.read_range(10_000..20_000).await.unwrap(); // reads 10 000 ahead: to 30 000
            let out = a.read_range(25_000..40_000).await.unwrap();
            assert_eq!(out, data.slice(25_000..40_000));
            let last = a.get_ref().2.lock().unwrap().last().cloned().unwrap();
            assert_eq!(last.start, 30_000);
        });
    }
}
