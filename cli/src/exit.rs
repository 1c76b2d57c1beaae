//! Exit codes: stable, one per failure class (documented in `dps --help`, cli/README.md and the
//! main README), and why a command stopped.

use dps::{Error, ErrorClass, ErrorKind};

/// Success (for `lookup`: a result that is not `failed`/`disabled`).
pub const OK: u8 = 0;
/// Internal error (a bug).
pub const INTERNAL: u8 = 1;
/// Usage: bad command line or an invalid argument value (ID scope, registration ID, payload, endpoint, proxy ...).
pub const USAGE: u8 = 2;
/// Credential, certificate, key, password, trusted root or file problem.
pub const CREDENTIAL: u8 = 3;
/// Network, DNS, TLS or proxy failure, or a malformed response.
pub const NETWORK: u8 = 4;
/// DPS refused the request (HTTP 4xx/5xx: unauthorized, not found, throttled ...).
pub const REFUSED: u8 = 5;
/// The registration ended `failed`, or the enrollment is disabled.
pub const FAILED: u8 = 6;
/// The deadline (`--timeout`) passed, or the operation was cancelled.
pub const DEADLINE: u8 = 7;

/// The exit code for a library error: derived from the library's class of the kind
/// (`ErrorKind::class`, `dps_status_class` in C), the one place it is mapped.
pub fn exit_code_for(kind: ErrorKind) -> u8 {
    match kind.class() {
        ErrorClass::Usage => USAGE,
        ErrorClass::Credential => CREDENTIAL,
        ErrorClass::Network => NETWORK,
        ErrorClass::Refused => REFUSED,
        ErrorClass::RegistrationFailed => FAILED,
        ErrorClass::Lifecycle => DEADLINE,
        ErrorClass::Internal => INTERNAL,
    }
}

/// Why a command stopped.
pub enum Failure {
    /// Bad command line: exit 2 with a hint.
    Usage(String),
    /// A library error, mapped by kind.
    Dps(Error),
    /// A local problem with the given exit code.
    Other(u8, String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Dps(e)
    }
}

/// What every command returns: an exit code, or why it stopped.
pub type Res<T> = Result<T, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_per_class() {
        use ErrorKind as K;
        assert_eq!(exit_code_for(K::InvalidIdScope), USAGE);
        assert_eq!(exit_code_for(K::InvalidKey), CREDENTIAL);
        assert_eq!(exit_code_for(K::FileRead), CREDENTIAL);
        assert_eq!(exit_code_for(K::TlsServerUntrusted), NETWORK);
        assert_eq!(exit_code_for(K::Unauthorized), REFUSED);
        assert_eq!(exit_code_for(K::ServiceError), REFUSED);
        assert_eq!(exit_code_for(K::RegistrationFailed), FAILED);
        assert_eq!(exit_code_for(K::Disabled), FAILED);
        assert_eq!(exit_code_for(K::DeadlineExceeded), DEADLINE);
        assert_eq!(exit_code_for(K::Cancelled), DEADLINE);
        assert_eq!(exit_code_for(K::Panic), INTERNAL);
    }
}
