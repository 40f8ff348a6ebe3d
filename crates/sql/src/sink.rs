//! The sink: one multi-row insert per batch in one transaction, acked
//! Durable when committed; the chain carried from the table's last line.

use std::fs::File;
use std::sync::Mutex;
use std::time::Duration;

use agent_audit_core::{AckLevel, AsyncSink, Batch, FailureKind, Record, SinkError, SinkOpen};
use agent_audit_jsonl::ChainKey;
use agent_audit_jsonl::chain::Chain;
use sqlx::{Postgres, QueryBuilder, Sqlite};

use crate::conn::{Conn, bounded, query_error};
use crate::error::SqlError;
use crate::options::{OptionsError, SqlOptions};
use crate::schema;
use crate::url::{Engine, SqlUrl};

/// Rows per INSERT statement: within SQLite's 32,766 and PostgreSQL's
/// 65,535 bound parameters at 15 a row. A larger batch is several
/// statements in the one transaction.
const ROWS_PER_STATEMENT: usize = 1000;

/// The SQL sink (`type = "sql"`): the trail in a SQLite file or a
/// PostgreSQL table, one row per record (see [`crate::schema`]).
pub struct SqlSink {
    url: SqlUrl,
    table: String,
    batch_size: usize,
    connect_timeout: Duration,
    /// How long a transaction may take (`statement_timeout_ms`).
    statement_timeout: Duration,
    /// The `[integrity]` chain key: an HMAC chain, as the JSONL log's.
    chain_key: Option<ChainKey>,
    state: tokio::sync::Mutex<State>,
    notices: Mutex<Vec<String>>,
}

/// What only one write at a time touches.
struct State {
    conn: Option<Conn>,
    /// SQLite: the writer's `flock` on the database file, held while the
    /// sink lives.
    lock: Option<File>,
    /// Its head is the chain value of the last committed line.
    chain: Chain,
    /// The highest seq committed.
    last: Option<u64>,
}

impl std::fmt::Debug for SqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSink")
            .field("url", &self.url)
            .field("table", &self.table)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl SqlSink {
    /// A sink for `options`, reading `url_env` from the environment. Opens
    /// nothing yet: the connection is made in [`AsyncSink::open`], on the
    /// sink's runtime.
    pub fn new(options: &SqlOptions) -> Result<SqlSink, OptionsError> {
        SqlSink::with_env(options, |k| std::env::var(k).ok())
    }

    /// [`SqlSink::new`], reading the variable `url_env` names through
    /// `env` (a program that keeps the URL elsewhere than in the process
    /// environment).
    pub fn with_env(
        options: &SqlOptions,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<SqlSink, OptionsError> {
        let url = options.resolve_with(env)?;
        Ok(SqlSink {
            url,
            table: options.table.clone(),
            batch_size: options.batch_size(),
            connect_timeout: options.connect_timeout(),
            statement_timeout: options.statement_timeout(),
            chain_key: None,
            state: tokio::sync::Mutex::new(State {
                conn: None,
                lock: None,
                chain: Chain::plain(),
                last: None,
            }),
            notices: Mutex::new(Vec::new()),
        })
    }

    /// Chains the rows with HMAC-SHA256 under `key` (the `[integrity]`
    /// key the JSONL log uses) instead of plain SHA-256.
    pub fn with_chain_key(mut self, key: Option<ChainKey>) -> SqlSink {
        self.chain_key = key;
        self
    }

    fn new_chain(&self) -> Chain {
        match &self.chain_key {
            Some(key) => Chain::keyed(key.bytes()),
            None => Chain::plain(),
        }
    }

    /// The database URL, password masked when shown.
    pub fn url(&self) -> &SqlUrl {
        &self.url
    }

    /// Connects, takes the writer's lock, checks (or creates) the table and
    /// reads where the chain and seq stand.
    async fn connect(&self, state: &mut State, create: bool) -> Result<(), SqlError> {
        if self.url.engine() == Engine::Sqlite && state.lock.is_none() {
            state.lock = Some(self.lock_file()?);
        }
        let mut conn = Conn::open(
            &self.url,
            false,
            self.connect_timeout,
            self.statement_timeout,
        )
        .await?;
        // On a failure (a timeout included) the connection is dropped,
        // not closed: a server that does not answer would not answer the
        // close either.
        let (chain, last) = bounded(
            &self.url,
            "opening the table",
            self.statement_timeout,
            self.prepare(&mut conn, create),
        )
        .await?;
        if state.conn.is_some() || state.last.is_some() {
            // A reconnection: a commit whose answer was lost with the
            // connection may have gone in; the table says.
            if last > state.last {
                self.notice(format!(
                    "the commit of records up to seq {} went in although its answer was lost with the connection; not written twice",
                    last.unwrap_or(0)
                ));
            }
        }
        state.chain = chain;
        state.last = last;
        state.conn = Some(conn);
        Ok(())
    }

    /// On a new connection: takes the PostgreSQL advisory lock, checks (or
    /// creates) the table, refuses hooks, and reads where the chain and
    /// seq stand.
    async fn prepare(
        &self,
        conn: &mut Conn,
        create: bool,
    ) -> Result<(Chain, Option<u64>), SqlError> {
        if let Conn::Postgres(c) = &mut *conn {
            // Keyed by schema and table: another database or table is
            // another lock. Held by the session, so a writer that dies
            // (or loses its connection) lets go of it; a writer that just
            // closed may take a moment to, hence a few tries.
            let mut tries = 0;
            loop {
                let got: (bool,) =
                    sqlx::query_as(&format!("SELECT pg_try_advisory_lock({PG_LOCK_KEY})"))
                        .bind(&self.table)
                        .fetch_one(&mut *c)
                        .await
                        .map_err(|e| {
                            query_error(&self.url, "taking the writer's advisory lock", e)
                        })?;
                if got.0 {
                    break;
                }
                tries += 1;
                if tries == 10 {
                    return Err(SqlError::Locked {
                        url: self.url.to_string(),
                        table: self.table.clone(),
                        how: "PostgreSQL advisory lock held by another session".into(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        schema::ensure(conn, &self.url, &self.table, create).await?;
        schema::refuse_hooks(conn, &self.url, &self.table).await?;
        let mut chain = self.new_chain();
        let last = match schema::last_row(conn, &self.url, &self.table).await? {
            Some((seq, line)) => {
                chain.next(line.as_bytes());
                Some(u64::try_from(seq).map_err(|_| SqlError::BadRow {
                    table: self.table.clone(),
                    seq,
                    problem: "negative seq".into(),
                })?)
            }
            None => None,
        };
        Ok((chain, last))
    }

    /// Locks the SQLite database file itself (`flock`, per inode: a
    /// symlink, a hard link or another spelling of the path is the same
    /// lock; separate from SQLite's own `fcntl` locks, which it takes and
    /// releases at every transaction). The file is created if missing
    /// (an empty file is a new database to SQLite).
    fn lock_file(&self) -> Result<File, SqlError> {
        use std::os::unix::fs::OpenOptionsExt;
        // As the driver reads it: percent-decoded.
        let path = self.url.sqlite_file();
        let fail = |message: String| SqlError::LockFile {
            table: self.table.clone(),
            path: path.clone(),
            message,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| fail(e.to_string()))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(SqlError::Locked {
                url: self.url.to_string(),
                table: self.table.clone(),
                how: format!(
                    "the database file {path} is locked (a link or another spelling of its path is the same file)"
                ),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(fail(e.to_string())),
        }
    }

    /// Checks that the database inserted every row of `chunk`: a
    /// trigger or rule added after open (or missed) that drops rows makes
    /// the write fail permanently instead of being acked.
    fn all_in(&self, chunk: &[Row<'_>], affected: u64) -> Result<(), SqlError> {
        if affected == chunk.len() as u64 {
            return Ok(());
        }
        Err(SqlError::RowsLost {
            url: self.url.to_string(),
            table: self.table.clone(),
            first: chunk.first().map_or(0, |r| r.seq),
            sent: chunk.len() as u64,
            affected,
        })
    }

    fn notice(&self, text: String) {
        self.notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text);
    }

    async fn insert(
        &self,
        state: &mut State,
        records: &[std::sync::Arc<Record>],
    ) -> Result<(), SqlError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut chain = state.chain.clone();
        let mut rows = Vec::with_capacity(records.len());
        let mut buf = Vec::with_capacity(512);
        for r in records {
            let seq = i64::try_from(r.seq).map_err(|_| SqlError::SeqRange(r.seq))?;
            buf.clear();
            let prev = chain.head().to_string();
            r.encode_line(&prev, &mut buf);
            chain.next(&buf);
            // encode_line writes JSON text only.
            let line = String::from_utf8_lossy(&buf).into_owned();
            rows.push(Row {
                seq,
                record: r,
                trace_id: r.trace_id.to_string(),
                span_id: r.span_id.to_string(),
                parent_span_id: r.parent_span_id.map(|s| s.to_string()),
                prev,
                line,
            });
        }
        let Some(conn) = state.conn.as_mut() else {
            return Err(SqlError::Query {
                url: self.url.to_string(),
                what: "writing",
                message: "not connected".into(),
                transient: true,
            });
        };
        let e = |e| query_error(&self.url, "inserting a batch", e);
        let head = format!("INSERT INTO \"{}\" ({}) ", self.table, INSERTED);
        match conn {
            Conn::Sqlite(c) => {
                let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(e)?;
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut q = QueryBuilder::<Sqlite>::new(&head);
                    q.push_values(chunk, |mut b, row| {
                        b.push_bind(row.seq)
                            .push_bind(row.record.ts.as_str())
                            .push_bind(row.record.event_type.as_str())
                            .push_bind(row.record.request_id.as_deref())
                            .push_bind(row.record.correlation_id.as_deref())
                            .push_bind(row.trace_id.as_str())
                            .push_bind(row.span_id.as_str())
                            .push_bind(row.parent_span_id.as_deref())
                            .push_bind(row.record.agent.as_deref())
                            .push_bind(row.record.payload_json())
                            .push_bind(row.prev.as_str())
                            .push_bind(row.line.as_str())
                            .push_bind(row.record.user_id.as_deref())
                            .push_bind(row.record.session_id.as_deref())
                            .push_bind(row.record.attributes.json());
                    });
                    let done = q.build().execute(&mut *tx).await.map_err(e)?;
                    self.all_in(chunk, done.rows_affected())?;
                }
                tx.commit().await.map_err(e)?;
            }
            Conn::Postgres(c) => {
                let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(e)?;
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut q = QueryBuilder::<Postgres>::new(&head);
                    q.push_values(chunk, |mut b, row| {
                        b.push_bind(row.seq)
                            .push_bind(row.record.ts.as_str())
                            .push_bind(row.record.event_type.as_str())
                            .push_bind(row.record.request_id.as_deref())
                            .push_bind(row.record.correlation_id.as_deref())
                            .push_bind(row.trace_id.as_str())
                            .push_bind(row.span_id.as_str())
                            .push_bind(row.parent_span_id.as_deref())
                            .push_bind(row.record.agent.as_deref())
                            .push_bind(row.record.payload_json())
                            .push_unseparated("::jsonb")
                            .push_bind(row.prev.as_str())
                            .push_bind(row.line.as_str())
                            .push_bind(row.record.user_id.as_deref())
                            .push_bind(row.record.session_id.as_deref())
                            .push_bind(row.record.attributes.json())
                            .push_unseparated("::jsonb");
                    });
                    let done = q.build().execute(&mut *tx).await.map_err(e)?;
                    self.all_in(chunk, done.rows_affected())?;
                }
                tx.commit().await.map_err(e)?;
            }
        }
        state.chain = chain;
        if let Some(last) = records.last() {
            state.last = Some(last.seq);
        }
        Ok(())
    }
}

/// The advisory lock's key for the table bound as `$1`.
const PG_LOCK_KEY: &str = "hashtext('agent-audit:' || current_schema() || '.' || $1)";

/// The columns an insert fills: every one (`attributes` is `{}` when the
/// record has none, as its line says).
const INSERTED: &str = "seq, ts, event_type, request_id, correlation_id, trace_id, span_id, parent_span_id, agent, payload, prev, line, user_id, session_id, attributes";

struct Row<'a> {
    seq: i64,
    record: &'a Record,
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    prev: String,
    line: String,
}

fn sink_error(e: SqlError) -> SinkError {
    let kind = if e.is_transient() {
        FailureKind::Transient
    } else {
        FailureKind::Permanent
    };
    SinkError::new(kind, e)
}

#[async_trait::async_trait]
impl AsyncSink for SqlSink {
    fn max_level(&self) -> AckLevel {
        AckLevel::Durable
    }

    async fn open(&mut self) -> Result<SinkOpen, SinkError> {
        let mut state = self.state.lock().await;
        // At start a server that is down is a failure to start, not
        // something to retry.
        self.connect(&mut state, true)
            .await
            .map_err(SinkError::permanent)?;
        Ok(SinkOpen {
            last_seq: state.last,
            notices: Vec::new(),
        })
    }

    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let mut state = self.state.lock().await;
        if state.conn.is_none() {
            self.connect(&mut state, false).await.map_err(sink_error)?;
        }
        // After a lost commit answer the table may hold part of what the
        // dispatcher writes again.
        let done = state.last.unwrap_or(0);
        let from = batch
            .records
            .iter()
            .position(|r| state.last.is_none() || r.seq > done)
            .unwrap_or(batch.records.len());
        let limit = self.statement_timeout;
        let inserted = bounded(
            &self.url,
            "inserting a batch",
            limit,
            self.insert(&mut state, &batch.records[from..]),
        )
        .await;
        match inserted {
            Ok(()) => Ok(AckLevel::Durable),
            Err(e) => {
                if e.is_transient() {
                    // Dropping the connection ends the session (and its
                    // advisory lock); the next write reconnects and reads
                    // where the table stands.
                    state.conn = None;
                }
                Err(sink_error(e).holding(from as u64, AckLevel::Durable))
            }
        }
    }

    fn max_batch(&self) -> Option<usize> {
        Some(self.batch_size)
    }

    fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|e| e.into_inner()))
    }

    async fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        let mut state = self.state.lock().await;
        if let Some(mut conn) = state.conn.take() {
            if let Conn::Postgres(c) = &mut conn {
                // Released now rather than when the server notices the
                // session ended, so that the next writer need not wait.
                let _ = sqlx::query(&format!("SELECT pg_advisory_unlock({PG_LOCK_KEY})"))
                    .bind(&self.table)
                    .execute(&mut *c)
                    .await;
            }
            conn.close().await;
        }
        state.lock = None;
        Ok(None)
    }
}
