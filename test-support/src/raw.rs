//! A raw test client for the emulator: TCP + rustls + hand-written HTTP/1.1, so tests control
//! every byte; SAS tokens and the DPS paths.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dps_emulator::Emulator;

use crate::{API_VERSION, SCOPE};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

pub fn sign(key_b64: &str, sr: &str, se: u64) -> String {
    let key = STANDARD.decode(key_b64).unwrap();
    let mac = dps_emulator::sas::hmac_sha256(&key, format!("{sr}\n{se}").as_bytes());
    STANDARD.encode(mac)
}

pub fn urlenc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Token in the C SDK form (lowercase %2f, sr, sig, se, skn).
pub fn sas(key_b64: &str, regid: &str) -> String {
    let sr = format!("{SCOPE}%2fregistrations%2f{regid}");
    let se = now() + 3600;
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={se}&skn=registration",
        urlenc(&sign(key_b64, &sr, se))
    )
}

pub fn derived(group_b64: &str, regid: &str) -> String {
    let key = STANDARD.decode(group_b64).unwrap();
    STANDARD.encode(dps_emulator::sas::derive_device_key(&key, regid))
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

pub struct Client {
    pub s: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

pub fn tls_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
    tls12_only: bool,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let b = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some((chain, key)) => {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(chain.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(cfg)
}

impl Client {
    pub fn connect(emu: &Emulator) -> Client {
        Client::connect_with(emu, tls_config(&emu.ca_pem(), None, false))
    }
    pub fn connect_cert(emu: &Emulator, chain: &str, key: &str) -> Client {
        Client::connect_with(emu, tls_config(&emu.ca_pem(), Some((chain, key)), false))
    }
    pub fn connect_with(emu: &Emulator, cfg: Arc<ClientConfig>) -> Client {
        let sock = TcpStream::connect(("127.0.0.1", emu.port())).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let conn = ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut s = StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        Client { s, buf: Vec::new() }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)?;
        self.s.flush()
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        self.try_request(method, path, headers, body)
            .expect("response")
    }

    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> std::io::Result<Resp> {
        let mut r = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (k, v) in headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            r.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        r.push_str("\r\n");
        if let Some(b) = body {
            r.push_str(b);
        }
        self.send_raw(r.as_bytes())?;
        self.read_response()
    }

    fn fill(&mut self, n: usize) -> std::io::Result<()> {
        let mut tmp = [0u8; 16384];
        while self.buf.len() < n {
            let k = self.s.read(&mut tmp)?;
            if k == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&tmp[..k]);
        }
        Ok(())
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        let mut tmp = [0u8; 4096];
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..p + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..p]).into_owned());
            }
            let k = self.s.read(&mut tmp)?;
            if k == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&tmp[..k]);
        }
    }

    pub fn read_response(&mut self) -> std::io::Result<Resp> {
        let mut tmp = [0u8; 16384];
        loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let mut hs = [httparse::EMPTY_HEADER; 64];
                let mut r = httparse::Response::new(&mut hs);
                r.parse(&self.buf[..p + 4]).unwrap();
                let status = r.code.unwrap();
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).to_string(),
                        )
                    })
                    .collect();
                self.buf.drain(..p + 4);
                let chunked = headers.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
                });
                let body = if chunked {
                    let mut body = Vec::new();
                    loop {
                        let line = self.read_line()?;
                        let size = usize::from_str_radix(line.trim(), 16).map_err(|_| {
                            std::io::Error::other(format!("bad chunk size {line:?}"))
                        })?;
                        if size == 0 {
                            let _ = self.read_line()?;
                            break body;
                        }
                        self.fill(size + 2)?;
                        body.extend(self.buf.drain(..size));
                        self.buf.drain(..2);
                    }
                } else {
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .map(|(_, v)| v.parse().unwrap())
                        .unwrap_or(0);
                    self.fill(len)?;
                    self.buf.drain(..len).collect()
                };
                return Ok(Resp {
                    status,
                    headers,
                    body,
                });
            }
            let n = self.s.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
}

pub const JSON: (&str, &str) = ("Content-Type", "application/json; charset=utf-8");

pub fn reg_path(regid: &str) -> String {
    format!("/{SCOPE}/registrations/{regid}/register?api-version={API_VERSION}")
}
pub fn op_path(regid: &str, op: &str) -> String {
    format!("/{SCOPE}/registrations/{regid}/operations/{op}?api-version={API_VERSION}")
}
pub fn lookup_path(regid: &str) -> String {
    format!("/{SCOPE}/registrations/{regid}?api-version={API_VERSION}")
}

/// Full flow with a SAS: PUT, then GETs until not 202. Returns the final response.
pub fn register_sas(c: &mut Client, regid: &str, key_b64: &str, body: Option<&str>) -> Resp {
    let tok = sas(key_b64, regid);
    let default_body = format!("{{\"registrationId\":\"{regid}\"}}");
    let r = c.request(
        "PUT",
        &reg_path(regid),
        &[("Authorization", &tok), JSON],
        Some(body.unwrap_or(&default_body)),
    );
    if r.status != 202 {
        return r;
    }
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    loop {
        let p = c.request(
            "GET",
            &op_path(regid, &op),
            &[("Authorization", &tok)],
            None,
        );
        if p.status != 202 {
            return p;
        }
    }
}

/// Same with the client certificate of the connection.
pub fn register_x509(c: &mut Client, regid: &str) -> Resp {
    let body = format!("{{\"registrationId\":\"{regid}\"}}");
    let r = c.request("PUT", &reg_path(regid), &[JSON], Some(&body));
    if r.status != 202 {
        return r;
    }
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    loop {
        let p = c.request("GET", &op_path(regid, &op), &[], None);
        if p.status != 202 {
            return p;
        }
    }
}
