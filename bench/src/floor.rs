//! The floor of the cost table: a bare rustls client doing what one dps
//! registration does on the wire, and nothing else: TCP connect, TLS handshake
//! (rustls with ring, TLS 1.3/1.2, the emulator's CA as the only root), the
//! registration PUT with a SAS token, one GET of the operation, on one
//! keep-alive connection. Per registration it also reads the CA file, builds
//! the rustls config and the SAS token, as `bench/c/register_loop.c` does the
//! whole device-side job (config + credential + trust + register + free).
//! No retries, no deadlines, no error classification: the lower bound.
//!
//!   dps-floor N   (environment as register_loop: DPS_ID_SCOPE, DPS_REGISTRATION_ID,
//!                  DPS_SYMMETRIC_KEY, DPS_ENDPOINT=host:port, DPS_CA_FILE)
//!
//! Prints "reg <cpu_us> <wall_us>" per registration, like register_loop; exit 0
//! only if every registration ended assigned.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

type Res<T> = Result<T, String>;

fn env(k: &str) -> Res<String> {
    std::env::var(k).map_err(|_| format!("{k} is not set"))
}

fn cpu_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

fn url_encode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn sas(scope: &str, id: &str, key_b64: &str) -> Res<String> {
    let key = B64.decode(key_b64).map_err(|e| format!("key: {e}"))?;
    let sr = url_encode(&format!("{scope}/registrations/{id}"));
    let se = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + 3600;
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let sig = B64.encode(ring::hmac::sign(&k, format!("{sr}\n{se}").as_bytes()));
    Ok(format!(
        "SharedAccessSignature sr={sr}&sig={}&se={se}&skn=registration",
        url_encode(&sig)
    ))
}

/// Reads more bytes into `buf`; an error at end of stream.
fn fill(s: &mut impl Read, buf: &mut Vec<u8>) -> Res<()> {
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed mid-response".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Reads one HTTP/1.1 response, body by Content-Length or chunked (as DPS sends);
/// returns (status, body).
fn read_response(s: &mut impl Read, buf: &mut Vec<u8>) -> Res<(u16, String)> {
    buf.clear();
    let (status, head, length, chunked) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(buf).map_err(|e| e.to_string())? {
            let value = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(|v| v.trim().to_ascii_lowercase())
            };
            let length = value("content-length").and_then(|v| v.parse::<usize>().ok());
            let chunked = value("transfer-encoding").is_some_and(|v| v.contains("chunked"));
            break (resp.code.unwrap_or(0), head, length, chunked);
        }
        fill(s, buf)?;
    };
    let mut body = Vec::new();
    if chunked {
        let mut pos = head;
        loop {
            let line_end = loop {
                if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                    break pos + i;
                }
                fill(s, buf)?;
            };
            let line = std::str::from_utf8(&buf[pos..line_end]).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| format!("chunk size {line:?}: {e}"))?;
            pos = line_end + 2;
            while buf.len() < pos + size + 2 {
                fill(s, buf)?;
            }
            if size == 0 {
                break; // no trailers from DPS: the final CRLF follows
            }
            body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    } else {
        let len = length.ok_or("neither Content-Length nor chunked")?;
        while buf.len() < head + len {
            fill(s, buf)?;
        }
        body.extend_from_slice(&buf[head..head + len]);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn register_once() -> Res<()> {
    let scope = env("DPS_ID_SCOPE")?;
    let id = env("DPS_REGISTRATION_ID")?;
    let key = env("DPS_SYMMETRIC_KEY")?;
    let endpoint = env("DPS_ENDPOINT")?;
    let (host, _) = endpoint
        .rsplit_once(':')
        .ok_or("DPS_ENDPOINT is host:port")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(env("DPS_CA_FILE")?).map_err(|e| e.to_string())? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let auth = sas(&scope, &id, &key)?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(&endpoint).map_err(|e| format!("{endpoint}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let api = "2021-06-01";
    let body = format!("{{\"registrationId\":\"{id}\"}}");
    let put = format!(
        "PUT /{scope}/registrations/{id}/register?api-version={api} HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(put.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(8192);
    let (status, answer) = read_response(&mut tls, &mut buf)?;
    if status != 202 {
        return Err(format!("PUT: HTTP {status}: {answer}"));
    }
    let v: serde_json::Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
    let op = v["operationId"].as_str().ok_or("no operationId")?;
    let get = format!(
        "GET /{scope}/registrations/{id}/operations/{op}?api-version={api} HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: {auth}\r\n\r\n"
    );
    tls.write_all(get.as_bytes()).map_err(|e| e.to_string())?;
    let (status, answer) = read_response(&mut tls, &mut buf)?;
    let v: serde_json::Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
    if status != 200 || v["status"] != "assigned" {
        return Err(format!("GET: HTTP {status}: {answer}"));
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}

fn main() -> ExitCode {
    let n: u32 = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("usage: dps-floor N (environment as bench/c/register_loop.c)");
            return ExitCode::from(2);
        }
    };
    let mut failures = 0;
    for _ in 0..n {
        let (c0, w0) = (cpu_us(), Instant::now());
        let r = register_once();
        let (c1, wall) = (cpu_us(), w0.elapsed());
        if let Err(e) = r {
            eprintln!("dps-floor: {e}");
            failures += 1;
        }
        println!("reg {} {}", c1 - c0, wall.as_micros());
    }
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
