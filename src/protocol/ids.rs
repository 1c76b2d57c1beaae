//! Identifier rules (PROTOCOL.md section 6).

use crate::error::{Error, ErrorKind, Result};

/// Maximum registration ID length.
pub const MAX_REGISTRATION_ID_LEN: usize = 128;

/// Checks an ID scope: opaque, 1-64 ASCII letters and digits (real ones look
/// like `0ne00000E59`).
pub fn validate_id_scope(s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::new(
            ErrorKind::InvalidIdScope,
            format!(
                "ID scope {} must be 1-64 ASCII letters and digits",
                crate::config::echo(s)
            ),
        ));
    }
    Ok(())
}

/// Checks a registration ID: `^[A-Za-z0-9]([A-Za-z0-9._:-]{0,126}[A-Za-z0-9-])?$`.
pub fn validate_registration_id(s: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(
            ErrorKind::InvalidRegistrationId,
            format!("registration ID {} {why}", crate::config::echo(s)),
        ))
    };
    let b = s.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return bad("is empty");
    };
    if b.len() > MAX_REGISTRATION_ID_LEN {
        return bad("is longer than 128 characters");
    }
    if !first.is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !(last.is_ascii_alphanumeric() || last == b'-') {
        return bad("must end with a letter, digit or '-'");
    }
    if !b
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
    {
        return bad("may only contain letters, digits, '.', '_', ':' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_scopes() {
        assert!(validate_id_scope("0ne00000E59").is_ok());
        assert!(validate_id_scope("").is_err());
        assert!(validate_id_scope("0ne 1").is_err());
        assert!(validate_id_scope(&"a".repeat(65)).is_err());
    }

    #[test]
    fn registration_ids() {
        for ok in [
            "a",
            "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
            "A.b_c:d-",
            "x1",
            &"a".repeat(128),
        ] {
            assert!(validate_registration_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "a.",
            "a_",
            "a b",
            "a/b",
            "é",
            &"a".repeat(129),
        ] {
            let e = validate_registration_id(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidRegistrationId, "{bad}");
        }
    }
}
