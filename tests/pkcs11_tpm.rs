//! Keys held by a (software) TPM through tpm2-pkcs11: swtpm, a private D-Bus session bus and
//! tpm2-abrmd started by the test in a temporary directory; EC, RSA and HMAC keys generated in
//! the TPM with tpm2_ptool; registrations through the library with the TPM keys. One test
//! function: the fixture's processes and the module's environment are per process, and they
//! are stopped when it returns (or panics).

use dps_test_support as common;
#[path = "pkcs11_support/mod.rs"]
mod pkcs11_support;

use std::sync::Arc;
use std::time::Instant;

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use dps::ErrorKind;
use dps::credential::{DigestSigner, HmacKey, SignatureScheme};
use dps::pkcs11::{KeyKind, Pkcs11HmacKey, Pkcs11Signer, Pkcs11Uri};
use pkcs11_support::tpm::{TPM2_MODULE, Tpm};
use pkcs11_support::*;

const TOKEN: &str = "dps-tpm";
const PIN: &str = "1234";

fn open_signer(uri: &str) -> dps::Result<Pkcs11Signer> {
    Pkcs11Signer::open(&Pkcs11Uri::parse(uri)?)
}

fn open_hmac(uri: &str) -> dps::Result<Pkcs11HmacKey> {
    Pkcs11HmacKey::open(&Pkcs11Uri::parse(uri)?)
}

#[test]
fn tpm2_pkcs11_ec_rsa_and_hmac_keys_generated_in_a_software_tpm() {
    let t0 = Instant::now();
    let tpm = Tpm::start();
    tpm.add_token(TOKEN, PIN, "5678");
    tpm.add_key(TOKEN, PIN, "device-key", "01", "ecc256");
    tpm.add_key(TOKEN, PIN, "rsa-key", "02", "rsa2048");
    tpm.add_key(TOKEN, PIN, "sas-key", "03", "hmac:sha256");
    // The known key is the emulator's `dev-sym` enrollment key (tests/common).
    use base64::Engine as _;
    let known = base64::engine::general_purpose::STANDARD
        .decode(common::KEY)
        .unwrap();
    tpm.import_hmac(TOKEN, PIN, "sas-imported", "04", &known);
    tpm.set_process_env();
    println!("TPM fixture and keys ready in {:?}", t0.elapsed());

    // Wrong PIN first: PKCS#11 login is per token and process, so once a key holder is
    // logged in, another holder's login is "already logged in" whatever its PIN.
    let wrong = tpm.uri(TOKEN, "device-key", "01", "98%376");
    let e = open_signer(&wrong).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Pin, "{e}\n{}", tpm.logs());
    assert!(!e.to_string().contains("9876"), "{e}");

    // EC P-256 generated in the TPM.
    let ec = open_signer(&tpm.uri(TOKEN, "device-key", "01", PIN))
        .unwrap_or_else(|e| panic!("{e}\n{}", tpm.logs()));
    assert_eq!(ec.key_kind(), KeyKind::EcP256);
    let public = ec.public_key().unwrap();
    let sc = SignatureScheme::EcdsaP256Sha256;
    let t1 = Instant::now();
    let sig = ec.sign_digest(sc, &digest(sc, b"tpm message")).unwrap();
    let ec_latency = t1.elapsed();
    assert!(verify(&public, sc, b"tpm message", &sig));
    assert!(!verify(&public, sc, b"other message", &sig));
    // A certificate for the TPM key: self-signed, and through a CA that checks the CSR.
    let (pem, der) = self_signed_certificate(&ec, "tpm-device");
    let spki = public.spki_der();
    assert!(der.windows(spki.len()).any(|w| w == spki.as_slice()));
    let ca = dps_emulator::pki::TestCa::new("tpm test root");
    ca.sign_csr_der(&csr_der(&ec, "tpm-device"), "tpm-device", &issue_any())
        .unwrap();
    let ec = Arc::new(ec);
    // The TPM key registers through the library (X509Credential::from_signer checks one
    // signature against the certificate, then mutual TLS with the emulator).
    let thumb: String = ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let emu = common::emulator(&format!(
        "[[enrollments]]\nregistration_id = \"tpm-device\"\nattestation = \"x509\"\n\
         thumbprint = \"{thumb}\"\n"
    ));
    let cred = dps::X509Credential::from_signer(pem.as_bytes(), ec.clone()).unwrap();
    let mut b = common::builder(&emu, "tpm-device");
    b.x509(cred);
    let reg = common::client(&b)
        .register()
        .unwrap_or_else(|e| panic!("registration with the TPM key: {e}\n{}", tpm.logs()));
    assert!(reg.assigned_hub.is_some(), "{reg:?}");

    // RSA-2048 generated in the TPM: PKCS#1 v1.5 and PSS.
    let rsa = open_signer(&tpm.uri(TOKEN, "rsa-key", "02", PIN)).unwrap();
    assert_eq!(rsa.key_kind(), KeyKind::Rsa { bits: 2048 });
    assert_eq!(
        rsa.schemes(),
        &[
            SignatureScheme::RsaPssSha256,
            SignatureScheme::RsaPkcs1Sha256
        ]
    );
    let rsa_public = rsa.public_key().unwrap();
    let mut rsa_latency = Vec::new();
    for sc in [
        SignatureScheme::RsaPkcs1Sha256,
        SignatureScheme::RsaPssSha256,
    ] {
        let t1 = Instant::now();
        let sig = rsa.sign_digest(sc, &digest(sc, b"rsa in tpm")).unwrap();
        rsa_latency.push(t1.elapsed());
        assert!(verify(&rsa_public, sc, b"rsa in tpm", &sig), "{sc:?}");
    }

    // HMAC key generated in the TPM: its value never left the TPM, so the check is that
    // C_Verify in another session of the token accepts each MAC, that the MAC is
    // deterministic, and that it depends on the data.
    let h = open_hmac(&tpm.uri(TOKEN, "sas-key", "03", PIN)).unwrap();
    let data = b"0ne00000001%2Fregistrations%2Ftpm-device\n1700000000";
    let t1 = Instant::now();
    let mac = h.hmac_sha256(data).unwrap();
    let hmac_latency = t1.elapsed();
    assert_eq!(h.hmac_sha256(data).unwrap(), mac);
    assert_ne!(h.hmac_sha256(b"other").unwrap(), mac);
    let ctx = Pkcs11::new(TPM2_MODULE).unwrap();
    init_ctx(&ctx);
    let check = Token::existing(ctx, std::path::Path::new(TPM2_MODULE), TOKEN, PIN);
    let s = check.session();
    let key = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"sas-key".to_vec()),
        ])
        .unwrap()[0];
    s.verify(&Mechanism::Sha256Hmac, key, data, &mac)
        .expect("the TPM accepts the library's MAC");
    let mut bad = mac;
    bad[0] ^= 1;
    assert!(s.verify(&Mechanism::Sha256Hmac, key, data, &bad).is_err());
    drop(s);

    // An HMAC key with a known value, imported into the TPM: equal to a software HMAC.
    let hi = open_hmac(&tpm.uri(TOKEN, "sas-imported", "04", PIN)).unwrap();
    let sw = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &known);
    assert_eq!(
        hi.hmac_sha256(data).unwrap().as_slice(),
        ring::hmac::sign(&sw, data).as_ref()
    );
    // ... and it registers the symmetric-key enrollment through the library.
    let mut b = common::builder(&emu, "dev-sym");
    b.hmac_key(Arc::new(hi));
    let reg = common::client(&b).register().unwrap();
    assert_eq!(reg.device_id.as_deref(), Some("dev-sym-device"));

    // No such object, ambiguous token match is impossible here; a missing id is clear.
    let e = open_signer(&tpm.uri(TOKEN, "device-key", "99", PIN)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object);

    // Several threads at once: one shared signer and own signers, all through abrmd.
    let shared = ec;
    std::thread::scope(|scope| {
        for i in 0..4 {
            let shared = shared.clone();
            let public = public.clone();
            let uri = tpm.uri(TOKEN, "device-key", "01", PIN);
            scope.spawn(move || {
                let own = (i % 2 == 1).then(|| open_signer(&uri).unwrap());
                let s = own.as_ref().unwrap_or(&shared);
                for j in 0..5 {
                    let msg = format!("thread {i} msg {j}");
                    let sig = s.sign_digest(sc, &digest(sc, msg.as_bytes())).unwrap();
                    assert!(verify(&public, sc, msg.as_bytes(), &sig));
                }
            });
        }
    });
    println!(
        "tpm2-pkcs11 over swtpm+abrmd latency: ECDSA P-256 {ec_latency:?}, RSA-2048 PKCS#1 \
         {:?}, PSS {:?}, HMAC-SHA256 {hmac_latency:?}; whole test {:?}",
        rsa_latency[0],
        rsa_latency[1],
        t0.elapsed()
    );
}
