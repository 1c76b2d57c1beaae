//! HTTP/1.1 over rustls, as small as DPS needs: one keep-alive connection per
//! client, requests with deadlines, capped responses, optional CONNECT proxy.
//!
//! Files: `mod.rs` the connection (connect, proxy tunnel, one exchange), `http.rs` the pure
//! response reader, `net.rs` DNS/connect and cancel, `proxy.rs` proxy URLs and endpoints,
//! `tls.rs` the rustls configuration, trust and TLS error classes.
//!
//! Why an own HTTP layer instead of ureq 3 (the first plan, DEPENDENCIES.md): ureq panics on
//! a key that does not match its certificate and, with `rustls-no-provider`, on missing
//! roots; it hides TLS error classes behind I/O errors (DPS_ERR_TLS_* need them); cancel by
//! socket shutdown needs its connector API, which lives in its `unversioned` module outside
//! semver; and rustls' default `writev` raises SIGPIPE in a C host, which `Sock` avoids. Size
//! measured (2026-12, `nm --size-sort` over the stripped C example): this layer is about 30 KB
//! plus 3 KB of httparse.

mod http;
mod net;
mod proxy;
pub mod tls;

pub use http::*;
pub(crate) use net::*;
pub use proxy::*;
pub(crate) use tls::tls_error;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted. DPS caps messages at 96 KB (PROTOCOL.md 6).
pub const MAX_BODY: usize = 128 * 1024;

/// Connection counters, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections opened.
    pub connections: u64,
    /// TLS handshakes completed.
    pub handshakes: u64,
    /// Requests sent.
    pub requests: u64,
}

type Tls = StreamOwned<ClientConnection, Sock>;

/// One keep-alive HTTPS connection to one endpoint, opened on demand.
pub struct Transport {
    tls: Arc<ClientConfig>,
    host: String,
    port: u16,
    proxy: Option<Proxy>,
    user_agent: String,
    conn: Option<Tls>,
    cancel: Arc<CancelToken>,
    stats: Stats,
}

/// A request; `authorization` is a secret and is never logged.
pub struct Request<'a> {
    /// `GET`, `PUT` or `POST`.
    pub method: &'static str,
    /// Path and query.
    pub path: &'a str,
    /// `Authorization` header value, if any.
    pub authorization: Option<&'a str>,
    /// JSON body, if any (sent with `Content-Type: application/json; charset=utf-8`).
    pub body: Option<&'a [u8]>,
}

impl Transport {
    /// A transport to `host:port`; nothing is opened until the first request.
    pub fn new(
        tls: Arc<ClientConfig>,
        host: String,
        port: u16,
        proxy: Option<Proxy>,
        user_agent: String,
        cancel: Arc<CancelToken>,
    ) -> Transport {
        Transport {
            tls,
            host,
            port,
            proxy,
            user_agent,
            conn: None,
            cancel,
            stats: Stats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Drops the connection (the next request opens a new one).
    pub fn close(&mut self) {
        self.conn = None;
        self.cancel.set_socket(None);
    }

    /// Sends one request and reads the whole response, all before `until`.
    ///
    /// A kept-alive connection is first checked without blocking: one the server closed
    /// (or wrote to) while it sat idle is replaced before anything is sent, which is the
    /// only case where a new connection is opened without a pause. A request that was sent
    /// and then met a closed connection is not resent here: it fails as retriable, so the
    /// caller's back-off applies (issue 14 item 3: a server that closes every connection
    /// without answering is not sent one request after another).
    pub fn send(&mut self, req: &Request<'_>, until: Instant) -> Result<Response> {
        if let Some(tls) = self.conn.as_mut() {
            if !idle_connection_usable(tls) {
                log::debug!(
                    "kept-alive connection was closed by the server while idle; reconnecting"
                );
                self.close();
            }
        }
        if self.conn.is_none() {
            self.connect(until)?;
        }
        let result = self.exchange(req, until).map_err(|e| e.into_error());
        match &result {
            Ok((_, true)) => {}
            _ => self.close(),
        }
        result.map(|(r, _)| r)
    }

    fn connect(&mut self, until: Instant) -> Result<()> {
        let (host, port) = match &self.proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (self.host.as_str(), self.port),
        };
        let mut sock = open_tcp(host, port, until, &self.cancel)?;
        self.stats.connections += 1;
        let _ = sock.set_nodelay(true);
        if let Ok(clone) = sock.try_clone() {
            self.cancel.set_socket(Some(clone));
        }
        if self.cancel.is_cancelled() {
            return Err(cancelled());
        }
        if self.proxy.is_some() {
            self.tunnel(&mut sock, until)?;
        }
        let name = ServerName::try_from(self.host.clone()).map_err(|_| {
            Error::new(
                ErrorKind::InvalidEndpoint,
                format!("{:?} is not a valid TLS server name", self.host),
            )
        })?;
        let conn = ClientConnection::new(self.tls.clone(), name)
            .map_err(|e| Error::new(ErrorKind::Tls, format!("TLS setup: {e}")))?;
        let mut tls = StreamOwned::new(conn, Sock(sock));
        while tls.conn.is_handshaking() {
            set_timeouts(&tls.sock.0, until)?;
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return Err(self.io_error(e, "during the TLS handshake"));
            }
        }
        self.stats.handshakes += 1;
        log::debug!(
            "TLS connected to {}:{} ({:?}, {:?})",
            self.host,
            self.port,
            tls.conn.protocol_version(),
            tls.conn.negotiated_cipher_suite().map(|s| s.suite())
        );
        self.conn = Some(tls);
        Ok(())
    }

    fn tunnel(&mut self, sock: &mut TcpStream, until: Instant) -> Result<()> {
        let proxy_err = |m: String| Error::new(ErrorKind::Proxy, m).retriable(true);
        let mut req = Zeroizing::new(format!(
            "CONNECT {h}:{p} HTTP/1.1\r\nHost: {h}:{p}\r\nUser-Agent: {ua}\r\n",
            h = self.host,
            p = self.port,
            ua = self.user_agent
        ));
        if let Some(a) = self.proxy.as_ref().and_then(|p| p.authorization.as_ref()) {
            req.push_str("Proxy-Authorization: ");
            req.push_str(a);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        set_timeouts(sock, until)?;
        sock.write_all(req.as_bytes())
            .map_err(|e| self.io_error(e, "sending CONNECT to the proxy"))?;
        // Read the proxy's answer byte by byte so that no TLS byte is consumed.
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > MAX_HEAD {
                return Err(proxy_err("proxy response head too large".into()));
            }
            set_timeouts(sock, until)?;
            match sock.read(&mut byte) {
                Ok(0) => {
                    return Err(proxy_err(
                        "proxy closed the connection during CONNECT".into(),
                    ));
                }
                Ok(_) => head.push(byte[0]),
                Err(e) => return Err(self.io_error(e, "reading the proxy's CONNECT answer")),
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&head) {
            Ok(httparse::Status::Complete(_)) if resp.code == Some(200) => Ok(()),
            Ok(httparse::Status::Complete(_)) => {
                let code = resp.code.unwrap_or(0);
                let mut e = Error::new(
                    ErrorKind::Proxy,
                    format!(
                        "proxy refused CONNECT with {code} {}",
                        resp.reason.unwrap_or("")
                    ),
                );
                e.http_status = Some(code);
                Err(e)
            }
            _ => Err(proxy_err("proxy sent a malformed CONNECT answer".into())),
        }
    }

    /// Writes the request and reads the response. `Ok((resp, keep_alive))`.
    fn exchange(
        &mut self,
        req: &Request<'_>,
        until: Instant,
    ) -> Result<(Response, bool), ExchangeError> {
        let mut head = Zeroizing::new(String::with_capacity(512));
        use std::fmt::Write as _;
        let _ = write!(
            head,
            "{} {} HTTP/1.1\r\nHost: {}",
            req.method, req.path, self.host
        );
        if self.port != 443 {
            let _ = write!(head, ":{}", self.port);
        }
        let _ = write!(
            head,
            "\r\nUser-Agent: {}\r\nAccept: application/json\r\nConnection: keep-alive\r\n",
            self.user_agent
        );
        if let Some(a) = req.authorization {
            head.push_str("Authorization: ");
            head.push_str(a);
            head.push_str("\r\n");
        }
        if let Some(b) = req.body {
            let _ = write!(
                head,
                "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
                b.len()
            );
        }
        head.push_str("\r\n");
        let mut wire = Zeroizing::new(Vec::with_capacity(
            head.len() + req.body.map_or(0, <[u8]>::len),
        ));
        wire.extend_from_slice(head.as_bytes());
        wire.extend_from_slice(req.body.unwrap_or_default());
        self.stats.requests += 1;

        let Some(tls) = self.conn.as_mut() else {
            return Err(ExchangeError::Fatal(Error::new(
                ErrorKind::Internal,
                "no connection",
            )));
        };
        set_timeouts(&tls.sock.0, until).map_err(ExchangeError::Fatal)?;
        if let Err(e) = tls.write_all(&wire).and_then(|_| tls.flush()) {
            return Err(if is_closed(&e) {
                Stale
            } else {
                ExchangeError::Fatal(self.io_error(e, "sending the request"))
            });
        }
        drop(wire);
        let mut reader = BodyReader {
            buf: Vec::with_capacity(2048),
            pos: 0,
        };
        self.read_response(&mut reader, until)
    }

    fn read_response(
        &mut self,
        r: &mut BodyReader,
        until: Instant,
    ) -> Result<(Response, bool), ExchangeError> {
        read_response(r, &mut |buf: &mut Vec<u8>| self.fill(buf, until))
    }

    /// Reads more bytes into `buf`; 0 means a clean end of stream.
    fn fill(&mut self, buf: &mut Vec<u8>, until: Instant) -> Result<usize, ExchangeError> {
        let Some(tls) = self.conn.as_mut() else {
            return Err(ExchangeError::Fatal(Error::new(
                ErrorKind::Internal,
                "no connection",
            )));
        };
        set_timeouts(&tls.sock.0, until).map_err(ExchangeError::Fatal)?;
        let mut chunk = [0u8; 4096];
        match tls.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) if buf.is_empty() && is_closed(&e) => Err(Stale),
            Err(e) => Err(ExchangeError::Fatal(
                self.io_error(e, "reading the response"),
            )),
        }
    }

    /// Maps an I/O error (which may carry a rustls error) to our error kinds.
    fn io_error(&self, e: io::Error, during: &str) -> Error {
        if self.cancel.is_cancelled() {
            return cancelled();
        }
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return tls_error(tls, &self.host);
        }
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timeout_error(),
            _ if is_closed(&e) || e.kind() == io::ErrorKind::UnexpectedEof => {
                lost(&format!("connection lost {during}: {e}"))
            }
            _ => Error::new(
                ErrorKind::ConnectionLost,
                format!("I/O error {during}: {e}"),
            )
            .retriable(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://user:p%40ss@proxy.local:3128").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.local", 3128));
        // "user:p@ss"
        assert_eq!(
            p.authorization.as_deref().map(String::as_str),
            Some("Basic dXNlcjpwQHNz")
        );
        assert!(!format!("{p:?}").contains("dXNlcjpwQHNz"));
        let p = Proxy::parse("http://127.0.0.1/").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.authorization.is_none()),
            ("127.0.0.1", 8080, true)
        );
        for bad in [
            "https://x:1",
            "http://",
            "http://x:notaport",
            "http://x/path",
            "http://u:%zz@x",
            "http://x:0",
        ] {
            assert_eq!(
                Proxy::parse(bad).unwrap_err().kind,
                ErrorKind::InvalidProxy,
                "{bad}"
            );
        }
    }

    #[test]
    fn host_ports() {
        assert_eq!(split_host_port("a.b:8443", 443), Some(("a.b".into(), 8443)));
        assert_eq!(split_host_port("a.b", 443), Some(("a.b".into(), 443)));
        assert_eq!(split_host_port("[::1]:5", 443), Some(("::1".into(), 5)));
        assert_eq!(split_host_port("", 443), None);
        assert_eq!(split_host_port("a b", 443), None);
        assert_eq!(split_host_port("a:99999", 443), None);
        assert_eq!(split_host_port("[::1]", 443), Some(("::1".into(), 443)));
        assert_eq!(
            split_host_port("1.2.3.4:443", 1),
            Some(("1.2.3.4".into(), 443))
        );
        assert_eq!(
            split_host_port("my_host.local", 1),
            Some(("my_host.local".into(), 1))
        );
        for bad in [
            "localhost:443:1",
            "::1",
            "[zz]:1",
            "[::1",
            "[::1]x",
            "localhost:+443",
            "localhost:",
            "localhost:0",
            "localhost:-1",
            "a..b",
            ".a",
            "a.",
            "-a.com",
            "a-.com",
            "999.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "h\u{e9}te",
            "a/b",
        ] {
            assert_eq!(split_host_port(bad, 443), None, "{bad}");
        }
    }

    #[test]
    fn cancel_wakes_waits() {
        let t = Arc::new(CancelToken::default());
        assert!(!t.wait(Duration::from_millis(1)));
        let t2 = t.clone();
        let h = std::thread::spawn(move || t2.wait(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        t.cancel();
        assert!(h.join().unwrap());
        t.reset();
        assert!(!t.is_cancelled());
    }
}
