//! Keys the library never sees, through the C ABI: a signing callback (ECDSA P-256/P-384 and
//! RSA PKCS#1 v1.5 / PSS, raw and DER answers) and an HMAC callback (individual and
//! group-derived keys), against the emulator; and every way such a callback can go wrong.

use std::ffi::{CStr, CString, c_void};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};

use dps::ffi::*;
use dps_test_support::*;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use rsa::pkcs8::DecodePrivateKey;

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/x509/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A test "secure element": holds a key and signs digests, or misbehaves on purpose.
enum Key {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa {
        key: rsa::RsaPrivateKey,
        pss: bool,
        pkcs1: bool,
    },
}

struct Element {
    key: Key,
    /// Answer DER instead of raw r||s (ECDSA).
    der: bool,
    /// Fail (return -7) from the n-th call on (0 = never).
    fail_from: usize,
    /// Report this signature length instead of the real one.
    bad_len: Option<usize>,
    calls: AtomicUsize,
    schemes: std::sync::Mutex<Vec<u32>>,
}

impl Element {
    fn new(key: Key) -> Box<Element> {
        Box::new(Element {
            key,
            der: false,
            fail_from: 0,
            bad_len: None,
            calls: AtomicUsize::new(0),
            schemes: Default::default(),
        })
    }
}

unsafe extern "C" fn sign_cb(
    userdata: *mut c_void,
    scheme: u32,
    digest: *const u8,
    digest_len: usize,
    sig: *mut u8,
    sig_cap: usize,
    sig_len: *mut usize,
) -> i32 {
    let e = unsafe { &*(userdata as *const Element) };
    let n = e.calls.fetch_add(1, Ordering::SeqCst) + 1;
    e.schemes.lock().unwrap().push(scheme);
    if e.fail_from != 0 && n >= e.fail_from {
        return -7;
    }
    let digest = unsafe { std::slice::from_raw_parts(digest, digest_len) };
    let out: Vec<u8> = match (&e.key, scheme) {
        (Key::P256(k), DPS_SIG_ECDSA_P256_SHA256) => {
            let s: p256::ecdsa::Signature = k.sign_prehash(digest).unwrap();
            if e.der {
                s.to_der().as_bytes().to_vec()
            } else {
                s.to_bytes().to_vec()
            }
        }
        (Key::P384(k), DPS_SIG_ECDSA_P384_SHA384) => {
            let s: p384::ecdsa::Signature = k.sign_prehash(digest).unwrap();
            if e.der {
                s.to_der().as_bytes().to_vec()
            } else {
                s.to_bytes().to_vec()
            }
        }
        (
            Key::Rsa {
                key, pkcs1: true, ..
            },
            DPS_SIG_RSA_PKCS1_SHA256,
        ) => key
            .sign(rsa::Pkcs1v15Sign::new::<sha2_010::Sha256>(), digest)
            .unwrap(),
        (Key::Rsa { key, pss: true, .. }, DPS_SIG_RSA_PSS_SHA256) => key
            .sign_with_rng(
                &mut rand_core_06::OsRng,
                rsa::Pss::new_with_salt::<sha2_010::Sha256>(32),
                digest,
            )
            .unwrap(),
        _ => return -2, // scheme not supported by this element
    };
    assert!(out.len() <= sig_cap);
    unsafe {
        std::ptr::copy_nonoverlapping(out.as_ptr(), sig, out.len());
        *sig_len = e.bad_len.unwrap_or(out.len());
    }
    0
}

fn p256_key(pem: &str) -> Key {
    Key::P256(p256::ecdsa::SigningKey::from_pkcs8_pem(pem).unwrap())
}

fn x509_emulator(names: &[(&str, &str)]) -> dps_emulator::Emulator {
    let mut extra = String::new();
    for (id, cert) in names {
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .unwrap();
        let thumb = ring::digest::digest(&ring::digest::SHA256, &der);
        let hex: String = thumb.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        extra.push_str(&format!(
            "[[enrollments]]\nregistration_id = \"{id}\"\nattestation = \"x509\"\nthumbprint = \"{hex}\"\n"
        ));
    }
    emulator(&extra)
}

unsafe fn config(emu: &dps_emulator::Emulator, id: Option<&str>) -> *mut dps_config {
    let mut cfg = null_mut();
    let id = id.map(cs);
    unsafe {
        assert_eq!(
            dps_config_new(
                cs(SCOPE).as_ptr(),
                id.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                &mut cfg
            ),
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
        assert_eq!(dps_config_set_backoff_ms(cfg, 10, 100), DPS_OK);
    }
    cfg
}

fn last_error(cfg: *mut dps_config) -> String {
    let p = unsafe { dps_error_message(dps_config_last_error(cfg)) };
    assert!(!p.is_null());
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned()
}

/// Registers with `element` signing for `cert`; returns the status and the error message.
fn register_with(cert: &str, element: &Element, emu: &dps_emulator::Emulator) -> (u32, String) {
    unsafe {
        let cfg = config(emu, None);
        let st = dps_config_set_x509_signer(
            cfg,
            cs(cert).as_ptr(),
            Some(sign_cb),
            element as *const Element as *mut c_void,
        );
        if st != DPS_OK {
            let m = last_error(cfg);
            dps_config_free(cfg);
            return (st, m);
        }
        let (mut reg, mut err) = (null_mut(), null_mut());
        let st = dps_register(cfg, &mut reg, &mut err);
        let msg = if err.is_null() {
            String::new()
        } else {
            CStr::from_ptr(dps_error_message(err))
                .to_str()
                .unwrap()
                .to_owned()
        };
        if st == DPS_OK {
            assert!(
                CStr::from_ptr(dps_registration_device_id(reg))
                    .to_str()
                    .unwrap()
                    .starts_with("x509-")
            );
        }
        dps_registration_free(reg);
        dps_error_free(err);
        dps_config_free(cfg);
        (st, msg)
    }
}

#[test]
fn ecdsa_and_rsa_signers_register() {
    let (p256c, p384c, rsac) = (
        fixture("p256.cert.pem"),
        fixture("p384.cert.pem"),
        fixture("rsa.cert.pem"),
    );
    let emu = x509_emulator(&[
        ("x509-p256-device", &p256c),
        ("x509-p384-device", &p384c),
        ("x509-rsa-device", &rsac),
    ]);
    let p256k = || p256_key(&fixture("p256.key.pem"));
    // The P-384 fixture is SEC1 ("EC PRIVATE KEY").
    let p384 = p384::ecdsa::SigningKey::from(
        p384::SecretKey::from_sec1_pem(&fixture("p384.sec1.key.pem")).unwrap(),
    );
    let rsa_key = || rsa::RsaPrivateKey::from_pkcs8_pem(&fixture("rsa.key.pem")).unwrap();

    // P-256, raw r||s: one check at set time and one handshake.
    let e = Element::new(p256k());
    assert_eq!(register_with(&p256c, &e, &emu), (DPS_OK, String::new()));
    assert_eq!(
        e.calls.load(Ordering::SeqCst),
        2,
        "one self-check + one handshake"
    );
    assert!(
        e.schemes
            .lock()
            .unwrap()
            .iter()
            .all(|&s| s == DPS_SIG_ECDSA_P256_SHA256)
    );

    // P-256 answering DER.
    let mut e = Element::new(p256k());
    e.der = true;
    assert_eq!(register_with(&p256c, &e, &emu).0, DPS_OK);

    // P-384 (SHA-384 digests), raw and DER.
    let e = Element::new(Key::P384(p384.clone()));
    assert_eq!(register_with(&p384c, &e, &emu).0, DPS_OK);
    assert!(
        e.schemes
            .lock()
            .unwrap()
            .iter()
            .all(|&s| s == DPS_SIG_ECDSA_P384_SHA384)
    );
    let mut e = Element::new(Key::P384(p384));
    e.der = true;
    assert_eq!(register_with(&p384c, &e, &emu).0, DPS_OK);

    // RSA with PSS only, with PKCS#1 v1.5 only, and with both.
    for (pss, pkcs1) in [(true, false), (false, true), (true, true)] {
        let e = Element::new(Key::Rsa {
            key: rsa_key(),
            pss,
            pkcs1,
        });
        assert_eq!(
            register_with(&rsac, &e, &emu).0,
            DPS_OK,
            "pss={pss} pkcs1={pkcs1}"
        );
        let used = e.schemes.lock().unwrap().clone();
        // Both schemes are tried once at set time; the handshake uses a working one.
        assert_eq!(
            &used[..2],
            &[DPS_SIG_RSA_PSS_SHA256, DPS_SIG_RSA_PKCS1_SHA256]
        );
        let hs = used[2];
        assert!(if pss {
            hs == DPS_SIG_RSA_PSS_SHA256
        } else {
            hs == DPS_SIG_RSA_PKCS1_SHA256
        });
    }
}

#[test]
fn a_signer_without_the_certificates_key_is_refused_before_any_traffic() {
    let emu = x509_emulator(&[]);
    // A fresh P-256 key that is not the certificate's.
    let other = p256::ecdsa::SigningKey::random(&mut rand_core_06::OsRng);
    let e = Element::new(Key::P256(other));
    let (st, msg) = register_with(&fixture("p256.cert.pem"), &e, &emu);
    assert_eq!(st, DPS_ERR_KEY_MISMATCH, "{msg}");
    assert!(
        msg.contains("does not hold this certificate's key"),
        "{msg}"
    );
    // A P-256 key for an RSA certificate: the element cannot make the scheme asked for.
    let e = Element::new(p256_key(&fixture("p256.key.pem")));
    let (st, msg) = register_with(&fixture("rsa.cert.pem"), &e, &emu);
    assert_eq!(st, DPS_ERR_SIGNER_FAILED, "{msg}");
    assert!(msg.contains("callback returned -2"), "{msg}");
    assert_eq!(emu.counters().tcp_connections, 0, "nothing was sent");
}

#[test]
fn failing_and_malformed_signers_have_their_own_status() {
    let cert = fixture("p256.cert.pem");
    let emu = x509_emulator(&[("x509-p256-device", &cert)]);
    // Fails at once.
    let mut e = Element::new(p256_key(&fixture("p256.key.pem")));
    e.fail_from = 1;
    let (st, msg) = register_with(&cert, &e, &emu);
    assert_eq!(st, DPS_ERR_SIGNER_FAILED);
    assert!(msg.contains("callback returned -7"), "{msg}");
    // Wrong length.
    for bad in [0usize, 63, 65, 5000] {
        let mut e = Element::new(p256_key(&fixture("p256.key.pem")));
        e.bad_len = Some(bad);
        let (st, msg) = register_with(&cert, &e, &emu);
        assert_eq!(st, DPS_ERR_SIGNER_FAILED, "len {bad}: {msg}");
    }
    // Passes the check, then fails in the TLS handshake: the caller sees SIGNER_FAILED, not a
    // TLS alert, and the deadline is not spent retrying.
    let mut e = Element::new(p256_key(&fixture("p256.key.pem")));
    e.fail_from = 2;
    let t = std::time::Instant::now();
    let (st, msg) = register_with(&cert, &e, &emu);
    assert_eq!(st, DPS_ERR_SIGNER_FAILED, "{msg}");
    assert!(msg.contains("callback returned -7"), "{msg}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // NULL callback and NULL chain.
    unsafe {
        let cfg = config(&emu, None);
        assert_eq!(
            dps_config_set_x509_signer(cfg, cs(&cert).as_ptr(), None, null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_set_x509_signer(cfg, std::ptr::null(), Some(sign_cb), null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_set_x509_signer(null_mut(), cs(&cert).as_ptr(), Some(sign_cb), null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        dps_config_free(cfg);
    }
}

struct HmacElement {
    key: Vec<u8>,
    fail: bool,
    calls: AtomicUsize,
}

unsafe extern "C" fn hmac_cb(
    userdata: *mut c_void,
    data: *const u8,
    len: usize,
    mac: *mut u8,
) -> i32 {
    let e = unsafe { &*(userdata as *const HmacElement) };
    e.calls.fetch_add(1, Ordering::SeqCst);
    if e.fail {
        return 42;
    }
    let data = unsafe { std::slice::from_raw_parts(data, len) };
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &e.key);
    let tag = ring::hmac::sign(&k, data);
    unsafe { std::ptr::copy_nonoverlapping(tag.as_ref().as_ptr(), mac, 32) };
    0
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn hmac_callback_registers_and_signs_iot_hub_tokens() {
    let emu = emulator("");
    // Individual key, and a group member whose derived key was provisioned at the factory.
    let mut derived = [0u8; 128];
    let mut n = 0;
    unsafe {
        assert_eq!(
            dps_derive_device_key(
                cs(GROUP_KEY).as_ptr(),
                cs("factory-dev-1").as_ptr(),
                derived.as_mut_ptr().cast(),
                128,
                &mut n
            ),
            DPS_OK
        );
    }
    let derived = std::str::from_utf8(&derived[..n]).unwrap().to_owned();
    for (id, key) in [("dev-sym", KEY.to_owned()), ("factory-dev-1", derived)] {
        let e = HmacElement {
            key: b64(&key),
            fail: false,
            calls: AtomicUsize::new(0),
        };
        unsafe {
            let cfg = config(&emu, Some(id));
            assert_eq!(
                dps_config_set_hmac_callback(
                    cfg,
                    Some(hmac_cb),
                    &e as *const HmacElement as *mut c_void
                ),
                DPS_OK
            );
            let mut client = null_mut();
            assert_eq!(dps_client_new(cfg, &mut client, null_mut()), DPS_OK);
            let mut reg = null_mut();
            assert_eq!(dps_client_register(client, &mut reg), DPS_OK, "{id}");
            assert_eq!(
                e.calls.load(Ordering::SeqCst),
                1,
                "one token for the whole registration"
            );
            // The connection string cannot hold a key the library never saw.
            let mut len = 0;
            assert_eq!(
                dps_client_connection_string(client, reg, null_mut(), 0, &mut len),
                DPS_ERR_UNSUPPORTED
            );
            // The IoT Hub token is signed by the callback and equals one signed in memory.
            let mut buf = vec![0u8; 512];
            assert_eq!(
                dps_client_iot_hub_sas_token(
                    client,
                    reg,
                    1_700_000_000,
                    buf.as_mut_ptr().cast(),
                    512,
                    &mut len
                ),
                DPS_OK
            );
            let token = std::str::from_utf8(&buf[..len]).unwrap();
            let hub = CStr::from_ptr(dps_registration_assigned_hub(reg))
                .to_str()
                .unwrap();
            let dev = CStr::from_ptr(dps_registration_device_id(reg))
                .to_str()
                .unwrap();
            let want = dps::SymmetricKey::individual(&key)
                .unwrap()
                .iot_hub_sas_token(hub, dev, 1_700_000_000)
                .unwrap();
            assert_eq!(token, want.as_str());
            assert!(token.starts_with(&format!(
                "SharedAccessSignature sr={hub}%2Fdevices%2F{dev}&sig="
            )));
            assert!(!token.contains("skn="));
            dps_registration_free(reg);
            dps_client_free(client);
            dps_config_free(cfg);
        }
    }
}

#[test]
fn a_failing_hmac_callback_has_its_own_status() {
    let emu = emulator("");
    let e = HmacElement {
        key: b64(KEY),
        fail: true,
        calls: AtomicUsize::new(0),
    };
    unsafe {
        let cfg = config(&emu, Some("dev-sym"));
        assert_eq!(
            dps_config_set_hmac_callback(cfg, None, null_mut()),
            DPS_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            dps_config_set_hmac_callback(
                cfg,
                Some(hmac_cb),
                &e as *const HmacElement as *mut c_void
            ),
            DPS_OK
        );
        let (mut reg, mut err) = (null_mut(), null_mut());
        assert_eq!(dps_register(cfg, &mut reg, &mut err), DPS_ERR_SIGNER_FAILED);
        let msg = CStr::from_ptr(dps_error_message(err)).to_str().unwrap();
        assert!(msg.contains("callback returned 42"), "{msg}");
        dps_error_free(err);
        dps_config_free(cfg);
    }
    assert_eq!(
        emu.counters().tcp_connections,
        0,
        "no request without a token"
    );
}
