//! Secrets never leak: registrations with canary key, group key, proxy
//! password, key password and SAS values at TRACE logging (raw `log` records,
//! before any redaction by the C log bridge), then every log line, error
//! message and Debug output is searched for them. With the `tpm` feature, a
//! TPM registration on swtpm too: the identity (HMAC) key the emulator made for
//! the challenge and the inner wrapper keys of its blobs (read through its
//! test hooks), the hub key, and the SAS signatures made with them. This binary installs its own `log` logger, so it
//! is a separate test target.

use dps_test_support as support;
#[cfg(feature = "pkcs11")]
#[path = "pkcs11_support/mod.rs"]
mod pkcs11_support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use dps::{ConfigBuilder, X509Credential};
use dps_test_support::*;
use support::{ProxyOptions, TestProxy};

/// 32 bytes whose base64 spells CANARY: easy to spot in any text.
const CANARY_KEY: &str = "CANARYkeyCANARYkeyCANARYkeyCANARYkeyCANARYk=";
const CANARY_GROUP_KEY: &str = "CANARYgroupCANARYgroupCANARYgroupCANARYgroup";
const CANARY_PROXY_PASS: &str = "CANARY-proxy-pass";
const FIXTURE_KEY_PASS: &str = "fixture-pass";

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        let line = format!("{} {}: {}", r.level(), r.target(), r.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static C: OnceLock<&'static Capture> = OnceLock::new();
    C.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("no other logger in this binary");
        log::set_max_level(log::LevelFilter::Trace);
        c
    })
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn pct(s: &str) -> String {
    s.replace('+', "%2b")
        .replace('/', "%2f")
        .replace('=', "%3d")
}

/// Every SAS signature the client could have sent for `id` with `key`
/// between `from` and `to` (TTL 1 h): the values that must not leak.
fn possible_sigs(key: &[u8], id: &str, from: u64, to: u64) -> Vec<String> {
    let sr = format!("{}%2fregistrations%2f{}", SCOPE.to_lowercase(), id);
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut out = Vec::new();
    for se in from + 3600 - 2..=to + 3600 + 2 {
        let sig = b64(ring::hmac::sign(&k, format!("{sr}\n{se}").as_bytes()).as_ref());
        out.push(pct(&sig));
        out.push(pct(&sig).to_uppercase());
        out.push(sig);
    }
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn no_secret_in_logs_errors_or_debug_output() {
    let cap = capture();
    let leaf_pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/x509/p256.cert.pem"
    ))
    .unwrap();
    let enc_key_pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/x509/p256.enc.key.pem"
    ))
    .unwrap();
    let leaf_der = rustls::pki_types::pem::PemObject::from_pem_slice(leaf_pem.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    let thumb: String = ring::digest::digest(&ring::digest::SHA256, &leaf_der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let emu = emulator(&format!(
        r#"
[[enrollments]]
registration_id = "secret-dev"
attestation = "symmetric_key"
primary_key = "{CANARY_KEY}"
faults = [{{ on = "poll", status = 401 }}]
[[enrollments]]
group_id = "secret-group"
attestation = "symmetric_key"
primary_key = "{CANARY_GROUP_KEY}"
[[enrollments]]
registration_id = "x509-p256-device"
attestation = "x509"
thumbprint = "{thumb}"
"#
    ));
    let proxy = TestProxy::start(ProxyOptions {
        require_auth: Some(format!(
            "Basic {}",
            b64(format!("user:{CANARY_PROXY_PASS}").as_bytes())
        )),
        ..ProxyOptions::default()
    });
    let t0 = unix_now();
    let mut texts: Vec<String> = Vec::new();

    // 1. Individual key through an authenticating proxy; a 401 on a poll
    //    makes the client mint a second token.
    let mut b = builder(&emu, "secret-dev");
    b.symmetric_key(CANARY_KEY).unwrap();
    b.proxy(&proxy.url(Some(&format!("user:{CANARY_PROXY_PASS}"))))
        .unwrap();
    texts.push(format!("{b:?}"));
    let config = Arc::new(b.build().unwrap());
    texts.push(format!("{config:?}"));
    texts.push(format!("{:?}", config.credential()));
    let mut c = dps::Client::new(config.clone());
    let r = c.register().expect("registers");
    texts.push(format!("{r:?}"));
    assert_eq!(proxy.tunnels.load(std::sync::atomic::Ordering::SeqCst), 1);

    // 2. Group key (the derived key is a secret too).
    let mut b = builder(&emu, "secret-group-dev");
    b.group_key(CANARY_GROUP_KEY).unwrap();
    texts.push(format!("{b:?}"));
    let mut c = client(&b);
    c.register().expect("group device registers");
    texts.push(format!("{:?}", c.config()));

    // 3. Failures carrying secrets nearby: wrong key, wrong proxy password,
    //    wrong key password, 401 on the PUT.
    let mut b = builder(&emu, "secret-dev");
    b.symmetric_key("CANARYbadCANARYbadCANARYbadCANARYbadCANARYA=")
        .unwrap();
    let e = client(&b).register().unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let mut b = builder(&emu, "secret-dev");
    b.symmetric_key(CANARY_KEY).unwrap();
    b.proxy(&proxy.url(Some("user:CANARY-wrong-proxy-pass")))
        .unwrap();
    let e = client(&b).register().unwrap_err();
    assert_eq!(e.http_status, Some(407));
    texts.push(format!("{e} {e:?} {b:?}"));
    let e = X509Credential::from_pem(
        leaf_pem.as_bytes(),
        &enc_key_pem,
        Some(b"CANARY-wrong-key-pass"),
    )
    .unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let e = ConfigBuilder::new(SCOPE)
        .unwrap()
        .symmetric_key("CANARY not base64 CANARY")
        .map(|_| ())
        .unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let e = ConfigBuilder::new(SCOPE)
        .unwrap()
        .proxy("http://user:CANARY-bad%zz@host:1")
        .map(|_| ())
        .unwrap_err();
    texts.push(format!("{e} {e:?}"));

    // 4. X.509 with an encrypted key: the key password.
    let cred = X509Credential::from_pem(
        leaf_pem.as_bytes(),
        &enc_key_pem,
        Some(FIXTURE_KEY_PASS.as_bytes()),
    )
    .unwrap();
    texts.push(format!("{cred:?}"));
    let mut b = builder(&emu, "x509-p256-device");
    b.x509(cred);
    texts.push(format!("{b:?}"));
    let mut c = client(&b);
    c.register().expect("x509 registers");
    texts.push(format!("{:?}", c.config()));

    // 5. A CSR with a key generated by the library (experimental certificate issuance): the
    //    private key is handed out once, and never shows up in Debug, errors or logs.
    let mut b = builder(&emu, "secret-dev");
    b.symmetric_key(CANARY_KEY).unwrap();
    b.csr(dps::CsrKey::generate(dps::CsrAlgorithm::P256));
    texts.push(format!("{b:?}"));
    let mut c = client(&b);
    texts.push(format!("{:?}", c.config()));
    let r = c.register().expect("registers with a CSR");
    texts.push(format!("{r:?}"));
    let generated_key = r.issued_private_key_pem.clone().expect("generated key");
    texts.push(format!("{generated_key:?}"));

    // 6. PKCS#11 (with the `pkcs11` feature): registrations with the PIN as a setter and in
    //    the URI, a wrong PIN, Debug of the URI, the signer, the credential and the config.
    #[cfg(feature = "pkcs11")]
    pkcs11_texts(&mut texts);

    // 7. TPM attestation (with the `tpm` feature): the secrets only the emulator and the TPM
    //    know, which it returns to be searched for below.
    #[cfg(feature = "tpm")]
    let tpm_canaries = tpm::texts(&mut texts);

    // Let the last log lines land.
    std::thread::sleep(Duration::from_millis(50));
    let t1 = unix_now();
    let lines = cap.0.lock().unwrap().clone();
    assert!(
        lines.len() > 20,
        "TRACE logging captured too little: {}",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| l.starts_with("TRACE ")),
        "no TRACE records captured"
    );

    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(CANARY_KEY)
        .unwrap();
    let group_bytes = base64::engine::general_purpose::STANDARD
        .decode(CANARY_GROUP_KEY)
        .unwrap();
    let derived = dps_emulator::sas::derive_device_key(&group_bytes, "secret-group-dev");
    let mut canaries: Vec<String> = vec![
        "CANARY".into(),
        FIXTURE_KEY_PASS.into(),
        b64(format!("user:{CANARY_PROXY_PASS}").as_bytes()),
        b64(b"user:CANARY-wrong-proxy-pass"),
        b64(&derived),
        "SharedAccessSignature".into(),
        "sig=".into(),
        "Proxy-Authorization".into(),
    ];
    canaries.extend(possible_sigs(&key_bytes, "secret-dev", t0, t1));
    let key_lines: Vec<&str> = generated_key
        .expose()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(key_lines.len() >= 2, "a PKCS#8 PEM body");
    let key_der = base64::engine::general_purpose::STANDARD
        .decode(key_lines.concat())
        .unwrap();
    // The secret is the private scalar (the PKCS#8 also holds the public key, which the
    // certificate shows): ECPrivateKey's `INTEGER 1, OCTET STRING (32)`. The canaries are the
    // scalar in hex and base64 and every PEM line holding part of it.
    let at = key_der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("an ECPrivateKey in the PKCS#8")
        + 5;
    let scalar = &key_der[at..at + 32];
    canaries.push(scalar.iter().map(|b| format!("{b:02x}")).collect());
    canaries.push(scalar.iter().map(|b| format!("{b:02X}")).collect());
    canaries.push(b64(scalar));
    for (i, l) in key_lines.iter().enumerate() {
        if i * 48 < at + 32 && at < (i + 1) * 48 {
            canaries.push(l.to_string());
        }
    }
    canaries.extend(possible_sigs(&derived, "secret-group-dev", t0, t1));
    #[cfg(feature = "tpm")]
    {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("activated the DPS challenge")),
            "the TPM registration logged nothing"
        );
        canaries.extend(tpm_canaries.finish(unix_now()));
    }
    let all = lines.iter().chain(texts.iter());
    let mut leaks = Vec::new();
    for text in all {
        for c in &canaries {
            if text.contains(c.as_str()) {
                leaks.push(format!("{c:?} in: {text}"));
            }
        }
    }
    println!(
        "searched {} log lines and {} error/Debug texts for {} secret values",
        lines.len(),
        texts.len(),
        canaries.len()
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// Runs PKCS#11 registrations with a canary PIN and collects every error and Debug text.
#[cfg(feature = "pkcs11")]
fn pkcs11_texts(texts: &mut Vec<String>) {
    use dps::pkcs11::{Pkcs11HmacKey, Pkcs11Signer, Pkcs11Uri};
    use pkcs11_support::*;
    const PIN: &str = "CANARY-pkcs11-pin";
    let t = softhsm().new_token(&unique("secrets"), PIN);
    t.generate_ec("ec", b"\x01", OID_P256);
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap();
    t.create_hmac_key("sas", b"\x02", &key);
    let bare = |o: &str| format!("pkcs11:token={};object={o}", t.label);
    let mut uri = Pkcs11Uri::parse(&bare("ec")).unwrap();
    uri.set_module_path(SOFTHSM_MODULE).set_pin(PIN);
    texts.push(format!("{uri} {uri:?}"));
    let signer = std::sync::Arc::new(Pkcs11Signer::open(&uri).unwrap());
    texts.push(format!("{signer:?}"));
    let (_, der) = self_signed_certificate(&signer, "secrets-hsm");
    t.store_certificate("ec", b"\x01", &der);
    let thumb: String = ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let emu = emulator(&format!(
        "[[enrollments]]\nregistration_id = \"secrets-hsm\"\nattestation = \"x509\"\nthumbprint = \"{thumb}\"\n"
    ));
    // The PIN in the URI (pin-value) and as a setter; certificate from the token.
    let in_uri = Pkcs11Uri::parse(&format!(
        "{}?module-path={SOFTHSM_MODULE}&pin-value={PIN}",
        bare("ec")
    ))
    .unwrap();
    texts.push(format!("{in_uri} {in_uri:?}"));
    for u in [&uri, &in_uri] {
        let cred = dps::pkcs11::x509_credential(u, None).unwrap();
        texts.push(format!("{cred:?}"));
        let mut b = builder(&emu, "secrets-hsm");
        b.x509(cred);
        texts.push(format!("{b:?}"));
        let mut c = client(&b);
        c.register().expect("token key registers");
        texts.push(format!("{:?}", c.config()));
    }
    let mut sas = Pkcs11Uri::parse(&bare("sas")).unwrap();
    sas.set_module_path(SOFTHSM_MODULE).set_pin(PIN);
    let h = std::sync::Arc::new(Pkcs11HmacKey::open(&sas).unwrap());
    texts.push(format!("{h:?}"));
    let mut b = builder(&emu, "dev-sym");
    b.hmac_key(h);
    texts.push(format!("{b:?}"));
    client(&b).register().expect("token HMAC key registers");
    // Wrong PINs, as a setter and in the URI, on a token nobody is logged in to (a login
    // is shared by the process): the errors.
    let t2 = softhsm().new_token(&unique("secrets-wrong"), PIN);
    t2.generate_ec("ec", b"\x01", OID_P256);
    t2.create_hmac_key("sas", b"\x02", &key);
    let bare = |o: &str| format!("pkcs11:token={};object={o}", t2.label);
    let mut wrong = Pkcs11Uri::parse(&bare("ec")).unwrap();
    wrong
        .set_module_path(SOFTHSM_MODULE)
        .set_pin("CANARY-wrong-pin");
    let e = Pkcs11Signer::open(&wrong).unwrap_err();
    assert_eq!(e.kind, dps::ErrorKind::Pkcs11Pin, "{e}");
    texts.push(format!("{e} {e:?} {wrong:?}"));
    let w2 = Pkcs11Uri::parse(&format!(
        "{}?module-path={SOFTHSM_MODULE}&pin-value=CANARY-wrong-pin2",
        bare("sas")
    ))
    .unwrap();
    let e = Pkcs11HmacKey::open(&w2).unwrap_err();
    assert_eq!(e.kind, dps::ErrorKind::Pkcs11Pin, "{e}");
    texts.push(format!("{e} {e:?} {w2:?}"));
    // A malformed URI carrying a PIN.
    let e = Pkcs11Uri::parse("pkcs11:token=x?pin-value=CANARY-bad-uri-pin").unwrap_err();
    texts.push(format!("{e} {e:?}"));
}

/// A TPM registration on a fresh swtpm at TRACE, its refusals, and Debug of every TPM object.
#[cfg(feature = "tpm")]
mod tpm {
    use super::*;
    use dps::tpm::{Tpm, TpmOptions, tpm_info};
    use dps_emulator::tpm::swtpm::{Swtpm, TEST_HUB_KEY};

    /// The secret values of the TPM registrations, and when the signing ones were made.
    pub(super) struct Canaries {
        keys: Vec<Vec<u8>>,
        sas: Vec<(Vec<u8>, String)>,
        signatures: Vec<String>,
        t0: u64,
    }

    fn encodings(key: &[u8]) -> Vec<String> {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        vec![b64(key), pct(&b64(key)), hex.to_uppercase(), hex]
    }

    impl Canaries {
        /// Every encoding of every key, and every SAS signature the keys could have made
        /// between the start and `t1`.
        pub(super) fn finish(self, t1: u64) -> Vec<String> {
            let mut out: Vec<String> = self.keys.iter().flat_map(|k| encodings(k)).collect();
            for (key, id) in &self.sas {
                out.extend(possible_sigs(key, id, self.t0, t1));
            }
            for sig in self.signatures {
                // As in the token (percent-encoded) and as plain base64.
                let plain = sig
                    .replace("%2B", "+")
                    .replace("%2b", "+")
                    .replace("%2F", "/")
                    .replace("%2f", "/")
                    .replace("%3D", "=")
                    .replace("%3d", "=");
                out.push(plain);
                out.push(sig);
            }
            out
        }
    }

    pub(super) fn texts(texts: &mut Vec<String>) -> Canaries {
        let t0 = unix_now();
        let swtpm = Swtpm::start();
        let options = TpmOptions {
            tcti: swtpm.tcti(),
            create_missing: true,
            command_timeout: Duration::from_secs(30),
            ..TpmOptions::default()
        };
        let info = tpm_info(&options).expect("tpm_info on swtpm");
        texts.push(format!("{info:?} {options:?}"));
        let ek = &info.endorsement_key;
        let regid = info.registration_id.clone();
        let emu = emulator(&format!(
            r#"
[[enrollments]]
registration_id = "{regid}"
attestation = "tpm"
endorsement_key = "{ek}"
hub_key = "{TEST_HUB_KEY}"
device_id = "secret-tpm"
[[enrollments]]
registration_id = "secret-tpm-bad-blob"
attestation = "tpm"
endorsement_key = "{ek}"
corrupt_blob = "challenge"
[[enrollments]]
registration_id = "secret-tpm-bad-hub"
attestation = "tpm"
endorsement_key = "{ek}"
hub_key = "{TEST_HUB_KEY}"
corrupt_blob = "hub"
"#
        ));
        let tpm = Arc::new(Tpm::open(&options).expect("the TPM opens"));
        texts.push(format!("{tpm:?} {:?}", tpm.hmac_key()));
        let mut keys = Vec::new();
        let mut sas = Vec::new();
        let mut signatures = Vec::new();

        // The registration, twice (the second replaces the persisted key): each challenge's
        // identity key, read from the emulator right after.
        let mut b = builder(&emu, &regid);
        b.tpm(tpm.clone());
        texts.push(format!("{b:?}"));
        let config = Arc::new(b.build().unwrap());
        texts.push(format!("{config:?} {:?}", config.credential()));
        let mut c = dps::Client::new(config.clone());
        for _ in 0..2 {
            let r = c.register().expect("TPM registration");
            texts.push(format!("{r:?}"));
            let k = emu
                .test_hook_tpm_identity_key(&regid)
                .expect("the emulator challenged the device");
            assert_eq!(k.len(), 32);
            sas.push((k.clone(), regid.clone()));
            keys.push(k);
            // The inner wrapper keys of the challenge and hub-key blobs (what
            // ActivateCredential returns to the client's memory).
            let inner = emu.test_hook_tpm_inner_wrap_keys(&regid);
            assert_eq!(inner.len(), 2, "challenge and hub-key blobs");
            keys.extend(inner.iter().map(|k| k.to_vec()));
            // The IoT Hub token the TPM signs with the hub key: its signature is a secret.
            let token = dps::iot_hub_sas_token(&r, config.credential(), unix_now() + 3600)
                .expect("TPM-signed hub token");
            let sig = token
                .as_str()
                .split('&')
                .find_map(|p| p.strip_prefix("sig="))
                .expect("a sig")
                .to_owned();
            signatures.push(sig);
        }
        let hub_key = base64::engine::general_purpose::STANDARD
            .decode(TEST_HUB_KEY)
            .unwrap();
        keys.push(hub_key);

        // Refusals: a tampered challenge blob, a tampered hub-key blob, an enrollment for
        // another ID with this EK unknown.
        for id in [
            "secret-tpm-bad-blob",
            "secret-tpm-bad-hub",
            "secret-tpm-nobody",
        ] {
            let mut b = builder(&emu, id);
            b.tpm(tpm.clone());
            let e = client(&b).register().unwrap_err();
            texts.push(format!("{e} {e:?}"));
            if let Some(k) = emu.test_hook_tpm_identity_key(id) {
                sas.push((k.clone(), id.to_owned()));
                keys.push(k);
            }
            let inner = emu.test_hook_tpm_inner_wrap_keys(id);
            keys.extend(inner.iter().map(|k| k.to_vec()));
        }
        assert_eq!(
            keys.len(),
            12,
            "4 identity keys, the hub key, 7 inner wrapper keys (challenge and hub blobs)"
        );
        texts.extend(emu.log_lines());
        Canaries {
            keys,
            sas,
            signatures,
            t0,
        }
    }
}
