//! Certificate issuance from a CSR (api-version 2025-07-01-preview): what the emulator checks in
//! the CSR, the issuing CA and validity per enrollment, and the scripted broken chains.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dps_emulator::pki::TestCa;
use dps_test_support::*;
use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData};
use x509_parser::prelude::{FromDer, X509Certificate};

const PREVIEW: &str = "api-version=2025-07-01-preview";

/// Base64 DER of a CSR for `cn` signed by `key`.
fn csr(cn: &str, key: &KeyPair) -> String {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    B64.encode(p.serialize_request(key).unwrap().der())
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

/// PUT with the CSR, then polls; the final answer (or the refusal).
fn register_csr(c: &mut Client, regid: &str, csr_b64: &str) -> Resp {
    let tok = sas(KEY, regid);
    let body = format!(r#"{{"registrationId":"{regid}","csr":"{csr_b64}"}}"#);
    let r = c.request(
        "PUT",
        &format!("/{SCOPE}/registrations/{regid}/register?{PREVIEW}"),
        &[("Authorization", &tok), JSON],
        Some(&body),
    );
    if r.status != 202 {
        return r;
    }
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    let path = format!("/{SCOPE}/registrations/{regid}/operations/{op}?{PREVIEW}");
    loop {
        let p = c.request("GET", &path, &[("Authorization", &tok)], None);
        if p.status != 202 {
            return p;
        }
    }
}

/// The issued chain (DER, as sent).
fn chain_of(r: &Resp) -> Vec<Vec<u8>> {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["registrationState"]["issuedCertificateChain"]
        .as_array()
        .unwrap_or_else(|| panic!("no chain: {}", String::from_utf8_lossy(&r.body)))
        .iter()
        .map(|s| B64.decode(s.as_str().unwrap()).unwrap())
        .collect()
}

fn cert(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

fn refusal(r: &Resp) -> String {
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["errorCode"], 400004);
    r.json()["message"].as_str().unwrap().to_string()
}

fn individual(regid: &str, more: &str) -> String {
    format!(
        "{}\n[[enrollments]]\nregistration_id = \"{regid}\"\nattestation = \"symmetric_key\"\nprimary_key = \"{KEY}\"\n{more}\n",
        base_toml()
    )
}

#[test]
fn the_csr_signature_cn_and_key_type_are_checked() {
    let emu = start(&individual("dev-csr", ""));
    let mut c = Client::connect(&emu);
    let key = p256();
    // a good one, for reference
    assert_eq!(
        chain_of(&register_csr(&mut c, "dev-csr", &csr("dev-csr", &key))).len(),
        2
    );
    // a signature that does not verify: flip a bit in the last byte (inside the signature)
    let mut der = B64.decode(csr("dev-csr", &key)).unwrap();
    *der.last_mut().unwrap() ^= 1;
    let m = refusal(&register_csr(&mut c, "dev-csr", &B64.encode(&der)));
    assert!(m.contains("signature is invalid"), "{m}");
    // the CN must be the registration id
    let m = refusal(&register_csr(&mut c, "dev-csr", &csr("someone-else", &key)));
    assert!(m.contains("common name"), "{m}");
    // Ed25519 is not a key type DPS issues for
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let m = refusal(&register_csr(&mut c, "dev-csr", &csr("dev-csr", &ed)));
    assert!(m.contains("not EC P-256, P-384 or RSA"), "{m}");
    // RSA-2048 (the fixture key) is accepted by default
    let rsa_pem = std::fs::read_to_string(x509_fixtures().join("rsa.key.pem")).unwrap();
    let rsa = KeyPair::from_pem_and_sign_algo(&rsa_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let chain = chain_of(&register_csr(&mut c, "dev-csr", &csr("dev-csr", &rsa)));
    assert_eq!(
        cert(&chain[0]).public_key().raw,
        rsa.subject_public_key_info().as_slice()
    );
}

#[test]
fn key_types_are_configurable_per_enrollment() {
    let emu = start(&individual(
        "dev-p384",
        "issuance = { key_types = [\"p384\"] }",
    ));
    let mut c = Client::connect(&emu);
    let m = refusal(&register_csr(&mut c, "dev-p384", &csr("dev-p384", &p256())));
    assert!(
        m.contains("key type p256 is not accepted here (p384)"),
        "{m}"
    );
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    assert_eq!(
        chain_of(&register_csr(&mut c, "dev-p384", &csr("dev-p384", &p384))).len(),
        2
    );
}

#[test]
fn csr_is_refused_on_the_lookup_and_on_older_api_versions() {
    let emu = start(&individual("dev-csr", ""));
    let mut c = Client::connect(&emu);
    let tok = sas(KEY, "dev-csr");
    let body = format!(
        r#"{{"registrationId":"dev-csr","csr":"{}"}}"#,
        csr("dev-csr", &p256())
    );
    for v in ["2021-06-01", "2021-10-01", "2019-03-31"] {
        let r = c.request(
            "PUT",
            &format!("/{SCOPE}/registrations/dev-csr/register?api-version={v}"),
            &[("Authorization", &tok), JSON],
            Some(&body),
        );
        let m = refusal(&r);
        assert!(m.contains("Could not find member 'csr'"), "{v}: {m}");
    }
    let r = c.request(
        "POST",
        &format!("/{SCOPE}/registrations/dev-csr?{PREVIEW}"),
        &[("Authorization", &tok), JSON],
        Some(&body),
    );
    assert!(refusal(&r).contains("not allowed in a device registration status lookup"));
}

#[test]
fn the_issuing_ca_and_validity_come_from_the_enrollment() {
    let root = TestCa::new("Enrollment Root");
    let inter = root.intermediate("Enrollment Issuing CA");
    // the issuing CA's file: the intermediate followed by its root
    let dir = TempDir::new("dps-emu-csr");
    let cert_file = dir.file(
        "issuing.pem",
        &format!("{}{}", inter.cert_pem(), root.cert_pem()),
    );
    let key_file = dir.file("issuing.key", &inter.key_pem());
    let emu = start(&individual(
        "dev-ca",
        &format!(
            "issuance = {{ ca_cert_file = {cert_file:?}, ca_key_file = {key_file:?}, validity_days = 7 }}"
        ),
    ));
    let mut c = Client::connect(&emu);
    let chain = chain_of(&register_csr(&mut c, "dev-ca", &csr("dev-ca", &p256())));
    assert_eq!(chain.len(), 3, "leaf, issuing CA, root");
    assert_eq!(chain[1], inter.cert_der());
    assert_eq!(chain[2], root.cert_der());
    let leaf = cert(&chain[0]);
    assert_eq!(leaf.issuer(), cert(&chain[1]).subject());
    assert!(
        leaf.verify_signature(Some(cert(&chain[1]).public_key()))
            .is_ok()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let v = leaf.validity();
    assert!(v.not_before.timestamp() <= now, "valid from today");
    let days = (v.not_after.timestamp() - now) / 86_400;
    assert!((6..=7).contains(&days), "{days} days");
    // other enrollments keep the emulator's own issuing CA
    let emu2 = start(&individual("dev-csr", ""));
    let mut c2 = Client::connect(&emu2);
    let chain = chain_of(&register_csr(&mut c2, "dev-csr", &csr("dev-csr", &p256())));
    assert_ne!(chain[1], inter.cert_der());
}

#[test]
fn a_broken_chain_can_be_scripted() {
    let emu = start(&individual(
        "dev-broken",
        r#"faults = [
  { on = "register", issued_chain = "wrong_key" },
  { on = "register", issued_chain = "wrong_order" },
  { on = "register", issued_chain = "expired" },
]"#,
    ));
    let mut c = Client::connect(&emu);
    let key = p256();
    let spki = key.subject_public_key_info();
    let ca = cert_der_of(&emu);
    // 1. wrong key: the leaf certifies another key
    let chain = chain_of(&register_csr(
        &mut c,
        "dev-broken",
        &csr("dev-broken", &key),
    ));
    assert_ne!(cert(&chain[0]).public_key().raw, spki.as_slice());
    assert_eq!(chain[1], ca);
    // 2. wrong order: root first, leaf last
    let chain = chain_of(&register_csr(
        &mut c,
        "dev-broken",
        &csr("dev-broken", &key),
    ));
    assert_eq!(chain[0], ca);
    assert_eq!(cert(&chain[1]).public_key().raw, spki.as_slice());
    // 3. expired yesterday
    let chain = chain_of(&register_csr(
        &mut c,
        "dev-broken",
        &csr("dev-broken", &key),
    ));
    assert!(!cert(&chain[0]).validity().is_valid());
    assert_eq!(cert(&chain[0]).public_key().raw, spki.as_slice());
    // then the script is over: a good chain
    let chain = chain_of(&register_csr(
        &mut c,
        "dev-broken",
        &csr("dev-broken", &key),
    ));
    let leaf = cert(&chain[0]);
    assert!(leaf.validity().is_valid());
    assert_eq!(leaf.public_key().raw, spki.as_slice());
    assert_eq!(chain[1], ca);
}

/// The emulator's own device issuing CA (the one that signs CSRs by default): the last
/// certificate of a normal issued chain.
fn cert_der_of(emu: &dps_emulator::Emulator) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(emu.ca_pem().as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

#[test]
fn issuance_config_errors_are_precise() {
    for (more, what) in [
        (
            "issuance = { ca_cert_pem = \"x\" }",
            "needs its certificate and its key",
        ),
        (
            "issuance = { key_types = [] }",
            "key_types must not be empty",
        ),
        ("issuance = { key_types = [\"dsa\"] }", "unknown variant"),
        ("issuance = { validity_days = 0 }", "at least 1"),
        (
            "issuance = { ca_cert_pem = \"x\", ca_key_pem = \"y\" }",
            "issuing CA",
        ),
        (
            "faults = [{ issued_chain = \"wrong_key\", action = \"close\" }]",
            "one of action, result or issued_chain",
        ),
    ] {
        let e = dps_emulator::Config::from_toml_str(&individual("dev-x", more)).unwrap_err();
        assert!(e.to_string().contains(what), "{more}: {e}");
        assert!(e.line.is_some(), "{more}: {e}");
    }
}
