//! The TPM attestor (PROTOCOL.md 5.4, the service side) and the hub-key blob of the final
//! answer. The crypto and the per-device state are in `crate::tpm`; this is the glue to the
//! pipeline:
//!
//! - PUT register with a `tpm` member and no `Authorization`, for an individual TPM enrollment:
//!   the EK must be the enrolled one; the answer is the 401 challenge carrying the
//!   `authenticationKey` (a fresh identity key protected to this TPM) and `keyName`.
//! - Any request with `Authorization` for a TPM enrollment: the SAS must verify with the
//!   identity key of the device's last challenge (second PUT, polls, lookup).

use std::sync::Arc;

use crate::config::{Attestation, CorruptBlob, Enrollment, EnrollmentKind, TpmEnrollment};
use crate::http::Response;
use crate::sas;
use crate::tpm::{Corruption, DeviceKeys, TpmService, challenge_body};

use super::auth::{Attestor, Verdict};
use super::json::{err_response, json_response};
use super::{Ctx, Route};

pub(crate) struct Tpm {
    state: Arc<TpmService>,
}

impl Tpm {
    pub(crate) fn new(state: Arc<TpmService>) -> Tpm {
        Tpm { state }
    }
}

/// The individual enrollment of this registration ID, if it is one.
fn individual<'c>(cx: &Ctx<'c>) -> Option<(usize, &'c Enrollment)> {
    cx.cfg.enrollments.iter().enumerate().find(|(_, e)| {
        matches!(&e.kind, EnrollmentKind::Individual { registration_id }
            if registration_id.eq_ignore_ascii_case(&cx.regid))
    })
}

fn corruption(t: &TpmEnrollment, which: CorruptBlob) -> Option<Corruption> {
    (t.corrupt_blob == Some(which)).then_some(Corruption::Credential)
}

impl Attestor for Tpm {
    fn verify(&self, cx: &Ctx<'_>) -> Verdict {
        let header = cx.req.header("authorization");
        let found = individual(cx);
        let Some((i, Attestation::Tpm(t))) = found.map(|(i, e)| (i, &e.attestation)) else {
            // Not a TPM enrollment: a `tpm` member without a SAS is refused here, with why;
            // anything else is for the other attestors.
            return match (&cx.body.tpm, header, found) {
                (Some(_), None, None) => Verdict::Refused(format!(
                    "tpm refused: no individual enrollment for {}",
                    cx.regid
                )),
                (Some(_), None, Some((_, e))) => Verdict::Refused(format!(
                    "tpm refused: enrollment {} uses {} attestation",
                    e.id(),
                    e.attestation.config_name()
                )),
                _ => Verdict::NotOffered,
            };
        };
        let id = &cx.cfg.enrollments[i].id();
        if let Some(h) = header {
            let Some(key) = self.state.identity_key(&cx.lower) else {
                return Verdict::Refused(format!(
                    "tpm sas refused: no challenge was issued to {id} (PUT with the tpm member first)"
                ));
            };
            let verdict = sas::parse(h).and_then(|token| {
                sas::validate(
                    &token,
                    &cx.scope,
                    &cx.regid,
                    crate::util::unix_now(),
                    &[key],
                )
            });
            return match verdict {
                Ok(_) => Verdict::Accepted {
                    enrollment: i,
                    desc: format!("tpm individual={id} identity key"),
                },
                Err(e) => Verdict::Refused(format!("tpm sas refused: {e} (individual {id})")),
            };
        }
        let Some(tpm) = &cx.body.tpm else {
            return Verdict::NotOffered;
        };
        if cx.route != Route::Register {
            return Verdict::Refused(format!(
                "tpm refused: the challenge is answered on PUT register only (individual {id})"
            ));
        }
        let keys = match DeviceKeys::from_json(tpm) {
            Ok(k) => k,
            Err(e) => {
                return Verdict::Challenge {
                    response: err_response(400, 400004, &format!("Invalid tpm: {e}")),
                    desc: format!("tpm refused: {e}"),
                };
            }
        };
        let corrupt = corruption(t, CorruptBlob::Challenge);
        match self
            .state
            .challenge(&cx.lower, &t.endorsement_key, keys, corrupt)
        {
            Ok(blob) => {
                let mut r = json_response(401, String::new());
                r.body = challenge_body(&blob);
                Verdict::Challenge {
                    response: r,
                    desc: format!(
                        "tpm challenge individual={id}{}",
                        if corrupt.is_some() {
                            " (fault: corrupted blob)"
                        } else {
                            ""
                        }
                    ),
                }
            }
            Err(e) => Verdict::Refused(e),
        }
    }
}

/// The `registrationState.tpm.authenticationKey` for a register request of a TPM enrollment:
/// the hub key protected to the device's TPM. `Ok(None)` for other enrollments.
pub(super) fn hub_blob(
    state: &TpmService,
    cx: &Ctx<'_>,
    enrollment: usize,
) -> Result<Option<String>, Response> {
    let Attestation::Tpm(t) = &cx.cfg.enrollments[enrollment].attestation else {
        return Ok(None);
    };
    let corrupt = corruption(t, CorruptBlob::Hub);
    match state.hub_blob(&cx.lower, t.hub_key.as_deref(), corrupt) {
        Some(Ok(b)) => Ok(Some(b)),
        Some(Err(e)) => Err(err_response(
            500,
            500000,
            &format!("cannot protect the hub key: {e}"),
        )),
        // Accepted by the TPM attestor, so a challenge exists; answer plainly if not.
        None => Err(err_response(401, 401002, "Unauthorized")),
    }
}
