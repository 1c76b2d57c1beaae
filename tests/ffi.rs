//! The C ABI driven from Rust: a registration through it, the step API and
//! callback, NULL and bad input on every entry point, the header drift check
//! and the panic-guard rule.

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::{null, null_mut};

use dps::ffi::*;
use dps_test_support::*;

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn text(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned())
}

#[test]
fn header_matches_the_code() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/dps.h"))
        .expect("build.rs generated the header");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/dps.h")).unwrap();
    assert!(
        generated == committed,
        "include/dps.h is stale: run `DPS_UPDATE_HEADER=1 cargo build` and commit it"
    );
}

#[test]
fn every_exported_function_is_guarded_and_declared() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/dps.h")).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ffi");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        for (i, chunk) in src.split("#[unsafe(no_mangle)]").enumerate().skip(1) {
            let name = chunk
                .split("fn ")
                .nth(1)
                .and_then(|s| s.split('(').next())
                .unwrap()
                .trim()
                .to_owned();
            // The body is up to the next exported item; the first statement must be a guard.
            let body = &chunk[chunk.find('{').unwrap()..];
            let first = body[1..].trim_start();
            assert!(
                first.starts_with("guard(")
                    || first.starts_with("with_config(")
                    || first.starts_with("with_client(")
                    || first.starts_with("field("),
                "{}: exported fn #{i} `{name}` does not start with a panic guard",
                path.display()
            );
            assert!(
                header.contains(&format!(" {name}(")) || header.contains(&format!("*{name}(")),
                "`{name}` is missing from include/dps.h"
            );
            count += 1;
        }
    }
    assert!(count >= 45, "found only {count} exported functions");
}

unsafe fn config_for(emu: &dps_emulator::Emulator, id: &str) -> *mut dps_config {
    let mut cfg = null_mut();
    unsafe {
        assert_eq!(
            dps_config_new(cs(SCOPE).as_ptr(), cs(id).as_ptr(), &mut cfg),
            DPS_OK
        );
        assert_eq!(
            dps_config_set_endpoint(cfg, cs(&format!("localhost:{}", emu.port())).as_ptr()),
            DPS_OK
        );
        assert_eq!(dps_config_set_default_roots(cfg, DPS_ROOTS_NONE), DPS_OK);
        assert_eq!(
            dps_config_add_trusted_ca_pem(cfg, cs(&emu.ca_pem()).as_ptr()),
            DPS_OK
        );
        assert_eq!(dps_config_set_timeout_ms(cfg, 20_000), DPS_OK);
        assert_eq!(dps_config_set_backoff_ms(cfg, 10, 100), DPS_OK);
    }
    cfg
}

#[test]
fn registers_through_the_c_abi() {
    let emu = emulator("");
    unsafe {
        let cfg = config_for(&emu, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6");
        assert_eq!(
            dps_config_set_group_key(cfg, cs(GROUP_KEY).as_ptr()),
            DPS_OK
        );
        assert_eq!(
            dps_config_set_payload_json(cfg, cs(r#"{"a":"b"}"#).as_ptr()),
            DPS_OK
        );
        let mut reg = null_mut();
        let mut err = null_mut();
        assert_eq!(dps_register(cfg, &mut reg, &mut err), DPS_OK);
        assert!(err.is_null());
        assert_eq!(dps_registration_status(reg), DPS_REGISTRATION_ASSIGNED);
        assert_eq!(
            text(dps_registration_device_id(reg)).as_deref(),
            Some("sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6")
        );
        assert!(
            text(dps_registration_assigned_hub(reg))
                .unwrap()
                .ends_with(".azure-devices.net")
        );
        assert_eq!(
            text(dps_registration_payload_json(reg)).as_deref(),
            Some(r#"{"a":"b"}"#)
        );
        assert_eq!(
            text(dps_registration_substatus(reg)).as_deref(),
            Some("initialAssignment")
        );
        assert_eq!(dps_registration_issued_certificate_count(reg), 0);
        assert!(dps_registration_issued_certificate(reg, 0).is_null());
        dps_registration_free(reg);
        dps_config_free(cfg);
    }
}

extern "C" fn record_event(userdata: *mut c_void, event: u32, _wait_ms: u32, _cause: dps_status) {
    let events = unsafe { &mut *(userdata as *mut Vec<u32>) };
    events.push(event);
}

#[test]
fn step_api_callback_and_error_detail() {
    let emu = emulator("");
    unsafe {
        let cfg = config_for(&emu, "dev-sym");
        assert_eq!(dps_config_set_symmetric_key(cfg, cs(KEY).as_ptr()), DPS_OK);
        let mut client = null_mut();
        assert_eq!(dps_client_new(cfg, &mut client, null_mut()), DPS_OK);
        dps_config_free(cfg); // the client keeps its own copy
        let mut events: Vec<u32> = Vec::new();
        assert_eq!(
            dps_client_set_event_callback(
                client,
                Some(record_event),
                &mut events as *mut Vec<u32> as *mut c_void
            ),
            DPS_OK
        );
        let mut reg = null_mut();
        let mut wait = 0u32;
        let mut pending = 0;
        loop {
            match dps_client_step(client, &mut wait, &mut reg) {
                DPS_PENDING => {
                    // A caller waits wait_ms before the next step.
                    pending += 1;
                    std::thread::sleep(std::time::Duration::from_millis(wait.into()));
                }
                DPS_OK => break,
                other => panic!("step failed: {other}"),
            }
        }
        assert_eq!(pending, 2);
        assert_eq!(
            events,
            vec![
                DPS_EVENT_REGISTERING,
                DPS_EVENT_ASSIGNING,
                DPS_EVENT_ASSIGNING,
                DPS_EVENT_ASSIGNED
            ]
        );
        assert!(dps_client_last_error(client).is_null());

        assert_eq!(
            text(dps_client_registration_id(client)).as_deref(),
            Some("dev-sym")
        );
        let mut len = 0usize;
        assert_eq!(
            dps_client_connection_string(client, reg, null_mut(), 0, &mut len),
            DPS_ERR_BUFFER_TOO_SMALL
        );
        assert!(len > 40, "size query gives the length");
        let mut buf = [0 as c_char; 8];
        assert_eq!(
            dps_client_connection_string(client, reg, buf.as_mut_ptr(), buf.len(), &mut len),
            DPS_ERR_BUFFER_TOO_SMALL
        );
        let mut big = vec![0 as c_char; len + 1];
        assert_eq!(
            dps_client_connection_string(client, reg, big.as_mut_ptr(), big.len(), &mut len),
            DPS_OK
        );
        assert_eq!(
            text(big.as_ptr()).unwrap(),
            format!(
                "HostName=hub-a.azure-devices.net;DeviceId=dev-sym-device;SharedAccessKey={KEY}"
            )
        );
        dps_registration_free(reg);

        // Lookup over the same client.
        let mut reg = null_mut();
        assert_eq!(dps_client_lookup(client, &mut reg), DPS_OK);
        assert_eq!(dps_registration_status(reg), DPS_REGISTRATION_ASSIGNED);
        dps_registration_free(reg);
        dps_client_free(client);

        // Wrong key: the detail is on the error object.
        let cfg = config_for(&emu, "dev-sym");
        assert_eq!(
            dps_config_set_symmetric_key(
                cfg,
                cs("HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=").as_ptr()
            ),
            DPS_OK
        );
        let mut reg = null_mut();
        let mut err = null_mut();
        assert_eq!(dps_register(cfg, &mut reg, &mut err), DPS_ERR_UNAUTHORIZED);
        assert!(reg.is_null());
        assert_eq!(dps_error_status(err), DPS_ERR_UNAUTHORIZED);
        assert_eq!(dps_error_http_status(err), 401);
        assert_eq!(dps_error_dps_code(err), 401002);
        assert!(text(dps_error_tracking_id(err)).is_some());
        assert!(!dps_error_retriable(err));
        let msg = text(dps_error_message(err)).unwrap();
        assert!(msg.contains("401002") && !msg.contains("HxweHRwb"), "{msg}");
        dps_error_free(err);
        dps_config_free(cfg);
    }
}

#[test]
fn bad_input_is_rejected_without_traffic() {
    unsafe {
        let mut cfg = null_mut();
        assert_eq!(
            dps_config_new(null(), null(), &mut cfg),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_new(cs("0ne1").as_ptr(), null(), null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_new(cs("").as_ptr(), null(), &mut cfg),
            DPS_ERR_INVALID_ID_SCOPE
        );
        assert_eq!(
            dps_config_new(cs("0ne/1").as_ptr(), null(), &mut cfg),
            DPS_ERR_INVALID_ID_SCOPE
        );
        assert_eq!(
            dps_config_new(cs("0ne1").as_ptr(), cs("-bad").as_ptr(), &mut cfg),
            DPS_ERR_INVALID_REGISTRATION_ID
        );
        let bad_utf8 = [0xffu8, 0xfe, 0];
        assert_eq!(
            dps_config_new(bad_utf8.as_ptr().cast(), null(), &mut cfg),
            DPS_ERR_INVALID_UTF8
        );
        assert!(cfg.is_null(), "outputs untouched on failure");

        assert_eq!(
            dps_config_new(cs("0ne1").as_ptr(), cs("dev").as_ptr(), &mut cfg),
            DPS_OK
        );
        // Setters: NULL config, NULL args, malformed values.
        assert_eq!(
            dps_config_set_symmetric_key(null_mut(), cs(KEY).as_ptr()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_set_symmetric_key(cfg, null()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_set_symmetric_key(cfg, cs("not base64").as_ptr()),
            DPS_ERR_INVALID_KEY
        );
        assert!(
            text(dps_error_message(dps_config_last_error(cfg)))
                .unwrap()
                .contains("base64")
        );
        assert_eq!(
            dps_config_set_symmetric_key(cfg, cs("AAAA").as_ptr()),
            DPS_ERR_INVALID_KEY
        );
        // A DER certificate passed as PEM text (issue 14 item 8): not UTF-8, and said why.
        let der = dps_emulator::pki::TestCa::new("der as pem").cert_der();
        let nul = der.iter().position(|&b| b == 0).unwrap_or(der.len());
        let der = CString::new(&der[..nul]).unwrap();
        assert_eq!(
            dps_config_set_x509_pem(cfg, der.as_ptr(), der.as_ptr(), null()),
            DPS_ERR_INVALID_UTF8
        );
        let m = text(dps_error_message(dps_config_last_error(cfg))).unwrap();
        assert!(
            m.starts_with(
                "cert_chain_pem is not valid UTF-8; PEM is text, so this is probably DER"
            ),
            "{m}"
        );
        assert_eq!(
            dps_config_set_group_key(cfg, cs("").as_ptr()),
            DPS_ERR_INVALID_KEY
        );
        assert_eq!(
            dps_config_set_x509_pem(cfg, cs("junk").as_ptr(), cs("junk").as_ptr(), null()),
            DPS_ERR_INVALID_CERTIFICATE
        );
        assert_eq!(
            dps_config_set_x509_pem(cfg, null(), cs("x").as_ptr(), null()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_set_x509_pem_files(
                cfg,
                cs("/nonexistent/c.pem").as_ptr(),
                cs("/nonexistent/k.pem").as_ptr(),
                null()
            ),
            DPS_ERR_FILE_READ
        );
        assert_eq!(
            dps_config_set_pkcs12(cfg, null(), 0, cs("").as_ptr()),
            DPS_ERR_NULL_ARGUMENT
        );
        let junk = [1u8, 2, 3];
        let st = dps_config_set_pkcs12(cfg, junk.as_ptr(), junk.len(), cs("pw").as_ptr());
        assert!(
            st == DPS_ERR_INVALID_PKCS12 || st == DPS_ERR_UNSUPPORTED,
            "{st}"
        );
        assert_eq!(
            dps_config_set_pkcs12_file(cfg, cs("/nonexistent.pfx").as_ptr(), cs("").as_ptr()),
            DPS_ERR_FILE_READ
        );
        for bad in ["[1]", "1", "{", "null", "\"x\""] {
            assert_eq!(
                dps_config_set_payload_json(cfg, cs(bad).as_ptr()),
                DPS_ERR_INVALID_PAYLOAD,
                "{bad}"
            );
        }
        assert_eq!(
            dps_config_set_endpoint(cfg, cs("host:port").as_ptr()),
            DPS_ERR_INVALID_ENDPOINT
        );
        assert_eq!(
            dps_config_set_endpoint(cfg, cs("").as_ptr()),
            DPS_ERR_INVALID_ENDPOINT
        );
        assert_eq!(
            dps_config_set_api_version(cfg, cs("2021/06").as_ptr()),
            DPS_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            dps_config_add_trusted_ca_pem(cfg, cs("not pem").as_ptr()),
            DPS_ERR_INVALID_TRUST_ANCHOR
        );
        assert_eq!(
            dps_config_add_trusted_ca_file(cfg, cs("/nonexistent").as_ptr()),
            DPS_ERR_FILE_READ
        );
        assert_eq!(
            dps_config_set_default_roots(cfg, 99),
            DPS_ERR_INVALID_ARGUMENT
        );
        let mozilla = if cfg!(feature = "mozilla-roots") {
            DPS_OK
        } else {
            DPS_ERR_UNSUPPORTED
        };
        assert_eq!(
            dps_config_set_default_roots(cfg, DPS_ROOTS_MOZILLA),
            mozilla
        );
        assert_eq!(dps_config_set_default_roots(cfg, DPS_ROOTS_AZURE), DPS_OK);
        assert_eq!(
            dps_config_set_proxy(cfg, cs("socks5://x").as_ptr()),
            DPS_ERR_INVALID_PROXY
        );
        assert_eq!(dps_config_set_timeout_ms(cfg, 0), DPS_ERR_INVALID_ARGUMENT);
        assert_eq!(
            dps_config_set_request_timeout_ms(cfg, 0),
            DPS_ERR_INVALID_ARGUMENT
        );
        assert_eq!(dps_config_set_sas_ttl_s(cfg, 0), DPS_ERR_INVALID_ARGUMENT);
        assert_eq!(
            dps_config_set_backoff_ms(cfg, 10, 1),
            DPS_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            dps_config_set_user_agent_suffix(cfg, cs("a\nb").as_ptr()),
            DPS_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            dps_config_set_user_agent_suffix(cfg, cs(&"x".repeat(1000)).as_ptr()),
            DPS_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            dps_config_set_force_registration(null_mut(), true),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_set_poll_interval_ms(null_mut(), 1),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_use_proxy_from_env(null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_set_user_agent_suffix(cfg, cs("fw/1.0").as_ptr()),
            DPS_OK
        );
        assert!(dps_config_last_error(cfg).is_null());

        // No credential yet: client creation and registration fail before any traffic.
        let mut client = null_mut();
        let mut err = null_mut();
        assert_eq!(
            dps_client_new(cfg, &mut client, &mut err),
            DPS_ERR_NO_CREDENTIAL
        );
        assert!(client.is_null());
        assert_eq!(dps_error_status(err), DPS_ERR_NO_CREDENTIAL);
        dps_error_free(err);
        let mut reg = null_mut();
        assert_eq!(
            dps_register(cfg, &mut reg, null_mut()),
            DPS_ERR_NO_CREDENTIAL
        );
        assert_eq!(
            dps_register(null(), &mut reg, null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_register(cfg, null_mut(), null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_client_new(null(), &mut client, null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_client_new(cfg, null_mut(), null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );

        // Client functions with NULL.
        let mut wait = 0;
        assert_eq!(
            dps_client_register(null_mut(), &mut reg),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_client_step(null_mut(), &mut wait, &mut reg),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_client_lookup(null_mut(), &mut reg),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_client_set_event_callback(null_mut(), None, null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert!(dps_client_last_error(null()).is_null());
        dps_client_cancel(null());
        let mut len = 0;
        assert_eq!(
            dps_client_connection_string(null(), null(), null_mut(), 0, &mut len),
            DPS_ERR_NULL_ARGUMENT
        );

        // A client with a credential: NULL outputs.
        assert_eq!(dps_config_set_symmetric_key(cfg, cs(KEY).as_ptr()), DPS_OK);
        assert_eq!(dps_client_new(cfg, &mut client, null_mut()), DPS_OK);
        assert_eq!(
            dps_client_register(client, null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_client_step(client, null_mut(), &mut reg),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_client_step(client, &mut wait, null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(dps_client_lookup(client, null_mut()), DPS_ERR_NULL_ARGUMENT);
        dps_client_free(client);

        // Getters and frees on NULL.
        assert_eq!(dps_registration_status(null()), DPS_REGISTRATION_UNASSIGNED);
        assert!(dps_registration_assigned_hub(null()).is_null());
        assert!(dps_registration_device_id(null()).is_null());
        assert!(dps_registration_registration_id(null()).is_null());
        assert!(dps_registration_substatus(null()).is_null());
        assert!(dps_registration_created_at(null()).is_null());
        assert!(dps_registration_last_updated_at(null()).is_null());
        assert!(dps_registration_etag(null()).is_null());
        assert!(dps_registration_payload_json(null()).is_null());
        assert!(dps_registration_enrollment_group_id(null()).is_null());
        assert!(dps_registration_error_message(null()).is_null());
        assert_eq!(dps_registration_error_code(null()), 0);
        assert_eq!(dps_registration_issued_certificate_count(null()), 0);
        assert!(dps_registration_issued_certificate(null(), 0).is_null());
        assert_eq!(dps_error_status(null()), DPS_ERR_NULL_ARGUMENT);
        assert!(dps_error_message(null()).is_null());
        assert_eq!(dps_error_http_status(null()), 0);
        assert_eq!(dps_error_dps_code(null()), 0);
        assert!(dps_error_tracking_id(null()).is_null());
        assert!(!dps_error_retriable(null()));
        assert_eq!(dps_error_cause_status(null()), DPS_OK);
        assert!(dps_config_last_error(null()).is_null());
        dps_registration_free(null_mut());
        dps_error_free(null_mut());
        dps_client_free(null_mut());
        dps_config_free(null_mut());
        dps_config_free(cfg);

        // Standalone helpers.
        let mut buf = [0 as c_char; 45];
        let mut len = 0;
        assert_eq!(
            dps_derive_device_key(
                cs(GROUP_KEY).as_ptr(),
                cs("sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6").as_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut len
            ),
            DPS_OK
        );
        assert_eq!(
            text(buf.as_ptr()).as_deref(),
            Some("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=")
        );
        assert_eq!(len, 44);
        assert_eq!(
            dps_derive_device_key(
                cs(GROUP_KEY).as_ptr(),
                cs("x").as_ptr(),
                buf.as_mut_ptr(),
                44,
                &mut len
            ),
            DPS_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(len, 44, "needed length reported on a short buffer");
        assert_eq!(
            dps_derive_device_key(
                cs(GROUP_KEY).as_ptr(),
                cs("x").as_ptr(),
                null_mut(),
                0,
                &mut len
            ),
            DPS_ERR_BUFFER_TOO_SMALL,
            "NULL buffer with capacity 0 is a size query"
        );
        assert_eq!(
            dps_derive_device_key(
                cs(GROUP_KEY).as_ptr(),
                cs("x").as_ptr(),
                null_mut(),
                45,
                &mut len
            ),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_derive_device_key(null(), cs("x").as_ptr(), buf.as_mut_ptr(), 45, &mut len),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_derive_device_key(
                cs("!!").as_ptr(),
                cs("x").as_ptr(),
                buf.as_mut_ptr(),
                45,
                &mut len
            ),
            DPS_ERR_INVALID_KEY
        );
        assert_eq!(
            dps_derive_device_key(
                cs(GROUP_KEY).as_ptr(),
                cs("a b").as_ptr(),
                buf.as_mut_ptr(),
                45,
                &mut len
            ),
            DPS_ERR_INVALID_REGISTRATION_ID
        );
        assert!(
            text(dps_status_str(DPS_ERR_KEY_MISMATCH))
                .unwrap()
                .contains("does not match")
        );
        assert_eq!(
            dps_set_log_callback(None, null_mut(), 9),
            DPS_ERR_INVALID_ARGUMENT
        );
    }
}

#[test]
fn cancel_from_another_thread_ends_a_blocking_registration() {
    // Endless "assigning" with a long Retry-After: only cancel can end it early.
    let emu = emulator(
        r#"
[[enrollments]]
registration_id = "dev-slow"
attestation = "symmetric_key"
primary_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
retry_after_secs = 30
"#,
    );
    unsafe {
        let cfg = config_for(&emu, "dev-slow");
        assert_eq!(dps_config_set_symmetric_key(cfg, cs(KEY).as_ptr()), DPS_OK);
        assert_eq!(dps_config_set_timeout_ms(cfg, 120_000), DPS_OK);
        let mut client = null_mut();
        assert_eq!(dps_client_new(cfg, &mut client, null_mut()), DPS_OK);
        let addr = client as usize;
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            dps_client_cancel(addr as *const dps_client);
        });
        let started = std::time::Instant::now();
        let mut reg = null_mut();
        assert_eq!(dps_client_register(client, &mut reg), DPS_ERR_CANCELLED);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(5),
            "cancel took {took:?}"
        );
        canceller.join().unwrap();
        assert_eq!(
            dps_error_status(dps_client_last_error(client)),
            DPS_ERR_CANCELLED
        );
        dps_client_free(client);
        dps_config_free(cfg);
    }
}

#[test]
fn certificate_issuance_through_the_c_abi() {
    let emu = start(&format!(
        "{}{}",
        base_toml(),
        sym_enrollment("dev-c-csr", "")
    ));
    let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    unsafe {
        let cfg = config_for(&emu, "dev-c-csr");
        assert_eq!(dps_config_set_symmetric_key(cfg, cs(KEY).as_ptr()), DPS_OK);
        // refusals
        assert_eq!(
            dps_config_set_csr(null_mut(), DPS_CSR_P256, null()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(dps_config_set_csr(cfg, 7, null()), DPS_ERR_INVALID_ARGUMENT);
        assert_eq!(
            dps_config_set_csr(cfg, DPS_CSR_P256, cs(&other_key).as_ptr()),
            DPS_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            dps_config_set_csr(cfg, DPS_CSR_PEM, null()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_set_csr(cfg, DPS_CSR_PEM, cs("not a key").as_ptr()),
            DPS_ERR_INVALID_PRIVATE_KEY
        );
        // a generated P-384 key
        // RSA-2048 generation follows the build's `rsa-keygen` feature
        let rsa = dps_config_set_csr(cfg, DPS_CSR_RSA2048, null());
        if cfg!(feature = "rsa-keygen") {
            assert_eq!(rsa, DPS_OK);
        } else {
            assert_eq!(rsa, DPS_ERR_UNSUPPORTED);
            let m = CStr::from_ptr(dps_error_message(dps_config_last_error(cfg)))
                .to_str()
                .unwrap()
                .to_owned();
            assert!(m.contains("`rsa-keygen`"), "{m}");
        }
        assert_eq!(
            dps_config_set_csr(cfg, DPS_CSR_RSA2048, cs(&other_key).as_ptr()),
            DPS_ERR_INVALID_ARGUMENT
        );
        assert_eq!(dps_config_set_csr(cfg, 4, null()), DPS_ERR_INVALID_ARGUMENT);
        assert_eq!(dps_config_set_csr(cfg, DPS_CSR_P384, null()), DPS_OK);
        let mut reg = null_mut();
        let mut err = null_mut();
        assert_eq!(dps_register(cfg, &mut reg, &mut err), DPS_OK);
        let chain = text(dps_registration_issued_chain_pem(reg)).expect("chain PEM");
        let key = text(dps_registration_issued_key_pem(reg)).expect("key PEM");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
        assert_eq!(dps_registration_issued_certificate_count(reg), 2);
        dps::X509Credential::from_pem(chain.as_bytes(), key.as_bytes(), None)
            .expect("the key matches the issued leaf");
        dps_registration_free(reg);
        // a key from PEM: the chain, no key handed out
        assert_eq!(
            dps_config_set_csr(cfg, DPS_CSR_PEM, cs(&other_key).as_ptr()),
            DPS_OK
        );
        let mut reg = null_mut();
        assert_eq!(dps_register(cfg, &mut reg, &mut err), DPS_OK);
        let chain = text(dps_registration_issued_chain_pem(reg)).expect("chain PEM");
        assert!(dps_registration_issued_key_pem(reg).is_null());
        dps::X509Credential::from_pem(chain.as_bytes(), other_key.as_bytes(), None).unwrap();
        dps_registration_free(reg);
        assert!(dps_registration_issued_chain_pem(null()).is_null());
        assert!(dps_registration_issued_key_pem(null()).is_null());
        dps_config_free(cfg);
    }
}

/// Without the `pkcs11` feature the PKCS#11 setters exist (same header for every build) and
/// say so.
#[cfg(not(feature = "pkcs11"))]
#[test]
fn pkcs11_setters_are_unsupported_without_the_feature() {
    // SAFETY: valid arguments per the header.
    unsafe {
        let mut cfg = null_mut();
        assert_eq!(dps_config_new(cs(SCOPE).as_ptr(), null(), &mut cfg), DPS_OK);
        let uri = cs("pkcs11:token=t;object=k");
        let pin = cs("pin-canary-31337");
        assert_eq!(
            dps_config_set_pkcs11_x509(cfg, uri.as_ptr(), null(), null(), pin.as_ptr()),
            DPS_ERR_UNSUPPORTED
        );
        let m = CStr::from_ptr(dps_error_message(dps_config_last_error(cfg)))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(m.contains("pkcs11"), "{m}");
        assert!(!m.contains("31337"), "{m}");
        assert_eq!(
            dps_config_set_pkcs11_hmac(cfg, uri.as_ptr(), null(), pin.as_ptr()),
            DPS_ERR_UNSUPPORTED
        );
        assert_eq!(
            dps_config_set_csr_pkcs11(cfg, uri.as_ptr(), null(), pin.as_ptr()),
            DPS_ERR_UNSUPPORTED
        );
        let m = CStr::from_ptr(dps_error_message(dps_config_last_error(cfg)))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(!m.contains("31337"), "{m}");
        dps_config_free(cfg);
    }
}
