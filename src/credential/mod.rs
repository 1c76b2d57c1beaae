//! What proves the device's identity: an X.509 certificate and key (mutual TLS), or a
//! symmetric key (SAS tokens). Keys may live outside the library: an X.509 key behind a
//! [`DigestSigner`] (a C callback, a PKCS#11 token, a TPM), a symmetric key behind an
//! [`HmacKey`]. The state machine asks the [`Credential`] what it needs (its `Authorization`
//! header, its TLS identity, whether a 401 earns a fresh token, the IoT Hub connection string)
//! and never matches on its kind.

pub mod hmac;
pub mod signer;
#[cfg(feature = "tpm")]
pub mod tpm;
pub mod x509;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::sas;
use crate::transport::CancelToken;
pub use hmac::HmacKey;
pub use signer::{DigestSigner, SignatureScheme};
#[cfg(feature = "tpm")]
pub use tpm::TpmCredential;
pub use x509::X509Credential;
pub use x509::csr::{CsrAlgorithm, CsrKey, SecretPem};

/// Derives an enrollment group member's device key (PROTOCOL.md 5.3):
/// `base64(HMAC-SHA256(base64decode(group_key), registration_id))`. The one derivation used by
/// the config, the C ABI (`dps_derive_device_key`) and the CLI. The result is zeroized on drop.
pub fn derive_device_key(
    base64_group_key: &str,
    registration_id: &str,
) -> Result<Zeroizing<String>> {
    crate::protocol::ids::validate_registration_id(registration_id)?;
    let group = sas::decode_key(base64_group_key)?;
    Ok(sas::derive_device_key(&group, registration_id))
}

/// Where a symmetric key lives.
#[derive(Clone)]
enum KeySource {
    /// In memory (zeroized on drop).
    Memory(Zeroizing<Vec<u8>>),
    /// Behind an [`HmacKey`]: a callback, a PKCS#11 token, a TPM.
    External(Arc<dyn HmacKey>),
}

/// A symmetric key for SAS authentication: in memory (zeroized on drop, never printed), or held
/// elsewhere behind an [`HmacKey`].
#[derive(Clone)]
pub struct SymmetricKey {
    source: KeySource,
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            KeySource::Memory(_) => f.write_str("SymmetricKey(<redacted>)"),
            KeySource::External(k) => write!(f, "SymmetricKey({})", k.describe()),
        }
    }
}

impl SymmetricKey {
    /// An individual enrollment's key (base64).
    pub fn individual(base64_key: &str) -> Result<Self> {
        Ok(Self::memory(sas::decode_key(base64_key)?))
    }

    /// The device key derived from an enrollment group key (PROTOCOL.md 5.3).
    pub fn from_group(base64_group_key: &str, registration_id: &str) -> Result<Self> {
        Self::individual(&derive_device_key(base64_group_key, registration_id)?)
    }

    /// A key the library never sees: every SAS signature is computed by `key`. Works for
    /// individual keys and for group-derived device keys provisioned at the factory.
    pub fn from_hmac_key(key: Arc<dyn HmacKey>) -> Self {
        SymmetricKey {
            source: KeySource::External(key),
        }
    }

    fn memory(key: Zeroizing<Vec<u8>>) -> Self {
        SymmetricKey {
            source: KeySource::Memory(key),
        }
    }

    /// The key in base64 (a secret: for the IoT Hub connection string only), or `None` when
    /// the key is held outside the library.
    pub fn to_base64(&self) -> Option<Zeroizing<String>> {
        use base64::Engine as _;
        match &self.source {
            KeySource::Memory(k) => Some(Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(k.as_slice()),
            )),
            KeySource::External(_) => None,
        }
    }

    /// `HMAC-SHA256(key, data)`, wherever the key lives. A failing external key gives
    /// [`ErrorKind::SignerFailed`].
    pub fn hmac_sha256(&self, data: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        match &self.source {
            KeySource::Memory(k) => Ok(Zeroizing::new(sas::hmac_sha256(k, data))),
            KeySource::External(k) => k.hmac_sha256(data).map(Zeroizing::new).map_err(|e| {
                let mut out = Error::new(
                    ErrorKind::SignerFailed,
                    format!("the HMAC key {} failed: {}", k.describe(), e.message),
                );
                out.cause = Some(e.kind);
                out
            }),
        }
    }

    /// A SAS token for an already URL-encoded resource URI `sr`, valid until `expiry_unix`.
    pub fn sas_token(
        &self,
        sr: &str,
        expiry_unix: u64,
        skn: Option<&str>,
    ) -> Result<Zeroizing<String>> {
        let mac = self.hmac_sha256(sas::string_to_sign(sr, expiry_unix).as_bytes())?;
        Ok(sas::assemble(sr, &mac, expiry_unix, skn))
    }

    /// The IoT Hub SAS token the device presents to its hub after provisioning (audience
    /// `<hub>/devices/<deviceId>`, no key name), signed with this key wherever it lives.
    pub fn iot_hub_sas_token(
        &self,
        hub: &str,
        device_id: &str,
        expiry_unix: u64,
    ) -> Result<Zeroizing<String>> {
        if hub.is_empty() || device_id.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the IoT Hub SAS token needs a hub host name and a device ID",
            ));
        }
        self.sas_token(
            &sas::iot_hub_resource_uri(hub, device_id),
            expiry_unix,
            None,
        )
    }
}

/// The device credential.
#[derive(Clone, Debug)]
pub enum Credential {
    /// Mutual TLS with a certificate chain and key.
    X509(X509Credential),
    /// SAS tokens signed with a symmetric key.
    SymmetricKey(SymmetricKey),
    /// TPM attestation (PROTOCOL.md 5.4): a challenge round trip, then SAS tokens signed by
    /// TPM2_HMAC with the key the challenge delivered.
    #[cfg(feature = "tpm")]
    Tpm(TpmCredential),
}

/// What a credential does with a 401 answer to the register PUT.
#[cfg_attr(not(feature = "tpm"), allow(dead_code))]
pub(crate) enum Challenge {
    /// Not a challenge this credential answers: the 401 stands.
    None,
    /// Answered: resend the PUT.
    Answered,
    /// A challenge that could not be answered.
    Failed(Error),
}

/// What the registration state machine asks of a credential. Every credential-specific
/// decision lives here, so a new credential kind leaves `client.rs` untouched.
impl Credential {
    /// The `Authorization` header for the next request, if this credential uses one (SAS).
    #[cfg_attr(not(feature = "tpm"), allow(unused_variables))]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn authorization(
        &self,
        tokens: &mut TokenCache,
        id_scope: &str,
        registration_id: &str,
        ttl: Duration,
        now: SystemTime,
        until: Instant,
        cancel: &CancelToken,
    ) -> Result<Option<Zeroizing<String>>> {
        match self {
            Credential::SymmetricKey(k) => tokens
                .get(k, id_scope, registration_id, ttl, now)
                .map(|t| Some(Zeroizing::new(t.to_owned()))),
            Credential::X509(_) => Ok(None),
            // No Authorization until the challenge of this registration is answered.
            #[cfg(feature = "tpm")]
            Credential::Tpm(t) => match tokens.key_name.clone() {
                None => Ok(None),
                Some(skn) => tokens
                    .get_with(id_scope, registration_id, ttl, now, |sr, exp| {
                        t.sas_token(sr, exp, &skn, until, cancel)
                    })
                    .map(|t| Some(Zeroizing::new(t.to_owned()))),
            },
        }
    }

    /// Members the register body carries besides `registrationId` and `payload` (JSON text
    /// `"name":value[,...]`), if any.
    pub(crate) fn register_fields(&self) -> Option<String> {
        match self {
            #[cfg(feature = "tpm")]
            Credential::Tpm(t) => Some(t.register_fields()),
            _ => None,
        }
    }

    /// Answers a 401 to the register PUT (`body` is the answer's body), at most once per
    /// registration: TPM attestation activates the challenge blob within `deadline`.
    #[cfg_attr(not(feature = "tpm"), allow(unused_variables))]
    pub(crate) fn answer_challenge(
        &self,
        tokens: &mut TokenCache,
        body: &[u8],
        deadline: Instant,
        cancel: &CancelToken,
    ) -> Challenge {
        match self {
            #[cfg(feature = "tpm")]
            Credential::Tpm(t) => {
                if tokens.key_name.is_some() {
                    // One challenge per registration: a 401 to the answered PUT stands.
                    return Challenge::None;
                }
                match t.answer_challenge(body, deadline, cancel) {
                    None => Challenge::None,
                    Some(Err(e)) => Challenge::Failed(e),
                    Some(Ok(skn)) => {
                        tokens.clear();
                        tokens.key_name = Some(skn);
                        Challenge::Answered
                    }
                }
            }
            _ => Challenge::None,
        }
    }

    /// Called with the body of the `assigned` answer of a registration: a TPM credential
    /// imports the hub key it carries.
    #[cfg_attr(not(feature = "tpm"), allow(unused_variables))]
    pub(crate) fn on_assigned(
        &self,
        tokens: &mut TokenCache,
        body: &[u8],
        deadline: Instant,
        cancel: &CancelToken,
    ) -> Result<()> {
        match self {
            #[cfg(feature = "tpm")]
            Credential::Tpm(t) => {
                // The identity key is about to become the hub key: no cached token survives.
                tokens.clear();
                t.import_hub_key(body, deadline, cancel)
            }
            _ => Ok(()),
        }
    }

    /// The client certificate and key for the TLS handshake, if this credential uses one.
    pub fn tls_identity(&self) -> Option<Arc<CertifiedKey>> {
        match self {
            Credential::X509(x) => Some(x.certified_key()),
            _ => None,
        }
    }

    /// Whether TLS 1.3 may be offered: not for an external RSA key that only makes PKCS#1 v1.5
    /// signatures (TLS 1.3 requires PSS; DPS itself speaks TLS 1.2).
    pub(crate) fn tls13_allowed(&self) -> bool {
        match self {
            Credential::X509(x) => !x.tls12_only(),
            _ => true,
        }
    }

    /// What this credential can add when DPS refuses it (a 401): for X.509, a chain that
    /// stops short of a CA certificate (issue 14 item 10).
    pub(crate) fn refusal_hint(&self) -> Option<String> {
        match self {
            Credential::X509(x) => x.incomplete_chain_hint(),
            _ => None,
        }
    }

    /// Whether a 401 while polling earns one re-registration with a fresh token
    /// (PROTOCOL.md 4.2: the token may have expired). A certificate does not get fresher, and
    /// a TPM registration already had its one challenge.
    pub(crate) fn fresh_token_on_401(&self) -> bool {
        matches!(self, Credential::SymmetricKey(_))
    }

    /// The IoT Hub connection string the device uses next:
    /// `HostName=<hub>;DeviceId=<id>;SharedAccessKey=<key>` for an in-memory symmetric key,
    /// `HostName=<hub>;DeviceId=<id>;x509=true` for certificates. A key held outside the
    /// library cannot be written into a connection string: [`ErrorKind::Unsupported`] (use
    /// [`SymmetricKey::iot_hub_sas_token`]). The result is zeroized on drop.
    pub fn connection_string(&self, hub: &str, device_id: &str) -> Result<Zeroizing<String>> {
        match self.symmetric_key() {
            Some(k) => match k.to_base64() {
                Some(key) => Ok(Zeroizing::new(format!(
                    "HostName={hub};DeviceId={device_id};SharedAccessKey={}",
                    key.as_str()
                ))),
                None => Err(Error::new(
                    ErrorKind::Unsupported,
                    "the symmetric key is held outside the library, so it cannot go into a \
                     connection string; use an IoT Hub SAS token instead",
                )),
            },
            None => Ok(Zeroizing::new(format!(
                "HostName={hub};DeviceId={device_id};x509=true"
            ))),
        }
    }

    /// The symmetric key, for SAS tokens beyond registration (IoT Hub tokens). For a TPM, the
    /// key at the identity handle (the hub key once the registration is assigned).
    pub fn symmetric_key(&self) -> Option<&SymmetricKey> {
        match self {
            Credential::SymmetricKey(k) => Some(k),
            Credential::X509(_) => None,
            #[cfg(feature = "tpm")]
            Credential::Tpm(t) => Some(t.symmetric_key()),
        }
    }
}

/// Caches a SAS token and renews it when it is close to expiry.
#[derive(Default)]
pub(crate) struct TokenCache {
    token: Option<(Zeroizing<String>, u64)>,
    /// The `keyName` of the challenge answered in this registration (TPM attestation).
    pub(crate) key_name: Option<String>,
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
    ) -> Result<&str> {
        self.get_with(scope, id, ttl, now, |sr, exp| {
            key.sas_token(sr, exp, Some("registration"))
        })
    }

    /// [`TokenCache::get`] with the signing done by `sign(sr, expiry)`.
    pub fn get_with(
        &mut self,
        scope: &str,
        id: &str,
        ttl: Duration,
        now: SystemTime,
        sign: impl FnOnce(&str, u64) -> Result<Zeroizing<String>>,
    ) -> Result<&str> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let margin = (ttl.as_secs() / 10).max(30);
        let fresh = matches!(&self.token, Some((_, exp)) if *exp > now + margin);
        if !fresh {
            let exp = now + ttl.as_secs().max(1);
            let sr = sas::resource_uri(scope, id);
            self.token = Some((sign(&sr, exp)?, exp));
        }
        Ok(self
            .token
            .as_ref()
            .map(|(t, _)| t.as_str())
            .unwrap_or_default())
    }

    /// Forgets the token (after a 401, to force a new one).
    pub fn clear(&mut self) {
        self.token = None;
    }

    /// A new registration starts: a challenge answered in an earlier one no longer counts.
    pub fn start_registration(&mut self) {
        if self.key_name.take().is_some() {
            self.token = None;
        }
    }
}

impl From<x509::CredentialError> for crate::error::Error {
    fn from(e: x509::CredentialError) -> Self {
        use crate::error::ErrorKind as K;
        use x509::CredentialError as C;
        let kind = match &e {
            C::NoCertificate | C::BadCertificate(_) => K::InvalidCertificate,
            C::NoPrivateKey | C::Pkcs12NoKey | C::BadPrivateKey(_) | C::UnsupportedKey(_) => {
                K::InvalidPrivateKey
            }
            C::KeyPasswordRequired | C::WrongKeyPassword => K::KeyPassword,
            C::KeyMismatch => K::KeyMismatch,
            C::Pkcs12(_) => K::InvalidPkcs12,
            C::Pkcs12WrongPassword | C::Pkcs12PasswordRequired => K::Pkcs12Password,
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
            k.to_base64().unwrap().as_str(),
            "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
        );
        assert!(!format!("{k:?}").contains("Jsm0"));
    }

    #[test]
    fn token_cache_renews_near_expiry() {
        let k = SymmetricKey::individual("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=").unwrap();
        let mut c = TokenCache::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ttl = Duration::from_secs(3600);
        let a = c.get(&k, "0ne00111111", "d", ttl, t0).unwrap().to_owned();
        assert!(a.ends_with("&se=1700003600&skn=registration"));
        let b = c
            .get(&k, "0ne00111111", "d", ttl, t0 + Duration::from_secs(3000))
            .unwrap()
            .to_owned();
        assert_eq!(a, b);
        let c2 = c
            .get(&k, "0ne00111111", "d", ttl, t0 + Duration::from_secs(3300))
            .unwrap()
            .to_owned();
        assert!(c2.ends_with("&se=1700006900&skn=registration"));
    }
}
