//! Mapping cryptoki errors onto [`crate::Error`]. A PKCS#11 return value names the function
//! and the `CKR_` code only; no PIN or key material can appear in it.

use cryptoki::error::{Error as CkError, RvError};

use crate::error::{Error, ErrorKind};

/// Whether `e` means the session or the token went away (token removed, reset, module
/// restarted): the session is reopened and the call tried once more.
pub(crate) fn is_lost_session(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SlotIdInvalid
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// Whether `e` means the session handle itself is gone (so closing it is pointless).
pub(crate) fn is_dead_handle(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// A [`crate::Error`] for a failed cryptoki call, `what` saying what was being done.
pub(crate) fn ck_error(e: &CkError, what: &str) -> Error {
    match e {
        CkError::Pkcs11(rv, func) => {
            let kind = match rv {
                RvError::PinIncorrect
                | RvError::PinInvalid
                | RvError::PinLenRange
                | RvError::PinExpired
                | RvError::PinLocked
                | RvError::UserPinNotInitialized => ErrorKind::Pkcs11Pin,
                _ => ErrorKind::SignerFailed,
            };
            let hint = match rv {
                RvError::PinIncorrect => ": the PIN is wrong",
                RvError::PinLocked => ": the PIN is locked (too many wrong attempts)",
                RvError::PinExpired => ": the PIN has expired",
                RvError::PinLenRange | RvError::PinInvalid => {
                    ": the PIN is not valid for the token"
                }
                RvError::UserPinNotInitialized => ": the token has no user PIN yet",
                _ => "",
            };
            Error::new(
                kind,
                format!("PKCS#11 {what} failed (C_{func:?}: {}){hint}", rv_name(*rv)),
            )
        }
        other => Error::new(
            ErrorKind::SignerFailed,
            format!("PKCS#11 {what} failed: {other}"),
        ),
    }
}

/// The `CKR_` name of a return value (cryptoki's `Debug` gives the CamelCase variant).
fn rv_name(rv: RvError) -> String {
    let camel = format!("{rv:?}");
    let mut s = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            s.push('_');
        }
        s.push(c.to_ascii_uppercase());
    }
    s
}

/// An object-selection error (no match, several matches, wrong type).
pub(crate) fn object_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Pkcs11Object, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn names_and_kinds() {
        let e = ck_error(
            &CkError::Pkcs11(RvError::PinIncorrect, Function::Login),
            "login",
        );
        assert_eq!(e.kind, ErrorKind::Pkcs11Pin);
        assert!(e.message.contains("CKR_PIN_INCORRECT"), "{}", e.message);
        let e = ck_error(
            &CkError::Pkcs11(RvError::SessionHandleInvalid, Function::Sign),
            "signing",
        );
        assert_eq!(e.kind, ErrorKind::SignerFailed);
        assert!(
            e.message.contains("CKR_SESSION_HANDLE_INVALID"),
            "{}",
            e.message
        );
        assert!(is_lost_session(&CkError::Pkcs11(
            RvError::DeviceRemoved,
            Function::Sign
        )));
        assert!(!is_lost_session(&CkError::Pkcs11(
            RvError::PinIncorrect,
            Function::Login
        )));
    }
}
