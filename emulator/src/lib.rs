//! `dps-emulator`: a local Azure IoT Hub Device Provisioning Service (DPS) device runtime over
//! real TLS, for tests (library) and for users (binary `dps-emulator`).
//!
//! ```no_run
//! use dps_emulator::{Config, Emulator};
//! let cfg = Config::from_toml_str(r#"
//! id_scope = "0ne00000001"
//! retry_after_secs = 0
//! [[hubs]]
//! host_name = "hub-a.azure-devices.net"
//! [[enrollments]]
//! registration_id = "dev-sym"
//! attestation = "symmetric_key"
//! primary_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
//! "#).unwrap();
//! let emu = Emulator::start(cfg).unwrap();
//! println!("{} trusts {}", emu.base_url(), emu.ca_pem());
//! emu.stop();
//! ```

#![deny(unsafe_code)]

pub mod config;
mod dps;
mod http;
pub mod pki;
pub mod sas;
mod server;
mod tls;
pub mod tpm;
mod util;

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use config::{Config, ConfigError};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Counters since start (a snapshot).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// Accepted TCP connections.
    pub tcp_connections: u64,
    /// Completed TLS handshakes.
    pub tls_handshakes: u64,
    /// HTTP requests answered (or deliberately not answered by a fault).
    pub requests: u64,
    /// Keys `"<route> <status>"`, route in register/operation/lookup/other; a fault that sends
    /// no answer counts as `"<route> close"` or `"<route> black_hole"`.
    pub by_route_status: BTreeMap<String, u64>,
    /// Failed TLS handshakes (garbage, timeouts, bad client signature).
    pub tls_failures: u64,
}

impl Counters {
    /// Count for one key, e.g. `c.get("register 202")`.
    pub fn get(&self, key: &str) -> u64 {
        self.by_route_status.get(key).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&server::format_counters(self))
    }
}

/// A running emulator. Stops (and joins its threads) on [`Emulator::stop`] or drop.
pub struct Emulator {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    ca_pem: String,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn read_file(p: &std::path::Path, what: &str) -> io::Result<String> {
    std::fs::read_to_string(p)
        .map_err(|e| io::Error::new(e.kind(), format!("{what} {}: {e}", p.display())))
}

/// Server chain + key + the CA PEM clients must trust.
type TlsMaterial = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    String,
    Option<pki::TestCa>,
);

fn tls_material(cfg: &Config) -> io::Result<TlsMaterial> {
    let t = &cfg.tls;
    let (chain_pem, key_pem, ca_pem, issuer) = match (
        &t.server_cert_file,
        &t.server_key_file,
        &t.ca_cert_file,
        &t.ca_key_file,
    ) {
        (Some(c), Some(k), Some(ca), _) => (
            read_file(c, "tls.server_cert_file")?,
            read_file(k, "tls.server_key_file")?,
            read_file(ca, "tls.ca_cert_file")?,
            // the server CA key is unknown: device certificates come from a separate CA
            Some(pki::TestCa::new("dps-emulator device issuing CA")),
        ),
        (None, None, Some(ca), Some(cak)) => {
            let ca_pem = read_file(ca, "tls.ca_cert_file")?;
            let ca = pki::TestCa::from_pem(&ca_pem, &read_file(cak, "tls.ca_key_file")?)
                .map_err(|e| invalid(format!("tls CA: {e}")))?;
            let s = ca.issue_server("localhost");
            (s.chain_pem, s.key_pem, ca_pem, Some(ca))
        }
        _ => {
            let ca = pki::TestCa::new("dps-emulator test CA");
            let s = ca.issue_server("localhost");
            let pem = ca.cert_pem();
            (s.chain_pem, s.key_pem, pem, Some(ca))
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("server certificate PEM: {e:?}")))?;
    if chain.is_empty() {
        return Err(invalid("server certificate PEM has no CERTIFICATE".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| invalid(format!("server key PEM: {e:?}")))?;
    Ok((chain, key, ca_pem, issuer))
}

impl Emulator {
    /// Binds 127.0.0.1:<config.port or 0>, generates (or loads) the CA and server certificate,
    /// and spawns the accept thread.
    pub fn start(config: Config) -> io::Result<Emulator> {
        let (chain, key, ca_pem, issuer) = tls_material(&config)?;
        let tls = tls::server_config(chain, key, &config.tls.versions).map_err(invalid)?;
        let listener = TcpListener::bind(("127.0.0.1", config.port.unwrap_or(0)))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(server::Shared::new(dps::Service::new(config, issuer), tls));
        let sh = shared.clone();
        let accept = std::thread::Builder::new()
            .name("dps-emu-accept".into())
            .spawn(move || server::accept_loop(sh, listener))?;
        Ok(Emulator {
            shared,
            addr,
            accept: Some(accept),
            ca_pem,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://localhost:<port>`
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// PEM of the CA that signed the server certificate (clients add it as a trusted root).
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The id scope being served.
    pub fn id_scope(&self) -> String {
        self.shared.service.config().id_scope.clone()
    }

    /// Counter snapshot.
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// The last (up to 2000) log lines, one per request, secrets redacted.
    pub fn log_lines(&self) -> Vec<String> {
        self.shared.log_lines()
    }

    /// The device's current registration record as JSON (the body a status lookup returns),
    /// or `None` if it never registered.
    pub fn registration_state(&self, registration_id: &str) -> Option<serde_json::Value> {
        self.shared.service.registration_state(registration_id)
    }

    /// **Test hook, for secret-leak tests only**: the HMAC identity key the emulator generated
    /// for the device's last TPM challenge (the secret that only the device's TPM should
    /// recover from the activation blob), so that a test can search logs and errors for it.
    /// A real DPS never reveals it; `None` if the device was never challenged.
    pub fn test_hook_tpm_identity_key(&self, registration_id: &str) -> Option<Vec<u8>> {
        self.shared
            .service
            .test_hook_tpm_identity_key(registration_id)
    }

    /// **Test hook, for secret-leak tests only**: the inner wrapper keys (AES-128) of the
    /// device's last challenge blob and hub-key blob: the credential TPM2_ActivateCredential
    /// returns to the device's software, then TPM2_Import consumes.
    pub fn test_hook_tpm_inner_wrap_keys(&self, registration_id: &str) -> Vec<[u8; 16]> {
        self.shared
            .service
            .test_hook_tpm_inner_wrap_keys(registration_id)
    }

    /// The configuration in use.
    pub fn config(&self) -> Config {
        (*self.shared.service.config()).clone()
    }

    /// Replaces hubs, enrollments and settings while running (port and TLS stay). Registration
    /// records are kept (so the next registration sees the old hub: reprovisioning); fault
    /// scripts start again from their first step.
    pub fn reconfigure(&self, config: Config) {
        self.shared.service.reconfigure(config);
    }

    /// Stops accepting, closes every connection, joins all threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(a) = self.accept.take() {
            self.shared.shutdown(self.addr, Some(a));
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}
