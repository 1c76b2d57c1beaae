//! The primitives of TPM 2.0 Library Part 1 that the service side needs, all with SHA-256 as
//! the hash (the nameAlg of the standard EK/SRK templates and of the identity key):
//! KDFa (Part 1, 11.4.10.2), AES-128-CFB with a zero IV (Part 1, 11.4.7 / 23.3.2 "CFB mode with
//! an IV of zero"), HMAC-SHA256 and RSA-OAEP-SHA256 with a label (Part 1, B.10.3).

use aes::Aes128;
use aes::cipher::KeyIvInit;
use ring::rand::{SecureRandom, SystemRandom};
use rsa::rand_core::{TryCryptoRng, TryRng};
use rsa::{BoxedUint, Oaep, PublicKey};
use sha2::Sha256;

use super::TpmError;

/// SHA-256 digest size (bytes): the size of every seed, integrity HMAC and Name digest here.
pub(crate) const DIGEST_SIZE: usize = 32;

pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; DIGEST_SIZE] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; DIGEST_SIZE];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_SIZE] {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&k);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; DIGEST_SIZE];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// KDFa(SHA-256, key, label, contextU, contextV, bits) in counter mode:
/// `HMAC(key, [i]32 || label || 0x00 || contextU || contextV || [bits]32)` for i = 1, 2, …,
/// concatenated and cut to `bits` (a multiple of 8 here). `label` is given without its NUL;
/// the terminating zero octet the specification requires is added here.
pub(crate) fn kdfa_sha256(
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + DIGEST_SIZE);
    let mut counter: u32 = 0;
    while out.len() < bytes {
        counter += 1;
        let block = hmac_sha256(
            key,
            &[
                &counter.to_be_bytes(),
                label.as_bytes(),
                &[0u8],
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        );
        out.extend_from_slice(&block);
    }
    out.truncate(bytes);
    out
}

/// AES-128 in CFB mode with an all-zero IV, in place (the TPM's storage and credential
/// encryption; each key is used for exactly one message, which is why a zero IV is safe).
pub(crate) fn aes128_cfb_encrypt(key: &[u8], data: &mut [u8]) -> Result<(), TpmError> {
    let key: [u8; 16] = key
        .try_into()
        .map_err(|_| TpmError::Unsupported(format!("AES key of {} bytes", key.len())))?;
    let iv = [0u8; 16];
    cfb_mode::Encryptor::<Aes128>::new(&key.into(), &iv.into()).encrypt(data);
    Ok(())
}

/// The inverse of [`aes128_cfb_encrypt`] (used by the tests and by blob inspection).
#[cfg(test)]
pub(crate) fn aes128_cfb_decrypt(key: &[u8], data: &mut [u8]) -> Result<(), TpmError> {
    let key: [u8; 16] = key
        .try_into()
        .map_err(|_| TpmError::Unsupported(format!("AES key of {} bytes", key.len())))?;
    let iv = [0u8; 16];
    cfb_mode::Decryptor::<Aes128>::new(&key.into(), &iv.into()).decrypt(data);
    Ok(())
}

/// Fills a buffer from the OS random generator.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), TpmError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| TpmError::Crypto("the OS random generator failed".into()))
}

/// The OS random generator as the `rand_core` RNG the `rsa` crate asks for (OAEP's seed).
struct OsRng;

#[derive(Debug)]
struct RngFailed;

impl std::fmt::Display for RngFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the OS random generator failed")
    }
}

impl std::error::Error for RngFailed {}

impl TryRng for OsRng {
    type Error = RngFailed;

    fn try_next_u32(&mut self) -> Result<u32, RngFailed> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, RngFailed> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), RngFailed> {
        SystemRandom::new().fill(dst).map_err(|_| RngFailed)
    }
}

impl TryCryptoRng for OsRng {}

/// RSA-OAEP with SHA-256 (hash and MGF1) and `label` + NUL as the OAEP label, as the TPM
/// uses to protect a seed ("IDENTITY" for credentials, "DUPLICATE" for duplication).
pub(crate) fn rsa_oaep_sha256_encrypt(
    modulus: &[u8],
    exponent: u32,
    label: &str,
    msg: &[u8],
) -> Result<Vec<u8>, TpmError> {
    let bits = (modulus.len() * 8) as u32;
    let n = BoxedUint::from_be_slice(modulus, bits)
        .map_err(|e| TpmError::Malformed(format!("RSA modulus: {e:?}")))?;
    let e = BoxedUint::from_be_slice(&u64::from(exponent).to_be_bytes(), 64)
        .map_err(|e| TpmError::Malformed(format!("RSA exponent: {e:?}")))?;
    let key =
        PublicKey::new(n, e).map_err(|e| TpmError::Unsupported(format!("RSA public key: {e}")))?;
    let mut l = label.as_bytes().to_vec();
    l.push(0);
    let padding = Oaep::<Sha256>::new_with_label(l);
    key.encrypt(&mut OsRng, padding, msg)
        .map_err(|e| TpmError::Crypto(format!("RSA-OAEP encryption: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_matches_its_definition_and_cuts_to_length() {
        let key = [0x11u8; 32];
        let out = kdfa_sha256(&key, "STORAGE", b"name", b"", 128);
        assert_eq!(out.len(), 16);
        let mut msg = Vec::new();
        msg.extend_from_slice(&1u32.to_be_bytes());
        msg.extend_from_slice(b"STORAGE\0name");
        msg.extend_from_slice(&128u32.to_be_bytes());
        assert_eq!(out[..], hmac_sha256(&key, &[&msg])[..16]);
        // 384 bits take two counter blocks; the first 32 bytes differ from the 256-bit output
        // because the bit count is part of every block.
        let long = kdfa_sha256(&key, "INTEGRITY", b"", b"", 384);
        assert_eq!(long.len(), 48);
        assert_ne!(
            long[..32],
            kdfa_sha256(&key, "INTEGRITY", b"", b"", 256)[..]
        );
    }

    #[test]
    fn hmac_sha256_matches_protocol_vector_v2() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64
            .decode("NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=")
            .unwrap();
        let mac = hmac_sha256(&key, &[b"sign ", b"this message"]);
        assert_eq!(
            b64.encode(mac),
            "8NJRMT83CcplGrAGaUVIUM/md5914KpWVNngSVoF9/M="
        );
    }

    #[test]
    fn cfb_round_trips_odd_lengths_and_rejects_other_key_sizes() {
        let key = [0x42u8; 16];
        let plain = b"hello world! this is my plaintext.".to_vec();
        let mut buf = plain.clone();
        aes128_cfb_encrypt(&key, &mut buf).unwrap();
        assert_ne!(buf, plain);
        aes128_cfb_decrypt(&key, &mut buf).unwrap();
        assert_eq!(buf, plain);
        assert!(aes128_cfb_encrypt(&[0u8; 24], &mut buf).is_err());
    }
}
