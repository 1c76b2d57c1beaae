//! What the tool prints: the registration (human or JSON), errors (one line on stderr, and
//! `{"error": ...}` on stdout with `--json`), and the escaping that keeps control characters
//! sent by a server (or found in a saved file) off the terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

use dps::Error;
use serde_json::{Value, json};

use crate::exit::{self, Failure, exit_code_for};

/// Whether `c` must not reach a terminal raw: control characters (C0, DEL, C1, which
/// include ESC and CSI, the start of terminal escape sequences) and the bidirectional
/// overrides and isolates that reorder what is shown.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character written as `\u{..}`, for text output.
pub fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Pretty JSON in which no unsafe character is raw: serde_json escapes C0 controls itself;
/// DEL, C1 and the bidi controls are written as `\uXXXX`, so the decoded value is unchanged.
pub fn json_text(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    if !text.chars().any(is_unsafe_char_outside_json_syntax) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe_char_outside_json_syntax(c) {
            // All of these are in the Basic Multilingual Plane: one \uXXXX each.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Unsafe characters other than the newlines of pretty-printing (serde_json never leaves a
/// C0 control raw inside a string, so a raw `\n` is layout).
fn is_unsafe_char_outside_json_syntax(c: char) -> bool {
    c != '\n' && is_unsafe_char(c)
}

pub fn print_json(v: &Value) {
    println!("{}", json_text(v));
}

/// Prints why the command stopped and returns the exit code.
pub fn report(f: Failure, json: bool) -> u8 {
    match f {
        Failure::Usage(m) => {
            eprintln!(
                "dps: {}\nTry `dps --help` or `dps COMMAND --help`.",
                clean(&m)
            );
            if json {
                print_json(&json!({"error": {"exitCode": exit::USAGE, "message": m}}));
            }
            exit::USAGE
        }
        Failure::Other(code, m) => {
            eprintln!("dps: {}", clean(&m));
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
    clean(&s).into_owned()
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
            out.push_str(&format!("{k:<18}{}\n", clean(v)));
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

    #[test]
    fn one_line_escapes_what_the_server_sent() {
        let mut e = Error::new(
            ErrorKind::RegistrationFailed,
            "failed: \u{1b}[2Jgone\r\nok\u{9b}",
        );
        e.tracking_id = Some("t\u{7}".into());
        assert_eq!(
            one_line(&e),
            "failed: \\u{1b}[2Jgone  ok\\u{9b} (trackingId t\\u{7}, status 460 RegistrationFailed)"
        );
    }

    #[test]
    fn clean_escapes_controls_and_bidi_only() {
        assert!(matches!(clean("hub-a.azure-devices.net"), Cow::Borrowed(_)));
        assert_eq!(clean("é ü 日本"), "é ü 日本");
        assert_eq!(clean("a\u{1b}]0;x\u{7}b"), "a\\u{1b}]0;x\\u{7}b");
        assert_eq!(
            clean("\u{202e}txt.exe\u{7f}\t"),
            "\\u{202e}txt.exe\\u{7f}\\u{9}"
        );
    }

    #[test]
    fn json_text_keeps_the_value_and_no_raw_control() {
        let v = json!({"deviceId": "d\u{1b}[31m\u{9b}\u{7f}\u{2066}x", "n": "é"});
        let text = json_text(&v);
        assert!(
            !text.chars().any(|c| c != '\n' && is_unsafe_char(c)),
            "{text:?}"
        );
        assert!(text.contains("\\u009b") && text.contains("\\u007f") && text.contains("\\u2066"));
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
