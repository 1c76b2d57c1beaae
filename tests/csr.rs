//! Certificate issuance from a CSR (experimental, api-version 2025-07-01-preview) through the
//! Rust API against dps-emulator: the CSR in the PUT, the checks on the issued chain, the issued
//! leaf as the next boot's X.509 credential, and every scripted broken chain.

use std::sync::Arc;

use dps::{Client, CsrAlgorithm, CsrKey, ErrorKind, RegistrationStatus, X509Credential};
use dps_emulator::pki::{self, TestCa};
use dps_test_support::*;
use rcgen::{KeyPair, PublicKeyData};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};

fn ders(pem: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().as_ref().to_vec())
        .collect()
}

fn cn(der: &[u8]) -> String {
    let (_, c) = X509Certificate::from_der(der).unwrap();
    c.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn symmetric_key_onboarding_with_a_generated_key() {
    for (alg, curve) in [(CsrAlgorithm::P256, "P-256"), (CsrAlgorithm::P384, "P-384")] {
        let emu = start(&format!("{}{}", base_toml(), sym_enrollment("dev-csr", "")));
        let mut b = builder(&emu, "dev-csr");
        b.symmetric_key(KEY).unwrap();
        b.csr(CsrKey::generate(alg));
        let cfg = Arc::new(b.build().unwrap());
        assert_eq!(cfg.api_version(), "2025-07-01-preview");
        let r = Client::new(cfg).register().expect("registers with a CSR");
        assert_eq!(r.status, Some(RegistrationStatus::Assigned));
        let chain_pem = r.issued_certificate_chain_pem.as_deref().expect("chain");
        let chain = ders(chain_pem);
        assert_eq!(
            chain.len(),
            2,
            "{curve}: leaf and the emulator's issuing CA"
        );
        assert_eq!(cn(&chain[0]), "dev-csr");
        assert_eq!(chain[1], ders(&emu.ca_pem())[0]);
        let key = r.issued_private_key_pem.as_ref().expect("generated key");
        assert!(key.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
        // the key and the leaf are a pair
        X509Credential::from_pem(chain_pem.as_bytes(), key.expose().as_bytes(), None)
            .expect("the generated key matches the issued leaf");
        assert!(!format!("{r:?}").contains(key.expose().lines().nth(1).unwrap()));
        assert_eq!(emu.counters().get("register 202"), 1);
    }
}

#[test]
fn the_api_version_override_wins() {
    let emu = start(&format!("{}{}", base_toml(), sym_enrollment("dev-old", "")));
    let mut b = builder(&emu, "dev-old");
    b.symmetric_key(KEY).unwrap();
    b.api_version("2021-06-01").unwrap();
    b.csr(CsrKey::generate(CsrAlgorithm::P256));
    let cfg = b.build().unwrap();
    assert_eq!(cfg.api_version(), "2021-06-01");
    // the emulator refuses csr before 2025-07-01-preview, as the spec says DPS does
    let e = Client::new(Arc::new(cfg)).register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
    // without a CSR the default stays
    let mut b = builder(&emu, "dev-old");
    b.symmetric_key(KEY).unwrap();
    assert_eq!(b.build().unwrap().api_version(), "2021-06-01");
}

#[test]
fn x509_onboarding_with_a_key_from_pem() {
    let onboarding = pki::self_signed_device("dev-x509-csr");
    let emu = start(&format!(
        "{}\n[[enrollments]]\nregistration_id = \"dev-x509-csr\"\nattestation = \"x509\"\nthumbprint = \"{}\"\n",
        base_toml(),
        onboarding.sha256_thumbprint
    ));
    let operational = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut b = builder(&emu, "dev-x509-csr");
    b.x509(
        X509Credential::from_pem(
            onboarding.cert_pem.as_bytes(),
            onboarding.key_pem.as_bytes(),
            None,
        )
        .unwrap(),
    );
    b.csr(CsrKey::from_pem(operational.serialize_pem().as_bytes(), None).unwrap());
    let r = client(&b).register().expect("registers");
    assert!(
        r.issued_private_key_pem.is_none(),
        "the caller holds the key"
    );
    let chain_pem = r.issued_certificate_chain_pem.unwrap();
    let leaf = &ders(&chain_pem)[0];
    let (_, c) = X509Certificate::from_der(leaf).unwrap();
    assert_eq!(
        c.public_key().raw,
        operational.subject_public_key_info().as_slice()
    );
    X509Credential::from_pem(
        chain_pem.as_bytes(),
        operational.serialize_pem().as_bytes(),
        None,
    )
    .expect("the PEM key matches the issued leaf");
}

#[test]
fn the_issued_leaf_registers_at_the_next_boot() {
    let root = TestCa::new("Operational Issuing CA");
    let dir = TempDir::new("dps-csr");
    let cert_file = dir.file("ca.pem", &root.cert_pem());
    let key_file = dir.file("ca.key", &root.key_pem());
    let emu = start(&format!(
        r#"{}
[[enrollments]]
group_id = "onboarding"
attestation = "symmetric_key"
primary_key = "{GROUP_KEY}"
issuance = {{ ca_cert_file = {cert_file:?}, ca_key_file = {key_file:?} }}

[[enrollments]]
group_id = "operational"
attestation = "x509"
ca_pem = """{}"""
"#,
        base_toml(),
        root.cert_pem()
    ));
    let mut b = builder(&emu, "dev-next-boot");
    b.group_key(GROUP_KEY).unwrap();
    b.csr(CsrKey::generate(CsrAlgorithm::P256));
    let first = client(&b).register().expect("onboarding registers");
    assert_eq!(first.enrollment_group_id.as_deref(), Some("onboarding"));
    let chain = first.issued_certificate_chain_pem.unwrap();
    assert_eq!(ders(&chain)[1], root.cert_der());
    let key = first.issued_private_key_pem.unwrap();

    let mut b = builder(&emu, "dev-next-boot");
    b.x509(X509Credential::from_pem(chain.as_bytes(), key.expose().as_bytes(), None).unwrap());
    let second = client(&b).register().expect("the issued leaf registers");
    assert_eq!(second.enrollment_group_id.as_deref(), Some("operational"));
    assert_eq!(second.device_id.as_deref(), Some("dev-next-boot"));
    assert!(second.issued_certificate_chain_pem.is_none());
}

#[test]
fn each_broken_chain_has_its_status() {
    let emu = start(&format!(
        "{}{}",
        base_toml(),
        sym_enrollment(
            "dev-broken",
            r#"faults = [
  { on = "register", issued_chain = "wrong_key" },
  { on = "register", issued_chain = "wrong_order" },
  { on = "register", issued_chain = "expired" },
]"#
        )
    ));
    let mut b = builder(&emu, "dev-broken");
    b.symmetric_key(KEY).unwrap();
    b.csr(CsrKey::generate(CsrAlgorithm::P256));
    let mut c = client(&b);
    for (kind, words) in [
        (
            ErrorKind::IssuedKeyMismatch,
            "certifies another public key than the CSR's",
        ),
        (
            ErrorKind::IssuedChainBroken,
            "out of order: the certificate for the CSR's key is #2 of 2",
        ),
        (ErrorKind::IssuedCertNotValid, "expired at"),
    ] {
        let e = c.register().unwrap_err();
        assert_eq!(e.kind, kind, "{e}");
        assert!(e.message.contains(words), "{kind:?}: {}", e.message);
        assert_eq!(e.http_status, Some(200));
        assert!(c.last_error().is_some());
    }
    // the script is over: a good chain
    let r = c.register().expect("a good chain");
    assert!(r.issued_certificate_chain_pem.is_some());
}

#[test]
fn a_signer_key_makes_the_csr_and_a_wrong_one_is_caught() {
    use dps::{DigestSigner, SignatureScheme};
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::EncodePublicKey;

    struct Se(p256::ecdsa::SigningKey);
    impl DigestSigner for Se {
        fn sign_digest(&self, scheme: SignatureScheme, digest: &[u8]) -> dps::Result<Vec<u8>> {
            assert_eq!(scheme, SignatureScheme::EcdsaP256Sha256);
            let sig: p256::ecdsa::Signature = self.0.sign_prehash(digest).unwrap();
            Ok(sig.to_bytes().to_vec())
        }
        fn describe(&self) -> String {
            "test secure element".into()
        }
    }
    let sk = p256::ecdsa::SigningKey::random(&mut rand_core_06::OsRng);
    let spki = sk
        .verifying_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let emu = start(&format!("{}{}", base_toml(), sym_enrollment("dev-se", "")));
    let mut b = builder(&emu, "dev-se");
    b.symmetric_key(KEY).unwrap();
    b.csr(CsrKey::from_signer(Arc::new(Se(sk)), &spki).unwrap());
    let r = client(&b).register().expect("registers");
    let (_, leaf) = X509Certificate::from_der(&ders(&r.issued_certificate_chain_pem.unwrap())[0])
        .map(|(a, c)| (a.to_vec(), c.public_key().raw.to_vec()))
        .unwrap();
    assert_eq!(leaf, spki);
    assert!(r.issued_private_key_pem.is_none());

    // a signer that does not hold the public key given
    let other = p256::ecdsa::SigningKey::random(&mut rand_core_06::OsRng);
    let mut b = builder(&emu, "dev-se");
    b.symmetric_key(KEY).unwrap();
    b.csr(CsrKey::from_signer(Arc::new(Se(other)), &spki).unwrap());
    let e = b.build().unwrap_err();
    assert_eq!(e.kind, ErrorKind::KeyMismatch, "{e}");
}

#[test]
fn rsa_sec1_and_unsupported_pem_keys() {
    /// The password of tests/fixtures/x509/p256.enc.key.pem (see tests/fixtures/make.sh).
    const FIXTURE_KEY_PASS: &str = "fixture-pass";
    let fixture = |name: &str| std::fs::read(x509_fixtures().join(name)).unwrap();
    let emu = start(&format!("{}{}", base_toml(), sym_enrollment("dev-rsa", "")));
    for (key, password) in [
        ("rsa.pkcs1.key.pem", None),
        ("p384.sec1.key.pem", None),
        ("p256.enc.key.pem", Some(FIXTURE_KEY_PASS)),
    ] {
        let pem = fixture(key);
        let mut b = builder(&emu, "dev-rsa");
        b.symmetric_key(KEY).unwrap();
        b.csr(CsrKey::from_pem(&pem, password.map(str::as_bytes)).unwrap());
        let r = client(&b)
            .register()
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let chain = r.issued_certificate_chain_pem.unwrap();
        X509Credential::from_pem(chain.as_bytes(), &pem, password.map(str::as_bytes))
            .unwrap_or_else(|e| panic!("{key}: the issued leaf is not for this key: {e}"));
    }
    for (key, words) in [
        ("ed25519.key.pem", "Ed25519"),
        ("p521.sec1.key.pem", "P-521"),
        ("rsa1024.key.pem", "1024"),
    ] {
        let e = CsrKey::from_pem(&fixture(key), None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidPrivateKey, "{key}: {e}");
        assert!(e.message.contains(words), "{key}: {}", e.message);
    }
}

/// RSA-2048 generation: with the `rsa-keygen` feature the key is generated, the CSR signed
/// sha256WithRSAEncryption and the issued leaf certifies a 2048-bit RSA key; without it the
/// configuration is refused (Unsupported) with a sentence naming the feature.
#[test]
fn rsa_2048_generation_follows_the_feature() {
    let emu = start(&format!(
        "{}{}",
        base_toml(),
        sym_enrollment("dev-rsa-gen", "")
    ));
    let mut b = builder(&emu, "dev-rsa-gen");
    b.symmetric_key(KEY).unwrap();
    b.csr(CsrKey::generate(CsrAlgorithm::Rsa2048));
    assert_eq!(
        CsrAlgorithm::Rsa2048.is_supported(),
        cfg!(feature = "rsa-keygen")
    );
    #[cfg(feature = "rsa-keygen")]
    {
        let t = std::time::Instant::now();
        let cfg = Arc::new(b.build().expect("an RSA-2048 key is generated"));
        eprintln!("RSA-2048 key + CSR: {} ms", t.elapsed().as_millis());
        let r = Client::new(cfg).register().expect("registers");
        let chain = r.issued_certificate_chain_pem.unwrap();
        let leaf_der = &ders(&chain)[0];
        let (_, leaf) = X509Certificate::from_der(leaf_der).unwrap();
        match leaf.public_key().parsed().unwrap() {
            x509_parser::public_key::PublicKey::RSA(k) => assert_eq!(k.key_size(), 2048),
            other => panic!("the issued leaf is not for an RSA key: {other:?}"),
        }
        let key = r
            .issued_private_key_pem
            .expect("the generated key is handed out");
        X509Credential::from_pem(chain.as_bytes(), key.expose().as_bytes(), None)
            .expect("the generated RSA key matches the issued leaf");
    }
    #[cfg(not(feature = "rsa-keygen"))]
    {
        let e = b.build().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
        assert!(e.message.contains("`rsa-keygen`"), "{}", e.message);
    }
}
