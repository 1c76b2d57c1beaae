//! Every callback (log, event, signer, HMAC) calls every entry point on the same objects and
//! on other objects: each call either works or returns DPS_ERR_INVALID_STATE as documented;
//! none hangs (a watchdog fails the test after 60 s).

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_void};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};

use dps::ffi::*;
use dps_test_support::*;

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// The objects a callback probes.
#[derive(Clone, Copy)]
struct Targets {
    client: *mut dps_client,
    config: *mut dps_config,
    other_client: *mut dps_client,
    other_config: *mut dps_config,
    reg: *mut dps_registration,
}

thread_local! {
    static TARGETS: RefCell<Option<Targets>> = const { RefCell::new(None) };
    static SEEN: RefCell<Vec<(String, u32)>> = const { RefCell::new(Vec::new()) };
}

fn note(name: &str, st: u32) {
    SEEN.with(|s| s.borrow_mut().push((name.to_owned(), st)));
}

/// Calls every entry point once; `drive_other` also registers on the other client.
unsafe fn probe(t: Targets, drive_other: bool) {
    unsafe {
        let mut reg = null_mut();
        let mut wait = 0u32;
        let mut buf = [0 as c_char; 512];
        let mut len = 0usize;
        // Driving calls on the same client.
        if !t.client.is_null() {
            note("register(same)", dps_client_register(t.client, &mut reg));
            note("step(same)", dps_client_step(t.client, &mut wait, &mut reg));
            note("lookup(same)", dps_client_lookup(t.client, &mut reg));
            note(
                "set_event_callback(same)",
                dps_client_set_event_callback(t.client, None, null_mut()),
            );
            // Getters on the same client never wait.
            let _ = dps_client_last_error(t.client);
            note("last_error(same)", DPS_OK);
            let _ = dps_client_registration_id(t.client);
            if !t.reg.is_null() {
                let st = dps_client_connection_string(
                    t.client,
                    t.reg,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut len,
                );
                note("connection_string(same)", st);
                let st = dps_client_iot_hub_sas_token(
                    t.client,
                    t.reg,
                    1_900_000_000,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut len,
                );
                note("iot_hub_sas_token(same)", st);
            }
        }
        // Config calls on the same config.
        if !t.config.is_null() {
            note(
                "config_set(same)",
                dps_config_set_timeout_ms(t.config, 10_000),
            );
            let _ = dps_config_last_error(t.config);
            note("register_config(same)", {
                let (mut r, mut e) = (null_mut(), null_mut());
                let st = dps_register(t.config, &mut r, &mut e);
                dps_registration_free(r);
                dps_error_free(e);
                if st == DPS_ERR_INVALID_STATE {
                    st
                } else {
                    DPS_OK
                }
            });
        }
        // Global entry points.
        let _ = dps_status_str(DPS_ERR_INVALID_STATE);
        let _ = dps_version();
        note(
            "status_class",
            if dps_status_class(DPS_ERR_DNS) == DPS_CLASS_NETWORK {
                DPS_OK
            } else {
                1
            },
        );
        // Other objects work normally.
        note(
            "config_set(other)",
            dps_config_set_timeout_ms(t.other_config, 10_000),
        );
        if drive_other {
            let st = dps_client_register(t.other_client, &mut reg);
            dps_registration_free(reg);
            note("register(other)", st);
        }
    }
}

unsafe extern "C" fn event_cb(_u: *mut c_void, event: u32, _w: u32, _c: u32) {
    if event == DPS_EVENT_REGISTERING {
        if let Some(t) = TARGETS.with(|t| *t.borrow()) {
            unsafe { probe(t, true) };
        }
    }
}

static LOG_PROBED: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn log_cb(_u: *mut c_void, _level: u32, _m: *const c_char) {
    if let Some(t) = TARGETS.with(|t| *t.borrow()) {
        if !LOG_PROBED.swap(true, Ordering::SeqCst) {
            unsafe { probe(t, false) };
            // Replace and disable the log callback from inside it.
            note(
                "set_log_callback(replace)",
                dps_set_log_callback(Some(log_cb), null_mut(), DPS_LOG_DEBUG),
            );
            note(
                "set_log_callback(disable)",
                dps_set_log_callback(None, null_mut(), 0),
            );
        }
    }
}

unsafe extern "C" fn hmac_cb(_u: *mut c_void, data: *const u8, len: usize, mac: *mut u8) -> i32 {
    if let Some(t) = TARGETS.with(|t| *t.borrow()) {
        unsafe { probe(t, false) };
    }
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap();
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let tag = ring::hmac::sign(&k, unsafe { std::slice::from_raw_parts(data, len) });
    unsafe { std::ptr::copy_nonoverlapping(tag.as_ref().as_ptr(), mac, 32) };
    0
}

unsafe fn sym_config(emu: &dps_emulator::Emulator, id: &str) -> *mut dps_config {
    let mut cfg = null_mut();
    unsafe {
        assert_eq!(
            dps_config_new(cs(SCOPE).as_ptr(), cs(id).as_ptr(), &mut cfg),
            DPS_OK
        );
        assert_eq!(
            dps_config_set_endpoint(cfg, cs(&format!("localhost:{}", emu.port())).as_ptr()),
            DPS_OK
        );
        assert_eq!(dps_config_set_default_roots(cfg, DPS_ROOTS_NONE), DPS_OK);
        assert_eq!(
            dps_config_add_trusted_ca_pem(cfg, cs(&emu.ca_pem()).as_ptr()),
            DPS_OK
        );
        assert_eq!(dps_config_set_timeout_ms(cfg, 10_000), DPS_OK);
        assert_eq!(dps_config_set_symmetric_key(cfg, cs(KEY).as_ptr()), DPS_OK);
    }
    cfg
}

fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(60));
        eprintln!("re-entrancy test hung for 60 s");
        std::process::exit(101);
    });
}

fn check(seen: &[(String, u32)]) {
    assert!(!seen.is_empty(), "the callback never ran");
    for (name, st) in seen {
        let want_busy = name.ends_with("(same)")
            && !name.starts_with("connection_string")
            && !name.starts_with("iot_hub")
            && !name.starts_with("last_error");
        if want_busy {
            assert_eq!(
                *st, DPS_ERR_INVALID_STATE,
                "{name} inside a callback of the same object"
            );
        } else {
            assert_eq!(*st, DPS_OK, "{name}");
        }
    }
}

fn run(
    set_callback: impl FnOnce(&Targets),
    drive: impl FnOnce(&Targets) -> u32,
    config_is_busy: bool,
) -> Vec<(String, u32)> {
    let emu = emulator("");
    unsafe {
        let cfg = sym_config(&emu, "dev-sym");
        let other_cfg = sym_config(&emu, "dev-sym");
        let (mut client, mut other) = (null_mut(), null_mut());
        assert_eq!(dps_client_new(cfg, &mut client, null_mut()), DPS_OK);
        assert_eq!(dps_client_new(other_cfg, &mut other, null_mut()), DPS_OK);
        // A registration to probe the getters with.
        let mut reg = null_mut();
        assert_eq!(dps_client_register(other, &mut reg), DPS_OK);
        let t = Targets {
            client,
            config: if config_is_busy { cfg } else { null_mut() },
            other_client: other,
            other_config: other_cfg,
            reg,
        };
        set_callback(&t);
        TARGETS.with(|x| *x.borrow_mut() = Some(t));
        let st = drive(&t);
        TARGETS.with(|x| *x.borrow_mut() = None);
        assert_eq!(st, DPS_OK, "the outer call still completes");
        dps_registration_free(reg);
        dps_client_free(client);
        dps_client_free(other);
        dps_config_free(cfg);
        dps_config_free(other_cfg);
    }
    SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

#[test]
fn callbacks_calling_back_in_never_hang() {
    watchdog();
    // Event callback: driving calls on the same client are refused, the rest works.
    let seen = run(
        |t| unsafe {
            assert_eq!(
                dps_client_set_event_callback(t.client, Some(event_cb), null_mut()),
                DPS_OK
            );
        },
        |t| unsafe {
            let mut reg = null_mut();
            let st = dps_client_register(t.client, &mut reg);
            dps_registration_free(reg);
            st
        },
        false,
    );
    check(&seen);
    assert!(seen.iter().any(|(n, _)| n == "register(same)"));
    assert!(seen.iter().any(|(n, _)| n == "register(other)"));

    // Log callback, called inside a registration on the same client.
    let seen = run(
        |_| {
            LOG_PROBED.store(false, Ordering::SeqCst);
            assert_eq!(
                dps_set_log_callback(Some(log_cb), null_mut(), DPS_LOG_DEBUG),
                DPS_OK
            );
        },
        |t| unsafe {
            let mut reg = null_mut();
            let st = dps_client_register(t.client, &mut reg);
            dps_registration_free(reg);
            st
        },
        false,
    );
    assert_eq!(dps_set_log_callback(None, null_mut(), 0), DPS_OK);
    check(&seen);
    assert!(seen.iter().any(|(n, _)| n == "register(same)"));
    assert!(seen.iter().any(|(n, _)| n == "set_log_callback(disable)"));
}

#[test]
fn key_callbacks_calling_back_in_never_hang() {
    watchdog();
    // HMAC callback: called inside the registration of the client whose config holds it.
    let emu = emulator("");
    unsafe {
        let cfg = sym_config(&emu, "dev-sym");
        assert_eq!(
            dps_config_set_hmac_callback(cfg, Some(hmac_cb), null_mut()),
            DPS_OK
        );
        let other_cfg = sym_config(&emu, "dev-sym");
        let (mut client, mut other) = (null_mut(), null_mut());
        assert_eq!(dps_client_new(cfg, &mut client, null_mut()), DPS_OK);
        assert_eq!(dps_client_new(other_cfg, &mut other, null_mut()), DPS_OK);
        let t = Targets {
            client,
            config: null_mut(),
            other_client: other,
            other_config: other_cfg,
            reg: null_mut(),
        };
        TARGETS.with(|x| *x.borrow_mut() = Some(t));
        let mut reg = null_mut();
        assert_eq!(dps_client_register(client, &mut reg), DPS_OK);
        TARGETS.with(|x| *x.borrow_mut() = None);
        dps_registration_free(reg);
        dps_client_free(client);
        dps_client_free(other);
        dps_config_free(cfg);
        dps_config_free(other_cfg);
    }
    let seen = SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()));
    check(&seen);
    assert!(seen.iter().any(|(n, _)| n == "register(same)"));
}

static SIGNER_CONFIG: std::sync::atomic::AtomicPtr<dps_config> =
    std::sync::atomic::AtomicPtr::new(null_mut());

unsafe extern "C" fn signer_cb(
    _u: *mut c_void,
    _scheme: u32,
    digest: *const u8,
    digest_len: usize,
    sig: *mut u8,
    _cap: usize,
    sig_len: *mut usize,
) -> i32 {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::DecodePrivateKey;
    let cfg = SIGNER_CONFIG.load(Ordering::SeqCst);
    unsafe {
        // The config is inside dps_config_set_x509_signer: every call on it is refused.
        note("config_set(same)", dps_config_set_timeout_ms(cfg, 1000));
        note(
            "config_last_error(same)",
            if dps_config_last_error(cfg).is_null() {
                DPS_ERR_INVALID_STATE
            } else {
                DPS_OK
            },
        );
        let (mut r, mut e) = (null_mut(), null_mut());
        note("register_config(same)", dps_register(cfg, &mut r, &mut e));
        let mut c = null_mut();
        note("client_new(same)", dps_client_new(cfg, &mut c, null_mut()));
        dps_error_free(e);
    }
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/x509/p256.key.pem"
    ))
    .unwrap();
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).unwrap();
    let s: p256::ecdsa::Signature = key
        .sign_prehash(unsafe { std::slice::from_raw_parts(digest, digest_len) })
        .unwrap();
    unsafe {
        std::ptr::copy_nonoverlapping(s.to_bytes().as_ptr(), sig, 64);
        *sig_len = 64;
    }
    0
}

#[test]
fn a_signer_calling_into_its_config_is_refused_not_aliased() {
    watchdog();
    let cert = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/x509/p256.cert.pem"
    ))
    .unwrap();
    unsafe {
        let mut cfg = null_mut();
        assert_eq!(
            dps_config_new(cs(SCOPE).as_ptr(), std::ptr::null(), &mut cfg),
            DPS_OK
        );
        SIGNER_CONFIG.store(cfg, Ordering::SeqCst);
        assert_eq!(
            dps_config_set_x509_signer(cfg, cs(&cert).as_ptr(), Some(signer_cb), null_mut()),
            DPS_OK
        );
        // After the setter the config works again.
        assert_eq!(dps_config_set_timeout_ms(cfg, 1000), DPS_OK);
        dps_config_free(cfg);
    }
    let seen = SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()));
    assert_eq!(seen.len(), 4);
    for (name, st) in seen {
        assert_eq!(st, DPS_ERR_INVALID_STATE, "{name}");
    }
}

#[test]
fn getters_do_not_wait_for_a_registration_on_another_thread() {
    // A server that accepts and never answers: the registration blocks in a read.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let conns: Vec<_> = listener.incoming().take(1).collect();
        std::thread::sleep(std::time::Duration::from_secs(5));
        drop(conns);
    });
    unsafe {
        let mut cfg = null_mut();
        assert_eq!(
            dps_config_new(cs(SCOPE).as_ptr(), cs("dev-sym").as_ptr(), &mut cfg),
            DPS_OK
        );
        assert_eq!(
            dps_config_set_endpoint(cfg, cs(&format!("127.0.0.1:{port}")).as_ptr()),
            DPS_OK
        );
        assert_eq!(dps_config_set_symmetric_key(cfg, cs(KEY).as_ptr()), DPS_OK);
        assert_eq!(dps_config_set_timeout_ms(cfg, 3000), DPS_OK);
        let mut client = null_mut();
        assert_eq!(dps_client_new(cfg, &mut client, null_mut()), DPS_OK);
        let addr = client as usize;
        let worker = std::thread::spawn(move || {
            let mut reg = null_mut();
            dps_client_register(addr as *mut dps_client, &mut reg)
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let t = std::time::Instant::now();
        assert!(
            dps_client_last_error(client).is_null(),
            "no call has completed yet"
        );
        let _ = dps_client_registration_id(client);
        let mut reg = null_mut();
        let busy = dps_client_register(client, &mut reg);
        let took = t.elapsed();
        assert_eq!(
            busy, DPS_ERR_INVALID_STATE,
            "a second driving call is refused at once"
        );
        assert!(
            took < std::time::Duration::from_millis(100),
            "getters waited {took:?}"
        );
        dps_client_cancel(client);
        assert_eq!(worker.join().unwrap(), DPS_ERR_CANCELLED);
        assert_eq!(
            dps_error_status(dps_client_last_error(client)),
            DPS_ERR_CANCELLED
        );
        dps_client_free(client);
        dps_config_free(cfg);
    }
}
