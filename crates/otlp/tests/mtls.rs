//! Mutual TLS: the OTLP sink against a real gRPC receiver (tonic, rustls)
//! that requires a client certificate signed by its client CA. The
//! certificates are made at test time with openssl.

mod support;

use std::sync::Arc;
use std::time::Duration;

use agent_audit_core::{AckLevel, Auditor, Dispatcher, EventType, Receipt, SinkOptions};
use agent_audit_otlp::{OtlpConfig, OtlpSink, Protocol, RetryConfig, ServiceInfo, TlsConfig};
use serde_json::json;
use support::certs::{make_ca_and_server_cert, make_client_cert};
use support::collector::{Kind, State, TestCollector};

fn config(endpoint: &str, tls: TlsConfig) -> OtlpConfig {
    OtlpConfig {
        endpoint: Some(endpoint.to_string()),
        protocol: Some(Protocol::Grpc),
        tls: Some(tls),
        retry: Some(RetryConfig {
            initial_backoff_ms: 20,
            max_backoff_ms: 100,
            max_elapsed_ms: 300,
        }),
        ..Default::default()
    }
}

/// One record through a non-required OTLP sink, waiting for Exported.
fn send(config: &OtlpConfig, vars: &[(&str, &str)]) -> Receipt {
    let env = |k: &str| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let settings = config
        .resolve_with_env(ServiceInfo::new("mtls-test"), env)
        .expect("settings");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = Dispatcher::builder()
            .async_sink(
                SinkOptions::new("collector").required(false),
                OtlpSink::new(settings).expect("sink"),
            )
            .start()
            .await
            .expect("start");
        let r = Auditor::new(d.clone())
            .for_request(Some("r"))
            .emit_wait(
                EventType::ToolCall,
                &json!({"tool": "t"}),
                AckLevel::Exported,
            )
            .await
            .expect("emit");
        d.shutdown(Duration::from_secs(5)).await;
        r
    })
}

#[test]
fn a_collector_requiring_a_client_certificate_takes_records_with_it_and_refuses_them_without() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, mut tls) = make_ca_and_server_cert(dir.path());
    let (cert, key) = make_client_cert(dir.path());
    tls.client_ca = Some(std::fs::read(&ca).unwrap());
    let server = TestCollector::start_on(Kind::Grpc, 0, Arc::new(State::default()), Some(tls));
    let endpoint = format!("https://127.0.0.1:{}", server.addr.port());

    // From the table.
    let with_cert = TlsConfig {
        ca_file: Some(ca.clone()),
        client_cert_file: Some(cert.clone()),
        client_key_file: Some(key.clone()),
    };
    let r = send(&config(&endpoint, with_cert.clone()), &[]);
    assert!(r.failed.is_empty(), "{r:?}");
    assert_eq!(server.state.seen().len(), 1);
    // The HTTP client takes the same files.
    let http = OtlpConfig {
        protocol: Some(Protocol::HttpProtobuf),
        ..config(&endpoint, with_cert)
    };
    OtlpSink::from_config(&http, ServiceInfo::new("mtls-test"))
        .expect("the HTTP client takes the client certificate and key");

    // From the standard variables, the logs-specific key beside the
    // generic certificate: merged one by one.
    let ca_only = TlsConfig {
        ca_file: Some(ca.clone()),
        ..Default::default()
    };
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let r = send(
        &config(&endpoint, ca_only.clone()),
        &[
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &cert_s),
            ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", &key_s),
        ],
    );
    assert!(r.failed.is_empty(), "{r:?}");
    assert_eq!(server.state.seen().len(), 2);

    // Without a client certificate the receiver refuses the connection,
    // and the failure says so.
    let r = send(&config(&endpoint, ca_only), &[]);
    assert_eq!(r.failed.len(), 1, "{r:?}");
    let e = r.failed[0].error.to_string();
    assert!(e.contains(&endpoint), "{e}");
    assert!(
        e.to_lowercase().contains("certificate"),
        "the error should name the missing client certificate: {e}"
    );
    assert_eq!(
        server.state.seen().len(),
        2,
        "nothing got through without it"
    );
}
