//! Recovery after the token was reset under a live signer: a separate test binary, since it
//! finalises SoftHSM for the whole process.

#[path = "pkcs11_support/mod.rs"]
mod pkcs11_support;

use std::sync::Mutex;

use dps::ErrorKind;
use dps::credential::{DigestSigner, HmacKey, SignatureScheme};
use dps::pkcs11::{Pkcs11HmacKey, Pkcs11Signer, Pkcs11Uri};
use pkcs11_support::*;

const SC: SignatureScheme = SignatureScheme::EcdsaP256Sha256;

/// Collects the library's log records, to see that recovery happened (and never logs a PIN).
struct Records(Mutex<Vec<String>>);
impl log::Log for Records {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", r.level(), r.args()));
    }
    fn flush(&self) {}
}
static RECORDS: Records = Records(Mutex::new(Vec::new()));

fn reopened() -> usize {
    let recs = RECORDS.0.lock().unwrap();
    assert!(
        !recs.iter().any(|r| r.contains("1234")),
        "a PIN was logged: {recs:?}"
    );
    recs.iter()
        .filter(|r| r.contains("reopening the session"))
        .count()
}

fn sign(s: &Pkcs11Signer, msg: &[u8]) -> dps::Result<Vec<u8>> {
    s.sign_digest(SC, &digest(SC, msg))
}

#[test]
fn signer_and_hmac_key_recover_after_the_token_is_reset_and_reinitialised() {
    log::set_logger(&RECORDS).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let hsm = softhsm();
    let mut t = hsm.new_token(&unique("reset"), "1234");
    t.generate_ec("k", b"\x01", OID_P256);
    let hkey = [0x42u8; 32];
    t.create_hmac_key("h", b"\x02", &hkey);
    let s = Pkcs11Signer::open(&Pkcs11Uri::parse(&t.uri("k")).unwrap()).unwrap();
    let h = Pkcs11HmacKey::open(&Pkcs11Uri::parse(&t.uri("h")).unwrap()).unwrap();
    let pk1 = s.public_key().unwrap();
    assert!(verify(&pk1, SC, b"one", &sign(&s, b"one").unwrap()));
    let sw = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &hkey);
    let expect = ring::hmac::sign(&sw, b"data");
    assert_eq!(h.hmac_sha256(b"data").unwrap().as_slice(), expect.as_ref());

    // 1. Every session and the login vanish (the module is finalised and initialised again,
    //    as when a token is pulled and put back): the next call reopens and logs in again.
    hsm.finalize_and_initialize();
    assert!(verify(&pk1, SC, b"two", &sign(&s, b"two").unwrap()));
    assert_eq!(h.hmac_sha256(b"data").unwrap().as_slice(), expect.as_ref());
    assert_eq!(
        reopened(),
        2,
        "the signer and the HMAC key each reopened their session"
    );

    // 2. Finalised under the library and not initialised again by anyone: the library
    //    initialises the module again itself.
    hsm.finalize_only();
    assert!(verify(&pk1, SC, b"three", &sign(&s, b"three").unwrap()));
    assert_eq!(h.hmac_sha256(b"data").unwrap().as_slice(), expect.as_ref());
    assert_eq!(reopened(), 4);
    assert!(
        RECORDS
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("initialising it again")),
        "the library initialised the module again"
    );
    hsm.initialize();

    // 3. The token is re-initialised (all objects erased): a clear error, not a hang or a
    //    stale handle; once the device is provisioned again (new key, same label and id),
    //    the same signer works with the new key.
    hsm.finalize_and_initialize();
    t.reinitialize();
    let e = sign(&s, b"four").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object, "{e}");
    assert!(
        e.message.contains("no private key matches"),
        "{}",
        e.message
    );
    let e = h.hmac_sha256(b"data").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object, "{e}");

    t.generate_ec("k", b"\x01", OID_P256);
    t.create_hmac_key("h", b"\x02", &[0x43; 32]);
    let pk2 = s.public_key().unwrap();
    assert_ne!(pk1, pk2);
    let sig = sign(&s, b"five").unwrap();
    assert!(verify(&pk2, SC, b"five", &sig));
    assert!(!verify(&pk1, SC, b"five", &sig));
    let sw2 = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[0x43; 32]);
    assert_eq!(
        h.hmac_sha256(b"data").unwrap().as_slice(),
        ring::hmac::sign(&sw2, b"data").as_ref()
    );

    // 4. Another process (softhsm2-util) re-initialises the token while this process uses
    //    it: the stale object handle is noticed, the session reopened, and the error says
    //    the key is gone; once the key is generated again, the same signer uses it.
    let out = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--token", &t.label, "--label", &t.label])
        .args(["--so-pin", "5678", "--pin", "1234"])
        .output()
        .expect("softhsm2-util (package softhsm2) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = reopened();
    let e = sign(&s, b"six").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Pkcs11Object, "{e}");
    assert_eq!(reopened(), before + 1);
    t.generate_ec("k", b"\x01", OID_P256);
    let pk3 = s.public_key().unwrap();
    assert!(verify(&pk3, SC, b"seven", &sign(&s, b"seven").unwrap()));
    assert_ne!(pk2, pk3);

    // A dead session handle is dropped without a failing C_CloseSession (no ERROR record).
    let recs = RECORDS.0.lock().unwrap();
    assert!(
        !recs.iter().any(|r| r.starts_with("ERROR")),
        "unexpected error records: {recs:?}"
    );
}
