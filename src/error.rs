//! The library's error type: a stable [`ErrorKind`] (mapped one to one onto the C
//! `dps_status` codes) plus the detail a support desk asks for.

use std::fmt;

/// What went wrong, in categories a caller can act on. Each kind has a stable
/// numeric code ([`ErrorKind::code`]) that the C API returns as `dps_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    // 1xx: usage and argument errors (nothing was sent)
    /// A required pointer argument was NULL.
    NullArgument,
    /// A string argument was not valid UTF-8.
    InvalidUtf8,
    /// An argument was empty, out of range or otherwise malformed.
    InvalidArgument,
    /// The caller's output buffer is too small.
    BufferTooSmall,
    /// The ID scope is not 1-64 ASCII letters and digits.
    InvalidIdScope,
    /// The registration ID breaks the DPS rules (PROTOCOL.md section 6).
    InvalidRegistrationId,
    /// The payload is not a JSON object.
    InvalidPayload,
    /// The endpoint host or port is malformed.
    InvalidEndpoint,
    /// No credential (X.509 or symmetric key) was configured.
    NoCredential,
    /// The call is not valid in the object's current state.
    InvalidState,
    /// The feature was left out of this build.
    Unsupported,
    /// The proxy URL is malformed.
    InvalidProxy,

    // 2xx: credential and trust configuration
    /// The symmetric key is not valid base64, or not 16-64 bytes.
    InvalidKey,
    /// The certificate (chain) could not be parsed.
    InvalidCertificate,
    /// The private key could not be parsed or is of an unsupported type.
    InvalidPrivateKey,
    /// The private key does not belong to the leaf certificate.
    KeyMismatch,
    /// An encrypted private key needs a password, or the password is wrong.
    KeyPassword,
    /// The PKCS#12 file could not be parsed.
    InvalidPkcs12,
    /// The PKCS#12 password is wrong (MAC check failed).
    Pkcs12Password,
    /// A trusted root certificate could not be parsed.
    InvalidTrustAnchor,
    /// A file could not be read.
    FileRead,
    /// A TPM command failed, the TPM is unreachable, or a key it should hold is missing (the
    /// message names the command and the TPM response code).
    Tpm,
    /// The TPM refused the DPS activation blob (not made for this TPM's EK and SRK, or altered).
    TpmActivationFailed,

    // 3xx: network and TLS
    /// The host name could not be resolved.
    Dns,
    /// The TCP connection could not be established.
    Connect,
    /// One request took longer than the per-request timeout.
    Timeout,
    /// The server's certificate was not trusted (unknown issuer, expired, ...).
    TlsServerUntrusted,
    /// The server's certificate is valid but not for the host name we asked for.
    TlsServerNameMismatch,
    /// The server refused our client certificate during the TLS handshake.
    TlsClientCertRejected,
    /// Any other TLS failure (protocol version, cipher, alert).
    Tls,
    /// The connection was reset or closed before a complete response arrived.
    ConnectionLost,
    /// The HTTP proxy refused or failed the CONNECT tunnel.
    Proxy,
    /// The server's response exceeded the size limit.
    ResponseTooLarge,
    /// The server's response was not valid HTTP or not the JSON DPS sends.
    MalformedResponse,

    // 4xx: refusals from DPS (numbered after the HTTP status where one exists)
    /// 400: DPS rejected the request as malformed.
    BadRequest,
    /// 401: DPS rejected the credential (wrong key, expired token, unknown certificate).
    Unauthorized,
    /// 403: DPS forbade the request.
    Forbidden,
    /// 404: unknown ID scope, enrollment or operation.
    NotFound,
    /// 409: a concurrent registration of the same device (409203).
    Conflict,
    /// 415: the request body was not JSON.
    UnsupportedMediaType,
    /// 429: still throttled when the retry budget ran out.
    Throttled,
    /// Another HTTP status from DPS (5xx after retries, or unexpected codes).
    ServiceError,
    /// The registration ended with status `failed` (see the DPS error code).
    RegistrationFailed,
    /// The enrollment is disabled.
    Disabled,

    // 5xx: lifecycle
    /// The overall registration deadline passed.
    DeadlineExceeded,
    /// The registration was cancelled.
    Cancelled,

    // 9xx: internal
    /// A Rust panic was caught at the C boundary.
    Panic,
    /// An internal invariant failed.
    Internal,
}

impl ErrorKind {
    /// The stable numeric code (the C `dps_status`). Never renumbered or reused.
    pub const fn code(self) -> u32 {
        use ErrorKind::*;
        match self {
            NullArgument => 100,
            InvalidUtf8 => 101,
            InvalidArgument => 102,
            BufferTooSmall => 103,
            InvalidIdScope => 104,
            InvalidRegistrationId => 105,
            InvalidPayload => 106,
            InvalidEndpoint => 107,
            NoCredential => 108,
            InvalidState => 109,
            Unsupported => 110,
            InvalidProxy => 111,
            InvalidKey => 200,
            InvalidCertificate => 201,
            InvalidPrivateKey => 202,
            KeyMismatch => 203,
            KeyPassword => 204,
            InvalidPkcs12 => 205,
            Pkcs12Password => 206,
            InvalidTrustAnchor => 207,
            FileRead => 208,
            Tpm => 220,
            TpmActivationFailed => 221,
            Dns => 300,
            Connect => 301,
            Timeout => 302,
            TlsServerUntrusted => 303,
            TlsServerNameMismatch => 304,
            TlsClientCertRejected => 305,
            Tls => 306,
            ConnectionLost => 307,
            Proxy => 308,
            ResponseTooLarge => 309,
            MalformedResponse => 310,
            BadRequest => 400,
            Unauthorized => 401,
            Forbidden => 403,
            NotFound => 404,
            Conflict => 409,
            UnsupportedMediaType => 415,
            Throttled => 429,
            ServiceError => 450,
            RegistrationFailed => 460,
            Disabled => 461,
            DeadlineExceeded => 500,
            Cancelled => 501,
            Panic => 900,
            Internal => 901,
        }
    }

    /// A short, static description of the kind.
    pub const fn describe(self) -> &'static str {
        use ErrorKind::*;
        match self {
            NullArgument => "a required argument was NULL",
            InvalidUtf8 => "a string argument is not valid UTF-8",
            InvalidArgument => "an argument is empty, out of range or malformed",
            BufferTooSmall => "the output buffer is too small",
            InvalidIdScope => "the ID scope is not 1-64 ASCII letters and digits",
            InvalidRegistrationId => "the registration ID is not valid for DPS",
            InvalidPayload => "the payload is not a JSON object",
            InvalidEndpoint => "the endpoint host or port is malformed",
            NoCredential => "no credential was configured",
            InvalidState => "the call is not valid in the current state",
            Unsupported => "the feature is not included in this build",
            InvalidProxy => "the proxy URL is malformed",
            InvalidKey => "the symmetric key is not base64 of 16-64 bytes",
            InvalidCertificate => "the certificate could not be parsed",
            InvalidPrivateKey => "the private key could not be parsed or is unsupported",
            KeyMismatch => "the private key does not match the certificate",
            KeyPassword => "the private key password is missing or wrong",
            InvalidPkcs12 => "the PKCS#12 file could not be parsed",
            Pkcs12Password => "the PKCS#12 password is wrong",
            InvalidTrustAnchor => "a trusted root certificate could not be parsed",
            FileRead => "a file could not be read",
            Tpm => "a TPM command failed or the TPM is unreachable",
            TpmActivationFailed => "the TPM could not activate the DPS challenge",
            Dns => "the host name could not be resolved",
            Connect => "the TCP connection could not be established",
            Timeout => "a request timed out",
            TlsServerUntrusted => "the server certificate is not trusted",
            TlsServerNameMismatch => "the server certificate does not match the host name",
            TlsClientCertRejected => "the server rejected the client certificate",
            Tls => "the TLS handshake failed",
            ConnectionLost => "the connection closed before a complete response",
            Proxy => "the proxy failed to open a tunnel",
            ResponseTooLarge => "the server response is too large",
            MalformedResponse => "the server response is malformed",
            BadRequest => "DPS rejected the request (400)",
            Unauthorized => "DPS rejected the credential (401)",
            Forbidden => "DPS forbade the request (403)",
            NotFound => "DPS does not know the ID scope, enrollment or operation (404)",
            Conflict => "DPS reported a conflicting registration (409)",
            UnsupportedMediaType => "DPS rejected the body as not JSON (415)",
            Throttled => "DPS kept throttling the device (429)",
            ServiceError => "DPS returned an unexpected or server error",
            RegistrationFailed => "the registration failed",
            Disabled => "the enrollment is disabled",
            DeadlineExceeded => "the registration deadline passed",
            Cancelled => "the registration was cancelled",
            Panic => "internal panic caught at the C boundary",
            Internal => "internal error",
        }
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
