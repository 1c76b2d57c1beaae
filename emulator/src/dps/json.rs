//! The answers' JSON: an order-keeping object builder, the standard error body, and the
//! `DeviceRegistrationResult` of a registration record.

use crate::http::Response;
use crate::util::{now_timestamp, uuid_v4};

use super::Record;

/// A JSON object that keeps its member order: the real service answers in a fixed order
/// (operationId, status, registrationState; x509/symmetricKey first inside it), and some
/// hand-written device parsers depend on it. (serde_json's `Map` sorts keys unless the
/// workspace-wide `preserve_order` feature is enabled, which we do not want to impose.)
#[derive(Clone, Debug, Default)]
pub(crate) struct Obj(Vec<(String, String)>);

impl Obj {
    pub(crate) fn with(mut self, k: &str, v: impl serde::Serialize) -> Obj {
        self.push(k, v);
        self
    }
    pub(crate) fn push(&mut self, k: &str, v: impl serde::Serialize) {
        let v = serde_json::to_string(&v).unwrap_or_else(|_| "null".into());
        self.0.push((k.to_string(), v));
    }
    pub(crate) fn push_obj(&mut self, k: &str, o: &Obj) {
        self.0.push((k.to_string(), o.render()));
    }
    pub(crate) fn render(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(k).unwrap_or_default());
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        out
    }
}

/// An error answer with DPS's error body (`errorCode`, `trackingId`, `message`,
/// `timestampUtc`) and the `x-ms-error-code` header.
pub(crate) fn err_response(status: u16, code: u32, message: &str) -> Response {
    let tracking = uuid_v4();
    let body = Obj::default()
        .with("errorCode", code)
        .with("trackingId", &tracking)
        .with("message", message)
        .with("timestampUtc", now_timestamp())
        .render();
    Response {
        status,
        headers: vec![
            (
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("x-ms-request-id".into(), tracking),
            ("x-ms-error-code".into(), code.to_string()),
        ],
        body: body.into_bytes(),
    }
}

pub(crate) fn json_response(status: u16, body: String) -> Response {
    Response {
        status,
        headers: vec![
            (
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("x-ms-request-id".into(), uuid_v4()),
        ],
        body: body.into_bytes(),
    }
}

pub(crate) fn new_etag() -> String {
    use base64::Engine;
    let u = uuid_v4();
    let quoted = format!("\"{}-0000-0100-0000-{}\"", &u[..8], &u[24..]);
    base64::engine::general_purpose::STANDARD.encode(quoted)
}

/// Percent-encodes a path segment (unreserved characters stay).
pub(crate) fn pct(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// `DeviceRegistrationResult` in the member order of the real service's answers.
/// `tpm_key` is the final answer's `tpm.authenticationKey` (the hub-key activation blob).
pub(crate) fn record_json(
    r: &Record,
    issued_chain: Option<&Vec<String>>,
    tpm_key: Option<&str>,
) -> Obj {
    let mut m = Obj::default();
    if r.status == "disabled" {
        return m
            .with("registrationId", &r.registration_id)
            .with("status", "disabled");
    }
    let mut att = Obj::default();
    if let Some(g) = &r.group_id {
        att.push("enrollmentGroupId", g);
    }
    if let Some(k) = tpm_key {
        att.push("authenticationKey", k);
    }
    m.push_obj(r.att_key, &att);
    m.push("registrationId", &r.registration_id);
    m.push("createdDateTimeUtc", &r.created);
    if r.status == "assigned" {
        if let Some(h) = &r.hub {
            m.push("assignedHub", h);
        }
        if let Some(d) = &r.device_id {
            m.push("deviceId", d);
        }
    }
    m.push("status", r.status);
    if r.status == "assigned"
        && let Some(s) = r.substatus
    {
        m.push("substatus", s);
    }
    if let Some(c) = r.error_code {
        m.push("errorCode", c);
    }
    if let Some(msg) = &r.error_message {
        m.push("errorMessage", msg);
    }
    m.push("lastUpdatedDateTimeUtc", &r.last_updated);
    m.push("etag", &r.etag);
    if r.status == "assigned"
        && let Some(p) = &r.payload
    {
        m.push("payload", p);
    }
    if let Some(chain) = issued_chain {
        m.push("issuedCertificateChain", chain);
    }
    m
}
