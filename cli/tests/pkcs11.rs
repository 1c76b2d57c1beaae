//! `dps register` with keys generated inside a SoftHSM2 token (`--pkcs11-uri` with the
//! certificate from the token or from `--cert`, `--pkcs11-hmac-uri`), the PIN in every secret
//! form, and the errors (wrong PIN, no module, URI matching nothing, usage mistakes); the PIN
//! never appears in the output.

#[path = "../../tests/pkcs11_support/mod.rs"]
mod pkcs11_support;

use std::io::Write;
use std::process::{Command, Stdio};

use dps::pkcs11::{Pkcs11Signer, Pkcs11Uri};
use dps_test_support::{KEY, SCOPE, TempDir};
use pkcs11_support::*;

const PIN: &str = "cli-pin-8086-canary";

fn thumbprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn dps(args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dps"));
    c.args(args)
        .env("SOFTHSM2_CONF", &softhsm().conf)
        .env_remove("DPS_ID_SCOPE")
        .env_remove("DPS_REGISTRATION_ID")
        .env_remove("DPS_ENDPOINT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("run dps");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn register_with_keys_in_a_pkcs11_token() {
    use base64::Engine as _;
    let t = softhsm().new_token(&unique("cli"), PIN);
    t.generate_ec("stored", b"\x01", OID_P256);
    t.generate_ec("file", b"\x02", OID_P256);
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap();
    t.create_hmac_key("sas", b"\x03", &key);
    let s1 = Pkcs11Signer::open(&Pkcs11Uri::parse(&t.uri("stored")).unwrap()).unwrap();
    let s2 = Pkcs11Signer::open(&Pkcs11Uri::parse(&t.uri("file")).unwrap()).unwrap();
    let (_, der1) = self_signed_certificate(&s1, "cli-hsm-stored");
    t.store_certificate("stored", b"\x01", &der1);
    let (pem2, der2) = self_signed_certificate(&s2, "cli-hsm-file");
    let emu = dps_test_support::emulator(&format!(
        "[[enrollments]]\nregistration_id = \"cli-hsm-stored\"\nattestation = \"x509\"\nthumbprint = \"{}\"\n\
         [[enrollments]]\nregistration_id = \"cli-hsm-file\"\nattestation = \"x509\"\nthumbprint = \"{}\"\n",
        thumbprint(&der1),
        thumbprint(&der2)
    ));
    let dir = TempDir::new("dps-cli-pkcs11");
    let ca = dir.file("ca.pem", &emu.ca_pem());
    let cert = dir.file("cli-hsm-file.pem", &pem2);
    let pin_file = dir.file("pin", &format!("{PIN}\n"));
    let pin_at = format!("@{pin_file}");
    let endpoint = format!("localhost:{}", emu.port());
    let uri = |o: &str| format!("pkcs11:token={};object={o}", t.label);
    let (u_stored, u_file, u_sas) = (uri("stored"), uri("file"), uri("sas"));
    let base: Vec<&str> = vec![
        "register",
        "--endpoint",
        &endpoint,
        "--ca",
        &ca,
        "--roots",
        "none",
        "--id-scope",
        SCOPE,
        "--timeout",
        "20",
        "--json",
        "--pkcs11-module",
        SOFTHSM_MODULE,
    ];
    let run = |extra: &[&str], envs: &[(&str, &str)], stdin: Option<&str>| {
        let mut a = base.clone();
        a.extend_from_slice(extra);
        let o = dps(&a, envs, stdin);
        assert!(
            !o.stdout.contains(PIN) && !o.stderr.contains(PIN),
            "the PIN is printed: {o:?}"
        );
        o
    };

    // Certificate from the token, PIN as a value.
    let o = run(&["--pkcs11-uri", &u_stored, "--pkcs11-pin", PIN], &[], None);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("\"cli-hsm-stored\""), "{o:?}");
    // Certificate from --cert, PIN from the environment.
    let o = run(
        &[
            "--pkcs11-uri",
            &u_file,
            "--cert",
            &cert,
            "--pkcs11-pin",
            "env:CLI_PIN",
        ],
        &[("CLI_PIN", PIN)],
        None,
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("\"cli-hsm-file\""), "{o:?}");
    // HMAC key in the token, PIN from a file, then from stdin.
    for pin in [pin_at.as_str(), "-"] {
        let o = run(
            &[
                "--pkcs11-hmac-uri",
                &u_sas,
                "--registration-id",
                "dev-sym",
                "--pkcs11-pin",
                pin,
            ],
            &[],
            Some(&format!("{PIN}\n")),
        );
        assert_eq!(o.code, 0, "{pin}: {o:?}");
        assert!(o.stdout.contains("dev-sym-device"), "{o:?}");
    }

    // Wrong PIN: a credential error (exit 3) that names the PIN, not its value.
    let wrong = "wrong-cli-pin-6502";
    let o = run(
        &["--pkcs11-uri", &u_stored, "--pkcs11-pin", wrong],
        &[],
        None,
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stdout.contains("PIN"), "{o:?}");
    assert!(
        !o.stdout.contains(wrong) && !o.stderr.contains(wrong),
        "{o:?}"
    );
    // A URI that matches no object.
    let o = run(
        &["--pkcs11-uri", &uri("nothing"), "--pkcs11-pin", PIN],
        &[],
        None,
    );
    assert_eq!(o.code, 3, "{o:?}");
    // The certificate of another token key: refused before any traffic, naming both.
    let o = run(
        &[
            "--pkcs11-uri",
            &u_stored,
            "--cert",
            &cert,
            "--pkcs11-pin",
            PIN,
        ],
        &[],
        None,
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stdout.contains("cli-hsm-file.pem"), "{o:?}");
    // A malformed URI names the option.
    let o = run(
        &["--pkcs11-uri", "pkcs11:token=x", "--pkcs11-pin", PIN],
        &[],
        None,
    );
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stdout.contains("--pkcs11-uri"), "{o:?}");
}

#[test]
fn pkcs11_usage_errors() {
    let module_missing = dps(
        &[
            "register",
            "--id-scope",
            SCOPE,
            "--pkcs11-uri",
            "pkcs11:token=t;object=k",
            "--pkcs11-module",
            "/nonexistent/libpkcs11.so",
            "--pkcs11-pin",
            PIN,
        ],
        &[],
        None,
    );
    assert_eq!(module_missing.code, 3, "{module_missing:?}");
    assert!(
        module_missing.stderr.contains("/nonexistent/libpkcs11.so"),
        "{module_missing:?}"
    );
    assert!(!module_missing.stderr.contains(PIN), "{module_missing:?}");
    for (args, msg) in [
        (
            &["--pkcs11-pin", "1234", "--symmetric-key", KEY][..],
            "--pkcs11-pin needs --pkcs11-uri, --pkcs11-hmac-uri or --csr pkcs11:URI",
        ),
        (
            &[
                "--pkcs11-uri",
                "pkcs11:token=t;object=k",
                "--symmetric-key",
                KEY,
            ][..],
            "give one credential",
        ),
        (
            &[
                "--pkcs11-uri",
                "pkcs11:token=t;object=k",
                "--private-key",
                "k.pem",
            ][..],
            "--private-key does not go with --pkcs11-uri",
        ),
    ] {
        let mut a = vec!["register", "--id-scope", SCOPE];
        a.extend_from_slice(args);
        let o = dps(&a, &[], None);
        assert_eq!(o.code, 2, "{args:?}: {o:?}");
        assert!(o.stderr.contains(msg), "{args:?}: {o:?}");
    }
}

/// `--csr pkcs11:URI`: the CSR is signed inside the token, the issued leaf certifies the
/// token key, only the certificate is written (the key stays in the token; `--key-out` is
/// refused), and the PIN is never printed.
#[test]
fn register_with_a_csr_signed_in_the_token() {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let t = softhsm().new_token(&unique("cli-csr"), PIN);
    t.generate_ec("operational", b"\x07", OID_P256);
    let uri = format!("pkcs11:token={};object=operational", t.label);
    let spki = Pkcs11Signer::open(&Pkcs11Uri::parse(&t.uri("operational")).unwrap())
        .unwrap()
        .public_key()
        .unwrap()
        .spki_der();
    let emu = dps_test_support::emulator("");
    let dir = TempDir::new("dps-cli-pkcs11-csr");
    let ca = dir.file("ca.pem", &emu.ca_pem());
    let cert = dir.path("operational.pem");
    let endpoint = format!("localhost:{}", emu.port());
    let mut args = vec![
        "register",
        "--endpoint",
        &endpoint,
        "--ca",
        &ca,
        "--roots",
        "none",
        "--id-scope",
        SCOPE,
        "--timeout",
        "20",
        "--registration-id",
        "dev-sym",
        "--symmetric-key",
        KEY,
        "--csr",
        &uri,
        "--pkcs11-module",
        SOFTHSM_MODULE,
        "--pkcs11-pin",
        PIN,
        "--cert-out",
        &cert,
    ];
    let o = dps(&args, &[], None);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains(PIN) && !o.stderr.contains(PIN), "{o:?}");
    let chain: Vec<Vec<u8>> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(|c| c.unwrap().as_ref().to_vec())
        .collect();
    assert_eq!(chain.len(), 2);
    assert!(
        chain[0].windows(spki.len()).any(|w| w == spki.as_slice()),
        "the issued leaf certifies the token key"
    );
    std::fs::remove_file(&cert).unwrap();
    args.extend(["--key-out", "/nonexistent/k.pem"]);
    let o = dps(&args, &[], None);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr
            .contains("the key of --csr pkcs11:URI stays where it is"),
        "{o:?}"
    );
    assert!(!std::path::Path::new(&cert).exists());
}
