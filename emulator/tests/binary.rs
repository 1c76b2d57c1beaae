//! The `dps-emulator` binary: config errors, startup line, CA output, SIGTERM/SIGINT shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dps_test_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_dps-emulator");

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dps-emu-bin-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn bad_config_names_file_and_line() {
    let p = tmp("bad.toml");
    std::fs::write(
        &p,
        "id_scope = \"0ne00000001\"\n[[hubs]]\nhost_name = \"h\"\n[[enrollments]]\nregistration_id = \"d\"\nattestation = \"symmetric_key\"\nprimary_key = \"not base64!\"\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("--config").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:7:", p.display())), "{err}");
    assert!(err.contains("primary_key is not valid base64"), "{err}");

    std::fs::write(
        &p,
        "id_scope = \"0ne00000001\"\nretry_after_secs = \"three\"\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("--config").arg(&p).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:") && err.contains("invalid TOML"), "{err}");

    let out = Command::new(BIN)
        .arg("--config")
        .arg(tmp("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config FILE is required"));
}

fn run_and_signal(sig: &str) {
    let cfg = tmp(&format!("good-{sig}.json"));
    std::fs::write(
        &cfg,
        format!(
            r#"{{"id_scope":"{SCOPE}","retry_after_secs":0,"hubs":[{{"host_name":"hub-a.azure-devices.net"}}],
               "enrollments":[{{"registration_id":"dev","attestation":"symmetric_key","primary_key":"{KEY}"}}]}}"#
        ),
    )
    .unwrap();
    let ca_out = tmp(&format!("ca-{sig}.pem"));
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["--port", "0", "--ca-out"])
        .arg(&ca_out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("listening https://localhost:")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    let ca = std::fs::read_to_string(&ca_out).unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));

    // one registration through the binary
    let cfg = tls_config(&ca, None, false);
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let conn = rustls::ClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let tok = sas(KEY, "dev");
    let req = format!(
        "PUT {} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {tok}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
        reg_path("dev")
    );
    use std::io::{Read, Write};
    tls.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = tls.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 202"));

    // shut down with the signal while that keep-alive connection is still open
    let t = Instant::now();
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "did not exit after SIG{sig}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("register 202"), "{err}");
    assert!(
        err.contains("shutting down; counters: tcp_connections=1"),
        "{err}"
    );
    assert!(!err.contains("sig="), "secrets must not be logged: {err}");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    run_and_signal("TERM");
}

#[test]
fn sigint_shuts_down_cleanly() {
    run_and_signal("INT");
}

#[test]
fn example_config_is_valid() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/emulator.toml");
    let cfg = dps_emulator::Config::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.enrollments.len(), 5);
    assert_eq!(cfg.port, Some(8443));
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/emulator.json");
    let cfg = dps_emulator::Config::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.enrollments.len(), 2);
    assert_eq!(cfg.enrollments[0].faults.len(), 2);
}

#[test]
fn tls_material_from_files() {
    let ca = dps_emulator::pki::TestCa::new("Persistent Test CA");
    let (cert, key) = (tmp("ca.pem"), tmp("ca.key"));
    std::fs::write(&cert, ca.cert_pem()).unwrap();
    std::fs::write(&key, ca.key_pem()).unwrap();
    // 1. the emulator issues its server certificate from a given CA
    let toml = format!(
        "{}\n[tls]\nca_cert_file = {:?}\nca_key_file = {:?}\n",
        base_toml(),
        cert.display().to_string(),
        key.display().to_string()
    );
    let emu = start(&toml);
    assert_eq!(emu.ca_pem(), ca.cert_pem());
    let mut c = Client::connect(&emu);
    assert_eq!(c.request("GET", "/", &[], None).status, 404);
    emu.stop();
    // 2. a ready-made server chain and key
    let server = ca.issue_server("localhost");
    let (sc, sk) = (tmp("server.pem"), tmp("server.key"));
    std::fs::write(&sc, &server.chain_pem).unwrap();
    std::fs::write(&sk, &server.key_pem).unwrap();
    let toml = format!(
        "{}\n[tls]\nca_cert_file = {:?}\nserver_cert_file = {:?}\nserver_key_file = {:?}\n",
        base_toml(),
        cert.display().to_string(),
        sc.display().to_string(),
        sk.display().to_string()
    );
    let emu = start(&toml);
    assert_eq!(emu.ca_pem(), ca.cert_pem());
    let mut c = Client::connect(&emu);
    assert_eq!(c.request("GET", "/", &[], None).status, 404);
    // 3. inconsistent settings are refused at parse time
    let bad = format!("{}\n[tls]\nca_key_file = \"x\"\n", base_toml());
    let e = dps_emulator::Config::from_toml_str(&bad).unwrap_err();
    assert!(e.message.contains("go together"), "{e}");
    // 4. unreadable files are refused at start
    let missing = format!(
        "{}\n[tls]\nca_cert_file = \"/nonexistent/ca.pem\"\nca_key_file = \"/nonexistent/ca.key\"\n",
        base_toml()
    );
    let err = dps_emulator::Emulator::start(dps_emulator::Config::from_toml_str(&missing).unwrap())
        .err()
        .unwrap();
    assert!(err.to_string().contains("tls.ca_cert_file"), "{err}");
}
