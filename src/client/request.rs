//! One exchange of the state machine: the request a phase sends, and what its answer (or
//! its failure) means: an [`Outcome`] for [`Client::apply`](super::Client) to act on.

use std::time::{Duration, Instant};

use super::answers::{self, parse_json, service_error, with_http};
use super::{Client, Outcome, Phase};
use crate::credential::Challenge;
use crate::credential::x509::csr::check_issued_chain;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::wire::{self, RegistrationStatus};
use crate::protocol::{self};
use crate::retry;
use crate::transport::{Request, Response};

impl Client {
    pub(super) fn retry_after(&self, resp: &Response) -> Option<Duration> {
        resp.retry_after
            .as_deref()
            .and_then(|v| retry::parse_retry_after(v, self.clock.wall()))
    }

    fn send(
        &mut self,
        method: &'static str,
        path: &str,
        body: Option<&[u8]>,
        until: Instant,
    ) -> Result<Response> {
        let token = self.config.credential.authorization(
            &mut self.tokens,
            &self.config.id_scope,
            &self.config.registration_id,
            self.config.sas_ttl,
            self.clock.wall(),
            until,
            &self.cancel,
        )?;
        let req = Request {
            method,
            path,
            authorization: token.as_deref().map(String::as_str),
            body,
        };
        let started = self.clock.now();
        let result = self.net.send(&req, until);
        match &result {
            Ok(r) => log::debug!(
                "{method} {path} -> {} in {:?}",
                r.status,
                self.clock.now().saturating_duration_since(started)
            ),
            Err(e) => log::debug!("{method} {path} -> {e}"),
        }
        result
    }

    pub(super) fn exchange(&mut self, phase: &Phase, until: Instant, deadline: Instant) -> Outcome {
        let cfg = self.config.clone();
        let result = match phase {
            Phase::Register => {
                let path = protocol::register_path(
                    &cfg.id_scope,
                    &cfg.registration_id,
                    &cfg.api_version,
                    cfg.force_registration,
                );
                let mut extra = cfg.credential.register_fields();
                if let Some(csr) = &cfg.csr {
                    let member = wire::csr_member(&csr.der_base64);
                    extra = Some(match extra {
                        Some(e) => format!("{e},{member}"),
                        None => member,
                    });
                }
                let body = wire::register_body(
                    &cfg.registration_id,
                    cfg.payload_json.as_deref(),
                    extra.as_deref(),
                );
                self.send("PUT", &path, Some(body.as_bytes()), until)
            }
            Phase::Poll(op) => {
                let path = protocol::operation_path(
                    &cfg.id_scope,
                    &cfg.registration_id,
                    op,
                    &cfg.api_version,
                );
                self.send("GET", &path, None, until)
            }
            Phase::Lookup => {
                let path =
                    protocol::lookup_path(&cfg.id_scope, &cfg.registration_id, &cfg.api_version);
                let body = wire::request_body(&cfg.registration_id, None);
                self.send("POST", &path, Some(body.as_bytes()), until)
            }
        };
        let resp = match result {
            Ok(r) => r,
            Err(e) if e.kind == ErrorKind::Cancelled || self.cancel.is_cancelled() => {
                return Outcome::Fail(Error::new(
                    ErrorKind::Cancelled,
                    "the registration was cancelled",
                ));
            }
            Err(e) if e.retriable => {
                return Outcome::Retry {
                    retry_after: None,
                    cause: e,
                };
            }
            Err(e) => return Outcome::Fail(e),
        };
        let polling = matches!(phase, Phase::Poll(_));
        match retry::classify(resp.status, polling, cfg.credential.fresh_token_on_401()) {
            retry::Action::Proceed => match phase {
                Phase::Lookup => {
                    match parse_json(&resp, |b| wire::parse_registration(b, &cfg.registration_id)) {
                        Ok(r) => Outcome::Done(r),
                        Err(e) => self.unparsable(e, &resp, true),
                    }
                }
                _ => match parse_json(&resp, |b| wire::parse_operation(b, &cfg.registration_id)) {
                    Ok(op) => self.operation_outcome(op, &resp, deadline),
                    Err(e) => self.unparsable(e, &resp, polling),
                },
            },
            retry::Action::Retry => Outcome::Retry {
                retry_after: self.retry_after(&resp),
                cause: service_error(&resp),
            },
            retry::Action::Restart => {
                if resp.status == 401 {
                    // PROTOCOL.md 4.2: one re-registration with a fresh token.
                    self.tokens.clear();
                }
                Outcome::Restart(service_error(&resp))
            }
            // The challenge round trip: a credential that answers a 401 to the PUT (TPM
            // attestation, PROTOCOL.md 5.4) prepares its answer and the PUT goes again; every
            // other 401 fails.
            retry::Action::Fail if resp.status == 401 && *phase == Phase::Register => {
                match cfg.credential.answer_challenge(
                    &mut self.tokens,
                    &resp.body,
                    deadline,
                    &self.cancel,
                ) {
                    Challenge::Answered => Outcome::Challenged,
                    Challenge::None => Outcome::Fail(self.refused(&resp)),
                    Challenge::Failed(_) if self.cancel.is_cancelled() => Outcome::Fail(
                        Error::new(ErrorKind::Cancelled, "the registration was cancelled"),
                    ),
                    Challenge::Failed(e) => Outcome::Fail(with_http(e, &resp)),
                }
            }
            retry::Action::Fail => Outcome::Fail(self.refused(&resp)),
        }
    }

    /// DPS's refusal, with the credential's hint added to a 401.
    fn refused(&self, resp: &Response) -> Error {
        let mut e = service_error(resp);
        if resp.status == 401 {
            if let Some(hint) = self.config.credential.refusal_hint() {
                let sep = if e.message.ends_with('.') { " " } else { ". " };
                e.message = format!("{}{sep}{hint}", e.message);
            }
        }
        e
    }

    /// An answer that is not the JSON DPS sends. A poll and a lookup are safe to repeat
    /// (`repeatable`): retried like a truncated answer, within the deadline; a PUT fails.
    ///
    /// Only a garbled answer (wrong content type, not JSON) is retried: well-formed JSON whose
    /// values fail validation (a hostile assignedHub or deviceId) fails at once.
    fn unparsable(&self, e: Error, resp: &Response, repeatable: bool) -> Outcome {
        let garbled = answers::check_json(resp).is_err()
            || serde_json::from_slice::<serde::de::IgnoredAny>(&resp.body).is_err();
        let e = with_http(e, resp);
        if repeatable && garbled {
            Outcome::Retry {
                retry_after: self.retry_after(resp),
                cause: e,
            }
        } else {
            Outcome::Fail(e)
        }
    }

    fn operation_outcome(
        &mut self,
        op: wire::Operation,
        resp: &Response,
        deadline: Instant,
    ) -> Outcome {
        let tracking = resp.request_id.clone();
        match op.status {
            RegistrationStatus::Assigning | RegistrationStatus::Unassigned => Outcome::Poll {
                operation_id: op.operation_id,
                retry_after: self.retry_after(resp),
            },
            RegistrationStatus::Assigned => {
                let r = op.registration;
                if r.assigned_hub.as_deref().unwrap_or("").is_empty()
                    || r.device_id.as_deref().unwrap_or("").is_empty()
                {
                    let e = Error::new(
                        ErrorKind::MalformedResponse,
                        "DPS reported 'assigned' without assignedHub or deviceId",
                    );
                    return Outcome::Fail(with_http(e, resp));
                }
                let credential = self.config.credential.clone();
                if let Err(e) =
                    credential.on_assigned(&mut self.tokens, &resp.body, deadline, &self.cancel)
                {
                    return Outcome::Fail(with_http(e, resp));
                }
                let mut r = r;
                if let Some(csr) = &self.config.csr {
                    match check_issued_chain(
                        &r.issued_certificate_chain,
                        &csr.spki,
                        &self.config.registration_id,
                        self.clock.wall(),
                    ) {
                        Ok(pem) => {
                            r.issued_certificate_chain_pem = Some(pem);
                            r.issued_private_key_pem = csr.generated_key.clone();
                        }
                        Err(e) => return Outcome::Fail(with_http(e, resp)),
                    }
                }
                Outcome::Done(r)
            }
            RegistrationStatus::Failed => {
                let r = op.registration;
                let mut e = Error::new(
                    ErrorKind::RegistrationFailed,
                    format!(
                        "the registration failed: {}",
                        r.error_message.as_deref().unwrap_or("no message")
                    ),
                );
                e.http_status = Some(resp.status);
                e.dps_error_code = r.error_code;
                e.tracking_id = tracking;
                Outcome::Fail(e)
            }
            RegistrationStatus::Disabled => {
                let mut e = Error::new(ErrorKind::Disabled, "the enrollment is disabled");
                e.http_status = Some(resp.status);
                e.dps_error_code = op.registration.error_code;
                e.tracking_id = tracking;
                Outcome::Fail(e)
            }
        }
    }
}
