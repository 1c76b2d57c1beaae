//! What the tool prints: the registration (human or JSON) and errors (one line on stderr,
//! and `{"error": ...}` on stdout with `--json`).

use dps::Error;
use serde_json::{Value, json};

use crate::exit::{self, Failure, exit_code_for};

pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into())
    );
}

/// Prints why the command stopped and returns the exit code.
pub fn report(f: Failure, json: bool) -> u8 {
    match f {
        Failure::Usage(m) => {
            eprintln!("dps: {m}\nTry `dps --help` or `dps COMMAND --help`.");
            if json {
                print_json(&json!({"error": {"exitCode": exit::USAGE, "message": m}}));
            }
            exit::USAGE
        }
        Failure::Other(code, m) => {
            eprintln!("dps: {m}");
            if json {
                print_json(&json!({"error": {"exitCode": code, "message": m}}));
            }
            code
        }
        Failure::Dps(e) => {
            let code = exit_code_for(e.kind);
            eprintln!("dps: error: {}", one_line(&e));
            if json {
                print_json(&json!({"error": error_json(&e, code)}));
            }
            code
        }
    }
}

/// The error on one line: message, HTTP status, DPS errorCode, trackingId, status.
pub fn one_line(e: &Error) -> String {
    let mut s = e.message.replace(['\n', '\r'], " ");
    let mut detail = Vec::new();
    if let Some(h) = e.http_status {
        detail.push(format!("HTTP {h}"));
    }
    if let Some(c) = e.dps_error_code {
        detail.push(format!("errorCode {c}"));
    }
    if let Some(t) = &e.tracking_id {
        detail.push(format!("trackingId {t}"));
    }
    detail.push(format!("status {} {:?}", e.kind.code(), e.kind));
    s.push_str(&format!(" ({})", detail.join(", ")));
    s
}

pub fn error_json(e: &Error, exit_code: u8) -> Value {
    json!({
        "exitCode": exit_code,
        "status": e.kind.code(),
        "kind": format!("{:?}", e.kind),
        "message": e.message,
        "httpStatus": e.http_status,
        "errorCode": e.dps_error_code,
        "trackingId": e.tracking_id,
        "retriable": e.retriable,
    })
}

pub fn registration_json(
    r: &dps::Registration,
    source: &str,
    connection_string: Option<&str>,
) -> Value {
    let payload = r
        .payload_json
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let mut v = json!({
        "status": r.status.map(|s| s.as_str()),
        "registrationId": r.registration_id,
        "assignedHub": r.assigned_hub,
        "deviceId": r.device_id,
        "substatus": r.substatus,
        "createdDateTimeUtc": r.created_date_time_utc,
        "lastUpdatedDateTimeUtc": r.last_updated_date_time_utc,
        "etag": r.etag,
        "payload": payload,
        "enrollmentGroupId": r.enrollment_group_id,
        "errorCode": r.error_code,
        "errorMessage": r.error_message,
        "source": source,
    });
    if !r.issued_certificate_chain.is_empty() {
        v["issuedCertificateChain"] = json!(r.issued_certificate_chain);
    }
    if let Some(cs) = connection_string {
        v["connectionString"] = json!(cs);
    }
    // Leave out absent fields: scripts test for presence.
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

pub fn print_human(fields: &[(&str, Option<String>)]) {
    let mut out = String::new();
    for (k, v) in fields {
        if let Some(v) = v {
            out.push_str(&format!("{k:<18}{v}\n"));
        }
    }
    print!("{out}");
}

pub fn print_registration(
    r: &dps::Registration,
    json_out: bool,
    source: &str,
    connection_string: Option<&str>,
) {
    if json_out {
        print_json(&registration_json(r, source, connection_string));
        return;
    }
    print_human(&[
        ("status", r.status.map(|s| s.as_str().to_owned())),
        ("registration id", r.registration_id.clone()),
        ("assigned hub", r.assigned_hub.clone()),
        ("device id", r.device_id.clone()),
        ("substatus", r.substatus.clone()),
        ("enrollment group", r.enrollment_group_id.clone()),
        ("payload", r.payload_json.clone()),
        ("created", r.created_date_time_utc.clone()),
        ("last updated", r.last_updated_date_time_utc.clone()),
        ("error code", r.error_code.map(|c| c.to_string())),
        ("error message", r.error_message.clone()),
        (
            "issued certs",
            (!r.issued_certificate_chain.is_empty())
                .then(|| r.issued_certificate_chain.len().to_string()),
        ),
        ("source", (source != "dps").then(|| source.to_owned())),
        ("connection string", connection_string.map(str::to_owned)),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps::ErrorKind;

    #[test]
    fn one_line_has_detail() {
        let mut e = Error::new(
            ErrorKind::Unauthorized,
            "DPS answered HTTP 401: Unauthorized",
        );
        e.http_status = Some(401);
        e.dps_error_code = Some(401002);
        e.tracking_id = Some("t-1".into());
        assert_eq!(
            one_line(&e),
            "DPS answered HTTP 401: Unauthorized (HTTP 401, errorCode 401002, trackingId t-1, status 401 Unauthorized)"
        );
    }
}
