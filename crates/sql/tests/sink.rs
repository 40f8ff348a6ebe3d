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
}

/// Finding 6 (issue 12 review): the SQLite writer's lock is the database
/// file's own (per inode), so a symlink, a hard link or a percent-encoded
/// spelling of the path cannot start a second writer: it was named from
/// the URL's text (`<text>.lock`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_second_writer_through_a_link_or_another_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let holder = start(&url, "trail").await.expect("first writer");
    std::os::unix::fs::symlink(dir.path().join("audit.db"), dir.path().join("sym.db")).unwrap();
    std::fs::hard_link(dir.path().join("audit.db"), dir.path().join("hard.db")).unwrap();
    for other in [
        format!("sqlite://{}", dir.path().join("sym.db").display()),
        format!("sqlite://{}", dir.path().join("hard.db").display()),
        format!("sqlite://{}", dir.path().join("audit%2Edb").display()),
    ] {
        let refused = start(&other, "trail")
            .await
            .expect_err("a second writer through another name is refused");
        assert!(
            refused.contains("`trail`")
                && refused.contains("already written by another")
                && refused.contains("is locked"),
            "{other}: {refused}"
        );
    }
    holder.shutdown(Duration::from_secs(5)).await;
    start(
        &format!("sqlite://{}", dir.path().join("hard.db").display()),
        "trail",
    )
    .await
    .expect("a writer after the first stopped")
    .shutdown(Duration::from_secs(5))
    .await;
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

async fn exec_all(url: &str, statements: &[&str]) {
    if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&mut c).await.unwrap();
        }
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&mut c).await.unwrap();
        }
    }
}

/// Finding 2 (issue 12 review): a table of the right shape with a hook
/// that drops rows (`hook`: statements creating it on `trail`, named
/// `name`) is refused at start naming the table and the hook; one added
/// while the sink runs makes the next write fail (rows_affected short)
/// instead of being acked Durable.
async fn hooks_are_refused(url: &str, hook: &[&str], name: &str, drop_hook: &str) {
    emit(url, "trail", 1).await;
    exec_all(url, hook).await;
    let refused = start(url, "trail")
        .await
        .expect_err("a table with a trigger or rule is refused");
    assert!(
        refused.contains("table `trail`") && refused.contains(&format!("`{name}`")),
        "{refused}"
    );
    exec_all(url, &[drop_hook]).await;
    let d = start(url, "trail").await.expect("start without the hook");
    let a = Auditor::new(d.clone());
    a.emit_wait(
        EventType::ToolCall,
        &serde_json::json!({}),
        AckLevel::Durable,
    )
    .await
    .expect("durable");
    exec_all(url, hook).await;
    let lost = a
        .emit_wait(
            EventType::ToolCall,
            &serde_json::json!({}),
            AckLevel::Durable,
        )
        .await;
    assert!(lost.is_err(), "a dropped row was acked Durable");
    let report = d.shutdown(Duration::from_secs(5)).await.to_string();
    assert!(
        report.contains("reported 0 inserted") && report.contains("`trail`"),
        "{report}"
    );
    exec_all(url, &[drop_hook]).await;
    assert_eq!(rows(url, "trail").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_table_with_a_trigger() {
    let dir = tempfile::tempdir().unwrap();
    hooks_are_refused(
        &sqlite_url(&dir),
        &["CREATE TRIGGER swallow BEFORE INSERT ON trail BEGIN SELECT raise(ignore); END"],
        "swallow",
        "DROP TRIGGER swallow",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_table_with_a_trigger_or_a_rule() {
    let server = pg();
    let url = server.url();
    hooks_are_refused(
        &url,
        &[
            "CREATE OR REPLACE FUNCTION swallow_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
            "CREATE TRIGGER swallow BEFORE INSERT ON trail FOR EACH ROW EXECUTE FUNCTION swallow_fn()",
        ],
        "swallow",
        "DROP TRIGGER swallow ON trail",
    )
    .await;
    exec_all(&url, &["DELETE FROM trail"]).await;
    hooks_are_refused(
        &url,
        &["CREATE RULE nothing AS ON INSERT TO trail DO INSTEAD NOTHING"],
        "nothing",
        "DROP RULE nothing ON trail",
    )
    .await;
}

/// A PostgreSQL server that completes the startup handshake and then
/// never answers a query. A fake, because no real server does this on
/// demand: a stopped one refuses the connection and a SIGSTOPped one never
/// finishes the handshake (both the connect timeout's case, not a query's).
/// Returns its port and the count of connections it accepted; its
/// threads live as long as the test process.
fn silent_pg() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let message = |c: &mut std::net::TcpStream| -> std::io::Result<u32> {
                    let mut len = [0u8; 4];
                    c.read_exact(&mut len)?;
                    let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                    c.read_exact(&mut body)?;
                    Ok(u32::from_be_bytes(body[..4].try_into().unwrap()))
                };
                let Ok(mut code) = message(&mut c) else {
                    return;
                };
                if code == 80_877_103 {
                    // SSLRequest: no TLS here.
                    let _ = c.write_all(b"N");
                    let Ok(next) = message(&mut c) else { return };
                    code = next;
                }
                let _ = code;
                let mut out = b"R\0\0\0\x08\0\0\0\0".to_vec();
                for (k, v) in [
                    ("server_version", "16.0"),
                    ("client_encoding", "UTF8"),
                    ("integer_datetimes", "on"),
                ] {
                    let p = format!("{k}\0{v}\0");
                    out.push(b'S');
                    out.extend_from_slice(&(4 + p.len() as u32).to_be_bytes());
                    out.extend_from_slice(p.as_bytes());
                }
                out.extend_from_slice(b"K\0\0\0\x0c\0\0\0\x01\0\0\0\x02");
                out.extend_from_slice(b"Z\0\0\0\x05I");
                let _ = c.write_all(&out);
                // Read the queries; answer none.
                let mut sink = [0u8; 4096];
                while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    (port, accepted)
}

/// Finding 3 (issue 12 review): a server that completes the handshake
/// and never answers a query no longer hangs a required sink's start, nor
/// a reader of its table: each statement is bounded (`statement_timeout_ms`
/// for the sink, 10 s for readers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_the_start_and_the_reader_in_bounded_time() {
    let (port, accepted) = silent_pg();
    let url = format!("postgres://agentaudit@127.0.0.1:{port}/postgres");
    let mut o = SqlOptions::for_url(&url);
    o.statement_timeout_ms = Some(300);
    let began = std::time::Instant::now();
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        start_sink(SqlSink::new(&o).unwrap()),
    )
    .await
    .expect("the start hung on a server that never answers")
    .expect_err("the start fails");
    assert!(refused.contains("no answer within 300 ms"), "{refused}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );

    let location = url.clone();
    let reader = tokio::task::spawn_blocking(move || {
        use agent_audit_jsonl::store::LineStore;
        let began = std::time::Instant::now();
        let store = agent_audit_sql::SqlLines::from_location(&location).unwrap();
        let e = store.open().map(|_| ()).expect_err("the reader fails");
        (e.to_string(), began.elapsed())
    });
    let (e, took) = tokio::time::timeout(Duration::from_secs(40), reader)
        .await
        .expect("the reader hung on a server that never answers")
        .unwrap();
    assert!(e.contains("no answer within"), "{e}");
    assert!(took < Duration::from_secs(15), "{took:?}");

    // verify opens the store once (it opened it twice: twice the wait).
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let verify = tokio::task::spawn_blocking(move || {
        let store = agent_audit_sql::SqlLines::from_location(&url).unwrap();
        agent_audit_jsonl::verify::verify_store(
            &store,
            &agent_audit_jsonl::verify::VerifyOptions::default(),
            &mut |_| {},
        )
        .map(|_| ())
        .expect_err("verify fails")
        .to_string()
    });
    let e = tokio::time::timeout(Duration::from_secs(60), verify)
        .await
        .expect("verify hung on a server that never answers")
        .unwrap();
    assert!(e.contains("no answer within"), "{e}");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) - before,
        1,
        "verify connected more than once"
    );
}

/// Finding 3 on a real server: a table another session holds locked
/// fails the required sink's write (PostgreSQL's `lock_timeout`, and the
/// statement bound) instead of hanging the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_locked_by_another_session_fails_the_write_in_bounded_time() {
    let server = pg();
    let url = server.url();
    let mut o = SqlOptions::for_url(&url);
    o.table = "trail".into();
    o.statement_timeout_ms = Some(500);
    let d = start_sink(SqlSink::new(&o).unwrap()).await.expect("start");
    let a = Auditor::new(d.clone());
    a.emit_wait(
        EventType::ToolCall,
        &serde_json::json!({}),
        AckLevel::Durable,
    )
    .await
    .expect("durable");
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE trail IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let empty = serde_json::json!({});
    let write = a.emit_wait(EventType::ToolCall, &empty, AckLevel::Durable);
    let r = tokio::time::timeout(Duration::from_secs(30), write)
        .await
        .expect("the write hung on a locked table");
    assert!(r.is_err(), "a write that could not go in was acked");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let report = d.shutdown(Duration::from_secs(5)).await.to_string();
    assert!(
        report.contains("lock") || report.contains("no answer within"),
        "{report}"
    );
}

/// Finding 4 (issue 12 review): the sink's open reads the last row's line
/// only when it is within the reader's 16 MiB limit; a longer one is
/// refused naming its seq, never loaded whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_last_row_is_refused_at_open_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    emit(&url, "trail", 1).await;
    exec_all(
        &url,
        &[
            "INSERT INTO trail (seq, ts, event_type, payload, prev, line) \
           VALUES (9, 'x', 'x', '{}', 'x', hex(zeroblob(9000000)))",
        ],
    )
    .await;
    let refused = start(&url, "trail").await.expect_err("refused");
    assert!(
        refused.contains("row seq 9") && refused.contains("over the 16777216-byte limit"),
        "{refused}"
    );
}
