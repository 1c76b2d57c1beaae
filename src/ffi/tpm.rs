//! TPM attestation (PROTOCOL.md 5.4): the config setter and the enrollment data. Present in
//! every build; without the `tpm` feature both return `DPS_ERR_UNSUPPORTED`.

use std::ffi::c_char;

use super::config::with_config;
use super::*;
use crate::error::{Error, ErrorKind};

/// `dps_config_set_tpm` / `dps_tpm_info` flag: create the EK and SRK from the standard templates
/// (TCG EK profile RSA-2048, TCG SRK template) and persist them when their handles are empty.
pub const DPS_TPM_CREATE_MISSING: u32 = 1;

/// Length of the EK-derived registration ID (lowercase base32 of SHA-256, without padding).
pub const DPS_TPM_REGISTRATION_ID_LEN: usize = 52;

/// The TCTI and the handles as [`crate::tpm::TpmOptions`].
#[cfg(feature = "tpm")]
fn options(
    tcti: Option<&str>,
    ek_handle: u32,
    srk_handle: u32,
    identity_handle: u32,
    flags: u32,
) -> Result<crate::tpm::TpmOptions, Error> {
    if flags & !DPS_TPM_CREATE_MISSING != 0 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("unknown TPM flags {flags:#x} (only DPS_TPM_CREATE_MISSING = 1 is defined)"),
        ));
    }
    let mut o = crate::tpm::TpmOptions::default();
    if let Some(t) = tcti {
        o.tcti = t.to_owned();
    }
    for (value, slot) in [
        (ek_handle, &mut o.ek_handle),
        (srk_handle, &mut o.srk_handle),
        (identity_handle, &mut o.identity_handle),
    ] {
        if value != 0 {
            *slot = value;
        }
    }
    o.create_missing = flags & DPS_TPM_CREATE_MISSING != 0;
    Ok(o)
}

#[cfg(not(feature = "tpm"))]
fn unsupported() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "this library was built without the tpm feature (TPM attestation)",
    )
}

/// Authenticates with TPM attestation: opens the TPM now (reading its EK and SRK), and
/// answers DPS's challenge during each registration (ActivateCredential, Import, EvictControl
/// of the identity key), signing SAS tokens with TPM2_HMAC. After an `assigned` registration the
/// identity handle holds the IoT Hub key: `dps_client_iot_hub_sas_token` signs with it;
/// `dps_client_connection_string` gives `DPS_ERR_UNSUPPORTED` (the key never leaves the TPM).
///
/// - `tcti`: the TPM, as a tpm2-tss TCTI string: `device:/dev/tpmrm0` (NULL: this default),
///   `swtpm:host=H,port=P`, `mssim:host=H,port=P`, `tabrmd[:bus_type=session|system]`. Copied.
/// - `ek_handle`, `srk_handle`, `identity_handle`: persistent handles; 0 for the defaults
///   `0x81010001`, `0x81000001`, `0x81000100`. The object at `identity_handle` is replaced
///   by each registration.
/// - `flags`: 0, or `DPS_TPM_CREATE_MISSING`.
///
/// When the config has no registration ID (NULL in `dps_config_new`), the one derived from the
/// EK is used. Replaces any previous credential.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8`,
/// `DPS_ERR_INVALID_ARGUMENT` (a malformed TCTI, a non-persistent or repeated handle, unknown
/// flags), `DPS_ERR_TPM` (the TPM is unreachable, or the EK/SRK is missing without
/// `DPS_TPM_CREATE_MISSING`; the message carries the TPM response code),
/// `DPS_ERR_DEADLINE_EXCEEDED` (no answer within 60 s) or `DPS_ERR_UNSUPPORTED` (built without
/// the `tpm` feature); the message is in `dps_config_last_error`. Blocks while the TPM
/// answers. Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_tpm(
    config: *mut dps_config,
    tcti: *const c_char,
    ek_handle: u32,
    srk_handle: u32,
    identity_handle: u32,
    flags: u32,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: NULL or a C string per the contract.
        let tcti = unsafe { opt_str_arg(tcti, "tcti")? };
        #[cfg(feature = "tpm")]
        {
            let o = options(tcti, ek_handle, srk_handle, identity_handle, flags)?;
            let tpm = crate::tpm::Tpm::open(&o)?;
            b.tpm(std::sync::Arc::new(tpm));
            Ok(())
        }
        #[cfg(not(feature = "tpm"))]
        {
            let _ = (b, tcti, ek_handle, srk_handle, identity_handle, flags);
            Err(unsupported())
        }
    })
}

/// Reads what an Azure portal individual enrollment ("Trusted Platform Module (TPM)") takes:
/// the EK-derived registration ID and the endorsement key (base64 of the EK's TPM2B_PUBLIC).
///
/// - `tcti`, `ek_handle`, `srk_handle`, `flags`: as in `dps_config_set_tpm` (the SRK is read
///   too, and created with `DPS_TPM_CREATE_MISSING`, so the TPM is ready to register).
/// - `registration_id`, `registration_id_cap`: receives the 52-character ID and a NUL (53
///   bytes, `DPS_TPM_REGISTRATION_ID_LEN + 1`).
/// - `endorsement_key`, `endorsement_key_cap`: receives the base64 EK and a NUL (about 420
///   characters for an RSA-2048 EK).
/// - `endorsement_key_len`: if not NULL, receives the base64 EK's length (without the NUL), also
///   when a buffer is too small.
/// - `error_out`: may be NULL; on failure, receives the error detail (free with
///   `dps_error_free`).
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT` (a buffer is NULL), `DPS_ERR_BUFFER_TOO_SMALL`,
/// `DPS_ERR_INVALID_UTF8`, `DPS_ERR_INVALID_ARGUMENT`, `DPS_ERR_TPM`,
/// `DPS_ERR_DEADLINE_EXCEEDED` or `DPS_ERR_UNSUPPORTED` (built without the `tpm` feature).
/// Blocks while the TPM answers. Thread-safe.
#[unsafe(no_mangle)]
#[must_use]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn dps_tpm_info(
    tcti: *const c_char,
    ek_handle: u32,
    srk_handle: u32,
    flags: u32,
    registration_id: *mut c_char,
    registration_id_cap: usize,
    endorsement_key: *mut c_char,
    endorsement_key_cap: usize,
    endorsement_key_len: *mut usize,
    error_out: *mut *mut dps_error,
) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        let info = (|| {
            // SAFETY: NULL or a C string per the contract.
            let tcti = unsafe { opt_str_arg(tcti, "tcti")? };
            #[cfg(feature = "tpm")]
            {
                let o = options(tcti, ek_handle, srk_handle, 0, flags)?;
                crate::tpm::tpm_info(&o)
            }
            #[cfg(not(feature = "tpm"))]
            {
                let _ = (tcti, ek_handle, srk_handle, flags);
                Err::<Info, Error>(unsupported())
            }
        })();
        #[cfg(feature = "tpm")]
        let info = info.map(|i| Info {
            registration_id: i.registration_id,
            endorsement_key: i.endorsement_key,
        });
        let info = match info {
            Ok(i) => i,
            // SAFETY: error_out is NULL or writable.
            Err(e) => return unsafe { report(e, error_out) },
        };
        // SAFETY: buffers and lengths per the contract.
        let ek = unsafe {
            write_str_out(
                &info.endorsement_key,
                endorsement_key,
                endorsement_key_cap,
                endorsement_key_len,
            )
        };
        // SAFETY: as above; no length out-pointer for the fixed-length ID.
        let id = unsafe {
            write_str_out(
                &info.registration_id,
                registration_id,
                registration_id_cap,
                std::ptr::null_mut(),
            )
        };
        let status = if id != DPS_OK { id } else { ek };
        if status != DPS_OK {
            let e = Error::new(
                ErrorKind::from_code(status).unwrap_or(ErrorKind::BufferTooSmall),
                format!(
                    "dps_tpm_info needs {} bytes for the registration ID and {} for the \
                     endorsement key",
                    info.registration_id.len() + 1,
                    info.endorsement_key.len() + 1
                ),
            );
            // SAFETY: error_out is NULL or writable.
            return unsafe { report(e, error_out) };
        }
        DPS_OK
    })
}

/// What `dps_tpm_info` writes out.
struct Info {
    registration_id: String,
    endorsement_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> *mut dps_config {
        let mut cfg = std::ptr::null_mut();
        // SAFETY: valid C strings and out pointer.
        let s = unsafe { dps_config_new(c"0ne00000001".as_ptr(), std::ptr::null(), &mut cfg) };
        assert_eq!(s, DPS_OK);
        cfg
    }

    #[cfg(not(feature = "tpm"))]
    #[test]
    fn without_the_feature_both_functions_are_unsupported() {
        let cfg = config();
        // SAFETY: a live config; NULL TCTI is allowed.
        let s = unsafe { dps_config_set_tpm(cfg, std::ptr::null(), 0, 0, 0, 0) };
        assert_eq!(s, DPS_ERR_UNSUPPORTED);
        let mut id = [0 as c_char; 53];
        let mut ek = [0 as c_char; 1024];
        let mut err = std::ptr::null_mut();
        // SAFETY: buffers of the given sizes.
        let s = unsafe {
            dps_tpm_info(
                std::ptr::null(),
                0,
                0,
                0,
                id.as_mut_ptr(),
                id.len(),
                ek.as_mut_ptr(),
                ek.len(),
                std::ptr::null_mut(),
                &mut err,
            )
        };
        assert_eq!(s, DPS_ERR_UNSUPPORTED);
        assert!(!err.is_null());
        // SAFETY: objects made by the library.
        unsafe {
            dps_error_free(err);
            dps_config_free(cfg);
        }
    }

    #[cfg(feature = "tpm")]
    #[test]
    fn bad_flags_handles_and_tctis_are_invalid_arguments() {
        let cfg = config();
        for (tcti, ek, flags) in [
            (c"device:/dev/tpmrm0", 0, 2),
            (c"device:/dev/tpmrm0", 0x0100_0000, 0),
            (c"carrier-pigeon:x", 0, 0),
        ] {
            // SAFETY: a live config and a C string.
            let s = unsafe { dps_config_set_tpm(cfg, tcti.as_ptr(), ek, 0, 0, flags) };
            assert_eq!(s, DPS_ERR_INVALID_ARGUMENT, "{tcti:?} {ek:#x} {flags}");
        }
        // SAFETY: made by dps_config_new.
        unsafe { dps_config_free(cfg) };
    }
}
