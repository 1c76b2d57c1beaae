//! Status codes, stable and grouped by hundreds. Numbers are never reused.

use std::ffi::c_char;

use super::guard;
use crate::error::ErrorKind;

/// The result of every fallible function: `DPS_OK` (0) or an error code.
/// Codes are grouped: 1xx usage, 2xx credentials and trust, 3xx network and
/// TLS, 4xx refusals by DPS (numbered after the HTTP status), 5xx deadline and
/// cancel, 9xx internal. Numbers are stable and never reused.
pub type dps_status = u32;

/// Success.
pub const DPS_OK: dps_status = 0;
/// Not an error: the step API is not finished; call again after `*wait_ms`.
pub const DPS_PENDING: dps_status = 1;
/// A required pointer argument was NULL.
pub const DPS_ERR_NULL_ARGUMENT: dps_status = 100;
/// A string argument is not valid UTF-8.
pub const DPS_ERR_INVALID_UTF8: dps_status = 101;
/// An argument is empty, out of range or malformed.
pub const DPS_ERR_INVALID_ARGUMENT: dps_status = 102;
/// The output buffer is too small; `*out_len` holds the needed length (without the NUL).
pub const DPS_ERR_BUFFER_TOO_SMALL: dps_status = 103;
/// The ID scope is not 1-64 ASCII letters and digits.
pub const DPS_ERR_INVALID_ID_SCOPE: dps_status = 104;
/// The registration ID breaks the DPS rules (1-128 of `A-Z a-z 0-9 . _ : -`, alphanumeric first, alphanumeric or `-` last).
pub const DPS_ERR_INVALID_REGISTRATION_ID: dps_status = 105;
/// The payload is not a JSON object.
pub const DPS_ERR_INVALID_PAYLOAD: dps_status = 106;
/// The endpoint is not `host` or `host:port`.
pub const DPS_ERR_INVALID_ENDPOINT: dps_status = 107;
/// No credential was configured.
pub const DPS_ERR_NO_CREDENTIAL: dps_status = 108;
/// The call is not valid in the object's current state.
pub const DPS_ERR_INVALID_STATE: dps_status = 109;
/// The feature is not part of this build (for example PKCS#12).
pub const DPS_ERR_UNSUPPORTED: dps_status = 110;
/// The proxy URL is malformed.
pub const DPS_ERR_INVALID_PROXY: dps_status = 111;
/// The payload is larger than DPS accepts in one message (96 KB).
pub const DPS_ERR_PAYLOAD_TOO_LARGE: dps_status = 112;
/// The symmetric key is not base64 of 16-64 bytes.
pub const DPS_ERR_INVALID_KEY: dps_status = 200;
/// The certificate (chain) could not be parsed, or its CN differs from the registration ID.
pub const DPS_ERR_INVALID_CERTIFICATE: dps_status = 201;
/// The private key could not be parsed or is of an unsupported type.
pub const DPS_ERR_INVALID_PRIVATE_KEY: dps_status = 202;
/// The private key does not belong to the leaf certificate.
pub const DPS_ERR_KEY_MISMATCH: dps_status = 203;
/// The private key is encrypted and the password is missing or wrong.
pub const DPS_ERR_KEY_PASSWORD: dps_status = 204;
/// The PKCS#12 file could not be parsed.
pub const DPS_ERR_INVALID_PKCS12: dps_status = 205;
/// The PKCS#12 password is wrong.
pub const DPS_ERR_PKCS12_PASSWORD: dps_status = 206;
/// A trusted root certificate could not be parsed, or no root is left.
pub const DPS_ERR_INVALID_TRUST_ANCHOR: dps_status = 207;
/// A file could not be read.
pub const DPS_ERR_FILE_READ: dps_status = 208;
/// The signing or HMAC callback (or PKCS#11 token, or TPM) failed or returned an unusable result.
pub const DPS_ERR_SIGNER_FAILED: dps_status = 209;
/// The PKCS#11 PIN is missing, wrong or locked.
pub const DPS_ERR_PKCS11_PIN: dps_status = 210;
/// The PKCS#11 URI matches no usable object or token, or more than one.
pub const DPS_ERR_PKCS11_OBJECT: dps_status = 211;
/// The PKCS#11 module is missing, is not a PKCS#11 module, or failed to initialise.
pub const DPS_ERR_PKCS11_MODULE: dps_status = 212;
/// A TPM command failed, the TPM is unreachable, or a key it should hold is missing; the
/// message names the command and the TPM response code.
pub const DPS_ERR_TPM: dps_status = 220;
/// The TPM refused the DPS activation blob (not made for this TPM's EK and SRK, or altered).
pub const DPS_ERR_TPM_ACTIVATION_FAILED: dps_status = 221;
/// The host name could not be resolved.
pub const DPS_ERR_DNS: dps_status = 300;
/// The TCP connection could not be established.
pub const DPS_ERR_CONNECT: dps_status = 301;
/// A request timed out.
pub const DPS_ERR_TIMEOUT: dps_status = 302;
/// The server certificate is not trusted (unknown issuer, expired, ...).
pub const DPS_ERR_TLS_SERVER_UNTRUSTED: dps_status = 303;
/// The server certificate is not valid for the endpoint's host name.
pub const DPS_ERR_TLS_SERVER_NAME_MISMATCH: dps_status = 304;
/// The server rejected the client certificate in the TLS handshake.
pub const DPS_ERR_TLS_CLIENT_CERT_REJECTED: dps_status = 305;
/// Another TLS failure.
pub const DPS_ERR_TLS: dps_status = 306;
/// The connection closed or reset before a complete response.
pub const DPS_ERR_CONNECTION_LOST: dps_status = 307;
/// The HTTP proxy failed or refused the CONNECT tunnel.
pub const DPS_ERR_PROXY: dps_status = 308;
/// The server response exceeded the size limit (128 KiB body, 16 KiB head).
pub const DPS_ERR_RESPONSE_TOO_LARGE: dps_status = 309;
/// The server response is not valid HTTP or not the JSON DPS sends.
pub const DPS_ERR_MALFORMED_RESPONSE: dps_status = 310;
/// Certificate issuance (experimental): the issued leaf certifies another key than the CSR's.
pub const DPS_ERR_ISSUED_KEY_MISMATCH: dps_status = 311;
/// Certificate issuance: the issued leaf's subject CN is not the registration ID.
pub const DPS_ERR_ISSUED_NAME_MISMATCH: dps_status = 312;
/// Certificate issuance: the issued chain is missing, malformed, out of order or not signed.
pub const DPS_ERR_ISSUED_CHAIN_BROKEN: dps_status = 313;
/// Certificate issuance: the issued leaf is expired or not yet valid.
pub const DPS_ERR_ISSUED_CERT_NOT_VALID: dps_status = 314;
/// DPS answered 400 Bad Request.
pub const DPS_ERR_BAD_REQUEST: dps_status = 400;
/// DPS answered 401: wrong key, expired token or unknown certificate.
pub const DPS_ERR_UNAUTHORIZED: dps_status = 401;
/// DPS answered 403.
pub const DPS_ERR_FORBIDDEN: dps_status = 403;
/// DPS answered 404: unknown ID scope, enrollment or operation.
pub const DPS_ERR_NOT_FOUND: dps_status = 404;
/// DPS answered 409: a concurrent registration of the same device.
pub const DPS_ERR_CONFLICT: dps_status = 409;
/// DPS answered 415: the body was not JSON.
pub const DPS_ERR_UNSUPPORTED_MEDIA_TYPE: dps_status = 415;
/// DPS answered 429 and retrying stopped.
pub const DPS_ERR_THROTTLED: dps_status = 429;
/// DPS answered another error status (5xx after retries, or an unexpected code).
pub const DPS_ERR_SERVICE: dps_status = 450;
/// The registration ended with status `failed`; see the DPS error code.
pub const DPS_ERR_REGISTRATION_FAILED: dps_status = 460;
/// The enrollment is disabled.
pub const DPS_ERR_DISABLED: dps_status = 461;
/// The overall deadline passed; the error detail holds the last failure.
pub const DPS_ERR_DEADLINE_EXCEEDED: dps_status = 500;
/// The registration was cancelled with `dps_client_cancel`.
pub const DPS_ERR_CANCELLED: dps_status = 501;
/// A Rust panic was caught at the C boundary; the client is unusable and must be freed.
pub const DPS_ERR_PANIC: dps_status = 900;
/// An internal invariant failed.
pub const DPS_ERR_INTERNAL: dps_status = 901;

/// The class of a status (`dps_status_class`): what a caller can do about it.
pub type dps_class = u32;
/// `DPS_OK` and `DPS_PENDING`: not a failure.
pub const DPS_CLASS_NONE: dps_class = 0;
/// 1xx: a bad argument or configuration; nothing was sent. Fix the call.
pub const DPS_CLASS_USAGE: dps_class = 1;
/// 2xx: a key, certificate, password, token or trust anchor is unusable. Fix the credential.
pub const DPS_CLASS_CREDENTIAL: dps_class = 2;
/// 3xx: DNS, TCP, TLS, proxy, or a malformed or oversized answer. Often transient.
pub const DPS_CLASS_NETWORK: dps_class = 3;
/// 400-459: DPS refused the request (see the HTTP status and DPS errorCode).
pub const DPS_CLASS_REFUSED: dps_class = 4;
/// 460-499: the registration ended `failed`, or the enrollment is disabled.
pub const DPS_CLASS_REGISTRATION_FAILED: dps_class = 5;
/// 5xx: the deadline passed or the registration was cancelled.
pub const DPS_CLASS_LIFECYCLE: dps_class = 6;
/// 9xx, and any code this library does not know: internal failure.
pub const DPS_CLASS_INTERNAL: dps_class = 9;

/// The class of `status` (`DPS_CLASS_*`): `DPS_CLASS_NONE` for `DPS_OK` and `DPS_PENDING`,
/// `DPS_CLASS_INTERNAL` for codes this library does not know. Never fails; thread-safe; may be
/// called from any callback.
#[unsafe(no_mangle)]
pub extern "C" fn dps_status_class(status: dps_status) -> dps_class {
    guard(DPS_CLASS_INTERNAL, || match status {
        DPS_OK | DPS_PENDING => DPS_CLASS_NONE,
        _ => ErrorKind::from_code(status).map_or(DPS_CLASS_INTERNAL, |k| k.class() as dps_class),
    })
}

/// A static, NUL-terminated description of `status`. Never NULL; unknown
/// codes give "unknown status". Thread-safe; the string must not be freed.
#[unsafe(no_mangle)]
pub extern "C" fn dps_status_str(status: dps_status) -> *const c_char {
    guard(c"unknown status".as_ptr(), || status_cstr(status).as_ptr())
}

fn status_cstr(status: dps_status) -> &'static std::ffi::CStr {
    match status {
        DPS_OK => c"success",
        DPS_PENDING => c"in progress: call dps_client_step again after wait_ms",
        _ => ErrorKind::from_code(status).map_or(c"unknown status", kind_cstr),
    }
}

// One static C string per kind, built once (ErrorKind::describe has no NULs).
fn kind_cstr(kind: ErrorKind) -> &'static std::ffi::CStr {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<std::ffi::CString>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        ErrorKind::ALL
            .iter()
            .map(|k| super::cstring(k.describe()))
            .collect()
    });
    ErrorKind::ALL
        .iter()
        .position(|k| *k == kind)
        .and_then(|i| table.get(i))
        .map_or(c"unknown status", |c| c.as_c_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_string() {
        for &k in ErrorKind::ALL {
            let s = unsafe { std::ffi::CStr::from_ptr(dps_status_str(k.code())) }
                .to_str()
                .unwrap();
            assert_eq!(s, k.describe());
        }
        let s = unsafe { std::ffi::CStr::from_ptr(dps_status_str(12345)) };
        assert_eq!(s.to_str().unwrap(), "unknown status");
        assert_eq!(dps_status_class(DPS_OK), DPS_CLASS_NONE);
        assert_eq!(dps_status_class(DPS_ERR_UNAUTHORIZED), DPS_CLASS_REFUSED);
        assert_eq!(
            dps_status_class(DPS_ERR_DISABLED),
            DPS_CLASS_REGISTRATION_FAILED
        );
        assert_eq!(dps_status_class(12345), DPS_CLASS_INTERNAL);
        use crate::error::ErrorClass as C;
        for (c, k) in [
            (DPS_CLASS_USAGE, C::Usage),
            (DPS_CLASS_CREDENTIAL, C::Credential),
            (DPS_CLASS_NETWORK, C::Network),
            (DPS_CLASS_REFUSED, C::Refused),
            (DPS_CLASS_REGISTRATION_FAILED, C::RegistrationFailed),
            (DPS_CLASS_LIFECYCLE, C::Lifecycle),
            (DPS_CLASS_INTERNAL, C::Internal),
        ] {
            assert_eq!(c, k as dps_class, "{k:?}");
        }
    }
}
