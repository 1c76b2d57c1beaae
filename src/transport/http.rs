//! A pure HTTP/1.1 response reader: head, Content-Length, chunked and until-close bodies,
//! within the caps (16 KiB head, 128 KiB body). `parse_response` is the fuzz targets' entry.

use super::*;

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

/// Pulls more response bytes into the buffer; 0 means the end of the stream.
pub(super) type Fill<'a> = dyn FnMut(&mut Vec<u8>) -> Result<usize, ExchangeError> + 'a;

/// Reads one response (head and body, within the caps) from `r`, pulling
/// more bytes with `fill` (which returns 0 at the end of the stream).
pub(super) fn read_response(
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

pub(super) fn read_chunked(
    r: &mut BodyReader,
    fill: &mut Fill<'_>,
) -> Result<Vec<u8>, ExchangeError> {
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

pub(super) struct BodyReader {
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
}

pub(super) enum ExchangeError {
    /// The server closed the connection before any byte of an answer: retriable.
    Stale,
    Fatal(Error),
}
pub(super) use ExchangeError::Stale;

impl ExchangeError {
    pub(super) fn into_error(self) -> Error {
        match self {
            Stale => lost("the server closed the connection without answering"),
            ExchangeError::Fatal(e) => e,
        }
    }
}

pub(super) enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
    Empty,
}

pub(super) fn interpret_head(
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
            // Surfaced as the error's tracking ID: no control characters.
            resp.request_id = Some(crate::protocol::validate::server_message(&value()));
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

pub(super) fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

pub(super) fn timeout_error() -> Error {
    Error::new(ErrorKind::Timeout, "the request timed out").retriable(true)
}

pub(super) fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "the registration was cancelled")
}

pub(super) fn lost(m: &str) -> Error {
    Error::new(ErrorKind::ConnectionLost, m).retriable(true)
}

pub(super) fn malformed(m: String) -> Error {
    Error::new(ErrorKind::MalformedResponse, m)
}

pub(super) fn too_large(what: &str) -> Error {
    Error::new(
        ErrorKind::ResponseTooLarge,
        format!("the server's {what} exceeds the size limit"),
    )
}
