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
/// (or a bracketed IPv6 literal). See [`parse_host_port`] for the reason of a refusal.
pub fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    parse_host_port(s, default_port).ok()
}

/// Parses `host`, `host:port`, `[IPv6]`, `[IPv6]:port`, `IPv4` or
/// `IPv4:port`. The port is 1-65535 in plain decimal digits. A host made of
/// digits and dots only must be a dotted-quad IPv4 address; any other host
/// must be a DNS name: labels of 1-63 letters, digits, `-` and `_`, not
/// starting or ending with `-`, separated by single dots, 253 characters at
/// most. An IPv6 address must be bracketed. On refusal, says why.
pub fn parse_host_port(
    s: &str,
    default_port: u16,
) -> std::result::Result<(String, u16), &'static str> {
    let port_of = |p: &str| -> std::result::Result<u16, &'static str> {
        if p.is_empty() {
            return Err("the port after ':' is empty");
        }
        if !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the port is not a decimal number");
        }
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err("the port is not in 1-65535"),
            Ok(n) => Ok(n),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("'[' without its ']'")?;
        let port = match after.strip_prefix(':') {
            Some(p) => port_of(p)?,
            None if after.is_empty() => default_port,
            None => return Err("unexpected text after ']'"),
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the text in brackets is not an IPv6 address");
        }
        return Ok((h.to_owned(), port));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => {
            if p.contains(':') {
                return Err("more than one ':' (an IPv6 address must be in brackets)");
            }
            (h, port_of(p)?)
        }
        None => (s, default_port),
    };
    if host.is_empty() {
        return Err("the host is empty");
    }
    if host.len() > 253 {
        return Err("the host is longer than 253 characters");
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        if host.parse::<std::net::Ipv4Addr>().is_err() {
            return Err("the host looks like an IPv4 address but is not a valid one");
        }
        return Ok((host.to_owned(), port));
    }
    for label in host.split('.') {
        let b = label.as_bytes();
        if b.is_empty() {
            return Err("the host has an empty label (a leading, trailing or double dot)");
        }
        if b.len() > 63 {
            return Err("the host has a label longer than 63 characters");
        }
        if !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
        {
            return Err("the host has a character other than letters, digits, '-', '_' and '.'");
        }
        if b[0] == b'-' || b[b.len() - 1] == b'-' {
            return Err("a label of the host starts or ends with '-'");
        }
    }
    Ok((host.to_owned(), port))
}
