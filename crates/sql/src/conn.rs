//! One connection to either engine, opened the way the sink needs it
//! (SQLite in WAL with `synchronous = FULL`, PostgreSQL with
//! `synchronous_commit = on`), and the classification of driver errors.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::error::SqlError;
use crate::url::{Engine, SqlUrl};

/// An open connection.
pub(crate) enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// How long a connection attempt may take by default.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a transaction may take by default (`statement_timeout_ms`).
pub(crate) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `work` (statements on one connection) within `limit`: a server
/// that does not answer (or a table another session holds locked) fails
/// it as transient, and the caller drops the connection, whose state is
/// unknown.
pub(crate) async fn bounded<T>(
    url: &SqlUrl,
    what: &'static str,
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(SqlError::Query {
            url: url.to_string(),
            what,
            message: format!(
                "no answer within {} ms (statement_timeout_ms)",
                limit.as_millis()
            ),
            transient: true,
        }),
    }
}

impl Conn {
    /// Connects; `read_only` for readers (SQLite opened read-only, a
    /// PostgreSQL session whose transactions are read-only), else as a
    /// writer (the SQLite file created if missing).
    pub(crate) async fn open(
        url: &SqlUrl,
        read_only: bool,
        timeout: Duration,
        statement_timeout: Duration,
    ) -> Result<Conn, SqlError> {
        // The server's own bounds too: a statement, or a wait for a lock
        // another session holds, ends there rather than at our timer.
        let ms = statement_timeout.as_millis().to_string();
        let connect = async {
            match url.engine() {
                Engine::Sqlite => {
                    let o = SqliteConnectOptions::from_str(url.secret())?
                        .busy_timeout(Duration::from_secs(5))
                        .disable_statement_logging();
                    let o = if read_only {
                        o.read_only(true)
                    } else {
                        // Durable means committed: WAL with a full sync
                        // at every commit.
                        o.create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal)
                            .synchronous(SqliteSynchronous::Full)
                    };
                    o.connect().await.map(Conn::Sqlite)
                }
                Engine::Postgres => {
                    let mut o = PgConnectOptions::from_str(url.secret())?
                        .application_name("agent-audit")
                        .disable_statement_logging();
                    o = if read_only {
                        o.options([
                            ("default_transaction_read_only", "on"),
                            ("statement_timeout", ms.as_str()),
                            ("lock_timeout", ms.as_str()),
                        ])
                    } else {
                        // A server configured with it off would ack
                        // commits it could still lose.
                        o.options([
                            ("synchronous_commit", "on"),
                            ("statement_timeout", ms.as_str()),
                            ("lock_timeout", ms.as_str()),
                        ])
                    };
                    o.connect().await.map(Conn::Postgres)
                }
            }
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(SqlError::Connect {
                url: url.to_string(),
                transient: connection_lost(&e),
                message: url.scrub(&e.to_string()),
            }),
            Err(_) => Err(SqlError::Connect {
                url: url.to_string(),
                message: format!("no connection within {} ms", timeout.as_millis()),
                transient: true,
            }),
        }
    }

    pub(crate) async fn close(self) {
        // A close that fails leaves nothing to undo: the server drops the
        // session (and its advisory lock) either way.
        let _ = match self {
            Conn::Sqlite(c) => c.close().await,
            Conn::Postgres(c) => c.close().await,
        };
    }
}

/// Whether the error says the connection (or the server) is gone, so that
/// a new connection later may succeed: the batch did not go in.
pub(crate) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // PostgreSQL: connection exceptions (08), shutdown and
            // recovery (57P01-57P03), insufficient resources (53),
            // statement_timeout and lock_timeout (57014, 55P03),
            // serialization and deadlock (40001, 40P01). SQLite: busy,
            // locked.
            c.starts_with("08")
                || c.starts_with("57P0")
                || c.starts_with("53")
                || c == "40001"
                || c == "40P01"
                || c == "57014"
                || c == "55P03"
                || c == "5"
                || c == "6"
        }),
        _ => false,
    }
}

/// Maps a failed statement to the sink's error, password scrubbed.
pub(crate) fn query_error(url: &SqlUrl, what: &'static str, e: sqlx::Error) -> SqlError {
    SqlError::Query {
        url: url.to_string(),
        what,
        transient: connection_lost(&e),
        message: url.scrub(&e.to_string()),
    }
}
