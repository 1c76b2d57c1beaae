//! Keys for SAS tokens that may live outside the library's memory.
//!
//! A SAS signature is `HMAC-SHA256(key, "<sr>\n<expiry>")`. [`HmacKey`] is the one thing a
//! credential needs from wherever the key lives: in memory, a C callback, a PKCS#11 token
//! (`CKM_SHA256_HMAC`) or a TPM (`TPM2_HMAC`). The library hands over the exact bytes to sign
//! and gets the 32-byte MAC back; it never sees the key of a hardware-held [`HmacKey`].

use std::fmt;

use crate::error::Result;

/// Computes HMAC-SHA256 with a key the library may never see.
///
/// `hmac_sha256` is called on the thread that drives the registration, inside a library call,
/// once per SAS token (tokens are cached until close to expiry). It may block (a secure element
/// or a TPM takes milliseconds), but the registration deadline keeps running meanwhile. An
/// implementation must not print the key or the MAC; its error messages go to the caller.
pub trait HmacKey: Send + Sync {
    /// `HMAC-SHA256(key, data)`.
    fn hmac_sha256(&self, data: &[u8]) -> Result<[u8; 32]>;

    /// A short description for logs and errors (never key material), e.g.
    /// `"PKCS#11 object 'sas-key'"`.
    fn describe(&self) -> String;
}

impl fmt::Debug for dyn HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacKey({})", self.describe())
    }
}
