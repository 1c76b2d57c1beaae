//! Keys the library never sees: an X.509 signing callback and a SAS HMAC callback.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::config::with_config;
use super::*;
use crate::credential::{DigestSigner, HmacKey, SignatureScheme, X509Credential};
use crate::error::{Error, ErrorKind};

/// Signature scheme `DPS_SIG_ECDSA_P256_SHA256`: ECDSA on P-256 over a 32-byte SHA-256 digest.
pub const DPS_SIG_ECDSA_P256_SHA256: u32 = 1;
/// Signature scheme `DPS_SIG_ECDSA_P384_SHA384`: ECDSA on P-384 over a 48-byte SHA-384 digest.
pub const DPS_SIG_ECDSA_P384_SHA384: u32 = 2;
/// Signature scheme `DPS_SIG_RSA_PKCS1_SHA256`: RSASSA-PKCS1-v1_5 over a 32-byte SHA-256
/// digest; the callback applies the EMSA-PKCS1-v1_5 encoding (the SHA-256 DigestInfo prefix).
pub const DPS_SIG_RSA_PKCS1_SHA256: u32 = 3;
/// Signature scheme `DPS_SIG_RSA_PSS_SHA256`: RSASSA-PSS over a 32-byte SHA-256 digest, with
/// MGF1-SHA-256 and a 32-byte salt.
pub const DPS_SIG_RSA_PSS_SHA256: u32 = 4;

/// The largest signature the library accepts from a signing callback (RSA-8192).
pub const DPS_SIGNATURE_MAX: usize = 1024;

/// Signs a digest with a private key the library never sees (a secure element, an HSM, a
/// signing service).
///
/// - `userdata`: the pointer given with the callback.
/// - `scheme`: one of `DPS_SIG_*`; decided by the certificate's key type (and, for RSA, by
///   what the server offers and what this callback was seen to produce).
/// - `digest`, `digest_len`: the hash of the message (32 bytes for SHA-256, 48 for SHA-384);
///   the library hashes, the callback only signs. Valid during the call only.
/// - `sig`, `sig_cap`: where to write the signature (`sig_cap` is `DPS_SIGNATURE_MAX`).
///   ECDSA: raw `r || s` (each big-endian, padded to the curve size: 64 bytes for P-256, 96 for
///   P-384) or a DER `ECDSA-Sig-Value`; the library accepts both and sends DER. RSA: the
///   signature, as long as the modulus.
/// - `sig_len`: receives the number of bytes written.
///
/// Return 0 on success, anything else on failure (the value is quoted in the error, whose
/// status is `DPS_ERR_SIGNER_FAILED`). Called on the thread that called the library function
/// (`dps_config_set_x509_signer` for the check, then `dps_register`, `dps_client_register`,
/// `dps_client_step`, `dps_client_lookup` for each TLS handshake). It may block (the deadline
/// keeps running). It is called concurrently when clients made from the same config run on
/// several threads. It must not call back into the client or config that is calling it (such
/// calls return `DPS_ERR_INVALID_STATE`); other library functions may be called.
pub type dps_sign_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        scheme: u32,
        digest: *const u8,
        digest_len: usize,
        sig: *mut u8,
        sig_cap: usize,
        sig_len: *mut usize,
    ) -> i32,
>;

/// Computes HMAC-SHA256 with a symmetric key the library never sees.
///
/// - `data`, `len`: the SAS string-to-sign (`<url-encoded resource>\n<expiry>`); valid during
///   the call only.
/// - `mac`: receives the 32-byte HMAC-SHA256.
///
/// Return 0 on success, anything else on failure (`DPS_ERR_SIGNER_FAILED`). Called on the
/// thread that called the library, once per SAS token (tokens are cached until close to
/// expiry) and by `dps_client_iot_hub_sas_token`. Threading and re-entrancy as
/// `dps_sign_callback`.
pub type dps_hmac_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, data: *const u8, len: usize, mac: *mut u8) -> i32,
>;

/// A C callback and its userdata.
struct Callback<F> {
    f: F,
    userdata: *mut c_void,
}

// SAFETY: the C caller promises (header docs) that the callback and its userdata may be used
// from any thread that calls the library with this config, concurrently.
unsafe impl<F: Send> Send for Callback<F> {}
// SAFETY: as above.
unsafe impl<F: Sync> Sync for Callback<F> {}

type SignFn =
    unsafe extern "C" fn(*mut c_void, u32, *const u8, usize, *mut u8, usize, *mut usize) -> i32;
type HmacFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut u8) -> i32;

fn scheme_code(s: SignatureScheme) -> u32 {
    match s {
        SignatureScheme::EcdsaP256Sha256 => DPS_SIG_ECDSA_P256_SHA256,
        SignatureScheme::EcdsaP384Sha384 => DPS_SIG_ECDSA_P384_SHA384,
        SignatureScheme::RsaPkcs1Sha256 => DPS_SIG_RSA_PKCS1_SHA256,
        SignatureScheme::RsaPssSha256 => DPS_SIG_RSA_PSS_SHA256,
    }
}

impl DigestSigner for Callback<SignFn> {
    fn sign_digest(&self, scheme: SignatureScheme, digest: &[u8]) -> Result<Vec<u8>, Error> {
        let mut sig = vec![0u8; DPS_SIGNATURE_MAX];
        let mut len = usize::MAX;
        // SAFETY: the callback's contract (header): digest valid for digest_len, sig writable
        // for sig_cap bytes, sig_len writable.
        let rc = unsafe {
            (self.f)(
                self.userdata,
                scheme_code(scheme),
                digest.as_ptr(),
                digest.len(),
                sig.as_mut_ptr(),
                sig.len(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(Error::new(
                ErrorKind::SignerFailed,
                format!("the callback returned {rc}"),
            ));
        }
        if len == 0 || len > sig.len() {
            return Err(Error::new(
                ErrorKind::SignerFailed,
                if len == usize::MAX {
                    "the callback returned 0 but did not set sig_len".to_string()
                } else {
                    format!(
                        "the callback reported a {len}-byte signature (1..={DPS_SIGNATURE_MAX} allowed)"
                    )
                },
            ));
        }
        sig.truncate(len);
        Ok(sig)
    }

    fn describe(&self) -> String {
        "(C signing callback)".into()
    }
}

impl HmacKey for Callback<HmacFn> {
    fn hmac_sha256(&self, data: &[u8]) -> Result<[u8; 32], Error> {
        let mut mac = [0u8; 32];
        // SAFETY: the callback's contract: data valid for len, mac writable for 32 bytes.
        let rc = unsafe { (self.f)(self.userdata, data.as_ptr(), data.len(), mac.as_mut_ptr()) };
        if rc != 0 {
            return Err(Error::new(
                ErrorKind::SignerFailed,
                format!("the callback returned {rc}"),
            ));
        }
        Ok(mac)
    }

    fn describe(&self) -> String {
        "(C HMAC callback)".into()
    }
}

/// Authenticates with an X.509 certificate chain whose private key is held outside the
/// library, behind `callback`.
///
/// - `cert_chain_pem`: the device certificate first, then intermediates (PEM); copied.
/// - `callback`, `userdata`: see `dps_sign_callback`. Both must stay valid until the config
///   and every client made from it are freed (clients and `dps_register` keep a reference).
///
/// Before returning, the library asks the callback for one signature over a fresh random
/// message and verifies it against the leaf certificate's public key: a callback that does not
/// hold the certificate's key gives `DPS_ERR_KEY_MISMATCH` here, not a TLS alert later. For RSA
/// both PSS and PKCS#1 v1.5 are tried; those the callback produces are offered in TLS.
/// Replaces any previous credential. The registration ID defaults to the leaf's CN.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT` (config, chain or callback NULL),
/// `DPS_ERR_INVALID_UTF8`, `DPS_ERR_INVALID_CERTIFICATE`, `DPS_ERR_INVALID_PRIVATE_KEY`
/// (a key type external signers do not support), `DPS_ERR_KEY_MISMATCH` or
/// `DPS_ERR_SIGNER_FAILED` (the callback failed or returned a malformed signature); the
/// message is in `dps_config_last_error`. Not thread-safe on the same config; the callback
/// is called on this thread during the call.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_x509_signer(
    config: *mut dps_config,
    cert_chain_pem: *const c_char,
    callback: dps_sign_callback,
    userdata: *mut c_void,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C string per the contract.
        let cert = unsafe { str_arg(cert_chain_pem, "cert_chain_pem")? };
        let f = callback.ok_or_else(|| Error::new(ErrorKind::NullArgument, "callback is NULL"))?;
        let signer = Arc::new(Callback::<SignFn> { f, userdata });
        b.x509(X509Credential::from_signer(cert.as_bytes(), signer)?);
        Ok(())
    })
}

/// Authenticates with a symmetric key held outside the library: every SAS signature is
/// computed by `callback` (see `dps_hmac_callback`). For an individual enrollment the
/// callback holds the enrollment key; for a group enrollment it holds the device key derived
/// at the factory (`dps_derive_device_key`). `userdata` and the callback must stay valid until
/// the config and every client made from it are freed. Nothing is called during this function.
/// `dps_client_connection_string` cannot hold such a key (`DPS_ERR_UNSUPPORTED`); use
/// `dps_client_iot_hub_sas_token`. Replaces any previous credential.
///
/// Returns `DPS_OK` or `DPS_ERR_NULL_ARGUMENT`. Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_hmac_callback(
    config: *mut dps_config,
    callback: dps_hmac_callback,
    userdata: *mut c_void,
) -> dps_status {
    with_config(config, |b| {
        let f = callback.ok_or_else(|| Error::new(ErrorKind::NullArgument, "callback is NULL"))?;
        b.hmac_key(Arc::new(Callback::<HmacFn> { f, userdata }));
        Ok(())
    })
}

/// Parses a PKCS#11 URI and applies the module path and PIN given beside it. The PIN copy
/// lives in the URI (zeroized on drop) and never appears in a message.
#[cfg(feature = "pkcs11")]
fn pkcs11_uri(
    key_uri: &str,
    module_path: Option<&str>,
    pin: Option<&str>,
) -> Result<crate::pkcs11::Pkcs11Uri, Error> {
    let mut uri = crate::pkcs11::Pkcs11Uri::parse(key_uri)?;
    if let Some(m) = module_path {
        uri.set_module_path(m);
    }
    if let Some(p) = pin {
        uri.set_pin(p);
    }
    Ok(uri)
}

#[cfg(not(feature = "pkcs11"))]
fn no_pkcs11() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "PKCS#11 is not included in this build (cargo feature `pkcs11`)",
    )
}

/// Authenticates with an X.509 certificate whose private key is in a PKCS#11 token (an HSM,
/// a smart card, SoftHSM, tpm2-pkcs11).
///
/// - `key_uri`: an RFC 7512 URI naming the private key, e.g.
///   `pkcs11:token=dps;object=device-key;type=private`; it may carry `?module-path=...` and
///   `pin-value=...` or `pin-source=<file>`.
/// - `cert_chain_pem`: the device certificate first, then intermediates (PEM), or NULL to use
///   the certificate stored in the token with the key's label and id (then the chain is that
///   certificate alone).
/// - `module_path`: the PKCS#11 module (shared library) to load, or NULL to use the URI's
///   `module-path`.
/// - `pin`: the user PIN, or NULL to use the URI's (`pin-value`, `pin-source`); a token that
///   needs no login takes neither.
///
/// Every string is copied (the PIN into memory zeroized when the config and its clients are
/// freed); the caller keeps ownership. No message ever contains the PIN. The module is loaded
/// and `C_Initialize`d once per process and never finalised; the config holds one session,
/// logged in during this call, shared by the clients made from it (calls are serialised on
/// it; the library reopens it and logs in again after the token was removed or reset).
/// Before returning, one signature made by the token is verified against the certificate,
/// as in `dps_config_set_x509_signer`. Replaces any previous credential; the registration
/// ID defaults to the leaf's CN.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT` (config or key_uri NULL),
/// `DPS_ERR_INVALID_UTF8`, `DPS_ERR_INVALID_ARGUMENT` (malformed URI),
/// `DPS_ERR_PKCS11_MODULE` (no module path, missing file, not a PKCS#11 module),
/// `DPS_ERR_PKCS11_PIN` (PIN missing, wrong or locked), `DPS_ERR_PKCS11_OBJECT` (no token or
/// object matches, several do, the private key is missing, or NULL chain and no certificate
/// in the token), `DPS_ERR_FILE_READ` (`pin-source`), `DPS_ERR_INVALID_CERTIFICATE`,
/// `DPS_ERR_INVALID_PRIVATE_KEY` (unsupported key type), `DPS_ERR_KEY_MISMATCH`,
/// `DPS_ERR_SIGNER_FAILED`, or `DPS_ERR_UNSUPPORTED` when the library was built without the
/// `pkcs11` feature. The message is in `dps_config_last_error`. Not thread-safe on the same
/// config; may block on the token.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_pkcs11_x509(
    config: *mut dps_config,
    key_uri: *const c_char,
    cert_chain_pem: *const c_char,
    module_path: *const c_char,
    pin: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C strings per the contract.
        let key_uri = unsafe { str_arg(key_uri, "key_uri")? };
        // SAFETY: as above; NULL allowed.
        let chain = unsafe { opt_str_arg(cert_chain_pem, "cert_chain_pem")? };
        // SAFETY: as above.
        let module = unsafe { opt_str_arg(module_path, "module_path")? };
        // SAFETY: as above. Only borrowed: the URI keeps a zeroized copy.
        let pin = unsafe { opt_str_arg(pin, "pin")? };
        #[cfg(feature = "pkcs11")]
        {
            let uri = pkcs11_uri(key_uri, module, pin)?;
            b.x509(crate::pkcs11::x509_credential(
                &uri,
                chain.map(str::as_bytes),
            )?);
            Ok(())
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            let _ = (b, key_uri, chain, module, pin);
            Err(no_pkcs11())
        }
    })
}

/// Authenticates with a symmetric key held in a PKCS#11 token as a generic secret: every SAS
/// signature is computed by the token with `CKM_SHA256_HMAC`. For an individual enrollment
/// the token holds the enrollment key; for a group enrollment the device key derived at the
/// factory.
///
/// `key_uri`, `module_path` and `pin` as in `dps_config_set_pkcs11_x509` (copied, the PIN
/// zeroized and never in a message). The session is opened and logged in during this call and
/// the key is found, so a bad URI, module or PIN is reported here. `dps_client_connection_string`
/// cannot hold such a key (`DPS_ERR_UNSUPPORTED`); use `dps_client_iot_hub_sas_token`.
/// Replaces any previous credential.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8`,
/// `DPS_ERR_INVALID_ARGUMENT`, `DPS_ERR_PKCS11_MODULE`, `DPS_ERR_PKCS11_PIN`,
/// `DPS_ERR_PKCS11_OBJECT`, `DPS_ERR_FILE_READ`, `DPS_ERR_INVALID_KEY` (not a secret usable
/// for HMAC), `DPS_ERR_SIGNER_FAILED`, or `DPS_ERR_UNSUPPORTED` without the `pkcs11` feature.
/// Not thread-safe on the same config; may block on the token.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_pkcs11_hmac(
    config: *mut dps_config,
    key_uri: *const c_char,
    module_path: *const c_char,
    pin: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C strings per the contract.
        let key_uri = unsafe { str_arg(key_uri, "key_uri")? };
        // SAFETY: as above; NULL allowed.
        let module = unsafe { opt_str_arg(module_path, "module_path")? };
        // SAFETY: as above. Only borrowed: the URI keeps a zeroized copy.
        let pin = unsafe { opt_str_arg(pin, "pin")? };
        #[cfg(feature = "pkcs11")]
        {
            let uri = pkcs11_uri(key_uri, module, pin)?;
            b.hmac_key(Arc::new(crate::pkcs11::Pkcs11HmacKey::open(&uri)?));
            Ok(())
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            let _ = (b, key_uri, module, pin);
            Err(no_pkcs11())
        }
    })
}

/// **Experimental.** Sends a certificate signing request (as `dps_config_set_csr`) whose key
/// is held by a PKCS#11 token: the CSR's digest is signed by the token (ECDSA P-256/P-384 or
/// RSA 2048-8192, `CKM_ECDSA` / `CKM_RSA_PKCS`), the key never leaves it, and
/// `dps_registration_issued_key_pem` stays NULL. `key_uri`, `module_path` and `pin` as in
/// `dps_config_set_pkcs11_x509` (copied, the PIN zeroized and never in a message); the
/// session is opened and logged in during this call and the token's public key read. The
/// CSR is made, and its signature checked against that public key, when the client is
/// created from this config. The onboarding credential is set separately (any kind).
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8`,
/// `DPS_ERR_INVALID_ARGUMENT`, `DPS_ERR_PKCS11_MODULE`, `DPS_ERR_PKCS11_PIN`,
/// `DPS_ERR_PKCS11_OBJECT`, `DPS_ERR_FILE_READ`, `DPS_ERR_INVALID_PRIVATE_KEY` (unsupported
/// key type), `DPS_ERR_SIGNER_FAILED`, or `DPS_ERR_UNSUPPORTED` without the `pkcs11` feature.
/// Not thread-safe on the same config; may block on the token.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_csr_pkcs11(
    config: *mut dps_config,
    key_uri: *const c_char,
    module_path: *const c_char,
    pin: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C strings per the contract.
        let key_uri = unsafe { str_arg(key_uri, "key_uri")? };
        // SAFETY: as above; NULL allowed.
        let module = unsafe { opt_str_arg(module_path, "module_path")? };
        // SAFETY: as above. Only borrowed: the URI keeps a zeroized copy.
        let pin = unsafe { opt_str_arg(pin, "pin")? };
        #[cfg(feature = "pkcs11")]
        {
            let uri = pkcs11_uri(key_uri, module, pin)?;
            let signer = crate::pkcs11::Pkcs11Signer::open(&uri)?;
            let spki = signer.public_key()?.spki_der();
            b.csr(crate::credential::CsrKey::from_signer(
                Arc::new(signer),
                &spki,
            )?);
            Ok(())
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            let _ = (b, key_uri, module, pin);
            Err(no_pkcs11())
        }
    })
}
