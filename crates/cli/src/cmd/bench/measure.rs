//! What `bench` reads off the process and off the audit file.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// User + system CPU the whole process (every thread, live or ended) has
/// used so far, in seconds; 0 where /proc is not there.
///
/// From /proc/self/stat rather than getrusage: the workspace denies
/// `unsafe`, and the 10 ms clock ticks (USER_HZ, fixed at 100 for /proc)
/// are fine against runs of a second or more.
pub(super) fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name in parentheses may hold spaces; utime and stime are
    // the 12th and 13th fields after it (14th and 15th of the line).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let mut fields = rest.split_whitespace().skip(11);
    let mut ticks = || {
        fields
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (user, system) = (ticks(), ticks());
    (user + system) as f64 / 100.0
}

/// Peak resident set size of this process (VmHWM), 0 where unknown.
pub(super) fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The `p` quantile (0..=1) of sorted nanoseconds, in microseconds; 0 for
/// no samples.
pub(super) fn quantile_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

/// Emit latencies in constant memory (about 30 KiB), so that a run of a
/// million records does not measure its own 8 MiB vector of samples in its
/// peak RSS. Values under 128 ns are exact; above, a bucket is 1/64 of its
/// power of two wide, so a quantile is within 1.6 %.
pub(super) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB: u32 = 64;

impl Histogram {
    pub(super) fn new() -> Histogram {
        Histogram {
            counts: vec![0; (2 * SUB + (64 - 7) * SUB) as usize],
            total: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 2 * SUB as u64 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros();
        let mantissa = (v >> (e - 6)) as u32;
        (2 * SUB + (e - 7) * SUB + (mantissa - SUB)) as usize
    }

    /// The middle of bucket `i`, in nanoseconds.
    fn value(i: usize) -> f64 {
        let i = i as u32;
        if i < 2 * SUB {
            return f64::from(i);
        }
        let e = (i - 2 * SUB) / SUB + 7;
        let mantissa = (i - 2 * SUB) % SUB + SUB;
        let low = (u64::from(mantissa) << (e - 6)) as f64;
        low + (1u64 << (e - 6)) as f64 / 2.0
    }

    pub(super) fn record(&mut self, nanos: u64) {
        self.counts[Self::index(nanos)] += 1;
        self.total += 1;
    }

    pub(super) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The `p` quantile (0..=1) in microseconds, chosen as
    /// [`quantile_us`] chooses; 0 for no samples.
    pub(super) fn quantile_us(&self, p: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((self.total as f64 - 1.0) * p).round() as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Self::value(i) / 1000.0;
            }
        }
        0.0
    }
}

/// Where the audit file stood when the run began.
#[derive(Clone, Copy)]
pub(super) struct Mark {
    len: u64,
    ino: u64,
}

impl Mark {
    /// The file's length and inode now; `None` if it cannot be read.
    pub(super) fn of(path: &Path) -> Option<Mark> {
        let m = std::fs::metadata(path).ok()?;
        Some(Mark {
            len: m.len(),
            ino: m.ino(),
        })
    }
}

/// The lines the run added to the audit file, read back after shutdown.
#[derive(Serialize)]
pub(super) struct SeqCheck {
    /// Lines the file gained during the run.
    pub(super) lines: u64,
    /// Bytes the file gained during the run.
    pub(super) bytes: u64,
    pub(super) first_seq: Option<u64>,
    pub(super) last_seq: Option<u64>,
    /// Every line's seq is one more than the line's before.
    pub(super) contiguous: bool,
    /// `tool_call` lines among them: the bench's records and the probes.
    pub(super) tool_calls: u64,
    /// The `tool_call` lines the run emitted.
    pub(super) expected_tool_calls: u64,
}

impl SeqCheck {
    /// Nothing lost and nothing out of order.
    pub(super) fn ok(&self) -> bool {
        self.contiguous && self.tool_calls == self.expected_tool_calls
    }
}

#[derive(Deserialize)]
struct SeqOf<'a> {
    seq: u64,
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
}

/// Reads what `path` gained since `mark`: the lines, their seqs and the
/// `tool_call` count. `Err` says why it could not be checked (the file
/// rotated during the run, a line that is not a record).
pub(super) fn check_seq(path: &Path, mark: &Mark, expected: u64) -> Result<SeqCheck, String> {
    let now = Mark::of(path).ok_or_else(|| format!("{} cannot be read", path.display()))?;
    if now.ino != mark.ino || now.len < mark.len {
        return Err("the file rotated during the run".into());
    }
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.seek(SeekFrom::Start(mark.len))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut check = SeqCheck {
        lines: 0,
        bytes: now.len - mark.len,
        first_seq: None,
        last_seq: None,
        contiguous: true,
        tool_calls: 0,
        expected_tool_calls: expected,
    };
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        let at = check.lines + 1;
        let rec: SeqOf<'_> = serde_json::from_slice(&line)
            .map_err(|e| format!("line {at} of the run is not a record: {e}"))?;
        if let Some(last) = check.last_seq {
            check.contiguous &= rec.seq == last.wrapping_add(1);
        }
        check.first_seq.get_or_insert(rec.seq);
        check.last_seq = Some(rec.seq);
        check.tool_calls += u64::from(rec.event_type == "tool_call");
        check.lines += 1;
    }
    Ok(check)
}

/// Removes a scratch file however the run ends.
pub(super) struct Remove(pub(super) PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        // Best effort on an error path, which reports its own error; the
        // success path removes the file itself and reports a failure.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A scratch file for `what`: hidden, beside `audit_file` (so on the same file
/// system), named for this process so two benches do not share it.
pub(super) fn path_beside(audit_file: &Path, what: &str) -> PathBuf {
    let dir = match audit_file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    dir.join(format!(
        ".agent-audit-bench-{what}-{}.tmp",
        std::process::id()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_two_percent_of_the_exact_ones() {
        // Spread over many powers of two, as emit latencies are.
        let mut exact: Vec<u64> = (0..200_000u64).map(|i| i * i / 7 + i % 13).collect();
        let mut h = Histogram::new();
        for &v in &exact {
            h.record(v);
        }
        exact.sort_unstable();
        for p in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = quantile_us(&exact, p);
            let got = h.quantile_us(p);
            assert!(
                (got - want).abs() <= 0.016 * want + 0.001,
                "p{p}: {got} against {want}"
            );
        }
        let mut other = Histogram::new();
        other.record(u64::MAX);
        h.merge(&other);
        assert!(h.quantile_us(1.0) > 1e12, "the top bucket holds u64::MAX");
        assert_eq!(Histogram::new().quantile_us(0.5), 0.0);
    }
}
