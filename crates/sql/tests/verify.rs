//! `verify` on a table: the `line` column in seq order read as a
//! [`LineStore`] through the JSONL verifier, on a real SQLite file and a
//! real PostgreSQL server. A clean table is intact; an edited, a deleted,
//! an inserted and a reordered row are each named, with their seq.

use std::time::Duration;

use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, SinkOptions};
use agent_audit_jsonl::store::LineStore;
use agent_audit_jsonl::verify::{ProblemKind, VerifyOptions, VerifyReport, verify_store};
use agent_audit_sql::schema::COLUMNS;
use agent_audit_sql::{SqlLines, SqlOptions, SqlSink};
use agent_audit_tests::postgres::PgServer;
use sqlx::Connection;

/// Writes `n` records to `table` through the real sink.
async fn write(url: &str, table: &str, n: u32) {
    let mut o = SqlOptions::for_url(url);
    o.table = table.into();
    let d = Dispatcher::builder()
        .async_sink(
            SinkOptions::new("sql").required(true),
            SqlSink::new(&o).unwrap(),
        )
        .start()
        .await
        .unwrap();
    let a = Auditor::new(d.clone()).for_request(Some("req-1"));
    for i in 0..n {
        a.emit_wait(
            EventType::ToolCall,
            &serde_json::json!({"i": i}),
            AckLevel::Durable,
        )
        .await
        .unwrap();
    }
    let report = d.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
}

/// Runs statements on the table, as someone with write access would.
async fn tamper(url: &str, statements: &[String]) {
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

async fn line_of(url: &str, table: &str, seq: i64) -> String {
    let sql = format!("SELECT line FROM {table} WHERE seq = {seq}");
    if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap()
    }
}

fn verify(url: &str, table: &str) -> VerifyReport {
    let store = SqlLines::new(url, table).unwrap();
    verify_store(&store, &VerifyOptions::default(), &mut |_| {}).unwrap()
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Every tampering on its own table of ten records, on one engine.
async fn each_tampering_is_named(url: &str) {
    let clean = "clean_t";
    write(url, clean, 10).await;
    let r = verify(url, clean);
    assert!(r.intact, "{r}");
    assert_eq!(
        (r.records, r.first_seq, r.last_seq),
        (10, Some(1), Some(10))
    );

    // Edited: a payload changed in place.
    write(url, "edited_t", 10).await;
    let line = line_of(url, "edited_t", 5).await;
    let forged = line.replace(r#""i":4"#, r#""i":400"#);
    tamper(
        url,
        &[format!(
            "UPDATE edited_t SET line = {} WHERE seq = 5",
            quoted(&forged)
        )],
    )
    .await;
    let p = verify(url, "edited_t").problem.expect("edited caught");
    assert_eq!((p.kind, p.seq), (ProblemKind::Edited, Some(5)), "{p}");

    // Deleted: a row removed from the middle.
    write(url, "deleted_t", 10).await;
    tamper(url, &["DELETE FROM deleted_t WHERE seq = 5".to_string()]).await;
    let p = verify(url, "deleted_t").problem.expect("deletion caught");
    assert_eq!(p.kind, ProblemKind::Deleted, "{p}");
    assert_eq!(p.seq, Some(6), "{p}");
    assert!(
        p.message.contains('5'),
        "the message names the missing seq: {p}"
    );

    // Inserted: the rows from seq 5 moved up and a forged row put in
    // their place, linked to the one before it.
    write(url, "inserted_t", 10).await;
    let four = line_of(url, "inserted_t", 4).await;
    let five = line_of(url, "inserted_t", 5).await;
    let prev = agent_audit_jsonl::chain::Chain::plain().hash(four.as_bytes());
    let v: serde_json::Value = serde_json::from_str(&five).unwrap();
    let planted = five
        .replace(r#""i":4"#, r#""i":-1"#)
        .replace(v["prev"].as_str().unwrap(), &hex(&prev));
    tamper(
        url,
        &[
            "UPDATE inserted_t SET seq = seq + 100 WHERE seq >= 5".to_string(),
            copy_row("inserted_t", 105, 5),
            format!(
                "UPDATE inserted_t SET line = {} WHERE seq = 5",
                quoted(&planted)
            ),
        ],
    )
    .await;
    let p = verify(url, "inserted_t").problem.expect("insertion caught");
    assert_eq!(p.kind, ProblemKind::Inserted, "{p}");
    assert_eq!((p.line, p.seq), (5, Some(5)), "{p}");

    // Reordered: two rows' seqs swapped, so their lines come out swapped.
    write(url, "reordered_t", 10).await;
    tamper(
        url,
        &[
            "UPDATE reordered_t SET seq = 1000 WHERE seq = 5".to_string(),
            "UPDATE reordered_t SET seq = 5 WHERE seq = 6".to_string(),
            "UPDATE reordered_t SET seq = 6 WHERE seq = 1000".to_string(),
        ],
    )
    .await;
    let p = verify(url, "reordered_t")
        .problem
        .expect("reordering caught");
    assert_eq!(p.kind, ProblemKind::Reordered, "{p}");
    assert_eq!((p.line, p.seq), (5, Some(6)), "{p}");
}

/// The queryable columns and the `line` column disagreeing (issue 12,
/// F12b): the columns people query were never compared with the line
/// verified, so a changed `payload`, `request_id` or `seq` column, or two
/// lines in one row, left `verify` saying intact.
async fn columns_that_disagree_with_the_line_are_named(url: &str) {
    // (e) A clean table verifies intact (on PostgreSQL `payload` is jsonb,
    // its keys reordered and its text respaced).
    write(url, "cols_clean", 5).await;
    let r = verify(url, "cols_clean");
    assert!(r.intact, "{r}");
    assert_eq!(r.records, 5);

    // (a) The payload column of seq 3 changed, the line left alone.
    write(url, "cols_payload", 5).await;
    tamper(
        url,
        &[r#"UPDATE cols_payload SET payload = '{"i":200}' WHERE seq = 3"#.to_string()],
    )
    .await;
    let r = verify(url, "cols_payload");
    let p = r.problem.expect("a changed payload column is caught");
    assert_eq!((p.kind, p.seq), (ProblemKind::Edited, Some(3)), "{p}");

    // (b) The request_id column of seq 2 changed.
    write(url, "cols_request", 5).await;
    tamper(
        url,
        &["UPDATE cols_request SET request_id = 'req-other' WHERE seq = 2".to_string()],
    )
    .await;
    let p = verify(url, "cols_request")
        .problem
        .expect("a changed request_id column is caught");
    assert_eq!((p.kind, p.seq), (ProblemKind::Edited, Some(2)), "{p}");

    // (c) The seq column of the last row changed.
    write(url, "cols_seq", 5).await;
    tamper(
        url,
        &["UPDATE cols_seq SET seq = 100 WHERE seq = 5".to_string()],
    )
    .await;
    let r = verify(url, "cols_seq");
    assert!(!r.intact, "a changed seq column is caught: {r}");
    assert_eq!(r.problem.as_ref().map(|p| p.line), Some(5), "{r}");

    // (d) Two lines joined by a newline in one row, the next row deleted.
    write(url, "cols_joined", 5).await;
    let three = line_of(url, "cols_joined", 3).await;
    let four = line_of(url, "cols_joined", 4).await;
    tamper(
        url,
        &[
            format!(
                "UPDATE cols_joined SET line = {} WHERE seq = 3",
                quoted(&format!("{three}\n{four}"))
            ),
            "DELETE FROM cols_joined WHERE seq = 4".to_string(),
        ],
    )
    .await;
    let r = verify(url, "cols_joined");
    assert!(!r.intact, "two lines in one row are caught: {r}");
    // One record at line 3, never two.
    assert_eq!(r.problem.as_ref().map(|p| p.line), Some(3), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_that_disagree_with_the_line_are_named_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    columns_that_disagree_with_the_line_are_named(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_that_disagree_with_the_line_are_named_on_postgres() {
    let pg = PgServer::start()
        .unwrap_or_else(|why| panic!("cannot start PostgreSQL for the test: {why}"));
    columns_that_disagree_with_the_line_are_named(&pg.url()).await;
}

/// Copies row `from` to a new row `to`, every column but seq as it is.
fn copy_row(table: &str, from: i64, to: i64) -> String {
    let rest: Vec<&str> = COLUMNS
        .iter()
        .map(|c| c.name)
        .filter(|n| *n != "seq")
        .collect();
    let rest = rest.join(", ");
    format!("INSERT INTO {table} (seq, {rest}) SELECT {to}, {rest} FROM {table} WHERE seq = {from}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_tampered_row_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    each_tampering_is_named(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_tampered_row_on_postgres() {
    let pg = PgServer::start()
        .unwrap_or_else(|why| panic!("cannot start PostgreSQL for the test: {why}"));
    each_tampering_is_named(&pg.url()).await;
}

/// A table's label never shows the URL's password, nor does an error.
#[test]
fn the_store_label_and_errors_keep_the_password_out() {
    let store =
        SqlLines::new("postgres://audit:s3cret@127.0.0.1:1/trail", "audit_records").unwrap();
    assert_eq!(store.label(), "postgres://audit:***@127.0.0.1:1/trail");
    let e = verify_store(&store, &VerifyOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(!e.contains("s3cret") && e.contains("127.0.0.1:1"), "{e}");
    let other = SqlLines::from_location("sqlite:///tmp/x.db#other_t").unwrap();
    assert_eq!(other.label(), "sqlite:///tmp/x.db#other_t");
}
