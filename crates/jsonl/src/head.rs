use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::chain::GENESIS;
use crate::checkpoint::Origin;

/// The chain state of a sink's file at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The log's name: the active file's name (`audit-log.jsonl`), the same
    /// for every rotated file of it.
    pub log: String,
    /// The log's first line, once known: what checkpoints name the log by.
    /// `None` before the first line is written, and when the log's first
    /// file is gone (removed by retention) so its first line is unknown.
    pub origin: Option<Origin>,
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
    /// Those of them that are not `checkpoint` records: what
    /// `checkpoint_every` counts.
    pub counted: u64,
    /// How many times the sink has started a new file since it opened:
    /// rotations, and reopening the path after the file was moved away or
    /// deleted underneath it.
    pub rotations: u64,
}

/// Most marks kept for the checkpointer: far more than it falls behind by
/// in practice (it signs one per `checkpoint_every` records), and a bound
/// on memory if it stalls.
const MAX_MARKS: usize = 1 << 16;

/// The chain at the line where a checkpoint falls due: the
/// `checkpoint_every`-th counted line since the last checkpoint. The sink
/// records it as it writes, so a checkpoint covers exactly that many
/// records however many the sink writes in one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The line's seq.
    pub seq: u64,
    /// Its chain value.
    pub head: String,
    /// [`ChainHead::written`] up to and including it.
    pub written: u64,
    /// [`ChainHead::counted`] up to and including it.
    pub counted: u64,
}

/// A mark the sink found in a batch not yet committed: `lines` counts the
/// lines since the last commit, up to and including it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingMark {
    pub seq: u64,
    pub head: [u8; 64],
    pub lines: u64,
    pub counted: u64,
}

/// Where the next mark falls, as the sink reads it at the start of a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cadence {
    /// `checkpoint_every`; 0 while no checkpointer watches.
    pub every: u64,
    /// The `counted` value at which the next mark falls.
    pub next_due: u64,
    /// `counted` so far.
    pub counted: u64,
}

#[derive(Debug)]
struct State {
    head: ChainHead,
    every: u64,
    next_due: u64,
    marks: std::collections::VecDeque<Mark>,
    marks_dropped: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
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
            state: Mutex::new(State {
                head: ChainHead {
                    log: String::new(),
                    origin: None,
                    keyed: false,
                    opened: false,
                    seq: 0,
                    head: GENESIS.to_string(),
                    opened_after_seq: 0,
                    written: 0,
                    counted: 0,
                    rotations: 0,
                },
                every: 0,
                next_due: 0,
                marks: std::collections::VecDeque::new(),
                marks_dropped: 0,
            }),
            changed: Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data updated in one statement at a time, so a
        // panic elsewhere cannot leave it half-written: a poisoned lock is
        // still safe to use.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the current state.
    pub fn get(&self) -> ChainHead {
        self.lock().head.clone()
    }

    /// Asks the sink to mark every `every`-th counted line from now on
    /// (0: none). Called by the checkpointer when it starts.
    pub(crate) fn set_every(&self, every: u64) {
        let mut s = self.lock();
        s.every = every;
        // Counting starts where the log was opened (the dispatcher's own
        // notices come before a checkpointer can start). Lines already past
        // a whole `every` are signed at once by the checkpointer instead.
        let counted = s.head.counted;
        s.next_due = if counted < every {
            every
        } else {
            counted.saturating_add(every)
        };
        s.marks.clear();
    }

    /// The head and the marks published since the last call, together: a
    /// mark is published with the head of the same commit, so every mark
    /// at or before the head returned is among them.
    pub(crate) fn take(&self) -> (ChainHead, Vec<Mark>, u64) {
        let mut s = self.lock();
        let marks = s.marks.drain(..).collect();
        (s.head.clone(), marks, std::mem::take(&mut s.marks_dropped))
    }

    /// A checkpoint now covers the counted lines up to `counted`: the next
    /// mark falls `every` after it (never earlier than already due).
    pub(crate) fn covered(&self, counted: u64) {
        let mut s = self.lock();
        s.next_due = s.next_due.max(counted.saturating_add(s.every));
    }

    /// Where the next mark falls; read by the sink before a batch.
    pub(crate) fn cadence(&self) -> Cadence {
        let s = self.lock();
        Cadence {
            every: s.every,
            next_due: s.next_due,
            counted: s.head.counted,
        }
    }

    /// Waits until the sink publishes a change (a write, a rotation, an
    /// open). A change published between two calls is not lost: it wakes
    /// the next call at once.
    pub async fn changed(&self) {
        self.0.changed.notified().await;
    }

    /// Called by the sink once its file is open and its chain resumed.
    pub(crate) fn opened(
        &self,
        path: &Path,
        origin: Option<Origin>,
        keyed: bool,
        last_seq: Option<u64>,
        head: &str,
    ) {
        {
            let mut st = self.lock();
            st.marks.clear();
            st.next_due = st.every;
            let s = &mut st.head;
            s.log = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            s.origin = origin;
            s.keyed = keyed;
            s.opened = true;
            s.seq = last_seq.unwrap_or(0);
            s.opened_after_seq = s.seq;
            s.head.clear();
            s.head.push_str(head);
            s.written = 0;
            s.counted = 0;
        }
        self.0.changed.notify_one();
    }

    /// Called by the sink after lines reached the file: `lines` lines, the
    /// last with `seq`, after which the chain head is `head`, `counted` of
    /// all lines so far are not checkpoints, and `marks` fell among them
    /// (the next one due at `next_due`).
    pub(crate) fn advanced(
        &self,
        seq: u64,
        head: &[u8; 64],
        lines: u64,
        counted: u64,
        marks: &mut Vec<PendingMark>,
        next_due: u64,
    ) {
        {
            let mut st = self.lock();
            let written = st.head.written;
            for m in marks.drain(..) {
                if st.marks.len() >= MAX_MARKS {
                    st.marks.pop_front();
                    st.marks_dropped += 1;
                }
                st.marks.push_back(Mark {
                    seq: m.seq,
                    head: String::from_utf8_lossy(&m.head).into_owned(),
                    written: written + m.lines,
                    counted: m.counted,
                });
            }
            // The checkpointer may have moved it on meanwhile.
            st.next_due = st.next_due.max(next_due);
            let s = &mut st.head;
            s.counted = counted;
            s.seq = seq;
            s.head.clear();
            // The sink stores only lowercase hex digits in its head.
            s.head
                .push_str(std::str::from_utf8(head).unwrap_or(GENESIS));
            s.written += lines;
        }
        self.0.changed.notify_one();
    }

    /// Called by the sink once the log's first line is in the file.
    pub(crate) fn set_origin(&self, origin: Origin) {
        self.lock().head.origin = Some(origin);
    }

    /// Called by the sink after it renamed a full file and started a new
    /// one, or reopened its path after the file was moved or deleted.
    pub(crate) fn rotated(&self) {
        self.lock().head.rotations += 1;
        self.0.changed.notify_one();
    }
}
