//! `dps::ConfigBuilder` pointed at the emulator (feature `client`: the library's own tests).

use std::sync::Arc;
use std::time::Duration;

use dps::{Client, ConfigBuilder, DefaultRoots};
use dps_emulator::Emulator;

use crate::SCOPE;

/// A builder for `registration_id` pointed at the emulator, trusting only its CA.
pub fn builder(emu: &Emulator, registration_id: &str) -> ConfigBuilder {
    let mut b = ConfigBuilder::new(SCOPE).unwrap();
    b.registration_id(registration_id).unwrap();
    b.endpoint(&format!("localhost:{}", emu.port())).unwrap();
    b.default_roots(DefaultRoots::None).unwrap();
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
