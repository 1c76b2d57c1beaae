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
            let _ = dps::__fuzz::wire::parse_operation(&resp.body);
            let _ = dps::__fuzz::wire::parse_registration(&resp.body);
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
    if let Ok(op) = dps::__fuzz::wire::parse_operation(data) {
        let _ = format!("{op:?}");
    }
    let _ = dps::__fuzz::wire::parse_registration(data);
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
