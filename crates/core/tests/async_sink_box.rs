//! `impl AsyncSink for Box<S>` forwards every method of the trait: a boxed
//! async sink that silently got a default hook would, say, never tick, keep
//! one write in flight, or never close.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit_core::{
    AckLevel, AsyncSink, Batch, ShutdownSignal, SinkError, SinkOpen, StatusSignal,
};

/// Every method of [`AsyncSink`]; a new one must be added here, to the
/// [`Every`] sink below and to the `Box` impl.
const METHODS: [&str; 12] = [
    "max_level",
    "open",
    "write",
    "tick",
    "tick_interval",
    "linger",
    "max_batch",
    "max_in_flight",
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

#[async_trait::async_trait]
impl AsyncSink for Every {
    fn max_level(&self) -> AckLevel {
        self.saw("max_level");
        AckLevel::Exported
    }
    async fn open(&mut self) -> Result<SinkOpen, SinkError> {
        self.saw("open");
        Ok(SinkOpen {
            last_seq: Some(41),
            notices: vec!["opened".into()],
        })
    }
    async fn write(&self, _batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        self.saw("write");
        Ok(AckLevel::Exported)
    }
    async fn tick(&self) -> Result<Option<AckLevel>, SinkError> {
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
    fn max_in_flight(&self) -> usize {
        self.saw("max_in_flight");
        4
    }
    fn watch_shutdown(&mut self, _signal: ShutdownSignal) {
        self.saw("watch_shutdown");
    }
    fn watch_status(&mut self, _status: StatusSignal) {
        self.saw("watch_status");
    }
    fn take_notices(&self) -> Vec<String> {
        self.saw("take_notices");
        vec!["noticed".into()]
    }
    async fn close(&mut self) -> Result<Option<AckLevel>, SinkError> {
        self.saw("close");
        Ok(Some(AckLevel::Written))
    }
}

/// Calls every method through `S`'s own impl (generic, so no auto-deref
/// to the inner sink) and checks each answer is the inner sink's.
async fn drive<S: AsyncSink>(sink: &mut S) {
    assert_eq!(sink.max_level(), AckLevel::Exported);
    let open = sink.open().await.unwrap();
    assert_eq!(
        (open.last_seq, open.notices),
        (Some(41), vec!["opened".into()])
    );
    let batch = Batch {
        records: &[],
        deadline: None,
    };
    assert_eq!(sink.write(&batch).await.unwrap(), AckLevel::Exported);
    assert_eq!(sink.tick().await.unwrap(), Some(AckLevel::Durable));
    assert_eq!(sink.tick_interval(), Some(Duration::from_secs(3)));
    assert_eq!(sink.linger(), Some(Duration::from_millis(5)));
    assert_eq!(sink.max_batch(), Some(77));
    assert_eq!(sink.max_in_flight(), 4);
    sink.watch_shutdown(ShutdownSignal::new());
    sink.watch_status(StatusSignal::new());
    assert_eq!(sink.take_notices(), vec!["noticed".to_string()]);
    assert_eq!(sink.close().await.unwrap(), Some(AckLevel::Written));
}

async fn calls_through<S: AsyncSink>(wrap: impl FnOnce(Every) -> S) -> Vec<&'static str> {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut sink = wrap(Every(calls.clone()));
    drive(&mut sink).await;
    calls.lock().unwrap().clone()
}

#[tokio::test]
async fn a_boxed_async_sink_forwards_every_method_to_the_sink_it_holds() {
    assert_eq!(calls_through(|s| s).await, METHODS, "the test sink itself");
    assert_eq!(calls_through(Box::new).await, METHODS, "Box<S>");
    assert_eq!(
        calls_through(|s| Box::new(s) as Box<dyn AsyncSink>).await,
        METHODS,
        "Box<dyn AsyncSink>"
    );
    assert_eq!(
        calls_through(|s| Box::new(Box::new(s) as Box<dyn AsyncSink>)).await,
        METHODS,
        "Box<Box<dyn AsyncSink>>"
    );
}

/// The names of the `fn`s (async or not) in the block of `src` that starts
/// at the line starting with `header`.
fn methods_in(src: &str, header: &str) -> Vec<String> {
    let start = src
        .find(header)
        .unwrap_or_else(|| panic!("`{header}` not found in async_sink.rs"));
    let block = &src[start..];
    let end = block.find("\n}\n").expect("the block ends");
    block[..end]
        .lines()
        .map(|l| l.trim())
        .filter_map(|l| l.strip_prefix("async ").unwrap_or(l).strip_prefix("fn "))
        .map(|rest| rest.split(['(', '<']).next().unwrap().to_string())
        .collect()
}

#[test]
fn the_box_impl_and_this_test_name_every_method_of_the_trait() {
    let src = include_str!("../src/async_sink.rs");
    let mut in_trait = methods_in(src, "pub trait AsyncSink");
    let mut in_box = methods_in(src, "impl<S: AsyncSink + ?Sized> AsyncSink for Box<S>");
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
