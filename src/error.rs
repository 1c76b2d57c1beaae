//! The library's error type: a stable [`ErrorKind`] (mapped one to one onto the C
//! `dps_status` codes) plus the detail a support desk asks for.
//!
//! The status table is written once, in the `status_table!` invocation below: each kind's
//! number, class and description. Everything else (the C `DPS_ERR_*` values, Python's
//! `Status`, the README table, the CLI exit codes, Python's exception classes) is either
//! derived from it or checked against it by `tests/status_table.rs`.

use std::fmt;

/// The class of a failure: what a caller can do about it. The C ABI exposes it as
/// `dps_status_class()` with the `DPS_CLASS_*` values (the discriminants); the CLI's exit
/// codes and Python's exception classes are derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorClass {
    /// A bad argument or configuration; nothing was sent (1xx).
    Usage = 1,
    /// A key, certificate, password, token or trust anchor is unusable (2xx).
    Credential = 2,
    /// DNS, TCP, TLS, proxy, or a malformed or oversized answer (3xx).
    Network = 3,
    /// DPS refused the request (400-459).
    Refused = 4,
    /// The registration ended `failed` or the enrollment is disabled (460-499).
    RegistrationFailed = 5,
    /// The deadline passed or the caller cancelled (5xx).
    Lifecycle = 6,
    /// A caught panic or a broken invariant (9xx).
    Internal = 9,
}

macro_rules! status_table {
    ($($(#[$meta:meta])* $name:ident = $code:literal, $class:ident, $desc:literal;)*) => {
        /// What went wrong, in categories a caller can act on. Each kind has a stable
        /// numeric code ([`ErrorKind::code`], the discriminant) that the C API returns as
        /// `dps_status`, and a [`ErrorClass`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[repr(u32)]
        pub enum ErrorKind {
            $($(#[$meta])* $name = $code,)*
        }

        impl ErrorKind {
            /// Every kind, in code order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$name),*];

            /// A short, static description of the kind.
            pub const fn describe(self) -> &'static str {
                match self {
                    $(ErrorKind::$name => $desc,)*
                }
            }

            /// What kind of failure this is.
            pub const fn class(self) -> ErrorClass {
                match self {
                    $(ErrorKind::$name => ErrorClass::$class,)*
                }
            }
        }
    };
}

status_table! {

    // 1xx: usage and argument errors (nothing was sent)
    /// A required pointer argument was NULL.
    NullArgument = 100, Usage, "a required argument was NULL";
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 101, Usage, "a string argument is not valid UTF-8";
    /// An argument was empty, out of range or otherwise malformed.
    InvalidArgument = 102, Usage, "an argument is empty, out of range or malformed";
    /// The caller's output buffer is too small.
    BufferTooSmall = 103, Usage, "the output buffer is too small";
    /// The ID scope is not 1-64 ASCII letters and digits.
    InvalidIdScope = 104, Usage, "the ID scope is not 1-64 ASCII letters and digits";
    /// The registration ID breaks the DPS rules (PROTOCOL.md section 6).
    InvalidRegistrationId = 105, Usage, "the registration ID is not valid for DPS";
    /// The payload is not a JSON object.
    InvalidPayload = 106, Usage, "the payload is not a JSON object";
    /// The endpoint host or port is malformed.
    InvalidEndpoint = 107, Usage, "the endpoint host or port is malformed";
    /// No credential (X.509 or symmetric key) was configured.
    NoCredential = 108, Usage, "no credential was configured";
    /// The call is not valid in the object's current state.
    InvalidState = 109, Usage, "the call is not valid in the current state";
    /// The feature was left out of this build.
    Unsupported = 110, Usage, "the feature is not included in this build";
    /// The proxy URL is malformed.
    InvalidProxy = 111, Usage, "the proxy URL is malformed";
    /// The payload is larger than DPS accepts in one message (96 KB).
    PayloadTooLarge = 112, Usage, "the payload is larger than DPS accepts (96 KB)";

    // 2xx: credential and trust configuration
    /// The symmetric key is not valid base64, or not 16-64 bytes.
    InvalidKey = 200, Credential, "the symmetric key is not base64 of 16-64 bytes";
    /// The certificate (chain) could not be parsed.
    InvalidCertificate = 201, Credential, "the certificate could not be parsed";
    /// The private key could not be parsed or is of an unsupported type.
    InvalidPrivateKey = 202, Credential, "the private key could not be parsed or is unsupported";
    /// The private key does not belong to the leaf certificate.
    KeyMismatch = 203, Credential, "the private key does not match the certificate";
    /// An encrypted private key needs a password, or the password is wrong.
    KeyPassword = 204, Credential, "the private key password is missing or wrong";
    /// The PKCS#12 file could not be parsed.
    InvalidPkcs12 = 205, Credential, "the PKCS#12 file could not be parsed";
    /// The PKCS#12 password is wrong (MAC check failed).
    Pkcs12Password = 206, Credential, "the PKCS#12 password is wrong";
    /// A trusted root certificate could not be parsed.
    InvalidTrustAnchor = 207, Credential, "a trusted root certificate could not be parsed";
    /// A file could not be read.
    FileRead = 208, Credential, "a file could not be read";
    /// An external key (signing or HMAC callback, PKCS#11 token, TPM) failed or returned an
    /// unusable result.
    SignerFailed = 209, Credential, "the external signer (callback, token or TPM) failed";
    /// The PKCS#11 PIN is missing, wrong or locked.
    Pkcs11Pin = 210, Credential, "the PKCS#11 PIN is missing, wrong or locked";
    /// The PKCS#11 URI matches no usable object or token, or more than one.
    Pkcs11Object = 211, Credential, "the PKCS#11 URI matches no usable object, or several";
    /// The PKCS#11 module is missing, is not a PKCS#11 module, or failed to initialise.
    Pkcs11Module = 212, Credential, "the PKCS#11 module is missing or unusable";
    /// A TPM command failed, the TPM is unreachable, or a key it should hold is missing (the
    /// message names the command and the TPM response code).
    Tpm = 220, Credential, "a TPM command failed or the TPM is unreachable";
    /// The TPM refused the DPS activation blob (not made for this TPM's EK and SRK, or altered).
    TpmActivationFailed = 221, Credential, "the TPM could not activate the DPS challenge";

    // 3xx: network and TLS
    /// The host name could not be resolved.
    Dns = 300, Network, "the host name could not be resolved";
    /// The TCP connection could not be established.
    Connect = 301, Network, "the TCP connection could not be established";
    /// One request took longer than the per-request timeout.
    Timeout = 302, Network, "a request timed out";
    /// The server's certificate was not trusted (unknown issuer, expired, ...).
    TlsServerUntrusted = 303, Network, "the server certificate is not trusted";
    /// The server's certificate is valid but not for the host name we asked for.
    TlsServerNameMismatch = 304, Network, "the server certificate does not match the host name";
    /// The server refused our client certificate during the TLS handshake.
    TlsClientCertRejected = 305, Network, "the server rejected the client certificate";
    /// Any other TLS failure (protocol version, cipher, alert).
    Tls = 306, Network, "the TLS handshake failed";
    /// The connection was reset or closed before a complete response arrived.
    ConnectionLost = 307, Network, "the connection closed before a complete response";
    /// The HTTP proxy refused or failed the CONNECT tunnel.
    Proxy = 308, Network, "the proxy failed to open a tunnel";
    /// The server's response exceeded the size limit.
    ResponseTooLarge = 309, Network, "the server response is too large";
    /// The server's response was not valid HTTP or not the JSON DPS sends.
    MalformedResponse = 310, Network, "the server response is malformed";
    /// CSR issuance (experimental): the issued leaf certifies another public key than the CSR's.
    IssuedKeyMismatch = 311, Network, "the issued certificate is not for the CSR's key";
    /// CSR issuance: the issued leaf's subject CN is not the registration ID.
    IssuedNameMismatch = 312, Network, "the issued certificate's CN is not the registration ID";
    /// CSR issuance: the issued chain is missing, malformed, out of order, or a certificate is
    /// not signed by the next one.
    IssuedChainBroken = 313, Network, "the issued certificate chain is broken";
    /// CSR issuance: the issued leaf is expired or not yet valid.
    IssuedCertNotValid = 314, Network, "the issued certificate is expired or not yet valid";

    // 4xx: refusals from DPS (numbered after the HTTP status where one exists)
    /// 400: DPS rejected the request as malformed.
    BadRequest = 400, Refused, "DPS rejected the request (400)";
    /// 401: DPS rejected the credential (wrong key, expired token, unknown certificate).
    Unauthorized = 401, Refused, "DPS rejected the credential (401)";
    /// 403: DPS forbade the request.
    Forbidden = 403, Refused, "DPS forbade the request (403)";
    /// 404: unknown ID scope, enrollment or operation.
    NotFound = 404, Refused, "DPS does not know the ID scope, enrollment or operation (404)";
    /// 409: a concurrent registration of the same device (409203).
    Conflict = 409, Refused, "DPS reported a conflicting registration (409)";
    /// 415: the request body was not JSON.
    UnsupportedMediaType = 415, Refused, "DPS rejected the body as not JSON (415)";
    /// 429: still throttled when the retry budget ran out.
    Throttled = 429, Refused, "DPS kept throttling the device (429)";
    /// Another HTTP status from DPS (5xx after retries, or unexpected codes).
    ServiceError = 450, Refused, "DPS returned an unexpected or server error";
    /// The registration ended with status `failed` (see the DPS error code).
    RegistrationFailed = 460, RegistrationFailed, "the registration failed";
    /// The enrollment is disabled.
    Disabled = 461, RegistrationFailed, "the enrollment is disabled";

    // 5xx: lifecycle
    /// The overall registration deadline passed.
    DeadlineExceeded = 500, Lifecycle, "the registration deadline passed";
    /// The registration was cancelled.
    Cancelled = 501, Lifecycle, "the registration was cancelled";

    // 9xx: internal
    /// A Rust panic was caught at the C boundary.
    Panic = 900, Internal, "internal panic caught at the C boundary";
    /// An internal invariant failed.
    Internal = 901, Internal, "internal error";
}

impl ErrorKind {
    /// The stable numeric code (the C `dps_status`). Never renumbered or reused.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The kind with this code, if any.
    pub fn from_code(code: u32) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }
}

/// An error with the detail DPS gave, if any.
///
/// `message` never contains secrets (keys, signatures, passwords).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The category.
    pub kind: ErrorKind,
    /// A one-line human-readable explanation.
    pub message: String,
    /// The HTTP status of the last response, when one was received.
    pub http_status: Option<u16>,
    /// The DPS `errorCode` (for example 401002), from an error body or a `failed` result.
    pub dps_error_code: Option<i64>,
    /// The DPS `trackingId` (or `x-ms-request-id`) for support requests.
    pub tracking_id: Option<String>,
    /// Whether trying again later could succeed (throttling, server and network errors).
    pub retriable: bool,
    /// For `DeadlineExceeded` and `Cancelled`: the kind of the last failure
    /// that was being retried (for example `Connect` or `Throttled`), if any.
    pub cause: Option<ErrorKind>,
}

impl Error {
    /// A new error of `kind` with a message and no service detail.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            http_status: None,
            dps_error_code: None,
            tracking_id: None,
            retriable: false,
            cause: None,
        }
    }

    pub(crate) fn retriable(mut self, yes: bool) -> Self {
        self.retriable = yes;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = self.http_status {
            write!(f, " (HTTP {s}")?;
            if let Some(c) = self.dps_error_code {
                write!(f, ", errorCode {c}")?;
            }
            if let Some(t) = &self.tracking_id {
                write!(f, ", trackingId {t}")?;
            }
            f.write_str(")")?;
        } else if let Some(c) = self.dps_error_code {
            write!(f, " (errorCode {c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_service_detail() {
        let mut e = Error::new(
            ErrorKind::Unauthorized,
            "DPS refused the credential: Unauthorized",
        );
        e.http_status = Some(401);
        e.dps_error_code = Some(401002);
        e.tracking_id = Some("abc".into());
        assert_eq!(
            e.to_string(),
            "DPS refused the credential: Unauthorized (HTTP 401, errorCode 401002, trackingId abc)"
        );
    }
}
