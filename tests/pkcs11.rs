//! PKCS#11 keys in a real SoftHSM2 token (created in a temporary directory by the test, keys
//! generated inside it): signatures checked with ring against the token's public key, HMAC
//! against a software HMAC, bad input, several threads.

use dps_test_support as common;
#[path = "pkcs11_support/mod.rs"]
mod pkcs11_support;

use std::sync::Arc;
use std::time::Instant;

use cryptoki::object::{Attribute, AttributeType};
use dps::ErrorKind;
use dps::credential::{DigestSigner, HmacKey, SignatureScheme};
use dps::pkcs11::{KeyKind, Pkcs11HmacKey, Pkcs11Signer, Pkcs11Uri};
use pkcs11_support::*;

fn signer(uri: &str) -> dps::Result<Pkcs11Signer> {
    Pkcs11Signer::open(&Pkcs11Uri::parse(uri)?)
}

fn check_signs(s: &Pkcs11Signer, scheme: SignatureScheme) {
    let public = s.public_key().unwrap();
    let msg = b"TLS 1.3, client CertificateVerify\x00 transcript hash";
    let sig = s.sign_digest(scheme, &digest(scheme, msg)).unwrap();
    assert!(verify(&public, scheme, msg, &sig), "{scheme:?} verifies");
    assert!(!verify(&public, scheme, b"another message", &sig));
}

#[test]
fn ec_p256_key_generated_in_token_signs_and_is_not_extractable() {
    let t = softhsm().new_token(&unique("ec256"), "1234");
    t.generate_ec("device-key", &[0x01], OID_P256);
    // The key is sensitive and cannot leave the token.
    let session = t.session();
    let k = session
        .find_objects(&[
            Attribute::Class(cryptoki::object::ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"device-key".to_vec()),
        ])
        .unwrap()[0];
    let attrs = session
        .get_attributes(
            k,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Value,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
    assert!(!attrs.iter().any(|a| matches!(a, Attribute::Value(_))));

    let s = signer(&t.uri("device-key").replace('?', ";id=%01;type=private?")).unwrap();
    assert_eq!(s.key_kind(), KeyKind::EcP256);
    assert_eq!(s.schemes(), &[SignatureScheme::EcdsaP256Sha256]);
    check_signs(&s, SignatureScheme::EcdsaP256Sha256);
    // Wrong scheme or digest length: clear errors, no token call.
    let e = s
        .sign_digest(SignatureScheme::RsaPssSha256, &[0; 32])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    let e = s
        .sign_digest(SignatureScheme::EcdsaP256Sha256, &[0; 20])
        .unwrap_err();
    assert!(e.message.contains("32-byte digest"), "{}", e.message);

    // Certificate: none in the token yet; then a self-signed one signed by the token key,
    // stored next to it and read back; its SPKI is the token's public key.
    assert_eq!(s.certificate_der().unwrap(), None);
    let (pem, der) = self_signed_certificate(&s, "pkcs11-device");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let spki = s.public_key().unwrap().spki_der();
    assert!(der.windows(spki.len()).any(|w| w == spki.as_slice()));
    t.store_certificate("device-key", &[0x01], &der);
    assert_eq!(s.certificate_der().unwrap(), Some(der));
    assert!(s.describe().contains("object=device-key"));
    assert!(!format!("{s:?}").contains("1234"));
}

#[test]
fn ec_p384_signs() {
    let t = softhsm().new_token(&unique("ec384"), "1234");
    t.generate_ec("k384", b"\x02", OID_P384);
    let s = signer(&t.uri("k384")).unwrap();
    assert_eq!(s.key_kind(), KeyKind::EcP384);
    check_signs(&s, SignatureScheme::EcdsaP384Sha384);
    let e = s
        .sign_digest(SignatureScheme::EcdsaP384Sha384, &[0; 32])
        .unwrap_err();
    assert!(e.message.contains("48-byte digest"), "{}", e.message);
}

#[test]
fn rsa_2048_signs_pkcs1_and_pss_and_its_csr_is_accepted_by_a_ca() {
    let t = softhsm().new_token(&unique("rsa"), "1234");
    t.generate_rsa("rsa-key", b"\x03", 2048);
    let s = signer(&t.uri("rsa-key")).unwrap();
    assert_eq!(s.key_kind(), KeyKind::Rsa { bits: 2048 });
    assert_eq!(
        s.schemes(),
        &[
            SignatureScheme::RsaPssSha256,
            SignatureScheme::RsaPkcs1Sha256
        ]
    );
    check_signs(&s, SignatureScheme::RsaPkcs1Sha256);
    check_signs(&s, SignatureScheme::RsaPssSha256);
    // PSS is randomised: two signatures of the same digest differ, and both verify.
    let d = digest(SignatureScheme::RsaPssSha256, b"m");
    let a = s.sign_digest(SignatureScheme::RsaPssSha256, &d).unwrap();
    let b = s.sign_digest(SignatureScheme::RsaPssSha256, &d).unwrap();
    assert_ne!(a, b);
    assert_eq!(a.len(), 256);

    // The emulator's CA verifies the CSR's signature (made by the token) before issuing.
    let ca = dps_emulator::pki::TestCa::new("pkcs11 test root");
    let chain = ca
        .sign_csr_der(&csr_der(&s, "rsa-device"), "rsa-device", &issue_any())
        .unwrap();
    let spki = s.public_key().unwrap().spki_der();
    assert!(chain[0].windows(spki.len()).any(|w| w == spki.as_slice()));
}

#[test]
fn ec_csr_signed_by_the_token_is_accepted_by_a_ca() {
    let t = softhsm().new_token(&unique("csr"), "1234");
    t.generate_ec("k", b"\x01", OID_P256);
    let s = signer(&t.uri("k")).unwrap();
    let ca = dps_emulator::pki::TestCa::new("pkcs11 test root");
    let chain = ca
        .sign_csr_der(&csr_der(&s, "ec-device"), "ec-device", &issue_any())
        .unwrap();
    assert_eq!(chain.len(), 2, "leaf and root");
    // The same as a PEM chain, for a group enrollment; it parses back to the CA's chain.
    let pem = ca_issued_chain_pem(&ca, &s, "ec-device");
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let ders: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect();
    assert_eq!(ders.len(), 2);
    assert_eq!(ders[1], ca.cert_der());
    // A CSR whose signature is not the token's is refused: the check is real.
    let mut bad = csr_der(&s, "ec-device");
    let n = bad.len();
    bad[n - 3] ^= 0x01;
    assert!(ca.sign_csr_der(&bad, "ec-device", &issue_any()).is_err());
}

#[test]
fn hmac_secret_in_token_equals_software_hmac() {
    let t = softhsm().new_token(&unique("hmac"), "1234");
    let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37)).collect();
    t.create_hmac_key("sas-key", b"\x10", &key);
    let uri = t.uri("sas-key").replace('?', ";id=%10;type=secret-key?");
    let h = Pkcs11HmacKey::open(&Pkcs11Uri::parse(&uri).unwrap()).unwrap();
    let sw = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    for data in [
        &b""[..],
        b"0ne00000001%2Fregistrations%2Fdev\n1700000000",
        &[0xff; 300],
    ] {
        let mac = h.hmac_sha256(data).unwrap();
        assert_eq!(mac.as_slice(), ring::hmac::sign(&sw, data).as_ref());
    }
    assert!(h.describe().contains("sas-key"));
    // A signer cannot be opened on a secret key, nor an HMAC key on a private key.
    let e = signer(&t.uri("sas-key")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object);
    assert!(e.message.contains("holds a secret key"), "{}", e.message);
    t.generate_ec("ec", b"\x11", OID_P256);
    let e = Pkcs11HmacKey::open(&Pkcs11Uri::parse(&t.uri("ec")).unwrap()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object);
}

#[test]
fn wrong_or_missing_pin_is_a_pin_error_and_never_echoed() {
    let t = softhsm().new_token(&unique("pin"), "1234");
    t.generate_ec("k", b"\x01", OID_P256);
    let wrong = t.uri("k").replace("pin-value=1234", "pin-value=98%37654");
    let e = signer(&wrong).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Pin, "{e}");
    assert!(e.message.contains("PIN is wrong"), "{}", e.message);
    assert!(!e.to_string().contains("987654") && !format!("{e:?}").contains("987654"));

    let no_pin = t.uri("k").replace("&pin-value=1234", "");
    let e = signer(&no_pin).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Pin);
    assert!(e.message.contains("needs a PIN"), "{}", e.message);

    // The setter and pin-source give the PIN too.
    let mut u = Pkcs11Uri::parse(&no_pin).unwrap();
    u.set_pin("1234");
    assert!(!format!("{u:?}").contains("1234"));
    Pkcs11Signer::open(&u).unwrap();
    let f = softhsm().dir.join(format!("{}.pin", t.label));
    std::fs::write(&f, "1234\n").unwrap();
    signer(&format!("{no_pin}&pin-source=file:{}", f.display())).unwrap();
}

#[test]
fn missing_or_non_pkcs11_module_is_a_clear_error() {
    let t = softhsm().new_token(&unique("mod"), "1234");
    t.generate_ec("k", b"\x01", OID_P256);
    let e = signer("pkcs11:object=k?module-path=/nonexistent/libnothing.so").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Module);
    assert!(e.message.contains("not found"), "{}", e.message);

    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("libc.so.6 to stand in for a library that is not a PKCS#11 module");
    let e = signer(&format!("pkcs11:object=k?module-path={libc}")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Module);
    assert!(e.message.contains("not a PKCS#11 module"), "{}", e.message);

    let e = signer("pkcs11:object=k").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Module);
    assert!(e.message.contains("module-path"), "{}", e.message);
}

#[test]
fn uri_matching_no_object_several_or_no_private_key() {
    let t = softhsm().new_token(&unique("obj"), "1234");
    t.generate_ec("twin", b"\x01", OID_P256);
    t.generate_ec("twin", b"\x02", OID_P256);
    t.generate_ec("pub-only", b"\x03", OID_P256);
    t.destroy_private("pub-only");

    let e = signer(&t.uri("absent")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object);
    assert!(
        e.message.contains("no private key matches"),
        "{}",
        e.message
    );

    let e = signer(&t.uri("twin")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object);
    assert!(e.message.contains("2 private keys match"), "{}", e.message);
    // id= picks one.
    let s = signer(&t.uri("twin").replace('?', ";id=%02?")).unwrap();
    check_signs(&s, SignatureScheme::EcdsaP256Sha256);

    let e = signer(&t.uri("pub-only")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object);
    assert!(
        e.message.contains("holds a public key") && e.message.contains("not the private key"),
        "{}",
        e.message
    );

    // Without token= the URI matches this token and (at least) a second one.
    let _second = softhsm().new_token(&unique("obj2"), "1234");
    let e = signer(&t.uri("twin").replace(&format!("token={};", t.label), "")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object);
    assert!(e.message.contains("tokens match"), "{}", e.message);
    assert!(e.message.contains("add token="), "{}", e.message);

    let e = signer(&t.uri("twin").replace(&t.label, "no-such-token")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object);
    assert!(e.message.contains("no token"), "{}", e.message);

    let e = signer(&t.uri("twin").replace('?', ";type=cert?")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object);
    assert!(e.message.contains("type=cert"), "{}", e.message);
}

#[test]
fn unusable_keys_are_refused_when_opened() {
    let t = softhsm().new_token(&unique("unusable"), "1234");
    t.generate_ec_with("no-sign", b"\x01", OID_P256, &[Attribute::Sign(false)]);
    let e = signer(&t.uri("no-sign")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidPrivateKey);
    assert!(e.message.contains("CKA_SIGN"), "{}", e.message);
    t.generate_ec_with(
        "always",
        b"\x02",
        OID_P256,
        &[Attribute::AlwaysAuthenticate(true)],
    );
    let e = signer(&t.uri("always")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidPrivateKey);
    assert!(
        e.message.contains("CKA_ALWAYS_AUTHENTICATE"),
        "{}",
        e.message
    );
    t.generate_rsa("small", b"\x03", 1024);
    let e = signer(&t.uri("small")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidPrivateKey);
    assert!(e.message.contains("1024 bits"), "{}", e.message);
}

/// Registration through the library itself: `X509Credential::from_signer` over token keys
/// (EC P-256 individual enrollment, RSA-2048 in a CA group) and `ConfigBuilder::hmac_key` over
/// a token secret (the individual symmetric-key enrollment `dev-sym`).
#[test]
fn registers_with_the_emulator_through_the_library_with_token_keys() {
    use dps::X509Credential;
    let t = softhsm().new_token(&unique("e2e"), "1234");
    t.generate_ec("ec", b"\x01", OID_P256);
    t.generate_ec("other", b"\x02", OID_P256);
    t.generate_rsa("rsa", b"\x03", 2048);
    use base64::Engine as _;
    let sym = base64::engine::general_purpose::STANDARD
        .decode(common::KEY)
        .unwrap();
    t.create_hmac_key("sas", b"\x04", &sym);
    let ec = Arc::new(signer(&t.uri("ec")).unwrap());
    let rsa = Arc::new(signer(&t.uri("rsa")).unwrap());
    let (ec_pem, ec_der) = self_signed_certificate(&ec, "hsm-ec-lib");
    let ca = dps_emulator::pki::TestCa::new("hsm lib root");
    let rsa_chain = ca_issued_chain_pem(&ca, &rsa, "hsm-rsa-lib");
    let thumb: String = ring::digest::digest(&ring::digest::SHA256, &ec_der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let emu = common::emulator(&format!(
        r#"
[[enrollments]]
registration_id = "hsm-ec-lib"
attestation = "x509"
thumbprint = "{thumb}"
[[enrollments]]
group_id = "hsm-lib-group"
attestation = "x509"
ca_pem = """{}"""
"#,
        ca.cert_pem()
    ));
    for (id, pem, s) in [
        ("hsm-ec-lib", ec_pem.clone(), ec.clone()),
        ("hsm-rsa-lib", rsa_chain, rsa.clone()),
    ] {
        let cred = X509Credential::from_signer(pem.as_bytes(), s).unwrap();
        let mut b = common::builder(&emu, id);
        b.x509(cred);
        let reg = common::client(&b)
            .register()
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(reg.assigned_hub.is_some(), "{id}: {reg:?}");
    }
    // The EC certificate over another token key: refused before any traffic.
    let other = Arc::new(signer(&t.uri("other")).unwrap());
    let e = X509Credential::from_signer(ec_pem.as_bytes(), other).unwrap_err();
    assert_eq!(e.kind, ErrorKind::KeyMismatch, "{e}");

    let h = Arc::new(Pkcs11HmacKey::open(&Pkcs11Uri::parse(&t.uri("sas")).unwrap()).unwrap());
    let mut b = common::builder(&emu, "dev-sym");
    b.hmac_key(h);
    let reg = common::client(&b).register().unwrap();
    assert_eq!(reg.device_id.as_deref(), Some("dev-sym-device"));
}

/// The token keys authenticate real mutual TLS with the emulator: EC P-256 (TLS 1.3, ECDSA),
/// RSA-2048 (TLS 1.3, PSS) and RSA-2048 over TLS 1.2 with PKCS#1 v1.5; and a certificate
/// whose key is not the token's is refused in the handshake.
#[test]
fn token_keys_authenticate_registrations_over_mutual_tls() {
    let t = softhsm().new_token(&unique("tls"), "1234");
    t.generate_ec("ec", b"\x01", OID_P256);
    t.generate_rsa("rsa", b"\x02", 2048);
    let ec = Arc::new(signer(&t.uri("ec")).unwrap());
    let rsa = Arc::new(signer(&t.uri("rsa")).unwrap());
    let (_, ec_der) = self_signed_certificate(&ec, "hsm-ec");
    let ca = dps_emulator::pki::TestCa::new("hsm group root");
    let rsa_chain = ca
        .sign_csr_der(&csr_der(&rsa, "hsm-rsa"), "hsm-rsa", &issue_any())
        .unwrap();
    let thumb = |der: &[u8]| {
        ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    };
    let toml = format!(
        r#"
id_scope = "0ne00000001"
retry_after_secs = 0
[[hubs]]
host_name = "hub-a.azure-devices.net"
[[enrollments]]
registration_id = "hsm-ec"
attestation = "x509"
thumbprint = "{}"
[[enrollments]]
group_id = "hsm-group"
attestation = "x509"
ca_pem = """{}"""
"#,
        thumb(&ec_der),
        ca.cert_pem()
    );
    let emu =
        dps_emulator::Emulator::start(dps_emulator::Config::from_toml_str(&toml).unwrap()).unwrap();
    let v13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let v12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let key = |s: &Arc<Pkcs11Signer>, prefer: &[SignatureScheme]| RustlsTokenKey {
        signer: s.clone(),
        prefer: prefer.to_vec(),
    };
    let cases = [
        ("hsm-ec", vec![ec_der.clone()], key(&ec, ec.schemes()), v13),
        (
            "hsm-rsa",
            rsa_chain.clone(),
            key(&rsa, &[SignatureScheme::RsaPssSha256]),
            v13,
        ),
        (
            "hsm-rsa",
            rsa_chain.clone(),
            key(&rsa, &[SignatureScheme::RsaPkcs1Sha256]),
            v12,
        ),
    ];
    for (id, chain, k, v) in cases {
        let (status, body) = register_over_mutual_tls(&emu, "0ne00000001", id, chain, k, v)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(
            status.contains(" 202 ") || status.contains(" 200 "),
            "{id}: {status} {body}"
        );
        assert!(
            body.contains("operationId") || body.contains("assigned"),
            "{id}: {body}"
        );
    }
    // The EC certificate with the RSA key behind it: the server refuses the handshake.
    let mismatched = key(&rsa, rsa.schemes());
    let r = register_over_mutual_tls(&emu, "0ne00000001", "hsm-ec", vec![ec_der], mismatched, v13);
    assert!(r.is_err(), "a mismatched key must not register: {r:?}");
}

#[test]
fn several_threads_sign_at_once() {
    let t = softhsm().new_token(&unique("threads"), "1234");
    t.generate_ec("k", b"\x01", OID_P256);
    t.generate_rsa("r", b"\x02", 2048);
    let shared = Arc::new(signer(&t.uri("k")).unwrap());
    let public = shared.public_key().unwrap();
    let rsa_uri = t.uri("r");
    std::thread::scope(|sc| {
        for i in 0..6 {
            let shared = shared.clone();
            let public = public.clone();
            let rsa_uri = rsa_uri.clone();
            sc.spawn(move || {
                // Half the threads share one signer; the others open their own (own session,
                // same process-wide module and login).
                let own = (i % 2 == 1).then(|| signer(&rsa_uri).unwrap());
                for j in 0..20 {
                    let msg = format!("thread {i} message {j}");
                    match &own {
                        None => {
                            let sc = SignatureScheme::EcdsaP256Sha256;
                            let sig = shared.sign_digest(sc, &digest(sc, msg.as_bytes())).unwrap();
                            assert!(verify(&public, sc, msg.as_bytes(), &sig));
                        }
                        Some(r) => {
                            let sc = SignatureScheme::RsaPssSha256;
                            let sig = r.sign_digest(sc, &digest(sc, msg.as_bytes())).unwrap();
                            assert!(verify(&r.public_key().unwrap(), sc, msg.as_bytes(), &sig));
                        }
                    }
                }
            });
        }
    });
}

/// Sign latency, printed for bench/RESULTS.md (run with --nocapture); asserts a loose bound
/// so a hang or a per-call module reload fails.
#[test]
fn sign_latency() {
    let t = softhsm().new_token(&unique("latency"), "1234");
    t.generate_ec("k", b"\x01", OID_P256);
    t.generate_rsa("r", b"\x02", 2048);
    let key: Vec<u8> = vec![7; 32];
    t.create_hmac_key("h", b"\x03", &key);
    let start = Instant::now();
    let ec = signer(&t.uri("k")).unwrap();
    let open = start.elapsed();
    let rsa = signer(&t.uri("r")).unwrap();
    let h = Pkcs11HmacKey::open(&Pkcs11Uri::parse(&t.uri("h")).unwrap()).unwrap();
    let n = 50;
    let time = |f: &dyn Fn()| {
        f();
        let t0 = Instant::now();
        for _ in 0..n {
            f();
        }
        t0.elapsed() / n
    };
    let d = [0x5a; 32];
    let ec_t = time(&|| {
        drop(
            ec.sign_digest(SignatureScheme::EcdsaP256Sha256, &d)
                .unwrap(),
        )
    });
    let pss_t = time(&|| drop(rsa.sign_digest(SignatureScheme::RsaPssSha256, &d).unwrap()));
    let pk_t = time(&|| {
        drop(
            rsa.sign_digest(SignatureScheme::RsaPkcs1Sha256, &d)
                .unwrap(),
        )
    });
    let h_t = time(&|| {
        assert_eq!(
            h.hmac_sha256(b"scope/registrations/id\n170000")
                .unwrap()
                .len(),
            32
        )
    });
    println!(
        "SoftHSM2 latency: open(EC signer) {open:?}, ECDSA P-256 {ec_t:?}, RSA-2048 PSS \
         {pss_t:?}, RSA-2048 PKCS#1 {pk_t:?}, HMAC-SHA256 {h_t:?}"
    );
    for d in [ec_t, pss_t, pk_t, h_t] {
        assert!(d.as_millis() < 500, "a token operation took {d:?}");
    }
}

#[test]
fn a_token_key_makes_the_csr_of_a_registration() {
    let t = softhsm().new_token(&unique("csr-reg"), "1234");
    t.generate_ec("k", b"\x01", OID_P256);
    let s = Arc::new(signer(&t.uri("k")).unwrap());
    let spki = s.public_key().unwrap().spki_der();
    let emu = common::start(&format!(
        "{}{}",
        common::base_toml(),
        common::sym_enrollment("dev-token-csr", "")
    ));
    let mut b = common::builder(&emu, "dev-token-csr");
    b.symmetric_key(common::KEY).unwrap();
    b.csr(dps::CsrKey::from_signer(s.clone(), &spki).unwrap());
    let r = common::client(&b)
        .register()
        .expect("registers with a CSR signed by the token");
    assert!(
        r.issued_private_key_pem.is_none(),
        "the key stays in the token"
    );
    let chain = r.issued_certificate_chain_pem.unwrap();
    // The issued leaf and the token key make the next boot's credential (checked by a
    // signature from the token against the leaf).
    dps::X509Credential::from_signer(chain.as_bytes(), s)
        .expect("the token holds the issued leaf's key");
}
