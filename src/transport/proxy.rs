//! The HTTP CONNECT proxy (URL parsing, Basic auth) and `host[:port]` endpoints.

use super::*;

/// An HTTP proxy reached with CONNECT.
#[derive(Clone)]
pub struct Proxy {
    pub(super) host: String,
    pub(super) port: u16,
    /// `Basic <base64(user:pass)>`; a secret.
    pub(super) authorization: Option<Zeroizing<String>>,
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

pub(super) fn percent_decode(s: &str) -> Option<Zeroizing<String>> {
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
