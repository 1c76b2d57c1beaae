//! `dps_config` credential setters: symmetric and group keys, X.509 from PEM and PKCS#12.
//! (Keys held outside the library: `keys.rs`.)

use std::ffi::c_char;

use super::config::{read_file, with_config};
use super::*;
use crate::config::ConfigBuilder;
use crate::credential::X509Credential;
use crate::error::Error;

/// Authenticates with an individual enrollment's symmetric key (base64, 16-64
/// bytes decoded). The key is copied and zeroized on free; SAS tokens are
/// signed from it. Replaces any previous credential.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8` or
/// `DPS_ERR_INVALID_KEY`. Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_symmetric_key(
    config: *mut dps_config,
    base64_key: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C string per the contract.
        b.symmetric_key(unsafe { str_arg(base64_key, "base64_key") }?)
            .map(drop)
    })
}

/// Authenticates with an enrollment group key (base64): the device key is
/// derived as HMAC-SHA256(group key, registration ID) when a client is made.
/// The group key is copied and zeroized on free. Replaces any previous
/// credential.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8` or
/// `DPS_ERR_INVALID_KEY`. Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_group_key(
    config: *mut dps_config,
    base64_group_key: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C string per the contract.
        b.group_key(unsafe { str_arg(base64_group_key, "base64_group_key") }?)
            .map(drop)
    })
}

/// Authenticates with an X.509 certificate chain and private key, in PEM.
///
/// - `cert_chain_pem`: the leaf first, then any intermediates; all are sent in
///   the TLS handshake.
/// - `key_pem`: PKCS#8, PKCS#1 RSA, SEC1 EC or encrypted PKCS#8.
/// - `key_password`: for an encrypted key, else NULL.
///
/// All are copied; the key is checked against the certificate here, before
/// any network traffic. Replaces any previous credential.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8`,
/// `DPS_ERR_INVALID_CERTIFICATE`, `DPS_ERR_INVALID_PRIVATE_KEY`,
/// `DPS_ERR_KEY_PASSWORD` or `DPS_ERR_KEY_MISMATCH`. Not thread-safe on the
/// same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_x509_pem(
    config: *mut dps_config,
    cert_chain_pem: *const c_char,
    key_pem: *const c_char,
    key_password: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // PEM is text: bytes that are not UTF-8 are most likely a DER (binary) file.
        let pem_text = |e: Error| match e.kind {
            ErrorKind::InvalidUtf8 => Error::new(
                ErrorKind::InvalidUtf8,
                format!(
                    "{}; PEM is text, so this is probably DER (binary): convert it with \
                     `openssl x509 -inform der` (certificate) or `openssl pkey -inform der` (key), \
                     or pass the files to dps_config_set_x509_pem_files",
                    e.message
                ),
            ),
            _ => e,
        };
        // SAFETY: C strings per the contract.
        let (cert, key, pw) = unsafe {
            (
                str_arg(cert_chain_pem, "cert_chain_pem").map_err(pem_text)?,
                str_arg(key_pem, "key_pem").map_err(pem_text)?,
                opt_str_arg(key_password, "key_password")?,
            )
        };
        let x = X509Credential::from_pem(cert.as_bytes(), key.as_bytes(), pw.map(str::as_bytes))?;
        b.x509(x);
        Ok(())
    })
}

/// Like `dps_config_set_x509_pem`, reading the PEM files at these paths
/// (read once, during this call). Also returns `DPS_ERR_FILE_READ`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_x509_pem_files(
    config: *mut dps_config,
    cert_chain_path: *const c_char,
    key_path: *const c_char,
    key_password: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C strings per the contract.
        let (cert, key, pw) = unsafe {
            (
                str_arg(cert_chain_path, "cert_chain_path")?,
                str_arg(key_path, "key_path")?,
                opt_str_arg(key_password, "key_password")?,
            )
        };
        let (cert, key) = (read_file(cert)?, zeroize::Zeroizing::new(read_file(key)?));
        b.x509(X509Credential::from_pem(
            &cert,
            &key,
            pw.map(str::as_bytes),
        )?);
        Ok(())
    })
}

/// Authenticates with a PKCS#12 (.pfx/.p12) file's certificate chain and key.
///
/// - `der`, `len`: the file's bytes; copied during the call.
/// - `password`: its password ("" for none); copied and not kept.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8`,
/// `DPS_ERR_INVALID_PKCS12`, `DPS_ERR_PKCS12_PASSWORD`,
/// `DPS_ERR_INVALID_PRIVATE_KEY`, `DPS_ERR_KEY_MISMATCH`, or
/// `DPS_ERR_UNSUPPORTED` when the library was built without the `pkcs12`
/// feature. Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_pkcs12(
    config: *mut dps_config,
    der: *const u8,
    len: usize,
    password: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        if der.is_null() {
            return Err(Error::new(ErrorKind::NullArgument, "der is NULL"));
        }
        // SAFETY: der is valid for len bytes per the contract; password is a C string.
        let (bytes, pw) = unsafe {
            (
                std::slice::from_raw_parts(der, len),
                str_arg(password, "password")?,
            )
        };
        set_pkcs12(b, bytes, pw)
    })
}

/// Like `dps_config_set_pkcs12`, reading the file at `path` (once, during
/// this call). Also returns `DPS_ERR_FILE_READ`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_pkcs12_file(
    config: *mut dps_config,
    path: *const c_char,
    password: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C strings per the contract.
        let (path, pw) = unsafe { (str_arg(path, "path")?, str_arg(password, "password")?) };
        let bytes = zeroize::Zeroizing::new(read_file(path)?);
        set_pkcs12(b, &bytes, pw)
    })
}

#[cfg(feature = "pkcs12")]
fn set_pkcs12(b: &mut ConfigBuilder, der: &[u8], password: &str) -> Result<(), Error> {
    b.x509(X509Credential::from_pkcs12(der, password)?);
    Ok(())
}

#[cfg(not(feature = "pkcs12"))]
fn set_pkcs12(_: &mut ConfigBuilder, _: &[u8], _: &str) -> Result<(), Error> {
    Err(Error::new(
        ErrorKind::Unsupported,
        "this build of dps has no PKCS#12 support (feature `pkcs12`)",
    ))
}
