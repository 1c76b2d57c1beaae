//! From the serde shapes to the public types: the rules serde cannot express, each error with
//! the path of the value it is about (`enrollments[2].primary_key`), which the loader turns
//! into a line with the TOML parser's spans.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::raw::{
    Action, AttestationKind, RawConfig, RawEnrollment, RawFault, ResultKind, StrOrInt,
};
use super::{
    Attestation, Config, Enrollment, EnrollmentKind, FaultKind, FaultOn, FaultStep, Hub, Limits,
    RetryAfter, TerminalResult, TlsSettings, TpmEnrollment, valid_registration_id,
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
    fn at(path: &[Seg], message: impl Into<String>) -> Invalid {
        Invalid {
            path: path.to_vec(),
            message: message.into(),
        }
    }
    /// Prefixes the path (the error came from inside `prefix`).
    fn within(mut self, prefix: &[Seg]) -> Invalid {
        let mut p = prefix.to_vec();
        p.append(&mut self.path);
        self.path = p;
        self
    }
}

/// An error about the field `key` of the table being validated.
fn field(key: &'static str, message: impl Into<String>) -> Invalid {
    Invalid::at(&[Seg::Key(key)], message)
}

/// An error about the table being validated as a whole.
fn here(message: impl Into<String>) -> Invalid {
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
        let enr = enrollment(e, &cfg, base).map_err(|err| Invalid {
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

fn decode_key(what: &'static str, s: &str) -> Result<Vec<u8>, Invalid> {
    let k = STANDARD
        .decode(s.trim())
        .map_err(|e| field(what, format!("{what} is not valid base64 ({e})")))?;
    if k.len() < 16 || k.len() > 64 {
        return Err(field(
            what,
            format!(
                "{what} must decode to 16..64 bytes (DPS rule), got {}",
                k.len()
            ),
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

fn enrollment_kind(e: &mut RawEnrollment) -> Result<EnrollmentKind, Invalid> {
    match (e.registration_id.take(), e.group_id.take()) {
        (Some(r), None) => {
            if !valid_registration_id(&r) {
                return Err(field(
                    "registration_id",
                    format!(
                        "registration_id {r:?} is invalid (alphanumerics and -._:, up to 128, starts alphanumeric, ends alphanumeric or -)"
                    ),
                ));
            }
            Ok(EnrollmentKind::Individual { registration_id: r })
        }
        (None, Some(g)) => {
            if g.is_empty() || g.len() > 128 {
                return Err(field("group_id", "group_id must be 1..128 characters"));
            }
            Ok(EnrollmentKind::Group { group_id: g })
        }
        (Some(_), Some(_)) => Err(field(
            "group_id",
            "set registration_id (individual) or group_id (group), not both",
        )),
        (None, None) => Err(here(
            "needs registration_id (individual) or group_id (group)",
        )),
    }
}

/// Refuses the first of `fields` that is set (fields of another attestation kind).
fn not_set(fields: &[(&'static str, bool)], message: &str) -> Result<(), Invalid> {
    match fields.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(field(name, message)),
        None => Ok(()),
    }
}

/// The attestation of one enrollment: one arm per [`AttestationKind`] (the place a new kind's
/// enrollment fields are checked).
fn attestation(
    kind: AttestationKind,
    e: &mut RawEnrollment,
    group: bool,
    base: Option<&Path>,
) -> Result<Attestation, Invalid> {
    match kind {
        AttestationKind::SymmetricKey => {
            not_set(
                &[
                    ("thumbprint", e.thumbprint.is_some()),
                    ("ca_pem", e.ca_pem.is_some()),
                    ("ca_file", e.ca_file.is_some()),
                ],
                "thumbprint/ca_pem/ca_file are for x509 attestation",
            )?;
            not_tpm(e)?;
            let p = e.primary_key.take().ok_or_else(|| {
                field("attestation", "symmetric_key attestation needs primary_key")
            })?;
            let mut keys = vec![decode_key("primary_key", &p)?];
            if let Some(s) = e.secondary_key.take() {
                keys.push(decode_key("secondary_key", &s)?);
            }
            Ok(Attestation::SymmetricKey { keys })
        }
        AttestationKind::X509 => {
            not_set(
                &[
                    ("primary_key", e.primary_key.is_some()),
                    ("secondary_key", e.secondary_key.is_some()),
                ],
                "primary_key/secondary_key are for symmetric_key attestation",
            )?;
            not_tpm(e)?;
            if group {
                x509_group(e, base)
            } else {
                x509_individual(e)
            }
        }
        AttestationKind::Tpm => tpm(e, group),
    }
}

/// Refuses the TPM fields in an enrollment of another kind.
fn not_tpm(e: &RawEnrollment) -> Result<(), Invalid> {
    not_set(
        &[
            ("endorsement_key", e.endorsement_key.is_some()),
            ("hub_key", e.hub_key.is_some()),
            ("corrupt_blob", e.corrupt_blob.is_some()),
        ],
        "endorsement_key/hub_key/corrupt_blob are for tpm attestation",
    )
}

fn tpm_endorsement_key(e: &RawEnrollment) -> Result<crate::tpm::RsaPublic, Invalid> {
    let ek = e
        .endorsement_key
        .as_deref()
        .ok_or_else(|| field("attestation", "tpm attestation needs endorsement_key"))?;
    let ek = crate::tpm::RsaPublic::from_base64(ek).map_err(|err| {
        field(
            "endorsement_key",
            format!("endorsement_key (base64 TPM2B_PUBLIC): {err}"),
        )
    })?;
    ek.check_storage_key("endorsement_key")
        .map_err(|err| field("endorsement_key", err.to_string()))?;
    Ok(ek)
}

/// A TPM individual enrollment without registration_id gets the one the device derives from
/// its EK (PROTOCOL.md 5.4), as the Azure portal does.
fn tpm_default_registration_id(e: &mut RawEnrollment) -> Result<(), Invalid> {
    if e.registration_id.is_none() && e.group_id.is_none() {
        e.registration_id = Some(tpm_endorsement_key(e)?.registration_id());
    }
    Ok(())
}

fn tpm(e: &mut RawEnrollment, group: bool) -> Result<Attestation, Invalid> {
    if group {
        return Err(field(
            "group_id",
            "tpm attestation is for individual enrollments only (DPS has no TPM groups)",
        ));
    }
    not_set(
        &[
            ("primary_key", e.primary_key.is_some()),
            ("secondary_key", e.secondary_key.is_some()),
            ("thumbprint", e.thumbprint.is_some()),
            ("secondary_thumbprint", e.secondary_thumbprint.is_some()),
            ("ca_pem", e.ca_pem.is_some()),
            ("ca_file", e.ca_file.is_some()),
        ],
        "tpm attestation takes endorsement_key (and hub_key), not keys or certificates",
    )?;
    let endorsement_key = tpm_endorsement_key(e)?;
    let hub_key = match e.hub_key.take() {
        None => None,
        Some(k) => {
            let k = STANDARD
                .decode(k.trim())
                .map_err(|err| field("hub_key", format!("hub_key is not valid base64 ({err})")))?;
            if k.len() != 32 {
                return Err(field(
                    "hub_key",
                    format!(
                        "hub_key must decode to 32 bytes (an HMAC-SHA256 key), got {}",
                        k.len()
                    ),
                ));
            }
            Some(k)
        }
    };
    Ok(Attestation::Tpm(TpmEnrollment {
        endorsement_key,
        hub_key,
        corrupt_blob: e.corrupt_blob.take(),
    }))
}

fn x509_group(e: &mut RawEnrollment, base: Option<&Path>) -> Result<Attestation, Invalid> {
    if e.thumbprint.is_some() {
        return Err(field(
            "thumbprint",
            "x509 group enrollments use ca_pem or ca_file, not thumbprint",
        ));
    }
    let (text, at) = match (e.ca_pem.take(), e.ca_file.take()) {
        (Some(p), None) => (p, "ca_pem"),
        (None, Some(f)) => {
            let f = match base {
                Some(b) if f.is_relative() => b.join(f),
                _ => f,
            };
            let text = std::fs::read_to_string(&f).map_err(|err| {
                field(
                    "ca_file",
                    format!("cannot read ca_file {}: {err}", f.display()),
                )
            })?;
            (text, "ca_file")
        }
        _ => {
            return Err(field(
                "attestation",
                "x509 group enrollment needs exactly one of ca_pem, ca_file",
            ));
        }
    };
    let cas = pem_certs(&text).map_err(|m| field(at, format!("group CA: {m}")))?;
    Ok(Attestation::X509Ca(cas))
}

fn x509_individual(e: &mut RawEnrollment) -> Result<Attestation, Invalid> {
    if e.ca_pem.is_some() || e.ca_file.is_some() {
        let at = if e.ca_pem.is_some() {
            "ca_pem"
        } else {
            "ca_file"
        };
        return Err(field(
            at,
            "x509 individual enrollments use thumbprint (SHA-256 of the device certificate), not ca_pem",
        ));
    }
    let mut tps = Vec::new();
    for (name, t) in [
        ("thumbprint", e.thumbprint.take()),
        ("secondary_thumbprint", e.secondary_thumbprint.take()),
    ] {
        if let Some(t) = t {
            let n = crate::util::normalize_thumbprint(&t);
            if n.len() != 64 || !n.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(field(
                    name,
                    format!(
                        "{name} must be a SHA-256 thumbprint (64 hex digits, colons allowed), got {t:?}"
                    ),
                ));
            }
            tps.push(n);
        }
    }
    if tps.is_empty() {
        return Err(field(
            "attestation",
            "x509 individual enrollment needs thumbprint",
        ));
    }
    Ok(Attestation::X509Thumbprints(tps))
}

/// A hub name as declared in `[[hubs]]` (matched case-insensitively).
fn declared_hub(cfg: &Config, h: &str, what: &str, at: &[Seg]) -> Result<String, Invalid> {
    cfg.hub(h)
        .map(|hub| hub.host_name.clone())
        .ok_or_else(|| Invalid::at(at, format!("{what} {h:?} is not declared in [[hubs]]")))
}

fn enrollment(
    mut e: RawEnrollment,
    cfg: &Config,
    base: Option<&Path>,
) -> Result<Enrollment, Invalid> {
    use Seg::{Index, Key};
    if e.attestation == Some(AttestationKind::Tpm) {
        tpm_default_registration_id(&mut e)?;
    }
    let kind = enrollment_kind(&mut e)?;
    let group = matches!(kind, EnrollmentKind::Group { .. });
    let att = e
        .attestation
        .ok_or_else(|| here("missing attestation (\"symmetric_key\", \"x509\" or \"tpm\")"))?;
    let attestation = attestation(att, &mut e, group, base)?;
    if group && e.device_id.is_some() {
        return Err(field(
            "device_id",
            "device_id override is only for individual enrollments",
        ));
    }
    if let Some(d) = &e.device_id
        && (d.is_empty() || d.len() > 128)
    {
        return Err(field("device_id", "device_id must be 1..128 characters"));
    }
    let hubs = match e.hubs {
        Some(list) => {
            if list.is_empty() {
                return Err(field(
                    "hubs",
                    "hubs must not be empty (omit it to use all hubs)",
                ));
            }
            let mut out = Vec::new();
            for (i, h) in list.iter().enumerate() {
                out.push(declared_hub(cfg, h, "hub", &[Key("hubs"), Index(i)])?);
            }
            out
        }
        None => cfg.hubs.iter().map(|h| h.host_name.clone()).collect(),
    };
    let initial_hub = match &e.initial_hub {
        Some(h) => Some(declared_hub(cfg, h, "initial_hub", &[Key("initial_hub")])?),
        None => None,
    };
    if let Some(p) = &e.payload
        && !p.is_object()
    {
        return Err(field("payload", "payload must be an object"));
    }
    let mut faults = Vec::new();
    for (j, f) in e.faults.into_iter().enumerate() {
        let times = f.times.unwrap_or(1);
        let step = fault(f).map_err(|err| Invalid {
            message: format!("faults[{j}]: {}", err.message),
            ..err.within(&[Key("faults"), Index(j)])
        })?;
        for _ in 0..times {
            faults.push(step.clone());
        }
    }
    Ok(Enrollment {
        kind,
        attestation,
        device_id: e.device_id,
        enabled: e.enabled.unwrap_or(true),
        allocation: e.allocation.unwrap_or(super::Allocation::Hashed),
        hubs,
        initial_hub,
        reprovision: e.reprovision.unwrap_or(super::Reprovision::Migrate),
        payload: e.payload,
        echo_payload: e.echo_payload.unwrap_or(false),
        retry_after_secs: e.retry_after_secs,
        assigning_polls: e.assigning_polls,
        faults,
    })
}

fn fault(f: RawFault) -> Result<FaultStep, Invalid> {
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
    let kind = match (f.action, f.result) {
        (Some(_), Some(_)) => {
            return Err(field(
                "result",
                "a step has either action or result (or just status)",
            ));
        }
        (Some(a), None) => match a {
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
