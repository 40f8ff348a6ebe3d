//! Child processes: reading their output line by line, and their memory.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Reads a child's output on a thread, one newline-terminated line at a
/// time. An unterminated last line (the child was killed mid-print) is
/// not a line and is dropped.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

impl Lines {
    /// Starts reading `src`.
    pub fn spawn(src: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut r = BufReader::new(src);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if buf.last() != Some(&b'\n') => return,
                    Ok(_) => {
                        buf.pop();
                        if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Lines {
            rx,
            thread: Some(thread),
        }
    }

    /// The next line, waiting at most `timeout`; `None` on timeout or end.
    pub fn next_within(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Every remaining line, once the source reached its end (call after
    /// the child exited).
    pub fn rest(mut self) -> Vec<String> {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.rx.try_iter().collect()
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&text, field)
}

/// A field of this process's `/proc/self/status` in KiB.
pub fn self_status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field(&text, field)
}

fn status_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What a `fault-writer` child said in its `REPORT {json}` line on stderr,
/// and the highest resident set sampled while it ran.
pub struct Reported {
    /// The report: counts, health, shutdown, `vm_hwm_kib`.
    pub report: serde_json::Value,
    /// The largest `VmRSS` seen, sampling every 2 ms (KiB).
    pub peak_sampled_kib: u64,
}

/// Waits for `child` (started with stderr piped), sampling its resident
/// set on top of the peak it reports itself, then reads its report.
pub fn wait_for_report(child: &mut std::process::Child) -> Reported {
    let pid = child.id();
    let mut stderr_pipe = child.stderr.take().expect("the child's stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let mut peak_sampled_kib = 0;
    while child.try_wait().expect("wait for the child").is_none() {
        if let Some(kib) = status_kib(pid, "VmRSS") {
            peak_sampled_kib = peak_sampled_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let stderr = reader.join().expect("the stderr reader");
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("REPORT "))
        .unwrap_or_else(|| panic!("no report: {stderr}"));
    Reported {
        report: serde_json::from_str(line).expect("the report is JSON"),
        peak_sampled_kib,
    }
}
