//! `dps tpm-info` and `dps register --tpm` against the emulator, the device a software TPM
//! (swtpm started by the test in a temporary directory: a fresh EK each run). Needs swtpm and
//! libtss2 (`.ci/run` installs them); without swtpm the test fails saying so.

use std::process::{Command, Output, Stdio};

use dps_emulator::tpm::swtpm::Swtpm;
use dps_test_support::{SCOPE, TempDir};
use serde_json::Value;

fn dps(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(args)
        .stdin(Stdio::null())
        .env_remove("DPS_ID_SCOPE")
        .env_remove("DPS_REGISTRATION_ID")
        .env_remove("DPS_ENDPOINT")
        .env_remove("DPS_TPM_TCTI")
        .env("TSS2_LOG", "all+none")
        .output()
        .expect("the dps binary runs")
}

fn json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

#[test]
fn tpm_info_then_register_with_the_tpm() {
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();

    // No EK yet: a clear failure (exit 3, credential), then created on request.
    let o = dps(&["tpm-info", "--tcti", &tcti]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let info = json(&dps(&[
        "tpm-info",
        "--tcti",
        &tcti,
        "--tpm-create-missing",
        "--json",
    ]));
    let regid = info["registrationId"].as_str().unwrap().to_owned();
    let ek = info["endorsementKey"].as_str().unwrap().to_owned();
    assert_eq!(regid.len(), 52);
    // The plain form prints the same two values the portal takes.
    let plain = dps(&["tpm-info", "--tcti", &tcti]);
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(
        text.contains(&format!("Registration ID: {regid}\n")),
        "{text}"
    );
    assert!(text.contains(&format!("Endorsement key: {ek}\n")), "{text}");

    let emu = dps_test_support::emulator(&format!(
        "[[enrollments]]\nattestation = \"tpm\"\nendorsement_key = \"{ek}\"\ndevice_id = \"cli-tpm\"\n"
    ));
    let dir = TempDir::new("dps-cli-tpm");
    let ca = dir.file("ca.pem", &emu.ca_pem());
    let endpoint = format!("localhost:{}", emu.port());
    let base = [
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
        "30",
        "--json",
    ];
    // --tpm TCTI, the registration ID derived from the EK.
    let mut args = base.to_vec();
    args.extend(["--tpm", &tcti]);
    let r = json(&dps(&args));
    assert_eq!(r["deviceId"], "cli-tpm", "{r}");
    assert_eq!(r["registrationId"], regid.as_str(), "{r}");

    // --tpm alone takes the TCTI from DPS_TPM_TCTI; a re-registration replaces the key.
    let mut args = base.to_vec();
    args.push("--tpm");
    let o = Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(&args)
        .stdin(Stdio::null())
        .env("DPS_TPM_TCTI", &tcti)
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap();
    assert_eq!(json(&o)["deviceId"], "cli-tpm");

    // A connection string cannot hold a key that stays in the TPM.
    let mut args = base.to_vec();
    args.extend(["--tpm", &tcti, "--connection-string"]);
    let o = dps(&args);
    assert_ne!(o.status.code(), Some(0));
    // Usage errors.
    let o = dps(&[
        "register",
        "--id-scope",
        SCOPE,
        "--tpm-create-missing",
        "--symmetric-key",
        "a2V5",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
