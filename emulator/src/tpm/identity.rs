//! The HMAC keys the service hands to a device: the DPS identity key of the challenge and the
//! IoT Hub key of the final answer. Each is a KEYEDHASH object (HMAC-SHA256, nameAlg SHA-256)
//! whose secret leaves the service only inside an activation blob.

use super::TpmError;
use super::crypto::{DIGEST_SIZE, random, sha256};
use super::marshal::{put_tpm2b, put_u16, put_u32, tpm2b};
use super::public::{TPM_ALG_HMAC, TPM_ALG_KEYEDHASH, TPM_ALG_SHA256, attr, object_name};

/// Attributes of the duplicated key: usable with an empty password (userWithAuth) for HMAC
/// (sign); not fixedTPM/fixedParent, as a duplicable object must be to be imported.
/// PROTOCOL.md 5.4 marks DPS's exact set as unconfirmed; this is the minimal working one.
pub const IDENTITY_KEY_ATTRIBUTES: u32 = attr::USER_WITH_AUTH | attr::SIGN;

/// A 32-byte HMAC-SHA256 key with its obfuscation seed (the TPMT_SENSITIVE seedValue that the
/// public `unique` field commits to). `Debug` never shows either.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacIdentityKey {
    key: [u8; DIGEST_SIZE],
    seed: [u8; DIGEST_SIZE],
}

impl std::fmt::Debug for HmacIdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacIdentityKey")
            .field("name", &super::hex(&self.name()))
            .finish_non_exhaustive()
    }
}

impl HmacIdentityKey {
    /// A fresh random key and seed.
    pub fn generate() -> Result<HmacIdentityKey, TpmError> {
        let mut key = [0u8; DIGEST_SIZE];
        let mut seed = [0u8; DIGEST_SIZE];
        random(&mut key)?;
        random(&mut seed)?;
        Ok(HmacIdentityKey { key, seed })
    }

    /// A key from known bytes (tests, and a hub key the configuration fixes).
    pub fn from_bytes(key: [u8; DIGEST_SIZE], seed: [u8; DIGEST_SIZE]) -> HmacIdentityKey {
        HmacIdentityKey { key, seed }
    }

    /// The raw HMAC key. Secret: never log it.
    pub fn key_bytes(&self) -> &[u8; DIGEST_SIZE] {
        &self.key
    }

    /// TPMT_PUBLIC: KEYEDHASH, nameAlg SHA-256, [`IDENTITY_KEY_ATTRIBUTES`], empty authPolicy,
    /// scheme HMAC(SHA-256), unique = SHA-256(seedValue || key) (Part 1, 27.2.4 / the check
    /// the TPM makes on Import and Load).
    pub fn public_area(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(48);
        put_u16(&mut p, TPM_ALG_KEYEDHASH);
        put_u16(&mut p, TPM_ALG_SHA256);
        put_u32(&mut p, IDENTITY_KEY_ATTRIBUTES);
        put_tpm2b(&mut p, &[]);
        put_u16(&mut p, TPM_ALG_HMAC);
        put_u16(&mut p, TPM_ALG_SHA256);
        put_tpm2b(&mut p, &sha256(&[&self.seed, &self.key]));
        p
    }

    /// TPM2B_PUBLIC (the `idKeyPub` field of the activation blob).
    pub fn tpm2b_public(&self) -> Vec<u8> {
        tpm2b(&self.public_area())
    }

    /// Name = 0x000b || SHA-256(TPMT_PUBLIC).
    pub fn name(&self) -> Vec<u8> {
        object_name(&self.public_area())
    }

    /// TPMT_SENSITIVE: type KEYEDHASH, empty authValue, seedValue, the key as `bits`.
    pub(crate) fn sensitive(&self) -> Vec<u8> {
        let mut s = Vec::with_capacity(72);
        put_u16(&mut s, TPM_ALG_KEYEDHASH);
        put_tpm2b(&mut s, &[]);
        put_tpm2b(&mut s, &self.seed);
        put_tpm2b(&mut s, &self.key);
        s
    }

    /// HMAC-SHA256 with this key: what TPM2_HMAC returns on the device after import.
    pub fn hmac(&self, data: &[u8]) -> [u8; DIGEST_SIZE] {
        super::crypto::hmac_sha256(&self.key, &[data])
    }

    /// Constant-time check of a MAC made with this key.
    pub fn verify(&self, data: &[u8], mac: &[u8]) -> bool {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.key);
        ring::hmac::verify(&k, data, mac).is_ok()
    }
}

impl TryFrom<&[u8]> for HmacIdentityKey {
    type Error = TpmError;

    /// A hub key given as raw bytes (exactly 32), with a fresh seed.
    fn try_from(key: &[u8]) -> Result<HmacIdentityKey, TpmError> {
        let key: [u8; DIGEST_SIZE] = key.try_into().map_err(|_| {
            TpmError::Unsupported(format!("an HMAC key of {} bytes (32 expected)", key.len()))
        })?;
        let mut seed = [0u8; DIGEST_SIZE];
        random(&mut seed)?;
        Ok(HmacIdentityKey { key, seed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_area_layout() {
        let k = HmacIdentityKey::from_bytes([1; 32], [2; 32]);
        let p = k.public_area();
        assert_eq!(
            super::super::hex(&p[..16]),
            "0008000b000400400000000500 0b0020".replace(' ', "")
        );
        assert_eq!(p.len(), 16 + 32);
        // Duplicable: neither fixedTPM (bit 1) nor fixedParent (bit 4).
        assert_eq!(IDENTITY_KEY_ATTRIBUTES & 0x12, 0);
        assert_eq!(&p[16..], &sha256(&[&[2u8; 32], &[1u8; 32]]));
        assert_eq!(k.tpm2b_public()[..2], [0, 48]);
        assert_eq!(k.name().len(), 34);
        let s = k.sensitive();
        assert_eq!(s.len(), 2 + 2 + 34 + 34);
        assert_eq!(&s[..6], &[0, 8, 0, 0, 0, 32]);
    }

    #[test]
    fn debug_shows_no_key_material_and_verify_is_exact() {
        let k = HmacIdentityKey::from_bytes([0xab; 32], [0xcd; 32]);
        let d = format!("{k:?}");
        assert!(
            !d.contains("abab") && !d.contains("cdcd") && !d.contains("171"),
            "{d}"
        );
        let mac = k.hmac(b"data");
        assert!(k.verify(b"data", &mac));
        assert!(!k.verify(b"datb", &mac));
        assert!(!k.verify(b"data", &mac[..31]));
        assert!(HmacIdentityKey::try_from(&[0u8; 31][..]).is_err());
    }
}
