use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::chain::GENESIS;

/// The chain state of a sink's file at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The log's name: the active file's name (`audit-log.jsonl`), the same
    /// for every rotated file of it.
    pub log: String,
    /// Whether the chain is HMAC-SHA256 (a chain key is set).
    pub keyed: bool,
    /// Whether the sink has opened its file; before that nothing else here
    /// is meaningful.
    pub opened: bool,
    /// The seq of the last line in the file, or 0 when the log is empty.
    pub seq: u64,
    /// The chain value of that line (the `prev` the next line will carry),
    /// or [`GENESIS`] when the log is empty.
    pub head: String,
    /// The seq of the last line that was already in the log when the sink
    /// opened it (0 for a new log): where this writer's lines begin.
    pub opened_after_seq: u64,
    /// Lines this sink has appended since it opened the log.
    pub written: u64,
    /// How many times the sink has started a new file since it opened:
    /// rotations, and reopening the path after the file was moved away or
    /// deleted underneath it.
    pub rotations: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<ChainHead>,
    changed: Notify,
}

/// A live view of a [`JsonlSink`](crate::JsonlSink)'s chain head, for
/// signed checkpoints.
///
/// The sink moves into the dispatcher's worker thread, so a
/// [`Checkpointer`](crate::checkpoint::Checkpointer) cannot ask it for its
/// head. Instead the sink publishes, after every successful write, the seq
/// and chain value of the last line it put in the file, and wakes whoever
/// waits on [`HeadHandle::changed`]. Take the handle with
/// [`JsonlSink::head_handle`](crate::JsonlSink::head_handle) before handing
/// the sink to the dispatcher.
///
/// What is published is what the file holds (handed to the operating
/// system), never what is only queued: a checkpoint built from it names a
/// line a verifier can find.
///
/// ```
/// use agent_audit_jsonl::{JsonlOptions, JsonlSink};
///
/// let sink = JsonlSink::new(JsonlOptions::new("audit-log.jsonl"))?;
/// let head = sink.head_handle();
/// // Nothing is opened until the dispatcher starts the sink.
/// assert!(!head.get().opened);
/// # Ok::<(), agent_audit_jsonl::JsonlError>(())
/// ```
#[derive(Debug, Clone)]
pub struct HeadHandle(Arc<Inner>);

impl Default for HeadHandle {
    fn default() -> Self {
        HeadHandle::new()
    }
}

impl HeadHandle {
    /// A handle on a sink that has not opened yet.
    pub fn new() -> HeadHandle {
        HeadHandle(Arc::new(Inner {
            state: Mutex::new(ChainHead {
                log: String::new(),
                keyed: false,
                opened: false,
                seq: 0,
                head: GENESIS.to_string(),
                opened_after_seq: 0,
                written: 0,
                rotations: 0,
            }),
            changed: Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, ChainHead> {
        // The state is plain data updated in one statement at a time, so a
        // panic elsewhere cannot leave it half-written: a poisoned lock is
        // still safe to use.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the current state.
    pub fn get(&self) -> ChainHead {
        self.lock().clone()
    }

    /// Waits until the sink publishes a change (a write, a rotation, an
    /// open). A change published between two calls is not lost: it wakes
    /// the next call at once.
    pub async fn changed(&self) {
        self.0.changed.notified().await;
    }

    /// Called by the sink once its file is open and its chain resumed.
    pub(crate) fn opened(&self, path: &Path, keyed: bool, last_seq: Option<u64>, head: &str) {
        {
            let mut s = self.lock();
            s.log = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            s.keyed = keyed;
            s.opened = true;
            s.seq = last_seq.unwrap_or(0);
            s.opened_after_seq = s.seq;
            s.head.clear();
            s.head.push_str(head);
            s.written = 0;
        }
        self.0.changed.notify_one();
    }

    /// Called by the sink after lines reached the file: `lines` lines, the
    /// last with `seq`, after which the chain head is `head`.
    pub(crate) fn advanced(&self, seq: u64, head: &[u8; 64], lines: u64) {
        {
            let mut s = self.lock();
            s.seq = seq;
            s.head.clear();
            // The sink stores only lowercase hex digits in its head.
            s.head
                .push_str(std::str::from_utf8(head).unwrap_or(GENESIS));
            s.written += lines;
        }
        self.0.changed.notify_one();
    }

    /// Called by the sink after it renamed a full file and started a new
    /// one, or reopened its path after the file was moved or deleted.
    pub(crate) fn rotated(&self) {
        self.lock().rotations += 1;
        self.0.changed.notify_one();
    }
}
