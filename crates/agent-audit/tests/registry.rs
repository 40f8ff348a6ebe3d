//! A sink type defined outside the facade, registered and named in a real
//! `audit.toml`: records reach it through a dispatcher built from that
//! file, its options' errors name file, line and key, an unknown type
//! lists the registered ones, and the built-in types load as before.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_audit::config::{
    BuildError, BuiltSink, Config, ConfigError, OptionError, RegistryError, SinkBuildError,
    SinkContext, SinkRegistry, SinkType,
};
use agent_audit::{AckLevel, Auditor, Batch, EventType, Sink, SinkError};

/// What the test's sinks saw: (sink name, seq, event type) per record.
type Seen = Arc<Mutex<Vec<(String, u64, String)>>>;

/// A sink that keeps what it is given, as a team's database sink would.
struct Keeper {
    name: String,
    prefix: String,
    seen: Seen,
}

impl Sink for Keeper {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }

    fn write(&mut self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let mut seen = self.seen.lock().unwrap();
        for r in batch.records {
            seen.push((
                self.name.clone(),
                r.seq,
                format!("{}{}", self.prefix, r.event_type),
            ));
        }
        Ok(AckLevel::Written)
    }
}

/// `type = "keeper"`: its own keys, one of them nested.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeeperOptions {
    #[serde(default)]
    prefix: String,
    capacity: u64,
    #[serde(default)]
    retry: Option<KeeperRetry>,
    /// Refused when the sink is built, not when it is parsed.
    #[serde(default)]
    fail_open: bool,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeeperRetry {
    attempts: u32,
}

struct KeeperType {
    seen: Seen,
}

impl SinkType for KeeperType {
    type Options = KeeperOptions;

    fn name(&self) -> &str {
        "keeper"
    }

    fn validate(&self, o: &KeeperOptions) -> Result<(), OptionError> {
        if !(1..=1000).contains(&o.capacity) {
            return Err(OptionError::new(
                "capacity",
                format!("must be between 1 and 1000, got {}", o.capacity),
            ));
        }
        if let Some(retry) = &o.retry
            && retry.attempts > 10
        {
            return Err(OptionError::new(
                "retry.attempts",
                format!("at most 10, got {}", retry.attempts),
            ));
        }
        Ok(())
    }

    fn build(
        &self,
        o: &KeeperOptions,
        context: &mut SinkContext<'_>,
    ) -> Result<BuiltSink, SinkBuildError> {
        if o.fail_open {
            return Err("the keeper's store is unreachable".into());
        }
        Ok(BuiltSink::new(Keeper {
            name: context.name().to_string(),
            prefix: o.prefix.clone(),
            seen: self.seen.clone(),
        }))
    }
}

fn registry() -> (SinkRegistry, Seen) {
    let seen = Seen::default();
    let registry = SinkRegistry::with_builtins()
        .register(KeeperType { seen: seen.clone() })
        .expect("a new name registers");
    (registry, seen)
}

fn write(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("audit.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// Loads `body` from a real file; the error as the operator reads it.
fn load_err(registry: &SinkRegistry, body: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), body);
    let e = Config::load_with(registry, &path).expect_err("refused");
    assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
    (e.to_string(), path.display().to_string())
}

#[tokio::test]
async fn records_reach_a_registered_sink_named_in_audit_toml() {
    let (registry, seen) = registry();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[service]\nname = \"bank\"\n\n\
         [[sinks]]\ntype = \"keeper\"\nname = \"db\"\nrequired = true\ncapacity = 8\nprefix = \"k:\"\n\n\
         [[sinks]]\ntype = \"keeper\"\ncapacity = 1\nretry = { attempts = 3 }\n",
    );
    let config = Config::load_with(&registry, &path).unwrap();
    let kinds: Vec<_> = config
        .sinks
        .iter()
        .map(|s| (s.name.as_str(), s.type_name(), s.required))
        .collect();
    // A registered type is optional unless the file says otherwise, and a
    // repeated default name is numbered, as for the built-in types.
    assert_eq!(kinds, [("db", "keeper", true), ("keeper", "keeper", false)]);
    let options = config.sinks[0].options::<KeeperOptions>().unwrap();
    assert_eq!(options.capacity, 8);

    let dispatcher = config.start().await.unwrap();
    let audit = Auditor::new(dispatcher.clone()).for_request(None);
    audit
        .emit(EventType::UserRequest, &serde_json::json!({"text": "hi"}))
        .await
        .unwrap();
    let receipt = audit
        .emit_wait(
            EventType::ToolCall,
            &serde_json::json!({"tool": "balance"}),
            AckLevel::Written,
        )
        .await
        .unwrap();
    assert!(receipt.level >= AckLevel::Written, "{receipt:?}");
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");

    let seen = seen.lock().unwrap().clone();
    for sink in ["db", "keeper"] {
        let mine: Vec<_> = seen.iter().filter(|(s, ..)| s == sink).collect();
        assert_eq!(mine.len(), 2, "{sink}: {seen:?}");
        assert!(mine[0].1 < mine[1].1, "in seq order: {seen:?}");
    }
    assert!(
        seen.iter()
            .any(|(s, _, t)| s == "db" && t == "k:user_request"),
        "the options reached the sink: {seen:?}"
    );
}

#[test]
fn a_wrong_type_in_a_registered_sinks_options_names_file_line_and_key() {
    let (registry, _) = registry();
    let (e, path) = load_err(
        &registry,
        "[[sinks]]\ntype = \"keeper\"\nname = \"db\"\ncapacity = \"eight\"\n",
    );
    assert!(
        e.starts_with(&format!("{path}:4:1: key `sinks[0].capacity`: ")),
        "{e}"
    );
    assert!(e.contains("invalid type"), "{e}");
}

#[test]
fn an_unknown_key_in_a_registered_sinks_options_names_file_line_and_key() {
    let (registry, _) = registry();
    let (e, path) = load_err(
        &registry,
        "[service]\nname = \"x\"\n\n[[sinks]]\ntype = \"keeper\"\ncapacity = 8\ncapasity = 9\n",
    );
    assert!(
        e.starts_with(&format!("{path}:7:1: key `sinks[0].capasity`: ")),
        "{e}"
    );
    assert!(e.contains("unknown field `capasity`"), "{e}");
}

#[test]
fn a_bad_value_refused_by_the_types_validation_names_file_line_and_key() {
    let (registry, _) = registry();
    let (e, path) = load_err(
        &registry,
        "[[sinks]]\ntype = \"keeper\"\nrequired = false\ncapacity = 0\n",
    );
    assert_eq!(
        e,
        format!("{path}:4:1: key `sinks[0].capacity`: must be between 1 and 1000, got 0")
    );
    // A nested key: the line of its inline table.
    let (e, path) = load_err(
        &registry,
        "[[sinks]]\ntype = \"keeper\"\ncapacity = 5\n\n[[sinks]]\ntype = \"keeper\"\ncapacity = 5\nretry = { attempts = 11 }\n",
    );
    assert_eq!(
        e,
        format!("{path}:8:1: key `sinks[1].retry.attempts`: at most 10, got 11")
    );
}

#[test]
fn the_common_keys_stay_the_configurations_own() {
    let (registry, _) = registry();
    let (e, path) = load_err(
        &registry,
        "[[sinks]]\ntype = \"keeper\"\ncapacity = 5\nqueue = 0\n",
    );
    assert_eq!(
        e,
        format!("{path}:4:1: key `sinks[0].queue`: must be between 1 and 10000000, got 0")
    );
    let (e, _) = load_err(
        &registry,
        "[[sinks]]\ntype = \"keeper\"\ncapacity = 5\noverflow = \"sometimes\"\n",
    );
    assert!(e.contains(":4:1: key `sinks[0].overflow`"), "{e}");
}

#[test]
fn an_unknown_type_lists_the_registered_ones() {
    let (registry, _) = registry();
    let (e, path) = load_err(&registry, "[[sinks]]\ntype = \"keepr\"\ncapacity = 5\n");
    let mut names = vec!["keeper"];
    if cfg!(feature = "jsonl") {
        names.push("jsonl");
    }
    if cfg!(feature = "otlp") {
        names.push("otlp");
    }
    if cfg!(feature = "stdout") {
        names.push("stdout");
    }
    if cfg!(feature = "sql") {
        names.push("sql");
    }
    names.sort();
    assert_eq!(
        e,
        format!(
            "{path}:2:1: key `sinks[0].type`: unknown sink type `keepr` (registered: {})",
            names.join(", ")
        )
    );
    assert_eq!(registry.types().collect::<Vec<_>>(), names);

    // Without the registry, the built-in configuration does not know it.
    let e = Config::parse("[[sinks]]\ntype = \"keeper\"\ncapacity = 5\n", "audit.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown sink type `keeper`"), "{e}");

    let e = Config::parse_with(
        &SinkRegistry::new(),
        "[[sinks]]\ntype = \"jsonl\"\n",
        "a.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "a.toml:2:1: key `sinks[0].type`: unknown sink type `jsonl` (none are registered"
        ),
        "{e}"
    );
}

#[test]
fn a_name_is_registered_once() {
    let (registry, seen) = registry();
    let again = registry.clone().register(KeeperType { seen: seen.clone() });
    assert_eq!(
        again.unwrap_err(),
        RegistryError::Duplicate("keeper".into())
    );
    struct Named(&'static str);
    impl SinkType for Named {
        type Options = KeeperOptions;
        fn name(&self) -> &str {
            self.0
        }
        fn build(
            &self,
            _: &KeeperOptions,
            _: &mut SinkContext<'_>,
        ) -> Result<BuiltSink, SinkBuildError> {
            Err("never built".into())
        }
    }
    for bad in ["", "my sink", "sink\n", "é"] {
        assert_eq!(
            SinkRegistry::new().register(Named(bad)).unwrap_err(),
            RegistryError::BadName(bad.into())
        );
    }
    if cfg!(feature = "jsonl") {
        assert_eq!(
            registry.register(Named("jsonl")).unwrap_err(),
            RegistryError::Duplicate("jsonl".into())
        );
    }
}

#[tokio::test]
async fn a_sink_that_cannot_be_built_names_the_file_the_sink_and_its_line() {
    let (registry, _) = registry();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[[sinks]]\ntype = \"keeper\"\ncapacity = 1\n\n[[sinks]]\ntype = \"keeper\"\nname = \"store\"\ncapacity = 1\nfail_open = true\n",
    );
    let config = Config::load_with(&registry, &path).unwrap();
    let e = config.start().await.unwrap_err();
    assert!(matches!(e, BuildError::Sink { line: 5, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: sink `store` (line 5): the keeper's store is unreachable",
            path.display()
        )
    );
}

#[cfg(feature = "jsonl")]
#[tokio::test]
async fn the_built_in_types_load_and_run_beside_a_registered_one() {
    let (registry, seen) = registry();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit-log.jsonl");
    let path = write(
        dir.path(),
        &format!(
            "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nfsync = \"every\"\n\n[[sinks]]\ntype = \"keeper\"\ncapacity = 4\n",
            log.display()
        ),
    );
    let config = Config::discover_with(&registry, Some(&path)).unwrap();
    assert_eq!(config.sinks[0].type_name(), "jsonl");
    assert!(config.sinks[0].required, "jsonl is required by default");
    let dispatcher = config.start().await.unwrap();
    let audit = Auditor::new(dispatcher.clone()).for_request(None);
    audit
        .emit_wait(
            EventType::ToolCall,
            &serde_json::json!({"tool": "t"}),
            AckLevel::Durable,
        )
        .await
        .unwrap();
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"tool_call\""), "{text}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    // The seq lease still sits beside the required log.
    assert!(dir.path().join("audit-log.jsonl.seq").exists());
}

#[cfg(feature = "jsonl")]
#[test]
fn the_built_in_types_errors_are_unchanged() {
    let e = Config::parse(
        "[[sinks]]\ntype = \"jsonl\"\npath = \"a.jsonl\"\nfsync_interval_ms = 0\n",
        "audit.toml",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "audit.toml:4:1: key `sinks[0].fsync_interval_ms`: fsync_interval_ms must be at least 1"
    );
    let e = Config::parse(
        "[[sinks]]\ntype = \"jsonl\"\npath = \"a\"\nfsynk = \"every\"\n",
        "audit.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("audit.toml:4:1: key `sinks[0].fsynk`: unknown field `fsynk`"),
        "{e}"
    );
    let e = Config::parse("[[sinks]]\nname = \"x\"\n", "audit.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("audit.toml:1:1: key `sinks[0].type`: missing `type` (one of "),
        "{e}"
    );
    let config = Config::default();
    let names: Vec<_> = config.sinks.iter().map(|s| s.type_name()).collect();
    let expected: Vec<&str> = [
        #[cfg(feature = "jsonl")]
        "jsonl",
        #[cfg(feature = "stdout")]
        "stdout",
    ]
    .to_vec();
    assert_eq!(names, expected);
}

#[cfg(feature = "otlp")]
#[test]
fn the_otlp_types_errors_are_unchanged() {
    let e = Config::parse(
        "[[sinks]]\ntype = \"otlp\"\nretry = { max_elapsed_ms = 86400001 }\n",
        "audit.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("audit.toml:3:1: key `sinks[0].retry.max_elapsed_ms`: "),
        "{e}"
    );
    assert!(!e.contains("otlp sink: "), "{e}");
    let e = Config::parse(
        "[[sinks]]\ntype = \"otlp\"\nendpoint = \"http://u:p@host:4318\"\n",
        "audit.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("audit.toml:3:1: key `sinks[0].endpoint`: "),
        "{e}"
    );
}

/// An asynchronous sink: the factory returns it as readily as a blocking
/// one, and the dispatcher runs it through core's bridge.
struct AsyncKeeper {
    name: String,
    seen: Seen,
}

#[async_trait::async_trait]
impl agent_audit::AsyncSink for AsyncKeeper {
    fn max_level(&self) -> AckLevel {
        AckLevel::Written
    }

    async fn write(&self, batch: &Batch<'_>) -> Result<AckLevel, SinkError> {
        let rows: Vec<_> = batch
            .records
            .iter()
            .map(|r| (self.name.clone(), r.seq, r.event_type.to_string()))
            .collect();
        tokio::task::yield_now().await;
        self.seen.lock().unwrap().extend(rows);
        Ok(AckLevel::Written)
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

struct AsyncKeeperType {
    seen: Seen,
}

impl SinkType for AsyncKeeperType {
    type Options = NoOptions;

    fn name(&self) -> &str {
        "async-keeper"
    }

    fn build(
        &self,
        _: &NoOptions,
        context: &mut SinkContext<'_>,
    ) -> Result<BuiltSink, SinkBuildError> {
        Ok(BuiltSink::new_async(AsyncKeeper {
            name: context.name().to_string(),
            seen: self.seen.clone(),
        }))
    }
}

#[tokio::test]
async fn a_registered_type_may_build_an_async_sink() {
    let (registry, seen) = registry();
    let registry = registry
        .register(AsyncKeeperType { seen: seen.clone() })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[[sinks]]\ntype = \"async-keeper\"\nrequired = true\n\n[[sinks]]\ntype = \"keeper\"\ncapacity = 2\n",
    );
    let config = Config::load_with(&registry, &path).unwrap();
    let dispatcher = config.start().await.unwrap();
    let audit = Auditor::new(dispatcher.clone()).for_request(None);
    for _ in 0..3 {
        audit
            .emit_wait(
                EventType::AssistantInput,
                &serde_json::json!({"model": "m"}),
                AckLevel::Written,
            )
            .await
            .unwrap();
    }
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report}");
    let seen = seen.lock().unwrap().clone();
    let by = |sink: &str| -> Vec<u64> {
        seen.iter()
            .filter(|(s, ..)| s == sink)
            .map(|(_, seq, _)| *seq)
            .collect()
    };
    assert_eq!(by("async-keeper").len(), 3, "{seen:?}");
    assert_eq!(by("async-keeper"), by("keeper"), "{seen:?}");

    let e = Config::parse_with(
        &registry,
        "[[sinks]]\ntype = \"async-keeper\"\nbatch = 3\n",
        "audit.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("audit.toml:3:1: key `sinks[0].batch`: unknown field `batch`"),
        "{e}"
    );
}
