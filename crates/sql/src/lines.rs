//! The reading side of the sink's table as a [`LineStore`]: the `line`
//! column in seq order, one line per row, so that `agent-audit verify`
//! and the review commands read a table through the same bounded reader
//! and the same integrity code as a JSONL file.
//!
//! The rows are read a page at a time by a thread of the store's own
//! (with a current-thread runtime), handed over through a channel of one
//! page: memory stays bounded whatever the table's size, and the store
//! works from blocking code called inside another runtime (the CLI's).

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use agent_audit_jsonl::store::LineStore;

use crate::error::SqlError;
use serde_json::Value;

use crate::schema::{DEFAULT_TABLE, KEY_COLUMNS, StoredLine, check_table_name, open_read_only};
use crate::url::SqlUrl;

/// Rows read per query.
const PAGE: u32 = 512;

/// A table of the SQL sink, read back as a log's lines.
///
/// Its label (in reports and errors) is the URL with its password
/// masked, followed by `#table` when the table is not the default one.
#[derive(Debug, Clone)]
pub struct SqlLines {
    url: SqlUrl,
    table: String,
    label: String,
}

impl SqlLines {
    /// The table `table` at `url`; nothing is opened yet. The error shows
    /// the URL masked.
    pub fn new(url: &str, table: &str) -> Result<SqlLines, SqlError> {
        let url = SqlUrl::parse(url)?;
        check_table_name(table)?;
        let label = if table == DEFAULT_TABLE {
            url.to_string()
        } else {
            format!("{url}#{table}")
        };
        Ok(SqlLines {
            url,
            table: table.to_string(),
            label,
        })
    }

    /// `url`, with the table named by a `#table` suffix (default
    /// `audit_records`), as the CLI takes it: `sqlite://audit.db`,
    /// `postgres://user@host/db#other_table`.
    ///
    /// The `#` is looked for only after the URL's userinfo (a password may
    /// hold `#`), and a table name that is refused is shown with the URL's
    /// password masked.
    pub fn from_location(location: &str) -> Result<SqlLines, SqlError> {
        let location = location.trim();
        // The userinfo ends at the last `@` (a table name holds none).
        let from = location.rfind('@').map_or(0, |at| at + 1);
        match location[from..].rfind('#') {
            Some(i) => {
                let (url, table) = (&location[..from + i], &location[from + i + 1..]);
                let parsed = SqlUrl::parse(url)?;
                if check_table_name(table).is_err() {
                    // Not echoed: it may be a piece of a password.
                    return Err(SqlError::TableName(format!(
                        "(the text after the last `#` of {parsed})"
                    )));
                }
                SqlLines::new(url, table)
            }
            None => SqlLines::new(location, DEFAULT_TABLE),
        }
    }

    /// The URL (shown masked).
    pub fn url(&self) -> &SqlUrl {
        &self.url
    }
}

/// What the reading thread hands over.
enum Message {
    Opened,
    Page(Vec<StoredLine>),
    Failed(SqlError),
}

impl LineStore for SqlLines {
    fn label(&self) -> &str {
        &self.label
    }

    fn open(&self) -> io::Result<Box<dyn BufRead + Send>> {
        let (tx, rx) = sync_channel(1);
        let (url, table) = (self.url.clone(), self.table.clone());
        std::thread::Builder::new()
            .name("agent-audit-sql-read".into())
            .spawn(move || read_pages(&url, &table, &tx))?;
        match rx.recv() {
            Ok(Message::Opened) => Ok(Box::new(Pages {
                rx,
                rows: VecDeque::new(),
                buf: Vec::new(),
                pos: 0,
                done: false,
                last_seq: None,
            })),
            Ok(Message::Failed(e)) => Err(io::Error::other(e)),
            Ok(Message::Page(_)) | Err(_) => Err(io::Error::other(format!(
                "{}: the reading thread ended before the table opened",
                self.label
            ))),
        }
    }
}

/// The reading thread: opens the table, then sends pages until the end,
/// a failure, or the reader is dropped (the send fails).
fn read_pages(url: &SqlUrl, table: &str, tx: &SyncSender<Message>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Message::Failed(SqlError::Connect {
                url: url.to_string(),
                message: format!("cannot start a runtime: {e}"),
                transient: false,
            }));
            return;
        }
    };
    rt.block_on(async {
        let mut reader = match open_read_only(url, table).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Message::Failed(e));
                return;
            }
        };
        if tx.send(Message::Opened).is_ok() {
            loop {
                let message = match reader.next_page(PAGE).await {
                    Ok(page) if page.is_empty() => break,
                    Ok(page) => Message::Page(page),
                    Err(e) => Message::Failed(e),
                };
                let failed = matches!(message, Message::Failed(_));
                if tx.send(message).is_err() || failed {
                    break;
                }
            }
        }
        reader.close().await;
    });
}

/// The lines of the pages received, each followed by a newline, served
/// one line at a time (no copy of the page into one buffer).
struct Pages {
    rx: Receiver<Message>,
    /// The page's lines not yet served.
    rows: VecDeque<StoredLine>,
    /// The line being served, its newline appended.
    buf: Vec<u8>,
    pos: usize,
    done: bool,
    /// The seq in the last line served.
    last_seq: Option<u64>,
}

impl Read for Pages {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Pages {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.buf.len() && !(self.done && self.rows.is_empty()) {
            if let Some(row) = self.rows.pop_front() {
                let next = self.rows.front().and_then(|r| line_seq(&r.line));
                let (line, seq) = as_the_columns_say(row, self.last_seq, next);
                self.last_seq = seq.or(self.last_seq);
                self.buf = line.into_bytes();
                self.buf.push(b'\n');
                self.pos = 0;
                continue;
            }
            match self.rx.recv() {
                Ok(Message::Page(rows)) => self.rows = rows.into(),
                Ok(Message::Failed(e)) => {
                    self.done = true;
                    return Err(io::Error::other(e));
                }
                // The thread ends after the last page.
                Ok(Message::Opened) | Err(_) => self.done = true,
            }
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

/// The row's line as the verifier is to read it: the line itself when
/// every column agrees with it; otherwise the line's JSON object with each
/// disagreeing key set to the column's value (one line, whose hash no
/// longer links: the verifier names that seq, as for an edited JSONL
/// line). A line holding a line break has it replaced by a space, so that
/// one row never reads as two records.
///
/// A `seq` column that disagrees with the line's seq: when the lines'
/// seqs are out of order around it (`before`, the seq in the line served
/// before; `after`, the one in the next row's line) the line is served as
/// it is, and the verifier reports the order problem; otherwise (the
/// order looks right, as for a last row's seq changed) the line's seq is
/// set to the column's and a `seq_column` key added, a record no writer
/// writes, which the verifier refuses at that line.
///
/// Returns the line and the seq in it.
fn as_the_columns_say(
    row: StoredLine,
    before: Option<u64>,
    after: Option<u64>,
) -> (String, Option<u64>) {
    let mut line = row.line;
    if line.contains(['\n', '\r']) {
        line = line.replace(['\n', '\r'], " ");
    }
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(&line) else {
        // Not a record: the verifier reports it as it is.
        return (line, None);
    };
    let mut changed = false;
    let own = object.get("seq").and_then(Value::as_u64);
    let mut served = own;
    if own != Some(row.seq) {
        let out_of_order = match own {
            Some(own) => before.is_some_and(|b| own <= b) || after.is_some_and(|a| own >= a),
            None => false,
        };
        if !out_of_order {
            let was = object.get("seq").cloned().unwrap_or(Value::Null);
            object.insert("seq".into(), Value::from(row.seq));
            object.insert("seq_column".into(), Value::from(row.seq));
            object.insert("seq_in_line".into(), was);
            served = Some(row.seq);
            changed = true;
        }
    }
    for (name, column) in KEY_COLUMNS.iter().zip(row.columns) {
        let json = matches!(*name, "payload" | "attributes");
        let mut value = match column {
            None => Value::Null,
            Some(text) if json => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            Some(text) => Value::String(text),
        };
        let mut have = object.get(*name).cloned().unwrap_or(Value::Null);
        if *name == "attributes" {
            // A v1 line has none and its row NULL; a v2 line `{}`.
            for v in [&mut value, &mut have] {
                if v.is_null() {
                    *v = Value::Object(serde_json::Map::new());
                }
            }
        }
        if !same(&have, &value) {
            object.insert((*name).to_string(), value);
            changed = true;
        }
    }
    if changed {
        line = serde_json::to_string(&Value::Object(object)).unwrap_or(line);
    }
    (line, served)
}

/// The seq in a line (its JSON's `seq` key), if it has one.
fn line_seq(line: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_str::<Seq>(line).ok().map(|s| s.seq)
}

/// JSON values equal as values: objects whatever their keys' order (a
/// `jsonb` column reorders them), numbers as numbers (`1e2` is `100`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || matches!((x.as_i64(), y.as_i64()), (Some(i), Some(j)) if i == j)
                || matches!((x.as_u64(), y.as_u64()), (Some(i), Some(j)) if i == j)
                || matches!((x.as_f64(), y.as_f64()), (Some(i), Some(j)) if i == j)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 7 (issue 12 review): a `#` in the password is not taken for
    /// the table's: the rest of the password was echoed in the table-name
    /// error.
    #[test]
    fn a_hash_in_the_password_is_not_the_table() {
        let s = SqlLines::from_location("postgres://audit:pa#ss-w0rd@db:5432/trail").unwrap();
        assert_eq!(s.label(), "postgres://audit:***@db:5432/trail");
        let s = SqlLines::from_location("postgres://audit:pa#ss-w0rd@db/trail#other").unwrap();
        assert_eq!(s.label(), "postgres://audit:***@db/trail#other");
        // The password's `#` is in the userinfo; a bad table name is not
        // echoed.
        let e = SqlLines::from_location("postgres://audit@db/trail#pa#ss-w0rd")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("ss-w0rd"), "{e}");
    }
}
