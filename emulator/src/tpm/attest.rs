//! The service's TPM state across requests (PROTOCOL.md 5.4, steps 2, 5 and 6): for each
//! device, the EK and SRK it sent and the identity key of the challenge it was given, so that
//! the SAS of its next requests can be checked and the final answer can carry the hub key.
//! Shared by all connections; nothing here is logged or shown by `Debug`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use super::{ActivationBlob, Corruption, HmacIdentityKey, RsaPublic, TpmError};

/// The `tpm` member of a registration request, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKeys {
    pub ek: RsaPublic,
    pub srk: RsaPublic,
}

impl DeviceKeys {
    /// Reads `{"endorsementKey": <b64>, "storageRootKey": <b64>}`. The error is for the log
    /// and for a 400 message (public data only).
    pub fn from_json(tpm: &Value) -> Result<DeviceKeys, String> {
        let field = |name: &str| -> Result<RsaPublic, String> {
            let s = tpm
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("tpm.{name} is missing or not a string"))?;
            RsaPublic::from_base64(s).map_err(|e| format!("tpm.{name}: {e}"))
        };
        let ek = field("endorsementKey")?;
        let srk = field("storageRootKey")?;
        ek.check_storage_key("tpm.endorsementKey")
            .map_err(|e| e.to_string())?;
        srk.check_storage_key("tpm.storageRootKey")
            .map_err(|e| e.to_string())?;
        Ok(DeviceKeys { ek, srk })
    }
}

struct Session {
    keys: DeviceKeys,
    identity: HmacIdentityKey,
    /// The inner wrapper keys of this device's last blobs (challenge, hub key), for
    /// [`TpmService::test_hook_inner_wrap_keys`] only.
    inner_keys: Vec<[u8; 16]>,
}

/// Issued challenges by device (lowercase registration ID).
#[derive(Default)]
pub struct TpmService {
    sessions: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for TpmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmService")
            .field("devices", &self.lock().len())
            .finish()
    }
}

/// Devices remembered at most (a long benchmark does not grow memory without bound).
const MAX_SESSIONS: usize = 100_000;

impl TpmService {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Step 2: the device sent `keys` for an enrollment holding `enrolled_ek`. Refuses another
    /// EK (compared by Name, which covers the whole public area); otherwise makes a fresh
    /// identity key, remembers it (replacing an earlier challenge) and returns the base64
    /// activation blob, damaged as `corrupt` says for a fault.
    pub fn challenge(
        &self,
        regid_lower: &str,
        enrolled_ek: &RsaPublic,
        keys: DeviceKeys,
        corrupt: Option<Corruption>,
    ) -> Result<String, String> {
        if keys.ek.name() != enrolled_ek.name() {
            return Err(format!(
                "tpm refused: the endorsement key (registration id {}) is not the enrolled one \
                 (registration id {})",
                keys.ek.registration_id(),
                enrolled_ek.registration_id()
            ));
        }
        let identity = HmacIdentityKey::generate().map_err(|e| e.to_string())?;
        let (blob, inner) = blob_for(&keys, &identity, corrupt).map_err(|e| e.to_string())?;
        let mut s = self.lock();
        if s.len() >= MAX_SESSIONS && !s.contains_key(regid_lower) {
            s.clear();
        }
        s.insert(
            regid_lower.to_string(),
            Session {
                keys,
                identity,
                inner_keys: vec![inner],
            },
        );
        Ok(blob)
    }

    /// The identity key of the device's last challenge (to check its SAS), if any.
    pub fn identity_key(&self, regid_lower: &str) -> Option<Vec<u8>> {
        self.lock()
            .get(regid_lower)
            .map(|s| s.identity.key_bytes().to_vec())
    }

    /// Test hook (secret-leak tests only): the inner wrapper keys of the device's last
    /// challenge and hub-key blobs, the credential ActivateCredential hands the device.
    pub fn test_hook_inner_wrap_keys(&self, regid_lower: &str) -> Vec<[u8; 16]> {
        self.lock()
            .get(regid_lower)
            .map(|s| s.inner_keys.clone())
            .unwrap_or_default()
    }

    /// Step 6: `hub_key` (fresh when `None`) protected to the device's TPM, for
    /// `registrationState.tpm.authenticationKey`. `None` when the device was never challenged.
    pub fn hub_blob(
        &self,
        regid_lower: &str,
        hub_key: Option<&[u8]>,
        corrupt: Option<Corruption>,
    ) -> Option<Result<String, String>> {
        let keys = self.lock().get(regid_lower)?.keys.clone();
        let key = match hub_key {
            Some(k) => HmacIdentityKey::try_from(k),
            None => HmacIdentityKey::generate(),
        };
        let built = key.and_then(|k| blob_for(&keys, &k, corrupt));
        Some(match built {
            Ok((blob, inner)) => {
                if let Some(s) = self.lock().get_mut(regid_lower) {
                    s.inner_keys.truncate(1);
                    s.inner_keys.push(inner);
                }
                Ok(blob)
            }
            Err(e) => Err(e.to_string()),
        })
    }
}

/// The base64 blob and its inner wrapper key.
fn blob_for(
    keys: &DeviceKeys,
    key: &HmacIdentityKey,
    corrupt: Option<Corruption>,
) -> Result<(String, [u8; 16]), TpmError> {
    let mut inner = [0u8; 16];
    super::crypto::random(&mut inner)?;
    let mut blob = ActivationBlob::build_with_inner_key(&keys.ek, &keys.srk, key, &inner)?;
    if let Some(c) = corrupt {
        blob.corrupt(c);
    }
    Ok((blob.to_base64(), inner))
}

/// The body of the 401 challenge (PROTOCOL.md 5.4 step 2: top-level `authenticationKey` and
/// `keyName`, which the C SDK requires).
pub fn challenge_body(blob_b64: &str) -> Vec<u8> {
    serde_json::json!({
        "message": "Provision a TPM: activate the authenticationKey and sign a SAS with it.",
        "authenticationKey": blob_b64,
        "keyName": "registration",
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::public::tests::V8_EK;
    use super::*;

    fn keys() -> DeviceKeys {
        let ek = RsaPublic::from_base64(V8_EK).unwrap();
        DeviceKeys {
            ek: ek.clone(),
            srk: ek,
        }
    }

    #[test]
    fn device_keys_from_json_name_the_bad_field() {
        let ok = serde_json::json!({"endorsementKey": V8_EK, "storageRootKey": V8_EK});
        assert_eq!(DeviceKeys::from_json(&ok).unwrap(), keys());
        let e = DeviceKeys::from_json(&serde_json::json!({"endorsementKey": V8_EK})).unwrap_err();
        assert!(e.contains("tpm.storageRootKey is missing"), "{e}");
        let e = DeviceKeys::from_json(
            &serde_json::json!({"endorsementKey": "AAAA", "storageRootKey": V8_EK}),
        )
        .unwrap_err();
        assert!(e.starts_with("tpm.endorsementKey: malformed"), "{e}");
    }

    #[test]
    fn challenge_remembers_a_fresh_key_and_refuses_another_ek() {
        let svc = TpmService::default();
        let ek = keys().ek;
        assert_eq!(svc.identity_key("dev"), None);
        assert!(svc.hub_blob("dev", None, None).is_none());
        let b1 = svc.challenge("dev", &ek, keys(), None).unwrap();
        let k1 = svc.identity_key("dev").unwrap();
        let b2 = svc.challenge("dev", &ek, keys(), None).unwrap();
        let k2 = svc.identity_key("dev").unwrap();
        assert_ne!(b1, b2);
        assert_ne!(k1, k2);
        assert!(svc.hub_blob("dev", Some(&[1u8; 32]), None).unwrap().is_ok());
        assert!(
            svc.hub_blob("dev", Some(&[1u8; 31]), None)
                .unwrap()
                .is_err()
        );
        // Another TPM's EK: the same template with one modulus byte changed (the modulus
        // starts at offset 60 of V8's TPM2B_PUBLIC).
        let mut tpm2b = ek.as_tpm2b().to_vec();
        tpm2b[60 + 10] ^= 1;
        let other = RsaPublic::parse(&tpm2b).unwrap();
        assert_eq!(other.modulus[10], ek.modulus[10] ^ 1);
        let e = svc.challenge("dev", &other, keys(), None).unwrap_err();
        assert!(e.contains("not the enrolled one"), "{e}");
        // The refusal keeps the earlier challenge.
        assert_eq!(svc.identity_key("dev").unwrap(), k2);
        let body: Value = serde_json::from_slice(&challenge_body(&b2)).unwrap();
        assert_eq!(body["authenticationKey"], b2.as_str());
        assert_eq!(body["keyName"], "registration");
        assert!(!format!("{svc:?}").contains(&b2[..10]));
    }
}
