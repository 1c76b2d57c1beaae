//! Test-only network helpers for the resilience tests: a small HTTP CONNECT
//! proxy on loopback (auth check, tunnel counter, optional target override
//! and delay) and a TLS server that requires a client certificate from a CA
//! the device does not use (a TLS-level client certificate refusal).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The request line and `Proxy-Authorization` of each CONNECT seen.
pub type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// How the proxy behaves.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    /// Expected `Proxy-Authorization` value; without it (or with another
    /// value) the proxy answers 407.
    pub require_auth: Option<String>,
    /// Connect every tunnel here instead of the requested `host:port` (a
    /// DNS override: lets a test reach the emulator under another name).
    pub target: Option<SocketAddr>,
    /// Wait this long before answering the CONNECT (a slow network).
    pub delay: Duration,
}

/// A CONNECT proxy on 127.0.0.1 with counters. Threads live until the test
/// process ends (they only block on sockets).
pub struct TestProxy {
    pub port: u16,
    /// CONNECT requests received.
    pub connects: Arc<AtomicUsize>,
    /// Tunnels established (200 answered).
    pub tunnels: Arc<AtomicUsize>,
    /// 407 answers.
    pub refused: Arc<AtomicUsize>,
    /// The request line and `Proxy-Authorization` of every CONNECT.
    pub seen: Seen,
}

impl TestProxy {
    pub fn start(opts: ProxyOptions) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let port = listener.local_addr().unwrap().port();
        let p = TestProxy {
            port,
            connects: Arc::default(),
            tunnels: Arc::default(),
            refused: Arc::default(),
            seen: Arc::default(),
        };
        let (connects, tunnels, refused, seen) = (
            p.connects.clone(),
            p.tunnels.clone(),
            p.refused.clone(),
            p.seen.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let opts = opts.clone();
                let (connects, tunnels, refused, seen) = (
                    connects.clone(),
                    tunnels.clone(),
                    refused.clone(),
                    seen.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(conn, &opts, &connects, &tunnels, &refused, &seen);
                });
            }
        });
        p
    }

    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("http://{u}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }
}

fn serve(
    mut c: TcpStream,
    opts: &ProxyOptions,
    connects: &AtomicUsize,
    tunnels: &AtomicUsize,
    refused: &AtomicUsize,
    seen: &Mutex<Vec<(String, Option<String>)>>,
) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || c.read(&mut b)? == 0 {
            return Ok(());
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_owned();
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_owned());
    connects.fetch_add(1, Ordering::SeqCst);
    seen.lock()
        .unwrap()
        .push((request_line.clone(), auth.clone()));
    let mut parts = request_line.split(' ');
    let (Some("CONNECT"), Some(authority)) = (parts.next(), parts.next()) else {
        c.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    };
    if opts.require_auth.is_some() && opts.require_auth != auth {
        refused.fetch_add(1, Ordering::SeqCst);
        c.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
              Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
        )?;
        return Ok(());
    }
    std::thread::sleep(opts.delay);
    let upstream = match opts.target {
        Some(t) => TcpStream::connect(t),
        None => TcpStream::connect(authority),
    };
    let Ok(up) = upstream else {
        c.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    };
    c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    tunnels.fetch_add(1, Ordering::SeqCst);
    c.set_read_timeout(None)?;
    let (mut c2, mut up2) = (c.try_clone()?, up.try_clone()?);
    let mut up1 = up;
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up2, &mut c2);
        let _ = c2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut c, &mut up1);
    let _ = up1.shutdown(Shutdown::Write);
    let _ = t.join();
    Ok(())
}

/// A TLS server on 127.0.0.1 that presents `server_chain_pem` and requires a
/// client certificate issued by `client_ca_pem`; any other client
/// certificate fails the handshake with an alert. Returns its port. Each
/// refused connection is drained briefly before it is closed, so that the
/// client reads the alert rather than a reset.
pub fn client_auth_tls_server(
    server_chain_pem: &str,
    server_key_pem: &str,
    client_ca_pem: &str,
) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(server_chain_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(server_key_pem.as_bytes()).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut sock) = conn else { continue };
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                let mut tls = rustls::ServerConnection::new(cfg).unwrap();
                loop {
                    match tls.complete_io(&mut sock) {
                        Ok((0, 0)) => break,
                        Ok(_) if !tls.is_handshaking() => {
                            // Accepted (not expected in these tests): answer 500.
                            let mut s = rustls::Stream::new(&mut tls, &mut sock);
                            let _ = s
                                .write_all(b"HTTP/1.1 500 Unexpected\r\nContent-Length: 0\r\n\r\n");
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => {
                            // rustls queued the alert; send it, then drain.
                            let _ = tls.write_tls(&mut sock);
                            let _ = sock.shutdown(Shutdown::Write);
                            let mut sink = [0u8; 4096];
                            let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
                            while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
                            break;
                        }
                    }
                }
            });
        }
    });
    port
}

/// What a [`raw_tls_server`] answers to each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawReply {
    /// These bytes, then close.
    Bytes(&'static [u8]),
    /// This prefix, then `filler` every `interval_ms` forever (until the
    /// client goes away).
    Endless {
        prefix: &'static [u8],
        filler: &'static [u8],
        interval_ms: u64,
    },
}

/// A TLS server on 127.0.0.1 (certificate `chain_pem`/`key_pem`) that is not
/// DPS: it reads the request head and answers `reply`, byte for byte.
/// Returns its port.
pub fn raw_tls_server(chain_pem: &str, key_pem: &str, reply: RawReply) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<_> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut sock) = conn else { continue };
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
                let _ = sock.set_write_timeout(Some(Duration::from_secs(30)));
                let mut tls = rustls::ServerConnection::new(cfg).unwrap();
                let mut s = rustls::Stream::new(&mut tls, &mut sock);
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                match reply {
                    RawReply::Bytes(bytes) => {
                        let _ = s.write_all(bytes);
                        let _ = s.flush();
                        s.conn.send_close_notify();
                        let _ = s.flush();
                    }
                    RawReply::Endless {
                        prefix,
                        filler,
                        interval_ms,
                    } => {
                        if s.write_all(prefix).is_err() {
                            return;
                        }
                        while s.write_all(filler).and_then(|_| s.flush()).is_ok() {
                            std::thread::sleep(Duration::from_millis(interval_ms));
                        }
                    }
                }
            });
        }
    });
    port
}

/// A port on 127.0.0.1 where a TCP connect never completes: a listener that
/// never accepts, its backlog filled, so the kernel drops further SYNs. Keep
/// the returned value alive for as long as the port is used.
pub struct SynBlackHole {
    pub port: u16,
    _listener: TcpListener,
    _fill: Vec<TcpStream>,
}

pub fn syn_black_hole() -> SynBlackHole {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fill = Vec::new();
    for _ in 0..5000 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fill.push(s),
            Err(_) => break,
        }
    }
    SynBlackHole {
        port: addr.port(),
        _listener: listener,
        _fill: fill,
    }
}
