//! Scripted faults and strict polling.

use std::time::{Duration, Instant};

use dps_test_support::*;

fn with_faults(faults: &str) -> dps_emulator::Emulator {
    start(&format!(
        r#"{}
[[enrollments]]
registration_id = "dev"
attestation = "symmetric_key"
primary_key = "{KEY}"
faults = [ {faults} ]
"#,
        base_toml()
    ))
}

fn put(c: &mut Client) -> std::io::Result<Resp> {
    let tok = sas(KEY, "dev");
    c.try_request(
        "PUT",
        &reg_path("dev"),
        &[("Authorization", &tok), JSON],
        Some(r#"{"registrationId":"dev"}"#),
    )
}

fn get(c: &mut Client, op: &str) -> std::io::Result<Resp> {
    let tok = sas(KEY, "dev");
    c.try_request("GET", &op_path("dev", op), &[("Authorization", &tok)], None)
}

#[test]
fn status_faults_with_retry_after_then_normal() {
    let emu = with_faults(
        r#"{ on = "register", status = 429, retry_after = "2" },
           { on = "register", status = 503, retry_after_http_date_secs = 5 },
           { on = "register", status = 500 },
           { status = 409, error_code = 409203 },
           { on = "poll", status = 429, retry_after = 1 }"#,
    );
    let mut c = Client::connect(&emu);
    let r = put(&mut c).unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("Retry-After"), Some("2"));
    assert_eq!(r.json()["errorCode"], 429001);
    let r = put(&mut c).unwrap();
    assert_eq!(r.status, 503);
    let ra = r.header("Retry-After").unwrap();
    assert!(ra.ends_with(" GMT") && ra.len() == 29, "{ra}");
    let r = put(&mut c).unwrap();
    assert_eq!((r.status, r.header("Retry-After")), (500, None));
    let r = put(&mut c).unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_u64()),
        (409, Some(409203))
    );
    assert_eq!(r.json()["message"], "Precondition failed.");
    let r = put(&mut c).unwrap();
    assert_eq!(r.status, 202);
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    let p = get(&mut c, &op).unwrap();
    assert_eq!((p.status, p.header("Retry-After")), (429, Some("1")));
    assert_eq!(get(&mut c, &op).unwrap().status, 202);
    assert_eq!(get(&mut c, &op).unwrap().status, 200);
    let cnt = emu.counters();
    assert_eq!(cnt.get("register 429"), 1);
    assert_eq!(cnt.get("operation 429"), 1);
    assert_eq!(cnt.tcp_connections, 1);
}

#[test]
fn close_truncate_malformed_wrong_type_oversized() {
    let emu = with_faults(
        r#"{ action = "close" }, { action = "truncate" }, { action = "malformed_json" },
           { action = "wrong_content_type" }, { action = "oversized", bytes = 200000 }"#,
    );
    let mut c = Client::connect(&emu);
    assert!(put(&mut c).is_err(), "closed without answer");
    let mut c = Client::connect(&emu);
    assert!(put(&mut c).is_err(), "truncated body");
    let mut c = Client::connect(&emu);
    let r = put(&mut c).unwrap();
    assert_eq!(r.status, 202);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
    let r = put(&mut c).unwrap();
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let r = put(&mut c).unwrap();
    assert_eq!(r.body.len(), 200_000);
    assert!(r.json()["padding"].is_string());
    assert_eq!(put(&mut c).unwrap().status, 202);
    let cnt = emu.counters();
    assert_eq!(cnt.get("register close"), 1);
    assert_eq!(cnt.get("register 202"), 5);
}

#[test]
fn delay_and_trickle() {
    let emu = with_faults(
        r#"{ action = "delay", ms = 300 }, { action = "trickle", chunk_bytes = 64, interval_ms = 20 }"#,
    );
    let mut c = Client::connect(&emu);
    let t = Instant::now();
    assert_eq!(put(&mut c).unwrap().status, 202);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    let r = put(&mut c).unwrap();
    assert_eq!(r.status, 202);
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn black_hole_holds_until_client_closes_and_does_not_block_others() {
    let emu = with_faults(r#"{ action = "black_hole" }"#);
    let mut c = Client::connect(&emu);
    c.s.sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let e = put(&mut c).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e:?}"
    );
    // another connection is served meanwhile
    let mut c2 = Client::connect(&emu);
    assert_eq!(put(&mut c2).unwrap().status, 202);
    assert_eq!(emu.counters().get("register black_hole"), 1);
    // stop does not hang on the black-holed connection
    let t = Instant::now();
    emu.stop();
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn terminal_results() {
    // Each step waits for a request of its kind: register steps are not consumed by polls.
    let emu = with_faults(
        r#"{ on = "register", result = "failed", error_code = 400207 },
           { on = "register", result = "disabled" },
           { on = "register", result = "assigned_without_hub" },
           { on = "register", action = "endless_assigning" }"#,
    );
    let mut c = Client::connect(&emu);
    let r = register_sas(&mut c, "dev", KEY, None).json();
    assert_eq!(r["status"], "failed");
    assert_eq!(r["registrationState"]["errorCode"], 400207);
    assert_eq!(
        r["registrationState"]["errorMessage"],
        "Custom allocation failed with status code: 400"
    );
    assert!(r["registrationState"].get("assignedHub").is_none());
    let r = register_sas(&mut c, "dev", KEY, None).json();
    assert_eq!(r["status"], "disabled");
    let r = register_sas(&mut c, "dev", KEY, None).json();
    assert_eq!(r["status"], "assigned");
    assert!(r["registrationState"].get("assignedHub").is_none());
    assert_eq!(r["registrationState"]["deviceId"], "dev");
    let r = put(&mut c).unwrap();
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    for _ in 0..20 {
        assert_eq!(get(&mut c, &op).unwrap().status, 202);
    }
    // then normal again
    assert_eq!(
        register_sas(&mut c, "dev", KEY, None).json()["status"],
        "assigned"
    );
}

#[test]
fn terminal_result_on_a_poll_is_answered_at_once() {
    let emu = with_faults(r#"{ on = "poll", result = "failed", error_code = 400208 }"#);
    let mut c = Client::connect(&emu);
    let r = put(&mut c).unwrap();
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    let p = get(&mut c, &op).unwrap();
    assert_eq!(p.status, 200);
    assert_eq!(p.json()["status"], "failed");
    assert_eq!(p.json()["registrationState"]["errorCode"], 400208);
    // the lookup shows the failed registration
    let tok = sas(KEY, "dev");
    let l = c.request(
        "POST",
        &lookup_path("dev"),
        &[("Authorization", &tok), JSON],
        Some("{}"),
    );
    assert_eq!(l.json()["status"], "failed");
}

#[test]
fn faults_are_per_device_in_groups() {
    let emu = start(&format!(
        r#"{}
[[enrollments]]
group_id = "g"
attestation = "symmetric_key"
primary_key = "{GROUP_KEY}"
faults = [ {{ on = "register", status = 503 }} ]
"#,
        base_toml()
    ));
    let mut c = Client::connect(&emu);
    for id in ["a1", "b2"] {
        let k = derived(GROUP_KEY, id);
        assert_eq!(register_sas(&mut c, id, &k, None).status, 503);
        assert_eq!(register_sas(&mut c, id, &k, None).status, 200);
    }
}

#[test]
fn strict_polling_answers_429() {
    let emu = start(
        &format!(
            r#"{}
strict_polling = true
[[enrollments]]
registration_id = "dev"
attestation = "symmetric_key"
primary_key = "{KEY}"
assigning_polls = 100
"#,
            base_toml().replace(
                "retry_after_secs = 0",
                "retry_after_secs = 0\nstrict_polling = true"
            )
        )
        .replace(
            "\nstrict_polling = true\n[[enrollments]]",
            "\n[[enrollments]]",
        ),
    );
    let mut c = Client::connect(&emu);
    let op = put(&mut c).unwrap().json()["operationId"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..5 {
        assert_eq!(get(&mut c, &op).unwrap().status, 202);
    }
    let r = get(&mut c, &op).unwrap();
    assert_eq!(r.status, 429);
    let ra: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=10).contains(&ra));
}
