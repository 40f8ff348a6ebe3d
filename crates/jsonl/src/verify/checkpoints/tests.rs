//! In-file checkpoints further behind their lines than the walk keeps
//! heads (64 lines under `cfg(test)`, 2^20 otherwise) are compared by the
//! second pass, never only noted: moving checkpoints away from their lines
//! does not take them out of the comparison.

use std::path::Path;

use crate::chain::{Chain, GENESIS};
use crate::checkpoint::{ChainAlgorithm, CheckpointPayload, CheckpointReason};
use crate::keys::Signer;
use crate::options::ChainKey;
use crate::verify::{self, HEADS_KEPT, ProblemKind, VerifyOptions, VerifyReport};

use super::MAX_DEFERRED;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A line of the plan: an application record, or a checkpoint over
/// `(from, upto]` saying it holds `records` lines.
#[derive(Clone, Copy)]
enum Plan {
    Call,
    Cp { from: u64, upto: u64, records: u64 },
}

fn line(seq: u64, event_type: &str, payload: &str, prev: &str) -> String {
    format!(
        r#"{{"v":1,"seq":{seq},"ts":"2026-11-25T23:32:22.000000000Z","event_type":"{event_type}","request_id":"r1","correlation_id":"r1","trace_id":null,"span_id":null,"parent_span_id":null,"agent":"a","payload":{payload},"prev":"{prev}"}}"#
    )
}

/// The lines of `plan`, seq 1 on, chained by `chain`, checkpoints signed
/// by `signer` over the heads they name.
fn build(chain: &Chain, signer: &Signer, plan: &[Plan]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut heads = vec![GENESIS.to_string()];
    for (i, p) in plan.iter().enumerate() {
        let seq = i as u64 + 1;
        let prev = heads.last().unwrap().clone();
        let l = match *p {
            Plan::Call => line(seq, "tool_call", &format!(r#"{{"n":{seq}}}"#), &prev),
            Plan::Cp {
                from,
                upto,
                records,
            } => {
                let cp = CheckpointPayload::sign_with_origin(
                    signer,
                    "audit-log.jsonl",
                    None,
                    ChainAlgorithm::of(chain.is_keyed()),
                    from,
                    upto,
                    records,
                    &heads[upto as usize],
                    CheckpointReason::Count,
                );
                line(
                    seq,
                    "checkpoint",
                    &serde_json::to_string(&cp).unwrap(),
                    &prev,
                )
            }
        };
        heads.push(hex::encode(chain.hash(l.as_bytes())));
        out.push(l);
    }
    out
}

/// Recomputes the chain from line `from` (0-based) on, as someone without
/// a key does after changing lines.
fn rechain(chain: &Chain, lines: &mut [String], from: usize) {
    for i in from.max(1)..lines.len() {
        let prev = hex::encode(chain.hash(lines[i - 1].as_bytes()));
        let at = lines[i].rfind(r#","prev":""#).unwrap();
        lines[i] = format!(r#"{},"prev":"{prev}"}}"#, &lines[i][..at]);
    }
}

fn verify_lines(dir: &Path, lines: &[String], options: &VerifyOptions) -> VerifyReport {
    let path = dir.join("audit-log.jsonl");
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).unwrap();
    verify::verify(&[&path], options, &mut |_| {}).unwrap()
}

fn signed_by(signer: &Signer) -> VerifyOptions {
    VerifyOptions {
        public_keys: vec![signer.public_key()],
        ..VerifyOptions::default()
    }
}

/// 200 records with a checkpoint over seq 1..=10 on line 101, 90 lines
/// after its line: further behind than the walk keeps heads.
fn lagging() -> Vec<Plan> {
    let mut plan = vec![Plan::Call; 200];
    plan[100] = Plan::Cp {
        from: 0,
        upto: 10,
        records: 10,
    };
    plan
}

#[test]
fn a_checkpoint_further_behind_its_line_than_the_heads_kept_is_still_compared() {
    const { assert!(HEADS_KEPT < 90) };
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate();
    let chain = Chain::plain();
    let good = build(&chain, &signer, &lagging());

    let report = verify_lines(dir.path(), &good, &signed_by(&signer));
    assert!(report.intact, "{report}");
    assert_eq!(report.checkpoints.heads_matched, 1, "{report}");
    assert!(
        !report
            .notices
            .iter()
            .any(|n| n.message.contains("not compared")),
        "{report}"
    );

    // Record 5 changed, the plain chain recomputed: the checkpoint 96
    // lines further on still catches it.
    let mut l = good.clone();
    l[4] = l[4].replace(r#""n":5"#, r#""n":55"#);
    rechain(&chain, &mut l, 5);
    let report = verify_lines(dir.path(), &l, &signed_by(&signer));
    let p = report
        .problem
        .expect("a rewrite before a lagging checkpoint");
    assert_eq!((p.kind, p.line), (ProblemKind::Rewritten, 101), "{p}");

    // The covered line removed (a seq gap is only a notice): deleted.
    let mut l = good.clone();
    l.remove(9);
    rechain(&chain, &mut l, 9);
    let report = verify_lines(dir.path(), &l, &signed_by(&signer));
    let p = report.problem.expect("the covered line removed");
    assert_eq!((p.kind, p.line), (ProblemKind::Deleted, 100), "{p}");

    // A line of its range removed, the seqs after it renumbered: its head
    // differs.
    let mut l = good.clone();
    l.remove(3);
    for (i, x) in l.iter_mut().enumerate() {
        let v: serde_json::Value = serde_json::from_str(x).unwrap();
        let old = v["seq"].as_u64().unwrap();
        *x = x.replacen(
            &format!(r#""seq":{old},"#),
            &format!(r#""seq":{},"#, i + 1),
            1,
        );
    }
    rechain(&chain, &mut l, 1);
    let report = verify_lines(dir.path(), &l, &signed_by(&signer));
    assert!(!report.intact, "{report}");
}

#[test]
fn the_second_pass_counts_records_and_uses_the_chain_key() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate();
    let chain = Chain::keyed(KEY);
    let keyed = VerifyOptions {
        key: Some(ChainKey::new(KEY)),
        ..signed_by(&signer)
    };
    let mut plan = lagging();
    plan[150] = Plan::Cp {
        from: 10,
        upto: 20,
        records: 10,
    };
    let report = verify_lines(dir.path(), &build(&chain, &signer, &plan), &keyed);
    assert!(report.intact, "{report}");
    assert_eq!(report.checkpoints.heads_matched, 2, "{report}");

    // A signed count that is not the lines': the range was changed.
    plan[150] = Plan::Cp {
        from: 10,
        upto: 20,
        records: 9,
    };
    let report = verify_lines(dir.path(), &build(&chain, &signer, &plan), &keyed);
    let p = report.problem.expect("a count that differs");
    assert_eq!((p.kind, p.line), (ProblemKind::Rewritten, 151), "{p}");
    assert!(p.message.contains("9 records"), "{p}");
}

#[test]
fn copies_of_one_lagging_checkpoint_cost_nothing_and_too_many_distinct_ones_are_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate();
    let chain = Chain::plain();
    let cp = |upto: u64| Plan::Cp {
        from: upto - 1,
        upto,
        records: 1,
    };
    // The same statement many times over, each 100 lines behind: kept
    // once, compared once.
    let mut plan = vec![Plan::Call; 300];
    for p in &mut plan[150..150 + 3 * MAX_DEFERRED] {
        *p = cp(20);
    }
    let lines = build(&chain, &signer, &plan);
    let first = lines[150].clone();
    let mut copies = lines.clone();
    let payload_at = first.find(r#""payload":"#).unwrap();
    let end = first.rfind(r#","prev":""#).unwrap();
    let payload = &first[payload_at..end];
    for c in &mut copies[151..150 + 3 * MAX_DEFERRED] {
        // Same payload, its own seq and prev.
        let own_at = c.find(r#""payload":"#).unwrap();
        let own_end = c.rfind(r#","prev":""#).unwrap();
        *c = format!("{}{payload}{}", &c[..own_at], &c[own_end..]);
    }
    rechain(&chain, &mut copies, 151);
    let report = verify_lines(dir.path(), &copies, &signed_by(&signer));
    assert!(report.intact, "{report}");

    // Distinct ones beyond the bound: a problem at the first one past it.
    let mut plan = vec![Plan::Call; 300];
    for k in 0..=MAX_DEFERRED {
        plan[150 + k] = cp(20 + k as u64);
    }
    let report = verify_lines(
        dir.path(),
        &build(&chain, &signer, &plan),
        &signed_by(&signer),
    );
    let p = report.problem.expect("too many lagging checkpoints");
    assert_eq!(
        (p.kind, p.line),
        (ProblemKind::BadCheckpoint, 151 + MAX_DEFERRED as u64),
        "{p}"
    );
}
