//! The spool sink, a crate outside agent-audit: its type registered and
//! named in a real audit.toml, records delivered through the dispatcher
//! built from that file, and the conformance suite run on the sink the
//! file's options describe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_audit::config::Config;
use agent_audit::conformance::{Target, run_all};
use agent_audit::{AckLevel, Auditor, EventType, Sink, StoredRecord};
use agent_audit_third_party_sink::{SpoolOptions, SpoolSink, read_spool, registry};

fn audit_toml(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("audit.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn spool_toml(dir: &Path) -> PathBuf {
    let spool = dir.join("spool");
    audit_toml(
        dir,
        &format!(
            "[service]\nname = \"billing-agent\"\n\n[[sinks]]\ntype = \"spool\"\ndir = {:?}\nper_file = 64\n",
            spool.to_str().unwrap()
        ),
    )
}

/// The suite's view: each sink is built from the options the registry
/// read out of audit.toml.
struct SpoolTarget {
    options: SpoolOptions,
}

impl SpoolTarget {
    fn from_file(path: &Path) -> SpoolTarget {
        let config = Config::load_with(&registry().unwrap(), path).unwrap();
        assert_eq!(config.sinks[0].type_name(), "spool");
        let options = config.sinks[0].options::<SpoolOptions>().unwrap().clone();
        SpoolTarget { options }
    }
}

impl Target for SpoolTarget {
    fn make(&self) -> Box<dyn Sink> {
        Box::new(SpoolSink::new(self.options.clone()))
    }
    fn read_back(&self) -> Option<Vec<StoredRecord>> {
        Some(read_spool(&self.options.dir).unwrap())
    }
    fn persistent(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_from_another_crate_passes_the_conformance_suite_as_configured_in_audit_toml() {
    let dir = tempfile::tempdir().unwrap();
    let target = SpoolTarget::from_file(&spool_toml(dir.path()));
    run_all(&target).await.unwrap();
    // The suite's records are in the spool, one file per batch of at most
    // the configured 64.
    let files = std::fs::read_dir(dir.path().join("spool")).unwrap().count();
    assert!(files > 200 / 64, "{files} spool files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_toml_names_the_registered_type_and_records_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load_with(&registry().unwrap(), &spool_toml(dir.path())).unwrap();
    let dispatcher = config.start().await.unwrap();
    let audit = Auditor::new(dispatcher.clone())
        .for_request(Some("req-1"))
        .with_agent("assistant");
    audit
        .emit(
            EventType::UserRequest,
            &serde_json::json!({"text": "What is my balance?"}),
        )
        .await
        .unwrap();
    let r = audit
        .emit_wait(
            EventType::ToolCall,
            &serde_json::json!({"tool": "get_account_balance"}),
            AckLevel::Durable,
        )
        .await
        .unwrap();
    assert_eq!(r.level, AckLevel::Durable);
    let report = dispatcher.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    let stored = read_spool(&dir.path().join("spool")).unwrap();
    let kinds: Vec<&str> = stored.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(kinds, ["user_request", "tool_call"]);
    assert!(
        stored
            .iter()
            .all(|r| r.request_id.as_deref() == Some("req-1"))
    );

    // A new run continues the numbering from the spool.
    let dispatcher = config.start().await.unwrap();
    assert_eq!(dispatcher.next_seq().await, stored[1].seq + 1);
    dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn the_types_errors_name_file_line_and_key_and_an_unknown_type_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry().unwrap();
    let path = audit_toml(
        dir.path(),
        "[[sinks]]\ntype = \"spool\"\ndir = \"s\"\nper_file = 0\n",
    );
    let e = Config::load_with(&registry, &path).unwrap_err().to_string();
    assert!(
        e.ends_with(":4:1: key `sinks[0].per_file`: must be 1 to 100000, got 0"),
        "{e}"
    );
    assert!(e.starts_with(path.to_str().unwrap()), "{e}");
    let path = audit_toml(
        dir.path(),
        "[[sinks]]\ntype = \"spool\"\ndir = \"s\"\nperfile = 3\n",
    );
    let e = Config::load_with(&registry, &path).unwrap_err().to_string();
    assert!(e.contains(":4:1: ") && e.contains("perfile"), "{e}");
    let path = audit_toml(dir.path(), "[[sinks]]\ntype = \"spoool\"\n");
    let e = Config::load_with(&registry, &path).unwrap_err().to_string();
    assert!(
        e.contains(":2:1: key `sinks[0].type`: unknown sink type `spoool`"),
        "{e}"
    );
    let listed = e.split("(registered: ").nth(1).unwrap_or_default();
    let listed = listed.trim_end_matches(')');
    assert!(listed.split(", ").any(|t| t == "spool"), "{e}");
}
