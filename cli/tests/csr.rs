//! `dps register --csr` and `dps renew` against an in-process dps-emulator: the issued pair
//! on disk (mode 0600, nothing else left beside it), the refusals that write nothing, and the
//! renewal with the issued leaf in an X.509 group whose CA is the issuing CA.

use std::process::Command;

use dps_emulator::Emulator;
use dps_emulator::pki::TestCa;
use dps_test_support::{GROUP_KEY, KEY, SCOPE, TempDir, base_toml, start, sym_enrollment};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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

/// Runs `dps CMD` against `emu` (trusting its CA) with `extra`.
fn dps(emu: &Emulator, dir: &TempDir, cmd: &str, extra: &[&str]) -> Out {
    let ca = dir.dir().join("emulator-ca.pem");
    if !ca.exists() {
        std::fs::write(&ca, emu.ca_pem()).unwrap();
    }
    let endpoint = format!("localhost:{}", emu.port());
    let o = Command::new(env!("CARGO_BIN_EXE_dps"))
        .arg(cmd)
        .args(["--endpoint", &endpoint, "--ca", ca.to_str().unwrap()])
        .args(["--roots", "none", "--id-scope", SCOPE, "--quiet"])
        .args(["--timeout", "20", "--backoff", "0.01,0.1"])
        .args(extra)
        .env_remove("DPS_ID_SCOPE")
        .env_remove("DPS_REGISTRATION_ID")
        .env_remove("DPS_ENDPOINT")
        .output()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The names in `dir` other than the emulator CA file, sorted.
fn listing(dir: &TempDir) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "emulator-ca.pem")
        .collect();
    v.sort();
    v
}

fn mode(path: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chain(path: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(|c| c.unwrap().as_ref().to_vec())
        .collect()
}

/// The SubjectPublicKeyInfo of a certificate (DER): tbsCertificate's 7th field (after an
/// optional [0] version).
fn cert_spki(cert: &[u8]) -> Vec<u8> {
    fn tlv(b: &[u8]) -> (usize, usize) {
        // (header length, content length)
        let l = b[1] as usize;
        if l < 0x80 {
            (2, l)
        } else {
            let n = l & 0x7f;
            let len = b[2..2 + n]
                .iter()
                .fold(0usize, |a, &x| (a << 8) | x as usize);
            (2 + n, len)
        }
    }
    let (h, _) = tlv(cert);
    let tbs = &cert[h..];
    let (h, _) = tlv(tbs);
    let mut f = &tbs[h..];
    let skip = |f: &mut &[u8]| {
        let (h, l) = tlv(f);
        let whole = f[..h + l].to_vec();
        *f = &f[h + l..];
        whole
    };
    if f[0] == 0xa0 {
        skip(&mut f);
    }
    for _ in 0..5 {
        skip(&mut f); // serial, signature, issuer, validity, subject
    }
    skip(&mut f)
}

fn key_spki(key_path: &str) -> Vec<u8> {
    let pem = std::fs::read_to_string(key_path).unwrap();
    assert!(matches!(
        PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap(),
        PrivateKeyDer::Pkcs8(_)
    ));
    use rcgen::PublicKeyData;
    rcgen::KeyPair::from_pem(&pem)
        .unwrap()
        .subject_public_key_info()
}

#[test]
fn register_writes_the_issued_pair_mode_0600() {
    let emu = start(&format!("{}{}", base_toml(), sym_enrollment("cli-csr", "")));
    for alg in ["p256", "p384", "rsa2048"] {
        let dir = TempDir::new("dps-cli-csr");
        let (cert, key) = (dir.path("device.pem"), dir.path("device.key"));
        let o = dps(
            &emu,
            &dir,
            "register",
            &[
                "--registration-id",
                "cli-csr",
                "--symmetric-key",
                KEY,
                "--csr",
                alg,
                "--cert-out",
                &cert,
                "--key-out",
                &key,
                "--json",
            ],
        );
        assert_eq!(o.code, 0, "{alg}: {o:?}");
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["status"], "assigned");
        assert_eq!(listing(&dir), ["device.key", "device.pem"], "{alg}");
        assert_eq!((mode(&cert), mode(&key)), (0o600, 0o600), "{alg}");
        // the generated key goes to its file only, never to the output
        let key_text = std::fs::read_to_string(&key).unwrap();
        let body = key_text.lines().nth(1).unwrap();
        assert!(
            !o.stdout.contains(body) && !o.stderr.contains(body),
            "{alg}: the key is printed"
        );
        let certs = chain(&cert);
        assert_eq!(certs.len(), 2, "{alg}: leaf and issuing CA");
        assert_eq!(certs[1], chain_of_pem(&emu.ca_pem())[0], "{alg}");
        if alg != "rsa2048" {
            // rcgen (ring) reads EC keys only
            assert_eq!(cert_spki(&certs[0]), key_spki(&key), "{alg}: a pair");
        } else {
            let pem = std::fs::read_to_string(&key).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{alg}");
            let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
            let pair = ring::rsa::KeyPair::from_pkcs8(der.secret_der()).unwrap();
            assert_eq!(pair.public().modulus_len(), 256, "RSA-2048");
        }
    }
}

fn chain_of_pem(pem: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().as_ref().to_vec())
        .collect()
}

#[test]
fn refusals_write_nothing() {
    let emu = start(&format!(
        "{}{}",
        base_toml(),
        sym_enrollment(
            "cli-csr-bad",
            r#"faults = [
  { on = "register", issued_chain = "wrong_key" },
  { on = "register", issued_chain = "expired" },
]"#
        )
    ));
    let dir = TempDir::new("dps-cli-csr-refused");
    let (cert, key) = (dir.path("device.pem"), dir.path("device.key"));
    let args = |more: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--registration-id",
            "cli-csr-bad",
            "--symmetric-key",
            KEY,
            "--cert-out",
            &cert,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    let run = |more: &[&'static str], with_key_out: bool| {
        let mut a = args(more);
        if with_key_out {
            a.extend(["--key-out".to_string(), key.clone()]);
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        dps(&emu, &dir, "register", &a)
    };
    // the scripted broken chains: refused with their status, no file written
    for words in [
        "certifies another public key than the CSR's",
        "the issued leaf certificate expired at",
    ] {
        let o = run(&["--csr", "p256"], true);
        // the Issued* statuses are of the network class (what DPS sent is unusable): exit 4
        assert_eq!(o.code, 4, "{o:?}");
        assert!(o.stderr.contains(words), "{o:?}");
        assert!(o.stderr.contains("issuedCertificateChain refused"), "{o:?}");
        assert_eq!(listing(&dir), Vec::<String>::new(), "{o:?}");
    }
    assert_eq!(emu.counters().get("register 202"), 2);

    // usage errors, before DPS is contacted
    for (more, key_out, words) in [
        (
            &["--csr", "p256"][..],
            false,
            "--csr p256 generates the key in memory: give --key-out FILE",
        ),
        (
            &["--csr", "/nonexistent/key.pem"][..],
            true,
            "--key-out is only for a key generated in memory",
        ),
        (
            &["--csr", "pkcs11:token=t;object=k"][..],
            true,
            "the key of --csr pkcs11:URI stays where it is",
        ),
        (
            &["--csr", "p256", "--use-saved", "/tmp/x"][..],
            true,
            "--use-saved does not go with --csr",
        ),
    ] {
        let o = run(more, key_out);
        assert_eq!(o.code, 2, "{more:?}: {o:?}");
        assert!(o.stderr.contains(words), "{more:?}: {o:?}");
    }
    let o = dps(
        &emu,
        &dir,
        "register",
        &[
            "--registration-id",
            "x",
            "--symmetric-key",
            KEY,
            "--key-out",
            &key,
        ],
    );
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--key-out needs --csr"), "{o:?}");
    assert_eq!(listing(&dir), Vec::<String>::new());

    // an existing file is refused (exit 3) and left as it was; DPS is not contacted
    std::fs::write(&cert, "keep me").unwrap();
    let o = run(&["--csr", "p256"], true);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains("the file exists; give --overwrite"),
        "{o:?}"
    );
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), "keep me");
    assert_eq!(listing(&dir), ["device.pem"]);
    assert_eq!(emu.counters().get("register 202"), 2);

    // the script is over; --overwrite replaces it
    let o = run(&["--csr", "p256", "--overwrite"], true);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(chain(&cert).len(), 2);
    assert_eq!(mode(&cert), 0o600);
    assert_eq!(listing(&dir), ["device.key", "device.pem"]);
}

#[test]
fn renew_with_the_issued_leaf() {
    let root = TestCa::new("CLI Operational Issuing CA");
    let dir = TempDir::new("dps-cli-renew");
    let ca_cert = dir.file("issuing-ca.pem", &root.cert_pem());
    let ca_key = dir.file("issuing-ca.key", &root.key_pem());
    let emu = start(&format!(
        r#"{}
[[enrollments]]
group_id = "onboarding"
attestation = "symmetric_key"
primary_key = "{GROUP_KEY}"
issuance = {{ ca_cert_file = {ca_cert:?}, ca_key_file = {ca_key:?} }}

[[enrollments]]
group_id = "operational"
attestation = "x509"
ca_pem = """{}"""
issuance = {{ ca_cert_file = {ca_cert:?}, ca_key_file = {ca_key:?} }}
"#,
        base_toml(),
        root.cert_pem()
    ));
    std::fs::remove_file(&ca_key).unwrap();
    std::fs::remove_file(&ca_cert).unwrap();
    let (cert, key) = (dir.path("device.pem"), dir.path("device.key"));
    let o = dps(
        &emu,
        &dir,
        "register",
        &[
            "--registration-id",
            "cli-renew",
            "--group-key",
            GROUP_KEY,
            "--csr",
            "p256",
            "--cert-out",
            &cert,
            "--key-out",
            &key,
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["enrollmentGroupId"], "onboarding");
    let first = (chain(&cert), std::fs::read(&key).unwrap());
    assert_eq!(first.0[1], root.cert_der());

    for round in 0..2 {
        let before = (chain(&cert), std::fs::read(&key).unwrap());
        let o = dps(
            &emu,
            &dir,
            "renew",
            &["--cert", &cert, "--private-key", &key, "--json"],
        );
        assert_eq!(o.code, 0, "renewal {round}: {o:?}");
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        // authenticated by the issued leaf, in the group whose CA issued it
        assert_eq!(v["enrollmentGroupId"], "operational", "{round}");
        assert_eq!(v["registrationId"], "cli-renew", "{round}");
        let after = (chain(&cert), std::fs::read(&key).unwrap());
        assert_ne!(after.1, before.1, "{round}: a new key");
        assert_ne!(after.0[0], before.0[0], "{round}: a new leaf");
        assert_eq!(
            cert_spki(&after.0[0]),
            key_spki(&key),
            "{round}: the files are a pair"
        );
        assert_eq!((mode(&cert), mode(&key)), (0o600, 0o600));
        assert_eq!(listing(&dir), ["device.key", "device.pem"]);
    }

    // a key the certificate is not for: refused (exit 3), nothing replaced
    let other_pem = TestCa::new("unrelated").key_pem();
    let other = dir.file("other.key", &other_pem);
    let before = std::fs::read(&cert).unwrap();
    let o = dps(
        &emu,
        &dir,
        "renew",
        &["--cert", &cert, "--private-key", &other],
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert_eq!(std::fs::read(&cert).unwrap(), before);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), other_pem);
    std::fs::remove_file(&other).unwrap();
    let o = dps(&emu, &dir, "renew", &["--cert", &cert]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr
            .contains("renew needs --cert FILE and --private-key FILE")
    );
}
