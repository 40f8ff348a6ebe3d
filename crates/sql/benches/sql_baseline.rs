//! The SQL sink against the limit of each engine, in one run: a plain sqlx
//! loop doing the same batched inserts in transactions (one multi-row
//! INSERT of the same columns per batch of the sink's default size, one
//! commit each, the same session settings), then the same number of
//! records emitted through a dispatcher into the sink, as
//! `agent-audit bench` does. Prints records/s of each and their ratio (the
//! goal is at least 0.7x), and fails if a record was lost.
//!
//! `cargo bench -p agent-audit-sql --bench sql_baseline` (records:
//! `SQL_BENCH_RECORDS`, default 100000). PostgreSQL is a throwaway server
//! on loopback (`agent_audit_tests::postgres`), SQLite a file in a
//! temporary directory.

use std::time::{Duration, Instant};

use agent_audit_core::{Auditor, Dispatcher, EventType, SinkOptions};
use agent_audit_sql::schema::create_statements;
use agent_audit_sql::{DEFAULT_BATCH_SIZE, Engine, SqlOptions, SqlSink};
use agent_audit_tests::postgres::PgServer;
use sqlx::{ConnectOptions, Connection, Postgres, QueryBuilder, Sqlite};

/// The row the loop inserts: the shape and size of a bench record.
struct Row {
    seq: i64,
    ts: String,
    payload: String,
    prev: String,
    line: String,
}

fn rows(n: u64) -> Vec<Row> {
    (1..=n)
        .map(|i| {
            let payload = format!(
                "{{\"tool\":\"get_account_balance\",\"call_id\":\"call_0_{i:012}\",\"arguments\":{{\"account_id\":\"12345\",\"currency\":\"EUR\",\"include_pending\":{}}},\"model\":\"offline\"}}",
                i % 2 == 0
            );
            let ts = format!("2026-12-07T18:00:00.{i:09}Z");
            let prev = format!("{i:064x}");
            let line = format!(
                "{{\"v\":2,\"seq\":{i},\"ts\":\"{ts}\",\"event_type\":\"tool_call\",\"request_id\":\"bench\",\"correlation_id\":\"c\",\"trace_id\":\"{prev:.32}\",\"span_id\":\"{prev:.16}\",\"parent_span_id\":null,\"agent\":\"bench\",\"payload\":{payload},\"prev\":\"{prev}\"}}"
            );
            Row {
                seq: i as i64,
                ts,
                payload,
                prev,
                line,
            }
        })
        .collect()
}

const COLUMNS: &str = "seq, ts, event_type, request_id, correlation_id, trace_id, span_id, parent_span_id, agent, payload, prev, line, user_id, session_id, attributes";

/// The plain loop: returns records/s.
async fn baseline(url: &str, n: u64) -> f64 {
    let engine = if url.starts_with("sqlite") {
        Engine::Sqlite
    } else {
        Engine::Postgres
    };
    let data = rows(n);
    let head = format!("INSERT INTO baseline ({COLUMNS}) ");
    match engine {
        Engine::Sqlite => {
            let mut c = url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .disable_statement_logging()
                .connect()
                .await
                .unwrap();
            for s in create_statements(engine, "baseline") {
                sqlx::query(&s).execute(&mut c).await.unwrap();
            }
            let started = Instant::now();
            for batch in data.chunks(DEFAULT_BATCH_SIZE) {
                let mut tx = c.begin().await.unwrap();
                let mut q = QueryBuilder::<Sqlite>::new(&head);
                q.push_values(batch, |mut b, r| {
                    b.push_bind(r.seq)
                        .push_bind(&r.ts)
                        .push_bind("tool_call")
                        .push_bind("bench")
                        .push_bind("c")
                        .push_bind(&r.prev[..32])
                        .push_bind(&r.prev[..16])
                        .push_bind(None::<&str>)
                        .push_bind("bench")
                        .push_bind(&r.payload)
                        .push_bind(&r.prev)
                        .push_bind(&r.line)
                        .push_bind(None::<&str>)
                        .push_bind(None::<&str>)
                        .push_bind("{}");
                });
                q.build().execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
            n as f64 / started.elapsed().as_secs_f64()
        }
        Engine::Postgres => {
            let mut c = url
                .parse::<sqlx::postgres::PgConnectOptions>()
                .unwrap()
                .options([("synchronous_commit", "on")])
                .disable_statement_logging()
                .connect()
                .await
                .unwrap();
            for s in create_statements(engine, "baseline") {
                sqlx::query(&s).execute(&mut c).await.unwrap();
            }
            let started = Instant::now();
            for batch in data.chunks(DEFAULT_BATCH_SIZE) {
                let mut tx = c.begin().await.unwrap();
                let mut q = QueryBuilder::<Postgres>::new(&head);
                q.push_values(batch, |mut b, r| {
                    b.push_bind(r.seq)
                        .push_bind(&r.ts)
                        .push_bind("tool_call")
                        .push_bind("bench")
                        .push_bind("c")
                        .push_bind(&r.prev[..32])
                        .push_bind(&r.prev[..16])
                        .push_bind(None::<&str>)
                        .push_bind("bench")
                        .push_bind(&r.payload)
                        .push_unseparated("::jsonb")
                        .push_bind(&r.prev)
                        .push_bind(&r.line)
                        .push_bind(None::<&str>)
                        .push_bind(None::<&str>)
                        .push_bind("{}")
                        .push_unseparated("::jsonb");
                });
                q.build().execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
            n as f64 / started.elapsed().as_secs_f64()
        }
    }
}

/// The sink through a dispatcher, as `agent-audit bench` drives it:
/// returns records/s and the records lost.
async fn through_sink(url: &str, n: u64) -> (f64, u64) {
    let sink = SqlSink::new(&SqlOptions::for_url(url)).unwrap();
    let d = Dispatcher::builder()
        .async_sink(SinkOptions::new("sql").required(true), sink)
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone())
        .for_request(Some("bench"))
        .with_agent("bench");
    let started = Instant::now();
    for i in 0..n {
        let payload = serde_json::json!({
            "tool": "get_account_balance",
            "call_id": format!("call_0_{i:012}"),
            "arguments": {"account_id": "12345", "currency": "EUR", "include_pending": i % 2 == 0},
            "model": "offline",
        });
        a.emit(EventType::ToolCall, &payload).await.unwrap();
    }
    let report = d.shutdown(Duration::from_secs(600)).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let lost = report
        .sinks
        .iter()
        .map(|s| s.health.dropped + s.health.failed + s.undelivered)
        .sum();
    (rate, lost)
}

fn main() {
    let n: u64 = std::env::var("SQL_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = PgServer::start().unwrap_or_else(|why| panic!("cannot start PostgreSQL: {why}"));
    let engines = [
        (
            "SQLite",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        ),
        ("PostgreSQL", server.url()),
    ];
    let mut lost_any = 0;
    for (name, url) in engines {
        let (loop_rate, (sink_rate, lost)) = rt.block_on(async {
            let l = baseline(&url, n).await;
            (l, through_sink(&url, n).await)
        });
        lost_any += lost;
        println!(
            "{name:<10} {n} records: plain sqlx loop {loop_rate:.0} records/s, sink {sink_rate:.0} records/s, ratio {:.2}x, lost {lost}",
            sink_rate / loop_rate
        );
    }
    drop(server);
    if lost_any > 0 {
        eprintln!("records were lost");
        std::process::exit(1);
    }
}
