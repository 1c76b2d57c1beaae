//! A secret key in a PKCS#11 token as an [`HmacKey`], used with `CKM_SHA256_HMAC`.

use std::fmt;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};

use super::session::KeySession;
use super::uri::Pkcs11Uri;
use crate::credential::HmacKey;
use crate::error::{Error, ErrorKind, Result};

/// A secret key in a PKCS#11 token (`CKK_GENERIC_SECRET` or `CKK_SHA256_HMAC`) computing
/// HMAC-SHA256 for SAS tokens. The key never leaves the token.
///
/// One session per key; calls are serialised on it, so sharing the key between threads is
/// safe.
pub struct Pkcs11HmacKey {
    inner: KeySession,
}

impl fmt::Debug for Pkcs11HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11HmacKey")
            .field("uri", &self.inner.uri().to_string())
            .finish()
    }
}

impl Pkcs11HmacKey {
    /// Opens the secret key the URI names (`type=secret-key` or no type): loads the module,
    /// logs in and checks that the key is a generic secret or an HMAC-SHA256 key allowed to
    /// sign.
    pub fn open(uri: &Pkcs11Uri) -> Result<Self> {
        let inner = KeySession::open(uri, ObjectClass::SECRET_KEY)?;
        let attrs = inner.with_key("reading the key type", |s, k| {
            s.get_attributes(k, &[AttributeType::KeyType, AttributeType::Sign])
        })?;
        for a in &attrs {
            match a {
                Attribute::KeyType(t)
                    if *t != KeyType::GENERIC_SECRET && *t != KeyType::SHA256_HMAC =>
                {
                    return Err(Error::new(
                        ErrorKind::InvalidKey,
                        format!(
                            "the PKCS#11 key {} is of type {t}; a generic secret or \
                             SHA256-HMAC key is needed",
                            inner.uri()
                        ),
                    ));
                }
                Attribute::Sign(false) => {
                    return Err(Error::new(
                        ErrorKind::InvalidKey,
                        format!(
                            "the PKCS#11 key {} may not sign (CKA_SIGN is false)",
                            inner.uri()
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(Pkcs11HmacKey { inner })
    }
}

impl HmacKey for Pkcs11HmacKey {
    fn hmac_sha256(&self, data: &[u8]) -> Result<[u8; 32]> {
        let mac = self
            .inner
            .with_key("HMAC", |s, k| s.sign(&Mechanism::Sha256Hmac, k, data))?;
        <[u8; 32]>::try_from(mac.as_slice()).map_err(|_| {
            Error::new(
                ErrorKind::SignerFailed,
                format!(
                    "the PKCS#11 token returned a {}-byte HMAC-SHA256 for {}, expected 32",
                    mac.len(),
                    self.inner.uri()
                ),
            )
        })
    }

    fn describe(&self) -> String {
        format!("PKCS#11 secret key {}", self.inner.uri())
    }
}
