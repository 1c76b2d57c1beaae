//! The DPS device protocol, pure and I/O-free: identifier rules, URL paths,
//! SAS tokens, group key derivation and the JSON wire types.
//!
//! Everything here follows `PROTOCOL.md` of the project; section numbers in the
//! comments refer to it.

pub mod ids;
pub mod sas;
pub mod validate;
pub mod wire;

/// The global device endpoint (PROTOCOL.md 1.1).
pub const DEFAULT_HOST: &str = "global.azure-devices-provisioning.net";
/// The default `api-version` (PROTOCOL.md 1.3: the recommended client default).
pub const DEFAULT_API_VERSION: &str = "2021-06-01";
/// The `api-version` sent when a CSR is set and the caller did not choose one (PROTOCOL.md 1.3).
pub const CSR_API_VERSION: &str = "2025-07-01-preview";

/// Percent-encodes every byte outside the RFC 3986 unreserved set
/// (`A-Z a-z 0-9 - . _ ~`), with uppercase hex digits.
pub fn percent_encode(s: &str) -> String {
    percent_encode_with(s, b"0123456789ABCDEF")
}

/// Like [`percent_encode`] but with lowercase hex digits, as the C SDK and the
/// DPS documentation ("lower case URL-encoding") write the SAS `sr`.
pub fn percent_encode_lower(s: &str) -> String {
    percent_encode_with(s, b"0123456789abcdef")
}

fn percent_encode_with(s: &str, hex: &[u8; 16]) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(hex[usize::from(b >> 4)] as char);
            out.push(hex[usize::from(b & 15)] as char);
        }
    }
    out
}

/// `/{idScope}/registrations/{registrationId}/register?api-version=...`
pub fn register_path(
    id_scope: &str,
    registration_id: &str,
    api_version: &str,
    force: bool,
) -> String {
    let mut p = format!(
        "/{}/registrations/{}/register?api-version={}",
        percent_encode(id_scope),
        percent_encode(registration_id),
        percent_encode(api_version)
    );
    if force {
        p.push_str("&forceRegistration=true");
    }
    p
}

/// `/{idScope}/registrations/{registrationId}/operations/{operationId}?api-version=...`
pub fn operation_path(
    id_scope: &str,
    registration_id: &str,
    operation_id: &str,
    api_version: &str,
) -> String {
    format!(
        "/{}/registrations/{}/operations/{}?api-version={}",
        percent_encode(id_scope),
        percent_encode(registration_id),
        percent_encode(operation_id),
        percent_encode(api_version)
    )
}

/// `/{idScope}/registrations/{registrationId}?api-version=...` (status lookup, POST).
pub fn lookup_path(id_scope: &str, registration_id: &str, api_version: &str) -> String {
    format!(
        "/{}/registrations/{}?api-version={}",
        percent_encode(id_scope),
        percent_encode(registration_id),
        percent_encode(api_version)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_bytes() {
        assert_eq!(percent_encode("a/b:c d+é"), "a%2Fb%3Ac%20d%2B%C3%A9");
        assert_eq!(
            percent_encode_lower("0ne/registrations/x"),
            "0ne%2fregistrations%2fx"
        );
        assert_eq!(percent_encode("A-z_0.9~"), "A-z_0.9~");
    }

    #[test]
    fn builds_paths() {
        assert_eq!(
            register_path("0ne00000001", "dev:1", "2021-06-01", false),
            "/0ne00000001/registrations/dev%3A1/register?api-version=2021-06-01"
        );
        assert_eq!(
            register_path("0ne00000001", "d", "2021-06-01", true),
            "/0ne00000001/registrations/d/register?api-version=2021-06-01&forceRegistration=true"
        );
        assert_eq!(
            operation_path("s", "d", "5.316aac5bdc130deb.b1e02da8", "2019-03-31"),
            "/s/registrations/d/operations/5.316aac5bdc130deb.b1e02da8?api-version=2019-03-31"
        );
        assert_eq!(
            lookup_path("s", "d", "v"),
            "/s/registrations/d?api-version=v"
        );
    }
}
