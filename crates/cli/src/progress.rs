//! What `ibs` shows on stderr while it works: progress bars, a spinner while
//! a storage call waits, and `tracing` logs.
//!
//! Progress is for a person at a terminal: it is drawn on stderr only, only
//! when stderr is a terminal and neither `--json` nor `--quiet` was given
//! ([`Progress::for_stderr`]); otherwise nothing at all is drawn, so piped
//! output and logs hold no control characters. stdout is never touched.
//!
//! A storage call that has been waiting for more than [`STALL_AFTER`] (a
//! stalled SMB share, an object store that stopped answering) shows as
//! `waiting for <operation> <path>… 12 s` under the bar: open the target
//! with `ibs_controller::open_target_observed(.., progress.call_observer())`
//! to get it (every command does).
//!
//! Logs ([`init_logging`]) are off unless asked for: `-v` (info), `-vv`
//! (debug: every storage call), `-vvv` (trace), or `RUST_LOG` (which wins;
//! `target=level` pairs, e.g. `ibs_controller=debug,ibs_storage=trace`).
//! Log lines are written between redraws of the bars, never through them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use ibs_archive::ProgressFn;
use ibs_storage::{CallEvent, CallObserver, CallPhase, ObjectPath, Operation};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// How long a storage call may wait before the spinner names it.
pub const STALL_AFTER: Duration = Duration::from_secs(1);

/// How often the spinner is brought up to date.
const TICK: Duration = Duration::from_millis(200);

/// How often a bar's text (counts, bytes written) is rewritten at most; its
/// position moves on every report.
const MESSAGE_EVERY: Duration = Duration::from_millis(100);

/// The bars logs must not draw through, while a [`Progress`] shows any.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Turns on `tracing` logs on stderr: `RUST_LOG` when set (its
/// `target=level` list; an unreadable one is reported and ignored), else
/// by `verbose` — 0 none, 1 info, 2 debug, 3 or more trace — for the `ibs`
/// crates (at 3 and more, debug for every other crate too). Call it once,
/// first thing; a second call changes nothing.
pub fn init_logging(verbose: u8) {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let filter = match from_env.as_deref().map(str::parse::<Targets>) {
        Some(Ok(targets)) => Some(targets),
        Some(Err(e)) => {
            // Logging is not set up yet: this one line goes straight to stderr.
            eprintln!("ibs: RUST_LOG is not a list of target=level: {e}; it is ignored");
            verbosity_filter(verbose)
        }
        None => verbosity_filter(verbose),
    };
    let Some(filter) = filter else { return };
    let subscriber = tracing_subscriber::registry().with(filter).with(
        tracing_subscriber::fmt::layer()
            .with_writer(LogWriter)
            .with_target(true),
    );
    // Already set (a second call, or a test harness): keep the first.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The filter `-v` asks for, or none (no logs).
fn verbosity_filter(verbose: u8) -> Option<Targets> {
    let ours = match verbose {
        0 => return None,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let others = if verbose >= 3 {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    // Every ibs crate's target starts with `ibs` (ibs_storage, ibs_controller, … and the command's own).
    Some(Targets::new().with_default(others).with_target("ibs", ours))
}

/// Writes log lines to stderr, between redraws of any bars shown.
#[derive(Clone, Copy, Debug)]
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bars = lock(&BARS).clone();
        match bars {
            Some(bars) => bars.suspend(|| std::io::stderr().lock().write_all(buf))?,
            None => std::io::stderr().lock().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// The progress display of one command: a bar per operation (backup,
/// verify, restore, check) and the stalled-call spinner, drawn on stderr.
/// Disabled, it draws nothing and every method is a no-op that hands back
/// what it was given. Clones share the display.
#[derive(Clone, Debug)]
pub struct Progress {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    bars: MultiProgress,
    /// The operation's bar, when one is shown.
    main: Mutex<Option<ProgressBar>>,
    /// The stalled-call spinner, when shown.
    waiting: Mutex<Option<ProgressBar>>,
    /// Storage calls started and not yet finished: id → (operation, path, since).
    pending: Mutex<BTreeMap<u64, (Operation, ObjectPath, Instant)>>,
    /// Storage calls seen (started).
    calls: AtomicU64,
    ticker_started: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Logs go straight to stderr again.
        *lock(&BARS) = None;
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// A display on stderr when `enabled` (see [`Progress::for_stderr`] for
    /// when it should be), else one that draws nothing.
    pub fn new(enabled: bool) -> Self {
        if enabled {
            Self::drawing_to(ProgressDrawTarget::stderr())
        } else {
            Progress { shared: None }
        }
    }

    /// Enabled exactly when stderr is a terminal and neither `--json` nor
    /// `--quiet` was given.
    pub fn for_stderr(json: bool, quiet: bool) -> Self {
        Self::new(std::io::stderr().is_terminal() && !json && !quiet)
    }

    fn drawing_to(target: ProgressDrawTarget) -> Self {
        let bars = MultiProgress::with_draw_target(target);
        *lock(&BARS) = Some(bars.clone());
        Progress {
            shared: Some(Arc::new(Shared {
                bars,
                main: Mutex::new(None),
                waiting: Mutex::new(None),
                pending: Mutex::new(BTreeMap::new()),
                calls: AtomicU64::new(0),
                ticker_started: AtomicBool::new(false),
            })),
        }
    }

    /// Whether anything is drawn.
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Progress of a backup (for `ibs_controller::run_job_with_progress`):
    /// plaintext captured and its rate, files, archive bytes written. The
    /// total is not known before the sources have been read (their walk
    /// streams), so no ETA.
    pub fn backup_fn(&self) -> ProgressFn {
        self.backup_bar(None)
    }

    fn backup_bar(&self, total: Option<u64>) -> ProgressFn {
        let template = match total {
            Some(_) => {
                "{spinner} backup [{bar:30}] {bytes}/{total_bytes} captured, {binary_bytes_per_sec}, ETA {eta} · {msg}"
            }
            None => "{spinner} backup: {bytes} captured, {binary_bytes_per_sec} · {msg} [{elapsed}]",
        };
        self.bar_fn(total, template, |p| {
            (
                p.bytes_in,
                format!("{} files, {} written", p.entries_done, HumanBytes(p.bytes_out)),
            )
        })
    }

    /// Progress of `Backup::verify` (ibs-recovery): archive bytes read over
    /// both passes out of `total` (`Backup::verify_len()`, twice the
    /// archive's size: it is read twice), their rate and an ETA, the entries
    /// checked.
    pub fn verify_fn_with_total(&self, total: u64) -> ProgressFn {
        self.bar_fn(
            Some(total),
            "{spinner} verify [{bar:30}] {bytes}/{total_bytes}, {binary_bytes_per_sec}, ETA {eta} · {msg}",
            |p| (p.bytes_out, format!("{} entries checked", p.entries_done)),
        )
    }

    /// Progress of a restore (`RestoreOptions::progress`, ibs-recovery):
    /// the backup's stream bytes gone through out of `total_bytes`
    /// (`backup.archive().data_len()`), with an ETA, entries out of
    /// `total_entries` (`backup.archive().entry_count()`), bytes written.
    pub fn restore_fn(&self, total_bytes: u64, total_entries: u64) -> ProgressFn {
        self.bar_fn(
            Some(total_bytes),
            "{spinner} restore [{bar:30}] {bytes}/{total_bytes}, {binary_bytes_per_sec}, ETA {eta} · {msg}",
            move |p| {
                (
                    p.bytes_in,
                    format!(
                        "{}/{total_entries} entries, {} written",
                        p.entries_done,
                        HumanBytes(p.bytes_out)
                    ),
                )
            },
        )
    }

    /// `options` with a restore's progress, a bar with an ETA: the totals
    /// are `backup`'s, known from its index before the restore starts
    /// ([`Progress::restore_fn`]). Unchanged when disabled.
    pub fn restore_options_for(
        &self,
        options: ibs_recovery::RestoreOptions,
        backup: &ibs_recovery::Backup,
    ) -> ibs_recovery::RestoreOptions {
        if !self.is_enabled() {
            return options;
        }
        let archive = backup.archive();
        options.progress(self.restore_fn(archive.data_len(), archive.entry_count()))
    }

    /// Progress of a keyless check of backup `id`
    /// (`Recovery::check_integrity_with_progress`): archive bytes hashed out
    /// of `total` (`BackupInfo::archive_size`), with an ETA.
    pub fn check_fn(&self, id: &str, total: u64) -> ProgressFn {
        let template = format!(
            "{{spinner}} check {} [{{bar:30}}] {{bytes}}/{{total_bytes}}, {{binary_bytes_per_sec}}, ETA {{eta}}",
            id.replace(['{', '}'], "")
        );
        self.bar_fn(Some(total), &template, |p| (p.bytes_out, String::new()))
    }

    /// A new bar for the operation (the previous one cleared), fed by the
    /// returned callback: `report` turns a progress report into the bar's
    /// position and its text.
    fn bar_fn(
        &self,
        total: Option<u64>,
        template: &str,
        report: impl Fn(&ibs_archive::Progress) -> (u64, String) + Send + Sync + 'static,
    ) -> ProgressFn {
        let Some(shared) = &self.shared else {
            return Arc::new(|_: &ibs_archive::Progress| {});
        };
        let bar = match total {
            Some(len) => ProgressBar::new(len),
            None => ProgressBar::no_length(),
        };
        // A template of ours: it parses (checked by the tests); the default style otherwise.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let bar = shared.bars.insert(0, bar);
        bar.enable_steady_tick(TICK);
        if let Some(old) = lock(&shared.main).replace(bar.clone()) {
            old.finish_and_clear();
            shared.bars.remove(&old);
        }
        let last_message: Mutex<Option<Instant>> = Mutex::new(None);
        Arc::new(move |p: &ibs_archive::Progress| {
            let (position, message) = report(p);
            bar.set_position(position);
            let mut last = lock(&last_message);
            if last.is_none_or(|at| at.elapsed() >= MESSAGE_EVERY) {
                *last = Some(Instant::now());
                bar.set_message(message);
            }
        })
    }

    /// The observer to open a target with
    /// (`ibs_controller::open_target_observed`): every storage call's start
    /// and end, for the stalled-call spinner. `None` when disabled.
    pub fn call_observer(&self) -> Option<CallObserver> {
        let shared = self.shared.as_ref()?;
        self.start_ticker(shared);
        let weak = Arc::downgrade(shared);
        Some(Arc::new(move |event: &CallEvent| {
            if let Some(shared) = weak.upgrade() {
                shared.record(event);
            }
        }))
    }

    /// Prints a line above the bars (a message that must not be torn by
    /// them), on stderr; when disabled, plainly on stderr.
    pub fn println(&self, line: &str) {
        match &self.shared {
            Some(shared) => {
                let _ = shared.bars.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Clears every bar and the spinner: call it before printing a
    /// result. May be called any number of times; the display stays usable
    /// (the next operation's bar, the spinner of a later stalled call).
    pub fn finish(&self) {
        let Some(shared) = &self.shared else { return };
        for slot in [&shared.main, &shared.waiting] {
            if let Some(bar) = lock(slot).take() {
                bar.finish_and_clear();
                shared.bars.remove(&bar);
            }
        }
        let _ = shared.bars.clear();
    }

    /// Starts the thread that keeps the spinner up to date (once).
    fn start_ticker(&self, shared: &Arc<Shared>) {
        if shared.ticker_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(shared);
        let spawned = std::thread::Builder::new().name("ibs-progress".into()).spawn(move || {
            loop {
                std::thread::sleep(TICK);
                // Ends with the display.
                let Some(shared) = weak.upgrade() else { return };
                shared.tick();
            }
        });
        // Without the thread there is no spinner; the bars still work.
        if spawned.is_err() {
            shared.ticker_started.store(false, Ordering::SeqCst);
        }
    }

    #[cfg(test)]
    fn calls_seen(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.calls.load(Ordering::Relaxed))
    }

    #[cfg(test)]
    fn pending(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| lock(&s.pending).len())
    }
}

impl Shared {
    fn record(&self, event: &CallEvent) {
        let mut pending = lock(&self.pending);
        match event.phase {
            CallPhase::Started => {
                self.calls.fetch_add(1, Ordering::Relaxed);
                pending.insert(event.id, (event.operation, event.path.clone(), Instant::now()));
            }
            CallPhase::Finished { .. } => {
                pending.remove(&event.id);
            }
        }
    }

    /// What the spinner says now: the longest-waiting call, once it has
    /// waited [`STALL_AFTER`].
    fn stalled(&self) -> Option<String> {
        let pending = lock(&self.pending);
        let (operation, path, since) = pending.values().min_by_key(|(_, _, since)| *since)?;
        let waited = since.elapsed();
        (waited >= STALL_AFTER).then(|| format!("waiting for {operation} {path}… {} s", waited.as_secs()))
    }

    fn tick(&self) {
        let stalled = self.stalled();
        let mut waiting = lock(&self.waiting);
        match (stalled, waiting.as_ref()) {
            (Some(message), Some(spinner)) => spinner.set_message(message),
            (Some(message), None) => {
                let spinner = self.bars.add(ProgressBar::new_spinner());
                if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                    spinner.set_style(style);
                }
                spinner.set_message(message);
                spinner.enable_steady_tick(TICK);
                *waiting = Some(spinner);
            }
            (None, Some(_)) => {
                if let Some(spinner) = waiting.take() {
                    spinner.finish_and_clear();
                    self.bars.remove(&spinner);
                }
            }
            (None, None) => {}
        }
    }
}

#[cfg(test)]
use ibs_storage::{ObservedTarget, ReadTarget, StorageTarget};

/// Targets wrapped to feed the spinner, for the tests (the commands open
/// theirs with `open_target_observed`, which does it).
#[cfg(test)]
impl Progress {
    /// `target`, wrapped so that its calls feed the stalled-call spinner
    /// (unchanged when disabled). The wrapper only observes: it opens no
    /// `tracing` spans, as a target from `ibs_controller::open_target` is
    /// traced already (`open_target_observed` with
    /// [`Progress::call_observer`] does both in one wrapper).
    pub fn observe(&self, target: Arc<dyn StorageTarget>) -> Arc<dyn StorageTarget> {
        match self.call_observer() {
            Some(observer) => Arc::new(ObservedTarget::new(target).traced(false).with_observer(observer)),
            None => target,
        }
    }

    /// [`Progress::observe`] for a read-only target (recovery's).
    pub fn observe_read(&self, target: Arc<dyn ReadTarget>) -> Arc<dyn ReadTarget> {
        match self.call_observer() {
            Some(observer) => Arc::new(ObservedTarget::new(target).traced(false).with_observer(observer)),
            None => target,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ibs_storage::{MemoryTarget, ReadTargetExt};

    use super::*;

    fn hidden() -> Progress {
        Progress::drawing_to(ProgressDrawTarget::hidden())
    }

    fn report(bytes: u64) -> ibs_archive::Progress {
        ibs_archive::Progress {
            bytes_in: bytes,
            bytes_out: bytes / 2,
            entries_done: 3,
            frames_done: 1,
        }
    }

    #[test]
    fn disabled_draws_nothing_and_hands_targets_back_unchanged() {
        let progress = Progress::new(false);
        assert!(!progress.is_enabled());
        for f in [
            progress.backup_fn(),
            progress.verify_fn_with_total(10),
            progress.restore_fn(10, 2),
            progress.check_fn("x", 10),
        ] {
            f(&report(5));
        }
        assert!(progress.call_observer().is_none());
        let target: Arc<dyn StorageTarget> = Arc::new(MemoryTarget::new());
        assert!(Arc::ptr_eq(&progress.observe(target.clone()), &target));
        progress.finish();
    }

    #[test]
    fn every_template_parses_and_each_bar_shows_its_measure() {
        let progress = hidden();
        let main = || lock(&progress.shared.as_ref().unwrap().main).clone().unwrap();
        // bytes_in 500, bytes_out 250: backup and restore count what was
        // gone through, verify and check the archive bytes read.
        type Make<'a> = Box<dyn Fn() -> ProgressFn + 'a>;
        let makers: [(Make, u64); 4] = [
            (Box::new(|| progress.backup_fn()), 500),
            (Box::new(|| progress.verify_fn_with_total(1000)), 250),
            (Box::new(|| progress.restore_fn(1000, 7)), 500),
            (Box::new(|| progress.check_fn("20261130-120000", 1000)), 250),
        ];
        for (make, expected) in makers {
            make()(&report(500));
            assert_eq!(main().position(), expected);
        }
        // Finishing twice is fine, and the display is usable afterwards.
        progress.finish();
        progress.finish();
        progress.backup_fn()(&report(10));
        assert_eq!(main().position(), 10);
        progress.finish();
    }

    #[tokio::test]
    async fn the_observer_counts_calls_and_forgets_finished_ones() {
        let progress = hidden();
        let target = progress.observe(Arc::new(MemoryTarget::new()));
        let dir = ObjectPath::parse("a").unwrap();
        target.create_dir_all(&dir).await.unwrap();
        target.capacity().await.unwrap();
        assert!(target.head(&dir.child("missing").unwrap()).await.is_err());
        assert!(target.list_all(&dir).await.unwrap().is_empty());
        assert_eq!(progress.calls_seen(), 4);
        assert_eq!(progress.pending(), 0);
        let read: Arc<dyn ReadTarget> = Arc::new(MemoryTarget::new());
        let read = progress.observe_read(read);
        read.capacity().await.unwrap();
        assert_eq!(progress.calls_seen(), 5);
        progress.finish();
    }

    #[test]
    fn a_call_waiting_longer_than_the_threshold_is_named_with_its_seconds() {
        let progress = hidden();
        let shared = progress.shared.clone().unwrap();
        let path = ObjectPath::parse("fqdn/region/MASBackup/b1/archive.ibs").unwrap();
        shared.record(&CallEvent {
            id: 1,
            operation: Operation::Write,
            path: path.clone(),
            phase: CallPhase::Started,
        });
        assert_eq!(shared.stalled(), None);
        // As if it had started 12 s ago.
        lock(&shared.pending).get_mut(&1).unwrap().2 = Instant::now() - Duration::from_secs(12);
        assert_eq!(
            shared.stalled().as_deref(),
            Some("waiting for write fqdn/region/MASBackup/b1/archive.ibs… 12 s")
        );
        shared.tick();
        assert!(lock(&shared.waiting).is_some());
        shared.record(&CallEvent {
            id: 1,
            operation: Operation::Write,
            path,
            phase: CallPhase::Finished {
                elapsed: Duration::from_secs(12),
                bytes: 1,
                error: None,
            },
        });
        shared.tick();
        assert!(lock(&shared.waiting).is_none());
        progress.finish();
    }

    #[test]
    fn verbosity_maps_to_levels_and_zero_means_no_logs() {
        assert!(verbosity_filter(0).is_none());
        let info = verbosity_filter(1).unwrap();
        assert!(info.would_enable("ibs_controller::job", &tracing::Level::INFO));
        assert!(!info.would_enable("ibs_controller::job", &tracing::Level::DEBUG));
        assert!(!info.would_enable("hyper::client", &tracing::Level::INFO));
        let debug = verbosity_filter(2).unwrap();
        assert!(debug.would_enable("ibs_storage::observed", &tracing::Level::DEBUG));
        assert!(!debug.would_enable("ibs_storage::observed", &tracing::Level::TRACE));
        assert!("ibs_storage=trace,warn".parse::<Targets>().is_ok());
    }
}
