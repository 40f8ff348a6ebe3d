//! What the SQL sink's tests share: reading a table back with plain SQL
//! (sqlx, outside the sink), and the conformance target.

use agent_audit_core::conformance::AsyncTarget;
use agent_audit_core::{AsyncSink, StoredRecord};
use agent_audit_sql::{SqlOptions, SqlSink};
use sqlx::Connection;

/// A row read back with plain SQL: seq, event_type, request_id, payload
/// (as text), prev, line.
#[derive(Debug, Clone)]
#[allow(dead_code)] // each test file reads what it needs
pub struct Row {
    pub seq: i64,
    pub event_type: String,
    pub request_id: Option<String>,
    pub payload: String,
    pub prev: String,
    pub line: String,
}

/// Every row of `table` at `url`, in seq order, on a runtime of its own
/// (the conformance suite reads back from inside a runtime).
pub fn rows(url: &str, table: &str) -> Vec<Row> {
    let url = url.to_string();
    let table = table.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            if url.starts_with("sqlite") {
                let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
                let sql = format!(
                    "SELECT seq, event_type, request_id, payload, prev, line FROM \"{table}\" ORDER BY seq"
                );
                let r: Vec<(i64, String, Option<String>, String, String, String)> =
                    sqlx::query_as(&sql).fetch_all(&mut c).await.expect("select");
                r.into_iter().map(row).collect()
            } else {
                let mut c = sqlx::PgConnection::connect(&url).await.expect("postgres");
                let sql = format!(
                    "SELECT seq, event_type, request_id, payload::text, prev, line FROM \"{table}\" ORDER BY seq"
                );
                let r: Vec<(i64, String, Option<String>, String, String, String)> =
                    sqlx::query_as(&sql).fetch_all(&mut c).await.expect("select");
                r.into_iter().map(row).collect()
            }
        })
    })
    .join()
    .expect("reader thread")
}

fn row(r: (i64, String, Option<String>, String, String, String)) -> Row {
    Row {
        seq: r.0,
        event_type: r.1,
        request_id: r.2,
        payload: r.3,
        prev: r.4,
        line: r.5,
    }
}

/// Checks that the table's lines form one chain from genesis (as the JSONL
/// verifier would), that each row's `prev` is its line's and that seq is
/// the line's; returns the number of rows.
#[allow(dead_code)]
pub fn assert_chain(rows: &[Row]) -> usize {
    let mut chain = agent_audit_jsonl::chain::Chain::plain();
    for r in rows {
        let v: serde_json::Value = serde_json::from_str(&r.line).expect("line is JSON");
        assert_eq!(v["seq"], r.seq, "seq column is the line's");
        assert_eq!(v["prev"], r.prev.as_str(), "prev column is the line's");
        assert_eq!(
            r.prev,
            chain.head(),
            "row {} links to the one before",
            r.seq
        );
        chain.next(r.line.as_bytes());
    }
    rows.len()
}

/// The conformance target: a new sink over one table each time.
pub struct Target {
    pub url: String,
    pub table: String,
}

impl AsyncTarget for Target {
    fn make(&self) -> Box<dyn AsyncSink> {
        let mut o = SqlOptions::for_url(&self.url);
        o.table = self.table.clone();
        Box::new(SqlSink::new(&o).expect("options"))
    }

    fn read_back(&self) -> Option<Vec<StoredRecord>> {
        let rows = rows(&self.url, &self.table);
        assert_chain(&rows);
        Some(
            rows.iter()
                .map(|r| serde_json::from_str(&r.line).expect("a stored record"))
                .collect(),
        )
    }

    fn persistent(&self) -> bool {
        true
    }
}
