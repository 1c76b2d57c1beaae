//! RSA key generation for a CSR (cargo feature `rsa-keygen`): ring cannot generate RSA keys,
//! so the RustCrypto `rsa` crate finds the primes, with ring's `SystemRandom` as the random
//! source. Only generation happens here: the key is handed to ring as PKCS#8 and ring signs
//! with it (the CSR, later the TLS handshake), so none of `rsa`'s private-key operations
//! (decryption, signing: RUSTSEC-2023-0071 concerns their timing) is used.

use ring::rand::{SecureRandom, SystemRandom};
use rsa_next::pkcs8::EncodePrivateKey;
use rsa_next::rand_core::{TryCryptoRng, TryRng};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

/// A new RSA key of `bits` bits (public exponent 65537) as PKCS#8 DER.
pub(super) fn generate_pkcs8(bits: usize) -> Result<Zeroizing<Vec<u8>>> {
    let failed = |what: &str| {
        Error::new(
            ErrorKind::Internal,
            format!("RSA key generation failed: {what}"),
        )
    };
    // PrivateKey zeroizes its primes and exponents on drop.
    let key = rsa_next::PrivateKey::new(&mut Ring, bits).map_err(|e| failed(&e.to_string()))?;
    let doc = key
        .to_pkcs8_der()
        .map_err(|_| failed("the key could not be encoded as PKCS#8"))?;
    // SecretDocument zeroizes its buffer on drop.
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

/// ring's system random generator as the `rand_core` generator `rsa` asks for.
struct Ring;

#[derive(Debug)]
struct RngFailed;

impl core::fmt::Display for RngFailed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the system random generator failed")
    }
}

impl core::error::Error for RngFailed {}

impl TryRng for Ring {
    type Error = RngFailed;

    fn try_next_u32(&mut self) -> core::result::Result<u32, RngFailed> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> core::result::Result<u64, RngFailed> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> core::result::Result<(), RngFailed> {
        SystemRandom::new().fill(dst).map_err(|_| RngFailed)
    }
}

impl TryCryptoRng for Ring {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_rsa_keys_load_in_ring_and_differ() {
        let a = generate_pkcs8(2048).unwrap();
        let b = generate_pkcs8(2048).unwrap();
        assert_ne!(*a, *b);
        let pair = ring::rsa::KeyPair::from_pkcs8(&a).expect("ring takes the key");
        assert_eq!(pair.public().modulus_len(), 256);
    }
}
