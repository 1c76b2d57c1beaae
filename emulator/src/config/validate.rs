//! From the serde shapes to the public types: the rules serde cannot express, each error with
//! the path of the value it is about (`enrollments[2].primary_key`), which the loader turns
//! into a line with the TOML parser's spans.

use std::path::{Path, PathBuf};

use super::raw::{Action, RawConfig, RawFault, ResultKind, StrOrInt};
use super::{
    Config, EnrollmentKind, FaultKind, FaultOn, FaultStep, Hub, Limits, RetryAfter, TerminalResult,
    TlsSettings,
};

/// One step of the path to a value: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A validation error about the value at `path` (empty: the whole file).
#[derive(Debug)]
pub(super) struct Invalid {
    pub path: Vec<Seg>,
    pub message: String,
}

impl Invalid {
    pub(super) fn at(path: &[Seg], message: impl Into<String>) -> Invalid {
        Invalid {
            path: path.to_vec(),
            message: message.into(),
        }
    }
    /// Prefixes the path (the error came from inside `prefix`).
    pub(super) fn within(mut self, prefix: &[Seg]) -> Invalid {
        let mut p = prefix.to_vec();
        p.append(&mut self.path);
        self.path = p;
        self
    }
}

/// An error about the field `key` of the table being validated.
pub(super) fn field(key: &'static str, message: impl Into<String>) -> Invalid {
    Invalid::at(&[Seg::Key(key)], message)
}

/// An error about the table being validated as a whole.
pub(super) fn here(message: impl Into<String>) -> Invalid {
    Invalid::at(&[], message)
}

pub(super) fn config(raw: RawConfig, base: Option<&Path>) -> Result<Config, Invalid> {
    use Seg::{Index, Key};
    let mut cfg = Config::default();
    if let Some(s) = raw.id_scope {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(field(
                "id_scope",
                format!("id_scope {s:?} must be 1..64 ASCII letters/digits (e.g. \"0ne00000001\")"),
            ));
        }
        cfg.id_scope = s;
    }
    cfg.port = raw.port;
    if let Some(v) = raw.retry_after_secs {
        cfg.retry_after_secs = v;
    }
    if let Some(v) = raw.assigning_polls {
        cfg.assigning_polls = v;
    }
    if let Some(v) = raw.api_versions {
        if v.is_empty() {
            return Err(field("api_versions", "api_versions must not be empty"));
        }
        for (i, x) in v.iter().enumerate() {
            if !looks_like_api_version(x) {
                return Err(Invalid::at(
                    &[Key("api_versions"), Index(i)],
                    format!("api_versions: {x:?} is not of the form YYYY-MM-DD[-suffix]"),
                ));
            }
        }
        cfg.api_versions = v;
    }
    cfg.strict_polling = raw.strict_polling.unwrap_or(false);
    cfg.log_requests = raw.log_requests.unwrap_or(false);
    cfg.chunked_responses = raw.chunked_responses.unwrap_or(true);

    for (i, h) in raw.hubs.into_iter().enumerate() {
        let at = [Key("hubs"), Index(i), Key("host_name")];
        let name = h.host_name.trim().to_string();
        if name.is_empty() || name.contains(['/', ' ', ':']) {
            return Err(Invalid::at(
                &at,
                format!("hubs[{i}]: host_name {:?} is not a host name", h.host_name),
            ));
        }
        if cfg.hub(&name).is_some() {
            return Err(Invalid::at(
                &at,
                format!("hubs[{i}]: duplicate host_name {name:?}"),
            ));
        }
        cfg.hubs.push(Hub { host_name: name });
    }

    if let Some(t) = raw.tls {
        let resolve = |p: PathBuf| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        };
        cfg.tls = TlsSettings {
            ca_cert_file: t.ca_cert_file.map(resolve),
            ca_key_file: t.ca_key_file.map(resolve),
            server_cert_file: t.server_cert_file.map(resolve),
            server_key_file: t.server_key_file.map(resolve),
            versions: t
                .versions
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.as_str().to_string())
                .collect(),
        };
        tls_files(&cfg.tls).map_err(|e| e.within(&[Key("tls")]))?;
    }
    if let Some(l) = raw.limits {
        let d = Limits::default();
        cfg.limits = Limits {
            idle_timeout_ms: l.idle_timeout_ms.unwrap_or(d.idle_timeout_ms).max(1),
            request_timeout_ms: l.request_timeout_ms.unwrap_or(d.request_timeout_ms).max(1),
            max_connections: l.max_connections.unwrap_or(d.max_connections).max(1),
            max_body_bytes: l.max_body_bytes.unwrap_or(d.max_body_bytes),
            max_head_bytes: l.max_head_bytes.unwrap_or(d.max_head_bytes).max(256),
        };
    }

    for (i, e) in raw.enrollments.into_iter().enumerate() {
        let at = [Key("enrollments"), Index(i)];
        let label = match (&e.registration_id, &e.group_id) {
            (Some(r), _) => format!("enrollments[{i}] (registration_id {r:?})"),
            (None, Some(g)) => format!("enrollments[{i}] (group_id {g:?})"),
            _ => format!("enrollments[{i}]"),
        };
        let enr = super::enrollment::enrollment(e, &cfg, base).map_err(|err| Invalid {
            message: format!("{label}: {}", err.message),
            ..err.within(&at)
        })?;
        if cfg.enrollments.iter().any(|o| same_id(&o.kind, &enr.kind)) {
            return Err(Invalid::at(&at, format!("{label}: duplicate id")));
        }
        cfg.enrollments.push(enr);
    }
    if !cfg.enrollments.is_empty() && cfg.hubs.is_empty() {
        return Err(here(
            "at least one [[hubs]] entry is needed when there are enrollments",
        ));
    }
    Ok(cfg)
}

fn same_id(a: &EnrollmentKind, b: &EnrollmentKind) -> bool {
    match (a, b) {
        (
            EnrollmentKind::Individual { registration_id: a },
            EnrollmentKind::Individual { registration_id: b },
        )
        | (EnrollmentKind::Group { group_id: a }, EnrollmentKind::Group { group_id: b }) => {
            a.eq_ignore_ascii_case(b)
        }
        _ => false,
    }
}

fn tls_files(tls: &TlsSettings) -> Result<(), Invalid> {
    if tls.server_cert_file.is_some() != tls.server_key_file.is_some() {
        return Err(here(
            "tls: server_cert_file and server_key_file go together",
        ));
    }
    if tls.server_cert_file.is_some() && tls.ca_cert_file.is_none() {
        return Err(here(
            "tls: server_cert_file needs ca_cert_file (the CA clients must trust)",
        ));
    }
    if tls.server_cert_file.is_none() && tls.ca_cert_file.is_some() != tls.ca_key_file.is_some() {
        return Err(here(
            "tls: ca_cert_file and ca_key_file go together (or give server_cert_file/server_key_file)",
        ));
    }
    Ok(())
}

fn looks_like_api_version(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && (b.len() == 10 || (b[10] == b'-' && b.len() > 11))
}

pub(super) fn fault(f: RawFault) -> Result<FaultStep, Invalid> {
    let on = f.on.unwrap_or(FaultOn::Any);
    let retry_after = match (f.retry_after, f.retry_after_http_date_secs) {
        (Some(_), Some(_)) => {
            return Err(field(
                "retry_after_http_date_secs",
                "use retry_after or retry_after_http_date_secs, not both",
            ));
        }
        (Some(StrOrInt::Str(s)), None) => Some(RetryAfter::Raw(s)),
        (Some(StrOrInt::Int(n)), None) => Some(RetryAfter::Raw(n.to_string())),
        (None, Some(n)) => Some(RetryAfter::HttpDateIn(n)),
        (None, None) => None,
    };
    let kinds = [
        f.action.is_some(),
        f.result.is_some(),
        f.issued_chain.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        return Err(here(
            "a step has one of action, result or issued_chain (or just status)",
        ));
    }
    if let Some(c) = f.issued_chain {
        return Ok(FaultStep {
            on,
            kind: FaultKind::BrokenChain(c),
        });
    }
    // at most one of them is set (checked above)
    let kind = match (f.action, f.result) {
        (Some(a), _) => match a {
            Action::Close => FaultKind::Close,
            Action::Truncate => FaultKind::Truncate,
            Action::MalformedJson => FaultKind::MalformedJson,
            Action::WrongContentType => FaultKind::WrongContentType {
                content_type: f
                    .content_type
                    .unwrap_or_else(|| "text/html; charset=utf-8".into()),
            },
            Action::Delay => FaultKind::Delay {
                ms: f.ms.ok_or_else(|| field("action", "delay needs ms"))?,
            },
            Action::Oversized => FaultKind::Oversized {
                bytes: f.bytes.unwrap_or(200_000),
            },
            Action::Trickle => FaultKind::Trickle {
                chunk_bytes: f.chunk_bytes.unwrap_or(1).max(1),
                interval_ms: f.interval_ms.unwrap_or(100),
            },
            Action::BlackHole => FaultKind::BlackHole,
            Action::EndlessAssigning => FaultKind::EndlessAssigning,
        },
        (None, Some(r)) => FaultKind::Result(match r {
            ResultKind::Failed => {
                let code = f.error_code.unwrap_or(400207);
                TerminalResult::Failed {
                    error_code: code,
                    message: f.message.unwrap_or_else(|| match code {
                        400207 => "Custom allocation failed with status code: 400".into(),
                        400208 => "No IoT hub is available for the device.".into(),
                        400209 => "The IoT hub refused the device registration.".into(),
                        _ => "Device registration failed.".into(),
                    }),
                }
            }
            ResultKind::Disabled => TerminalResult::Disabled,
            ResultKind::AssignedWithoutHub => TerminalResult::AssignedWithoutHub,
        }),
        (None, None) => {
            let Some(status) = f.status else {
                return Err(here("a step needs action, result or status"));
            };
            if !(300..=599).contains(&status) {
                return Err(field(
                    "status",
                    format!("status {status} must be in 300..=599"),
                ));
            }
            let error_code = f.error_code.unwrap_or(status as u32 * 1000 + 1);
            FaultKind::Status {
                status,
                error_code,
                message: f.message.unwrap_or_else(|| default_message(status).into()),
                retry_after,
            }
        }
    };
    Ok(FaultStep { on, kind })
}

pub(crate) fn default_message(status: u16) -> &'static str {
    match status {
        400 => "Bad request.",
        401 => "Unauthorized",
        403 => "Forbidden.",
        404 => "Not found.",
        409 => "Precondition failed.",
        415 => "Unsupported media type.",
        429 => "Too many requests.",
        500 => "Internal server error.",
        503 => "Service unavailable.",
        _ => "Error.",
    }
}
