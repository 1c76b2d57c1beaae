//! Results handed to C: `dps_registration`, `dps_error`, and the standalone
//! helpers (`dps_derive_device_key`, versions).

use std::ffi::{CString, c_char};

use super::*;
use crate::error::Error;
use crate::protocol::wire::{Registration, RegistrationStatus};

/// The outcome of a registration or status lookup. Immutable; all strings
/// it returns are borrowed from it and valid until `dps_registration_free`.
///
/// Methods: `dps_registration_status`, `_registration_id`, `_assigned_hub`,
/// `_device_id`, `_substatus`, `_created_at`, `_last_updated_at`, `_etag`,
/// `_payload_json`, `_enrollment_group_id`, `_error_code`, `_error_message`,
/// `_issued_certificate_count`, `_issued_certificate`, `_issued_chain_pem`,
/// `_issued_key_pem`, `_free`.
/// Thread safety: may be read from any number of threads at once.
pub struct dps_registration {
    pub(crate) inner: Registration,
    strings: [Option<CString>; 10],
    certs: Vec<CString>,
    chain_pem: Option<CString>,
    /// NUL-terminated PEM (no interior NUL), zeroized on free.
    key_pem: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl dps_registration {
    pub(crate) fn new(inner: Registration) -> Box<Self> {
        let c = |s: &Option<String>| s.as_deref().map(cstring);
        let strings = [
            c(&inner.registration_id),
            c(&inner.assigned_hub),
            c(&inner.device_id),
            c(&inner.substatus),
            c(&inner.created_date_time_utc),
            c(&inner.last_updated_date_time_utc),
            c(&inner.etag),
            c(&inner.payload_json),
            c(&inner.enrollment_group_id),
            c(&inner.error_message),
        ];
        let certs = inner
            .issued_certificate_chain
            .iter()
            .map(|s| cstring(s))
            .collect();
        let chain_pem = inner.issued_certificate_chain_pem.as_deref().map(cstring);
        let key_pem = inner.issued_private_key_pem.as_ref().map(|k| {
            let mut v = zeroize::Zeroizing::new(Vec::with_capacity(k.expose().len() + 1));
            v.extend(k.expose().bytes().filter(|&b| b != 0));
            v.push(0);
            v
        });
        Box::new(dps_registration {
            inner,
            strings,
            certs,
            chain_pem,
            key_pem,
        })
    }
}

/// Registration status `unassigned` (not seen in normal flows).
pub const DPS_REGISTRATION_UNASSIGNED: u32 = 0;
/// Registration status `assigning`.
pub const DPS_REGISTRATION_ASSIGNING: u32 = 1;
/// Registration status `assigned`.
pub const DPS_REGISTRATION_ASSIGNED: u32 = 2;
/// Registration status `failed`.
pub const DPS_REGISTRATION_FAILED: u32 = 3;
/// Registration status `disabled`.
pub const DPS_REGISTRATION_DISABLED: u32 = 4;

fn field(reg: *const dps_registration, i: usize) -> *const c_char {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or a live registration.
        unsafe { reg.as_ref() }
            .and_then(|r| r.strings.get(i).and_then(Option::as_ref))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// The status: `DPS_REGISTRATION_ASSIGNED` after a successful registration;
/// a lookup may also give `_ASSIGNING`, `_FAILED` or `_DISABLED`. Returns
/// `DPS_REGISTRATION_UNASSIGNED` for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_status(reg: *const dps_registration) -> u32 {
    guard(DPS_REGISTRATION_UNASSIGNED, || {
        // SAFETY: NULL or a live registration.
        match unsafe { reg.as_ref() }.and_then(|r| r.inner.status) {
            Some(RegistrationStatus::Assigning) => DPS_REGISTRATION_ASSIGNING,
            Some(RegistrationStatus::Assigned) => DPS_REGISTRATION_ASSIGNED,
            Some(RegistrationStatus::Failed) => DPS_REGISTRATION_FAILED,
            Some(RegistrationStatus::Disabled) => DPS_REGISTRATION_DISABLED,
            Some(RegistrationStatus::Unassigned) | None => DPS_REGISTRATION_UNASSIGNED,
        }
    })
}

/// The registration ID echoed by DPS; NULL if absent or `reg` is NULL. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_registration_id(
    reg: *const dps_registration,
) -> *const c_char {
    field(reg, 0)
}

/// The assigned IoT hub host name (for example `myhub.azure-devices.net`);
/// NULL if absent or `reg` is NULL. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_assigned_hub(
    reg: *const dps_registration,
) -> *const c_char {
    field(reg, 1)
}

/// The device ID in the assigned hub; NULL if absent or `reg` is NULL. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_device_id(reg: *const dps_registration) -> *const c_char {
    field(reg, 2)
}

/// The substatus: `initialAssignment`, `deviceDataMigrated`,
/// `deviceDataReset` or `reprovisionedToInitialAssignment`; NULL if absent. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_substatus(reg: *const dps_registration) -> *const c_char {
    field(reg, 3)
}

/// `createdDateTimeUtc` as sent by DPS (ISO 8601); NULL if absent. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_created_at(
    reg: *const dps_registration,
) -> *const c_char {
    field(reg, 4)
}

/// `lastUpdatedDateTimeUtc` as sent by DPS; NULL if absent. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_last_updated_at(
    reg: *const dps_registration,
) -> *const c_char {
    field(reg, 5)
}

/// The opaque etag; NULL if absent. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_etag(reg: *const dps_registration) -> *const c_char {
    field(reg, 6)
}

/// The payload returned by a custom allocation policy, as compact JSON object
/// text; NULL if none. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_payload_json(
    reg: *const dps_registration,
) -> *const c_char {
    field(reg, 7)
}

/// The enrollment group that matched, if DPS names it; NULL otherwise. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_enrollment_group_id(
    reg: *const dps_registration,
) -> *const c_char {
    field(reg, 8)
}

/// DPS `errorMessage` of a `failed` lookup result; NULL otherwise. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_error_message(
    reg: *const dps_registration,
) -> *const c_char {
    field(reg, 9)
}

/// DPS `errorCode` of a `failed` lookup result (for example 400207); 0 if none.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_error_code(reg: *const dps_registration) -> i64 {
    guard(0, || {
        // SAFETY: NULL or a live registration.
        unsafe { reg.as_ref() }
            .and_then(|r| r.inner.error_code)
            .unwrap_or(0)
    })
}

/// Number of certificates in `issuedCertificateChain` (certificate-issuance
/// preview API versions only; 0 otherwise).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_issued_certificate_count(
    reg: *const dps_registration,
) -> usize {
    guard(0, || {
        // SAFETY: NULL or a live registration.
        unsafe { reg.as_ref() }.map_or(0, |r| r.certs.len())
    })
}

/// Certificate `index` of `issuedCertificateChain` (base64 DER, leaf first);
/// NULL when out of range. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_issued_certificate(
    reg: *const dps_registration,
    index: usize,
) -> *const c_char {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or a live registration.
        unsafe { reg.as_ref() }
            .and_then(|r| r.certs.get(index))
            .map_or(std::ptr::null(), |c| c.as_ptr())
    })
}

/// **Experimental.** With a CSR (`dps_config_set_csr`): the issued certificate chain as PEM,
/// leaf first, after the library's checks (the leaf certifies the CSR's key, its CN is the
/// registration ID, each certificate is issued by the next, the leaf is valid now); NULL
/// without a CSR. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_issued_chain_pem(
    reg: *const dps_registration,
) -> *const c_char {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or a live registration.
        unsafe { reg.as_ref() }
            .and_then(|r| r.chain_pem.as_ref())
            .map_or(std::ptr::null(), |c| c.as_ptr())
    })
}

/// **Experimental.** With a CSR whose key the library generated (`DPS_CSR_P256`,
/// `DPS_CSR_P384`): that private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`); NULL
/// otherwise. A secret: store it protected. Borrowed; zeroized by `dps_registration_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_issued_key_pem(
    reg: *const dps_registration,
) -> *const c_char {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or a live registration.
        unsafe { reg.as_ref() }
            .and_then(|r| r.key_pem.as_ref())
            .map_or(std::ptr::null(), |v| v.as_ptr().cast::<c_char>())
    })
}

/// Frees a registration. NULL is ignored. Strings borrowed from it become invalid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_registration_free(reg: *mut dps_registration) {
    guard((), || {
        if !reg.is_null() {
            // SAFETY: reg came from this library and is freed once.
            drop(unsafe { Box::from_raw(reg) });
        }
    })
}

/// Why an operation failed: status, message, and what DPS said.
/// Immutable; strings are borrowed and valid until `dps_error_free` (or, for
/// the error borrowed from a client, until the next call on that client).
///
/// Methods: `dps_error_status`, `_message`, `_http_status`, `_dps_code`,
/// `_tracking_id`, `_retriable`, `_cause_status`, `_free`. Thread safety: read-only, any thread.
pub struct dps_error {
    pub(crate) inner: Error,
    message: CString,
    tracking_id: Option<CString>,
}

impl dps_error {
    pub(crate) fn new(inner: Error) -> Box<Self> {
        let message = cstring(&inner.to_string());
        let tracking_id = inner.tracking_id.as_deref().map(cstring);
        Box::new(dps_error {
            inner,
            message,
            tracking_id,
        })
    }
}

/// The status code of the error; `DPS_ERR_NULL_ARGUMENT` for NULL.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_error_status(err: *const dps_error) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        // SAFETY: NULL or a live error.
        unsafe { err.as_ref() }.map_or(DPS_ERR_NULL_ARGUMENT, |e| e.inner.kind.code())
    })
}

/// A one-line message with the HTTP status, DPS errorCode and trackingId when
/// known. Never contains secrets. Borrowed; NULL only for a NULL `err`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_error_message(err: *const dps_error) -> *const c_char {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or a live error.
        unsafe { err.as_ref() }.map_or(std::ptr::null(), |e| e.message.as_ptr())
    })
}

/// The HTTP status of the last response from DPS, or 0 if none was received.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_error_http_status(err: *const dps_error) -> u32 {
    guard(0, || {
        // SAFETY: NULL or a live error.
        unsafe { err.as_ref() }
            .and_then(|e| e.inner.http_status)
            .map_or(0, u32::from)
    })
}

/// The DPS `errorCode` (for example 401002 or 400207), or 0 if none.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_error_dps_code(err: *const dps_error) -> i64 {
    guard(0, || {
        // SAFETY: NULL or a live error.
        unsafe { err.as_ref() }
            .and_then(|e| e.inner.dps_error_code)
            .unwrap_or(0)
    })
}

/// The DPS `trackingId` (quote it to Azure support), or NULL. Borrowed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_error_tracking_id(err: *const dps_error) -> *const c_char {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or a live error.
        unsafe { err.as_ref() }
            .and_then(|e| e.tracking_id.as_ref())
            .map_or(std::ptr::null(), |t| t.as_ptr())
    })
}

/// For `DPS_ERR_DEADLINE_EXCEEDED`: the status of the last failure that was
/// being retried when time ran out (for example `DPS_ERR_CONNECT`,
/// `DPS_ERR_THROTTLED`, `DPS_ERR_TIMEOUT`), so callers can tell "DPS
/// unreachable" from "DPS kept throttling". `DPS_OK` when there is none or
/// `err` is NULL.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_error_cause_status(err: *const dps_error) -> dps_status {
    guard(DPS_OK, || {
        // SAFETY: NULL or a live error.
        unsafe { err.as_ref() }
            .and_then(|e| e.inner.cause)
            .map_or(DPS_OK, |k| k.code())
    })
}

/// Whether trying again later could succeed (network, throttling, server
/// errors, deadline). False for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_error_retriable(err: *const dps_error) -> bool {
    guard(false, || {
        // SAFETY: NULL or a live error.
        unsafe { err.as_ref() }.is_some_and(|e| e.inner.retriable)
    })
}

/// Frees an error returned through an `error_out` parameter. NULL is ignored.
/// Never call it on the error borrowed from `dps_client_last_error`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_error_free(err: *mut dps_error) {
    guard((), || {
        if !err.is_null() {
            // SAFETY: err came from this library through an error_out and is freed once.
            drop(unsafe { Box::from_raw(err) });
        }
    })
}

/// Stores `e` in `*error_out` when the caller asked for it, and returns its status.
///
/// # Safety
/// `error_out` is NULL or writable.
pub(crate) unsafe fn report(e: Error, error_out: *mut *mut dps_error) -> dps_status {
    let code = e.kind.code();
    if !error_out.is_null() {
        // SAFETY: per the caller's contract.
        unsafe { put(error_out, Box::into_raw(dps_error::new(e))) };
    }
    code
}

/// Derives a device key from an enrollment group key, as DPS does:
/// base64(HMAC-SHA256(base64decode(group_key), registration_id)). For
/// factories that provision devices without registering them.
///
/// - `base64_group_key`, `registration_id`: borrowed for the call.
/// - `buf`, `cap`: receives the 44-character base64 key and a NUL (45 bytes);
///   `buf` may be NULL with `cap` 0 to ask for the length only.
/// - `out_len`: if not NULL, receives the key length (44) even when `buf` is
///   too small.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8`,
/// `DPS_ERR_INVALID_KEY`, `DPS_ERR_INVALID_REGISTRATION_ID` or
/// `DPS_ERR_BUFFER_TOO_SMALL`. Thread-safe.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_derive_device_key(
    base64_group_key: *const c_char,
    registration_id: *const c_char,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        let r = (|| {
            // SAFETY: C strings per the contract.
            let (key, id) = unsafe {
                (
                    str_arg(base64_group_key, "base64_group_key")?,
                    str_arg(registration_id, "registration_id")?,
                )
            };
            crate::credential::derive_device_key(key, id)
        })();
        match r {
            // SAFETY: buf/cap/out_len per the contract.
            Ok(k) => unsafe { write_str_out(&k, buf, cap, out_len) },
            Err(e) => e.kind.code(),
        }
    })
}

// Built by build.rs from the package version and the enabled features.
const VERSION: &std::ffi::CStr =
    match std::ffi::CStr::from_bytes_with_nul(concat!(env!("DPS_VERSION_STRING"), "\0").as_bytes())
    {
        Ok(v) => v,
        Err(_) => c"dps",
    };

/// The library version and build, for example
/// `"dps/0.1.0 (rustls 0.23.46, ring; encrypted-keys, pkcs12, tls-logs)"`, naming the
/// optional features built in. Static; never NULL; thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn dps_version() -> *const c_char {
    guard(VERSION.as_ptr(), || VERSION.as_ptr())
}

/// The library version as `0xMMmmpp` (major, minor, patch); compare it with
/// the header's `DPS_VERSION_NUMBER` to detect a header/library mismatch.
#[unsafe(no_mangle)]
pub extern "C" fn dps_version_number() -> u32 {
    guard(0, || {
        let p = |s: &str| s.parse::<u32>().unwrap_or(0);
        (p(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
            | (p(env!("CARGO_PKG_VERSION_MINOR")) << 8)
            | p(env!("CARGO_PKG_VERSION_PATCH"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_string_matches_package() {
        let v = unsafe { std::ffi::CStr::from_ptr(dps_version()) }
            .to_str()
            .unwrap();
        assert!(
            v.starts_with(&format!("dps/{} ", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        assert_eq!(dps_version_number(), 0x000100);
    }
}
