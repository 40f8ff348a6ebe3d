//! The SQL sink's errors. Every URL in them is masked and every driver
//! message scrubbed of the URL's password before it is stored here, so
//! formatting one can never show it.

use crate::url::UrlError;

/// Why the SQL sink (or a reader of its table) could not do something.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The URL is unusable.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The table name is not a plain identifier.
    #[error(
        "table name `{0}` is not a plain identifier: use 1 to 40 ASCII letters, digits and `_`, not starting with a digit"
    )]
    TableName(String),
    /// Connecting (or setting the session up) failed.
    #[error("{url}: cannot connect: {message}")]
    Connect {
        /// The URL, password masked.
        url: String,
        /// The driver's reason, password scrubbed.
        message: String,
        /// Whether trying again later may succeed (the server is down).
        transient: bool,
    },
    /// Another writer holds the table.
    #[error(
        "table `{table}` in {url} is already written by another agent-audit sink ({how}); one writer per table keeps seq and the chain whole: stop the other writer or use another `table`"
    )]
    Locked {
        /// The URL, password masked.
        url: String,
        /// The table.
        table: String,
        /// Which lock is held.
        how: String,
    },
    /// The SQLite database file could not be opened to be locked.
    #[error(
        "table `{table}`: cannot open the database file {path} to take the writer's lock: {message}"
    )]
    LockFile {
        /// The table.
        table: String,
        /// The database file.
        path: String,
        /// The system's reason.
        message: String,
    },
    /// The table exists with columns other than the sink's.
    #[error(
        "table `{table}` in {url} has another shape: column `{column}` {problem}; the sink never alters a table: name a new `table`, or move this one aside"
    )]
    Shape {
        /// The URL, password masked.
        url: String,
        /// The table.
        table: String,
        /// The column at fault.
        column: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The table has a trigger or rule (or is not a plain table): rows
    /// could vanish between the insert and the commit unnoticed.
    #[error(
        "table `{table}` in {url} has a {kind} `{name}`, which could drop or divert the rows the sink inserts while the commit succeeds; the sink writes only to a plain table without triggers or rules: drop it, or name another `table`"
    )]
    Hooked {
        /// The URL, password masked.
        url: String,
        /// The table.
        table: String,
        /// `trigger`, `rule`, or what the relation is instead of a table.
        kind: &'static str,
        /// The trigger's or rule's name (the table's for a view).
        name: String,
    },
    /// An insert reported fewer rows than it inserted.
    #[error(
        "sink writing table `{table}` in {url}: an INSERT of {sent} rows (from seq {first}) reported {affected} inserted; rows were dropped (a trigger or rule?) and are not acknowledged"
    )]
    RowsLost {
        /// The URL, password masked.
        url: String,
        /// The table.
        table: String,
        /// The first seq of the statement.
        first: i64,
        /// Rows sent.
        sent: u64,
        /// Rows the database says it inserted.
        affected: u64,
    },
    /// The table is not there (a reader, or a writer whose table vanished).
    #[error("table `{table}` does not exist in {url}")]
    NoTable {
        /// The URL, password masked.
        url: String,
        /// The table.
        table: String,
    },
    /// A statement failed.
    #[error("{url}: {what} failed: {message}")]
    Query {
        /// The URL, password masked.
        url: String,
        /// What was being done.
        what: &'static str,
        /// The driver's reason, password scrubbed.
        message: String,
        /// Whether trying again may succeed (the connection went away).
        transient: bool,
    },
    /// A seq above what a BIGINT holds.
    #[error("seq {0} does not fit the table's BIGINT `seq` column")]
    SeqRange(u64),
    /// A row's line is over the reader's line limit: reported, not read.
    #[error(
        "table `{table}`: row {row} (seq {seq}): oversize: its line is {bytes} bytes, over the reader's {max}-byte line limit; not read"
    )]
    Oversize {
        /// The table.
        table: String,
        /// The row's position in seq order, from 1.
        row: u64,
        /// The row's seq.
        seq: i64,
        /// The line's length in bytes.
        bytes: i64,
        /// The limit.
        max: i64,
    },
    /// A row the table holds is not what the sink wrote.
    #[error("table `{table}`: row seq {seq}: {problem}")]
    BadRow {
        /// The table.
        table: String,
        /// The row's seq.
        seq: i64,
        /// What is wrong.
        problem: String,
    },
}

impl SqlError {
    /// Whether trying again soon may succeed (the server went away, the
    /// connection broke).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SqlError::Connect {
                transient: true,
                ..
            } | SqlError::Query {
                transient: true,
                ..
            }
        )
    }
}
