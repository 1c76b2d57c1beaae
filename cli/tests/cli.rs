//! Drives the `dps` binary against an in-process dps-emulator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use dps_emulator::{Emulator, pki};
use serde_json::Value;

use dps_test_support::{GROUP_KEY, KEY, OTHER_KEY, SCOPE, TempDir};

const V1_ID: &str = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6";
const V1_KEY: &str = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=";

fn fixtures() -> PathBuf {
    dps_test_support::x509_fixtures()
}

struct Env {
    emu: Emulator,
    dir: TempDir,
    ca: String,
    device: pki::Issued,
    group_dev: pki::Issued,
    group_chain: String,
}

fn env() -> Env {
    env_with("")
}

fn env_with(extra: &str) -> Env {
    let device = pki::self_signed_device("cli-x509");
    let root = pki::TestCa::new("CLI Test Root");
    let inter = root.intermediate("CLI Test Intermediate");
    let group_dev = inter.issue_device("cli-group-dev");
    let group_chain = format!("{}{}", group_dev.cert_pem, inter.cert_pem());
    let fixture_root = std::fs::read_to_string(fixtures().join("chain-root.cert.pem")).unwrap();
    // The standard enrollments (dev-sym, sym-group, dev-disabled, dev-failed, dev-slow,
    // dev-flaky, x509-p256-device, ...) come from tests/fixtures/emulator.toml.
    let enrollments = format!(
        r#"
[[enrollments]]
registration_id = "cli-x509"
attestation = "x509"
thumbprint = "{}"
[[enrollments]]
group_id = "cli-x509-group"
attestation = "x509"
ca_pem = """{}"""
[[enrollments]]
group_id = "fixture-chain-group"
attestation = "x509"
ca_pem = """{fixture_root}"""
{extra}
"#,
        device.sha256_thumbprint,
        root.cert_pem(),
    );
    let emu = dps_test_support::emulator(&enrollments);
    let dir = TempDir::new("dps-cli-test");
    let ca = dir.file("ca.pem", &emu.ca_pem());
    Env {
        emu,
        dir,
        ca,
        device,
        group_dev,
        group_chain,
    }
}

impl Env {
    fn endpoint(&self) -> String {
        format!("localhost:{}", self.emu.port())
    }

    /// `--endpoint --ca --roots none --id-scope` plus short timeouts.
    fn base(&self) -> Vec<String> {
        [
            "--endpoint",
            &self.endpoint(),
            "--ca",
            &self.ca,
            "--roots",
            "none",
            "--id-scope",
            SCOPE,
            "--timeout",
            "20",
            "--request-timeout",
            "5",
            "--backoff",
            "0.01,0.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Runs `dps CMD` with `base()` (minus any option that `extra` sets itself) and `extra`.
    fn run(&self, cmd: &str, extra: &[&str]) -> Out {
        let mut args = vec![cmd.to_string()];
        let base = self.base();
        for pair in base.chunks(2) {
            if !extra.contains(&pair[0].as_str()) {
                args.extend(pair.iter().cloned());
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        dps(&args, &[])
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}\n{}", self.stdout, self.stderr)
        })
    }
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

fn dps<S: AsRef<str>>(args: &[S], envs: &[(&str, &str)]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dps"));
    c.args(args.iter().map(|a| a.as_ref()))
        .stdin(Stdio::null())
        .env_remove("DPS_ID_SCOPE")
        .env_remove("DPS_REGISTRATION_ID")
        .env_remove("DPS_ENDPOINT")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    for (k, v) in envs {
        c.env(k, v);
    }
    let o: Output = c.output().expect("run dps");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// register: credential kinds and output

#[test]
fn register_symmetric_key_human_output() {
    let e = env();
    let o = e.run(
        "register",
        &["--registration-id", "dev-sym", "--symmetric-key", KEY],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("status            assigned\n"), "{o:?}");
    assert!(
        o.stdout
            .contains("assigned hub      hub-a.azure-devices.net\n")
    );
    assert!(o.stdout.contains("device id         dev-sym-device\n"));
    assert!(o.stdout.contains("substatus         initialAssignment\n"));
    assert!(!o.stdout.contains(KEY), "no secret unless asked");
    assert!(
        o.stderr.is_empty(),
        "no progress when stderr is not a terminal: {o:?}"
    );
}

#[test]
fn register_json_and_connection_string() {
    let e = env();
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--json",
            "--connection-string",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let v = o.json();
    assert_eq!(v["status"], "assigned");
    assert_eq!(v["assignedHub"], "hub-a.azure-devices.net");
    assert_eq!(v["deviceId"], "dev-sym-device");
    assert_eq!(v["registrationId"], "dev-sym");
    assert_eq!(v["source"], "dps");
    assert!(v["etag"].is_string() && v["createdDateTimeUtc"].is_string());
    assert_eq!(
        v["connectionString"],
        format!("HostName=hub-a.azure-devices.net;DeviceId=dev-sym-device;SharedAccessKey={KEY}")
    );
}

#[test]
fn register_group_key_from_env_with_payload() {
    let e = env();
    let mut args = vec!["register".to_string()];
    args.extend(e.base());
    args.extend(
        [
            "--registration-id",
            V1_ID,
            "--group-key",
            "env:TEST_GROUP_KEY",
            "--payload",
            r#"{"model":"x1","fw":[1,2]}"#,
            "-j",
            "--connection-string",
        ]
        .map(String::from),
    );
    let o = dps(&args, &[("TEST_GROUP_KEY", GROUP_KEY)]);
    assert_eq!(o.code, 0, "{o:?}");
    let v = o.json();
    assert_eq!(v["deviceId"], V1_ID);
    assert_eq!(v["enrollmentGroupId"], "sym-group");
    assert_eq!(v["payload"], serde_json::json!({"model":"x1","fw":[1,2]}));
    assert!(
        v["connectionString"]
            .as_str()
            .unwrap()
            .ends_with(&format!("SharedAccessKey={V1_KEY}"))
    );
}

#[test]
fn register_key_and_payload_from_files() {
    let e = env();
    let key = e.dir.file("dev.key", &format!("{KEY}\n"));
    let payload = e.dir.file("payload.json", r#"{"site":"lab"}"#);
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            &format!("@{key}"),
            "--payload",
            &format!("@{payload}"),
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.json()["deviceId"], "dev-sym-device");
}

#[test]
fn register_x509_pem_registration_id_from_cn() {
    let e = env();
    let cert = e.dir.file("dev.pem", &e.device.cert_pem);
    let key = e.dir.file("dev.key", &e.device.key_pem);
    let o = e.run(
        "register",
        &[
            "--cert",
            &cert,
            "--private-key",
            &key,
            "--json",
            "--connection-string",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let v = o.json();
    assert_eq!(v["deviceId"], "cli-x509");
    assert!(
        v["connectionString"]
            .as_str()
            .unwrap()
            .ends_with(";DeviceId=cli-x509;x509=true")
    );
    // One combined PEM file (chain + key) works too.
    let both = e.dir.file(
        "both.pem",
        &format!("{}{}", e.device.cert_pem, e.device.key_pem),
    );
    let o = e.run("register", &["--cert", &both]);
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn register_x509_group_chain() {
    let e = env();
    let chain = e.dir.file("chain.pem", &e.group_chain);
    let key = e.dir.file("leaf.key", &e.group_dev.key_pem);
    let o = e.run(
        "register",
        &[
            "--cert",
            &chain,
            "--private-key",
            &key,
            "--registration-id",
            "cli-group-dev",
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.json()["enrollmentGroupId"], "cli-x509-group");
}

#[test]
fn register_encrypted_key_and_pkcs12_fixtures() {
    let e = env();
    let f = fixtures();
    let s = |p: &str| f.join(p).to_str().unwrap().to_owned();
    // Encrypted PKCS#8 with the password from a file; registration ID from the CN.
    let pw = e.dir.file("pw", "fixture-pass\n");
    let o = e.run(
        "register",
        &[
            "--cert",
            &s("p256.cert.pem"),
            "--private-key",
            &s("p256.enc.key.pem"),
            "--key-password",
            &format!("@{pw}"),
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.json()["deviceId"], "x509-p256-device");
    // Chain fixture (leaf + intermediate) for the group of its root.
    let o = e.run(
        "register",
        &[
            "--cert",
            &s("chain.pem"),
            "--private-key",
            &s("chain-leaf.key.pem"),
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.json()["deviceId"], "x509-chain-device");
    // PKCS#12 with leaf + intermediate + root.
    let o = e.run(
        "register",
        &[
            "--pkcs12",
            &s("chain.p12"),
            "--pkcs12-password",
            &format!("@{pw}"),
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let v = o.json();
    assert_eq!(v["deviceId"], "x509-chain-device");
    assert_eq!(v["enrollmentGroupId"], "fixture-chain-group");
    // Wrong PKCS#12 password: credential class.
    let o = e.run(
        "register",
        &["--pkcs12", &s("chain.p12"), "--pkcs12-password", "nope"],
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("PKCS#12"), "{o:?}");
    // Encrypted key without / with a wrong password.
    let o = e.run(
        "register",
        &[
            "--cert",
            &s("p256.cert.pem"),
            "--private-key",
            &s("p256.enc.key.pem"),
        ],
    );
    assert_eq!(o.code, 3, "{o:?}");
    let o = e.run(
        "register",
        &[
            "--cert",
            &s("p256.cert.pem"),
            "--private-key",
            &s("p256.enc.key.pem"),
            "--key-password",
            "wrong",
        ],
    );
    assert_eq!(o.code, 3, "{o:?}");
}

/// Issue 14 item 8: a password problem names the key file (not the certificate) and says
/// what is missing; a PKCS#12 file opened without a password says it needs one.
#[test]
fn password_errors_name_the_key_file_and_what_is_missing() {
    let e = env();
    let f = fixtures();
    let s = |p: &str| f.join(p).to_str().unwrap().to_owned();
    let (cert, key) = (s("p256.cert.pem"), s("p256.enc.key.pem"));
    let o = e.run("register", &["--cert", &cert, "--private-key", &key]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "{key}: the private key is encrypted and needs a password: give it with --key-password"
        )),
        "{o:?}"
    );
    assert!(
        !o.stderr.contains(&cert),
        "names the certificate file: {o:?}"
    );
    let o = e.run(
        "register",
        &[
            "--cert",
            &cert,
            "--private-key",
            &key,
            "--key-password",
            "wrong",
            "--json",
        ],
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains(&format!("{key}: wrong password")),
        "{o:?}"
    );
    assert!(o.stderr.contains("(--key-password)"), "{o:?}");
    assert!(
        !o.stderr.contains(&cert),
        "names the certificate file: {o:?}"
    );
    let v = o.json();
    assert_eq!(v["error"]["kind"], "KeyPassword");
    assert!(!v["error"]["message"].as_str().unwrap().contains(&cert));

    let p12 = s("chain.p12");
    let o = e.run("register", &["--pkcs12", &p12]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "{p12}: the PKCS#12 file needs a password (the empty password does not open it): give it with --pkcs12-password"
        )),
        "{o:?}"
    );
    assert!(!o.stderr.contains("wrong"), "{o:?}");
    let o = e.run("register", &["--pkcs12", &p12, "--pkcs12-password", "nope"]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains(&format!("{p12}: wrong PKCS#12 password")),
        "{o:?}"
    );
}

/// The body of the first PEM block of a fixture, as DER.
fn fixture_der(name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(fixtures().join(name)).unwrap();
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// Issue 14 item 8: a DER file given where PEM is expected gets the openssl command that
/// converts it; an empty PKCS#12 file is called empty (not a BER problem).
#[test]
fn der_and_empty_files_get_a_useful_message() {
    let e = env();
    let f = fixtures();
    let pem_key = f.join("p256.key.pem").to_str().unwrap().to_owned();
    let pem_cert = f.join("p256.cert.pem").to_str().unwrap().to_owned();
    let der_cert = e.dir.path("p256.cert.der");
    std::fs::write(&der_cert, fixture_der("p256.cert.pem")).unwrap();
    let der_key = e.dir.path("p256.key.der");
    std::fs::write(&der_key, fixture_der("p256.key.pem")).unwrap();

    let o = e.run(
        "register",
        &["--cert", &der_cert, "--private-key", &pem_key],
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "{der_cert} looks like DER (binary), not PEM: convert it with `openssl x509 -inform der -in {der_cert} -out {der_cert}.pem`"
        )),
        "{o:?}"
    );
    let o = e.run(
        "register",
        &["--cert", &pem_cert, "--private-key", &der_key],
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "`openssl pkey -inform der -in {der_key} -out {der_key}.pem`"
        )),
        "{o:?}"
    );
    assert!(
        o.stderr.starts_with(&format!("dps: error: {der_key}: ")),
        "{o:?}"
    );
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--ca",
            &der_cert,
        ],
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("`openssl x509 -inform der"), "{o:?}");
    // A PEM file that is merely broken gets no DER hint.
    let broken = e
        .dir
        .file("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
    let o = e.run("register", &["--cert", &broken, "--private-key", &pem_key]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(!o.stderr.contains("DER"), "{o:?}");

    let empty = e.dir.file("empty.pfx", "");
    let o = e.run("register", &["--pkcs12", &empty]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "{empty}: the file is empty (expected a PKCS#12 / .pfx file)"
        )),
        "{o:?}"
    );
    assert!(!o.stderr.contains("BER"), "{o:?}");
}

#[test]
fn register_retries_with_progress_on_stderr() {
    let e = env();
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-flaky",
            "--symmetric-key",
            KEY,
            "--progress",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("dps: registering with localhost:"),
        "{o:?}"
    );
    assert!(o.stderr.contains("retrying in"), "{o:?}");
    assert!(o.stderr.contains("throttl"), "{o:?}");
    assert!(o.stderr.contains("dps: assigning; next poll in"), "{o:?}");
    assert!(o.stderr.trim_end().ends_with("dps: assigned"), "{o:?}");
    // --quiet wins over --progress.
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--progress",
            "-q",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.is_empty(), "{o:?}");
}

#[test]
fn verbose_logs_go_to_stderr() {
    let e = env();
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "-vv",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains(
            "dps: [debug] dps::client::request: PUT /0ne00000001/registrations/dev-sym/register"
        ),
        "{o:?}"
    );
    assert!(o.stderr.contains("[info]"), "{o:?}");
    assert!(!o.stderr.contains(KEY));
}

// ---------------------------------------------------------------------------------------------
// Failures: one line, distinct exit codes

#[test]
fn wrong_key_is_refused_exit_5_with_error_code_and_tracking_id() {
    let e = env();
    let o = e.run(
        "register",
        &["--registration-id", "dev-sym", "--symmetric-key", OTHER_KEY],
    );
    assert_eq!(o.code, 5, "{o:?}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {o:?}");
    assert!(lines[0].starts_with("dps: error: "), "{o:?}");
    assert!(lines[0].contains("HTTP 401"), "{o:?}");
    assert!(lines[0].contains("errorCode 401002"), "{o:?}");
    assert!(lines[0].contains("trackingId "), "{o:?}");
    assert!(!o.stderr.contains(OTHER_KEY));
    assert!(o.stdout.is_empty());
    // --json: the error as JSON on stdout too.
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            OTHER_KEY,
            "--json",
        ],
    );
    assert_eq!(o.code, 5);
    let v = o.json();
    assert_eq!(v["error"]["status"], 401);
    assert_eq!(v["error"]["httpStatus"], 401);
    assert_eq!(v["error"]["errorCode"], 401002);
    assert_eq!(v["error"]["exitCode"], 5);
    assert_eq!(v["error"]["kind"], "Unauthorized");
    assert!(v["error"]["trackingId"].is_string());
}

#[test]
fn unknown_scope_is_refused_exit_5() {
    let e = env();
    let mut args = vec!["register".to_string()];
    args.extend(e.base());
    let i = args.iter().position(|a| a == SCOPE).unwrap();
    args[i] = "0ne99999999".into();
    args.extend(["--registration-id", "dev-sym", "--symmetric-key", KEY].map(String::from));
    let o = dps(&args, &[]);
    assert_eq!(o.code, 5, "{o:?}");
    assert!(o.stderr.contains("HTTP 404"), "{o:?}");
}

#[test]
fn disabled_and_failed_exit_6() {
    let e = env();
    let o = e.run(
        "register",
        &["--registration-id", "dev-disabled", "--symmetric-key", KEY],
    );
    assert_eq!(o.code, 6, "{o:?}");
    assert!(o.stderr.contains("disabled"), "{o:?}");
    let o = e.run(
        "register",
        &["--registration-id", "dev-failed", "--symmetric-key", KEY],
    );
    assert_eq!(o.code, 6, "{o:?}");
    assert!(o.stderr.contains("errorCode 400207"), "{o:?}");
    assert!(o.stderr.contains("trackingId"), "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
}

#[test]
fn untrusted_server_and_closed_port_exit_4_or_7() {
    let e = env();
    // No --ca: the emulator's certificate is not trusted.
    let o = dps(
        &[
            "register",
            "--endpoint",
            &e.endpoint(),
            "--id-scope",
            SCOPE,
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
        ],
        &[],
    );
    assert_eq!(o.code, 4, "{o:?}");
    assert!(o.stderr.contains("not trusted"), "{o:?}");
    // Nothing listening: connection failures are retried until the deadline.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut args = vec!["register".to_string()];
    args.extend(e.base());
    let i = args.iter().position(|a| a == &e.endpoint()).unwrap();
    args[i] = format!("localhost:{port}");
    let i = args.iter().position(|a| a == "20").unwrap();
    args[i] = "1".into();
    args.extend(["--registration-id", "dev-sym", "--symmetric-key", KEY].map(String::from));
    let o = dps(&args, &[]);
    assert_eq!(o.code, 7, "{o:?}");
    assert!(o.stderr.to_lowercase().contains("connect"), "{o:?}");
}

#[test]
fn deadline_exit_7() {
    let e = env();
    let mut args = vec!["register".to_string()];
    args.extend(e.base());
    let i = args.iter().position(|a| a == "20").unwrap();
    args[i] = "1.5".into();
    args.extend(["--registration-id", "dev-slow", "--symmetric-key", KEY].map(String::from));
    let t0 = std::time::Instant::now();
    let o = dps(&args, &[]);
    assert_eq!(o.code, 7, "{o:?}");
    assert!(t0.elapsed().as_secs() < 10);
    assert!(o.stderr.contains("DeadlineExceeded"), "{o:?}");
}

#[test]
fn usage_and_credential_errors() {
    let e = env();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--bogus"], 2, "unknown option --bogus"),
        (
            &["--registration-id", "dev-sym"],
            2,
            "a credential is required",
        ),
        (
            &[
                "--registration-id",
                "dev-sym",
                "--symmetric-key",
                KEY,
                "--group-key",
                KEY,
            ],
            2,
            "give one credential",
        ),
        (
            &["--registration-id", "-bad-", "--symmetric-key", KEY],
            2,
            "registration ID",
        ),
        (
            &[
                "--registration-id",
                "dev-sym",
                "--symmetric-key",
                KEY,
                "--payload",
                "[1]",
            ],
            2,
            "JSON object",
        ),
        (
            &[
                "--registration-id",
                "dev-sym",
                "--symmetric-key",
                KEY,
                "--sas-ttl",
                "soon",
            ],
            2,
            "not a number",
        ),
        (
            &[
                "--registration-id",
                "dev-sym",
                "--symmetric-key",
                KEY,
                "--proxy",
                "ftp://x",
            ],
            2,
            "proxy",
        ),
        (
            &[
                "--registration-id",
                "dev-sym",
                "--symmetric-key",
                "not base64!",
            ],
            3,
            "base64",
        ),
        (
            &[
                "--registration-id",
                "dev-sym",
                "--symmetric-key",
                "env:NOT_SET_ANYWHERE",
            ],
            2,
            "not set",
        ),
        (&["--cert", "/nonexistent/dev.pem"], 3, "cannot read"),
        (
            &[
                "--registration-id",
                "dev-sym",
                "--private-key",
                "x.key",
                "--symmetric-key",
                KEY,
            ],
            2,
            "--private-key needs --cert",
        ),
    ];
    for (extra, code, needle) in cases {
        let o = e.run("register", extra);
        assert_eq!(o.code, *code, "{extra:?}: {o:?}");
        assert!(o.stderr.contains(needle), "{extra:?}: {o:?}");
    }
    let o = dps(&["register", "--symmetric-key", KEY], &[]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("--id-scope is required"), "{o:?}");
    let o = dps(&["frobnicate"], &[]);
    assert_eq!(o.code, 2);
    let o = dps::<&str>(&[], &[]);
    assert_eq!(o.code, 2);
    // Bad trusted root file.
    let bad = e.dir.file(
        "bad-ca.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--ca",
            &bad,
        ],
    );
    assert_eq!(o.code, 3, "{o:?}");
}

// ---------------------------------------------------------------------------------------------
// What the server sends never reaches the terminal or a --save file raw (issue 14 item 2, CLI side)

/// Fails (with the text escaped) when `text` holds a raw control character other than the
/// newline, or a bidi override.
fn assert_no_raw_controls(what: &str, text: &str) {
    let bad = |c: char| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c);
    assert!(
        !text.chars().any(bad),
        "{what} holds a raw control character: {text:?}"
    );
}

fn assert_clean(o: &Out) {
    assert_no_raw_controls("stdout", &o.stdout);
    assert_no_raw_controls("stderr", &o.stderr);
}

#[test]
fn control_characters_from_the_server_are_escaped_or_refused() {
    let e = env_with(&format!(
        r#"
[[enrollments]]
registration_id = "dev-evil"
attestation = "symmetric_key"
primary_key = "{KEY}"
device_id = "evil\u001b]0;pwned\u0007\r\n\u009b2J\u202eid"
[[enrollments]]
registration_id = "dev-evil-failed"
attestation = "symmetric_key"
primary_key = "{KEY}"
faults = [ {{ on = "register", result = "failed", error_code = 400207, message = "no\u001b[2J\r\nway", times = 100 }} ]
"#
    ));
    let evil = ["--registration-id", "dev-evil", "--symmetric-key", KEY];

    // The library refuses an assignment whose deviceId holds control characters (issue 14
    // item 2): exit 4 (malformed response), the message clean, nothing saved, whatever the
    // output form.
    for extra in [
        &[][..],
        &["--connection-string", "--progress", "-vvv"][..],
        &["--json"][..],
    ] {
        let o = e.run("register", &[&evil[..], extra].concat());
        assert_eq!(o.code, 4, "{extra:?}: {:?}", o.stderr);
        assert_clean(&o);
        assert!(
            o.stderr.contains("deviceId") || o.stdout.contains("deviceId"),
            "{extra:?}: {o:?}"
        );
        assert!(
            !o.stdout.contains("device id "),
            "{extra:?}: no assignment shown: {o:?}"
        );
    }
    for opt in ["--save", "--use-saved"] {
        let file = e.dir.path(&format!("evil{opt}.json"));
        let o = e.run("register", &[&evil[..], &[opt, &file]].concat());
        assert_eq!(o.code, 4, "{opt}: {:?}", o.stderr);
        assert_clean(&o);
        assert!(!Path::new(&file).exists(), "{opt}: {file} was written");
    }
    // A saved file edited to hold an escape sequence is not used (and not printed).
    let file = e.dir.path("tampered.json");
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--save",
            &file,
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace("\"dev-sym-device\"", "\"dev\\u001b[2Jsym\"");
    std::fs::write(&file, text).unwrap();
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--use-saved",
            &file,
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_clean(&o);
    assert!(
        o.stderr
            .contains("deviceId holds control characters; registering"),
        "{o:?}"
    );
    assert!(
        o.stdout.contains("device id         dev-sym-device\n"),
        "{o:?}"
    );

    // A failure message from the server: escaped in the error line, the lookup line and JSON.
    let failed = [
        "--registration-id",
        "dev-evil-failed",
        "--symmetric-key",
        KEY,
    ];
    let o = e.run("register", &failed);
    assert_eq!(o.code, 6, "{:?}", o.stderr);
    assert_clean(&o);
    // The library strips control characters from server messages.
    assert!(o.stderr.contains("no[2J way"), "{:?}", o.stderr);
    let o = e.run("register", &[&failed[..], &["--json"]].concat());
    assert_eq!(o.code, 6, "{:?}", o.stderr);
    assert_clean(&o);
    let o = e.run("lookup", &failed);
    assert_eq!(o.code, 6, "{:?}", o.stderr);
    assert_clean(&o);
    assert!(o.stderr.contains("no[2J way"), "{:?}", o.stderr);
}

// ---------------------------------------------------------------------------------------------
// --save / --use-saved

#[test]
fn save_then_use_saved_without_network() {
    let e = env();
    let file = e.dir.path("assignment.json");
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--use-saved",
            &file,
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["assignedHub"], "hub-a.azure-devices.net");
    assert_eq!(saved["deviceId"], "dev-sym-device");
    assert_eq!(saved["registrationId"], "dev-sym");
    assert_eq!(saved["idScope"], SCOPE);
    assert!(saved["savedAt"].as_str().unwrap().ends_with('Z'));
    assert!(
        !std::fs::read_to_string(&file).unwrap().contains(KEY),
        "no secret saved"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let registers = e.emu.counters().get("register 202");
    assert_eq!(registers, 1);

    // Second boot: served from the file; DPS is not contacted.
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--use-saved",
            &file,
            "--json",
            "--connection-string",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let v = o.json();
    assert_eq!(v["source"], "saved");
    assert_eq!(v["savedFile"], file.as_str());
    assert_eq!(v["savedAt"], saved["savedAt"]);
    assert_eq!(v["assignedHub"], "hub-a.azure-devices.net");
    assert_eq!(
        v["connectionString"],
        format!("HostName=hub-a.azure-devices.net;DeviceId=dev-sym-device;SharedAccessKey={KEY}")
    );
    assert_eq!(e.emu.counters().get("register 202"), registers);
    assert_eq!(e.emu.counters().requests, 3);

    // Human output names the file.
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--use-saved",
            &file,
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains(&format!("source            saved {file}")),
        "{o:?}"
    );

    // Works with DPS gone.
    let endpoint = e.endpoint();
    drop(e.emu);
    let o = dps(
        &[
            "register",
            "--endpoint",
            &endpoint,
            "--id-scope",
            SCOPE,
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--use-saved",
            &file,
        ],
        &[],
    );
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn use_saved_ignores_other_device_and_garbage() {
    let e = env();
    let file = e.dir.path("a.json");
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--save",
            &file,
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    // Another device with the same file: registers and overwrites.
    let o = e.run(
        "register",
        &[
            "--registration-id",
            V1_ID,
            "--group-key",
            GROUP_KEY,
            "--use-saved",
            &file,
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.json()["source"], "dps");
    assert!(o.stderr.contains("another device"), "{o:?}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["registrationId"], V1_ID);
    // A corrupt file: a warning, then a registration.
    std::fs::write(&file, "{not json").unwrap();
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--use-saved",
            &file,
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.json()["source"], "dps");
    assert!(o.stderr.contains("ignoring"), "{o:?}");
    // --save to an unwritable place: exit 3 after printing the result.
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--save",
            "/nonexistent/dir/a.json",
        ],
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stdout.contains("dev-sym-device"));
}

// ---------------------------------------------------------------------------------------------
// lookup, derive-key, sas, help

#[test]
fn lookup_results_and_exit_codes() {
    let e = env();
    let o = e.run(
        "lookup",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--json",
        ],
    );
    assert_eq!(o.code, 5, "never registered: 404 {o:?}");
    assert!(o.stderr.contains("HTTP 404"), "{o:?}");
    let o = e.run(
        "register",
        &["--registration-id", "dev-sym", "--symmetric-key", KEY],
    );
    assert_eq!(o.code, 0);
    let o = e.run(
        "lookup",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.json()["status"], "assigned");
    assert_eq!(o.json()["deviceId"], "dev-sym-device");
    // A failed registration shows in the lookup: exit 6 with the errorCode.
    let o = e.run(
        "register",
        &["--registration-id", "dev-failed", "--symmetric-key", KEY],
    );
    assert_eq!(o.code, 6);
    let o = e.run(
        "lookup",
        &["--registration-id", "dev-failed", "--symmetric-key", KEY],
    );
    assert_eq!(o.code, 6, "{o:?}");
    assert!(o.stdout.contains("status            failed"), "{o:?}");
    assert!(o.stderr.contains("errorCode 400207"), "{o:?}");
    // lookup has no --save.
    let o = e.run(
        "lookup",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--save",
            "x",
        ],
    );
    assert_eq!(o.code, 2, "{o:?}");
}

#[test]
fn derive_key() {
    let o = dps(
        &[
            "derive-key",
            "--group-key",
            GROUP_KEY,
            "--registration-id",
            V1_ID,
        ],
        &[],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, format!("{V1_KEY}\n"));
    let o = dps(
        &[
            "derive-key",
            "--group-key",
            "env:G",
            "--registration-id",
            V1_ID,
            "--registration-id",
            "dev-2",
            "--json",
        ],
        &[("G", GROUP_KEY)],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let v = o.json();
    assert_eq!(v[0]["registrationId"], V1_ID);
    assert_eq!(v[0]["deviceKey"], V1_KEY);
    assert_eq!(v[1]["registrationId"], "dev-2");
    let dir = TempDir::new("dps-cli-test");
    let ids = dir.file("ids.txt", &format!("# factory batch\n{V1_ID}\n\ndev-2\n"));
    let o = dps(
        &[
            "derive-key",
            "--group-key",
            GROUP_KEY,
            "--registration-ids",
            &ids,
        ],
        &[],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], format!("{V1_ID} {V1_KEY}"));
    assert!(lines[1].starts_with("dev-2 "));
    let o = dps(
        &[
            "derive-key",
            "--group-key",
            "bad!",
            "--registration-id",
            "x",
        ],
        &[],
    );
    assert_eq!(o.code, 3, "{o:?}");
    let o = dps(
        &[
            "derive-key",
            "--group-key",
            GROUP_KEY,
            "--registration-id",
            "bad id",
        ],
        &[],
    );
    assert_eq!(o.code, 2, "{o:?}");
    let o = dps(&["derive-key", "--group-key", GROUP_KEY], &[]);
    assert_eq!(o.code, 2, "{o:?}");
}

#[test]
fn sas_token_is_valid_for_the_emulator() {
    let o = dps(
        &[
            "sas",
            "--id-scope",
            SCOPE,
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--ttl",
            "600",
        ],
        &[],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let token = o.stdout.trim_end();
    assert!(
        token.starts_with("SharedAccessSignature sr=0ne00000001%2fregistrations%2fdev-sym&sig="),
        "{token}"
    );
    assert!(token.ends_with("&skn=registration"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = dps_emulator::sas::parse(token).unwrap();
    assert!(t.se >= now + 590 && t.se <= now + 610);
    use base64::Engine as _;
    let k = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap();
    assert_eq!(
        dps_emulator::sas::validate(&t, SCOPE, "dev-sym", now, &[k]),
        Ok(0)
    );

    // Group key: signed with the derived key; JSON output with a fixed expiry.
    let o = dps(
        &[
            "sas",
            "--id-scope",
            SCOPE,
            "--registration-id",
            V1_ID,
            "--group-key",
            GROUP_KEY,
            "--expiry",
            "4102444800",
            "--json",
        ],
        &[],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let v = o.json();
    assert_eq!(v["expiry"], 4102444800u64);
    assert_eq!(
        v["resourceUri"],
        format!("0ne00000001%2fregistrations%2f{V1_ID}")
    );
    let t = dps_emulator::sas::parse(v["token"].as_str().unwrap()).unwrap();
    let derived = base64::engine::general_purpose::STANDARD
        .decode(V1_KEY)
        .unwrap();
    assert_eq!(
        dps_emulator::sas::validate(&t, SCOPE, V1_ID, now, &[derived]),
        Ok(0)
    );

    let o = dps(
        &["sas", "--id-scope", SCOPE, "--registration-id", "dev-sym"],
        &[],
    );
    assert_eq!(o.code, 2, "{o:?}");
    let o = dps(
        &[
            "sas",
            "--id-scope",
            "bad scope",
            "--registration-id",
            "d",
            "--symmetric-key",
            KEY,
        ],
        &[],
    );
    assert_eq!(o.code, 2, "{o:?}");
}

#[test]
fn help_and_version() {
    let o = dps(&["--help"], &[]);
    assert_eq!(o.code, 0);
    for needle in [
        "Exit codes:",
        "Examples:",
        "dps register",
        "dps lookup",
        "dps derive-key",
        "dps sas",
        "  7  the deadline",
    ] {
        assert!(o.stdout.contains(needle), "{needle}: {o:?}");
    }
    for cmd in ["register", "lookup", "derive-key", "sas"] {
        let o = dps(&[cmd, "--help"], &[]);
        assert_eq!(o.code, 0, "{cmd}");
        assert!(o.stdout.contains(&format!("dps {cmd} -")), "{cmd}: {o:?}");
        assert!(o.stdout.contains("Example"), "{cmd}: {o:?}");
        let o = dps(&["help", cmd], &[]);
        assert_eq!(o.code, 0);
    }
    let o = dps(&["--version"], &[]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.starts_with("dps 0.1."));
}

/// A minimal HTTP CONNECT proxy on 127.0.0.1; returns its port and the CONNECT targets seen.
fn connect_proxy() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let seen = seen2.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                seen.lock().unwrap().push(target.clone());
                let port: u16 = target.rsplit(':').next().unwrap().parse().unwrap();
                let upstream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut c = client;
                c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                let mut up_r = upstream.try_clone().unwrap();
                let mut c_w = c.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_r, &mut c_w);
                    let _ = c_w.shutdown(std::net::Shutdown::Both);
                });
                let mut up_w = upstream;
                // Anything the client sent after the CONNECT head is still buffered in `reader`.
                let _ = std::io::copy(&mut reader, &mut up_w);
                let _ = up_w.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, seen)
}

#[test]
fn register_through_a_proxy() {
    let e = env();
    let (port, seen) = connect_proxy();
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--proxy",
            &format!("http://127.0.0.1:{port}"),
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(*seen.lock().unwrap(), [e.endpoint()]);
    // From the environment.
    let mut args = vec!["register".to_string()];
    args.extend(e.base());
    args.extend(
        [
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--proxy-from-env",
        ]
        .map(String::from),
    );
    let proxy = format!("http://127.0.0.1:{port}");
    let o = dps(&args, &[("HTTPS_PROXY", &proxy)]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(seen.lock().unwrap().len(), 2);
    // A proxy that is not there: a network failure retried until the deadline.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = e.run(
        "register",
        &[
            "--registration-id",
            "dev-sym",
            "--symmetric-key",
            KEY,
            "--proxy",
            &format!("http://127.0.0.1:{dead}"),
            "--timeout",
            "1",
        ],
    );
    assert_eq!(o.code, 7, "{o:?}");
    assert!(o.stderr.contains(&format!("127.0.0.1:{dead}")), "{o:?}");
}
