//! Emulator configuration: id scope, hubs, enrollments and scripted faults, from TOML or JSON.
//!
//! Parsing is two-step: serde into the `raw` shapes (unknown fields and enum values are errors,
//! so typos are caught where they are), then `validate` into the public types with precise
//! messages. Each error is located: serde's by the parser (TOML span, JSON line), validation's
//! by the path of the value it is about, looked up in the TOML document's spans.

mod enrollment;
mod raw;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use validate::{Invalid, Seg};

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
    /// Individual: the device's TPM (PROTOCOL.md 5.4).
    Tpm(TpmEnrollment),
}

/// A TPM individual enrollment. `Debug` leaves the hub key out.
#[derive(Clone, PartialEq)]
pub struct TpmEnrollment {
    /// The enrolled EK; a device sending another one is refused.
    pub endorsement_key: crate::tpm::RsaPublic,
    /// The IoT Hub key handed to the device in the final answer (32 bytes); fresh per
    /// registration when `None`.
    pub hub_key: Option<Vec<u8>>,
    /// Fault: damage this activation blob (the TPM then refuses it in ActivateCredential).
    pub corrupt_blob: Option<CorruptBlob>,
}

impl std::fmt::Debug for TpmEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmEnrollment")
            .field("endorsement_key", &self.endorsement_key)
            .field("hub_key", &self.hub_key.as_ref().map(|_| "<set>"))
            .field("corrupt_blob", &self.corrupt_blob)
            .finish()
    }
}

/// `corrupt_blob = "..."` of a TPM enrollment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorruptBlob {
    /// The `authenticationKey` of the 401 challenge.
    Challenge,
    /// `registrationState.tpm.authenticationKey` of the final answer.
    Hub,
}

impl Attestation {
    /// The `attestation` value in the configuration.
    pub fn config_name(&self) -> &'static str {
        match self {
            Attestation::SymmetricKey { .. } => "symmetric_key",
            Attestation::X509Thumbprints(_) | Attestation::X509Ca(_) => "x509",
            Attestation::Tpm(_) => "tpm",
        }
    }
    /// The member of `registrationState` that names the attestation (`"x509": {..}`).
    pub fn record_member(&self) -> &'static str {
        match self {
            Attestation::SymmetricKey { .. } => "symmetricKey",
            Attestation::X509Thumbprints(_) | Attestation::X509Ca(_) => "x509",
            Attestation::Tpm(_) => "tpm",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrollmentKind {
    Individual { registration_id: String },
    Group { group_id: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// Stable hash of the registration id over the enrollment's hubs.
    Hashed,
    /// Always the first of the enrollment's hubs.
    Static,
    /// Registration n of a device goes to hub n mod len (makes every re-registration move).
    RoundRobin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// How a CSR sent with a registration of this enrollment is answered.
    pub issuance: Issuance,
}

/// The key types a device's CSR may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CsrKeyType {
    /// ECDSA on NIST P-256.
    P256,
    /// ECDSA on NIST P-384 (what DPS documents for the preview).
    P384,
    /// RSA, 2048 bits or more.
    Rsa,
}

/// Certificate issuance for CSRs (api-version 2025-07-01-preview and later).
#[derive(Clone, PartialEq, Eq)]
pub struct Issuance {
    /// The issuing CA; `None`: the emulator's own device issuing CA.
    pub ca: Option<IssuingCa>,
    /// Validity of issued certificates in days from the day of issuance; `None`: a fixed
    /// 2024-01-01..2049-12-31.
    pub validity_days: Option<u32>,
    /// Key types accepted in a CSR (default: all).
    pub key_types: Vec<CsrKeyType>,
}

impl Default for Issuance {
    fn default() -> Issuance {
        Issuance {
            ca: None,
            validity_days: None,
            key_types: vec![CsrKeyType::P256, CsrKeyType::P384, CsrKeyType::Rsa],
        }
    }
}

impl fmt::Debug for Issuance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuance")
            .field("ca", &self.ca.as_ref().map(|_| "configured"))
            .field("validity_days", &self.validity_days)
            .field("key_types", &self.key_types)
            .finish()
    }
}

/// An issuing CA: its certificate PEM (optionally followed by its parents up to the root, which
/// issued chains then carry) and its private key PEM (never shown in Debug output).
#[derive(Clone, PartialEq, Eq)]
pub struct IssuingCa {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A deliberately broken `issuedCertificateChain`, to test a client's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainFault {
    /// The leaf certifies a key other than the CSR's.
    WrongKey,
    /// The chain is sent root first (each certificate is not issued by the next).
    WrongOrder,
    /// The leaf expired yesterday.
    Expired,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultOn {
    Register,
    #[serde(alias = "operation")]
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
    /// The certificate issued for this registration's CSR is broken so (no effect without a CSR).
    BrokenChain(ChainFault),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultStep {
    pub on: FaultOn,
    pub kind: FaultKind,
}

// ---------------------------------------------------------------- loading

/// The line (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    ConfigError::new(
        e.span().map(|sp| line_of(text, sp.start)),
        format!("invalid TOML: {}", e.message().trim()),
    )
}

fn json_error(e: &serde_json::Error) -> ConfigError {
    ConfigError::new(
        Some(e.line()),
        format!("invalid JSON: {e} (column {})", e.column()),
    )
}

/// The line of the value at `path` in a TOML document: the deepest part of the path that the
/// document spells out (a value the file omits is reported at its table).
fn toml_line(text: &str, path: &[Seg]) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut node = None::<&toml::Spanned<toml::de::DeValue<'_>>>;
    let mut span = None;
    for seg in path {
        let next = match (seg, node) {
            (Seg::Key(k), None) => doc.get_ref().get(*k),
            (Seg::Key(k), Some(v)) => v.get_ref().get(*k),
            (Seg::Index(i), Some(v)) => v.get_ref().get(*i),
            (Seg::Index(_), None) => None,
        };
        let Some(next) = next else { break };
        span = Some(next.span());
        node = Some(next);
    }
    span.map(|s| line_of(text, s.start))
}

enum Format {
    Toml,
    Json,
}

fn parse(text: &str, format: Format, base: Option<&Path>) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = match format {
        Format::Toml => toml::from_str(text).map_err(|e| toml_error(text, &e))?,
        Format::Json => serde_json::from_str(text).map_err(|e| json_error(&e))?,
    };
    validate::config(raw, base).map_err(|Invalid { path, message }| {
        let line = match format {
            Format::Toml => toml_line(text, &path),
            Format::Json => None,
        };
        ConfigError::new(line, message)
    })
}

impl Config {
    /// Parses a TOML configuration (see the README for the schema).
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        parse(s, Format::Toml, None)
    }

    /// Parses a JSON configuration with the same schema as TOML.
    pub fn from_json_str(s: &str) -> Result<Config, ConfigError> {
        parse(s, Format::Json, None)
    }

    /// Reads a `.toml` or `.json` file (by extension; anything else is tried as TOML).
    /// Relative paths inside (`ca_file`, the `[tls]` files) are relative to the file.
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
        let format = if is_json { Format::Json } else { Format::Toml };
        parse(&text, format, base.as_deref()).map_err(with_file)
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

    /// The error for `EX` with `from` replaced by `to` (which must change it).
    fn refused(from: &str, to: &str) -> ConfigError {
        let bad = EX.replacen(from, to, 1);
        assert_ne!(bad, EX, "{from}");
        Config::from_toml_str(&bad).unwrap_err()
    }

    #[test]
    fn errors_are_located_by_the_parser_spans() {
        for (from, to, line, what) in [
            // a validation error inside an inline fault table: the line of that value
            ("status = 429", "status = 200", 13, "must be in 300..=599"),
            // about the enrollment as a whole: the line of its [[enrollments]] header
            (
                "registration_id = \"dev-sym\"\nattestation = \"symmetric_key\"",
                "registration_id = \"dev-sym\"",
                9,
                "missing attestation",
            ),
            // a hub that is not declared, in the enrollment's hubs array
            ("hubs = [\"hub-b", "hubs = [\"hub-c", 19, "not declared"),
            // the second of two duplicate hubs
            (
                "hub-b.azure-devices.net\"\n\n",
                "HUB-A.azure-devices.net\"\n\n",
                7,
                "duplicate host_name",
            ),
            // serde's enums: the parser's own span
            ("status = 429", "action = \"closee\"", 13, "unknown variant"),
            (
                "on = \"register\"",
                "on = \"everything\"",
                13,
                "unknown variant",
            ),
            (
                "attestation = \"symmetric_key\"",
                "attestation = \"tpmm\"",
                11,
                "unknown variant",
            ),
            (
                "payload = { a = 1 }",
                "allocation = \"random\"",
                20,
                "unknown variant",
            ),
        ] {
            let e = refused(from, to);
            assert!(e.message.contains(what), "{e}");
            assert_eq!(e.line, Some(line), "{e}");
        }
    }

    #[test]
    fn enums_are_parsed_by_serde() {
        let ok = EX.replace(
            "payload = { a = 1 }",
            "allocation = \"round_robin\"\nreprovision = \"never\"",
        );
        let c = Config::from_toml_str(&ok).unwrap();
        assert_eq!(c.enrollments[1].allocation, Allocation::RoundRobin);
        assert_eq!(c.enrollments[1].reprovision, Reprovision::Never);
        let c =
            Config::from_toml_str(&EX.replace("on = \"register\"", "on = \"operation\"")).unwrap();
        assert_eq!(c.enrollments[0].faults[0].on, FaultOn::Poll);
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
    fn tpm_enrollments() {
        const EK: &str = crate::tpm::tests_support::V8_EK;
        let base = "[[hubs]]\nhost_name = \"h\"\n[[enrollments]]\nattestation = \"tpm\"\n";
        let load = |extra: &str| Config::from_toml_str(&format!("{base}{extra}"));
        // Without registration_id: the one the device derives from its EK (V8).
        let c = load(&format!(
            "endorsement_key = \"{EK}\"\nhub_key = \"{}\"\n",
            "A".repeat(43) + "="
        ))
        .unwrap();
        let e = &c.enrollments[0];
        assert_eq!(
            e.id(),
            "6rek5qncnygnkzflohxz4u6zlfly6ktm4klsc7xrbgvesqyllnfa"
        );
        assert_eq!(e.attestation.record_member(), "tpm");
        let Attestation::Tpm(t) = &e.attestation else {
            panic!("{e:?}")
        };
        assert_eq!(t.hub_key.as_deref(), Some(&[0u8; 32][..]));
        assert!(
            !format!("{c:?}").contains("[0, 0, 0"),
            "Debug shows the hub key"
        );
        let c = load(&format!(
            "registration_id = \"d1\"\nendorsement_key = \"{EK}\"\ncorrupt_blob = \"hub\"\n"
        ))
        .unwrap();
        assert_eq!(c.enrollments[0].id(), "d1");
        for (extra, what) in [
            (String::new(), "needs endorsement_key"),
            (
                "endorsement_key = \"AAAA\"\n".to_string(),
                "endorsement_key (base64 TPM2B_PUBLIC): malformed",
            ),
            (
                format!("endorsement_key = \"{EK}\"\nhub_key = \"AAAA\"\n"),
                "hub_key must decode to 32 bytes",
            ),
            (
                format!("endorsement_key = \"{EK}\"\nprimary_key = \"AAAA\"\n"),
                "not keys or certificates",
            ),
            (
                format!("group_id = \"g\"\nendorsement_key = \"{EK}\"\n"),
                "individual enrollments only",
            ),
            (
                format!("endorsement_key = \"{EK}\"\ncorrupt_blob = \"all\"\n"),
                "unknown variant",
            ),
        ] {
            let e = load(&extra).unwrap_err();
            assert!(e.message.contains(what), "{extra}: {e}");
        }
        let e = Config::from_toml_str(&EX.replace(
            "primary_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\nfaults",
            &format!("primary_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\nendorsement_key = \"{EK}\"\nfaults"),
        ))
        .unwrap_err();
        assert!(e.message.contains("are for tpm attestation"), "{e}");
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
