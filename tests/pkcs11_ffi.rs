//! The PKCS#11 setters of the C ABI (`dps_config_set_pkcs11_x509`, `dps_config_set_pkcs11_hmac`,
//! `dps_config_set_csr_pkcs11`) over a real SoftHSM2 token: registration with the certificate
//! from a file and from the token, HMAC keys, a CSR signed by the token, and the bad-input
//! statuses (the PIN never in a message).

#[path = "pkcs11_support/mod.rs"]
mod pkcs11_support;

use std::ffi::{CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::Arc;

use dps::ffi::*;
use dps::pkcs11::{Pkcs11Signer, Pkcs11Uri};
use dps_test_support::*;
use pkcs11_support::*;
use rustls::pki_types::pem::PemObject;

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn opt(s: &Option<CString>) -> *const std::ffi::c_char {
    s.as_ref().map_or(null(), |s| s.as_ptr())
}

unsafe fn config(emu: &dps_emulator::Emulator, id: Option<&str>) -> *mut dps_config {
    let mut cfg = null_mut();
    let id = id.map(cs);
    unsafe {
        assert_eq!(
            dps_config_new(cs(SCOPE).as_ptr(), opt(&id), &mut cfg),
            DPS_OK
        );
        let ep = cs(&format!("localhost:{}", emu.port()));
        assert_eq!(dps_config_set_endpoint(cfg, ep.as_ptr()), DPS_OK);
        assert_eq!(dps_config_set_default_roots(cfg, DPS_ROOTS_NONE), DPS_OK);
        assert_eq!(
            dps_config_add_trusted_ca_pem(cfg, cs(&emu.ca_pem()).as_ptr()),
            DPS_OK
        );
        assert_eq!(dps_config_set_timeout_ms(cfg, 10_000), DPS_OK);
    }
    cfg
}

fn last_error(cfg: *mut dps_config) -> String {
    // SAFETY: a live config.
    let p = unsafe { dps_error_message(dps_config_last_error(cfg)) };
    assert!(!p.is_null());
    // SAFETY: a NUL-terminated message owned by the config.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned()
}

/// Registers with the config; returns the status and the device ID or error message.
unsafe fn register(cfg: *mut dps_config) -> (u32, String) {
    unsafe {
        let (mut reg, mut err) = (null_mut(), null_mut());
        let st = dps_register(cfg, &mut reg, &mut err);
        let out = if st == DPS_OK {
            CStr::from_ptr(dps_registration_device_id(reg))
                .to_str()
                .unwrap()
                .to_owned()
        } else {
            CStr::from_ptr(dps_error_message(err))
                .to_str()
                .unwrap()
                .to_owned()
        };
        dps_registration_free(reg);
        dps_error_free(err);
        (st, out)
    }
}

fn thumbprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

const PIN: &str = "pin-4711-canary";

/// Key URI without PIN and module (those are given through the setter's arguments).
fn bare_uri(t: &Token, object: &str) -> String {
    format!("pkcs11:token={};object={object}", t.label)
}

#[test]
fn x509_key_in_token_registers_with_the_certificate_from_a_file_or_from_the_token() {
    let t = softhsm().new_token(&unique("ffi"), PIN);
    t.generate_ec("file", b"\x01", OID_P256);
    t.generate_ec("stored", b"\x02", OID_P256);
    let s1 = Arc::new(Pkcs11Signer::open(&Pkcs11Uri::parse(&t.uri("file")).unwrap()).unwrap());
    let s2 = Arc::new(Pkcs11Signer::open(&Pkcs11Uri::parse(&t.uri("stored")).unwrap()).unwrap());
    let (pem1, der1) = self_signed_certificate(&s1, "ffi-hsm-file");
    let (_, der2) = self_signed_certificate(&s2, "ffi-hsm-stored");
    t.store_certificate("stored", b"\x02", &der2);
    let emu = emulator(&format!(
        "[[enrollments]]\nregistration_id = \"ffi-hsm-file\"\nattestation = \"x509\"\nthumbprint = \"{}\"\n\
         [[enrollments]]\nregistration_id = \"ffi-hsm-stored\"\nattestation = \"x509\"\nthumbprint = \"{}\"\n",
        thumbprint(&der1),
        thumbprint(&der2)
    ));
    let module = cs(SOFTHSM_MODULE);
    let pin = cs(PIN);
    // SAFETY: valid arguments per the header.
    unsafe {
        // Chain from a file (PEM string), module and PIN as arguments.
        let cfg = config(&emu, None);
        let st = dps_config_set_pkcs11_x509(
            cfg,
            cs(&bare_uri(&t, "file")).as_ptr(),
            cs(&pem1).as_ptr(),
            module.as_ptr(),
            pin.as_ptr(),
        );
        assert_eq!(st, DPS_OK, "{}", last_error(cfg));
        let (st, dev) = register(cfg);
        assert_eq!(st, DPS_OK, "{dev}");
        assert_eq!(dev, "ffi-hsm-file");
        dps_config_free(cfg);

        // NULL chain: the certificate stored in the token; module and PIN in the URI.
        let cfg = config(&emu, None);
        let st =
            dps_config_set_pkcs11_x509(cfg, cs(&t.uri("stored")).as_ptr(), null(), null(), null());
        assert_eq!(st, DPS_OK, "{}", last_error(cfg));
        let (st, dev) = register(cfg);
        assert_eq!(st, DPS_OK, "{dev}");
        dps_config_free(cfg);

        // NULL chain but no certificate in the token: an object error naming the fix.
        let cfg = config(&emu, None);
        let st = dps_config_set_pkcs11_x509(
            cfg,
            cs(&bare_uri(&t, "file")).as_ptr(),
            null(),
            module.as_ptr(),
            pin.as_ptr(),
        );
        assert_eq!(st, DPS_ERR_PKCS11_OBJECT);
        let m = last_error(cfg);
        assert!(m.contains("no certificate"), "{m}");

        // The file's certificate over another token key: refused before any traffic.
        let st = dps_config_set_pkcs11_x509(
            cfg,
            cs(&bare_uri(&t, "stored")).as_ptr(),
            cs(&pem1).as_ptr(),
            module.as_ptr(),
            pin.as_ptr(),
        );
        assert_eq!(st, DPS_ERR_KEY_MISMATCH, "{}", last_error(cfg));
        dps_config_free(cfg);
    }
}

#[test]
fn csr_signed_by_a_token_key() {
    let t = softhsm().new_token(&unique("ffi-csr"), PIN);
    t.generate_ec("csr", b"\x01", OID_P384);
    let spki = Pkcs11Signer::open(&Pkcs11Uri::parse(&t.uri("csr")).unwrap())
        .unwrap()
        .public_key()
        .unwrap()
        .spki_der();
    let emu = emulator("");
    // SAFETY: valid arguments per the header.
    unsafe {
        let cfg = config(&emu, Some("dev-sym"));
        assert_eq!(dps_config_set_symmetric_key(cfg, cs(KEY).as_ptr()), DPS_OK);
        // a wrong PIN (before any login to this token) is reported by the setter, without it
        let wrong = "wrong-pin-2718";
        let st = dps_config_set_csr_pkcs11(
            cfg,
            cs(&bare_uri(&t, "csr")).as_ptr(),
            cs(SOFTHSM_MODULE).as_ptr(),
            cs(wrong).as_ptr(),
        );
        assert_eq!(st, DPS_ERR_PKCS11_PIN, "{}", last_error(cfg));
        assert!(!last_error(cfg).contains(wrong));
        let st = dps_config_set_csr_pkcs11(
            cfg,
            cs(&bare_uri(&t, "csr")).as_ptr(),
            cs(SOFTHSM_MODULE).as_ptr(),
            cs(PIN).as_ptr(),
        );
        assert_eq!(st, DPS_OK, "{}", last_error(cfg));
        let (mut reg, mut err) = (null_mut(), null_mut());
        assert_eq!(dps_register(cfg, &mut reg, &mut err), DPS_OK);
        let chain = CStr::from_ptr(dps_registration_issued_chain_pem(reg))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            dps_registration_issued_key_pem(reg).is_null(),
            "the key stays in the token"
        );
        dps_registration_free(reg);
        let leaf = rustls::pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert!(
            leaf.windows(spki.len()).any(|w| w == spki.as_slice()),
            "the issued leaf certifies the token key"
        );
        dps_config_free(cfg);
    }
}

#[test]
fn hmac_key_in_token_registers() {
    use base64::Engine as _;
    let t = softhsm().new_token(&unique("ffi-sas"), PIN);
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap();
    t.create_hmac_key("sas", b"\x01", &key);
    let emu = emulator("");
    // SAFETY: valid arguments per the header.
    unsafe {
        let cfg = config(&emu, Some("dev-sym"));
        let st = dps_config_set_pkcs11_hmac(
            cfg,
            cs(&bare_uri(&t, "sas")).as_ptr(),
            cs(SOFTHSM_MODULE).as_ptr(),
            cs(PIN).as_ptr(),
        );
        assert_eq!(st, DPS_OK, "{}", last_error(cfg));
        let (st, dev) = register(cfg);
        assert_eq!(st, DPS_OK, "{dev}");
        assert_eq!(dev, "dev-sym-device");
        dps_config_free(cfg);
    }
}

#[test]
fn bad_pin_module_and_uri_have_their_statuses_and_the_pin_is_never_echoed() {
    let t = softhsm().new_token(&unique("ffi-bad"), PIN);
    t.generate_ec("ec", b"\x01", OID_P256);
    let (_, der) = {
        let s = Pkcs11Signer::open(&Pkcs11Uri::parse(&t.uri("ec")).unwrap()).unwrap();
        self_signed_certificate(&s, "ffi-bad")
    };
    t.store_certificate("ec", b"\x01", &der);
    let emu = emulator("");
    let wrong = "wrong-pin-0815-canary";
    let cases: [(&str, Option<&str>, Option<&str>, u32); 6] = [
        ("ec", Some(SOFTHSM_MODULE), Some(wrong), DPS_ERR_PKCS11_PIN),
        (
            "ec",
            Some("/nonexistent/libpkcs11.so"),
            Some(PIN),
            DPS_ERR_PKCS11_MODULE,
        ),
        (
            "ec",
            Some("/lib/x86_64-linux-gnu/libc.so.6"),
            Some(PIN),
            DPS_ERR_PKCS11_MODULE,
        ),
        ("ec", None, Some(PIN), DPS_ERR_PKCS11_MODULE),
        (
            "nothing-here",
            Some(SOFTHSM_MODULE),
            Some(PIN),
            DPS_ERR_PKCS11_OBJECT,
        ),
        (
            "",
            Some(SOFTHSM_MODULE),
            Some(PIN),
            DPS_ERR_INVALID_ARGUMENT,
        ),
    ];
    for (object, module, pin, want) in cases {
        let uri = if object.is_empty() {
            "pkcs11:token=x".to_string()
        } else {
            bare_uri(&t, object)
        };
        let module = module.map(cs);
        let pin = pin.map(cs);
        // SAFETY: valid arguments per the header.
        unsafe {
            let cfg = config(&emu, None);
            let st =
                dps_config_set_pkcs11_x509(cfg, cs(&uri).as_ptr(), null(), opt(&module), opt(&pin));
            let m = last_error(cfg);
            assert_eq!(st, want, "{uri} {module:?}: {m}");
            assert!(!m.contains(wrong) && !m.contains(PIN), "PIN echoed: {m}");
            let st = dps_config_set_pkcs11_hmac(cfg, cs(&uri).as_ptr(), opt(&module), opt(&pin));
            let m = last_error(cfg);
            assert_ne!(st, DPS_OK, "{uri}");
            assert!(!m.contains(wrong) && !m.contains(PIN), "PIN echoed: {m}");
            dps_config_free(cfg);
        }
    }
    // NULL arguments.
    // SAFETY: NULL is allowed and reported.
    unsafe {
        let cfg = config(&emu, None);
        assert_eq!(
            dps_config_set_pkcs11_x509(cfg, null(), null(), null(), null()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_set_pkcs11_hmac(cfg, null(), null(), null()),
            DPS_ERR_NULL_ARGUMENT
        );
        let u = cs(&t.uri("ec"));
        assert_eq!(
            dps_config_set_pkcs11_x509(null_mut(), u.as_ptr(), null(), null(), null()),
            DPS_ERR_NULL_ARGUMENT
        );
        dps_config_free(cfg);
    }
}
