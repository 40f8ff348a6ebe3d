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
use crate::schema::{DEFAULT_TABLE, StoredLine, check_table_name, open_read_only};
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
                self.buf = row.line.into_bytes();
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
