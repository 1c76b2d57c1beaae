//! Shared helpers for the integration tests: an emulator with the standard
//! enrollments, and config builders pointed at it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use dps::{Client, ConfigBuilder, DefaultRoots};
use dps_emulator::{Config, Emulator};

pub const SCOPE: &str = "0ne00000001";
/// Base64 of bytes 0x00..0x1f.
pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The V1 group key of PROTOCOL.md section 7.
pub const GROUP_KEY: &str =
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";

/// Starts an emulator with `extra` TOML appended to a base with two hubs, an
/// individual symmetric-key enrollment `dev-sym` and a group `sym-group`.
pub fn emulator(extra: &str) -> Emulator {
    let toml = format!(
        r#"
id_scope = "{SCOPE}"
retry_after_secs = 0
assigning_polls = 1
[[hubs]]
host_name = "hub-a.azure-devices.net"
[[hubs]]
host_name = "hub-b.azure-devices.net"
[[enrollments]]
registration_id = "dev-sym"
attestation = "symmetric_key"
primary_key = "{KEY}"
device_id = "dev-sym-device"
allocation = "static"
hubs = ["hub-a.azure-devices.net"]
[[enrollments]]
group_id = "sym-group"
attestation = "symmetric_key"
primary_key = "{GROUP_KEY}"
echo_payload = true
{extra}
"#
    );
    Emulator::start(Config::from_toml_str(&toml).expect("test config")).expect("emulator starts")
}

/// A builder for `registration_id` pointed at the emulator, trusting only its CA.
pub fn builder(emu: &Emulator, registration_id: &str) -> ConfigBuilder {
    let mut b = ConfigBuilder::new(SCOPE).unwrap();
    b.registration_id(registration_id).unwrap();
    b.endpoint(&format!("localhost:{}", emu.port())).unwrap();
    b.default_roots(DefaultRoots::None);
    b.add_trusted_roots_pem(emu.ca_pem().as_bytes()).unwrap();
    b.deadline(Duration::from_secs(20)).unwrap();
    b.request_timeout(Duration::from_secs(5)).unwrap();
    b.backoff(Duration::from_millis(10), Duration::from_millis(100))
        .unwrap();
    b
}

pub fn client(b: &ConfigBuilder) -> Client {
    Client::new(Arc::new(b.build().expect("config builds")))
}
