//! A real, throwaway PostgreSQL server (Debian's, installed by
//! `.ci/setup.d/postgres.sh`): `initdb` into a temporary directory as an
//! unprivileged user, listening on a free loopback port with its unix
//! socket in that directory, stopped when dropped. Starting fails (never
//! skips) with the reason when the server cannot start.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the
//! system user `agentaudit-pg` (created on first use, through `runuser`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The system user the server runs as when the tests run as root.
pub const PG_USER: &str = "agentaudit-pg";

/// A running PostgreSQL server of the test's own.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<String>,
    child: Option<Child>,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgServer(127.0.0.1:{})", self.port)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The newest installed PostgreSQL's `bin` directory.
fn pg_bin() -> Result<PathBuf, String> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("PostgreSQL is not installed (/usr/lib/postgresql: {e}); run .ci/setup.d/postgres.sh")
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).ok_or_else(|| {
        "no initdb under /usr/lib/postgresql/*/bin; run .ci/setup.d/postgres.sh".into()
    })
}

fn ensure_user() -> Result<(), String> {
    // useradd takes /etc/passwd's lock: tests of one binary starting
    // servers at once would fail each other's.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let exists = Command::new("id")
        .arg("-u")
        .arg(PG_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("id: {e}"))?
        .success();
    if exists {
        return Ok(());
    }
    let out = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            PG_USER,
        ])
        .output()
        .map_err(|e| format!("useradd: {e}"))?;
    // Another test may have created it meanwhile (exit 9: exists).
    if out.status.success() || out.status.code() == Some(9) {
        Ok(())
    } else {
        Err(format!(
            "cannot create the user {PG_USER} to run PostgreSQL as (it refuses root): {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl PgServer {
    /// initdb and start a server; the error says why it could not.
    pub fn start() -> Result<PgServer, String> {
        let bin = pg_bin()?;
        let run_as = if is_root() {
            ensure_user()?;
            Some(PG_USER.to_string())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("agent-audit-pg")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        if let Some(user) = &run_as {
            let out = Command::new("chown")
                .arg(user)
                .arg(dir.path())
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "chown {user} {}: {}",
                    dir.path().display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let mut server = PgServer {
            dir,
            bin,
            port: free_port()?,
            run_as,
            child: None,
        };
        let data = server.data();
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "agentaudit",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}): {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        // The port was free when picked; another process may have taken
        // it since. Pick again then.
        for _ in 0..3 {
            match server.launch() {
                Err(e) if e.contains("could not bind") || e.contains("already in use") => {
                    server.port = free_port()?;
                }
                other => return other.map(|()| server),
            }
        }
        server.launch()?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    /// Starts the server on its data directory (again, after a kill) and
    /// waits until it accepts connections.
    fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .map_err(|e| format!("server log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("server log: {e}"))?;
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=20",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                // A killed server's backends may still hold its shared
                // memory for a moment: try again rather than fail.
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                if log.contains("pre-existing shared memory block")
                    && started.elapsed() < Duration::from_secs(20)
                {
                    std::thread::sleep(Duration::from_millis(200));
                    return self.launch();
                }
                return Err(format!(
                    "postgres exited ({status}) at start; its log:\n{log}"
                ));
            }
            let ready = self
                .command("pg_isready")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "agentaudit",
                    "-q",
                ])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                return Err(format!(
                    "postgres did not accept connections within 30 s; its log:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the data, the log and the unix socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A URL for the superuser `agentaudit` (trust auth: no password) on
    /// database `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://agentaudit@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's pid, from its `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILLs the postmaster and every backend it had: the whole server
    /// gone at once, as in a crash.
    pub fn kill(&mut self) {
        if let Some(pid) = self.postmaster_pid() {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            let mut pids = vec![pid.to_string()];
            pids.extend(children.split_whitespace().map(str::to_string));
            let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        }
        // runuser (or the postmaster itself) reaps and exits; killing it
        // first would leave the postmaster a zombie whose pid still looks
        // alive to the next start.
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again after [`PgServer::kill`] (crash recovery
    /// runs), on the same port and data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.launch()
    }

    /// The server's log so far, for a failure message.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Some(pid) = self.postmaster_pid()
        {
            // Immediate shutdown: the data is thrown away with the
            // directory.
            let _ = Command::new("kill")
                .arg("-QUIT")
                .arg(pid.to_string())
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
