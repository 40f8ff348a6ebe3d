//! docs/configuration.md's precedence table, row by row: for each key, the
//! table beats `OTEL_EXPORTER_OTLP_LOGS_*`, which beats
//! `OTEL_EXPORTER_OTLP_*`, which beats the default; and a key the table
//! leaves out is taken from the environment whatever else the table sets.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::config::TlsConfig;
use crate::config::test_support::{env, svc};

/// One key of the table and its two variables.
struct Key {
    /// Suffix of the variables (`ENDPOINT` for `OTEL_EXPORTER_OTLP_ENDPOINT`).
    var: &'static str,
    /// Writes the key in the table.
    set: fn(&mut OtlpConfig, &Path),
    /// Values of the logs-specific and the generic variable.
    logs: &'static str,
    all: &'static str,
    /// The resolved setting, as text.
    get: fn(&OtlpSettings) -> String,
    /// What `get` shows from the table, the logs variable, the generic
    /// variable, and with nothing set.
    want: [&'static str; 4],
}

fn keys() -> Vec<Key> {
    vec![
        Key {
            var: "ENDPOINT",
            set: |c, _| c.endpoint = Some("http://table:4318/v1/logs".into()),
            logs: "http://logs:4318/ingest",
            all: "http://all:4318",
            get: |s| s.endpoint.clone(),
            want: [
                "http://table:4318/v1/logs",
                "http://logs:4318/ingest",
                "http://all:4318/v1/logs",
                "http://localhost:4318/v1/logs",
            ],
        },
        Key {
            var: "PROTOCOL",
            set: |c, _| c.protocol = Some(Protocol::Grpc),
            logs: "http/json",
            all: "grpc",
            get: |s| s.protocol.as_str().to_string(),
            want: ["grpc", "http/json", "grpc", "http/protobuf"],
        },
        Key {
            var: "HEADERS",
            set: |c, _| {
                c.headers = Some(BTreeMap::from([(
                    "x-from".to_string(),
                    "table".to_string(),
                )]))
            },
            logs: "x-from=logs",
            all: "x-from=all",
            get: |s| {
                s.headers
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            },
            want: ["x-from=table", "x-from=logs", "x-from=all", ""],
        },
        Key {
            var: "COMPRESSION",
            set: |c, _| c.compression = Some(Compression::Gzip),
            logs: "gzip",
            all: "gzip",
            get: |s| format!("{:?}", s.compression),
            want: ["Gzip", "Gzip", "Gzip", "None"],
        },
        Key {
            var: "TIMEOUT",
            set: |c, _| c.timeout_ms = Some(111),
            logs: "222",
            all: "333",
            get: |s| s.timeout.as_millis().to_string(),
            want: ["111", "222", "333", "10000"],
        },
        Key {
            var: "CERTIFICATE",
            set: |c, dir| {
                c.tls = Some(TlsConfig {
                    ca_file: Some(dir.join("table.pem")),
                })
            },
            logs: "logs.pem",
            all: "all.pem",
            get: |s| {
                let pem = s.ca_pem.as_deref().unwrap_or_default();
                String::from_utf8_lossy(pem)
                    .lines()
                    .nth(1)
                    .unwrap_or("")
                    .to_string()
            },
            want: ["table", "logs", "all", ""],
        },
    ]
}

/// CA files whose second line says where they come from.
fn ca_files(dir: &Path) {
    for name in ["table", "logs", "all"] {
        std::fs::write(
            dir.join(format!("{name}.pem")),
            format!("-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n"),
        )
        .unwrap();
    }
}

#[test]
fn each_key_takes_the_table_then_the_logs_variable_then_the_generic_one() {
    let dir = tempfile::tempdir().unwrap();
    ca_files(dir.path());
    let path = |v: &str, key: &Key| {
        if key.var == "CERTIFICATE" {
            dir.path().join(v).display().to_string()
        } else {
            v.to_string()
        }
    };
    for key in keys() {
        let logs_var = format!("OTEL_EXPORTER_OTLP_LOGS_{}", key.var);
        let all_var = format!("OTEL_EXPORTER_OTLP_{}", key.var);
        let (logs, all) = (path(key.logs, &key), path(key.all, &key));
        let mut table = OtlpConfig::default();
        (key.set)(&mut table, dir.path());
        let rows: [(&OtlpConfig, Vec<(&str, &str)>); 4] = [
            (&table, vec![(&logs_var, &logs), (&all_var, &all)]),
            (
                &OtlpConfig::default(),
                vec![(&logs_var, &logs), (&all_var, &all)],
            ),
            (&OtlpConfig::default(), vec![(&all_var, &all)]),
            (&OtlpConfig::default(), vec![]),
        ];
        for ((config, vars), want) in rows.into_iter().zip(key.want) {
            let s = config
                .resolve_with_env(svc(), env(&vars))
                .unwrap_or_else(|e| panic!("{}: {e}", key.var));
            assert_eq!((key.get)(&s), want, "{} with {vars:?}", key.var);
        }
    }
}

#[test]
fn a_table_naming_the_endpoint_takes_every_other_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    ca_files(dir.path());
    let table = OtlpConfig {
        endpoint: Some("http://table:4318/v1/logs".into()),
        ..Default::default()
    };
    for key in keys().into_iter().filter(|k| k.var != "ENDPOINT") {
        let var = format!("OTEL_EXPORTER_OTLP_{}", key.var);
        let value = if key.var == "CERTIFICATE" {
            dir.path().join(key.all).display().to_string()
        } else {
            key.all.to_string()
        };
        let s = table
            .resolve_with_env(svc(), env(&[(&var, &value)]))
            .unwrap_or_else(|e| panic!("{var}: {e}"));
        assert_eq!((key.get)(&s), key.want[2], "{var}");
        assert_eq!(s.endpoint, "http://table:4318/v1/logs", "{var}");
    }
}
