//! `impl Sink for Box<S>` forwards every method of the trait: a boxed sink
//! that silently got a default hook would, say, never tick or never close.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit_core::{AckLevel, Batch, ShutdownSignal, Sink, SinkError, SinkOpen, StatusSignal};

/// Every method of [`Sink`]; a new one must be added here, to the
/// [`Every`] sink below and to the `Box` impl.
const METHODS: [&str; 11] = [
    "max_level",
    "open",
    "write",
    "tick",
    "tick_interval",
    "linger",
    "max_batch",
    "watch_shutdown",
    "watch_status",
    "take_notices",
    "close",
];

/// Overrides every method, records each call and answers what no default
/// does.
struct Every(Arc<Mutex<Vec<&'static str>>>);

impl Every {
    fn saw(&self, method: &'static str) {
        self.0.lock().unwrap().push(method);
    }
}

impl Sink for Every {
    fn max_level(&self) -> AckLevel {
        self.saw("max_level");
        AckLevel::Exported
    }
    fn open(&mut self) -> Result<SinkOpen, SinkError> {
        self.saw("open");
        Ok(SinkOpen {
            last_seq: Some(41),
            notices: vec!["opened".into()],
        })
    }
    fn write(&mut self, _batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        self.saw("write");
        Ok(AckLevel::Exported)
    }
    fn tick(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.saw("tick");
        Ok(Some(AckLevel::Durable))
    }
    fn tick_interval(&self) -> Option<Duration> {
        self.saw("tick_interval");
        Some(Duration::from_secs(3))
    }
    fn linger(&self) -> Option<Duration> {
        self.saw("linger");
        Some(Duration::from_millis(5))
    }
    fn max_batch(&self) -> Option<usize> {
        self.saw("max_batch");
        Some(77)
    }
    fn watch_shutdown(&mut self, _signal: ShutdownSignal) {
        self.saw("watch_shutdown");
    }
    fn watch_status(&mut self, _status: StatusSignal) {
        self.saw("watch_status");
    }
    fn take_notices(&mut self) -> Vec<String> {
        self.saw("take_notices");
        vec!["noticed".into()]
    }
    fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.saw("close");
        Ok(Some(AckLevel::Written))
    }
}

/// Calls every method through `S`'s own impl (generic, so no auto-deref
/// to the inner sink) and checks each answer is the inner sink's.
fn drive<S: Sink>(sink: &mut S) {
    assert_eq!(sink.max_level(), AckLevel::Exported);
    let open = sink.open().unwrap();
    assert_eq!(
        (open.last_seq, open.notices),
        (Some(41), vec!["opened".into()])
    );
    let batch = Batch {
        records: &[],
        deadline: None,
    };
    assert_eq!(sink.write(&batch).unwrap(), AckLevel::Exported);
    assert_eq!(sink.tick().unwrap(), Some(AckLevel::Durable));
    assert_eq!(sink.tick_interval(), Some(Duration::from_secs(3)));
    assert_eq!(sink.linger(), Some(Duration::from_millis(5)));
    assert_eq!(sink.max_batch(), Some(77));
    sink.watch_shutdown(ShutdownSignal::new());
    sink.watch_status(StatusSignal::new());
    assert_eq!(sink.take_notices(), vec!["noticed".to_string()]);
    assert_eq!(sink.close().unwrap(), Some(AckLevel::Written));
}

fn calls_through<S: Sink>(wrap: impl FnOnce(Every) -> S) -> Vec<&'static str> {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut sink = wrap(Every(calls.clone()));
    drive(&mut sink);
    calls.lock().unwrap().clone()
}

#[test]
fn a_boxed_sink_forwards_every_method_to_the_sink_it_holds() {
    assert_eq!(calls_through(|s| s), METHODS, "the test sink itself");
    assert_eq!(calls_through(Box::new), METHODS, "Box<S>");
    assert_eq!(
        calls_through(|s| Box::new(s) as Box<dyn Sink>),
        METHODS,
        "Box<dyn Sink>"
    );
    assert_eq!(
        calls_through(|s| Box::new(Box::new(s) as Box<dyn Sink>)),
        METHODS,
        "Box<Box<dyn Sink>>"
    );
}

/// The names of the `fn`s in the block of `src` that starts at the line
/// starting with `header`.
fn methods_in(src: &str, header: &str) -> Vec<String> {
    let start = src
        .find(header)
        .unwrap_or_else(|| panic!("`{header}` not found in sink.rs"));
    let block = &src[start..];
    let end = block.find("\n}\n").expect("the block ends");
    block[..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("fn "))
        .map(|rest| rest.split(['(', '<']).next().unwrap().to_string())
        .collect()
}

#[test]
fn the_box_impl_and_this_test_name_every_method_of_the_trait() {
    let src = include_str!("../src/sink.rs");
    let mut in_trait = methods_in(src, "pub trait Sink");
    let mut in_box = methods_in(src, "impl<S: Sink + ?Sized> Sink for Box<S>");
    let mut tested: Vec<String> = METHODS.iter().map(|m| m.to_string()).collect();
    in_trait.sort();
    in_box.sort();
    tested.sort();
    assert_eq!(
        in_box, in_trait,
        "the Box impl forwards exactly the trait's methods"
    );
    assert_eq!(
        tested, in_trait,
        "METHODS lists exactly the trait's methods"
    );
}
