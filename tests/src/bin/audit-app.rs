//! Child process of the secret scan (`tests/tests/guarantees_secrets.rs`):
//! a user's application as the README shows it. It loads `audit.toml`
//! through the facade, builds the configured model (whose API key comes
//! from the variable named by `api_key_env`), runs the tutorial's agents
//! for the prompt and shuts down; what the stdout sink prints is on stdout,
//! the answer and the delivery report on stderr.
//!
//! ```text
//! audit-app --config FILE PROMPT
//! ```
//!
//! Exit code 0 when the agent answered, 1 when it stopped with an error
//! (a 401 from the model, say), 3 on a setup error.

use std::time::Duration;

use agent_audit::Auditor;
use agent_audit::agents;
use agent_audit::config::Config;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, prompt) = match args.as_slice() {
        [flag, config, prompt] if flag == "--config" => (config.clone(), prompt.clone()),
        _ => {
            eprintln!("usage: audit-app --config FILE PROMPT");
            std::process::exit(3);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| setup_failed(&e.to_string()));
    let code = rt.block_on(async move {
        let config = Config::load(std::path::Path::new(&config))
            .unwrap_or_else(|e| setup_failed(&e.to_string()));
        let model = config
            .model()
            .unwrap_or_else(|e| setup_failed(&e.to_string()));
        let dispatcher = config
            .start()
            .await
            .unwrap_or_else(|e| setup_failed(&e.to_string()));
        let auditor = Auditor::new(dispatcher.clone()).for_request(Some("secret-scan"));
        let outcome = agents::tutorial::run(&auditor, model, &prompt).await;
        let report = dispatcher.shutdown(Duration::from_secs(10)).await;
        eprint!("DELIVERY\n{report}");
        match outcome {
            Ok(answer) => {
                eprintln!("ANSWER {answer}");
                0
            }
            Err(e) => {
                eprintln!("AGENT ERROR {e}");
                1
            }
        }
    });
    std::process::exit(code);
}

fn setup_failed(msg: &str) -> ! {
    eprintln!("audit-app: {msg}");
    std::process::exit(3);
}
