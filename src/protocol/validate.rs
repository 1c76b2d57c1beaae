//! Validation of what the server sends, before any of it reaches the caller.
//!
//! A DPS answer is input like any other: a hostile or broken server (or
//! anything between it and the device that TLS does not rule out, such as a
//! wrongly trusted root) must not be able to inject a connection string
//! (`assignedHub = "evil.example.com;SharedAccessKey=AAAA"`), put terminal
//! escape sequences into logs, `--save` files or a console, hide text behind
//! an embedded NUL in the C getters, or make the client echo 100 KB into its
//! next request line. Every string of an answer is checked here:
//!
//! | Field | Rule |
//! |---|---|
//! | `assignedHub` | a DNS host name: 1-253 characters, labels of 1-63 letters, digits and `-` (not first or last), separated by single dots |
//! | `deviceId` | IoT Hub's device ID rule: 1-128 ASCII letters, digits and ``- . + % _ # * ? ! ( ) , : = @ $ '`` (IoT Hub also allows `;`, which cannot be written in a connection string: refused) |
//! | `registrationId` | equal (ASCII case-insensitively) to the one sent |
//! | `operationId` | 1-256 URL-safe characters (RFC 3986 unreserved: letters, digits, `- . _ ~`) |
//! | other strings (`substatus`, time stamps, `etag`, `enrollmentGroupId`, certificates) | at most [`MAX_FIELD_CHARS`] characters, no control character |
//! | messages (`errorMessage`, an error body's `message`, `trackingId`) | control characters removed, cut to [`MAX_SERVER_MESSAGE_CHARS`] characters with an ellipsis |
//!
//! "Control character" means the Unicode `Cc` class (C0 including NUL, CR,
//! LF, ESC; DEL; C1) and the bidirectional formatting characters that reorder
//! displayed text (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069).

use crate::error::{Error, ErrorKind, Result};

/// Longest host name (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;
/// Longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest IoT Hub device ID.
pub const MAX_DEVICE_ID_LEN: usize = 128;
/// Longest operation ID accepted (DPS's are about 55 characters).
pub const MAX_OPERATION_ID_LEN: usize = 256;
/// Longest other string field (time stamps, etag, substatus, group ID, one
/// certificate of `issuedCertificateChain` in base64).
pub const MAX_FIELD_CHARS: usize = 16 * 1024;
/// Server messages are cut to this many characters (plus an ellipsis).
pub const MAX_SERVER_MESSAGE_CHARS: usize = 256;

/// The special characters IoT Hub allows in a device ID, minus `;`.
const DEVICE_ID_SPECIALS: &[u8] = b"-.+%_#*?!(),:=@$'";

/// A control character or a bidirectional formatting character.
pub fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// A short, printable rendering of a server-sent value for an error message:
/// control characters escaped, at most 64 characters of rendering (an
/// escaped character counts for its whole escape) and an ellipsis.
fn shown(s: &str) -> String {
    let mut out = String::new();
    let mut width = 0;
    for c in s.chars() {
        let escaped = is_control(c);
        let w = if escaped {
            c.escape_default().count()
        } else {
            1
        };
        if width + w > 64 {
            out.push('…');
            break;
        }
        if escaped {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        width += w;
    }
    out
}

fn refused(field: &str, value: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::MalformedResponse,
        format!(
            "malformed DPS response: {field} \"{}\" ({} characters) {why}",
            shown(value),
            value.chars().count()
        ),
    )
}

/// Checks `assignedHub`: a DNS host name.
pub fn host_name(s: &str) -> Result<()> {
    let bad = |why: &str| Err(refused("assignedHub", s, why));
    if s.is_empty() {
        return bad("is empty");
    }
    if s.len() > MAX_HOST_LEN {
        return bad("is longer than 253 characters");
    }
    for label in s.split('.') {
        let b = label.as_bytes();
        if b.is_empty() {
            return bad("has an empty label (a leading, trailing or double dot)");
        }
        if b.len() > MAX_LABEL_LEN {
            return bad("has a label longer than 63 characters");
        }
        if !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
            return bad("is not a host name (letters, digits, '-' and '.' only)");
        }
        if b[0] == b'-' || b[b.len() - 1] == b'-' {
            return bad("has a label that starts or ends with '-'");
        }
    }
    Ok(())
}

/// Checks `deviceId` against IoT Hub's rule (without `;`).
pub fn device_id(s: &str) -> Result<()> {
    let bad = |why: &str| Err(refused("deviceId", s, why));
    if s.is_empty() {
        return bad("is empty");
    }
    if s.len() > MAX_DEVICE_ID_LEN {
        return bad("is longer than 128 characters");
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || DEVICE_ID_SPECIALS.contains(&c))
    {
        return bad(
            "has a character IoT Hub does not allow in a device ID (letters, digits and - . + % _ # * ? ! ( ) , : = @ $ ' only)",
        );
    }
    Ok(())
}

/// Checks that the `registrationId` of an answer is the one sent.
pub fn registration_id(sent: &str, got: &str) -> Result<()> {
    if got.eq_ignore_ascii_case(sent) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::MalformedResponse,
        format!(
            "malformed DPS response: the answer is for registrationId \"{}\", not for \"{}\" (the one sent)",
            shown(got),
            shown(sent)
        ),
    ))
}

/// Checks an `operationId`: bounded and URL-safe, so that it can be put in
/// the next request line as is.
pub fn operation_id(s: &str) -> Result<()> {
    let bad = |why: &str| Err(refused("operationId", s, why));
    if s.is_empty() {
        return bad("is empty");
    }
    if s.len() > MAX_OPERATION_ID_LEN {
        return bad("is longer than 256 characters");
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'))
    {
        return bad("is not URL-safe (letters, digits, '-', '.', '_' and '~' only)");
    }
    Ok(())
}

/// Checks any other string field: bounded, no control character.
pub fn text_field(field: &str, s: &str) -> Result<()> {
    if s.chars().count() > MAX_FIELD_CHARS {
        return Err(refused(field, s, "is too long"));
    }
    if s.chars().any(is_control) {
        return Err(refused(field, s, "contains control characters"));
    }
    Ok(())
}

/// Makes a server message safe to show: control characters dropped (a run of
/// line breaks and tabs becomes one space), surrounding space trimmed, cut to
/// [`MAX_SERVER_MESSAGE_CHARS`] characters with an ellipsis.
pub fn server_message(s: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut pending_space = false;
    for c in s.chars() {
        if matches!(c, '\n' | '\r' | '\t') || c == ' ' {
            pending_space = !out.is_empty();
            continue;
        }
        if is_control(c) {
            continue;
        }
        if pending_space {
            if count == MAX_SERVER_MESSAGE_CHARS {
                out.push('…');
                return out;
            }
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        if count == MAX_SERVER_MESSAGE_CHARS {
            out.push('…');
            return out;
        }
        out.push(c);
        count += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for ok in [
            "MyExampleHub.azure-devices.net",
            "hub-a.azure-devices.net",
            "localhost",
            "a",
            "1.2.3.4",
            &format!("{}.net", "a".repeat(63)),
        ] {
            host_name(ok).unwrap();
        }
        let long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        for bad in [
            "",
            "evil.example.com;SharedAccessKey=AAAA",
            "hub.azure-devices.net\r\nX: y",
            "hub\0.net",
            "hub\u{1b}[31m.net",
            "a..b",
            ".a.b",
            "a.b.",
            "-a.com",
            "a-.com",
            "a_b.com",
            "hub.net:443",
            "hüb.net",
            &format!("{}.net", "a".repeat(64)),
            &long,
        ] {
            let e = host_name(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::MalformedResponse, "{bad:?}");
            assert!(!e.message.chars().any(is_control), "{:?}", e.message);
            assert!(e.message.chars().count() < 200, "{:?}", e.message);
        }
    }

    #[test]
    fn device_ids() {
        for ok in [
            "my-x509-device",
            "a",
            "d-.+%_#*?!(),:=@$'",
            &"x".repeat(128),
        ] {
            device_id(ok).unwrap();
        }
        for bad in [
            "",
            "dev;SharedAccessKey=AAAA",
            "dev ice",
            "dev\n",
            "dev\0x",
            "dév",
            "dev/1",
            "dev\"",
            &"x".repeat(129),
        ] {
            assert_eq!(
                device_id(bad).unwrap_err().kind,
                ErrorKind::MalformedResponse
            );
        }
    }

    #[test]
    fn registration_ids_and_operations() {
        registration_id("My-Device", "my-device").unwrap();
        let e = registration_id("dev-1", "dev-2").unwrap_err();
        assert!(e.message.contains("\"dev-2\""), "{}", e.message);
        registration_id("dev-1", "dev-1\0").unwrap_err();
        operation_id("5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550").unwrap();
        operation_id(&"a".repeat(256)).unwrap();
        for bad in [
            "",
            &"a".repeat(257),
            "a/b",
            "a?b",
            "a b",
            "a%2F",
            "a\r\nHost: evil",
        ] {
            let e = operation_id(bad).unwrap_err();
            assert!(!e.message.chars().any(is_control));
        }
    }

    #[test]
    fn text_fields() {
        text_field(
            "etag",
            "IjEyMDA4NmYyLTAwMDAtMDMwMC0wMDAwLTYzMGE1YTBmMDAwMCI=",
        )
        .unwrap();
        text_field("substatus", "initialAssignment").unwrap();
        for bad in [
            "a\u{1b}[2J",
            "a\0",
            "a\u{7f}",
            "a\u{9b}",
            "a\u{202e}b",
            "a\n",
        ] {
            let e = text_field("substatus", bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::MalformedResponse);
            assert!(!e.message.chars().any(is_control), "{:?}", e.message);
        }
        text_field("etag", &"e".repeat(MAX_FIELD_CHARS + 1)).unwrap_err();
    }

    #[test]
    fn refusals_stay_short_whatever_the_value() {
        // Found by the server_strings fuzz target: 45 control characters
        // escaped 6 characters each made a 410-character message.
        let v = format!("2022-0?.8x{}a", "\u{18}".repeat(45));
        for e in [
            host_name(&v).unwrap_err(),
            device_id(&v).unwrap_err(),
            operation_id(&v).unwrap_err(),
            text_field("etag", &v).unwrap_err(),
            registration_id(&v, &v.repeat(2)).unwrap_err(),
        ] {
            assert!(e.message.chars().count() < 300, "{}", e.message);
            assert!(!e.message.chars().any(is_control));
        }
        assert!(shown(&"\u{1b}".repeat(100)).chars().count() <= 65);
    }

    #[test]
    fn server_messages() {
        assert_eq!(
            server_message("Invalid certificate."),
            "Invalid certificate."
        );
        assert_eq!(server_message("a\r\n\tb\u{1b}[31mc\0d"), "a b[31mcd");
        assert_eq!(server_message("  x  "), "x");
        assert_eq!(server_message("\u{202e}evil"), "evil");
        let long = server_message(&"é".repeat(100_000));
        assert_eq!(long.chars().count(), MAX_SERVER_MESSAGE_CHARS + 1);
        assert!(long.ends_with('…'));
        let exact = "m".repeat(MAX_SERVER_MESSAGE_CHARS);
        assert_eq!(server_message(&exact), exact);
        assert_eq!(server_message(""), "");
    }
}
