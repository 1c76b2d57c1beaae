//! HTTP/1.1 over rustls, as small as DPS needs: one keep-alive connection per
//! client, requests with deadlines, capped responses, optional CONNECT proxy.
//!
//! We do not use an HTTP client crate: ureq 3 panics on some misconfigurations,
//! hides TLS error detail behind I/O errors, and costs about 0.5 MB of binary.
//! DPS needs three request shapes and `Content-Length`/chunked responses.

pub mod tls;

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

/// An HTTP proxy reached with CONNECT.
#[derive(Clone)]
pub struct Proxy {
    host: String,
    port: u16,
    /// `Basic <base64(user:pass)>`; a secret.
    authorization: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Proxy {
    /// Parses `http://[user:pass@]host[:port]` (port defaults to 8080).
    /// User and password may be percent-encoded.
    pub fn parse(url: &str) -> Result<Proxy> {
        let bad = |why: &str| Error::new(ErrorKind::InvalidProxy, format!("proxy URL: {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("must start with http://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') {
            return Err(bad("must not have a path"));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) =
            split_host_port(hostport, 8080).ok_or_else(|| bad("host or port is malformed"))?;
        let authorization = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let creds = Zeroizing::new(format!(
                    "{}:{}",
                    percent_decode(user)
                        .ok_or_else(|| bad("user is badly percent-encoded"))?
                        .as_str(),
                    percent_decode(pass)
                        .ok_or_else(|| bad("password is badly percent-encoded"))?
                        .as_str()
                ));
                let b64 = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(creds.as_bytes()),
                );
                Some(Zeroizing::new(format!("Basic {}", b64.as_str())))
            }
        };
        Ok(Proxy {
            host,
            port,
            authorization,
        })
    }
}

fn percent_decode(s: &str) -> Option<Zeroizing<String>> {
    let b = s.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(b.len()));
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out.to_vec()).ok().map(Zeroizing::new)
}

/// Splits `host[:port]`; the host must be a non-empty DNS name or IPv4 address
/// (or a bracketed IPv6 literal).
pub fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (s, default_port),
        }
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    (ok && port != 0).then(|| (host.to_owned(), port))
}

/// Lets another thread interrupt a client: sets a flag, wakes any wait, and
/// shuts the socket down so a blocked read returns at once.
#[derive(Debug, Default)]
pub struct CancelToken {
    cancelled: AtomicBool,
    socket: Mutex<Option<TcpStream>>,
    wake: Condvar,
}

impl CancelToken {
    /// Requests cancellation. Safe from any thread, any number of times.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let guard = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = guard.as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.wake.notify_all();
    }

    /// Whether cancellation was requested since the last [`CancelToken::reset`].
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Clears the flag before a new operation.
    pub fn reset(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }

    /// Sleeps for `d` unless cancelled first; returns `true` when cancelled.
    pub fn wait(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut guard = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_cancelled() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            guard = match self.wake.wait_timeout(guard, until - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn set_socket(&self, s: Option<TcpStream>) {
        *self.socket.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

/// A response: status, the headers DPS clients use, and the body.
#[derive(Debug, Default)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Retry-After`, raw.
    pub retry_after: Option<String>,
    /// `Content-Type`, raw.
    pub content_type: Option<String>,
    /// `x-ms-request-id`.
    pub request_id: Option<String>,
    /// `x-ms-error-code`.
    pub error_code: Option<String>,
    /// The body (decoded from chunked if needed).
    pub body: Vec<u8>,
}

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

/// The TCP socket under TLS. Every write goes through `TcpStream::write`,
/// which uses `send(MSG_NOSIGNAL)` on Linux; `TcpStream::write_vectored`
/// (what rustls calls by default) is `writev`, which raises SIGPIPE when the
/// server has closed the connection. A Rust program ignores SIGPIPE, but a C
/// program linking this library would be killed by it.
struct Sock(TcpStream);

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    // write_vectored: the default (first non-empty buffer through `write`).
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

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
    /// A kept-alive connection that turns out to be closed by the server is
    /// reopened once, transparently, when nothing of the response was read.
    pub fn send(&mut self, req: &Request<'_>, until: Instant) -> Result<Response> {
        let reused = self.conn.is_some();
        if !reused {
            self.connect(until)?;
        }
        let first = self.exchange(req, until);
        let result = match first {
            Err(Stale) if reused => {
                log::debug!("kept-alive connection was closed by the server; reconnecting");
                self.close();
                self.connect(until)?;
                self.exchange(req, until).map_err(|e| e.into_error())
            }
            other => other.map_err(|e| e.into_error()),
        };
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

/// Pulls more response bytes into the buffer; 0 means the end of the stream.
type Fill<'a> = dyn FnMut(&mut Vec<u8>) -> Result<usize, ExchangeError> + 'a;

/// Reads one response (head and body, within the caps) from `r`, pulling
/// more bytes with `fill` (which returns 0 at the end of the stream).
fn read_response(
    r: &mut BodyReader,
    fill: &mut Fill<'_>,
) -> Result<(Response, bool), ExchangeError> {
    // Head.
    let (mut resp, head_len, framing, mut keep_alive) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&r.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = parsed.code.unwrap_or(0);
                if (100..200).contains(&status) {
                    // Interim response (100 Continue): skip it.
                    r.buf.drain(..n);
                    continue;
                }
                break interpret_head(&parsed, n).map_err(ExchangeError::Fatal)?;
            }
            Ok(httparse::Status::Partial) => {
                if r.buf.len() > MAX_HEAD {
                    return Err(ExchangeError::Fatal(too_large("response head")));
                }
                let got = fill(&mut r.buf)?;
                if got == 0 {
                    return Err(if r.buf.is_empty() {
                        Stale
                    } else {
                        ExchangeError::Fatal(lost(
                            "the server closed the connection in the middle of the response head",
                        ))
                    });
                }
            }
            Err(e) => {
                return Err(ExchangeError::Fatal(malformed(format!(
                    "invalid HTTP response head: {e}"
                ))));
            }
        }
    };
    r.pos = head_len;
    resp.body = match framing {
        Framing::Length(n) => {
            if n > MAX_BODY {
                return Err(ExchangeError::Fatal(too_large("response body")));
            }
            while r.buf.len() - r.pos < n {
                if fill(&mut r.buf)? == 0 {
                    return Err(ExchangeError::Fatal(lost(
                        "the response body was truncated",
                    )));
                }
            }
            r.buf[r.pos..r.pos + n].to_vec()
        }
        Framing::Chunked => read_chunked(r, fill)?,
        Framing::UntilClose => {
            keep_alive = false;
            while fill(&mut r.buf)? > 0 {
                if r.buf.len() - r.pos > MAX_BODY {
                    return Err(ExchangeError::Fatal(too_large("response body")));
                }
            }
            r.buf[r.pos..].to_vec()
        }
        Framing::Empty => Vec::new(),
    };
    Ok((resp, keep_alive))
}

fn read_chunked(r: &mut BodyReader, fill: &mut Fill<'_>) -> Result<Vec<u8>, ExchangeError> {
    let mut body = Vec::new();
    loop {
        // Chunk-size line.
        let line_end = loop {
            if let Some(i) = find_crlf(&r.buf[r.pos..]) {
                break r.pos + i;
            }
            if r.buf.len() - r.pos > 1024 {
                return Err(ExchangeError::Fatal(malformed(
                    "chunk size line too long".into(),
                )));
            }
            if fill(&mut r.buf)? == 0 {
                return Err(ExchangeError::Fatal(lost(
                    "the chunked response body was truncated",
                )));
            }
        };
        let line = std::str::from_utf8(&r.buf[r.pos..line_end]).unwrap_or("");
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
            ExchangeError::Fatal(malformed(format!("invalid chunk size {size_hex:?}")))
        })?;
        r.pos = line_end + 2;
        if size == 0 {
            // Trailers: skip lines up to the empty one.
            loop {
                if let Some(i) = find_crlf(&r.buf[r.pos..]) {
                    r.pos += i + 2;
                    if i == 0 {
                        return Ok(body);
                    }
                    continue;
                }
                if r.buf.len() - r.pos > MAX_HEAD {
                    return Err(ExchangeError::Fatal(too_large("chunked trailer")));
                }
                if fill(&mut r.buf)? == 0 {
                    return Err(ExchangeError::Fatal(lost(
                        "the chunked response body was truncated",
                    )));
                }
            }
        }
        // `size` comes from the server and may be near usize::MAX: compare
        // without adding (found by fuzzing: `body.len() + size` overflowed).
        if size > MAX_BODY - body.len() {
            return Err(ExchangeError::Fatal(too_large("response body")));
        }
        while r.buf.len() - r.pos < size + 2 {
            if fill(&mut r.buf)? == 0 {
                return Err(ExchangeError::Fatal(lost(
                    "the chunked response body was truncated",
                )));
            }
        }
        body.extend_from_slice(&r.buf[r.pos..r.pos + size]);
        if &r.buf[r.pos + size..r.pos + size + 2] != b"\r\n" {
            return Err(ExchangeError::Fatal(malformed(
                "chunk not followed by CRLF".into(),
            )));
        }
        r.pos += size + 2;
        // Keep the buffer small: drop what was consumed.
        r.buf.drain(..r.pos);
        r.pos = 0;
    }
}

/// Parses a complete HTTP/1.1 response held in `bytes` with the same code
/// and caps as the network path (16 KiB head, 128 KiB body, chunked or
/// Content-Length or until-close framing). For fuzzing and tests; the
/// client never calls it.
#[doc(hidden)]
pub fn parse_response(bytes: &[u8]) -> Result<Response> {
    let mut input = bytes;
    let mut r = BodyReader {
        buf: Vec::with_capacity(2048),
        pos: 0,
    };
    let mut fill = |buf: &mut Vec<u8>| -> Result<usize, ExchangeError> {
        let n = input.len().min(4096);
        buf.extend_from_slice(&input[..n]);
        input = &input[n..];
        Ok(n)
    };
    read_response(&mut r, &mut fill)
        .map(|(resp, _)| resp)
        .map_err(ExchangeError::into_error)
}

struct BodyReader {
    buf: Vec<u8>,
    pos: usize,
}

enum ExchangeError {
    /// The kept-alive connection was already closed: safe to resend.
    Stale,
    Fatal(Error),
}
use ExchangeError::Stale;

impl ExchangeError {
    fn into_error(self) -> Error {
        match self {
            Stale => lost("the server closed the connection without answering"),
            ExchangeError::Fatal(e) => e,
        }
    }
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
    Empty,
}

fn interpret_head(
    p: &httparse::Response<'_, '_>,
    head_len: usize,
) -> Result<(Response, usize, Framing, bool)> {
    let status = p.code.unwrap_or(0);
    let mut resp = Response {
        status,
        ..Response::default()
    };
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = p.version == Some(1);
    for h in p.headers.iter() {
        let value = || String::from_utf8_lossy(h.value).trim().to_owned();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let v: usize = value()
                .parse()
                .map_err(|_| malformed("invalid Content-Length".into()))?;
            if length.is_some_and(|l| l != v) {
                return Err(malformed("conflicting Content-Length headers".into()));
            }
            length = Some(v);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value()
                .to_ascii_lowercase()
                .split(',')
                .any(|t| t.trim() == "chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value().to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("retry-after") {
            resp.retry_after = Some(value());
        } else if name.eq_ignore_ascii_case("content-type") {
            resp.content_type = Some(value());
        } else if name.eq_ignore_ascii_case("x-ms-request-id") {
            resp.request_id = Some(value());
        } else if name.eq_ignore_ascii_case("x-ms-error-code") {
            resp.error_code = Some(value());
        }
    }
    let framing = if status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok((resp, head_len, framing, keep_alive))
}

/// Resolves `host:port` within the request deadline. The system resolver
/// cannot be interrupted, so it runs on a helper thread and we stop waiting
/// for it at `until` (the thread ends when the resolver gives up).
/// Resolves `host` and connects to the first address that answers, all
/// before `until`. Neither the system resolver nor a TCP connect can be
/// interrupted, so both run on a helper thread; this thread waits for it in
/// short slices and stops at `until` or as soon as `cancel` is set (the
/// helper ends on its own when the resolver or the connect gives up).
fn open_tcp(host: &str, port: u16, until: Instant, cancel: &CancelToken) -> Result<TcpStream> {
    const SLICE: Duration = Duration::from_millis(20);
    let (tx, rx) = mpsc::channel();
    let owned = host.to_owned();
    let spawned = std::thread::Builder::new()
        .name("dps-connect".into())
        .spawn(move || {
            let _ = tx.send(resolve_and_connect(&owned, port, until));
        });
    if spawned.is_err() {
        // No thread available: do it inline (bounded by `until`, not cancellable).
        return resolve_and_connect(host, port, until);
    }
    loop {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let left = remaining(until).ok_or_else(timeout_error)?;
        match rx.recv_timeout(left.min(SLICE)) {
            Ok(r) => return r,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "the connecting thread ended without a result",
                ));
            }
        }
    }
}

fn resolve_and_connect(host: &str, port: u16, until: Instant) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| {
                Error::new(ErrorKind::Dns, format!("cannot resolve {host}: {e}")).retriable(true)
            })?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        let left = remaining(until).ok_or_else(timeout_error)?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((_, e)) if e.kind() == io::ErrorKind::TimedOut => timeout_error(),
        Some((addr, e)) => {
            Error::new(ErrorKind::Connect, format!("cannot connect to {addr}: {e}")).retriable(true)
        }
        None => {
            Error::new(ErrorKind::Dns, format!("{host} resolved to no address")).retriable(true)
        }
    })
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn remaining(until: Instant) -> Option<Duration> {
    let left = until.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

fn set_timeouts(sock: &TcpStream, until: Instant) -> Result<()> {
    let left = remaining(until).ok_or_else(timeout_error)?;
    let _ = sock.set_read_timeout(Some(left));
    let _ = sock.set_write_timeout(Some(left));
    Ok(())
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

fn timeout_error() -> Error {
    Error::new(ErrorKind::Timeout, "the request timed out").retriable(true)
}

fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "the registration was cancelled")
}

fn lost(m: &str) -> Error {
    Error::new(ErrorKind::ConnectionLost, m).retriable(true)
}

fn malformed(m: String) -> Error {
    Error::new(ErrorKind::MalformedResponse, m)
}

fn too_large(what: &str) -> Error {
    Error::new(
        ErrorKind::ResponseTooLarge,
        format!("the server's {what} exceeds the size limit"),
    )
}

/// Classifies a rustls error so callers can tell who is at fault.
pub fn tls_error(e: &rustls::Error, host: &str) -> Error {
    use rustls::{AlertDescription as A, CertificateError as C};
    if let rustls::Error::Other(other) = e {
        if let Some(f) = other
            .0
            .downcast_ref::<crate::credential::x509::SignerFailure>()
        {
            return f.0.clone();
        }
    }
    match e {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => Error::new(
            ErrorKind::TlsServerNameMismatch,
            format!("the server certificate is not valid for {host}: {e}"),
        ),
        rustls::Error::InvalidCertificate(_) => Error::new(
            ErrorKind::TlsServerUntrusted,
            format!("the server certificate for {host} is not trusted: {e}"),
        ),
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::CertificateRequired
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::AccessDenied,
        ) => Error::new(
            ErrorKind::TlsClientCertRejected,
            format!("the server rejected the client certificate: {e}"),
        ),
        _ => Error::new(ErrorKind::Tls, format!("TLS failure with {host}: {e}")),
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
