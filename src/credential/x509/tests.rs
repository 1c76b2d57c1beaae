use super::*;
use rustls_pki_types::pem::PemObject;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/x509/", $name)).as_slice()
    };
}

const PASS: &[u8] = b"fixture-pass";

fn ok(cert: &[u8], key: &[u8], password: Option<&[u8]>) -> X509Credential {
    match X509Credential::from_pem(cert, key, password) {
        Ok(c) => c,
        Err(e) => panic!("expected a credential, got: {e}"),
    }
}

fn err(cert: &[u8], key: &[u8], password: Option<&[u8]>) -> CredentialError {
    match X509Credential::from_pem(cert, key, password) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

fn assert_single(cred: &X509Credential, cn: &str) {
    assert_eq!(cred.leaf_common_name().as_deref(), Some(cn));
    assert_eq!(cred.chain().len(), 1);
    let ck = cred.certified_key();
    assert_eq!(ck.cert.len(), 1);
    assert!(ck.keys_match().is_ok());
}

#[test]
fn rsa_pkcs8_and_pkcs1() {
    let cert = fixture!("rsa.cert.pem");
    assert_single(&ok(cert, fixture!("rsa.key.pem"), None), "x509-rsa-device");
    assert_single(
        &ok(cert, fixture!("rsa.pkcs1.key.pem"), None),
        "x509-rsa-device",
    );
}

#[test]
fn p256_sec1_and_pkcs8() {
    let cert = fixture!("p256.cert.pem");
    assert_single(
        &ok(cert, fixture!("p256.sec1.key.pem"), None),
        "x509-p256-device",
    );
    assert_single(
        &ok(cert, fixture!("p256.key.pem"), None),
        "x509-p256-device",
    );
    // A password is ignored for a plaintext key.
    assert_single(
        &ok(cert, fixture!("p256.key.pem"), Some(PASS)),
        "x509-p256-device",
    );
}

#[test]
fn p384_and_ed25519() {
    let p384 = ok(
        fixture!("p384.cert.pem"),
        fixture!("p384.sec1.key.pem"),
        None,
    );
    assert_single(&p384, "x509-p384-device");
    let ed = ok(
        fixture!("ed25519.cert.pem"),
        fixture!("ed25519.key.pem"),
        None,
    );
    assert_single(&ed, "x509-ed25519-device");
}

/// The signing key of every supported key type offers a TLS signature scheme and signs.
#[test]
fn every_key_type_can_sign() {
    use rustls::SignatureScheme as S;
    let offered = [
        S::ED25519,
        S::ECDSA_NISTP384_SHA384,
        S::ECDSA_NISTP256_SHA256,
        S::RSA_PSS_SHA256,
        S::RSA_PKCS1_SHA256,
    ];
    let cases: [(&[u8], &[u8], S); 5] = [
        (
            fixture!("rsa.cert.pem"),
            fixture!("rsa.pkcs1.key.pem"),
            S::RSA_PSS_SHA256,
        ),
        (
            fixture!("p256.cert.pem"),
            fixture!("p256.sec1.key.pem"),
            S::ECDSA_NISTP256_SHA256,
        ),
        (
            fixture!("p384.cert.pem"),
            fixture!("p384.sec1.key.pem"),
            S::ECDSA_NISTP384_SHA384,
        ),
        (
            fixture!("ed25519.cert.pem"),
            fixture!("ed25519.key.pem"),
            S::ED25519,
        ),
        (
            fixture!("chain.pem"),
            fixture!("chain-leaf.key.pem"),
            S::ECDSA_NISTP256_SHA256,
        ),
    ];
    for (cert, key, expected) in cases {
        let ck = ok(cert, key, None).certified_key();
        let signer = ck.key.choose_scheme(&offered).expect("a scheme");
        assert_eq!(signer.scheme(), expected);
        assert!(
            !signer
                .sign(b"handshake transcript")
                .expect("signature")
                .is_empty()
        );
    }
}

#[test]
fn chain_leaf_first_with_intermediate() {
    let cred = ok(fixture!("chain.pem"), fixture!("chain-leaf.key.pem"), None);
    assert_eq!(
        cred.leaf_common_name().as_deref(),
        Some("x509-chain-device")
    );
    assert_eq!(cred.chain().len(), 2);
    let int = CertificateDer::from_pem_slice(fixture!("chain-int.cert.pem")).unwrap();
    assert_eq!(cred.chain()[1], int);
    assert_eq!(cred.certified_key().cert.len(), 2);
}

#[test]
fn chain_in_wrong_order_is_a_mismatch() {
    let mut reversed = fixture!("chain-int.cert.pem").to_vec();
    reversed.extend_from_slice(fixture!("chain-leaf.cert.pem"));
    let e = err(&reversed, fixture!("chain-leaf.key.pem"), None);
    assert_eq!(e, CredentialError::KeyMismatch);
}

#[test]
fn combined_cert_and_key_file() {
    let mut both = fixture!("p256.key.pem").to_vec();
    both.extend_from_slice(fixture!("p256.cert.pem"));
    assert_single(&ok(&both, &both, None), "x509-p256-device");
}

#[test]
fn crlf_line_endings() {
    let crlf = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace('\n', "\r\n")
            .into_bytes()
    };
    let cert = crlf(fixture!("p256.cert.pem"));
    assert_single(
        &ok(&cert, &crlf(fixture!("p256.key.pem")), None),
        "x509-p256-device",
    );
    if cfg!(feature = "encrypted-keys") {
        let key = crlf(fixture!("p256.enc.key.pem"));
        assert_single(&ok(&cert, &key, Some(PASS)), "x509-p256-device");
    }
}

#[cfg(feature = "encrypted-keys")]
#[test]
fn encrypted_pkcs8() {
    let rsa = ok(
        fixture!("rsa.cert.pem"),
        fixture!("rsa.enc.key.pem"),
        Some(PASS),
    );
    assert_single(&rsa, "x509-rsa-device");
    let cert = fixture!("p256.cert.pem");
    assert_single(
        &ok(cert, fixture!("p256.enc.key.pem"), Some(PASS)),
        "x509-p256-device",
    );
    let scrypt = ok(cert, fixture!("p256.scrypt.key.pem"), Some(PASS));
    assert_single(&scrypt, "x509-p256-device");
}

#[cfg(feature = "encrypted-keys")]
#[test]
fn encrypted_pkcs8_wrong_password() {
    let cert = fixture!("p256.cert.pem");
    for key in [
        fixture!("p256.enc.key.pem"),
        fixture!("p256.scrypt.key.pem"),
    ] {
        for pw in [b"wrong".as_slice(), b"", b"fixture-pas", b"fixture-pass "] {
            assert_eq!(err(cert, key, Some(pw)), CredentialError::WrongKeyPassword);
        }
    }
    let e = err(
        fixture!("rsa.cert.pem"),
        fixture!("rsa.enc.key.pem"),
        Some(b"nope"),
    );
    assert_eq!(e, CredentialError::WrongKeyPassword);
}

#[cfg(not(feature = "encrypted-keys"))]
#[test]
fn encrypted_pkcs8_without_feature() {
    let e = err(
        fixture!("p256.cert.pem"),
        fixture!("p256.enc.key.pem"),
        Some(PASS),
    );
    assert!(matches!(&e, CredentialError::UnsupportedKey(m) if m.contains("encrypted-keys")));
}

#[test]
fn encrypted_key_needs_password() {
    let e = err(
        fixture!("p256.cert.pem"),
        fixture!("p256.enc.key.pem"),
        None,
    );
    assert_eq!(e, CredentialError::KeyPasswordRequired);
}

#[test]
fn legacy_openssl_encryption_is_explained() {
    let key = fixture!("p256.legacy-enc.key.pem");
    let e = err(fixture!("p256.cert.pem"), key, Some(PASS));
    assert!(matches!(&e, CredentialError::UnsupportedKey(m) if m.contains("Proc-Type")));
}

#[test]
fn unsupported_key_types() {
    let e = err(
        fixture!("rsa1024.cert.pem"),
        fixture!("rsa1024.key.pem"),
        None,
    );
    assert!(
        matches!(&e, CredentialError::UnsupportedKey(m) if m.contains("1024 bits")),
        "{e}"
    );
    let e = err(
        fixture!("p521.cert.pem"),
        fixture!("p521.sec1.key.pem"),
        None,
    );
    assert!(
        matches!(&e, CredentialError::UnsupportedKey(m) if m.contains("P-521")),
        "{e}"
    );
    let dsa = b"-----BEGIN DSA PRIVATE KEY-----\nMAA=\n-----END DSA PRIVATE KEY-----\n";
    let e = err(fixture!("p256.cert.pem"), dsa, None);
    assert!(
        matches!(&e, CredentialError::UnsupportedKey(m) if m.contains("DSA")),
        "{e}"
    );
}

#[test]
fn mismatched_pairs() {
    let e = err(
        fixture!("p256.cert.pem"),
        fixture!("mismatch.key.pem"),
        None,
    );
    assert_eq!(e, CredentialError::KeyMismatch);
    let e = err(fixture!("rsa.cert.pem"), fixture!("p256.key.pem"), None);
    assert_eq!(e, CredentialError::KeyMismatch);
    let e = err(
        fixture!("p256.cert.pem"),
        fixture!("p384.sec1.key.pem"),
        None,
    );
    assert_eq!(e, CredentialError::KeyMismatch);
}

#[test]
fn no_certificate() {
    let key = fixture!("p256.key.pem");
    assert_eq!(err(b"", key, None), CredentialError::NoCertificate);
    assert_eq!(err(key, key, None), CredentialError::NoCertificate);
    assert_eq!(
        err(b"hello world", key, None),
        CredentialError::NoCertificate
    );
}

#[test]
fn bad_certificate() {
    let key = fixture!("p256.key.pem");
    let bad_b64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        err(bad_b64, key, None),
        CredentialError::BadCertificate(_)
    ));
    let not_x509 = b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        err(not_x509, key, None),
        CredentialError::BadCertificate(_)
    ));
    let empty = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        err(empty, key, None),
        CredentialError::BadCertificate(_)
    ));
    // Issue 14 item 8: a truncated file is named by its block label, not by byte values.
    let unterminated = b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n";
    assert_eq!(
        err(unterminated, key, None).to_string(),
        "malformed certificate: the CERTIFICATE block has no END line (a truncated file?)"
    );
    let cert = fixture!("p256.cert.pem");
    let truncated_key = &fixture!("p256.key.pem")[..60];
    assert_eq!(
        err(cert, truncated_key, None).to_string(),
        "malformed private key: the PRIVATE KEY block has no END line (a truncated file?)"
    );
    // A DER file given as PEM says so (issue 14 item 8).
    let cert_der = pem_body_der(fixture!("p256.cert.pem"));
    let m = err(&cert_der, key, None).to_string();
    assert!(m.contains("this is DER (binary), not PEM"), "{m}");
    let key_der = pem_body_der(fixture!("p256.key.pem"));
    let m = err(cert, &key_der, None).to_string();
    assert!(
        m.contains("this is DER (binary), not PEM") && m.contains("openssl pkey"),
        "{m}"
    );
    // A label that is not a plain one is not echoed.
    let odd = b"-----BEGIN CERT\x1b[31m-----\nMAMCAQE=\n";
    let m = err(odd, key, None).to_string();
    assert!(
        !m.contains('\x1b') && m.contains("a PEM block has no END line"),
        "{m}"
    );
    // A malformed second certificate is reported too.
    let mut chain = fixture!("p256.cert.pem").to_vec();
    chain.extend_from_slice(not_x509);
    let e = err(&chain, key, None);
    assert!(
        matches!(&e, CredentialError::BadCertificate(m) if m.contains("#2")),
        "{e}"
    );
}

#[test]
fn no_private_key() {
    let cert = fixture!("p256.cert.pem");
    assert_eq!(err(cert, b"", None), CredentialError::NoPrivateKey);
    assert_eq!(err(cert, cert, None), CredentialError::NoPrivateKey);
    assert_eq!(
        err(cert, b"\x00\xff garbage", None),
        CredentialError::NoPrivateKey
    );
}

#[test]
fn bad_private_key() {
    let cert = fixture!("p256.cert.pem");
    let bad_b64 = b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
    assert!(matches!(
        err(cert, bad_b64, None),
        CredentialError::BadPrivateKey(_)
    ));
    let not_key = b"-----BEGIN PRIVATE KEY-----\nMAMCAQE=\n-----END PRIVATE KEY-----\n";
    assert!(matches!(
        err(cert, not_key, None),
        CredentialError::BadPrivateKey(_)
    ));
    let enc =
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAMCAQE=\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let e = err(cert, enc, Some(PASS));
    assert!(matches!(
        e,
        CredentialError::BadPrivateKey(_) | CredentialError::UnsupportedKey(_)
    ));
}

#[test]
fn debug_and_display_leak_no_secrets() {
    let cred = ok(fixture!("p256.cert.pem"), fixture!("p256.key.pem"), None);
    assert_eq!(
        format!("{cred:?}"),
        r#"X509Credential { leaf_common_name: Some("x509-p256-device"), chain_len: 1, .. }"#
    );
    let key_pem = String::from_utf8_lossy(fixture!("p256.key.pem")).into_owned();
    let key_b64_line = key_pem.lines().nth(1).unwrap_or_default();
    let errors = [
        err(
            fixture!("p256.cert.pem"),
            fixture!("p256.enc.key.pem"),
            Some(b"secret-pw"),
        ),
        err(
            fixture!("p256.cert.pem"),
            fixture!("mismatch.key.pem"),
            None,
        ),
        err(fixture!("p256.cert.pem"), &key_pem.as_bytes()[..120], None),
    ];
    for e in errors {
        for s in [format!("{e}"), format!("{e:?}")] {
            assert!(!s.contains("secret-pw") && !s.contains(key_b64_line), "{s}");
            assert!(!s.contains('\n'), "{s}");
        }
    }
}

#[test]
fn every_error_displays_one_line() {
    let all = [
        CredentialError::NoCertificate,
        CredentialError::BadCertificate("x".into()),
        CredentialError::NoPrivateKey,
        CredentialError::BadPrivateKey("x".into()),
        CredentialError::UnsupportedKey("x".into()),
        CredentialError::KeyPasswordRequired,
        CredentialError::WrongKeyPassword,
        CredentialError::KeyMismatch,
        CredentialError::Pkcs12("x".into()),
        CredentialError::Pkcs12WrongPassword,
    ];
    for e in all {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'));
    }
}

/// Certificate PEM, key PEM, key password.
type PemCase = (&'static [u8], &'static [u8], Option<&'static [u8]>);

/// Truncations and single-byte corruptions of valid inputs never panic.
#[test]
fn garbage_and_truncated_pem_do_not_panic() {
    let pairs: [PemCase; 4] = [
        (fixture!("chain.pem"), fixture!("chain-leaf.key.pem"), None),
        (
            fixture!("rsa.cert.pem"),
            fixture!("rsa.pkcs1.key.pem"),
            None,
        ),
        (
            fixture!("p384.cert.pem"),
            fixture!("p384.sec1.key.pem"),
            None,
        ),
        (
            fixture!("p256.cert.pem"),
            fixture!("p256.scrypt.key.pem"),
            Some(PASS),
        ),
    ];
    for (cert, key, pw) in pairs {
        for len in (0..cert.len()).step_by(13) {
            let _ = X509Credential::from_pem(&cert[..len], key, pw);
        }
        for len in (0..key.len()).step_by(11) {
            let _ = X509Credential::from_pem(cert, &key[..len], pw);
        }
    }
    // Corrupt decoded DER (re-encoded as PEM) so the DER readers see damaged structures.
    let cert_der = CertificateDer::from_pem_slice(fixture!("p256.cert.pem")).unwrap();
    let key_der = PrivateKeyDer::from_pem_slice(fixture!("p256.key.pem")).unwrap();
    for i in 0..cert_der.len() {
        let mut bad = cert_der.to_vec();
        bad[i] ^= 0x80;
        let _ =
            X509Credential::from_pem(&to_pem("CERTIFICATE", &bad), fixture!("p256.key.pem"), None);
        bad.truncate(i);
        let _ =
            X509Credential::from_pem(&to_pem("CERTIFICATE", &bad), fixture!("p256.key.pem"), None);
    }
    for i in 0..key_der.secret_der().len() {
        let mut bad = key_der.secret_der().to_vec();
        bad[i] ^= 0x80;
        let _ = X509Credential::from_pem(
            fixture!("p256.cert.pem"),
            &to_pem("PRIVATE KEY", &bad),
            None,
        );
        bad.truncate(i);
        let _ = X509Credential::from_pem(
            fixture!("p256.cert.pem"),
            &to_pem("PRIVATE KEY", &bad),
            None,
        );
    }
    #[cfg(feature = "encrypted-keys")]
    {
        // PBKDF2 (cheap in debug builds): every byte. scrypt (slow in debug builds): only
        // the bytes before the salt (structure and algorithm identifiers), and truncations.
        let pbkdf2 = pem_body_der(fixture!("p256.enc.key.pem"));
        let scrypt = pem_body_der(fixture!("p256.scrypt.key.pem"));
        for (enc, flip_until) in [(&pbkdf2, pbkdf2.len()), (&scrypt, 32)] {
            for i in 0..enc.len() {
                let mut bad = enc.clone();
                if i < flip_until {
                    bad[i] ^= 0x41;
                    let pem = to_pem("ENCRYPTED PRIVATE KEY", &bad);
                    let _ = X509Credential::from_pem(fixture!("p256.cert.pem"), &pem, Some(PASS));
                }
                bad.truncate(i);
                let pem = to_pem("ENCRYPTED PRIVATE KEY", &bad);
                let _ = X509Credential::from_pem(fixture!("p256.cert.pem"), &pem, Some(PASS));
            }
        }
    }
    for junk in [
        &b"-----BEGIN "[..],
        b"-----BEGIN PRIVATE KEY-----",
        b"-----BEGIN PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n",
        b"-----BEGIN CERTIFICATE----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\xff\xfe\x00-----BEGIN\n",
    ] {
        let _ = X509Credential::from_pem(junk, junk, Some(b""));
        let _ = X509Credential::from_pem(fixture!("p256.cert.pem"), junk, None);
    }
}

/// Scrypt parameters that would panic in pkcs5 (N = 0) or exhaust memory are refused.
#[cfg(feature = "encrypted-keys")]
#[test]
fn hostile_scrypt_parameters_are_refused() {
    let der = pem_body_der(fixture!("p256.scrypt.key.pem"));
    // openssl writes N = 16384 as INTEGER 02 02 40 00; find and replace it.
    let pos = der
        .windows(4)
        .position(|w| w == [0x02, 0x02, 0x40, 0x00])
        .unwrap();
    for (n_hi, n_lo) in [(0x00u8, 0x00u8), (0x40, 0x01), (0x7f, 0xff)] {
        let mut bad = der.clone();
        bad[pos + 2] = n_hi;
        bad[pos + 3] = n_lo;
        let pem = to_pem("ENCRYPTED PRIVATE KEY", &bad);
        let e = err(fixture!("p256.cert.pem"), &pem, Some(PASS));
        assert!(
            matches!(
                e,
                CredentialError::BadPrivateKey(_) | CredentialError::UnsupportedKey(_)
            ),
            "{e}"
        );
    }
}

fn to_pem(label: &str, der: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n").into_bytes()
}

#[cfg(feature = "encrypted-keys")]
fn pem_body_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn der_reader_edge_cases() {
    assert!(der::read(&[]).is_none());
    assert!(der::read(&[0x30]).is_none());
    assert!(der::read(&[0x30, 0x80, 0x00, 0x00]).is_none()); // indefinite length
    assert!(der::read(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none()); // 5 length bytes
    assert!(der::read(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none()); // too long
    assert!(der::read(&[0x1f, 0x01, 0x00]).is_none()); // high tag number
    assert_eq!(
        der::read(&[0x04, 0x01, 0xaa, 0x05]),
        Some((0x04, &[0xaa][..], &[0x05][..]))
    );
    assert!(!der::is_certificate(&[0x30, 0x00]));
    assert_eq!(der::subject_common_name(&[0x30, 0x00]), None);
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match u8::try_from(content.len()) {
        Ok(n) if n < 0x80 => out.push(n),
        Ok(n) => out.extend([0x81, n]),
        Err(_) => out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A structurally valid certificate whose subject has the given (OID, tag, value) attributes.
fn synthetic_cert(attrs: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
    let rdns: Vec<u8> = attrs
        .iter()
        .flat_map(|(oid, tag, value)| {
            let atv = [tlv(0x06, oid), tlv(*tag, value)].concat();
            tlv(0x31, &tlv(0x30, &atv))
        })
        .collect();
    let tbs = [
        tlv(0xa0, &tlv(0x02, &[2])),
        tlv(0x02, &[1]),
        tlv(0x30, &[]),
        tlv(0x30, &[]),
        tlv(0x30, &[]),
        tlv(0x30, &rdns),
        tlv(0x30, &[]),
    ]
    .concat();
    tlv(
        0x30,
        &[tlv(0x30, &tbs), tlv(0x30, &[]), tlv(0x03, &[0])].concat(),
    )
}

#[test]
fn common_name_string_types() {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    let cn = |attrs: &[(&[u8], u8, &[u8])]| {
        let cert = synthetic_cert(attrs);
        assert!(der::is_certificate(&cert));
        der::subject_common_name(&cert)
    };
    assert_eq!(
        cn(&[(CN, 0x0c, "dévice-1".as_bytes())]).as_deref(),
        Some("dévice-1")
    );
    assert_eq!(cn(&[(CN, 0x13, b"dev-2")]).as_deref(), Some("dev-2"));
    assert_eq!(cn(&[(CN, 0x16, b"dev-3")]).as_deref(), Some("dev-3"));
    assert_eq!(cn(&[(CN, 0x14, b"d\xe9v")]).as_deref(), Some("dév"));
    assert_eq!(
        cn(&[(CN, 0x1e, &[0, b'b', 0x00, 0xe9])]).as_deref(),
        Some("bé")
    );
    assert_eq!(cn(&[(CN, 0x1c, &[0, 0, 0, b'u'])]).as_deref(), Some("u"));
    assert_eq!(
        cn(&[
            (O, 0x0c, b"org"),
            (CN, 0x0c, b"first"),
            (CN, 0x0c, b"second")
        ])
        .as_deref(),
        Some("first")
    );
    assert_eq!(cn(&[(O, 0x0c, b"org")]), None);
    assert_eq!(cn(&[]), None);
    // Invalid encodings give no CN rather than a panic or garbage.
    assert_eq!(cn(&[(CN, 0x0c, &[0xff, 0xfe])]), None);
    assert_eq!(cn(&[(CN, 0x1e, &[0, b'a', 0])]), None);
    assert_eq!(cn(&[(CN, 0x1e, &[0xd8, 0x00])]), None); // lone surrogate
    assert_eq!(cn(&[(CN, 0x1c, &[0, 0x11, 0, 0])]), None); // beyond U+10FFFF
    assert_eq!(cn(&[(CN, 0x04, b"octets")]), None);
    assert_eq!(der::subject_common_name(b"not a cert"), None);
}

#[cfg(feature = "pkcs12")]
mod pkcs12 {
    use super::*;

    fn ok12(der: &[u8], pw: &str) -> X509Credential {
        match X509Credential::from_pkcs12(der, pw) {
            Ok(c) => c,
            Err(e) => panic!("expected a credential, got: {e}"),
        }
    }

    fn err12(der: &[u8], pw: &str) -> CredentialError {
        match X509Credential::from_pkcs12(der, pw) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn modern_rsa() {
        assert_single(
            &ok12(fixture!("rsa.p12"), "fixture-pass"),
            "x509-rsa-device",
        );
    }

    #[test]
    fn legacy_p256() {
        assert_single(
            &ok12(fixture!("p256-legacy.p12"), "fixture-pass"),
            "x509-p256-device",
        );
    }

    #[test]
    fn empty_password() {
        assert_single(&ok12(fixture!("p256-nopass.p12"), ""), "x509-p256-device");
        assert_eq!(
            err12(fixture!("p256-nopass.p12"), "x"),
            CredentialError::Pkcs12WrongPassword
        );
    }

    #[test]
    fn chain_excludes_root() {
        let cred = ok12(fixture!("chain.p12"), "fixture-pass");
        assert_eq!(
            cred.leaf_common_name().as_deref(),
            Some("x509-chain-device")
        );
        let pem_chain = ok(fixture!("chain.pem"), fixture!("chain-leaf.key.pem"), None);
        assert_eq!(cred.chain(), pem_chain.chain());
    }

    #[test]
    fn wrong_password() {
        for f in [
            fixture!("rsa.p12"),
            fixture!("p256-legacy.p12"),
            fixture!("chain.p12"),
        ] {
            assert_eq!(err12(f, "wrong"), CredentialError::Pkcs12WrongPassword);
            // Issue 14 item 8: no password is not a wrong password.
            assert_eq!(err12(f, ""), CredentialError::Pkcs12PasswordRequired);
        }
    }

    #[test]
    fn no_key() {
        let e = err12(fixture!("nokey.p12"), "fixture-pass");
        assert_eq!(e, CredentialError::Pkcs12NoKey);
        assert!(
            e.to_string()
                .contains("holds certificates but no private key"),
            "{e}"
        );
    }

    #[test]
    fn garbage() {
        let message = |der: &[u8]| match err12(der, "x") {
            CredentialError::Pkcs12(m) => m,
            other => panic!("expected a PKCS#12 error, got {other:?}"),
        };
        // Issue 14 item 8: the BER hint only where BER is the likely cause.
        assert_eq!(
            message(b""),
            "the input is empty (expected the bytes of a .pfx file)"
        );
        let m = message(b"not a pfx");
        assert!(m.starts_with("malformed DER"), "{m}");
        assert!(!m.contains("BER"), "{m}");
        assert!(
            message(fixture!("p256.cert.pem")).starts_with("this is PEM text"),
            "PEM given as .pfx"
        );
        let m = message(&[0x30, 0x80, 0x02, 0x01, 0x03, 0x00, 0x00]);
        assert!(m.contains("BER indefinite lengths"), "{m}");
    }

    #[test]
    fn truncated_and_corrupted_do_not_panic() {
        for f in [
            fixture!("rsa.p12"),
            fixture!("p256-legacy.p12"),
            fixture!("p256-nopass.p12"),
        ] {
            for len in (0..f.len()).step_by(29) {
                assert!(X509Credential::from_pkcs12(&f[..len], "fixture-pass").is_err());
            }
            for i in (0..f.len()).step_by(31) {
                let mut bad = f.to_vec();
                bad[i] ^= 0x55;
                let _ = X509Credential::from_pkcs12(&bad, "fixture-pass");
                let _ = X509Credential::from_pkcs12(&bad, "");
            }
        }
    }
}
