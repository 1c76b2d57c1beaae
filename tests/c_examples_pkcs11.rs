//! `c-examples/register_pkcs11.c` against the emulator with keys generated inside a SoftHSM2
//! token (certificate from the token and from a file; an HMAC key with its IoT Hub token;
//! a wrong PIN). Links the release `libdps.a` built with the `pkcs11` and `tpm` features, which
//! `.ci/build-release` leaves in `target/release-hw` (`$DPS_PKCS11_LIB_DIR` overrides).

#[path = "pkcs11_support/mod.rs"]
mod pkcs11_support;

use std::path::PathBuf;
use std::process::{Command, Output};

use dps::pkcs11::{Pkcs11Signer, Pkcs11Uri};
use dps_test_support::*;
use pkcs11_support::*;

fn thumbprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

const PIN: &str = "c-example-pin-2718";

#[test]
fn c_pkcs11_example_registers_with_softhsm_keys() {
    use base64::Engine as _;
    let lib = std::env::var_os("DPS_PKCS11_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release-hw"));
    assert!(
        lib.join("libdps.a").exists(),
        "{}/libdps.a is missing: run .ci/build-release first (it builds the pkcs11,tpm library there)",
        lib.display()
    );
    let build = target_dir().join("c-tests/build-pkcs11");
    dps_test_support::cmake_build(&build, &lib, &[]);
    let hsm = softhsm();
    let t = hsm.new_token(&unique("c-example"), PIN);
    t.generate_ec("stored", b"\x01", OID_P256);
    t.generate_rsa("file", b"\x02", 2048);
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap();
    t.create_hmac_key("sas", b"\x03", &key);
    let s1 = Pkcs11Signer::open(&Pkcs11Uri::parse(&t.uri("stored")).unwrap()).unwrap();
    let s2 = Pkcs11Signer::open(&Pkcs11Uri::parse(&t.uri("file")).unwrap()).unwrap();
    let (_, der1) = self_signed_certificate(&s1, "c-hsm-stored");
    t.store_certificate("stored", b"\x01", &der1);
    let (pem2, der2) = self_signed_certificate(&s2, "c-hsm-file");
    let emu = emulator(&format!(
        "[[enrollments]]\nregistration_id = \"c-hsm-stored\"\nattestation = \"x509\"\nthumbprint = \"{}\"\n\
         [[enrollments]]\nregistration_id = \"c-hsm-file\"\nattestation = \"x509\"\nthumbprint = \"{}\"\n",
        thumbprint(&der1),
        thumbprint(&der2)
    ));
    let tmp = fresh_dir("c-example-pkcs11");
    let ca = tmp.join("emulator-ca.pem");
    std::fs::write(&ca, emu.ca_pem()).unwrap();
    let cert: PathBuf = tmp.join("c-hsm-file.pem");
    std::fs::write(&cert, &pem2).unwrap();

    let example = |env: &[(&str, &str)]| -> Output {
        let mut cmd = Command::new(build.join("c-examples/register_pkcs11"));
        cmd.env_clear()
            .env("SOFTHSM2_CONF", &hsm.conf)
            .env("DPS_ID_SCOPE", SCOPE)
            .env("DPS_ENDPOINT", format!("localhost:{}", emu.port()))
            .env("DPS_CA_FILE", &ca)
            .env("DPS_PKCS11_MODULE", SOFTHSM_MODULE);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    };
    let stdout = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let uri = |o: &str| format!("pkcs11:token={};object={o}", t.label);

    // EC key, certificate from the token.
    let o = example(&[("DPS_PKCS11_URI", &uri("stored")), ("DPS_PKCS11_PIN", PIN)]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("device=c-hsm-stored"), "{o:?}");
    // RSA key, certificate from a file.
    let o = example(&[
        ("DPS_PKCS11_URI", &uri("file")),
        ("DPS_PKCS11_PIN", PIN),
        ("DPS_CERT_FILE", cert.to_str().unwrap()),
    ]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("device=c-hsm-file"), "{o:?}");
    // HMAC key, and the IoT Hub token it signs.
    let o = example(&[
        ("DPS_PKCS11_HMAC_URI", &uri("sas")),
        ("DPS_PKCS11_PIN", PIN),
        ("DPS_REGISTRATION_ID", "dev-sym"),
    ]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("device=dev-sym-device"), "{o:?}");
    assert!(
        stdout(&o).contains("iot hub token: SharedAccessSignature,"),
        "{o:?}"
    );
    // A wrong PIN: the configuration fails, without the PIN in the message.
    let wrong = "wrong-pin-c-example-1618";
    let o = example(&[
        ("DPS_PKCS11_URI", &uri("stored")),
        ("DPS_PKCS11_PIN", wrong),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("configuration") && err.contains("PIN"),
        "{o:?}"
    );
    assert!(!err.contains(wrong), "{o:?}");
}
