//! End-to-end registrations through the Rust API against dps-emulator.

use std::time::Duration;

use dps::{ErrorKind, RegistrationStatus, Step, X509Credential};
use dps_emulator::pki;
use dps_test_support::*;

#[test]
fn individual_symmetric_key_registers_over_one_handshake() {
    let emu = emulator("");
    let mut b = builder(&emu, "dev-sym");
    b.symmetric_key(KEY).unwrap();
    let mut c = client(&b);
    let r = c.register().expect("registers");
    assert_eq!(r.status, Some(RegistrationStatus::Assigned));
    assert_eq!(r.assigned_hub.as_deref(), Some("hub-a.azure-devices.net"));
    assert_eq!(r.device_id.as_deref(), Some("dev-sym-device"));
    assert_eq!(r.substatus.as_deref(), Some("initialAssignment"));
    assert!(r.etag.is_some() && r.created_date_time_utc.is_some());
    let s = c.stats();
    assert_eq!(
        (s.connections, s.handshakes, s.requests),
        (1, 1, 3),
        "PUT + 2 GETs on one connection"
    );
    let counters = emu.counters();
    assert_eq!(counters.tls_handshakes, 1);
    assert_eq!(counters.get("register 202"), 1);
    assert_eq!(counters.get("operation 200"), 1);
    let cs = dps::connection_string(&r, c.config().credential()).unwrap();
    assert_eq!(
        cs.as_str(),
        format!("HostName=hub-a.azure-devices.net;DeviceId=dev-sym-device;SharedAccessKey={KEY}")
    );
}

#[test]
fn group_key_is_derived_and_payload_echoed() {
    let emu = emulator("");
    let mut b = builder(&emu, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6");
    b.group_key(GROUP_KEY).unwrap();
    b.payload_json(r#"{"model":"x1","fw":[1,2]}"#).unwrap();
    let r = client(&b).register().expect("registers");
    assert_eq!(
        r.device_id.as_deref(),
        Some("sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6")
    );
    let v: serde_json::Value = serde_json::from_str(r.payload_json.as_deref().unwrap()).unwrap();
    assert_eq!(v, serde_json::json!({"model":"x1","fw":[1,2]}));
    assert_eq!(r.enrollment_group_id.as_deref(), Some("sym-group"));
}

#[test]
fn x509_individual_and_group() {
    let leaf = pki::self_signed_device("x509-single");
    let ca = pki::TestCa::new("Test Root CA");
    let inter = ca.intermediate("Test Intermediate");
    let dev = inter.issue_device("x509-group-dev");
    let emu = emulator(&format!(
        r#"
[[enrollments]]
registration_id = "x509-single"
attestation = "x509"
thumbprint = "{}"
[[enrollments]]
group_id = "x509-group"
attestation = "x509"
ca_pem = """{}"""
"#,
        leaf.sha256_thumbprint,
        ca.cert_pem()
    ));

    let mut b = builder(&emu, "x509-single");
    b.x509(
        X509Credential::from_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes(), None).unwrap(),
    );
    let r = client(&b).register().expect("individual x509 registers");
    assert_eq!(r.device_id.as_deref(), Some("x509-single"));

    // Group: leaf + intermediate in the handshake; registration ID from the CN.
    let chain = format!("{}{}", dev.cert_pem, inter.cert_pem());
    let mut b = builder(&emu, "x509-group-dev");
    b.x509(X509Credential::from_pem(chain.as_bytes(), dev.key_pem.as_bytes(), None).unwrap());
    let mut c = client(&b);
    let r = c.register().expect("group x509 registers");
    assert_eq!(r.enrollment_group_id.as_deref(), Some("x509-group"));
    let cs = dps::connection_string(&r, c.config().credential()).unwrap();
    assert!(
        cs.ends_with(";DeviceId=x509-group-dev;x509=true"),
        "{}",
        cs.as_str()
    );

    // Only the leaf (no intermediate): DPS cannot build the chain.
    let mut b = builder(&emu, "x509-group-dev");
    b.x509(
        X509Credential::from_pem(dev.cert_pem.as_bytes(), dev.key_pem.as_bytes(), None).unwrap(),
    );
    let e = client(&b).register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    // Issue 14 item 10: DPS's "CA certificate not found." plus the client's diagnosis.
    assert_eq!(e.dps_error_code, Some(401002));
    assert!(e.message.contains("CA certificate not found."), "{e}");
    assert!(
        e.message.contains(
            r#"The certificate chain sent (1 certificate) ends at "x509-group-dev", issued by "Test Intermediate", not at a CA certificate"#
        ) && e.message.contains("the chain is probably incomplete"),
        "{e}"
    );

    // A refused chain that ends at a CA, or a refused self-signed certificate: no such hint.
    let stranger = pki::TestCa::new("Other Root CA").intermediate("Other Intermediate");
    let other = stranger.issue_device("x509-group-dev");
    let chain = format!("{}{}", other.cert_pem, stranger.cert_pem());
    let mut b = builder(&emu, "x509-group-dev");
    b.x509(X509Credential::from_pem(chain.as_bytes(), other.key_pem.as_bytes(), None).unwrap());
    let e = client(&b).register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(!e.message.contains("probably incomplete"), "{e}");
    let unknown = pki::self_signed_device("x509-single");
    let mut b = builder(&emu, "x509-single");
    b.x509(
        X509Credential::from_pem(
            unknown.cert_pem.as_bytes(),
            unknown.key_pem.as_bytes(),
            None,
        )
        .unwrap(),
    );
    let e = client(&b).register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(!e.message.contains("probably incomplete"), "{e}");
}

#[test]
fn wrong_key_is_unauthorized_with_service_detail() {
    let emu = emulator("");
    let mut b = builder(&emu, "dev-sym");
    b.symmetric_key("HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=")
        .unwrap();
    let mut c = client(&b);
    let e = c.register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(e.http_status, Some(401));
    assert_eq!(e.dps_error_code, Some(401002));
    assert!(e.tracking_id.is_some());
    assert!(!e.retriable);
    assert_eq!(c.last_error(), Some(&e));
}

#[test]
fn step_api_never_sleeps_and_reports_waits() {
    let emu = emulator("");
    let mut b = builder(&emu, "dev-sym");
    b.symmetric_key(KEY).unwrap();
    let mut c = client(&b);
    let mut steps = 0;
    let reg = loop {
        steps += 1;
        match c.step().expect("step") {
            Step::Pending(d) => {
                assert!(d <= Duration::from_secs(1));
                // A caller waits as told before the next step.
                std::thread::sleep(d);
            }
            Step::Done(r) => break r,
        }
    };
    assert_eq!(reg.assigned_hub.as_deref(), Some("hub-a.azure-devices.net"));
    assert_eq!(steps, 3, "PUT, assigning poll, assigned poll");
    assert!(!c.in_progress());
}

#[test]
fn lookup_returns_current_assignment() {
    let emu = emulator("");
    let mut b = builder(&emu, "dev-sym");
    b.symmetric_key(KEY).unwrap();
    let mut c = client(&b);
    c.register().unwrap();
    let r = c.lookup().expect("lookup");
    assert_eq!(r.assigned_hub.as_deref(), Some("hub-a.azure-devices.net"));
    assert_eq!(r.status, Some(RegistrationStatus::Assigned));
}

#[test]
fn untrusted_server_is_a_tls_error() {
    let emu = emulator("");
    let mut b = dps::ConfigBuilder::new(SCOPE).unwrap();
    b.registration_id("dev-sym")
        .unwrap()
        .symmetric_key(KEY)
        .unwrap();
    b.endpoint(&format!("localhost:{}", emu.port())).unwrap();
    let e = client(&b).register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::TlsServerUntrusted, "{e}");
}

/// Issue 14 item 8: a server that presents a CA certificate as its own (a self-signed
/// certificate with CA:TRUE, the usual home-made test server) is refused with a sentence that
/// says so and what to do, not rustls' `Other(OtherError(CaUsedAsEndEntity))`, trusted or
/// not; a leaf from an unknown CA names the calls that add a root.
#[test]
fn untrusted_server_messages_are_sentences() {
    let register = |chain: &str, key: &str, trusted: Option<&str>| {
        let port = raw_tls_server(
            chain,
            key,
            RawReply::Bytes(b"HTTP/1.1 500 x\r\nContent-Length: 0\r\n\r\n"),
        );
        let mut b = dps::ConfigBuilder::new(SCOPE).unwrap();
        b.registration_id("dev-sym")
            .unwrap()
            .symmetric_key(KEY)
            .unwrap();
        b.endpoint(&format!("localhost:{port}")).unwrap();
        if let Some(root) = trusted {
            b.add_trusted_roots_pem(root.as_bytes()).unwrap();
        }
        let e = client(&b).register().unwrap_err();
        assert_eq!(e.kind, ErrorKind::TlsServerUntrusted, "{e}");
        assert!(!e.message.contains("Error("), "{e}");
        e.message
    };
    let ca = pki::TestCa::new("home-made server CA");
    for trusted in [None, Some(ca.cert_pem())] {
        let m = register(&ca.cert_pem(), &ca.key_pem(), trusted.as_deref());
        assert!(
            m.contains(
                "the server presented a CA certificate (a self-signed one with CA:TRUE?) as its own"
            ),
            "{m}"
        );
    }
    let leaf = ca.issue_server("localhost");
    let m = register(&leaf.chain_pem, &leaf.key_pem, None);
    assert!(m.contains("it is not issued by a trusted root"), "{m}");
    assert!(m.contains("dps_config_add_trusted_ca_pem"), "{m}");
}

#[test]
fn retry_after_zero_is_honoured_without_any_wait() {
    // The emulator answers every poll with `assigning` and `Retry-After: 0`:
    // the client polls again at once as asked, but never more than DPS's 5 polls
    // per 10 s: after that burst the next poll would fall after the 800 ms
    // deadline, so it gives up at once instead of sleeping into it.
    let emu = emulator(&sym_enrollment(
        "dev-zero",
        r#"faults = [{ on = "register", action = "endless_assigning" }]"#,
    ));
    let mut b = builder(&emu, "dev-zero");
    b.symmetric_key(KEY).unwrap();
    b.deadline(Duration::from_millis(800)).unwrap();
    let mut c = client(&b);
    let started = std::time::Instant::now();
    let e = c.register().unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind, ErrorKind::DeadlineExceeded, "{e}");
    assert!(e.message.contains("poll rate"), "{e}");
    assert!(took < Duration::from_millis(800), "{took:?}");
    let polls = emu.counters().get("operation 202");
    assert_eq!(
        polls, 5,
        "a burst of 5 polls as asked, then paced: {polls} in {took:?}"
    );
    assert_eq!(c.stats().handshakes, 1);

    // A normal enrollment with Retry-After 0 and one assigning poll: three
    // requests, no waiting at all.
    let mut b = builder(&emu, "dev-sym");
    b.symmetric_key(KEY).unwrap();
    let started = std::time::Instant::now();
    client(&b).register().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn deadline_error_names_the_cause_it_was_retrying() {
    // A port with nothing listening: connection refused until the deadline.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut b = dps::ConfigBuilder::new(SCOPE).unwrap();
    b.registration_id("dev-sym")
        .unwrap()
        .symmetric_key(KEY)
        .unwrap();
    b.endpoint(&format!("127.0.0.1:{port}")).unwrap();
    b.deadline(Duration::from_millis(600)).unwrap();
    b.backoff(Duration::from_millis(10), Duration::from_millis(50))
        .unwrap();
    let e = client(&b).register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::DeadlineExceeded, "{e}");
    assert_eq!(e.cause, Some(ErrorKind::Connect), "{e}");
    assert!(e.retriable);
}
