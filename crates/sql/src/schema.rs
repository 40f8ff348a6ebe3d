//! The table the SQL sink writes, in one place: its columns, how it is
//! created, how an existing one is checked (never altered), and a
//! read-only cursor over its `line` column in seq order for the readers
//! (`verify`, `show`, `stats` on a database URL).
//!
//! Every record is one row. `line` holds the record's exact JSONL line,
//! as the JSONL sink would write it (same keys, same bytes, same `prev`),
//! so the hash chain verifies from the table alone: hash each `line` in
//! seq order with [`agent_audit_jsonl::chain::Chain`]. The other columns
//! are copies of the line's keys for plain SQL queries.

use std::time::Duration;

use crate::conn::{Conn, STATEMENT_TIMEOUT, bounded, query_error};
use crate::error::SqlError;
use crate::url::{Engine, SqlUrl};

/// The default table name.
pub const DEFAULT_TABLE: &str = "audit_records";

/// One column of the table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its declared type on SQLite.
    pub sqlite: &'static str,
    /// Its type on PostgreSQL, as `information_schema.columns.data_type`
    /// names it.
    pub postgres: &'static str,
    /// Whether every row has a value.
    pub not_null: bool,
}

const fn col(
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
    not_null: bool,
) -> Column {
    Column {
        name,
        sqlite,
        postgres,
        not_null,
    }
}

/// The columns, in table order. `seq` is the primary key.
pub const COLUMNS: [Column; 15] = [
    // SQLite's `INTEGER PRIMARY KEY` is the 64-bit rowid itself (a BIGINT
    // key of its own would be a second index to write).
    col("seq", "INTEGER", "bigint", true),
    col("ts", "TEXT", "text", true),
    col("event_type", "TEXT", "text", true),
    col("request_id", "TEXT", "text", false),
    col("correlation_id", "TEXT", "text", false),
    col("trace_id", "TEXT", "text", false),
    col("span_id", "TEXT", "text", false),
    col("parent_span_id", "TEXT", "text", false),
    col("agent", "TEXT", "text", false),
    col("payload", "JSON", "jsonb", true),
    col("prev", "TEXT", "text", true),
    col("line", "TEXT", "text", true),
    // Schema v2 keys (issue 14); NULL in rows of v1 records.
    col("user_id", "TEXT", "text", false),
    col("session_id", "TEXT", "text", false),
    col("attributes", "JSON", "jsonb", false),
];

/// The columns with an index of their own (besides `seq`).
pub const INDEXED: [&str; 4] = ["request_id", "correlation_id", "ts", "event_type"];

/// Checks that `table` is a plain identifier: 1 to 40 ASCII letters,
/// digits and `_`, not starting with a digit (40 leaves room for the
/// index names within PostgreSQL's 63 bytes).
pub fn check_table_name(table: &str) -> Result<(), SqlError> {
    let ok = (1..=40).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !table.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(SqlError::TableName(table.to_string()))
    }
}

/// The statements that create the table and its indexes on `engine`.
pub fn create_statements(engine: Engine, table: &str) -> Vec<String> {
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            let ty = match engine {
                Engine::Sqlite => c.sqlite,
                Engine::Postgres => c.postgres,
            };
            let key = if c.name == "seq" { " PRIMARY KEY" } else { "" };
            let null = if c.not_null { " NOT NULL" } else { "" };
            format!("{} {ty}{key}{null}", c.name)
        })
        .collect();
    let mut out = vec![format!("CREATE TABLE \"{table}\" ({})", columns.join(", "))];
    for c in INDEXED {
        out.push(format!(
            "CREATE INDEX \"{table}_{c}_idx\" ON \"{table}\" ({c})"
        ));
    }
    out
}

/// The columns of an existing table (name, type), empty when it is absent.
async fn existing_columns(
    conn: &mut Conn,
    url: &SqlUrl,
    table: &str,
) -> Result<Vec<(String, String, bool)>, SqlError> {
    let e = |e| query_error(url, "reading the table's columns", e);
    match conn {
        Conn::Sqlite(c) => {
            // table_xinfo's rows: cid, name, type, notnull, dflt, pk, hidden.
            let rows: Vec<(i64, String, String, i64, Option<String>, i64)> =
                sqlx::query_as("SELECT cid, name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid")
                    .bind(table)
                    .fetch_all(&mut *c)
                    .await
                    .map_err(e)?;
            Ok(rows
                .into_iter()
                .map(|(_, name, ty, _, _, pk)| (name, ty, pk == 1))
                .collect())
        }
        Conn::Postgres(c) => {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *c)
            .await
            .map_err(e)?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let key: Vec<(String,)> = sqlx::query_as(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = (quote_ident(current_schema()) || '.' || quote_ident($1))::regclass \
                 AND i.indisprimary",
            )
            .bind(table)
            .fetch_all(&mut *c)
            .await
            .unwrap_or_default();
            Ok(rows
                .into_iter()
                .map(|(name, ty)| {
                    let pk = key.iter().any(|(k,)| *k == name);
                    (name, ty, pk)
                })
                .collect())
        }
    }
}

/// Whether the table was there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Created,
    Existing,
}

/// Checks the table's shape, creating it (with its indexes, in one
/// transaction) when it is absent and `create` is set. A table of another
/// shape is refused naming the first column at fault; it is never altered.
pub(crate) async fn ensure(
    conn: &mut Conn,
    url: &SqlUrl,
    table: &str,
    create: bool,
) -> Result<Found, SqlError> {
    let have = existing_columns(conn, url, table).await?;
    if have.is_empty() {
        if !create {
            return Err(SqlError::NoTable {
                url: url.to_string(),
                table: table.to_string(),
            });
        }
        let e = |e| query_error(url, "creating the table", e);
        let statements = create_statements(url.engine(), table);
        match conn {
            Conn::Sqlite(c) => {
                let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(e)?;
                for s in &statements {
                    sqlx::query(s).execute(&mut *tx).await.map_err(e)?;
                }
                tx.commit().await.map_err(e)?;
            }
            Conn::Postgres(c) => {
                let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(e)?;
                for s in &statements {
                    sqlx::query(s).execute(&mut *tx).await.map_err(e)?;
                }
                tx.commit().await.map_err(e)?;
            }
        }
        return Ok(Found::Created);
    }
    let shape = |column: &str, problem: String| SqlError::Shape {
        url: url.to_string(),
        table: table.to_string(),
        column: column.to_string(),
        problem,
    };
    for c in COLUMNS {
        let want = match url.engine() {
            Engine::Sqlite => c.sqlite,
            Engine::Postgres => c.postgres,
        };
        match have
            .iter()
            .find(|(name, _, _)| name.eq_ignore_ascii_case(c.name))
        {
            None => return Err(shape(c.name, "is missing".into())),
            Some((_, ty, _)) if !ty.eq_ignore_ascii_case(want) => {
                return Err(shape(c.name, format!("is {ty}, not {want}")));
            }
            Some((_, _, pk)) if c.name == "seq" && !pk => {
                return Err(shape(c.name, "is not the primary key".into()));
            }
            Some(_) => {}
        }
    }
    if let Some((name, _, _)) = have
        .iter()
        .find(|(name, _, _)| !COLUMNS.iter().any(|c| c.name.eq_ignore_ascii_case(name)))
    {
        return Err(shape(name, "is not one of the sink's columns".into()));
    }
    Ok(Found::Existing)
}

/// Refuses a table the sink's inserts could be silently diverted from: one
/// that is not a plain table (a view), or has a trigger (a SQLite
/// `BEFORE INSERT ... raise(ignore)`, a PostgreSQL trigger returning NULL)
/// or a PostgreSQL rule (`DO INSTEAD NOTHING`). Either would let a commit
/// succeed with rows missing, and the sink ack them Durable.
pub(crate) async fn refuse_hooks(
    conn: &mut Conn,
    url: &SqlUrl,
    table: &str,
) -> Result<(), SqlError> {
    let e = |e| query_error(url, "reading the table's triggers and rules", e);
    let hooked = |kind: &'static str, name: String| SqlError::Hooked {
        url: url.to_string(),
        table: table.to_string(),
        kind,
        name,
    };
    match conn {
        Conn::Sqlite(c) => {
            let kind: Option<(String,)> = sqlx::query_as(
                "SELECT type FROM sqlite_master WHERE type IN ('table', 'view') AND name = ? COLLATE NOCASE",
            )
            .bind(table)
            .fetch_optional(&mut *c)
            .await
            .map_err(e)?;
            if let Some((kind,)) = kind
                && kind != "table"
            {
                return Err(hooked("view (not a table)", table.to_string()));
            }
            let trigger: Option<(String,)> = sqlx::query_as(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? COLLATE NOCASE ORDER BY name LIMIT 1",
            )
            .bind(table)
            .fetch_optional(&mut *c)
            .await
            .map_err(e)?;
            if let Some((name,)) = trigger {
                return Err(hooked("trigger", name));
            }
        }
        Conn::Postgres(c) => {
            let rel = "(quote_ident(current_schema()) || '.' || quote_ident($1))::regclass";
            let kind: (String,) = sqlx::query_as(&format!(
                "SELECT relkind::text FROM pg_class WHERE oid = {rel}"
            ))
            .bind(table)
            .fetch_one(&mut *c)
            .await
            .map_err(e)?;
            if kind.0 != "r" {
                return Err(hooked(
                    "relation other than a plain table",
                    table.to_string(),
                ));
            }
            let trigger: Option<(String,)> = sqlx::query_as(&format!(
                "SELECT tgname::text FROM pg_trigger WHERE tgrelid = {rel} AND NOT tgisinternal ORDER BY tgname LIMIT 1"
            ))
            .bind(table)
            .fetch_optional(&mut *c)
            .await
            .map_err(e)?;
            if let Some((name,)) = trigger {
                return Err(hooked("trigger", name));
            }
            let rule: Option<(String,)> = sqlx::query_as(
                "SELECT rulename::text FROM pg_rules WHERE schemaname = current_schema() AND tablename = $1 ORDER BY rulename LIMIT 1",
            )
            .bind(table)
            .fetch_optional(&mut *c)
            .await
            .map_err(e)?;
            if let Some((name,)) = rule {
                return Err(hooked("rule", name));
            }
        }
    }
    Ok(())
}

/// The longest line read back: the JSONL reader's bound (16 MiB). A
/// longer row is reported, never fetched.
pub const MAX_LINE: i64 = agent_audit_jsonl::DEFAULT_MAX_LINE as i64;

/// Bytes of lines fetched per page (at least one row): the readers'
/// memory stays a few pages whatever the rows' sizes.
const PAGE_BYTES: i64 = 4 << 20;

/// The SQL for a row's line length in bytes on `engine` (SQLite's
/// `octet_length`, 3.43 on, reads the size from the record header without
/// loading the text).
fn length_of_line(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "octet_length(line)",
        Engine::Postgres => "octet_length(line)::bigint",
    }
}

/// The row with the highest seq: its seq and line. A line over
/// [`MAX_LINE`] is refused without being fetched.
pub(crate) async fn last_row(
    conn: &mut Conn,
    url: &SqlUrl,
    table: &str,
) -> Result<Option<(i64, String)>, SqlError> {
    let len = length_of_line(url.engine());
    let sql = format!(
        "SELECT seq, {len}, CASE WHEN {len} <= {MAX_LINE} THEN line END FROM \"{table}\" ORDER BY seq DESC LIMIT 1"
    );
    let e = |e| query_error(url, "reading the last row", e);
    let row: Option<(i64, i64, Option<String>)> = match conn {
        Conn::Sqlite(c) => sqlx::query_as(&sql).fetch_optional(&mut *c).await,
        Conn::Postgres(c) => sqlx::query_as(&sql).fetch_optional(&mut *c).await,
    }
    .map_err(e)?;
    match row {
        None => Ok(None),
        Some((seq, _, Some(line))) => Ok(Some((seq, line))),
        Some((seq, bytes, None)) => Err(SqlError::BadRow {
            table: table.to_string(),
            seq,
            problem: format!("its line is {bytes} bytes, over the {MAX_LINE}-byte limit; not read"),
        }),
    }
}

/// One row's seq and line, as the sink wrote them, with the row's other
/// columns (the copies of the line's keys that queries read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    /// The row's `seq`.
    pub seq: u64,
    /// The row's `line`: the record's exact JSONL line, without newline.
    pub line: String,
    /// The row's other columns but `seq` and `line` ([`KEY_COLUMNS`]'s
    /// order), as text (`payload` and `attributes` as JSON text); `None`
    /// for NULL.
    pub columns: Vec<Option<String>>,
}

/// The columns that copy a key of the line, but `seq`, in the order of
/// [`StoredLine::columns`].
pub const KEY_COLUMNS: [&str; 13] = [
    "ts",
    "event_type",
    "request_id",
    "correlation_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "agent",
    "payload",
    "prev",
    "user_id",
    "session_id",
    "attributes",
];

/// A column read as text on `engine`.
fn as_text(engine: Engine, column: &str) -> String {
    match engine {
        Engine::Sqlite => format!("CAST({column} AS TEXT)"),
        Engine::Postgres => format!("{column}::text"),
    }
}

/// The SQL for the bytes of a row's columns but `line` (as text).
fn length_of_columns(engine: Engine) -> String {
    let parts: Vec<String> = KEY_COLUMNS
        .iter()
        .map(|c| format!("coalesce(octet_length({}), 0)", as_text(engine, c)))
        .collect();
    match engine {
        Engine::Sqlite => format!("({})", parts.join(" + ")),
        Engine::Postgres => format!("({})::bigint", parts.join(" + ")),
    }
}

/// The most bytes a row's other columns may hold together: twice the line
/// limit (they copy keys of the line; PostgreSQL's `jsonb` text adds
/// spaces). A row over it is reported, its columns never fetched.
pub const MAX_COLUMNS: i64 = 2 * MAX_LINE;

/// A fetched row: seq, line, then [`KEY_COLUMNS`] as text.
type Fetched = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A read-only cursor over a table's `line` column in seq order, a page at
/// a time (memory stays bounded whatever the table's size). Takes no lock:
/// a writer may keep appending while it reads.
pub struct LineReader {
    conn: Conn,
    url: SqlUrl,
    table: String,
    after: Option<i64>,
    /// Rows read so far.
    rows: u64,
}

impl std::fmt::Debug for LineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineReader")
            .field("url", &self.url)
            .field("table", &self.table)
            .field("after", &self.after)
            .finish()
    }
}

/// Opens `table` at `url` read-only (the SQLite file is not created; a
/// PostgreSQL session is read-only) and checks its shape.
pub async fn open_read_only(url: &SqlUrl, table: &str) -> Result<LineReader, SqlError> {
    check_table_name(table)?;
    let limit = STATEMENT_TIMEOUT;
    let mut conn = Conn::open(url, true, Duration::from_secs(10), limit).await?;
    bounded(
        url,
        "reading the table's columns",
        limit,
        ensure(&mut conn, url, table, false),
    )
    .await?;
    Ok(LineReader {
        conn,
        url: url.clone(),
        table: table.to_string(),
        after: None,
        rows: 0,
    })
}

impl LineReader {
    /// The next rows after those already read, in seq order: at most
    /// `limit`, and no more lines than `PAGE_BYTES` bytes (one row at
    /// least); empty at the end. The lengths are read first, so that a row
    /// over [`MAX_LINE`] is reported (by row and seq) without being
    /// fetched.
    pub async fn next_page(&mut self, limit: u32) -> Result<Vec<StoredLine>, SqlError> {
        let after = self.after.unwrap_or(i64::MIN);
        let t = &self.table;
        let len = length_of_line(self.url.engine());
        let (p1, p2, p3) = match self.url.engine() {
            Engine::Sqlite => ("?", "?", "?"),
            Engine::Postgres => ("$1", "$2", "$3"),
        };
        let engine = self.url.engine();
        let cols_len = length_of_columns(engine);
        let sizes_sql = format!(
            "SELECT seq, {len}, {cols_len} FROM \"{t}\" WHERE seq > {p1} ORDER BY seq LIMIT {p2}"
        );
        let columns: Vec<String> = KEY_COLUMNS.iter().map(|c| as_text(engine, c)).collect();
        let lines_sql = format!(
            "SELECT seq, line, {} FROM \"{t}\" WHERE seq > {p1} AND seq <= {p2} AND {len} <= {MAX_LINE} AND {cols_len} <= {MAX_COLUMNS} ORDER BY seq LIMIT {p3}",
            columns.join(", ")
        );
        let e = |e| query_error(&self.url, "reading lines", e);
        let conn = &mut self.conn;
        let fetch = async {
            let sizes: Vec<(i64, i64, i64)> = match &mut *conn {
                Conn::Sqlite(c) => {
                    sqlx::query_as(&sizes_sql)
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *c)
                        .await
                }
                Conn::Postgres(c) => {
                    sqlx::query_as(&sizes_sql)
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *c)
                        .await
                }
            }
            .map_err(e)?;
            let mut upto = None;
            let mut count = 0i64;
            let mut bytes = 0i64;
            for (i, &(seq, n, others)) in sizes.iter().enumerate() {
                if others > MAX_COLUMNS {
                    if i == 0 {
                        return Err(SqlError::BadRow {
                            table: t.clone(),
                            seq,
                            problem: format!(
                                "its columns but line hold {others} bytes, over the {MAX_COLUMNS}-byte limit (they copy the line's keys); not read"
                            ),
                        });
                    }
                    break;
                }
                if n > MAX_LINE {
                    if i == 0 {
                        return Err(SqlError::Oversize {
                            table: t.clone(),
                            row: self.rows + 1,
                            seq,
                            bytes: n,
                            max: MAX_LINE,
                        });
                    }
                    break;
                }
                if i > 0 && bytes + n + others > PAGE_BYTES {
                    break;
                }
                bytes += n + others;
                count += 1;
                upto = Some(seq);
            }
            let Some(upto) = upto else {
                return Ok(Vec::new());
            };
            let rows: Vec<Fetched> = match &mut *conn {
                Conn::Sqlite(c) => {
                    sqlx::query_as(&lines_sql)
                        .bind(after)
                        .bind(upto)
                        .bind(count)
                        .fetch_all(&mut *c)
                        .await
                }
                Conn::Postgres(c) => {
                    sqlx::query_as(&lines_sql)
                        .bind(after)
                        .bind(upto)
                        .bind(count)
                        .fetch_all(&mut *c)
                        .await
                }
            }
            .map_err(e)?;
            Ok(rows)
        };
        // A server that stops answering fails the read, not hangs it.
        let rows = bounded(&self.url, "reading lines", STATEMENT_TIMEOUT, fetch).await?;
        if let Some(row) = rows.last() {
            let seq = row.0;
            self.after = Some(seq);
        }
        self.rows += rows.len() as u64;
        rows.into_iter()
            .map(|row| {
                let (seq, line) = (row.0, row.1);
                let columns = vec![
                    row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10, row.11, row.12,
                    row.13, row.14,
                ];
                let seq = u64::try_from(seq).map_err(|_| SqlError::BadRow {
                    table: self.table.clone(),
                    seq,
                    problem: "negative seq".into(),
                })?;
                Ok(StoredLine { seq, line, columns })
            })
            .collect()
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.conn.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        for ok in ["audit_records", "A1", "_t", &"x".repeat(40)] {
            assert!(check_table_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1t",
            "a.b",
            "a b",
            "t\"",
            "t;drop",
            &"x".repeat(41),
            "é",
        ] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_statements_name_every_column_and_index() {
        let s = create_statements(Engine::Postgres, "t").join("\n");
        for c in COLUMNS {
            assert!(s.contains(c.name), "{}", c.name);
        }
        assert!(s.contains("payload jsonb NOT NULL"));
        assert!(s.contains("seq bigint PRIMARY KEY NOT NULL"));
        assert_eq!(s.matches("CREATE INDEX").count(), 4);
    }
}
