//! `bench`'s figures as text, for people.

use super::BenchResult;
use crate::error::CliError;

/// Prints `r` as aligned lines; the baseline and the probe beside ours.
pub(super) fn print_text(r: &BenchResult) -> Result<(), CliError> {
    outln!("records          {}", r.records);
    outln!("tasks            {}", r.tasks);
    outln!("sinks            {}", r.sinks.join("; "));
    outln!("elapsed          {:.3} s", r.seconds);
    outln!("records/s        {:.0}", r.records_per_sec);
    if r.tasks > 1 {
        outln!("records/s/task   {:.0}", r.records_per_sec / r.tasks as f64);
    }
    outln!("MB/s             {:.1}", r.mb_per_sec);
    if let Some(b) = r.bytes_per_line {
        outln!("bytes/line       {b:.0}");
    }
    outln!("CPU us/record    {:.2}", r.cpu_us_per_record);
    outln!("emit p50         {:.2} us", r.emit_p50_us);
    outln!("emit p99         {:.2} us", r.emit_p99_us);
    outln!("records lost     {}", r.lost);
    match (&r.seq_check, &r.seq_check_skipped) {
        (Some(c), _) => {
            let seqs = match (c.first_seq, c.last_seq) {
                (Some(a), Some(b)) => format!("seq {a}..={b}"),
                _ => "no lines".to_string(),
            };
            outln!(
                "file check       {} lines, {seqs} {}, {} of {} tool_calls: {}",
                c.lines,
                if c.contiguous {
                    "contiguous"
                } else {
                    "NOT contiguous"
                },
                c.tool_calls,
                c.expected_tool_calls,
                if c.ok() { "ok" } else { "INCOMPLETE" }
            );
        }
        (None, Some(why)) => outln!("file check       not done: {why}"),
        (None, None) => {}
    }
    outln!(
        "peak RSS         {:.1} MiB",
        r.peak_rss_bytes as f64 / 1048576.0
    );
    if let Some(b) = &r.baseline {
        outln!("baseline         {}", b.method);
        outln!(
            "  records/s      {:.0} (ours {:.2}x baseline)",
            b.records_per_sec,
            r.x_baseline.unwrap_or(0.0)
        );
        outln!("  elapsed        {:.3} s", b.seconds);
        outln!("  bytes/line     {:.0}", b.bytes_per_line);
        outln!(
            "  CPU us/record  {:.2} (ours {:.2}x baseline)",
            b.cpu_us_per_record,
            if b.cpu_us_per_record > 0.0 {
                r.cpu_us_per_record / b.cpu_us_per_record
            } else {
                0.0
            }
        );
    }
    if let Some(p) = &r.durable_probe {
        outln!(
            "durable wait     p50 {:.0} us, p99 {:.0} us ({} tool_calls with emit_wait(.., Durable), one every {} ms while the tasks emitted{})",
            p.p50_us,
            p.p99_us,
            p.samples,
            p.every_ms,
            if p.below_durable > 0 {
                format!("; {} receipts below Durable", p.below_durable)
            } else {
                String::new()
            }
        );
        outln!(
            "fdatasync        p50 {:.0} us, p99 {:.0} us ({} appends of 400 bytes + fdatasync beside the file, after the run)",
            p.fdatasync_p50_us,
            p.fdatasync_p99_us,
            p.fdatasync_samples
        );
        outln!("durable/fsync    {:.2}x at p99", p.p99_ratio);
        outln!(
            "loaded peer      p50 {:.0} us, p99 {:.0} us ({} lines appended + flush + fdatasync, one every {} ms, through the lock of a plain writer appending flat out to the same file beside the log, after the run)",
            p.loaded_peer_p50_us,
            p.loaded_peer_p99_us,
            p.loaded_peer_samples,
            p.every_ms
        );
        outln!(
            "  its load       {:.0} records/s, {:.1} MB/s over {:.3} s (serde_json + BufWriter<File>, one thread; the syncs hold it)",
            p.loaded_peer_records_per_sec,
            p.loaded_peer_mb_per_sec,
            p.loaded_peer_seconds
        );
        outln!(
            "durable/peer     {:.2}x at p99 (Durable p99 x loaded peer p99)",
            p.p99_ratio_loaded
        );
    }
    Ok(())
}
