//! The two ways the service protects a secret to a device's TPM (TPM 2.0 Library Part 1):
//! credential protection (section 24, what TPM2_MakeCredential computes and
//! TPM2_ActivateCredential undoes) and duplication with inner and outer wrappers (section 23.3,
//! what TPM2_Duplicate computes and TPM2_Import undoes).
//!
//! Both outer layers have the same shape, with `seed` random and RSA-OAEP encrypted to the
//! protecting key:
//!   symKey   = KDFa(SHA-256, seed, "STORAGE", Name(object), "", symmetric.keyBits)
//!   enc      = AES-CFB(symKey, IV 0, plaintext)
//!   hmacKey  = KDFa(SHA-256, seed, "INTEGRITY", "", "", 256)
//!   blob     = TPM2B( TPM2B_DIGEST(HMAC(hmacKey, enc || Name(object))) || enc )

use super::TpmError;
use super::crypto::{
    DIGEST_SIZE, aes128_cfb_encrypt, hmac_sha256, kdfa_sha256, random, rsa_oaep_sha256_encrypt,
    sha256,
};
use super::marshal::{put_tpm2b, tpm2b};
use super::public::{RsaPublic, object_name};

/// A protected secret: the wrapped blob (TPM2B_ID_OBJECT or TPM2B_PRIVATE) and its seed
/// encrypted to the protecting key (TPM2B_ENCRYPTED_SECRET).
#[derive(Clone, PartialEq, Eq)]
pub struct Protected {
    pub blob: Vec<u8>,
    pub encrypted_seed: Vec<u8>,
}

impl std::fmt::Debug for Protected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protected")
            .field("blob_len", &self.blob.len())
            .field("encrypted_seed_len", &self.encrypted_seed.len())
            .finish()
    }
}

/// The outer layer shared by credentials and duplication, from a known seed.
pub(crate) fn outer_wrap(
    seed: &[u8],
    sym_key_bits: u16,
    plaintext: &[u8],
    object_name: &[u8],
) -> Result<Vec<u8>, TpmError> {
    let sym_key = kdfa_sha256(seed, "STORAGE", object_name, &[], u32::from(sym_key_bits));
    let mut enc = plaintext.to_vec();
    aes128_cfb_encrypt(&sym_key, &mut enc)?;
    let hmac_key = kdfa_sha256(seed, "INTEGRITY", &[], &[], (DIGEST_SIZE * 8) as u32);
    let integrity = hmac_sha256(&hmac_key, &[&enc, object_name]);
    let mut inner = Vec::with_capacity(2 + DIGEST_SIZE + enc.len());
    put_tpm2b(&mut inner, &integrity);
    inner.extend_from_slice(&enc);
    Ok(tpm2b(&inner))
}

fn new_seed() -> Result<[u8; DIGEST_SIZE], TpmError> {
    let mut seed = [0u8; DIGEST_SIZE];
    random(&mut seed)?;
    Ok(seed)
}

fn sym_key_bits(key: &RsaPublic, role: &str) -> Result<u16, TpmError> {
    key.check_storage_key(role)?;
    // check_storage_key accepted only AES-128-CFB.
    Ok(key.symmetric.map(|s| s.key_bits).unwrap_or(128))
}

/// MakeCredential(EK_pub, credential, objectName): `credential` (at most 32 bytes) can be
/// recovered only by the TPM holding the EK, and only for an object with `object_name`
/// loaded (here: the SRK, the activateHandle of ActivateCredential).
pub fn make_credential(
    ek: &RsaPublic,
    credential: &[u8],
    object_name: &[u8],
) -> Result<Protected, TpmError> {
    let bits = sym_key_bits(ek, "EK")?;
    if credential.len() > DIGEST_SIZE {
        return Err(TpmError::Unsupported(format!(
            "a credential of {} bytes (at most {DIGEST_SIZE})",
            credential.len()
        )));
    }
    let seed = new_seed()?;
    let enc_seed = rsa_oaep_sha256_encrypt(&ek.modulus, ek.exponent, "IDENTITY", &seed)?;
    Ok(Protected {
        blob: outer_wrap(&seed, bits, &tpm2b(credential), object_name)?,
        encrypted_seed: tpm2b(&enc_seed),
    })
}

/// Duplication of an object (its TPMT_PUBLIC and TPMT_SENSITIVE) to a new parent, with an
/// inner wrapper under `inner_key` (AES-128-CFB, the `encryptionKey` of TPM2_Import):
///   innerIntegrity = SHA-256(TPM2B_SENSITIVE || Name)
///   encSensitive   = AES-CFB(innerKey, IV 0, TPM2B_DIGEST(innerIntegrity) || TPM2B_SENSITIVE)
/// then the outer wrapper to the parent with an OAEP label "DUPLICATE".
pub fn duplicate(
    parent: &RsaPublic,
    object_public_area: &[u8],
    object_sensitive: &[u8],
    inner_key: &[u8; 16],
) -> Result<Protected, TpmError> {
    let bits = sym_key_bits(parent, "SRK")?;
    let name = object_name(object_public_area);
    let sensitive = tpm2b(object_sensitive);
    let inner_integrity = sha256(&[&sensitive, &name]);
    let mut enc_sensitive = tpm2b(&inner_integrity);
    enc_sensitive.extend_from_slice(&sensitive);
    aes128_cfb_encrypt(inner_key, &mut enc_sensitive)?;
    let seed = new_seed()?;
    let enc_seed = rsa_oaep_sha256_encrypt(&parent.modulus, parent.exponent, "DUPLICATE", &seed)?;
    Ok(Protected {
        blob: outer_wrap(&seed, bits, &enc_sensitive, &name)?,
        encrypted_seed: tpm2b(&enc_seed),
    })
}

#[cfg(test)]
mod tests {
    use super::super::crypto::aes128_cfb_decrypt;
    use super::super::marshal::Reader;
    use super::*;

    /// Undoes `outer_wrap` with the seed, checking the integrity HMAC, as the TPM does.
    fn outer_unwrap(seed: &[u8], blob: &[u8], name: &[u8]) -> Result<Vec<u8>, String> {
        let mut r = Reader::new(blob);
        let body = r.tpm2b("blob").map_err(|e| e.to_string())?;
        let mut r = Reader::new(body);
        let integrity = r.tpm2b("integrity").map_err(|e| e.to_string())?.to_vec();
        let enc = r.bytes(r.remaining(), "enc").unwrap().to_vec();
        let hmac_key = kdfa_sha256(seed, "INTEGRITY", &[], &[], 256);
        if hmac_sha256(&hmac_key, &[&enc, name])[..] != integrity[..] {
            return Err("integrity".into());
        }
        let sym = kdfa_sha256(seed, "STORAGE", name, &[], 128);
        let mut plain = enc;
        aes128_cfb_decrypt(&sym, &mut plain).unwrap();
        Ok(plain)
    }

    #[test]
    fn outer_wrap_round_trips_and_binds_the_name() {
        let seed = [9u8; 32];
        let name = [0u8, 0x0b, 1, 2, 3];
        let blob = outer_wrap(&seed, 128, b"\x00\x03abc", &name).unwrap();
        assert_eq!(blob.len(), 2 + 2 + 32 + 5);
        assert_eq!(outer_unwrap(&seed, &blob, &name).unwrap(), b"\x00\x03abc");
        assert_eq!(
            outer_unwrap(&seed, &blob, &[0, 0x0b, 1, 2, 4]).unwrap_err(),
            "integrity"
        );
        let mut flipped = blob.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(outer_unwrap(&seed, &flipped, &name).is_err());
    }

    #[test]
    fn make_credential_refuses_long_credentials_and_non_storage_keys() {
        let ek = RsaPublic::from_base64(super::super::public::tests::V8_EK).unwrap();
        assert!(make_credential(&ek, &[0u8; 33], &[0, 0x0b]).is_err());
        let p = make_credential(&ek, &[7u8; 16], &ek.name()).unwrap();
        assert_eq!(p.encrypted_seed.len(), 2 + 256);
        assert_eq!(p.blob.len(), 2 + 34 + 18);
        let mut signer = ek.clone();
        signer.attributes |= super::super::public::attr::SIGN;
        assert!(make_credential(&signer, &[7u8; 16], &ek.name()).is_err());
    }
}
