//! TPM attestation, service side (PROTOCOL.md 5.4): what DPS computes so that only the TPM
//! holding a given EK can recover an HMAC key, written from TPM 2.0 Library Part 1
//! ("Credential Protection", "Duplication").
//!
//! - [`RsaPublic`]: a device's EK or SRK (TPM2B_PUBLIC), its Name, and the registration ID
//!   derived from the EK.
//! - [`HmacIdentityKey`]: the HMAC-SHA256 key handed to the device (a KEYEDHASH object).
//! - [`ActivationBlob`]: MakeCredential + duplication, serialised as the `authenticationKey`.
//!
//! Secrets (HMAC keys, seeds, the inner wrapper key) never appear in `Debug` or errors.

mod attest;
mod blob;
mod credential;
mod crypto;
mod identity;
mod marshal;
mod public;
pub mod swtpm;
#[cfg(test)]
mod tests;

/// Fixtures for the crate's other unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::public::tests::V8_EK;
}

pub use attest::{DeviceKeys, TpmService, challenge_body};
pub use blob::{ActivationBlob, Corruption};
pub use credential::{Protected, duplicate, make_credential};
pub use identity::{HmacIdentityKey, IDENTITY_KEY_ATTRIBUTES};
pub use public::{RsaPublic, SymDef, registration_id_from_ek};

/// Why a key or blob could not be used. Messages name the field, never secret bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TpmError {
    /// Bytes that do not parse as the TPM structure expected.
    Malformed(String),
    /// A well-formed key or request outside what the service supports.
    Unsupported(String),
    /// The random generator or RSA failed.
    Crypto(String),
}

impl std::fmt::Display for TpmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TpmError::Malformed(m) => write!(f, "malformed TPM structure: {m}"),
            TpmError::Unsupported(m) => write!(f, "unsupported TPM key: {m}"),
            TpmError::Crypto(m) => write!(f, "TPM crypto failure: {m}"),
        }
    }
}

impl std::error::Error for TpmError {}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
