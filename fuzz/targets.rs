// The fuzz targets' bodies, shared by the cargo-fuzz binaries
// (fuzz/fuzz_targets/*.rs, libFuzzer on nightly) and the stable bounded loop
// (tests/fuzz_loop.rs). Each must never panic, hang or allocate without
// bound, whatever the input; the asserts are the invariants that must hold.
#![allow(dead_code)]

use std::time::{Duration, UNIX_EPOCH};

/// An HTTP response from a server (the one network-facing parser), then the
/// DPS JSON bodies it may carry.
pub fn http_response(data: &[u8]) {
    match dps::__fuzz::parse_response(data) {
        Ok(resp) => {
            assert!(resp.body.len() <= dps::__fuzz::MAX_BODY);
            let _ = dps::__fuzz::wire::parse_operation(&resp.body, "dev");
            let _ = dps::__fuzz::wire::parse_registration(&resp.body, "dev");
            let _ = dps::__fuzz::wire::parse_error_body(&resp.body);
            if let Some(ra) = resp.retry_after.as_deref() {
                retry_after(ra.as_bytes());
            }
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
}

/// DPS JSON bodies (RegistrationOperationStatus, DeviceRegistrationResult,
/// error details).
pub fn wire_json(data: &[u8]) {
    if let Ok(op) = dps::__fuzz::wire::parse_operation(data, "dev") {
        let _ = format!("{op:?}");
    }
    let _ = dps::__fuzz::wire::parse_registration(data, "dev");
    let _ = dps::__fuzz::wire::parse_error_body(data);
}

/// `Retry-After` (delta seconds and the three HTTP-date forms).
pub fn retry_after(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let _ = dps::__fuzz::parse_retry_after(&s, now);
    if let Some(t) = dps::__fuzz::parse_http_date(&s) {
        // Years are 4 digits at most: no date past 9999.
        assert!(t < 253_402_300_800, "{s:?} -> {t}");
    }
}

/// SAS inputs: the base64 key, key derivation and token building for any
/// registration ID the validator accepts; also proxy URLs and endpoints.
pub fn sas(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let (key, id) = s.split_once('\n').unwrap_or((&s, "dev"));
    if let Ok(k) = dps::__fuzz::sas::decode_key(key) {
        assert!((16..=64).contains(&k.len()));
        if dps::__fuzz::ids::validate_registration_id(id).is_ok() {
            let derived = dps::__fuzz::sas::derive_device_key(&k, id);
            assert_eq!(derived.len(), 44);
            let t = dps::__fuzz::sas::token(&k, "0ne00000001", id, 1_700_000_000);
            assert!(t.starts_with("SharedAccessSignature sr="));
        }
    }
    let _ = dps::__fuzz::Proxy::parse(&s);
    let _ = dps::__fuzz::split_host_port(&s, 443);
}

/// PEM: a certificate chain and a key (split at the first 0xff byte), with
/// and without a password; trust anchors.
pub fn pem(data: &[u8]) {
    let (cert, key) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let _ = dps::X509Credential::from_pem(cert, key, None);
    let _ = dps::X509Credential::from_pem(cert, key, Some(b"fixture-pass"));
    let mut b = dps::ConfigBuilder::new("0ne00000001").unwrap();
    let _ = b.add_trusted_roots_pem(cert);
}

/// PKCS#12 / .pfx bytes with the fixtures' password and an empty one.
#[cfg(feature = "pkcs12")]
pub fn pkcs12(data: &[u8]) {
    let _ = dps::X509Credential::from_pkcs12(data, "fixture-pass");
    let _ = dps::X509Credential::from_pkcs12(data, "");
}

/// Validation of server-sent strings (`protocol::validate`): the input after
/// its first byte is the text; each validator runs on it and must keep its
/// promises (no control character, bounded, nothing that could add a member
/// to a connection string or a segment to a request path). The first byte
/// then picks one string field of an `assigned` answer to put the text in
/// (and whether the answer goes through `parse_operation` or
/// `parse_registration`): whatever passes keeps the same promises.
pub fn server_strings(data: &[u8]) {
    use dps::__fuzz::validate as v;
    let (selector, rest) = data.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
    let s = String::from_utf8_lossy(rest);
    let no_control = |t: &str| !t.chars().any(v::is_control);
    let bounded = |e: &dps::Error| no_control(&e.message) && e.message.chars().count() < 400;
    match v::host_name(&s) {
        Ok(()) => {
            assert!(!s.is_empty() && s.len() <= v::MAX_HOST_LEN, "{s:?}");
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            );
            assert!(!s.contains("..") && !s.starts_with('.') && !s.ends_with('.'));
            assert!(
                s.split('.')
                    .all(|l| !l.starts_with('-') && !l.ends_with('-'))
            );
        }
        Err(e) => assert!(bounded(&e), "{:?}", e.message),
    }
    match v::device_id(&s) {
        Ok(()) => {
            assert!(!s.is_empty() && s.len() <= v::MAX_DEVICE_ID_LEN);
            assert!(s.is_ascii() && no_control(&s) && !s.contains(';') && !s.contains(' '));
        }
        Err(e) => assert!(bounded(&e), "{:?}", e.message),
    }
    match v::operation_id(&s) {
        // Needs no encoding in a path segment.
        Ok(()) => {
            assert!(s.len() <= v::MAX_OPERATION_ID_LEN && dps::__fuzz::percent_encode(&s) == s)
        }
        Err(e) => assert!(bounded(&e), "{:?}", e.message),
    }
    match v::text_field("etag", &s) {
        Ok(()) => assert!(no_control(&s) && s.chars().count() <= v::MAX_FIELD_CHARS),
        Err(e) => assert!(bounded(&e), "{:?}", e.message),
    }
    let m = v::server_message(&s);
    assert!(no_control(&m) && m.chars().count() <= v::MAX_SERVER_MESSAGE_CHARS + 1);
    assert_eq!(v::server_message(&m), m, "not idempotent");
    let (sent, got) = s.split_once('\n').unwrap_or((&s, &s));
    match v::registration_id(sent, got) {
        Ok(()) => assert!(sent.eq_ignore_ascii_case(got)),
        Err(e) => assert!(bounded(&e), "{:?}", e.message),
    }

    // The text in one field of an answer.
    const FIELDS: [&str; 7] = [
        "assignedHub",
        "deviceId",
        "registrationId",
        "substatus",
        "etag",
        "errorMessage",
        "operationId",
    ];
    let field = FIELDS[usize::from(selector & 0x7f) % FIELDS.len()];
    let text = serde_json::Value::String(s.into_owned());
    let mut state = serde_json::json!({
        "registrationId": "dev", "assignedHub": "h.azure-devices.net",
        "deviceId": "dev", "status": "assigned", "etag": "e",
    });
    let mut op_id = serde_json::Value::String("5.a.b".into());
    if field == "operationId" {
        op_id = text.clone();
    } else {
        state[field] = text.clone();
    }
    let r = if selector & 0x80 == 0 {
        let body = serde_json::json!({"operationId": op_id, "status": "assigned",
            "registrationState": state});
        dps::__fuzz::wire::parse_operation(body.to_string().as_bytes(), "dev")
            .map(|o| o.registration)
    } else {
        dps::__fuzz::wire::parse_registration(state.to_string().as_bytes(), "dev")
    };
    match r {
        Ok(r) => {
            let hub = r.assigned_hub.unwrap_or_default();
            let dev = r.device_id.unwrap_or_default();
            assert!(!hub.contains(';') && !hub.contains('=') && !dev.contains(';'));
            for t in [&hub, &dev, &r.substatus.unwrap_or_default()] {
                assert!(no_control(t));
            }
            assert!(no_control(&r.error_message.unwrap_or_default()));
            assert!(r.operation_id.unwrap_or_default().len() <= v::MAX_OPERATION_ID_LEN);
        }
        Err(e) => assert!(bounded(&e), "{:?}", e.message),
    }
    if field == "errorMessage" {
        let eb = dps::__fuzz::wire::parse_error_body(
            serde_json::json!({"message": text.clone(), "trackingId": text})
                .to_string()
                .as_bytes(),
        );
        for t in [eb.message, eb.tracking_id].into_iter().flatten() {
            assert!(no_control(&t) && t.chars().count() <= v::MAX_SERVER_MESSAGE_CHARS + 1);
        }
    }
}
