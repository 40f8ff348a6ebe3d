//! A TCP forwarder on a loopback port in front of a running collector,
//! which a test can cut and bring back on the same port.
//!
//! Why not stop the collector itself: rotel answers a request before its
//! processor runs, and on SIGTERM it can drop a request it already
//! answered (seen twice under load: exactly one 1,000-record request
//! acknowledged and never written). That is the collector's promise, not
//! the sink's. Cutting the path instead gives the sink exactly what a
//! collector restart looks like from its side (connections reset mid
//! request, then refused, then accepted again on the same port) while the
//! collector behind it keeps everything it acknowledged.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The forwarder: `port` is what the sink connects to, `target` the
/// collector's port.
pub struct Outage {
    pub port: u16,
    target: u16,
    running: Option<Running>,
}

struct Running {
    stop: Arc<AtomicBool>,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Outage {
    /// Starts forwarding a free loopback port to `target`.
    pub fn start(target: u16) -> Outage {
        let mut o = Outage {
            port: super::free_port(),
            target,
            running: None,
        };
        o.resume();
        o
    }

    /// Accepts again on the same port.
    pub fn resume(&mut self) {
        assert!(self.running.is_none(), "forwarder already running");
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{}: {e}", self.port));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (stop, conns, target) = (stop.clone(), conns.clone(), self.target);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => forward(client, target, &conns),
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        self.running = Some(Running {
            stop,
            accept,
            conns,
        });
    }

    /// Closes the port and resets every open connection, mid request or
    /// not.
    pub fn cut(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop.store(true, Ordering::SeqCst);
            let _ = r.accept.join();
            for c in r.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Pipes `client` to a new connection to `target` both ways; the streams
/// are kept so that [`Outage::cut`] can reset them.
fn forward(client: TcpStream, target: u16, conns: &Mutex<Vec<TcpStream>>) {
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(c2), Ok(u2), Ok(ck), Ok(uk)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    conns.lock().unwrap().extend([ck, uk]);
    std::thread::spawn(move || pipe(client, u2));
    std::thread::spawn(move || pipe(upstream, c2));
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
