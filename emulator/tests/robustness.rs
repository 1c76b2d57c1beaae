//! Bad input never crashes the emulator nor stalls other connections.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dps_test_support::*;

fn emu_with_limits() -> dps_emulator::Emulator {
    start(&format!(
        r#"{}
[limits]
idle_timeout_ms = 1000
request_timeout_ms = 2000
[[enrollments]]
registration_id = "dev"
attestation = "symmetric_key"
primary_key = "{KEY}"
"#,
        base_toml()
    ))
}

fn healthy(emu: &dps_emulator::Emulator) {
    let mut c = Client::connect(emu);
    assert_eq!(register_sas(&mut c, "dev", KEY, None).status, 200);
}

#[test]
fn garbage_head_gets_400_and_close() {
    let emu = emu_with_limits();
    let mut c = Client::connect(&emu);
    c.send_raw(b"\x01\x02 garbage\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), Some("close"));
    let mut c = Client::connect(&emu);
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let _ = c.send_raw(big.as_bytes());
    assert_eq!(c.read_response().unwrap().status, 431);
    healthy(&emu);
    assert_eq!(emu.counters().get("other 400"), 1);
}

#[test]
fn oversized_body_is_413() {
    let emu = emu_with_limits();
    let mut c = Client::connect(&emu);
    let tok = sas(KEY, "dev");
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: x\r\nAuthorization: {tok}\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n",
        reg_path("dev")
    );
    c.send_raw(head.as_bytes()).unwrap();
    assert_eq!(c.read_response().unwrap().status, 413);
    // exactly at the limit is fine size-wise (then rejected as bad JSON: 400)
    let mut c = Client::connect(&emu);
    let body = " ".repeat(96 * 1024);
    let r = c.request(
        "PUT",
        &reg_path("dev"),
        &[("Authorization", &tok), JSON],
        Some(&body),
    );
    assert_eq!(r.status, 400);
    healthy(&emu);
}

#[test]
fn chunked_request_body_is_accepted() {
    let emu = emu_with_limits();
    let mut c = Client::connect(&emu);
    let tok = sas(KEY, "dev");
    let body = r#"{"registrationId":"dev"}"#;
    let req = format!(
        "PUT {} HTTP/1.1\r\nHost: x\r\nAuthorization: {tok}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        reg_path("dev"),
        body.len()
    );
    c.send_raw(req.as_bytes()).unwrap();
    assert_eq!(c.read_response().unwrap().status, 202);
}

#[test]
fn slowloris_is_cut_and_does_not_stall_others() {
    let emu = emu_with_limits();
    let mut slow = Client::connect(&emu);
    slow.send_raw(b"PUT /x HTTP/1.1\r\n").unwrap();
    // a raw TCP client that never even starts TLS
    let mut raw = TcpStream::connect(("127.0.0.1", emu.port())).unwrap();
    let t = Instant::now();
    healthy(&emu);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "stalled: {:?}",
        t.elapsed()
    );
    // the slow one is dropped after request_timeout_ms
    slow.s
        .sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let t = Instant::now();
    assert!(slow.read_response().is_err());
    assert!(t.elapsed() < Duration::from_secs(4));
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 16];
    assert!(matches!(raw.read(&mut b), Ok(0) | Err(_)));
    assert!(emu.counters().tls_failures >= 1);
}

#[test]
fn tls_garbage_is_refused() {
    let emu = emu_with_limits();
    let mut raw = TcpStream::connect(("127.0.0.1", emu.port())).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = Vec::new();
    let _ = raw.read_to_end(&mut b);
    assert!(b.len() < 100, "only an alert at most");
    healthy(&emu);
    assert_eq!(emu.counters().tls_failures, 1);
    assert_eq!(emu.counters().tls_handshakes, 1);
}

#[test]
fn stop_does_not_hang_with_idle_keep_alive_clients() {
    let emu = start(&format!(
        "{}\n[[enrollments]]\nregistration_id = \"dev\"\nattestation = \"symmetric_key\"\nprimary_key = \"{KEY}\"\n",
        base_toml()
    ));
    let mut clients: Vec<Client> = (0..5).map(|_| Client::connect(&emu)).collect();
    for c in &mut clients {
        assert_eq!(register_sas(c, "dev", KEY, None).status, 200);
    }
    let _raw = TcpStream::connect(("127.0.0.1", emu.port())).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    emu.stop();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn keep_alive_idle_timeout_closes() {
    let emu = emu_with_limits();
    let mut c = Client::connect(&emu);
    assert_eq!(register_sas(&mut c, "dev", KEY, None).status, 200);
    c.s.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let t = Instant::now();
    let mut b = [0u8; 16];
    let n = c.s.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t.elapsed() >= Duration::from_millis(900) && t.elapsed() < Duration::from_secs(4));
}

#[test]
fn many_parallel_connections() {
    let emu = emu_with_limits();
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| healthy(&emu));
        }
    });
    assert_eq!(emu.counters().tls_handshakes, 16);
}
