//! The three answers once a device is authenticated: register (a new operation), poll (its
//! progress, then the committed record) and the status lookup; hub allocation and the
//! certificate issued for a CSR.

use serde_json::Value;

use crate::config::{Allocation, Config, Enrollment, Reprovision, TerminalResult};
use crate::http::Response;
use crate::util::{now_timestamp, uuid_v4};

use super::faults::Overrides;
use super::json::{Obj, err_response, json_response, new_etag, pct, record_json};
use super::{Ctx, Device, MAX_OPERATIONS, Operation, Outcome, Record, State};

/// `issuedCertificateChain` (base64 DER, leaf first) for the body's CSR, if it has one: signed
/// by the enrollment's issuing CA (else the emulator's), broken if a fault says so.
pub(super) fn issue(
    cx: &Ctx<'_>,
    enrollment: usize,
    default_issuer: Option<&crate::pki::TestCa>,
    ov: &Overrides,
) -> Result<Option<Vec<String>>, Response> {
    use base64::Engine;
    let Some(csr) = &cx.body.csr else {
        return Ok(None);
    };
    let issuance = &cx.cfg.enrollments[enrollment].issuance;
    let own = match &issuance.ca {
        Some(ca) => Some(
            crate::pki::TestCa::from_pem(&ca.cert_pem, &ca.key_pem)
                .map_err(|m| err_response(500, 500001, &format!("issuing CA: {m}")))?,
        ),
        None => None,
    };
    let issuer = own.as_ref().or(default_issuer);
    let opts = crate::pki::IssueOptions {
        key_types: &issuance.key_types,
        validity_days: issuance.validity_days,
        broken: ov.broken_chain,
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let signed = match (issuer, engine.decode(csr.trim())) {
        (None, _) => Err("certificate issuance is not available".to_string()),
        (_, Err(_)) => Err("csr must be base64 DER (no PEM header)".to_string()),
        (Some(ca), Ok(der)) => ca.sign_csr_der(&der, &cx.regid, &opts),
    };
    match signed {
        Ok(chain) => Ok(Some(chain.iter().map(|d| engine.encode(d)).collect())),
        Err(m) => Err(err_response(400, 400004, &format!("Invalid CSR: {m}"))),
    }
}

fn terminal_outcome(t: TerminalResult, device_id: String) -> Outcome {
    match t {
        TerminalResult::Failed {
            error_code,
            message,
        } => Outcome::Failed {
            error_code,
            message,
        },
        TerminalResult::Disabled => Outcome::Disabled,
        TerminalResult::AssignedWithoutHub => Outcome::Assigned {
            hub: None,
            device_id,
            substatus: "initialAssignment",
        },
    }
}

/// The hub of registration number `dev.registrations` and its substatus against the current one.
fn allocate(enr: &Enrollment, dev: &Device, lower: &str) -> (String, &'static str) {
    let n = (dev.registrations - 1) as usize;
    let hubs = &enr.hubs;
    let target = match (&enr.initial_hub, n) {
        (Some(h), 0) => h.clone(),
        _ => match enr.allocation {
            Allocation::Hashed => {
                let d = ring::digest::digest(&ring::digest::SHA256, lower.as_bytes());
                let x = u64::from_be_bytes(d.as_ref()[..8].try_into().unwrap_or([0; 8]));
                hubs[(x % hubs.len() as u64) as usize].clone()
            }
            Allocation::Static => hubs[0].clone(),
            Allocation::RoundRobin => hubs[n % hubs.len()].clone(),
        },
    };
    match dev.current_hub.clone() {
        None => (target, "initialAssignment"),
        Some(cur) if enr.reprovision == Reprovision::Never => (cur, "initialAssignment"),
        Some(cur) if cur.eq_ignore_ascii_case(&target) => (cur, "initialAssignment"),
        Some(_)
            if dev
                .first_hub
                .as_deref()
                .is_some_and(|f| f.eq_ignore_ascii_case(&target)) =>
        {
            (target, "reprovisionedToInitialAssignment")
        }
        Some(_) => (
            target,
            if enr.reprovision == Reprovision::Reset {
                "deviceDataReset"
            } else {
                "deviceDataMigrated"
            },
        ),
    }
}

fn att_info(cfg: &Config, idx: usize) -> (&'static str, Option<String>) {
    let e = &cfg.enrollments[idx];
    (
        e.attestation.record_member(),
        e.group_id().map(str::to_string),
    )
}

fn fresh_record(registration_id: String, att: (&'static str, Option<String>)) -> Record {
    let now = now_timestamp();
    Record {
        registration_id,
        created: now.clone(),
        last_updated: now,
        etag: new_etag(),
        status: "assigning",
        hub: None,
        device_id: None,
        substatus: None,
        error_code: None,
        error_message: None,
        payload: None,
        att_key: att.0,
        group_id: att.1,
    }
}

/// PUT `.../register`: starts an operation that ends as allocated (or as the fault says).
pub(super) fn register(
    st: &mut State,
    cx: &Ctx<'_>,
    enrollment: usize,
    ov: &Overrides,
    issued_chain: Option<Vec<String>>,
    tpm_key: Option<String>,
) -> Response {
    let cfg = cx.cfg;
    let enr = &cfg.enrollments[enrollment];
    let (regid, lower) = (&cx.regid, &cx.lower);
    let dev = st.devices.entry(lower.clone()).or_default();
    dev.registrations += 1;
    let device_id = enr.device_id.clone().unwrap_or_else(|| regid.to_string());
    let outcome = match ov.terminal.clone() {
        Some(t) => terminal_outcome(t, device_id),
        None if !enr.enabled => Outcome::Disabled,
        None if enr.hubs.is_empty() => Outcome::Failed {
            error_code: 400208,
            message: "No IoT hub is available for the device.".into(),
        },
        None => {
            let (hub, substatus) = allocate(enr, dev, lower);
            Outcome::Assigned {
                hub: Some(hub),
                device_id,
                substatus,
            }
        }
    };
    let payload: Option<Value> = if enr.echo_payload && cx.body.payload.is_some() {
        cx.body.payload.clone()
    } else {
        enr.payload.clone()
    };
    let prev = dev.record.take();
    let mut rec = fresh_record(regid.clone(), att_info(cfg, enrollment));
    if let Some(p) = &prev {
        rec.created = p.created.clone();
        rec.hub = p.hub.clone();
        rec.device_id = p.device_id.clone();
    }
    dev.record = Some(rec);
    st.op_counter += 1;
    let op_id = format!(
        "5.{}.{}",
        crate::util::hex_lower(&crate::util::random_bytes::<8>()),
        uuid_v4()
    );
    if st.op_order.len() >= MAX_OPERATIONS
        && let Some(old) = st.op_order.pop_front()
    {
        st.operations.remove(&old);
    }
    let retry_after = enr.retry_after_secs.unwrap_or(cfg.retry_after_secs);
    st.op_order.push_back(op_id.clone());
    st.operations.insert(
        op_id.clone(),
        Operation {
            regid_lower: lower.clone(),
            polls_left: enr.assigning_polls.unwrap_or(cfg.assigning_polls),
            endless: ov.endless,
            retry_after,
            outcome,
            payload,
            issued_chain,
            tpm_key,
            done: None,
        },
    );
    let host = cx
        .req
        .header("host")
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()) && !h.is_empty())
        .unwrap_or("global.azure-devices-provisioning.net");
    let mut r = json_response(
        202,
        Obj::default()
            .with("operationId", &op_id)
            .with("status", "assigning")
            .render(),
    );
    r.set_header("Retry-After", retry_after.to_string());
    r.set_header(
        "Location",
        format!(
            "https://{host}/{}/registrations/{}/register",
            pct(&cx.scope),
            pct(regid)
        ),
    );
    r
}

/// GET `.../operations/{id}`: `assigning` while polls are left, then the committed record
/// (later polls repeat the terminal answer).
pub(super) fn poll(st: &mut State, cx: &Ctx<'_>, enrollment: usize, ov: &Overrides) -> Response {
    let (cfg, lower) = (cx.cfg, cx.lower.as_str());
    let opid = cx.opid.as_deref().unwrap_or("");
    let State {
        devices,
        operations,
        ..
    } = st;
    let Some(op) = operations.get_mut(opid).filter(|o| o.regid_lower == lower) else {
        return err_response(404, 404002, "Operation not found.");
    };
    if let Some(done) = &op.done {
        return json_response(200, done.clone());
    }
    if ov.endless {
        op.endless = true;
    }
    if let Some(t) = ov.terminal.clone() {
        let device_id = cfg.enrollments[enrollment]
            .device_id
            .clone()
            .unwrap_or_else(|| lower.to_string());
        op.outcome = terminal_outcome(t, device_id);
        op.polls_left = 0;
        op.endless = false;
    }
    let dev = devices.entry(lower.to_string()).or_default();
    if op.endless || op.polls_left > 0 {
        op.polls_left = op.polls_left.saturating_sub(1);
        let regid = dev
            .record
            .as_ref()
            .map(|r| r.registration_id.clone())
            .unwrap_or_else(|| lower.to_string());
        let mut body = Obj::default()
            .with("operationId", opid)
            .with("status", "assigning");
        body.push_obj(
            "registrationState",
            &Obj::default()
                .with("registrationId", regid)
                .with("status", "assigning"),
        );
        let mut r = json_response(202, body.render());
        r.set_header("Retry-After", op.retry_after.to_string());
        return r;
    }
    let body = commit(dev, op, opid, att_info(cfg, enrollment), lower);
    op.done = Some(body.clone());
    json_response(200, body)
}

/// The terminal answer of `op`: writes the outcome into the device's record; returns the body.
fn commit(
    dev: &mut Device,
    op: &Operation,
    opid: &str,
    att: (&'static str, Option<String>),
    lower: &str,
) -> String {
    let rec = dev
        .record
        .get_or_insert_with(|| fresh_record(lower.to_string(), att));
    rec.last_updated = now_timestamp();
    rec.etag = new_etag();
    rec.error_code = None;
    rec.error_message = None;
    rec.substatus = None;
    rec.payload = None;
    let status = match &op.outcome {
        Outcome::Assigned {
            hub,
            device_id,
            substatus,
        } => {
            rec.hub = hub.clone();
            rec.device_id = Some(device_id.clone());
            rec.substatus = Some(substatus);
            rec.payload = op.payload.clone();
            if let Some(h) = hub {
                dev.current_hub = Some(h.clone());
                if dev.first_hub.is_none() {
                    dev.first_hub = Some(h.clone());
                }
            }
            "assigned"
        }
        Outcome::Failed {
            error_code,
            message,
        } => {
            rec.error_code = Some(*error_code);
            rec.error_message = Some(message.clone());
            "failed"
        }
        Outcome::Disabled => "disabled",
    };
    rec.status = status;
    let (chain, tpm_key) = if status == "assigned" {
        (op.issued_chain.as_ref(), op.tpm_key.as_deref())
    } else {
        (None, None)
    };
    let mut body = Obj::default()
        .with("operationId", opid)
        .with("status", status);
    body.push_obj("registrationState", &record_json(rec, chain, tpm_key));
    body.render()
}

/// POST `/{scope}/registrations/{id}`: the device's record (as a fault may override it).
pub(super) fn lookup(st: &State, cx: &Ctx<'_>, ov: &Overrides) -> Response {
    let Some(rec) = st.devices.get(&cx.lower).and_then(|d| d.record.as_ref()) else {
        return err_response(404, 404201, "Registration not found.");
    };
    let mut rec = rec.clone();
    match ov.terminal.clone() {
        Some(TerminalResult::Failed {
            error_code,
            message,
        }) => {
            rec.status = "failed";
            rec.error_code = Some(error_code);
            rec.error_message = Some(message);
            rec.hub = None;
        }
        Some(TerminalResult::Disabled) => rec.status = "disabled",
        Some(TerminalResult::AssignedWithoutHub) => {
            rec.status = "assigned";
            rec.hub = None;
        }
        None => {}
    }
    json_response(200, record_json(&rec, None, None).render())
}
