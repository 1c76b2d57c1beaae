//! Client configuration: a builder with validating setters, and the immutable
//! [`Config`] it builds (shareable between clients and threads).

use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};
use zeroize::Zeroizing;

use crate::credential::x509::csr::PreparedCsr;
use crate::credential::{Credential, CsrKey, HmacKey, SymmetricKey, X509Credential};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{self, ids, sas, wire};
use crate::retry::Backoff;
use crate::transport::tls::{self, DefaultRoots};
use crate::transport::{Proxy, parse_host_port};

/// Default overall deadline of one registration.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);
/// Default per-request timeout (connect + TLS + response).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default SAS token lifetime.
pub const DEFAULT_SAS_TTL: Duration = Duration::from_secs(3600);
/// Poll interval when DPS sends no `Retry-After` (the SDKs' common 2 s).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// At most this many polls of one operation per [`PollRate::window`]: DPS documents 5 polls
/// per 10 s per device (PROTOCOL.md 3.5). Polls follow `Retry-After` exactly until the budget
/// of the window is spent, then wait for the window to free a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollRate {
    /// Polls allowed within one window.
    pub max_polls: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Default for PollRate {
    fn default() -> Self {
        PollRate {
            max_polls: 5,
            window: Duration::from_secs(10),
        }
    }
}

/// Largest `Retry-After` honoured as given; longer ones are capped.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Clone)]
enum CredentialSpec {
    X509(X509Credential),
    Individual(SymmetricKey),
    /// The group key (base64, checked when set); the device key is derived at build time,
    /// when the registration ID is final.
    Group(Zeroizing<String>),
    #[cfg(feature = "tpm")]
    Tpm(crate::credential::TpmCredential),
}

/// Builds a [`Config`]. Setters validate their input at once; [`ConfigBuilder::build`]
/// checks the combination and prepares the TLS configuration.
#[derive(Clone)]
pub struct ConfigBuilder {
    id_scope: String,
    registration_id: Option<String>,
    host: String,
    port: u16,
    api_version: String,
    api_version_set: bool,
    csr: Option<CsrKey>,
    credential: Option<CredentialSpec>,
    payload_json: Option<String>,
    force_registration: bool,
    default_roots: DefaultRoots,
    extra_roots: RootCertStore,
    proxy: Option<Proxy>,
    deadline: Duration,
    request_timeout: Duration,
    sas_ttl: Duration,
    poll_interval: Duration,
    max_retry_after: Duration,
    poll_rate: PollRate,
    backoff: Backoff,
    user_agent_suffix: Option<String>,
}

impl std::fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigBuilder")
            .field("id_scope", &self.id_scope)
            .field("registration_id", &self.registration_id)
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "credential",
                &self.credential.as_ref().map(CredentialSpec::kind),
            )
            .finish_non_exhaustive()
    }
}

impl CredentialSpec {
    fn kind(&self) -> &'static str {
        match self {
            CredentialSpec::X509(_) => "x509",
            CredentialSpec::Individual(_) => "symmetric key",
            CredentialSpec::Group(_) => "group key",
            #[cfg(feature = "tpm")]
            CredentialSpec::Tpm(_) => "tpm",
        }
    }
}

impl ConfigBuilder {
    /// Starts a configuration for the given ID scope.
    pub fn new(id_scope: &str) -> Result<Self> {
        ids::validate_id_scope(id_scope)?;
        Ok(ConfigBuilder {
            id_scope: id_scope.to_owned(),
            registration_id: None,
            host: protocol::DEFAULT_HOST.to_owned(),
            port: 443,
            api_version: protocol::DEFAULT_API_VERSION.to_owned(),
            api_version_set: false,
            csr: None,
            credential: None,
            payload_json: None,
            force_registration: false,
            default_roots: DefaultRoots::Azure,
            extra_roots: RootCertStore::empty(),
            proxy: None,
            deadline: DEFAULT_DEADLINE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            sas_ttl: DEFAULT_SAS_TTL,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            poll_rate: PollRate::default(),
            backoff: Backoff::default(),
            user_agent_suffix: None,
        })
    }

    /// Sets the registration ID. Optional with X.509: it defaults to the leaf
    /// certificate's subject CN.
    pub fn registration_id(&mut self, id: &str) -> Result<&mut Self> {
        ids::validate_registration_id(id)?;
        self.registration_id = Some(id.to_owned());
        Ok(self)
    }

    /// Uses an X.509 certificate chain and key (mutual TLS).
    pub fn x509(&mut self, credential: X509Credential) -> &mut Self {
        self.credential = Some(CredentialSpec::X509(credential));
        self
    }

    /// Uses an individual enrollment's symmetric key (base64).
    pub fn symmetric_key(&mut self, base64_key: &str) -> Result<&mut Self> {
        self.credential = Some(CredentialSpec::Individual(SymmetricKey::individual(
            base64_key,
        )?));
        Ok(self)
    }

    /// Uses an enrollment group key (base64); the device key is derived from it
    /// and the registration ID.
    pub fn group_key(&mut self, base64_group_key: &str) -> Result<&mut Self> {
        sas::decode_key(base64_group_key)?;
        self.credential = Some(CredentialSpec::Group(Zeroizing::new(
            base64_group_key.trim().to_owned(),
        )));
        Ok(self)
    }

    /// Uses a symmetric key the library never sees: every SAS signature is computed by `key`
    /// (a C callback, a PKCS#11 token, a TPM). For a group enrollment, `key` holds the
    /// device key derived at the factory.
    pub fn hmac_key(&mut self, key: Arc<dyn HmacKey>) -> &mut Self {
        self.credential = Some(CredentialSpec::Individual(SymmetricKey::from_hmac_key(key)));
        self
    }

    /// TPM attestation with an open TPM (PROTOCOL.md 5.4). Without a registration ID set, the
    /// one derived from the EK is used.
    #[cfg(feature = "tpm")]
    pub fn tpm(&mut self, tpm: Arc<crate::tpm::Tpm>) -> &mut Self {
        self.credential = Some(CredentialSpec::Tpm(crate::credential::TpmCredential::new(
            tpm,
        )));
        self
    }

    #[cfg(all(feature = "tpm", test))]
    pub(crate) fn tpm_credential(&mut self, c: crate::credential::TpmCredential) -> &mut Self {
        self.credential = Some(CredentialSpec::Tpm(c));
        self
    }

    /// Sends a custom allocation payload; it must be a JSON object.
    pub fn payload_json(&mut self, json: &str) -> Result<&mut Self> {
        self.payload_json = Some(wire::normalize_payload(json)?);
        Ok(self)
    }

    /// Sets the DPS endpoint: `host`, `host:port`, `[IPv6]:port` or
    /// `IPv4:port` (port 443 when absent). The host is checked at once (see
    /// [`crate::transport::parse_host_port`]); a malformed one is refused with
    /// [`ErrorKind::InvalidEndpoint`] and a message that shows the accepted forms.
    pub fn endpoint(&mut self, host_port: &str) -> Result<&mut Self> {
        let (host, port) = parse_host_port(host_port, 443).map_err(|why| {
            Error::new(
                ErrorKind::InvalidEndpoint,
                format!(
                    "endpoint {} is not valid: {why}; accepted forms: host, host:port, [::1]:443, 1.2.3.4:443",
                    echo(host_port)
                ),
            )
        })?;
        self.host = host;
        self.port = port;
        Ok(self)
    }

    /// Overrides the `api-version` (default 2021-06-01).
    pub fn api_version(&mut self, v: &str) -> Result<&mut Self> {
        if v.is_empty()
            || v.len() > 32
            || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "api-version {} is malformed (1-32 letters, digits and '-')",
                    echo(v)
                ),
            ));
        }
        self.api_version = v.to_owned();
        self.api_version_set = true;
        Ok(self)
    }

    /// **Experimental.** Sends a certificate signing request with the registration
    /// (PROTOCOL.md 1.3): DPS issues an operational certificate for `key`, returned checked in
    /// [`Registration::issued_certificate_chain_pem`](crate::Registration) (and, for a
    /// generated key, the key in `issued_private_key_pem`). The CSR is made when the
    /// configuration is built (a generated key is generated then), its subject CN is the
    /// registration ID. Unless [`api_version`](Self::api_version) was called, the
    /// api-version becomes 2025-07-01-preview. Whether the real DPS accepts `csr` over HTTPS
    /// is unconfirmed.
    pub fn csr(&mut self, key: CsrKey) -> &mut Self {
        self.csr = Some(key);
        self
    }

    /// Adds `forceRegistration=true` to the register request.
    pub fn force_registration(&mut self, yes: bool) -> &mut Self {
        self.force_registration = yes;
        self
    }

    /// Adds trusted root certificates (PEM, one or more). Returns how many.
    pub fn add_trusted_roots_pem(&mut self, pem: &[u8]) -> Result<usize> {
        tls::add_pem_roots(&mut self.extra_roots, pem)
    }

    /// Chooses the built-in roots (default: the Azure subset of Mozilla's bundle).
    /// [`DefaultRoots::Mozilla`] needs the `mozilla-roots` feature: without it this is the
    /// one place that refuses it ([`ErrorKind::Unsupported`]).
    pub fn default_roots(&mut self, roots: DefaultRoots) -> Result<&mut Self> {
        if roots == DefaultRoots::Mozilla && !tls::HAS_MOZILLA_ROOTS {
            return Err(mozilla_unsupported());
        }
        self.default_roots = roots;
        Ok(self)
    }

    /// Uses an HTTP CONNECT proxy: `http://[user:pass@]host[:port]`.
    pub fn proxy(&mut self, url: &str) -> Result<&mut Self> {
        self.proxy = Some(Proxy::parse(url)?);
        Ok(self)
    }

    /// Reads the proxy from `HTTPS_PROXY`/`https_proxy` unless `NO_PROXY` lists
    /// the endpoint host. Returns whether a proxy was set.
    pub fn proxy_from_env(&mut self) -> Result<bool> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let Some(url) = get("HTTPS_PROXY").or_else(|| get("https_proxy")) else {
            return Ok(false);
        };
        let no_proxy = get("NO_PROXY")
            .or_else(|| get("no_proxy"))
            .unwrap_or_default();
        let host = self.host.to_ascii_lowercase();
        let excluded = no_proxy
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .any(|p| {
                let p = p.trim_start_matches('.').to_ascii_lowercase();
                p == "*" || host == p || host.ends_with(&format!(".{p}"))
            });
        if excluded {
            return Ok(false);
        }
        self.proxy(&url)?;
        Ok(true)
    }

    /// Overall deadline of one registration (default 5 min).
    pub fn deadline(&mut self, d: Duration) -> Result<&mut Self> {
        self.deadline = nonzero(d, "deadline")?;
        Ok(self)
    }

    /// Per-request timeout: connect, TLS and response (default 30 s).
    pub fn request_timeout(&mut self, d: Duration) -> Result<&mut Self> {
        self.request_timeout = nonzero(d, "request timeout")?;
        Ok(self)
    }

    /// SAS token lifetime (default 1 h).
    pub fn sas_ttl(&mut self, d: Duration) -> Result<&mut Self> {
        self.sas_ttl = nonzero(d, "SAS lifetime")?;
        Ok(self)
    }

    /// Poll interval when DPS sends no `Retry-After` (default 2 s).
    pub fn poll_interval(&mut self, d: Duration) -> &mut Self {
        self.poll_interval = d;
        self
    }

    /// Backoff bounds for retries without `Retry-After` (default 1 s to 60 s).
    pub fn backoff(&mut self, min: Duration, max: Duration) -> Result<&mut Self> {
        if min > max {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "backoff minimum exceeds its maximum",
            ));
        }
        self.backoff = Backoff { min, max };
        Ok(self)
    }

    /// Limits the polls of one operation to `max_polls` per sliding `window` (default 5 per
    /// 10 s, DPS's documented per-device limit). `Retry-After` is honoured exactly, 0
    /// included, until the window's budget is spent; further polls wait for a free slot.
    pub fn poll_rate(&mut self, max_polls: u32, window: Duration) -> Result<&mut Self> {
        if max_polls == 0 || window.is_zero() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the poll rate needs at least 1 poll per window and a window longer than 0",
            ));
        }
        self.poll_rate = PollRate { max_polls, window };
        Ok(self)
    }

    /// Caps the `Retry-After` honoured (default 300 s).
    pub fn max_retry_after(&mut self, d: Duration) -> &mut Self {
        self.max_retry_after = d;
        self
    }

    /// Appends text to the User-Agent (for example the firmware version).
    pub fn user_agent_suffix(&mut self, s: &str) -> Result<&mut Self> {
        if s.len() > 128 || s.bytes().any(|b| b.is_ascii_control()) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "user agent suffix is too long or has control characters",
            ));
        }
        self.user_agent_suffix = Some(s.to_owned()).filter(|s| !s.is_empty());
        Ok(self)
    }

    /// Validates the whole configuration and prepares the TLS configuration.
    pub fn build(&self) -> Result<Config> {
        let spec = self.credential.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::NoCredential,
                "no credential: set an X.509 identity or a symmetric key",
            )
        })?;
        let registration_id = match (&self.registration_id, &spec) {
            (Some(id), CredentialSpec::X509(x)) => {
                if let Some(cn) = x.leaf_common_name() {
                    if !cn.eq_ignore_ascii_case(id) {
                        return Err(Error::new(
                            ErrorKind::InvalidCertificate,
                            format!(
                                "the certificate's subject CN {} differs from the registration ID {}; DPS requires them equal",
                                echo(&cn),
                                echo(id)
                            ),
                        ));
                    }
                }
                id.clone()
            }
            (Some(id), _) => id.clone(),
            (None, CredentialSpec::X509(x)) => {
                let cn = x.leaf_common_name().ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidRegistrationId,
                        "no registration ID set and the certificate has no subject CN",
                    )
                })?;
                ids::validate_registration_id(&cn)?;
                cn
            }
            #[cfg(feature = "tpm")]
            (None, CredentialSpec::Tpm(t)) => t.registration_id(),
            (None, _) => {
                return Err(Error::new(
                    ErrorKind::InvalidRegistrationId,
                    "no registration ID set",
                ));
            }
        };
        let credential = match spec {
            CredentialSpec::X509(x) => Credential::X509(x),
            CredentialSpec::Individual(k) => Credential::SymmetricKey(k),
            CredentialSpec::Group(g) => {
                Credential::SymmetricKey(SymmetricKey::from_group(&g, &registration_id)?)
            }
            #[cfg(feature = "tpm")]
            CredentialSpec::Tpm(t) => Credential::Tpm(t),
        };
        let client_cert = credential.tls_identity();
        let roots = tls::root_store(self.default_roots, &self.extra_roots);
        if roots.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidTrustAnchor,
                "no trusted roots: add one or keep the built-in ones",
            ));
        }
        let tls = tls::client_config(roots, client_cert, credential.tls13_allowed())?;
        let csr = self
            .csr
            .as_ref()
            .map(|k| k.prepare(&registration_id))
            .transpose()?;
        let api_version = if csr.is_some() && !self.api_version_set {
            protocol::CSR_API_VERSION.to_owned()
        } else {
            self.api_version.clone()
        };
        let mut user_agent = format!(
            "dps-rs/{} ({}; {})",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        if let Some(s) = &self.user_agent_suffix {
            user_agent.push(' ');
            user_agent.push_str(s);
        }
        Ok(Config {
            id_scope: self.id_scope.clone(),
            registration_id,
            host: self.host.clone(),
            port: self.port,
            api_version,
            csr,
            credential,
            payload_json: self.payload_json.clone(),
            force_registration: self.force_registration,
            tls,
            proxy: self.proxy.clone(),
            deadline: self.deadline,
            request_timeout: self.request_timeout,
            sas_ttl: self.sas_ttl,
            poll_interval: self.poll_interval,
            max_retry_after: self.max_retry_after,
            poll_rate: self.poll_rate,
            backoff: self.backoff,
            user_agent,
        })
    }
}

/// The error for `DefaultRoots::Mozilla` in a build without the bundle.
fn mozilla_unsupported() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "the whole Mozilla root bundle is not part of this build (cargo feature `mozilla-roots`)",
    )
}

/// Longest part of a caller's input quoted in an error message.
pub const MAX_ECHO_CHARS: usize = 128;

/// Quotes a caller's input for an error message: in double quotes, control
/// characters escaped, cut after [`MAX_ECHO_CHARS`] characters of the
/// rendering with an ellipsis (and the input's length), so that a message
/// never grows with the input.
pub fn echo(s: &str) -> String {
    let mut out = String::from("\"");
    let mut n = 0;
    for c in s.chars() {
        let escaped = c.is_control() || c == '"' || c == '\\';
        let width = if escaped {
            c.escape_default().count()
        } else {
            1
        };
        if n + width > MAX_ECHO_CHARS {
            out.push_str(&format!("…\" ({} characters)", s.chars().count()));
            return out;
        }
        if escaped {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        n += width;
    }
    out.push('"');
    out
}

fn nonzero(d: Duration, what: &str) -> Result<Duration> {
    if d.is_zero() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("the {what} must be greater than zero"),
        ));
    }
    Ok(d)
}

/// A validated, immutable configuration. Cheap to share: wrap it in an `Arc`
/// and create any number of clients from it.
pub struct Config {
    pub(crate) id_scope: String,
    pub(crate) registration_id: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) api_version: String,
    pub(crate) csr: Option<PreparedCsr>,
    pub(crate) credential: Credential,
    pub(crate) payload_json: Option<String>,
    pub(crate) force_registration: bool,
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) proxy: Option<Proxy>,
    pub(crate) deadline: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) sas_ttl: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) poll_rate: PollRate,
    pub(crate) backoff: Backoff,
    pub(crate) user_agent: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("id_scope", &self.id_scope)
            .field("registration_id", &self.registration_id)
            .field("endpoint", &format_args!("{}:{}", self.host, self.port))
            .field("api_version", &self.api_version)
            .field("csr", &self.csr)
            .field("credential", &self.credential)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The ID scope.
    pub fn id_scope(&self) -> &str {
        &self.id_scope
    }
    /// The registration ID (given, or the certificate's CN).
    pub fn registration_id(&self) -> &str {
        &self.registration_id
    }
    /// The credential.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }
    /// The overall deadline of one registration.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
    /// The `api-version` sent.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }
    /// The CSR sent with the registration (base64 DER), if one is set.
    pub fn csr_base64(&self) -> Option<&str> {
        self.csr.as_ref().map(|c| c.der_base64.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_when_set() {
        let mut b = ConfigBuilder::new("0ne00000001").unwrap();
        for (ok, host, port) in [
            (
                "global.azure-devices-provisioning.net",
                "global.azure-devices-provisioning.net",
                443,
            ),
            ("localhost:8443", "localhost", 8443),
            ("[::1]:443", "::1", 443),
            ("[::1]", "::1", 443),
            ("1.2.3.4:443", "1.2.3.4", 443),
            ("1.2.3.4", "1.2.3.4", 443),
        ] {
            b.endpoint(ok).unwrap();
            assert_eq!((b.host.as_str(), b.port), (host, port), "{ok}");
        }
        for bad in [
            "localhost:443:1",
            "::1",
            "[zz]:1",
            "localhost:+443",
            "a..b",
            "-a.com",
            "999.1.1.1",
            "1.2.3",
            "",
            "host:0",
            "host:65536",
            "a b",
        ] {
            let e = b.endpoint(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidEndpoint, "{bad}");
            for form in ["host, host:port", "[::1]:443", "1.2.3.4:443"] {
                assert!(e.message.contains(form), "{bad}: {}", e.message);
            }
            assert!(e.message.contains(&format!("{bad:?}")), "{}", e.message);
        }
        // A refused endpoint leaves the previous one in place.
        assert_eq!((b.host.as_str(), b.port), ("1.2.3.4", 443));
    }

    #[test]
    fn echoed_input_is_bounded() {
        let mib = "é\u{1b}".repeat(512 * 1024);
        assert_eq!(mib.chars().count(), 1024 * 1024);
        let mut b = ConfigBuilder::new("0ne00000001").unwrap();
        let errors = [
            b.endpoint(&mib).unwrap_err(),
            b.endpoint(&format!("{mib}:1")).unwrap_err(),
            b.api_version(&mib).unwrap_err(),
            b.registration_id(&mib).unwrap_err(),
            ConfigBuilder::new(&mib).unwrap_err(),
            b.proxy(&mib).unwrap_err(),
            b.proxy(&format!("http://{mib}")).unwrap_err(),
            b.symmetric_key(&mib).unwrap_err(),
            b.group_key(&mib).unwrap_err(),
            b.payload_json(&mib).unwrap_err(),
            b.payload_json(&format!("{{\"{mib}\":1,\"{mib}\":2}}"))
                .unwrap_err(),
            b.user_agent_suffix(&mib).unwrap_err(),
            b.add_trusted_roots_pem(mib.as_bytes()).unwrap_err(),
            X509Credential::from_pem(
                include_bytes!("../tests/fixtures/x509/p256.cert.pem"),
                format!("-----BEGIN {mib}-----\nAAAA\n-----END {mib}-----\n").as_bytes(),
                None,
            )
            .unwrap_err()
            .into(),
        ];
        let truncated = format!("-----BEGIN {mib}-----\nAAAA\n");
        let unterminated_cert = format!("-----BEGIN CERTIFICATE-----\n{}", "QUFB".repeat(300_000));
        let mut errors = errors.to_vec();
        for pem in [&truncated, &unterminated_cert] {
            errors.push(
                X509Credential::from_pem(pem.as_bytes(), pem.as_bytes(), None)
                    .unwrap_err()
                    .into(),
            );
            errors.push(
                X509Credential::from_pem(
                    include_bytes!("../tests/fixtures/x509/p256.cert.pem"),
                    pem.as_bytes(),
                    None,
                )
                .unwrap_err()
                .into(),
            );
            errors.push(b.add_trusted_roots_pem(pem.as_bytes()).unwrap_err());
        }
        for e in errors {
            let n = e.message.chars().count();
            assert!(n <= 400, "{n} characters: {}", &e.message[..200]);
            assert!(!e.message.chars().any(char::is_control), "{:?}", e.message);
        }
        assert_eq!(echo("a\"b\n"), r#""a\"b\n""#);
        let cut = echo(&"x".repeat(1000));
        assert_eq!(cut, format!("\"{}…\" (1000 characters)", "x".repeat(128)));
        assert_eq!(echo(&"x".repeat(128)), format!("\"{}\"", "x".repeat(128)));
    }
}
