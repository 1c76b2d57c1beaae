//! `dps`: an Azure IoT Hub Device Provisioning Service (DPS) device client over
//! HTTPS, with a C ABI.
//!
//! The core (everything but [`ffi`]) is safe Rust with a Rust API:
//! build a [`ConfigBuilder`], then register with a [`Client`].
//!
//! ```no_run
//! use std::sync::Arc;
//! let mut b = dps::ConfigBuilder::new("0ne00000001")?;
//! b.registration_id("my-device")?.symmetric_key("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=")?;
//! let mut client = dps::Client::new(Arc::new(b.build()?));
//! let reg = client.register()?;
//! println!("{:?} {:?}", reg.assigned_hub, reg.device_id);
//! # Ok::<(), dps::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod civil;
pub mod client;
pub mod config;
pub mod credential;
pub mod error;
pub mod ffi;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub(crate) mod protocol;
pub mod redact;
pub(crate) mod retry;
#[cfg(feature = "tpm")]
pub mod tpm;
pub(crate) mod transport;

/// What the fuzz targets (fuzz/) drive directly: the response parser, the wire JSON parsers,
/// Retry-After, keys and tokens, proxy URLs and endpoints. Not a stable API.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::protocol::{ids, percent_encode, sas, validate, wire};
    pub use crate::retry::{parse_http_date, parse_retry_after};
    pub use crate::transport::{MAX_BODY, Proxy, parse_response, split_host_port};
}

pub use client::{Client, Event, Step, connection_string, iot_hub_sas_token};
pub use config::{Config, ConfigBuilder};
#[cfg(feature = "tpm")]
pub use credential::TpmCredential;
pub use credential::{
    Credential, CsrAlgorithm, CsrKey, DigestSigner, HmacKey, SecretPem, SignatureScheme,
    SymmetricKey, X509Credential, derive_device_key,
};
pub use error::{Error, ErrorClass, ErrorKind, Result};
pub use protocol::ids::{validate_id_scope, validate_registration_id};
pub use protocol::sas::resource_uri as registration_resource_uri;
pub use protocol::wire::{Registration, RegistrationStatus};
pub use transport::tls::DefaultRoots;
