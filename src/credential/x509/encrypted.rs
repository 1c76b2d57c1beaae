//! Password-encrypted PKCS#8 (`ENCRYPTED PRIVATE KEY`, feature `encrypted-keys`).
use rustls_pki_types::PrivateKeyDer;
use zeroize::Zeroizing;

use super::CredentialError;

#[cfg(not(feature = "encrypted-keys"))]
pub(super) fn decrypt_pkcs8(
    _body: &[&[u8]],
    _password: &[u8],
) -> Result<Zeroizing<PrivateKeyDer<'static>>, CredentialError> {
    Err(CredentialError::UnsupportedKey(
        "ENCRYPTED PRIVATE KEY: this library was built without the encrypted-keys feature".into(),
    ))
}

/// Upper bounds on the key-derivation cost accepted from a key file, so a hostile file cannot
/// stall or exhaust the device. OpenSSL writes 2048 PBKDF2 iterations, and scrypt
/// N = 16384, r = 8, p = 1 (16 MiB); it refuses scrypt above 32 MiB by default.
#[cfg(feature = "encrypted-keys")]
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Bytes of scrypt working memory (128 * N * r).
#[cfg(feature = "encrypted-keys")]
const MAX_SCRYPT_MEMORY: u64 = 64 * 1024 * 1024;
#[cfg(feature = "encrypted-keys")]
const MAX_SCRYPT_PARALLELIZATION: u16 = 16;

#[cfg(feature = "encrypted-keys")]
pub(super) fn decrypt_pkcs8(
    body: &[&[u8]],
    password: &[u8],
) -> Result<Zeroizing<PrivateKeyDer<'static>>, CredentialError> {
    use base64::Engine as _;
    use pkcs8::pkcs5::{self, EncryptionScheme, pbes2};

    let b64: Vec<u8> = body
        .iter()
        .flat_map(|l| l.iter().copied())
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .map_err(|_| CredentialError::BadPrivateKey("invalid base64 in a PEM block".into()))?;
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).map_err(|_| {
        CredentialError::BadPrivateKey("malformed ENCRYPTED PRIVATE KEY structure".into())
    })?;

    match &info.encryption_algorithm {
        EncryptionScheme::Pbes2(params) => match &params.kdf {
            pbes2::Kdf::Pbkdf2(p) if p.iteration_count > MAX_PBKDF2_ITERATIONS => {
                return Err(CredentialError::UnsupportedKey(format!(
                    "PBKDF2 iteration count {} is above the limit of {MAX_PBKDF2_ITERATIONS}",
                    p.iteration_count
                )));
            }
            pbes2::Kdf::Scrypt(p) => {
                let n = p.cost_parameter;
                let r = u64::from(p.block_size);
                if !n.is_power_of_two() || r == 0 || p.parallelization == 0 {
                    return Err(CredentialError::BadPrivateKey(
                        "invalid scrypt parameters".into(),
                    ));
                }
                if n.saturating_mul(r).saturating_mul(128) > MAX_SCRYPT_MEMORY
                    || p.parallelization > MAX_SCRYPT_PARALLELIZATION
                {
                    return Err(CredentialError::UnsupportedKey(format!(
                        "scrypt parameters N={n} r={r} p={} exceed the limits \
                         ({MAX_SCRYPT_MEMORY} bytes, p <= {MAX_SCRYPT_PARALLELIZATION})",
                        p.parallelization
                    )));
                }
            }
            _ => {}
        },
        EncryptionScheme::Pbes1(_) => {
            return Err(CredentialError::UnsupportedKey(
                "PBES1 key encryption (e.g. PBE-SHA1-3DES); re-encrypt with \
                 `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
                    .into(),
            ));
        }
        _ => {
            return Err(CredentialError::UnsupportedKey(
                "unknown key encryption scheme".into(),
            ));
        }
    }

    let doc = info.decrypt(password).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::DecryptFailed) => {
            CredentialError::WrongKeyPassword
        }
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::UnsupportedAlgorithm { oid }) => {
            CredentialError::UnsupportedKey(format!("key encryption algorithm {oid}"))
        }
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::NoPbes1CryptSupport) => {
            CredentialError::UnsupportedKey("PBES1 key encryption".into())
        }
        pkcs8::Error::EncryptedPrivateKey(e) => {
            CredentialError::BadPrivateKey(format!("ENCRYPTED PRIVATE KEY: {e}"))
        }
        // The ciphertext decrypted (valid padding) but is not DER: a wrong password.
        _ => CredentialError::WrongKeyPassword,
    })?;
    // `doc` zeroizes itself on drop; the copy handed out is held in `Zeroizing`.
    Ok(Zeroizing::new(PrivateKeyDer::Pkcs8(
        doc.as_bytes().to_vec().into(),
    )))
}
