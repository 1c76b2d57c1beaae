//! TPM attestation as a credential (PROTOCOL.md 5.4), on a [`crate::tpm::Tpm`].
//!
//! What the state machine asks of it, in order: the register body carries
//! `tpm{endorsementKey, storageRootKey}`; the first PUT has no `Authorization`; a 401 whose body
//! carries `authenticationKey` is the challenge, answered once per registration by activating the
//! blob (bounded by the registration's deadline and cancel token) and remembering `keyName`; the
//! PUT is then resent, and it and the polls carry a SAS signed by TPM2_HMAC with `skn=keyName`;
//! the `assigned` answer's `registrationState.tpm.authenticationKey` (the hub key) is imported in
//! the same way, replacing the DPS key at the identity handle, so IoT Hub SAS tokens made from
//! this credential are signed with the hub key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use super::{HmacKey, SymmetricKey};
use crate::error::{Error, ErrorKind, Result};
use crate::tpm::Tpm;
use crate::transport::CancelToken;

/// What the credential needs from a TPM; [`Tpm`] in production, a fake in the state machine's
/// unit tests.
pub(crate) trait TpmDevice: Send + Sync {
    fn endorsement_key(&self) -> Vec<u8>;
    fn storage_root_key(&self) -> Vec<u8>;
    fn registration_id(&self) -> String;
    fn activate_until(
        &self,
        blob: &[u8],
        deadline: Instant,
        cancel: Option<&CancelToken>,
    ) -> Result<()>;
    fn hmac_until(
        &self,
        data: &[u8],
        deadline: Instant,
        cancel: Option<&CancelToken>,
    ) -> Result<[u8; 32]>;
    fn describe(&self) -> String;
}

impl TpmDevice for Tpm {
    fn endorsement_key(&self) -> Vec<u8> {
        Tpm::endorsement_key(self)
    }
    fn storage_root_key(&self) -> Vec<u8> {
        Tpm::storage_root_key(self)
    }
    fn registration_id(&self) -> String {
        Tpm::registration_id(self)
    }
    fn activate_until(
        &self,
        blob: &[u8],
        deadline: Instant,
        cancel: Option<&CancelToken>,
    ) -> Result<()> {
        Tpm::activate_until(self, blob, deadline, cancel)
    }
    fn hmac_until(
        &self,
        data: &[u8],
        deadline: Instant,
        cancel: Option<&CancelToken>,
    ) -> Result<[u8; 32]> {
        Tpm::hmac_until(self, data, deadline, cancel)
    }
    fn describe(&self) -> String {
        format!(
            "in the TPM at {} (handle {:#010x})",
            self.options().tcti,
            self.options().identity_handle
        )
    }
}

/// The identity key at the TPM's identity handle as an [`HmacKey`] (the DPS key during the
/// registration, the hub key after it).
struct IdentityKey(Arc<dyn TpmDevice>);

/// How long an IoT Hub SAS signature may take when the caller gives no deadline.
const HMAC_TIMEOUT: Duration = Duration::from_secs(60);

impl HmacKey for IdentityKey {
    fn hmac_sha256(&self, data: &[u8]) -> Result<[u8; 32]> {
        self.0.hmac_until(data, Instant::now() + HMAC_TIMEOUT, None)
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// A TPM credential: the EK and SRK publics for the register body, the identity key for SAS.
#[derive(Clone)]
pub struct TpmCredential {
    device: Arc<dyn TpmDevice>,
    ek_b64: String,
    srk_b64: String,
    key: SymmetricKey,
}

impl std::fmt::Debug for TpmCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TpmCredential(key {})", self.device.describe())
    }
}

impl TpmCredential {
    /// A credential on an open TPM.
    pub fn new(tpm: Arc<Tpm>) -> Self {
        Self::with_device(tpm)
    }

    pub(crate) fn with_device(device: Arc<dyn TpmDevice>) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        TpmCredential {
            ek_b64: b64.encode(device.endorsement_key()),
            srk_b64: b64.encode(device.storage_root_key()),
            key: SymmetricKey::from_hmac_key(Arc::new(IdentityKey(device.clone()))),
            device,
        }
    }

    /// The default registration ID, derived from the EK (PROTOCOL.md 5.4).
    pub fn registration_id(&self) -> String {
        self.device.registration_id()
    }

    /// The identity key as a [`SymmetricKey`] (signs with TPM2_HMAC; after a registration it
    /// is the hub key).
    pub fn symmetric_key(&self) -> &SymmetricKey {
        &self.key
    }

    /// The `"tpm":{...}` member of the register body.
    pub(crate) fn register_fields(&self) -> String {
        format!(
            "\"tpm\":{{\"endorsementKey\":\"{}\",\"storageRootKey\":\"{}\"}}",
            self.ek_b64, self.srk_b64
        )
    }

    /// A SAS token for `sr` until `expiry`, with `skn`, signed by the TPM within `until`.
    pub(crate) fn sas_token(
        &self,
        sr: &str,
        expiry: u64,
        skn: &str,
        until: Instant,
        cancel: &CancelToken,
    ) -> Result<zeroize::Zeroizing<String>> {
        use crate::protocol::sas;
        let data = sas::string_to_sign(sr, expiry);
        let mac = zeroize::Zeroizing::new(self.device.hmac_until(
            data.as_bytes(),
            until,
            Some(cancel),
        )?);
        Ok(sas::assemble(sr, &mac, expiry, Some(skn)))
    }

    /// Answers the challenge in a 401 body: `None` when the body is no challenge (no
    /// `authenticationKey`), else the `keyName` once the blob is activated.
    pub(crate) fn answer_challenge(
        &self,
        body: &[u8],
        deadline: Instant,
        cancel: &CancelToken,
    ) -> Option<Result<String>> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let blob = v.get("authenticationKey")?;
        Some(self.parse_and_activate(&v, blob, deadline, cancel))
    }

    fn parse_and_activate(
        &self,
        v: &Value,
        blob: &Value,
        deadline: Instant,
        cancel: &CancelToken,
    ) -> Result<String> {
        let malformed = |what: &str| {
            Error::new(
                ErrorKind::MalformedResponse,
                format!("the TPM challenge (401) is malformed: {what}"),
            )
        };
        let key_name = match v.get("keyName") {
            Some(Value::String(k)) if valid_key_name(k) => k.clone(),
            Some(_) => return Err(malformed("keyName is not a key name")),
            None => return Err(malformed("keyName is missing")),
        };
        let blob = decode_blob(blob)
            .ok_or_else(|| malformed("authenticationKey is not a non-empty base64 string"))?;
        self.device.activate_until(&blob, deadline, Some(cancel))?;
        Ok(key_name)
    }

    /// Imports the hub key of an `assigned` answer (`registrationState.tpm.authenticationKey`).
    pub(crate) fn import_hub_key(
        &self,
        body: &[u8],
        deadline: Instant,
        cancel: &CancelToken,
    ) -> Result<()> {
        let v: Value = serde_json::from_slice(body).map_err(|_| {
            Error::new(
                ErrorKind::MalformedResponse,
                "the assigned answer is not JSON",
            )
        })?;
        let blob = v
            .pointer("/registrationState/tpm/authenticationKey")
            .and_then(decode_blob)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::MalformedResponse,
                    "DPS reported 'assigned' without a base64 registrationState.tpm.authenticationKey \
                     (the IoT Hub key of a TPM device)",
                )
            })?;
        self.device.activate_until(&blob, deadline, Some(cancel))
    }
}

fn decode_blob(v: &Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    let b = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    (!b.is_empty()).then_some(b)
}

/// A `keyName` that goes into `skn=` as it is: 1-128 characters `[A-Za-z0-9._-]`.
fn valid_key_name(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 128
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
