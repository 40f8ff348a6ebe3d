//! Failure injection for the suite: the target's own sink is wrapped in a
//! decorator that fails, stalls or raises notices when a check says so,
//! and reports what the dispatcher asked of it. Any backend runs the
//! failure checks this way, with no means of its own to break its storage;
//! every call the decorator does not fail reaches the real sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::async_sink::AsyncSink;
use crate::sink::{
    AckLevel, Batch, FailureKind, ShutdownSignal, Sink, SinkError, SinkOpen, StatusSignal,
};

/// The error of a write the suite failed on purpose.
#[derive(Debug, Clone, thiserror::Error)]
#[error("conformance: {0}")]
pub struct InjectedFailure(pub String);

/// How the next writes go, and what the sink was asked to do.
#[derive(Default)]
struct State {
    /// Fail the next `n` writes with this kind (`None`: every one).
    fail: Option<(FailureKind, Option<u32>)>,
    /// Stall the next write until [`Faults::release`].
    stall: bool,
    released: bool,
    /// Given out by the next `take_notices`.
    notice: Option<String>,
    /// Added to what `open` found.
    open_notice: Option<String>,
    /// Writes asked for, failed or not.
    attempts: u64,
    /// Levels returned by the real sink's writes, ticks and close.
    writes: Vec<AckLevel>,
    ticks: Vec<AckLevel>,
    closes: u32,
    /// The highest seq the real sink wrote, and the ticks begun since.
    written_upto: u64,
    ticks_since_write: u32,
    /// What the sink answered when asked for its tick interval.
    tick_interval: Option<Option<Duration>>,
    /// A stalled write began; its future was dropped before release.
    stalled: bool,
    cancelled: bool,
    /// The decorator (and the real sink in it) was dropped.
    dropped: bool,
}

/// The control a check holds over its decorated sink. Clones share it.
#[derive(Clone, Default)]
pub(super) struct Faults(Arc<Shared>);

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    released: tokio::sync::watch::Sender<bool>,
}

/// What the decorator does with one write.
enum Gate {
    Pass,
    Fail(FailureKind),
    Stall,
}

impl Faults {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state());
        self.0.changed.notify_all();
    }

    /// Fails the next `times` writes (every one: `None`) with `kind`,
    /// before they reach the real sink (which so holds none of them).
    pub(super) fn fail(&self, kind: FailureKind, times: Option<u32>) {
        self.change(|s| s.fail = Some((kind, times)));
    }

    /// Lets writes through again.
    pub(super) fn heal(&self) {
        self.change(|s| s.fail = None);
    }

    /// Stalls the next write until [`Faults::release`].
    pub(super) fn stall_next(&self) {
        self.change(|s| s.stall = true);
    }

    /// Ends a stall: the stalled write (if still waited for) fails.
    pub(super) fn release(&self) {
        self.change(|s| s.released = true);
        self.0.released.send_replace(true);
    }

    /// The next `take_notices` adds `text`.
    pub(super) fn notice(&self, text: String) {
        self.change(|s| s.notice = Some(text));
    }

    /// `open` adds `text` to what the sink found.
    pub(super) fn open_notice(&self, text: String) {
        self.change(|s| s.open_notice = Some(text));
    }

    pub(super) fn attempts(&self) -> u64 {
        self.state().attempts
    }

    pub(super) fn write_levels(&self) -> Vec<AckLevel> {
        self.state().writes.clone()
    }

    pub(super) fn tick_levels(&self) -> Vec<AckLevel> {
        self.state().ticks.clone()
    }

    /// Whether the write of `seq` returned, and since then either the sink
    /// has no tick or `ticks` more ticks began (so that many ended, and the
    /// dispatcher took their answers): what it left lower stays so.
    pub(super) fn idle_after(&self, seq: u64, ticks: u32) -> bool {
        let s = self.state();
        s.written_upto >= seq
            && (s.ticks_since_write > ticks || s.tick_interval.is_some_and(|t| t.is_none()))
    }

    pub(super) fn closes(&self) -> u32 {
        self.state().closes
    }

    pub(super) fn cancelled(&self) -> bool {
        self.state().cancelled
    }

    /// Waits, off the async threads, until `done` holds or `within` passed;
    /// says whether it holds. Dropping the future ends the wait.
    pub(super) async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&Faults) -> bool + Send + 'static,
    ) -> bool {
        /// Ends the blocking wait when the future is dropped (the other
        /// arm of a `select!` won).
        struct Quit(Faults, Arc<AtomicBool>);
        impl Drop for Quit {
            fn drop(&mut self) {
                self.1.store(true, Ordering::Release);
                self.0.change(|_| {});
            }
        }
        let quit = Quit(self.clone(), Arc::new(AtomicBool::new(false)));
        let (me, stop) = (self.clone(), quit.1.clone());
        let wait = tokio::task::spawn_blocking(move || {
            let until = Instant::now() + within;
            loop {
                if done(&me) {
                    return true;
                }
                let s = me.state();
                let now = Instant::now();
                if now >= until || stop.load(Ordering::Acquire) {
                    return false;
                }
                // A change between the look above and this wait is seen
                // at the next look, 100 ms later at most.
                drop(
                    me.0.changed
                        .wait_timeout(s, (until - now).min(Duration::from_millis(100)))
                        .unwrap_or_else(|e| e.into_inner()),
                );
            }
        });
        let held = wait.await.unwrap_or(false);
        drop(quit);
        held
    }

    pub(super) fn stalled(&self) -> bool {
        self.state().stalled
    }

    pub(super) fn dropped(&self) -> bool {
        self.state().dropped
    }

    fn gate(&self) -> Gate {
        let mut s = self.state();
        s.attempts += 1;
        let gate = if std::mem::take(&mut s.stall) {
            s.stalled = true;
            Gate::Stall
        } else {
            match &mut s.fail {
                Some((kind, None)) => Gate::Fail(*kind),
                Some((kind, Some(n))) if *n > 0 => {
                    *n -= 1;
                    Gate::Fail(*kind)
                }
                _ => Gate::Pass,
            }
        };
        drop(s);
        self.0.changed.notify_all();
        gate
    }

    fn stall_blocking(&self) {
        let mut s = self.state();
        while !s.released {
            s = self.0.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    async fn stall_async(&self) {
        // Dropped with the write's future when the bridge cancels it.
        struct OnCancel(Faults, bool);
        impl Drop for OnCancel {
            fn drop(&mut self) {
                if self.1 {
                    self.0.change(|s| s.cancelled = true);
                }
            }
        }
        let mut guard = OnCancel(self.clone(), true);
        let mut rx = self.0.released.subscribe();
        let _ = rx.wait_for(|r| *r).await;
        guard.1 = false;
    }

    fn note(&self, f: impl FnOnce(&mut State)) {
        self.change(f);
    }

    /// Notes what the real sink's write of `batch` returned; returns it.
    fn wrote(
        &self,
        batch: &Batch<'_>,
        result: Result<AckLevel, SinkError>,
    ) -> Result<AckLevel, SinkError> {
        if let Ok(level) = result {
            let upto = batch.records.last().map_or(0, |r| r.seq);
            self.note(|s| {
                s.writes.push(level);
                s.written_upto = s.written_upto.max(upto);
                s.ticks_since_write = 0;
            });
        }
        result
    }

    /// Notes what the real sink's tick returned; returns it.
    fn ticked(
        &self,
        result: Result<Option<AckLevel>, SinkError>,
    ) -> Result<Option<AckLevel>, SinkError> {
        if let Ok(Some(level)) = result {
            self.note(|s| s.ticks.push(level));
        }
        result
    }

    fn ticking(&self) {
        self.note(|s| s.ticks_since_write = s.ticks_since_write.saturating_add(1));
    }

    fn interval(&self, every: Option<Duration>) -> Option<Duration> {
        self.note(|s| s.tick_interval = Some(every));
        every
    }

    fn take_notice(&self) -> Option<String> {
        self.state().notice.take()
    }

    fn opened(&self, mut open: SinkOpen) -> SinkOpen {
        if let Some(n) = self.state().open_notice.take() {
            open.notices.push(n);
        }
        open
    }
}

fn injected(kind: FailureKind) -> SinkError {
    let what = match kind {
        FailureKind::Transient => "an injected transient failure",
        FailureKind::Permanent => "an injected permanent failure",
    };
    SinkError::new(kind, InjectedFailure(what.into()))
}

fn released() -> SinkError {
    SinkError::permanent(InjectedFailure(
        "a stalled write released after the shutdown".into(),
    ))
}

/// Says the decorator is gone once the real sink in it was dropped (a
/// field dropped after it).
struct DropFlag(Faults);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.change(|s| s.dropped = true);
    }
}

/// The methods a faulty sink of either kind passes to the real one (the
/// tick interval noted), alike in [`Sink`] and [`AsyncSink`].
macro_rules! forward_to_inner {
    () => {
        fn tick_interval(&self) -> Option<Duration> {
            self.faults.interval(self.inner.tick_interval())
        }
        fn linger(&self) -> Option<Duration> {
            self.inner.linger()
        }
        fn max_batch(&self) -> Option<usize> {
            self.inner.max_batch()
        }
        fn watch_shutdown(&mut self, signal: ShutdownSignal) {
            self.inner.watch_shutdown(signal)
        }
        fn watch_status(&mut self, status: StatusSignal) {
            self.inner.watch_status(status)
        }
    };
}

/// A blocking sink under the suite's control.
pub(super) struct FaultySink {
    inner: Box<dyn Sink>,
    faults: Faults,
    _flag: DropFlag,
}

impl FaultySink {
    pub(super) fn new(inner: Box<dyn Sink>, faults: &Faults) -> FaultySink {
        FaultySink {
            inner,
            faults: faults.clone(),
            _flag: DropFlag(faults.clone()),
        }
    }
}

impl Sink for FaultySink {
    fn max_level(&self) -> AckLevel {
        self.inner.max_level()
    }
    fn open(&mut self) -> Result<SinkOpen, SinkError> {
        self.inner.open().map(|o| self.faults.opened(o))
    }
    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        match self.faults.gate() {
            Gate::Fail(kind) => return Err(injected(kind)),
            Gate::Stall => {
                self.faults.stall_blocking();
                return Err(released());
            }
            Gate::Pass => {}
        }
        self.faults.wrote(batch, self.inner.write(batch))
    }
    fn tick(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.faults.ticking();
        self.faults.ticked(self.inner.tick())
    }
    forward_to_inner!();
    fn take_notices(&mut self) -> Vec<String> {
        let mut notices = self.inner.take_notices();
        notices.extend(self.faults.take_notice());
        notices
    }
    fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.faults.note(|s| s.closes += 1);
        self.inner.close()
    }
}

/// An async sink under the suite's control.
pub(super) struct FaultyAsyncSink {
    inner: Box<dyn AsyncSink>,
    faults: Faults,
    _flag: DropFlag,
}

impl FaultyAsyncSink {
    pub(super) fn new(inner: Box<dyn AsyncSink>, faults: &Faults) -> FaultyAsyncSink {
        FaultyAsyncSink {
            inner,
            faults: faults.clone(),
            _flag: DropFlag(faults.clone()),
        }
    }
}

#[async_trait::async_trait]
impl AsyncSink for FaultyAsyncSink {
    fn max_level(&self) -> AckLevel {
        self.inner.max_level()
    }
    async fn open(&mut self) -> Result<SinkOpen, SinkError> {
        let open = self.inner.open().await?;
        Ok(self.faults.opened(open))
    }
    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        match self.faults.gate() {
            Gate::Fail(kind) => return Err(injected(kind)),
            Gate::Stall => {
                self.faults.stall_async().await;
                return Err(released());
            }
            Gate::Pass => {}
        }
        self.faults.wrote(batch, self.inner.write(batch).await)
    }
    async fn tick(&self) -> Result<Option<AckLevel>, SinkError> {
        self.faults.ticking();
        self.faults.ticked(self.inner.tick().await)
    }
    forward_to_inner!();
    fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight()
    }
    fn take_notices(&self) -> Vec<String> {
        let mut notices = self.inner.take_notices();
        notices.extend(self.faults.take_notice());
        notices
    }
    async fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.faults.note(|s| s.closes += 1);
        self.inner.close().await
    }
}
