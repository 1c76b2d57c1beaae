//! Minimal HTTP/1.1 over the TLS stream: bounded request head and body, Content-Length or
//! chunked request bodies, keep-alive, responses with Content-Length.

use std::time::{Duration, Instant};

use crate::tls::{ConnError, TlsStream};

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when the client asked to close after this exchange (or speaks HTTP/1.0).
    pub fn wants_close(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.minor_version == 0 {
            !conn.contains("keep-alive")
        } else {
            conn.split(',').any(|t| t.trim() == "close")
        }
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed (or went idle past the keep-alive timeout) between requests.
    Idle,
    /// Answer with this status and close.
    Reject(u16, &'static str),
    /// Connection-level failure (timeout mid-request, TLS error, I/O error).
    Conn(ConnError),
}

pub struct Limits {
    pub idle: Duration,
    pub request: Duration,
    pub max_head: usize,
    pub max_body: usize,
}

/// Reads one request. `buf` carries bytes already received (pipelining) between calls.
pub fn read_request(
    s: &mut TlsStream,
    buf: &mut Vec<u8>,
    lim: &Limits,
) -> Result<Request, ReadError> {
    let idle_deadline = Instant::now() + lim.idle;
    let mut req_deadline: Option<Instant> = if buf.is_empty() {
        None
    } else {
        Some(Instant::now() + lim.request)
    };
    let mut chunk = [0u8; 8192];
    // 1. head
    let head_len = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > lim.max_head {
            return Err(ReadError::Reject(431, "request head too large"));
        }
        let deadline = req_deadline.unwrap_or(idle_deadline);
        match s.read_some(&mut chunk, deadline) {
            Ok(0) => {
                return Err(if buf.is_empty() {
                    ReadError::Idle
                } else {
                    ReadError::Conn(ConnError::Closed)
                });
            }
            Ok(n) => {
                if req_deadline.is_none() {
                    req_deadline = Some(Instant::now() + lim.request);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(ConnError::Timeout) if buf.is_empty() => return Err(ReadError::Idle),
            Err(e) => return Err(ReadError::Conn(e)),
        }
    };
    if head_len > lim.max_head + 4 {
        return Err(ReadError::Reject(431, "request head too large"));
    }
    let deadline = req_deadline.unwrap_or_else(|| Instant::now() + lim.request);
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = parsed.parse(&buf[..head_len]);
    match status {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ReadError::Reject(400, "incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Reject(431, "too many headers"));
        }
        Err(_) => return Err(ReadError::Reject(400, "malformed request head")),
    }
    let method = parsed.method.unwrap_or("").to_string();
    let target = parsed.path.unwrap_or("").to_string();
    let minor_version = parsed.version.unwrap_or(1);
    let mut hdrs = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let v = match std::str::from_utf8(h.value) {
            Ok(v) => v.trim().to_string(),
            Err(_) => return Err(ReadError::Reject(400, "header value is not UTF-8")),
        };
        hdrs.push((h.name.to_string(), v));
    }
    buf.drain(..head_len);
    let mut req = Request {
        method,
        target,
        minor_version,
        headers: hdrs,
        body: Vec::new(),
    };
    // 2. body
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && (req.header("content-length").is_some_and(|v| v != "0")
            || req.header("transfer-encoding").is_some())
        && req
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .is_none_or(|n| n <= lim.max_body)
    {
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| ReadError::Conn(ConnError::Io(e)))?;
    }
    let te = req
        .header("transfer-encoding")
        .map(|v| v.to_ascii_lowercase());
    let cls: Vec<&str> = req
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_str())
        .collect();
    if let Some(te) = te {
        if te != "chunked" {
            return Err(ReadError::Reject(501, "unsupported transfer-encoding"));
        }
        if !cls.is_empty() {
            return Err(ReadError::Reject(400, "both content-length and chunked"));
        }
        req.body = read_chunked(s, buf, lim.max_body, deadline)?;
    } else if let Some(first) = cls.first() {
        if cls.iter().any(|v| v != first) {
            return Err(ReadError::Reject(400, "conflicting content-length"));
        }
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReadError::Reject(400, "bad content-length"));
        }
        let len: usize = first
            .parse()
            .map_err(|_| ReadError::Reject(413, "body too large"))?;
        if len > lim.max_body {
            return Err(ReadError::Reject(413, "body too large"));
        }
        fill(s, buf, len, deadline)?;
        req.body = buf.drain(..len).collect();
    }
    Ok(req)
}

fn fill(
    s: &mut TlsStream,
    buf: &mut Vec<u8>,
    want: usize,
    deadline: Instant,
) -> Result<(), ReadError> {
    let mut chunk = [0u8; 8192];
    while buf.len() < want {
        match s.read_some(&mut chunk, deadline) {
            Ok(0) => return Err(ReadError::Conn(ConnError::Closed)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(ReadError::Conn(e)),
        }
    }
    Ok(())
}

fn read_line(s: &mut TlsStream, buf: &mut Vec<u8>, deadline: Instant) -> Result<String, ReadError> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(p) = find(buf, b"\r\n") {
            let line: Vec<u8> = buf.drain(..p + 2).collect();
            return Ok(String::from_utf8_lossy(&line[..p]).into_owned());
        }
        if buf.len() > 1024 {
            return Err(ReadError::Reject(400, "chunk header too long"));
        }
        match s.read_some(&mut chunk, deadline) {
            Ok(0) => return Err(ReadError::Conn(ConnError::Closed)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(ReadError::Conn(e)),
        }
    }
}

fn read_chunked(
    s: &mut TlsStream,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(s, buf, deadline)?;
        let size_txt = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_txt, 16)
            .map_err(|_| ReadError::Reject(400, "bad chunk size"))?;
        if size == 0 {
            // trailers until an empty line
            loop {
                if read_line(s, buf, deadline)?.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > max {
            return Err(ReadError::Reject(413, "body too large"));
        }
        fill(s, buf, size + 2, deadline)?;
        body.extend(buf.drain(..size));
        if buf.drain(..2).as_slice() != b"\r\n" {
            return Err(ReadError::Reject(400, "bad chunk terminator"));
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(h) = self
            .headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            h.1 = value;
        } else {
            self.headers.push((name.to_string(), value));
        }
    }

    /// Serialises status line, headers (plus Date, Connection and Content-Length or
    /// `Transfer-Encoding: chunked`) and body.
    pub fn to_bytes(&self, close: bool, chunked: bool) -> Vec<u8> {
        self.encode(close, chunked).0
    }

    /// Like `to_bytes`, also returning the offset where the body starts.
    pub fn encode(&self, close: bool, chunked: bool) -> (Vec<u8>, usize) {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str(&format!(
            "Date: {}\r\n",
            crate::util::http_date(std::time::SystemTime::now())
        ));
        if chunked {
            out.push_str("Transfer-Encoding: chunked\r\n");
        } else {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str(if close {
            "Connection: close\r\n\r\n"
        } else {
            "Connection: keep-alive\r\n\r\n"
        });
        let mut bytes = out.into_bytes();
        let start = bytes.len();
        if chunked {
            for c in self.body.chunks(4096) {
                bytes.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                bytes.extend_from_slice(c);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        } else {
            bytes.extend_from_slice(&self.body);
        }
        (bytes, start)
    }
}
