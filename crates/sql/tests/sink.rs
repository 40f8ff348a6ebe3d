//! The SQL sink on real engines: a SQLite file, and a PostgreSQL server of
//! the test's own (initdb on a free loopback port; the test fails when it
//! cannot start one). Each engine runs the conformance suite, continues
//! seq and the chain across sinks, refuses a second writer and a table of
//! another shape, and never shows the URL's password.

mod common;

use std::time::Duration;

use agent_audit_core::conformance::run_all_async;
use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};
use agent_audit_sql::{SqlOptions, SqlSink};
use agent_audit_tests::postgres::PgServer;
use common::{Target, assert_chain, rows};
use sqlx::Connection;

fn sink(url: &str, table: &str) -> SqlSink {
    let mut o = SqlOptions::for_url(url);
    o.table = table.into();
    SqlSink::new(&o).expect("options")
}

async fn start(url: &str, table: &str) -> Result<Dispatcher, String> {
    start_sink(sink(url, table)).await
}

async fn start_sink(sink: SqlSink) -> Result<Dispatcher, String> {
    Dispatcher::builder()
        .async_sink(SinkOptions::new("sql").required(true), sink)
        .start()
        .await
        .map_err(|e| e.to_string())
}

/// Emits `n` records through a new dispatcher and shuts it down; returns
/// their seqs.
async fn emit(url: &str, table: &str, n: u32) -> Vec<u64> {
    let d = start(url, table).await.expect("start");
    let a = Auditor::new(d.clone())
        .for_request(Some("req-1"))
        .with_user("u-1")
        .with_session("s-1")
        .with_attribute("tenant", "acme")
        .expect("attribute");
    let mut seqs = Vec::new();
    for i in 0..n {
        let r = a
            .emit_wait(
                EventType::ToolCall,
                &serde_json::json!({"i": i}),
                AckLevel::Durable,
            )
            .await
            .expect("durable");
        seqs.push(r.seq);
    }
    let report = d.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
    seqs
}

fn pg() -> PgServer {
    PgServer::start().unwrap_or_else(|why| panic!("cannot start PostgreSQL for the test: {why}"))
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("audit.db").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target {
        url: sqlite_url(&dir),
        table: "audit_records".into(),
    };
    run_all_async(&target).await.expect("conformance");
    assert_chain(&rows(&target.url, &target.table));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_postgres() {
    let server = pg();
    let target = Target {
        url: server.url(),
        table: "audit_records".into(),
    };
    run_all_async(&target).await.expect("conformance");
    assert_chain(&rows(&target.url, &target.table));
}

/// Seq and the chain continue across sinks; a second writer is refused
/// while the first holds the table; a table of another shape is refused
/// naming table and column, and left as it was.
async fn writer_rules(url: &str) {
    let first = emit(url, "trail", 5).await;
    assert_eq!(first, [1, 2, 3, 4, 5]);
    let second = emit(url, "trail", 3).await;
    assert_eq!(second, [6, 7, 8], "seq continues from the table's highest");
    let all = rows(url, "trail");
    assert_eq!(assert_chain(&all), 8, "one chain over both runs");
    assert!(all.iter().all(|r| r.request_id.as_deref() == Some("req-1")));
    assert!(all.iter().all(|r| r.event_type == "tool_call"));
    // Schema v2's keys have columns of their own.
    let sql = "SELECT user_id, session_id, attributes FROM trail WHERE seq = 1";
    let v2: (Option<String>, Option<String>, String) = if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_one(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(&sql.replace("attributes", "attributes::text"))
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    assert_eq!(v2.0.as_deref(), Some("u-1"));
    assert_eq!(v2.1.as_deref(), Some("s-1"));
    let attributes: serde_json::Value = serde_json::from_str(&v2.2).unwrap();
    assert_eq!(attributes, serde_json::json!({"tenant": "acme"}));

    let holder = start(url, "trail").await.expect("first writer");
    let refused = start(url, "trail")
        .await
        .expect_err("a second writer is refused");
    assert!(
        refused.contains("`trail`") && refused.contains("already written by another"),
        "{refused}"
    );
    holder.shutdown(Duration::from_secs(5)).await;
    // Let go at shutdown: a new writer gets the table.
    start(url, "trail")
        .await
        .expect("writer after the first stopped")
        .shutdown(Duration::from_secs(5))
        .await;

    let create = "CREATE TABLE odd (seq BIGINT PRIMARY KEY, ts TEXT NOT NULL, note TEXT)";
    if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(create).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(create).execute(&mut c).await.unwrap();
    }
    let refused = start(url, "odd")
        .await
        .expect_err("another shape is refused");
    assert!(
        refused.contains("table `odd`")
            && refused.contains("has another shape: column `")
            && refused.contains("never alters"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_continues_refuses_a_second_writer_and_another_shape() {
    let dir = tempfile::tempdir().unwrap();
    writer_rules(&sqlite_url(&dir)).await;
    assert!(
        dir.path().join("audit.db.lock").exists(),
        "the writer's lock file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_continues_refuses_a_second_writer_and_another_shape() {
    let server = pg();
    writer_rules(&server.url()).await;
}

/// A sink whose URL, from the variable `url_env` names, carries `password`.
fn sink_with_password(url: &str) -> SqlSink {
    let mut o = SqlOptions::default();
    o.url_env = Some("AUDIT_DB_URL".into());
    let url = url.to_string();
    SqlSink::with_env(&o, move |k| (k == "AUDIT_DB_URL").then(|| url.clone())).expect("options")
}

/// A URL taken from the environment carries a password; no error shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_of_a_url_never_shows_in_an_error() {
    const PASSWORD: &str = "Sup3r-s3cret-pw";
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens there now: connecting fails.
    let url = format!("postgres://audit:{PASSWORD}@127.0.0.1:{port}/trail");
    let err = start_sink(sink_with_password(&url))
        .await
        .expect_err("nothing listens");
    assert!(!err.contains(PASSWORD), "{err}");
    assert!(err.contains("postgres://audit:***@127.0.0.1"), "{err}");
    let s = sink_with_password(&url);
    assert!(!format!("{s:?}").contains(PASSWORD));
}

/// A refused password, said by a real server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_does_not_quote_the_password() {
    const PASSWORD: &str = "Wr0ng-pa55word";
    let server = pg();
    // Trust auth lets any password in, so the server's refusal comes from
    // a database that does not exist, with the password in the URL.
    let url = format!(
        "postgres://agentaudit:{PASSWORD}@127.0.0.1:{}/no_such_db",
        server.port()
    );
    let err = start_sink(sink_with_password(&url))
        .await
        .expect_err("no such database");
    assert!(err.contains("no_such_db"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}

/// Under the `[integrity]` key the rows chain with HMAC-SHA256, as the
/// JSONL log does, and the chain continues keyed across sinks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_key_makes_the_table_an_hmac_chain() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let key = agent_audit_jsonl::ChainKey::new([7u8; 32]);
    for _ in 0..2 {
        let d = start_sink(sink(&url, "keyed").with_chain_key(Some(key.clone())))
            .await
            .expect("start");
        Auditor::new(d.clone())
            .emit_wait(
                EventType::ToolCall,
                &serde_json::json!({}),
                AckLevel::Durable,
            )
            .await
            .expect("durable");
        d.shutdown(Duration::from_secs(5)).await;
    }
    let all = rows(&url, "keyed");
    assert_eq!(all.len(), 2);
    let mut chain = agent_audit_jsonl::chain::Chain::keyed(key.bytes());
    for r in &all {
        assert_eq!(r.prev, chain.head(), "row {} links under the key", r.seq);
        chain.next(r.line.as_bytes());
    }
    assert_ne!(
        all[1].prev,
        agent_audit_jsonl::chain::Chain::plain().next(all[0].line.as_bytes()),
        "not the plain chain"
    );
}
