//! Shared access signatures for the DPS device API (PROTOCOL.md 5.2) and
//! group-key derivation (5.3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::hmac;
use zeroize::Zeroizing;

use super::{percent_encode, percent_encode_lower};
use crate::error::{Error, ErrorKind, Result};

/// Decodes a base64 symmetric key and checks its length (16-64 bytes, DOC-SYMM).
/// The decoded bytes are zeroized when dropped.
///
/// Whitespace: ASCII spaces, tabs, CR and LF before and after the key are
/// trimmed (a key read from a file or pasted from the portal often ends with
/// a line break); whitespace inside the key, and any other character outside
/// the base64 alphabet, is refused. The key never appears in the message.
pub fn decode_key(base64_key: &str) -> Result<Zeroizing<Vec<u8>>> {
    let trimmed = base64_key.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    if trimmed.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            "the symmetric key is empty",
        ));
    }
    if trimmed.chars().any(char::is_whitespace) {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            "the symmetric key is not valid base64: it has whitespace inside it (only surrounding spaces and line breaks are ignored)",
        ));
    }
    let key = Zeroizing::new(B64.decode(trimmed).map_err(|_| {
        Error::new(
            ErrorKind::InvalidKey,
            "the symmetric key is not valid base64",
        )
    })?);
    if !(16..=64).contains(&key.len()) {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!(
                "the symmetric key decodes to {} bytes; DPS keys are 16-64 bytes",
                key.len()
            ),
        ));
    }
    Ok(key)
}

/// `base64(HMAC-SHA256(key, data))`.
pub fn sign(key: &[u8], data: &[u8]) -> String {
    B64.encode(hmac_sha256(key, data))
}

/// Derives a device key from an enrollment group key:
/// `base64(HMAC-SHA256(base64decode(group_key), registration_id))`.
/// The result is zeroized when dropped.
pub fn derive_device_key(group_key: &[u8], registration_id: &str) -> Zeroizing<String> {
    Zeroizing::new(sign(group_key, registration_id.as_bytes()))
}

/// The `sr` (resource URI) value this client signs and sends: the lowercase
/// URL-encoding of the lowercase `{idScope}/registrations/{registrationId}`,
/// as the DPS documentation recommends.
pub fn resource_uri(id_scope: &str, registration_id: &str) -> String {
    let raw = format!("{id_scope}/registrations/{registration_id}").to_ascii_lowercase();
    percent_encode_lower(&raw)
}

/// The string a SAS signature covers: `"<sr>\n<expiry>"`.
pub fn string_to_sign(sr: &str, expiry_unix: u64) -> String {
    format!("{sr}\n{expiry_unix}")
}

/// Assembles `SharedAccessSignature sr=<sr>&sig=<urlenc base64 mac>&se=<expiry>[&skn=<skn>]`
/// from the MAC over [`string_to_sign`]. The result is a secret and is zeroized when dropped.
pub fn assemble(
    sr: &str,
    mac: &[u8; 32],
    expiry_unix: u64,
    skn: Option<&str>,
) -> Zeroizing<String> {
    let sig = Zeroizing::new(B64.encode(mac));
    let mut t = Zeroizing::new(format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry_unix}",
        percent_encode(&sig)
    ));
    if let Some(skn) = skn {
        t.push_str("&skn=");
        t.push_str(&percent_encode(skn));
    }
    t
}

/// The `sr` of an IoT Hub device token: `<hub>/devices/<deviceId>`, URL-encoded with the case
/// kept (PROTOCOL.md V7).
pub fn iot_hub_resource_uri(hub: &str, device_id: &str) -> String {
    percent_encode(&format!("{hub}/devices/{device_id}"))
}

/// `HMAC-SHA256(key, data)` with an in-memory key.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(&k, data).as_ref());
    out
}

/// A token signed with an in-memory key, for an already-encoded resource URI.
pub fn token_for_resource(
    key: &[u8],
    sr: &str,
    expiry_unix: u64,
    skn: Option<&str>,
) -> Zeroizing<String> {
    let mac = Zeroizing::new(hmac_sha256(key, string_to_sign(sr, expiry_unix).as_bytes()));
    assemble(sr, &mac, expiry_unix, skn)
}

/// The DPS registration token for `id_scope/registrations/registration_id`, in-memory key.
pub fn token(
    key: &[u8],
    id_scope: &str,
    registration_id: &str,
    expiry_unix: u64,
) -> Zeroizing<String> {
    token_for_resource(
        key,
        &resource_uri(id_scope, registration_id),
        expiry_unix,
        Some("registration"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROTOCOL.md section 7.
    #[test]
    fn v1_group_key_derivation() {
        let group = decode_key("8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==").unwrap();
        assert_eq!(
            derive_device_key(&group, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6").as_str(),
            "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
        );
    }

    #[test]
    fn v2_v3_hmac_primitive() {
        let k = B64
            .decode("NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=")
            .unwrap();
        assert_eq!(
            sign(&k, b"sign this message"),
            "8NJRMT83CcplGrAGaUVIUM/md5914KpWVNngSVoF9/M="
        );
        assert_eq!(
            sign(b"password", b"string-to-sign"),
            "o1n1hiIVgzVA2+krq9ty1Z4xsIJKJZP3dYT8MOi65Y4="
        );
    }

    #[test]
    fn v4_token_layout() {
        assert_eq!(
            token_for_resource(b"password", "uri", 12345, None).as_str(),
            "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345"
        );
    }

    #[test]
    fn v7_iot_hub_token() {
        let key = decode_key("18RQk/hOPJR9EbsJlk2j8WA6vWaj/yi+oaYg7zmxfQNdOyMSu+SJ8O7TSlZhDJCYmn4rzEiVKIzNiVAWjLxrGA==").unwrap();
        let sr = iot_hub_resource_uri("MyExampleHub.azure-devices.net", "my-symkey-device");
        assert_eq!(
            sr,
            "MyExampleHub.azure-devices.net%2Fdevices%2Fmy-symkey-device"
        );
        assert_eq!(
            token_for_resource(&key, &sr, 1663119026, None).as_str(),
            "SharedAccessSignature sr=MyExampleHub.azure-devices.net%2Fdevices%2Fmy-symkey-device&sig=f%2BwW8XOKeJOtiPc9Iwjc4OpExvPM7NlhM9qxN2a1aAM%3D&se=1663119026"
        );
    }

    #[test]
    fn v5_string_to_sign_layout() {
        assert_eq!(
            resource_uri("0neFEEDC0DE", "myRegistrationId"),
            // lowercased as the docs recommend; V5 keeps the case, the encoding is the same
            "0nefeedc0de%2fregistrations%2fmyregistrationid"
        );
    }

    #[test]
    fn v6_full_token() {
        let key = decode_key("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=").unwrap();
        assert_eq!(
            token(
                &key,
                "0ne00111111",
                "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
                1_700_000_000
            )
            .as_str(),
            "SharedAccessSignature sr=0ne00111111%2fregistrations%2fsn-007-888-abc-mac-a1-b2-c3-d4-e5-f6&sig=LwAx%2BRfQDq37RAHvptYP8R3382xvZ%2FBntAGlh8Wmu18%3D&se=1700000000&skn=registration"
        );
        let key2 = decode_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        assert_eq!(
            sign(
                &key2,
                b"0ne0000abcd%2fregistrations%2fdevice-01\n1700000000"
            ),
            // V6 second set lists the uppercase-scope variant; lowercase scope is what we send.
            sign(
                &key2,
                format!("{}\n1700000000", resource_uri("0ne0000ABCD", "device-01")).as_bytes()
            )
        );
        assert_eq!(
            sign(
                &key2,
                b"0ne0000ABCD%2fregistrations%2fdevice-01\n1700000000"
            ),
            "Nu06aOzV00WM4WTpi3QonoPLPIXOulI9hQ9nCo5hW58="
        );
    }

    #[test]
    fn key_validation() {
        assert_eq!(
            decode_key("not base64!").unwrap_err().kind,
            ErrorKind::InvalidKey
        );
        assert_eq!(decode_key("AAAA").unwrap_err().kind, ErrorKind::InvalidKey);
        assert!(decode_key(&B64.encode([7u8; 64])).is_ok());
        assert!(decode_key(&B64.encode([7u8; 65])).is_err());
    }

    #[test]
    fn key_whitespace() {
        let k = B64.encode([7u8; 32]);
        let plain = decode_key(&k).unwrap();
        for padded in [
            format!(" {k}"),
            format!("{k}\n"),
            format!("{k}\r\n"),
            format!("\t{k} \n"),
        ] {
            assert_eq!(*decode_key(&padded).unwrap(), *plain, "{padded:?}");
        }
        for inner in [
            format!("{} {}", &k[..10], &k[10..]),
            format!("{}\n{}", &k[..10], &k[10..]),
            format!("{}\t{}", &k[..10], &k[10..]),
        ] {
            let e = decode_key(&inner).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidKey);
            assert!(e.message.contains("whitespace inside"), "{}", e.message);
            assert!(!e.message.contains(&k[..10]));
        }
        // Only ASCII whitespace is trimmed: a no-break space is refused.
        let e = decode_key(&format!("{k}\u{a0}")).unwrap_err();
        assert!(e.message.contains("whitespace inside"), "{}", e.message);
        for empty in ["", "  ", "\n"] {
            assert!(decode_key(empty).unwrap_err().message.contains("empty"));
        }
    }
}
