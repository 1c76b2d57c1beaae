//! Validation of one `[[enrollments]]` table: its id, its attestation (one arm per kind: the
//! place a new kind's fields are checked), hubs, payload, faults and certificate issuance.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::raw::{AttestationKind, RawEnrollment, RawIssuance};
use super::validate::{Invalid, Seg, fault, field, here};
use super::{
    Attestation, Config, Enrollment, EnrollmentKind, Issuance, IssuingCa, TpmEnrollment,
    valid_registration_id,
};

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

pub(super) fn enrollment(
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
    let issuance = match e.issuance {
        Some(i) => issuance(i, base).map_err(|err| err.within(&[Key("issuance")]))?,
        None => Issuance::default(),
    };
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
        issuance,
    })
}

/// One PEM given inline (`<name>_pem`) or as a file (`<name>_file`, relative to the config).
fn pem_source(
    inline: Option<String>,
    file: Option<PathBuf>,
    names: (&'static str, &'static str),
    base: Option<&Path>,
) -> Result<Option<String>, Invalid> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(field(
            names.1,
            format!("give {} or {}, not both", names.0, names.1),
        )),
        (Some(p), None) => Ok(Some(p)),
        (None, Some(f)) => {
            let f = match base {
                Some(b) if f.is_relative() => b.join(f),
                _ => f,
            };
            std::fs::read_to_string(&f)
                .map(Some)
                .map_err(|err| field(names.1, format!("cannot read {}: {err}", f.display())))
        }
        (None, None) => Ok(None),
    }
}

fn issuance(i: RawIssuance, base: Option<&Path>) -> Result<Issuance, Invalid> {
    let cert = pem_source(
        i.ca_cert_pem,
        i.ca_cert_file,
        ("ca_cert_pem", "ca_cert_file"),
        base,
    )?;
    let key = pem_source(
        i.ca_key_pem,
        i.ca_key_file,
        ("ca_key_pem", "ca_key_file"),
        base,
    )?;
    let ca = match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => {
            crate::pki::TestCa::from_pem(&cert_pem, &key_pem)
                .map_err(|m| field("ca_cert_pem", format!("issuance: issuing CA: {m}")))?;
            Some(IssuingCa { cert_pem, key_pem })
        }
        (None, None) => None,
        _ => {
            return Err(here(
                "issuance: the issuing CA needs its certificate and its key (ca_cert_* and ca_key_*)",
            ));
        }
    };
    if i.validity_days == Some(0) {
        return Err(field(
            "validity_days",
            "issuance: validity_days must be at least 1",
        ));
    }
    let key_types = match i.key_types {
        Some(k) if k.is_empty() => {
            return Err(field(
                "key_types",
                "issuance: key_types must not be empty (omit it to accept p256, p384 and rsa)",
            ));
        }
        Some(k) => k,
        None => Issuance::default().key_types,
    };
    Ok(Issuance {
        ca,
        validity_days: i.validity_days,
        key_types,
    })
}
