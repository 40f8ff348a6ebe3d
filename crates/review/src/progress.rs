//! A progress bar on stderr for long reads (feature `progress`).
//!
//! It stays hidden unless stderr is a terminal *and* the work has already
//! taken a second, so quick commands, pipes, CI logs and redirected output
//! never see it.
//!
//! ```
//! use agent_audit_review::progress::Progress;
//!
//! let mut progress = Progress::new(1_000_000, "reading");
//! for done in (0..=1_000_000u64).step_by(4096) {
//!     progress.set(done);
//! }
//! progress.finish();
//! ```

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long work runs before the bar appears.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);

/// A byte-count progress bar that appears only when worth it.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    terminal: bool,
    shown: bool,
    calls: u32,
}

impl Progress {
    /// A bar over `total` bytes labelled `message`, hidden for now.
    pub fn new(total: u64, message: &'static str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message);
        Progress {
            bar,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            shown: false,
            calls: 0,
        }
    }

    /// Records that `done` bytes are processed. Cheap enough to call per
    /// record: the clock is read once every 1024 calls.
    pub fn set(&mut self, done: u64) {
        self.calls = self.calls.wrapping_add(1);
        if !self.calls.is_multiple_of(1024) {
            return;
        }
        if !self.shown && self.terminal && self.started.elapsed() >= SHOW_AFTER {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        if self.shown {
            self.bar.set_position(done);
        }
    }

    /// Removes the bar, if shown.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
