//! Emulator configuration: id scope, hubs, enrollments and scripted faults, from TOML or JSON.
//!
//! Parsing is two-step: serde into `Raw*` structs (unknown fields are errors, so typos are
//! caught), then validation into the public types with precise messages.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// Default api-version set accepted by the emulator.
pub const DEFAULT_API_VERSIONS: &[&str] = &[
    "2018-11-01",
    "2019-03-31",
    "2021-06-01",
    "2021-10-01",
    "2025-07-01-preview",
];

/// A configuration error: where (file, line) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    fn new(line: Option<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{}: {}", p.display(), l, self.message),
            (Some(p), None) => write!(f, "{}: {}", p.display(), self.message),
            (None, Some(l)) => write!(f, "line {}: {}", l, self.message),
            (None, None) => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The whole emulator configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The id scope the emulator answers for (other scopes get 404).
    pub id_scope: String,
    /// Port to bind on 127.0.0.1; `None` or `Some(0)` = ephemeral.
    pub port: Option<u16>,
    /// `Retry-After` on 202 answers (seconds).
    pub retry_after_secs: u32,
    /// Number of 202 `assigning` answers to operation polls before the terminal 200.
    pub assigning_polls: u32,
    /// Accepted `api-version` values.
    pub api_versions: Vec<String>,
    /// Answer 429 to more than 5 polls per 10 s per device.
    pub strict_polling: bool,
    /// Print one line per request to stderr (the binary turns this on).
    pub log_requests: bool,
    /// Answer with `Transfer-Encoding: chunked` as the real service does (default); `false`
    /// sends `Content-Length`.
    pub chunked_responses: bool,
    pub hubs: Vec<Hub>,
    pub enrollments: Vec<Enrollment>,
    pub tls: TlsSettings,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            id_scope: "0ne00000001".to_string(),
            port: None,
            retry_after_secs: 3,
            assigning_polls: 1,
            api_versions: DEFAULT_API_VERSIONS.iter().map(|s| s.to_string()).collect(),
            strict_polling: false,
            log_requests: false,
            chunked_responses: true,
            hubs: Vec::new(),
            enrollments: Vec::new(),
            tls: TlsSettings::default(),
            limits: Limits::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hub {
    pub host_name: String,
}

/// Where the server certificate comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// CA certificate PEM file. With `ca_key_file`: the emulator issues its server certificate
    /// from this CA. With `server_cert_file`: only reported by `ca_pem()`.
    pub ca_cert_file: Option<PathBuf>,
    pub ca_key_file: Option<PathBuf>,
    /// Server certificate chain PEM (leaf first) and its private key PEM.
    pub server_cert_file: Option<PathBuf>,
    pub server_key_file: Option<PathBuf>,
    /// Allowed TLS versions: "1.2", "1.3". Empty = both.
    pub versions: Vec<String>,
}

/// Resource limits per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Close a keep-alive connection idle this long (ms).
    pub idle_timeout_ms: u64,
    /// A request head + body (or a TLS handshake) must arrive within this time (ms).
    pub request_timeout_ms: u64,
    /// Maximum concurrent connections; more are closed at once.
    pub max_connections: usize,
    /// Maximum request body (bytes); DPS documents 96 KB.
    pub max_body_bytes: usize,
    /// Maximum request head (bytes).
    pub max_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle_timeout_ms: 60_000,
            request_timeout_ms: 10_000,
            max_connections: 256,
            max_body_bytes: 96 * 1024,
            max_head_bytes: 16 * 1024,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Attestation {
    SymmetricKey {
        /// Decoded keys: primary, then secondary if any.
        keys: Vec<Vec<u8>>,
    },
    /// Individual: SHA-256 thumbprints (uppercase hex) of accepted leaf certificates.
    X509Thumbprints(Vec<String>),
    /// Group: DER of the group's CA certificate(s) (trust anchors).
    X509Ca(Vec<Vec<u8>>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrollmentKind {
    Individual { registration_id: String },
    Group { group_id: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// Stable hash of the registration id over the enrollment's hubs.
    Hashed,
    /// Always the first of the enrollment's hubs.
    Static,
    /// Registration n of a device goes to hub n mod len (makes every re-registration move).
    RoundRobin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reprovision {
    /// Move and report `deviceDataMigrated`.
    Migrate,
    /// Move and report `deviceDataReset`.
    Reset,
    /// Keep the current hub.
    Never,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Enrollment {
    pub kind: EnrollmentKind,
    pub attestation: Attestation,
    pub device_id: Option<String>,
    pub enabled: bool,
    pub allocation: Allocation,
    /// Hub host names this enrollment may use (validated against `Config::hubs`).
    pub hubs: Vec<String>,
    /// Hub of the first registration, before the allocation policy applies.
    pub initial_hub: Option<String>,
    pub reprovision: Reprovision,
    pub payload: Option<serde_json::Value>,
    pub echo_payload: bool,
    pub retry_after_secs: Option<u32>,
    pub assigning_polls: Option<u32>,
    pub faults: Vec<FaultStep>,
}

impl Enrollment {
    /// `registration_id` or `group_id`.
    pub fn id(&self) -> &str {
        match &self.kind {
            EnrollmentKind::Individual { registration_id } => registration_id,
            EnrollmentKind::Group { group_id } => group_id,
        }
    }
    pub fn group_id(&self) -> Option<&str> {
        match &self.kind {
            EnrollmentKind::Group { group_id } => Some(group_id),
            _ => None,
        }
    }
}

/// Which requests a fault step applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOn {
    Register,
    Poll,
    Lookup,
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// Sent verbatim (`"2"`, an HTTP-date, or garbage on purpose).
    Raw(String),
    /// An HTTP-date this many seconds in the future.
    HttpDateIn(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TerminalResult {
    Failed { error_code: u32, message: String },
    Disabled,
    AssignedWithoutHub,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// An error answer with the standard error body.
    Status {
        status: u16,
        error_code: u32,
        message: String,
        retry_after: Option<RetryAfter>,
    },
    /// Close the connection without answering.
    Close,
    /// Send the normal answer cut in the middle of the body, then close.
    Truncate,
    /// The normal status with a body that is not valid JSON.
    MalformedJson,
    /// The normal status with an HTML body and this content type.
    WrongContentType { content_type: String },
    /// Wait, then answer normally.
    Delay { ms: u64 },
    /// The normal status with a (valid JSON) body of this many bytes.
    Oversized { bytes: usize },
    /// The normal answer, sent `chunk_bytes` at a time every `interval_ms`.
    Trickle {
        chunk_bytes: usize,
        interval_ms: u64,
    },
    /// Read the request and never answer (until the client closes or the emulator stops).
    BlackHole,
    /// Terminal result of the operation (register: the operation ends so; poll: answered now).
    Result(TerminalResult),
    /// The operation never leaves `assigning`.
    EndlessAssigning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultStep {
    pub on: FaultOn,
    pub kind: FaultKind,
}

// ---------------------------------------------------------------- raw (serde) shapes

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    id_scope: Option<String>,
    port: Option<u16>,
    retry_after_secs: Option<u32>,
    assigning_polls: Option<u32>,
    api_versions: Option<Vec<String>>,
    strict_polling: Option<bool>,
    log_requests: Option<bool>,
    chunked_responses: Option<bool>,
    #[serde(default)]
    hubs: Vec<RawHub>,
    #[serde(default)]
    enrollments: Vec<RawEnrollment>,
    tls: Option<RawTls>,
    limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    host_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_cert_file: Option<PathBuf>,
    ca_key_file: Option<PathBuf>,
    server_cert_file: Option<PathBuf>,
    server_key_file: Option<PathBuf>,
    versions: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    idle_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_body_bytes: Option<usize>,
    max_head_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrollment {
    registration_id: Option<String>,
    group_id: Option<String>,
    attestation: Option<String>,
    primary_key: Option<String>,
    secondary_key: Option<String>,
    thumbprint: Option<String>,
    secondary_thumbprint: Option<String>,
    ca_pem: Option<String>,
    ca_file: Option<PathBuf>,
    device_id: Option<String>,
    enabled: Option<bool>,
    allocation: Option<String>,
    hubs: Option<Vec<String>>,
    initial_hub: Option<String>,
    reprovision: Option<String>,
    payload: Option<serde_json::Value>,
    echo_payload: Option<bool>,
    retry_after_secs: Option<u32>,
    assigning_polls: Option<u32>,
    #[serde(default)]
    faults: Vec<RawFault>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrInt {
    Str(String),
    Int(u64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    on: Option<String>,
    action: Option<String>,
    result: Option<String>,
    status: Option<u16>,
    error_code: Option<u32>,
    message: Option<String>,
    retry_after: Option<StrOrInt>,
    retry_after_http_date_secs: Option<u64>,
    ms: Option<u64>,
    bytes: Option<usize>,
    chunk_bytes: Option<usize>,
    interval_ms: Option<u64>,
    content_type: Option<String>,
    times: Option<u32>,
}

// ---------------------------------------------------------------- loading

enum Source<'a> {
    Toml(&'a str),
    Json,
}

impl Source<'_> {
    /// Line of the `index`-th `[[enrollments]]` table header, when the TOML uses that form.
    fn enrollment_line(&self, index: usize) -> Option<usize> {
        match self {
            Source::Toml(text) => text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with("[[enrollments]]"))
                .nth(index)
                .map(|(n, _)| n + 1),
            Source::Json => None,
        }
    }
    /// Line of `field = ...` inside the `index`-th `[[enrollments]]` block, else the header line.
    fn enrollment_field_line(&self, index: usize, message: &str) -> Option<usize> {
        let start = self.enrollment_line(index)?;
        let Source::Toml(text) = self else {
            return None;
        };
        let field: String = message
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if field.is_empty() {
            return Some(start);
        }
        for (n, l) in text.lines().enumerate().skip(start) {
            let t = l.trim_start();
            if t.starts_with('[') {
                break;
            }
            if t.starts_with(field.as_str()) && t[field.len()..].trim_start().starts_with('=') {
                return Some(n + 1);
            }
        }
        Some(start)
    }

    fn hub_line(&self, index: usize) -> Option<usize> {
        match self {
            Source::Toml(text) => text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with("[[hubs]]"))
                .nth(index)
                .map(|(n, _)| n + 1),
            Source::Json => None,
        }
    }
    fn key_line(&self, key: &str) -> Option<usize> {
        match self {
            Source::Toml(text) => text
                .lines()
                .position(|l| {
                    let t = l.trim_start();
                    t.starts_with(key) && t[key.len()..].trim_start().starts_with('=')
                })
                .map(|n| n + 1),
            Source::Json => None,
        }
    }
}

impl Config {
    /// Parses a TOML configuration (see the README for the schema).
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(s).map_err(|e| {
            let line = e
                .span()
                .map(|sp| s[..sp.start.min(s.len())].matches('\n').count() + 1);
            ConfigError::new(line, format!("invalid TOML: {}", e.message().trim()))
        })?;
        validate(raw, &Source::Toml(s), None)
    }

    /// Parses a JSON configuration with the same schema as TOML.
    pub fn from_json_str(s: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_json::from_str(s).map_err(|e| {
            ConfigError::new(
                Some(e.line()),
                format!("invalid JSON: {e} (column {})", e.column()),
            )
        })?;
        validate(raw, &Source::Json, None)
    }

    /// Reads a `.toml` or `.json` file (by extension; anything else is tried as TOML).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let with_file = |mut e: ConfigError| {
            e.file = Some(path.to_path_buf());
            e
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| with_file(ConfigError::new(None, format!("cannot read: {e}"))))?;
        let base = path.parent().map(Path::to_path_buf);
        let is_json = path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("json"));
        let raw: RawConfig = if is_json {
            serde_json::from_str(&text).map_err(|e| {
                with_file(ConfigError::new(
                    Some(e.line()),
                    format!("invalid JSON: {e} (column {})", e.column()),
                ))
            })?
        } else {
            toml::from_str(&text).map_err(|e| {
                let line = e
                    .span()
                    .map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
                with_file(ConfigError::new(
                    line,
                    format!("invalid TOML: {}", e.message().trim()),
                ))
            })?
        };
        let src = if is_json {
            Source::Json
        } else {
            Source::Toml(&text)
        };
        validate(raw, &src, base.as_deref()).map_err(with_file)
    }

    /// Finds a hub by host name (case-insensitive).
    pub fn hub(&self, host_name: &str) -> Option<&Hub> {
        self.hubs
            .iter()
            .find(|h| h.host_name.eq_ignore_ascii_case(host_name))
    }
}

/// Registration id rule (PROTOCOL.md 6): alphanumerics and `-._:`, up to 128 characters,
/// starting alphanumeric and ending alphanumeric or `-`.
pub fn valid_registration_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 128 {
        return false;
    }
    let ok_mid = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':');
    b[0].is_ascii_alphanumeric()
        && b.iter().all(|&c| ok_mid(c))
        && (b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'-')
}

fn decode_key(what: &str, s: &str) -> Result<Vec<u8>, String> {
    let k = STANDARD
        .decode(s.trim())
        .map_err(|e| format!("{what} is not valid base64 ({e})"))?;
    if k.len() < 16 || k.len() > 64 {
        return Err(format!(
            "{what} must decode to 16..64 bytes (DPS rule), got {}",
            k.len()
        ));
    }
    Ok(k)
}

fn pem_certs(text: &str) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let c = c.map_err(|e| format!("bad PEM: {e:?}"))?;
        x509_parser::parse_x509_certificate(c.as_ref())
            .map_err(|e| format!("certificate does not parse: {e}"))?;
        out.push(c.as_ref().to_vec());
    }
    if out.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(out)
}

fn validate(raw: RawConfig, src: &Source<'_>, base: Option<&Path>) -> Result<Config, ConfigError> {
    let mut cfg = Config::default();
    if let Some(s) = raw.id_scope {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ConfigError::new(
                src.key_line("id_scope"),
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
            return Err(ConfigError::new(
                src.key_line("api_versions"),
                "api_versions must not be empty",
            ));
        }
        for x in &v {
            if !looks_like_api_version(x) {
                return Err(ConfigError::new(
                    src.key_line("api_versions"),
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
        let line = src.hub_line(i);
        let name = h.host_name.trim().to_string();
        if name.is_empty() || name.contains(['/', ' ', ':']) {
            return Err(ConfigError::new(
                line,
                format!("hubs[{i}]: host_name {:?} is not a host name", h.host_name),
            ));
        }
        if cfg.hub(&name).is_some() {
            return Err(ConfigError::new(
                line,
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
            versions: t.versions.unwrap_or_default(),
        };
        let line = src.key_line("[tls]").or_else(|| src.key_line("tls"));
        for v in &cfg.tls.versions {
            if v != "1.2" && v != "1.3" {
                return Err(ConfigError::new(
                    line,
                    format!("tls.versions: {v:?} is not \"1.2\" or \"1.3\""),
                ));
            }
        }
        let tls = &cfg.tls;
        if tls.server_cert_file.is_some() != tls.server_key_file.is_some() {
            return Err(ConfigError::new(
                line,
                "tls: server_cert_file and server_key_file go together",
            ));
        }
        if tls.server_cert_file.is_some() && tls.ca_cert_file.is_none() {
            return Err(ConfigError::new(
                line,
                "tls: server_cert_file needs ca_cert_file (the CA clients must trust)",
            ));
        }
        if tls.server_cert_file.is_none() && tls.ca_cert_file.is_some() != tls.ca_key_file.is_some()
        {
            return Err(ConfigError::new(
                line,
                "tls: ca_cert_file and ca_key_file go together (or give server_cert_file/server_key_file)",
            ));
        }
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
        let line = src.enrollment_line(i);
        let label = match (&e.registration_id, &e.group_id) {
            (Some(r), _) => format!("enrollments[{i}] (registration_id {r:?})"),
            (None, Some(g)) => format!("enrollments[{i}] (group_id {g:?})"),
            _ => format!("enrollments[{i}]"),
        };
        let enr = validate_enrollment(e, &cfg, base).map_err(|m| {
            ConfigError::new(
                src.enrollment_field_line(i, &m).or(line),
                format!("{label}: {m}"),
            )
        })?;
        if cfg.enrollments.iter().any(|o| match (&o.kind, &enr.kind) {
            (
                EnrollmentKind::Individual { registration_id: a },
                EnrollmentKind::Individual { registration_id: b },
            ) => a.eq_ignore_ascii_case(b),
            (EnrollmentKind::Group { group_id: a }, EnrollmentKind::Group { group_id: b }) => {
                a.eq_ignore_ascii_case(b)
            }
            _ => false,
        }) {
            return Err(ConfigError::new(line, format!("{label}: duplicate id")));
        }
        cfg.enrollments.push(enr);
    }
    if !cfg.enrollments.is_empty() && cfg.hubs.is_empty() {
        return Err(ConfigError::new(
            None,
            "at least one [[hubs]] entry is needed when there are enrollments",
        ));
    }
    Ok(cfg)
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

fn validate_enrollment(
    e: RawEnrollment,
    cfg: &Config,
    base: Option<&Path>,
) -> Result<Enrollment, String> {
    let kind = match (e.registration_id, e.group_id) {
        (Some(r), None) => {
            if !valid_registration_id(&r) {
                return Err(format!(
                    "registration_id {r:?} is invalid (alphanumerics and -._:, up to 128, starts alphanumeric, ends alphanumeric or -)"
                ));
            }
            EnrollmentKind::Individual { registration_id: r }
        }
        (None, Some(g)) => {
            if g.is_empty() || g.len() > 128 {
                return Err("group_id must be 1..128 characters".into());
            }
            EnrollmentKind::Group { group_id: g }
        }
        (Some(_), Some(_)) => {
            return Err("set registration_id (individual) or group_id (group), not both".into());
        }
        (None, None) => {
            return Err("needs registration_id (individual) or group_id (group)".into());
        }
    };
    let group = matches!(kind, EnrollmentKind::Group { .. });
    let att = e
        .attestation
        .ok_or("missing attestation (\"symmetric_key\" or \"x509\")")?;
    let attestation = match att.as_str() {
        "symmetric_key" => {
            if e.thumbprint.is_some() || e.ca_pem.is_some() || e.ca_file.is_some() {
                return Err("thumbprint/ca_pem/ca_file are for x509 attestation".into());
            }
            let p = e
                .primary_key
                .ok_or("symmetric_key attestation needs primary_key")?;
            let mut keys = vec![decode_key("primary_key", &p)?];
            if let Some(s) = e.secondary_key {
                keys.push(decode_key("secondary_key", &s)?);
            }
            Attestation::SymmetricKey { keys }
        }
        "x509" => {
            if e.primary_key.is_some() || e.secondary_key.is_some() {
                return Err("primary_key/secondary_key are for symmetric_key attestation".into());
            }
            if group {
                if e.thumbprint.is_some() {
                    return Err(
                        "x509 group enrollments use ca_pem or ca_file, not thumbprint".into(),
                    );
                }
                let text = match (e.ca_pem, e.ca_file) {
                    (Some(p), None) => p,
                    (None, Some(f)) => {
                        let f = match base {
                            Some(b) if f.is_relative() => b.join(f),
                            _ => f,
                        };
                        std::fs::read_to_string(&f)
                            .map_err(|err| format!("cannot read ca_file {}: {err}", f.display()))?
                    }
                    _ => {
                        return Err(
                            "x509 group enrollment needs exactly one of ca_pem, ca_file".into()
                        );
                    }
                };
                Attestation::X509Ca(pem_certs(&text).map_err(|m| format!("group CA: {m}"))?)
            } else {
                if e.ca_pem.is_some() || e.ca_file.is_some() {
                    return Err(
                        "x509 individual enrollments use thumbprint (SHA-256 of the device certificate), not ca_pem".into(),
                    );
                }
                let mut tps = Vec::new();
                for (name, t) in [
                    ("thumbprint", e.thumbprint),
                    ("secondary_thumbprint", e.secondary_thumbprint),
                ] {
                    if let Some(t) = t {
                        let n = crate::util::normalize_thumbprint(&t);
                        if n.len() != 64 || !n.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return Err(format!(
                                "{name} must be a SHA-256 thumbprint (64 hex digits, colons allowed), got {t:?}"
                            ));
                        }
                        tps.push(n);
                    }
                }
                if tps.is_empty() {
                    return Err("x509 individual enrollment needs thumbprint".into());
                }
                Attestation::X509Thumbprints(tps)
            }
        }
        other => {
            return Err(format!(
                "attestation {other:?} is not \"symmetric_key\" or \"x509\" (TPM is not emulated)"
            ));
        }
    };
    if group && e.device_id.is_some() {
        return Err("device_id override is only for individual enrollments".into());
    }
    if let Some(d) = &e.device_id
        && (d.is_empty() || d.len() > 128)
    {
        return Err("device_id must be 1..128 characters".into());
    }
    let allocation = match e.allocation.as_deref().unwrap_or("hashed") {
        "hashed" => Allocation::Hashed,
        "static" => Allocation::Static,
        "round_robin" => Allocation::RoundRobin,
        o => {
            return Err(format!(
                "allocation {o:?} is not \"hashed\", \"static\" or \"round_robin\""
            ));
        }
    };
    let reprovision = match e.reprovision.as_deref().unwrap_or("migrate") {
        "migrate" => Reprovision::Migrate,
        "reset" => Reprovision::Reset,
        "never" => Reprovision::Never,
        o => {
            return Err(format!(
                "reprovision {o:?} is not \"migrate\", \"reset\" or \"never\""
            ));
        }
    };
    let hubs = match e.hubs {
        Some(list) => {
            if list.is_empty() {
                return Err("hubs must not be empty (omit it to use all hubs)".into());
            }
            let mut out = Vec::new();
            for h in list {
                let hub = cfg
                    .hub(&h)
                    .ok_or_else(|| format!("hub {h:?} is not declared in [[hubs]]"))?;
                out.push(hub.host_name.clone());
            }
            out
        }
        None => cfg.hubs.iter().map(|h| h.host_name.clone()).collect(),
    };
    let initial_hub = match e.initial_hub {
        Some(h) => Some(
            cfg.hub(&h)
                .ok_or_else(|| format!("initial_hub {h:?} is not declared in [[hubs]]"))?
                .host_name
                .clone(),
        ),
        None => None,
    };
    if let Some(p) = &e.payload
        && !p.is_object()
    {
        return Err("payload must be an object".into());
    }
    let mut faults = Vec::new();
    for (j, f) in e.faults.into_iter().enumerate() {
        let times = f.times.unwrap_or(1);
        let step = validate_fault(f).map_err(|m| format!("faults[{j}]: {m}"))?;
        for _ in 0..times {
            faults.push(step.clone());
        }
    }
    Ok(Enrollment {
        kind,
        attestation,
        device_id: e.device_id,
        enabled: e.enabled.unwrap_or(true),
        allocation,
        hubs,
        initial_hub,
        reprovision,
        payload: e.payload,
        echo_payload: e.echo_payload.unwrap_or(false),
        retry_after_secs: e.retry_after_secs,
        assigning_polls: e.assigning_polls,
        faults,
    })
}

fn validate_fault(f: RawFault) -> Result<FaultStep, String> {
    let on = match f.on.as_deref().unwrap_or("any") {
        "register" => FaultOn::Register,
        "poll" | "operation" => FaultOn::Poll,
        "lookup" => FaultOn::Lookup,
        "any" => FaultOn::Any,
        o => {
            return Err(format!(
                "on = {o:?} is not \"register\", \"poll\", \"lookup\" or \"any\""
            ));
        }
    };
    let retry_after = match (f.retry_after, f.retry_after_http_date_secs) {
        (Some(_), Some(_)) => {
            return Err("use retry_after or retry_after_http_date_secs, not both".into());
        }
        (Some(StrOrInt::Str(s)), None) => Some(RetryAfter::Raw(s)),
        (Some(StrOrInt::Int(n)), None) => Some(RetryAfter::Raw(n.to_string())),
        (None, Some(n)) => Some(RetryAfter::HttpDateIn(n)),
        (None, None) => None,
    };
    let kinds = [f.action.is_some(), f.result.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if kinds > 1 {
        return Err("a step has either action or result (or just status)".into());
    }
    let kind = if let Some(a) = f.action.as_deref() {
        match a {
            "close" => FaultKind::Close,
            "truncate" => FaultKind::Truncate,
            "malformed_json" => FaultKind::MalformedJson,
            "wrong_content_type" => FaultKind::WrongContentType {
                content_type: f
                    .content_type
                    .unwrap_or_else(|| "text/html; charset=utf-8".into()),
            },
            "delay" => FaultKind::Delay {
                ms: f.ms.ok_or("delay needs ms")?,
            },
            "oversized" => FaultKind::Oversized {
                bytes: f.bytes.unwrap_or(200_000),
            },
            "trickle" => FaultKind::Trickle {
                chunk_bytes: f.chunk_bytes.unwrap_or(1).max(1),
                interval_ms: f.interval_ms.unwrap_or(100),
            },
            "black_hole" => FaultKind::BlackHole,
            "endless_assigning" => FaultKind::EndlessAssigning,
            o => {
                return Err(format!(
                    "unknown action {o:?} (close, truncate, malformed_json, wrong_content_type, delay, oversized, trickle, black_hole, endless_assigning)"
                ));
            }
        }
    } else if let Some(r) = f.result.as_deref() {
        FaultKind::Result(match r {
            "failed" => {
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
            "disabled" => TerminalResult::Disabled,
            "assigned_without_hub" => TerminalResult::AssignedWithoutHub,
            o => {
                return Err(format!(
                    "unknown result {o:?} (failed, disabled, assigned_without_hub)"
                ));
            }
        })
    } else if let Some(status) = f.status {
        if !(300..=599).contains(&status) {
            return Err(format!("status {status} must be in 300..=599"));
        }
        let error_code = f.error_code.unwrap_or(status as u32 * 1000 + 1);
        FaultKind::Status {
            status,
            error_code,
            message: f.message.unwrap_or_else(|| default_message(status).into()),
            retry_after,
        }
    } else {
        return Err("a step needs action, result or status".into());
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

#[cfg(test)]
mod tests {
    use super::*;

    const EX: &str = r#"
id_scope = "0ne00000001"
retry_after_secs = 0
[[hubs]]
host_name = "hub-a.azure-devices.net"
[[hubs]]
host_name = "hub-b.azure-devices.net"

[[enrollments]]
registration_id = "dev-sym"
attestation = "symmetric_key"
primary_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
faults = [ { on = "register", status = 429, retry_after = 2 }, { action = "close", times = 2 } ]

[[enrollments]]
group_id = "g1"
attestation = "symmetric_key"
primary_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
hubs = ["hub-b.azure-devices.net"]
payload = { a = 1 }
"#;

    #[test]
    fn example_parses() {
        let c = Config::from_toml_str(EX).unwrap();
        assert_eq!(c.hubs.len(), 2);
        assert_eq!(c.enrollments.len(), 2);
        assert_eq!(c.enrollments[0].faults.len(), 3);
        assert_eq!(c.enrollments[1].hubs, vec!["hub-b.azure-devices.net"]);
        assert_eq!(c.retry_after_secs, 0);
    }

    #[test]
    fn errors_name_the_line() {
        let bad = EX.replace(
            "primary_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\nhubs",
            "primary_key = \"!!\"\nhubs",
        );
        let e = Config::from_toml_str(&bad).unwrap_err();
        assert_eq!(e.line, Some(18), "{e}");
        assert!(
            e.to_string().contains("primary_key is not valid base64"),
            "{e}"
        );

        let e = Config::from_toml_str("id_scope = \"x\"\nbogus = 1\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("bogus"), "{e}");

        let bad = EX.replace("status = 429", "status = 200");
        let e = Config::from_toml_str(&bad).unwrap_err();
        assert!(e.to_string().contains("faults[0]: status 200"), "{e}");

        let bad = EX.replace("hubs = [\"hub-b", "hubs = [\"hub-c");
        let e = Config::from_toml_str(&bad).unwrap_err();
        assert!(e.to_string().contains("not declared"), "{e}");
    }

    #[test]
    fn json_works() {
        let c = Config::from_json_str(
            r#"{"id_scope":"0ne1","hubs":[{"host_name":"h"}],"enrollments":[{"registration_id":"d","attestation":"x509","thumbprint":"aa:bb"}]}"#,
        );
        assert!(c.unwrap_err().message.contains("thumbprint must be"));
        let e = Config::from_json_str("{\n\"id_scope\": 5}").unwrap_err();
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn regid_rule() {
        assert!(valid_registration_id("dev-01"));
        assert!(valid_registration_id("a.b_c:d-"));
        assert!(!valid_registration_id("-a"));
        assert!(!valid_registration_id("a."));
        assert!(!valid_registration_id("a b"));
        assert!(!valid_registration_id(&"a".repeat(129)));
    }
}
