//! What proves the device's identity: an X.509 certificate and key (mutual
//! TLS), or a symmetric key (SAS token). The enum is open for keys that never
//! leave hardware: a signer only has to provide a `rustls::sign::CertifiedKey`
//! (X.509) or an HMAC function (SAS), and the transport and protocol layers
//! stay unchanged.

pub mod hmac;
pub mod signer;
pub mod x509;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::error::Result;
use crate::protocol::sas;
pub use hmac::HmacKey;
pub use signer::{DigestSigner, SignatureScheme};
pub use x509::X509Credential;

/// A symmetric key for SAS authentication. The bytes are zeroized on drop and
/// never printed.
#[derive(Clone)]
pub struct SymmetricKey {
    key: Zeroizing<Vec<u8>>,
    derived_from_group: bool,
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymmetricKey")
            .field("key", &"<redacted>")
            .field("derived_from_group", &self.derived_from_group)
            .finish()
    }
}

impl SymmetricKey {
    /// An individual enrollment's key (base64).
    pub fn individual(base64_key: &str) -> Result<Self> {
        Ok(SymmetricKey {
            key: sas::decode_key(base64_key)?,
            derived_from_group: false,
        })
    }

    /// The device key derived from an enrollment group key (PROTOCOL.md 5.3).
    pub fn from_group(base64_group_key: &str, registration_id: &str) -> Result<Self> {
        let group = sas::decode_key(base64_group_key)?;
        let derived = sas::derive_device_key(&group, registration_id);
        Ok(SymmetricKey {
            key: sas::decode_key(&derived)?,
            derived_from_group: true,
        })
    }

    /// The key in base64 (a secret: for the IoT Hub connection string only).
    pub fn to_base64(&self) -> Zeroizing<String> {
        use base64::Engine as _;
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.key.as_slice()))
    }

    /// Whether the key was derived from a group key.
    pub fn is_derived(&self) -> bool {
        self.derived_from_group
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.key
    }
}

/// The device credential.
#[derive(Clone, Debug)]
pub enum Credential {
    /// Mutual TLS with a certificate chain and key.
    X509(X509Credential),
    /// SAS tokens signed with a symmetric key.
    SymmetricKey(SymmetricKey),
}

/// Caches a SAS token and renews it when it is close to expiry.
#[derive(Default)]
pub(crate) struct TokenCache {
    token: Option<(Zeroizing<String>, u64)>,
}

impl TokenCache {
    /// A valid token for `scope/registrations/id`, renewed when less than a
    /// tenth of `ttl` (at least 30 s) remains.
    pub fn get(
        &mut self,
        key: &SymmetricKey,
        scope: &str,
        id: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> &str {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let margin = (ttl.as_secs() / 10).max(30);
        let fresh = matches!(&self.token, Some((_, exp)) if *exp > now + margin);
        if !fresh {
            let exp = now + ttl.as_secs().max(1);
            self.token = Some((sas::token(key.bytes(), scope, id, exp), exp));
        }
        self.token
            .as_ref()
            .map(|(t, _)| t.as_str())
            .unwrap_or_default()
    }

    /// Forgets the token (after a 401, to force a new one).
    pub fn clear(&mut self) {
        self.token = None;
    }
}

impl SymmetricKey {
    pub(crate) fn from_derived(base64_key: &str) -> Result<Self> {
        Ok(SymmetricKey {
            key: sas::decode_key(base64_key)?,
            derived_from_group: true,
        })
    }
}

impl From<x509::CredentialError> for crate::error::Error {
    fn from(e: x509::CredentialError) -> Self {
        use crate::error::ErrorKind as K;
        use x509::CredentialError as C;
        let kind = match &e {
            C::NoCertificate | C::BadCertificate(_) => K::InvalidCertificate,
            C::NoPrivateKey | C::BadPrivateKey(_) | C::UnsupportedKey(_) => K::InvalidPrivateKey,
            C::KeyPasswordRequired | C::WrongKeyPassword => K::KeyPassword,
            C::KeyMismatch => K::KeyMismatch,
            C::Pkcs12(_) => K::InvalidPkcs12,
            C::Pkcs12WrongPassword => K::Pkcs12Password,
        };
        crate::error::Error::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_derivation_and_redaction() {
        let k = SymmetricKey::from_group(
            "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
            "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
        )
        .unwrap();
        assert_eq!(
            k.to_base64().as_str(),
            "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
        );
        assert!(k.is_derived());
        assert!(!format!("{k:?}").contains("Jsm0"));
    }

    #[test]
    fn token_cache_renews_near_expiry() {
        let k = SymmetricKey::individual("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=").unwrap();
        let mut c = TokenCache::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ttl = Duration::from_secs(3600);
        let a = c.get(&k, "0ne00111111", "d", ttl, t0).to_owned();
        assert!(a.ends_with("&se=1700003600&skn=registration"));
        let b = c
            .get(&k, "0ne00111111", "d", ttl, t0 + Duration::from_secs(3000))
            .to_owned();
        assert_eq!(a, b);
        let c2 = c
            .get(&k, "0ne00111111", "d", ttl, t0 + Duration::from_secs(3300))
            .to_owned();
        assert!(c2.ends_with("&se=1700006900&skn=registration"));
    }
}
