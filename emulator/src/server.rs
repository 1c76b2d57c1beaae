//! Accept loop and per-connection threads.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};

use crate::Counters;
use crate::dps::{Delivery, Service};
use crate::http::{self, ReadError, Response};
use crate::tls::{ConnError, TlsStream};

const LOG_KEEP: usize = 2000;

pub(crate) struct Shared {
    pub service: Service,
    pub tls: Arc<ServerConfig>,
    pub stopping: AtomicBool,
    stop_lock: Mutex<bool>,
    stop_cv: Condvar,
    counters: Mutex<Counters>,
    tls_failures: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    active: AtomicUsize,
    next_id: AtomicU64,
    log: Mutex<VecDeque<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Shared {
    pub fn new(service: Service, tls: Arc<ServerConfig>) -> Shared {
        Shared {
            service,
            tls,
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(false),
            stop_cv: Condvar::new(),
            counters: Mutex::new(Counters::default()),
            tls_failures: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            log: Mutex::new(VecDeque::new()),
        }
    }

    pub fn counters(&self) -> Counters {
        let mut c = lock(&self.counters).clone();
        c.tls_failures = self.tls_failures.load(Ordering::Relaxed);
        c
    }

    pub fn log_lines(&self) -> Vec<String> {
        lock(&self.log).iter().cloned().collect()
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut lock(&self.counters));
    }

    fn count_route(&self, key: String) {
        self.count(|c| {
            c.requests += 1;
            *c.by_route_status.entry(key).or_insert(0) += 1;
        });
    }

    pub fn log(&self, line: String) {
        let to_stderr = self.service.config().log_requests
            || std::env::var_os("DPS_EMULATOR_LOG").is_some_and(|v| v != "0");
        if to_stderr {
            eprintln!("{line}");
        }
        let mut l = lock(&self.log);
        if l.len() >= LOG_KEEP {
            l.pop_front();
        }
        l.push_back(line);
    }

    /// Sleeps up to `d`; returns true when the emulator is stopping.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        let mut g = lock(&self.stop_lock);
        loop {
            if *g {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            g = match self.stop_cv.wait_timeout(g, end - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Stops: wakes sleepers, shuts every connection, joins the threads.
    pub fn shutdown(self: &Arc<Self>, addr: SocketAddr, accept: Option<JoinHandle<()>>) {
        self.stopping.store(true, Ordering::SeqCst);
        *lock(&self.stop_lock) = true;
        self.stop_cv.notify_all();
        // Wake the accept loop with a connection; never wait for it forever (if the wake-up
        // connection cannot be made, e.g. out of file descriptors, the thread is detached).
        if let Some(a) = accept {
            let until = Instant::now() + Duration::from_secs(2);
            while !a.is_finished() && Instant::now() < until {
                let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
                let step = Instant::now() + Duration::from_millis(100);
                while !a.is_finished() && Instant::now() < step {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if a.is_finished() {
                let _ = a.join();
            }
        }
        for s in lock(&self.conns).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

pub(crate) fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let sock = match stream {
            Ok(s) => s,
            Err(_) => {
                // e.g. EMFILE: back off a little instead of spinning
                shared.sleep(Duration::from_millis(20));
                continue;
            }
        };
        shared.count(|c| c.tcp_connections += 1);
        let max = shared.service.config().limits.max_connections;
        if shared.active.load(Ordering::SeqCst) >= max {
            shared.log(format!(
                "{} connection refused: {max} connections already open",
                crate::util::now_timestamp()
            ));
            let _ = sock.shutdown(Shutdown::Both);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(c) = sock.try_clone() {
            lock(&shared.conns).insert(id, c);
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("dps-emu-conn-{id}"))
            .spawn(move || {
                // A bug must not leak the connection slot nor take the emulator down.
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(&sh, sock, id)));
                lock(&sh.conns).remove(&id);
                sh.active.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(h) => {
                let mut t = lock(&shared.threads);
                t.retain(|h| !h.is_finished());
                t.push(h);
            }
            Err(_) => {
                lock(&shared.conns).remove(&id);
                shared.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

fn serve(shared: &Shared, sock: TcpStream, id: u64) {
    let cfg = shared.service.config();
    let lim = &cfg.limits;
    let _ = sock.set_nodelay(true);
    let _ = sock.set_write_timeout(Some(Duration::from_millis(
        lim.request_timeout_ms.max(1000),
    )));
    let peer = sock
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let conn = match ServerConnection::new(shared.tls.clone()) {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut s = TlsStream::new(sock, conn);
    let hs_deadline = Instant::now() + Duration::from_millis(lim.request_timeout_ms);
    if let Err(e) = s.handshake(hs_deadline) {
        shared.tls_failures.fetch_add(1, Ordering::Relaxed);
        shared.log(format!(
            "{} #{id} {peer} TLS handshake failed: {e}",
            crate::util::now_timestamp()
        ));
        let _ = s.sock.shutdown(Shutdown::Both);
        return;
    }
    shared.count(|c| c.tls_handshakes += 1);
    let chain = s.peer_chain();
    let limits = http::Limits {
        idle: Duration::from_millis(lim.idle_timeout_ms),
        request: Duration::from_millis(lim.request_timeout_ms),
        max_head: lim.max_head_bytes,
        max_body: lim.max_body_bytes,
    };
    let mut buf = Vec::new();
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let req = match http::read_request(&mut s, &mut buf, &limits) {
            Ok(r) => r,
            Err(ReadError::Idle) => break,
            Err(ReadError::Reject(status, why)) => {
                let r = reject(status, why);
                let _ = s.write_all(&r.to_bytes(true, false));
                shared.count_route(format!("other {status}"));
                shared.log(format!(
                    "{} #{id} {peer} malformed request -> {status} ({why})",
                    crate::util::now_timestamp()
                ));
                break;
            }
            Err(ReadError::Conn(e)) => {
                if !matches!(e, ConnError::Closed) {
                    shared.log(format!(
                        "{} #{id} {peer} connection dropped mid-request: {e}",
                        crate::util::now_timestamp()
                    ));
                }
                let _ = s.sock.shutdown(Shutdown::Both);
                return;
            }
        };
        let started = Instant::now();
        let h = shared.service.handle(&req, &chain);
        let close = req.wants_close();
        // Like the real service: chunked answers (HTTP/1.1 clients), unless configured otherwise.
        let chunked = cfg.chunked_responses && req.minor_version >= 1;
        if let Some(d) = h.delay
            && shared.sleep(d)
        {
            break;
        }
        let status = h.response.status;
        let key = match &h.delivery {
            Delivery::Close => format!("{} close", h.route),
            Delivery::BlackHole => format!("{} black_hole", h.route),
            _ => format!("{} {status}", h.route),
        };
        shared.count_route(key.clone());
        let mut line = format!(
            "{} #{id} {} {} auth=[{}] -> {}",
            crate::util::now_timestamp(),
            req.method,
            redact_target(&req.target),
            h.auth,
            key
        );
        if let Some(rid) = h.response.header("x-ms-request-id") {
            line.push_str(&format!(" rid={rid}"));
        }
        if !h.note.is_empty() {
            line.push_str(&format!(" ({})", h.note));
        }
        line.push_str(&format!(" {}ms", started.elapsed().as_millis()));
        if h.delivery != Delivery::BlackHole {
            shared.log(line.clone());
        }
        let mut keep = !close;
        match h.delivery {
            Delivery::Normal => {
                if s.write_all(&h.response.to_bytes(close, chunked)).is_err() {
                    keep = false;
                }
            }
            Delivery::Close => {
                let _ = s.sock.shutdown(Shutdown::Both);
                keep = false;
            }
            Delivery::Truncate => {
                let (bytes, start) = h.response.encode(true, chunked);
                let cut = start + (bytes.len() - start) / 2;
                let _ = s.write_all(&bytes[..cut.min(bytes.len())]);
                let _ = s.sock.shutdown(Shutdown::Both);
                keep = false;
            }
            Delivery::Trickle {
                chunk_bytes,
                interval_ms,
            } => {
                let bytes = h.response.to_bytes(close, chunked);
                for c in bytes.chunks(chunk_bytes.max(1)) {
                    if s.write_all(c).is_err() || shared.sleep(Duration::from_millis(interval_ms)) {
                        keep = false;
                        break;
                    }
                }
            }
            Delivery::BlackHole => {
                shared.log(line);
                let mut sink = [0u8; 4096];
                let until = Instant::now() + Duration::from_secs(600);
                while let Ok(n) = s.read_some(&mut sink, until) {
                    if n == 0 {
                        break;
                    }
                }
                let _ = s.sock.shutdown(Shutdown::Both);
                return;
            }
        }
        if !keep {
            break;
        }
    }
    s.close_notify();
    let _ = s.sock.shutdown(Shutdown::Both);
}

fn reject(status: u16, why: &str) -> Response {
    let tracking = crate::util::uuid_v4();
    let body = serde_json::json!({
        "errorCode": status as u32 * 1000 + 1,
        "trackingId": tracking,
        "message": why,
        "timestampUtc": crate::util::now_timestamp(),
    });
    Response {
        status,
        headers: vec![
            (
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("x-ms-request-id".into(), tracking),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// The request target for logs: path and api-version only (no secrets live there, but keep
/// it short and safe: control characters are escaped).
fn redact_target(t: &str) -> String {
    let t: String = t.chars().take(300).collect();
    t.escape_default().to_string()
}

/// Keys of `by_route_status` in a stable order, for the binary's periodic log.
pub fn format_counters(c: &Counters) -> String {
    let routes: BTreeMap<_, _> = c.by_route_status.iter().collect();
    let mut s = format!(
        "tcp_connections={} tls_handshakes={} tls_failures={} requests={}",
        c.tcp_connections, c.tls_handshakes, c.tls_failures, c.requests
    );
    for (k, v) in routes {
        s.push_str(&format!(" [{k}]={v}"));
    }
    s
}
