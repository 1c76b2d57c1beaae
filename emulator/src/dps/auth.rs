//! Authentication: who the device is, decided by a list of attestation mechanisms.
//!
//! # Adding an attestation kind (the extension point)
//!
//! Each mechanism implements [`Attestor`] and is listed in [`default_attestors`]; the
//! `authenticate` step asks them in order. A new kind takes four pieces, none of which
//! touches the pipeline in `dps/mod.rs`; TPM (`dps/tpm.rs` over `crate::tpm`) was added this
//! way, plus the hub-key blob that its final answer carries (`tpm::hub_blob`, called by the
//! register step):
//!
//! 1. **Config**: a variant of `config::Attestation` (e.g. `Tpm { endorsement_key, .. }`), a
//!    variant of `config::AttestationKind` (the `attestation = "tpm"` string, parsed by serde),
//!    its fields in `RawEnrollment`, and one arm in `config::validate::attestation` plus one in
//!    `Attestation::record_member` (the member name in `registrationState`, `"tpm"`).
//! 2. **Body**: the request step already keeps the body's `tpm` member as sent, in
//!    `cx.body.tpm` (`{"endorsementKey": .., "storageRootKey": ..}`), for the attestor to read.
//! 3. **Attestor**: `verify` returns [`Verdict::NotOffered`] when the request carries nothing
//!    for it (no `tpm` member), [`Verdict::Challenge`] with the 401 answer that carries the
//!    `authenticationKey` when a known device has not yet proven possession,
//!    [`Verdict::Accepted`] once the `Authorization` SAS verifies with the imported key
//!    (`crate::sas::{parse, check_claims, validate}`), [`Verdict::Refused`] otherwise. An
//!    attestor may keep state across requests (the nonce it issued) behind its own lock: it is
//!    shared by all connections (`Send + Sync`).
//! 4. **List**: insert it in [`default_attestors`] before [`SymmetricKey`], so that a TPM
//!    device's SAS header is checked against its imported key first.

use rustls::pki_types::{CertificateDer, UnixTime};

use crate::config::{Attestation, Config, EnrollmentKind};
use crate::http::Response;
use crate::sas;
use crate::util::sha256_hex_upper;

use super::json::err_response;
use super::{Ctx, Flow};

/// What one attestation mechanism concluded about a request.
pub(crate) enum Verdict {
    /// The request carries nothing this mechanism checks.
    NotOffered,
    /// The device is enrolled in `cfg.enrollments[enrollment]`; `desc` is for the log (no
    /// secrets).
    Accepted { enrollment: usize, desc: String },
    /// The credential was offered and refused; the reason goes to the log, never to the device.
    Refused(String),
    /// Refused as [`Verdict::Refused`], and the 401002 answer says `message` instead of the
    /// generic "Unauthorized" / "Invalid certificate." (the first such message wins).
    RefusedWith {
        reason: String,
        message: &'static str,
    },
    /// Answer now with `response` (a 401 carrying a challenge the device must answer in its
    /// next request, as TPM's `authenticationKey`); `desc` is for the log.
    Challenge { response: Response, desc: String },
}

/// One attestation mechanism (see the module documentation for how to add one).
pub(crate) trait Attestor: Send + Sync {
    fn verify(&self, cx: &Ctx<'_>) -> Verdict;
}

/// The mechanisms in the order they are asked: TPM before the symmetric-key SAS, so that a
/// TPM device's SAS is checked against the identity key it was given.
pub(crate) fn default_attestors(
    tpm: &std::sync::Arc<crate::tpm::TpmService>,
) -> Vec<Box<dyn Attestor>> {
    vec![
        Box::new(X509),
        Box::new(super::tpm::Tpm::new(tpm.clone())),
        Box::new(SymmetricKey),
    ]
}

/// The `authenticate` step: the first mechanism that accepts decides; all refusals are logged.
pub(super) fn authenticate(cx: &mut Ctx<'_>, attestors: &[Box<dyn Attestor>]) -> Flow {
    let mut why = Vec::new();
    let mut told = None;
    for a in attestors {
        match a.verify(cx) {
            Verdict::NotOffered => {}
            Verdict::RefusedWith { reason, message } => {
                why.push(reason);
                told = told.or(Some(message));
            }
            Verdict::Accepted { enrollment, desc } => {
                cx.enrollment = Some(enrollment);
                cx.auth = desc;
                return Ok(());
            }
            Verdict::Refused(e) => why.push(e),
            Verdict::Challenge { response, desc } => {
                cx.auth = desc;
                return Err(response);
            }
        }
    }
    if why.is_empty() {
        why.push("no credentials".into());
    }
    cx.auth = why.join("; ");
    let msg = match told {
        Some(m) => m,
        None if cx.peer_chain.is_empty() => "Unauthorized",
        None => "Invalid certificate.",
    };
    Err(err_response(401, 401002, msg))
}

/// Shared access signature in `Authorization`: individual keys, or group keys derived per device.
pub(crate) struct SymmetricKey;

impl Attestor for SymmetricKey {
    fn verify(&self, cx: &Ctx<'_>) -> Verdict {
        let Some(header) = cx.req.header("authorization") else {
            return Verdict::NotOffered;
        };
        match sas_identity(cx.cfg, header, &cx.scope, &cx.regid) {
            Ok((enrollment, desc)) => Verdict::Accepted { enrollment, desc },
            Err(e) => Verdict::Refused(e),
        }
    }
}

fn sas_identity(
    cfg: &Config,
    header: &str,
    scope: &str,
    regid: &str,
) -> Result<(usize, String), String> {
    let token = sas::parse(header).map_err(|e| format!("sas refused: {e}"))?;
    sas::check_claims(&token, scope, regid, crate::util::unix_now())
        .map_err(|e| format!("sas refused: {e}"))?;
    // individual enrollment first
    if let Some((i, e)) = cfg.enrollments.iter().enumerate().find(|(_, e)| {
        matches!(&e.kind, EnrollmentKind::Individual { registration_id } if registration_id.eq_ignore_ascii_case(regid))
    }) {
        let Attestation::SymmetricKey { keys } = &e.attestation else {
            return Err(format!(
                "sas refused: individual enrollment {} uses {}",
                e.id(),
                e.attestation.config_name()
            ));
        };
        return match sas::validate(&token, scope, regid, 0, keys) {
            Ok(k) => Ok((
                i,
                format!(
                    "sas individual={} key={}",
                    e.id(),
                    if k == 0 { "primary" } else { "secondary" }
                ),
            )),
            Err(err) => Err(format!("sas refused: {err} (individual {})", e.id())),
        };
    }
    for (i, e) in cfg.enrollments.iter().enumerate() {
        let (EnrollmentKind::Group { group_id }, Attestation::SymmetricKey { keys }) =
            (&e.kind, &e.attestation)
        else {
            continue;
        };
        let mut derived = Vec::new();
        for k in keys {
            derived.push(sas::derive_device_key(k, regid));
            let lower = regid.to_ascii_lowercase();
            if lower != regid {
                derived.push(sas::derive_device_key(k, &lower));
            }
        }
        if sas::validate(&token, scope, regid, 0, &derived).is_ok() {
            return Ok((i, format!("sas group={group_id}")));
        }
    }
    Err("sas refused: signature matches no enrollment key".into())
}

/// The TLS client certificate: an individual thumbprint, or a chain to a group's CA.
pub(crate) struct X509;

impl Attestor for X509 {
    fn verify(&self, cx: &Ctx<'_>) -> Verdict {
        if cx.peer_chain.is_empty() {
            return Verdict::NotOffered;
        }
        match x509_identity(cx.cfg, cx.peer_chain, &cx.regid) {
            Ok((enrollment, desc)) => Verdict::Accepted { enrollment, desc },
            Err(X509Refusal::NoCa(reason)) => Verdict::RefusedWith {
                reason,
                message: CA_NOT_FOUND,
            },
            Err(X509Refusal::Invalid(e)) => Verdict::Refused(e),
        }
    }
}

/// DPS's 401002 message when the chain sent reaches no verified CA, typically a group device
/// that sent only its leaf (PROTOCOL.md 3.7 and 8).
pub(crate) const CA_NOT_FOUND: &str = "CA certificate not found.";

enum X509Refusal {
    /// The leaf is not individually enrolled and the chain sent reaches no group's CA (or no
    /// X.509 group exists): "CA certificate not found.".
    NoCa(String),
    /// Anything else (CN, parse, signature, validity): "Invalid certificate.".
    Invalid(String),
}

fn leaf_common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

fn x509_identity(
    cfg: &Config,
    chain: &[CertificateDer<'static>],
    regid: &str,
) -> Result<(usize, String), X509Refusal> {
    use X509Refusal::{Invalid, NoCa};
    let leaf = &chain[0];
    let thumb = sha256_hex_upper(leaf.as_ref());
    let short = &thumb[..16];
    let cn = leaf_common_name(leaf.as_ref())
        .ok_or_else(|| Invalid(format!("x509 refused: leaf {short}… has no readable CN")))?;
    if !cn.eq_ignore_ascii_case(regid) {
        return Err(Invalid(format!(
            "x509 refused: CN {cn:?} != registration id"
        )));
    }
    for (i, e) in cfg.enrollments.iter().enumerate() {
        if let (EnrollmentKind::Individual { registration_id }, Attestation::X509Thumbprints(tps)) =
            (&e.kind, &e.attestation)
            && registration_id.eq_ignore_ascii_case(regid)
            && tps.iter().any(|t| t == &thumb)
        {
            return Ok((i, format!("x509 individual={} thumbprint={short}…", e.id())));
        }
    }
    let provider = crate::tls::provider();
    let algs = provider.signature_verification_algorithms.all;
    let ee = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| Invalid(format!("x509 refused: leaf does not parse: {e:?}")))?;
    let intermediates = &chain[1..];
    let mut last_err = None;
    // every group said "unknown issuer" (or there is none): the chain stops short of a CA
    let mut no_ca = true;
    for (i, e) in cfg.enrollments.iter().enumerate() {
        let (EnrollmentKind::Group { group_id }, Attestation::X509Ca(cas)) =
            (&e.kind, &e.attestation)
        else {
            continue;
        };
        let ders: Vec<CertificateDer<'_>> = cas
            .iter()
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        let anchors: Vec<_> = ders
            .iter()
            .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
            .collect();
        match ee.verify_for_usage(
            algs,
            &anchors,
            intermediates,
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        ) {
            Ok(_) => return Ok((i, format!("x509 group={group_id} leaf={short}…"))),
            Err(err) => {
                no_ca &= err == webpki::Error::UnknownIssuer;
                last_err = Some(format!("{err:?}"));
            }
        }
    }
    let reason = format!(
        "x509 refused: leaf {short}… matches no individual thumbprint and chains to no group CA{}",
        last_err
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default()
    );
    Err(if no_ca { NoCa(reason) } else { Invalid(reason) })
}

#[cfg(test)]
mod tests {
    //! The extension point works end to end: an attestor plugged into the list can challenge,
    //! then accept, and the rest of the pipeline (faults, registration) runs unchanged.
    use super::*;
    use crate::dps::Service;
    use crate::http::Request;

    /// Accepts `Authorization: answer` for the first enrollment once it has challenged.
    struct Challenger;

    impl Attestor for Challenger {
        fn verify(&self, cx: &Ctx<'_>) -> Verdict {
            if cx.body.tpm.is_none() {
                return Verdict::NotOffered;
            }
            match cx.req.header("authorization") {
                None => Verdict::Challenge {
                    response: err_response(401, 401002, "challenge"),
                    desc: "challenged".into(),
                },
                Some("answer") => Verdict::Accepted {
                    enrollment: 0,
                    desc: "answered".into(),
                },
                Some(_) => Verdict::Refused("wrong answer".into()),
            }
        }
    }

    fn put(auth: Option<&str>) -> Request {
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        if let Some(a) = auth {
            headers.push(("Authorization".into(), a.into()));
        }
        Request {
            method: "PUT".into(),
            target: "/0ne00000001/registrations/dev-tpm/register?api-version=2021-06-01".into(),
            minor_version: 1,
            headers,
            body: br#"{"registrationId":"dev-tpm","tpm":{"endorsementKey":"AA=="}}"#.to_vec(),
        }
    }

    #[test]
    fn a_plugged_in_attestor_challenges_then_accepts() {
        let cfg = crate::Config::from_toml_str(
            r#"
[[hubs]]
host_name = "hub-a.azure-devices.net"
[[enrollments]]
registration_id = "dev-tpm"
attestation = "symmetric_key"
primary_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
"#,
        )
        .unwrap();
        let mut svc = Service::new(cfg, None);
        svc.attestors.insert(0, Box::new(Challenger));
        let h = svc.handle(&put(None), &[]);
        assert_eq!((h.response.status, h.auth.as_str()), (401, "challenged"));
        assert!(String::from_utf8_lossy(&h.response.body).contains("challenge"));
        let h = svc.handle(&put(Some("answer")), &[]);
        assert_eq!((h.response.status, h.auth.as_str()), (202, "answered"));
        // refused by the plugged-in attestor and by the SAS one: both reasons are logged
        let h = svc.handle(&put(Some("nonsense")), &[]);
        assert_eq!(h.response.status, 401);
        assert!(
            h.auth.starts_with("wrong answer; sas refused"),
            "{}",
            h.auth
        );
    }
}
