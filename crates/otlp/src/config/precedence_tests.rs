//! docs/configuration.md's precedence table, row by row: for each key, the
//! table beats `OTEL_EXPORTER_OTLP_LOGS_*`, which beats
//! `OTEL_EXPORTER_OTLP_*`, which beats the default; and a key the table
//! leaves out is taken from the environment whatever else the table sets.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::config::ClientIdentity;
use crate::config::test_support::{env, svc};

/// One key of the table and its two variables.
struct Key {
    /// Suffix of the variables (`ENDPOINT` for `OTEL_EXPORTER_OTLP_ENDPOINT`).
    var: &'static str,
    /// Writes the key in the table.
    set: fn(&mut OtlpConfig, &Path),
    /// What every row's table holds besides (the other half of the client
    /// certificate pair).
    base: fn(&mut OtlpConfig, &Path),
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
            base: |_, _| {},
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
            base: |_, _| {},
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
            base: |_, _| {},
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
            base: |_, _| {},
            logs: "gzip",
            all: "gzip",
            get: |s| format!("{:?}", s.compression),
            want: ["Gzip", "Gzip", "Gzip", "None"],
        },
        Key {
            var: "TIMEOUT",
            set: |c, _| c.timeout_ms = Some(111),
            base: |_, _| {},
            logs: "222",
            all: "333",
            get: |s| s.timeout.as_millis().to_string(),
            want: ["111", "222", "333", "10000"],
        },
        Key {
            var: "CERTIFICATE",
            set: |c, dir| {
                c.tls.get_or_insert_default().ca_file = Some(dir.join("table.pem"));
            },
            base: |_, _| {},
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
        // The client certificate and key merge one by one; the other half
        // of the pair is in the table, and alone it is refused.
        Key {
            var: "CLIENT_CERTIFICATE",
            set: |c, dir| {
                c.tls.get_or_insert_default().client_cert_file = Some(dir.join("table.crt"));
            },
            base: |c, dir| {
                c.tls.get_or_insert_default().client_key_file = Some(dir.join("base.key"));
            },
            logs: "logs.crt",
            all: "all.crt",
            get: |s| identity_line(s, |i| &i.cert_pem),
            want: ["table", "logs", "all", REFUSED],
        },
        Key {
            var: "CLIENT_KEY",
            set: |c, dir| {
                c.tls.get_or_insert_default().client_key_file = Some(dir.join("table.key"));
            },
            base: |c, dir| {
                c.tls.get_or_insert_default().client_cert_file = Some(dir.join("base.crt"));
            },
            logs: "logs.key",
            all: "all.key",
            get: |s| identity_line(s, |i| &i.key_pem),
            want: ["table", "logs", "all", REFUSED],
        },
    ]
}

/// What a row shows when the settings are refused.
const REFUSED: &str = "<refused>";

fn identity_line(s: &OtlpSettings, pem: fn(&ClientIdentity) -> &Vec<u8>) -> String {
    let pem = s.client_identity.as_ref().map(pem);
    String::from_utf8_lossy(pem.map(Vec::as_slice).unwrap_or_default())
        .lines()
        .nth(1)
        .unwrap_or("")
        .to_string()
}

fn is_file_key(var: &str) -> bool {
    matches!(var, "CERTIFICATE" | "CLIENT_CERTIFICATE" | "CLIENT_KEY")
}

/// CA, client certificate and key files whose second line says where
/// they come from.
fn ca_files(dir: &Path) {
    for name in ["table", "logs", "all", "base"] {
        let cert = format!("-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n");
        std::fs::write(dir.join(format!("{name}.pem")), &cert).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), &cert).unwrap();
        std::fs::write(
            dir.join(format!("{name}.key")),
            format!("-----BEGIN PRIVATE KEY-----\n{name}\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
    }
}

#[test]
fn each_key_takes_the_table_then_the_logs_variable_then_the_generic_one() {
    rows_for(Signal::Logs);
}

/// The facade's `[telemetry]` exporters resolve with the same rules and
/// their own variables (`OTEL_EXPORTER_OTLP_TRACES_*`, `..._METRICS_*`).
#[test]
fn each_key_takes_the_table_then_the_traces_or_metrics_variable_then_the_generic_one() {
    rows_for(Signal::Traces);
    rows_for(Signal::Metrics);
}

/// Every row of the precedence table for `signal`: the table, then the
/// signal's variable, then the generic one, then the default.
fn rows_for(signal: Signal) {
    let dir = tempfile::tempdir().unwrap();
    ca_files(dir.path());
    let path = |v: &str, key: &Key| {
        if is_file_key(key.var) {
            dir.path().join(v).display().to_string()
        } else {
            v.to_string()
        }
    };
    for key in keys() {
        let own_var = format!("{}{}", signal.prefix(), key.var);
        let all_var = format!("OTEL_EXPORTER_OTLP_{}", key.var);
        let (own, all) = (path(key.logs, &key), path(key.all, &key));
        let mut base = OtlpConfig::default();
        (key.base)(&mut base, dir.path());
        let mut table = base.clone();
        (key.set)(&mut table, dir.path());
        let rows: [(&OtlpConfig, Vec<(&str, &str)>); 4] = [
            (&table, vec![(&own_var, &own), (&all_var, &all)]),
            (&base, vec![(&own_var, &own), (&all_var, &all)]),
            (&base, vec![(&all_var, &all)]),
            (&base, vec![]),
        ];
        for (i, ((config, vars), want)) in rows.into_iter().zip(key.want).enumerate() {
            // A base URL gets the signal's own path.
            let want = if i >= 2 {
                want.replace("/v1/logs", signal.path())
            } else {
                want.to_string()
            };
            let got = match config.resolve_signal_with_env(signal, svc(), env(&vars)) {
                Ok(s) => (key.get)(&s),
                Err(e) if want == REFUSED => {
                    assert!(e.to_string().contains("without its pair"), "{e}");
                    REFUSED.to_string()
                }
                Err(e) => panic!("{signal:?} {}: {e}", key.var),
            };
            assert_eq!(got, want, "{signal:?} {} with {vars:?}", key.var);
        }
    }
}

#[test]
fn a_table_naming_the_endpoint_takes_every_other_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    ca_files(dir.path());
    for key in keys().into_iter().filter(|k| k.var != "ENDPOINT") {
        let mut table = OtlpConfig {
            endpoint: Some("http://table:4318/v1/logs".into()),
            ..Default::default()
        };
        (key.base)(&mut table, dir.path());
        let var = format!("OTEL_EXPORTER_OTLP_{}", key.var);
        let value = if is_file_key(key.var) {
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
