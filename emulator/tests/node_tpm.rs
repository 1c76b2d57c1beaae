//! Independent witness for TPM attestation: Microsoft's Node.js TPM client
//! (azure-iot-security-tpm 1.9.3 over tss.js 2.0.0, azure-iot-provisioning-device-http 1.9.1;
//! pinned in emulator/node-tpm/package-lock.json) provisions against the emulator with a
//! software TPM (swtpm). Our blob format and SAS checks are judged by Microsoft's code, not
//! only by our own client. Needs `node`, `npm ci --ignore-scripts --prefix emulator/node-tpm`,
//! swtpm and tpm2-tools.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use dps_emulator::tpm::swtpm::{Swtpm, TEST_HUB_KEY, TEST_OTHER_EK};
use dps_test_support::*;
use serde_json::{Value, json};

#[test]
fn microsoft_node_tpm_client_provisions_with_swtpm() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node-tpm");
    assert!(
        dir.join("node_modules/azure-iot-security-tpm").is_dir()
            && dir.join("node_modules/tss.js").is_dir(),
        "Node TPM dependencies are missing: run `npm ci --ignore-scripts --prefix \
         emulator/node-tpm` (from the workspace root) and re-run the tests"
    );
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        node_ok,
        "`node` (Node.js >= 14) is required on PATH for this test"
    );

    // The device's TPM: a fresh swtpm; EK and SRK made once with tpm2-tools, as a device
    // vendor would, so the enrollment can name the EK before the device first runs.
    let tpm = Swtpm::start();
    let (ek, _srk) = tpm.provision_ek_srk();
    let ek_b64 = ek.to_base64();
    let derived_id = ek.registration_id();
    let toml = format!(
        r#"{}
[[enrollments]]
attestation = "tpm"
endorsement_key = "{ek_b64}"
hub_key = "{TEST_HUB_KEY}"
device_id = "node-tpm-device"
allocation = "static"

[[enrollments]]
registration_id = "node-tpm-payload"
attestation = "tpm"
endorsement_key = "{ek_b64}"
echo_payload = true
allocation = "static"
hubs = ["hub-b.azure-devices.net"]

[[enrollments]]
registration_id = "node-tpm-other-ek"
attestation = "tpm"
endorsement_key = "{TEST_OTHER_EK}"

[[enrollments]]
registration_id = "node-tpm-bad-blob"
attestation = "tpm"
endorsement_key = "{ek_b64}"
corrupt_blob = "challenge"
"#,
        base_toml()
    );
    let emu = start(&toml);
    let hub_data = "hub-a.azure-devices.net%2Fdevices%2Fnode-tpm-device\n1700000000";
    let spec = json!({
        "port": emu.port(),
        "ca": emu.ca_pem(),
        "idScope": SCOPE,
        "tpmPort": tpm.port(),
        "cases": [
            {"name": "ek-derived-id", "signData": hub_data},
            {"name": "payload", "registrationId": "node-tpm-payload", "signData": "x",
             "payload": {"model": "tpm-gateway", "fw": 7}},
            {"name": "other-ek", "registrationId": "node-tpm-other-ek", "signData": "x"},
            // Last: azure-iot-security-tpm throws on a failed activation (see tpm.js).
            {"name": "corrupted-blob", "registrationId": "node-tpm-bad-blob", "signData": "x"},
        ]
    });
    let spec_path =
        std::env::temp_dir().join(format!("dps-emu-node-tpm-spec-{}.json", std::process::id()));
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let t0 = Instant::now();
    let out = Command::new("node")
        .arg(dir.join("tpm.js"))
        .arg(&spec_path)
        .current_dir(&dir)
        .output()
        .expect("run node");
    let elapsed = t0.elapsed();
    let _ = std::fs::remove_file(&spec_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!(
        "node stdout:\n{stdout}\nnode stderr:\n{stderr}\nemulator log:\n{}",
        emu.log_lines().join("\n")
    );
    assert!(out.status.success(), "node failed: {ctx}");
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{ctx}")))
        .collect();
    let by = |n: &str| {
        results
            .iter()
            .find(|r| r["name"] == n)
            .unwrap_or_else(|| panic!("no result for {n}: {ctx}"))
    };
    eprintln!(
        "node TPM witness: {} cases in {:.2} s ({})",
        results.len(),
        elapsed.as_secs_f64(),
        results
            .iter()
            .map(|r| format!("{} {} ms", r["name"].as_str().unwrap_or("?"), r["ms"]))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The client derived the registration ID from the EK as we do (V8's rule), got the
    // challenge, activated it, signed the SAS in the TPM, polled, imported the hub key: the
    // TPM's HMAC with that key is the enrolled hub key's.
    // The TPM flow of the Node client hands back the whole operation answer.
    let r = by("ek-derived-id");
    assert_eq!(r["ok"], true, "{ctx}");
    assert_eq!(r["registrationId"], derived_id.as_str(), "{ctx}");
    assert_eq!(r["result"]["status"], "assigned", "{ctx}");
    let st = &r["result"]["registrationState"];
    assert_eq!(st["registrationId"], derived_id.as_str(), "{ctx}");
    assert_eq!(st["assignedHub"], "hub-a.azure-devices.net", "{ctx}");
    assert_eq!(st["deviceId"], "node-tpm-device", "{ctx}");
    let hub_sig = sign(
        TEST_HUB_KEY,
        "hub-a.azure-devices.net%2Fdevices%2Fnode-tpm-device",
        1_700_000_000,
    );
    assert_eq!(r["hubSignature"], hub_sig, "{ctx}");

    let r = by("payload");
    assert_eq!(r["ok"], true, "{ctx}");
    let st = &r["result"]["registrationState"];
    assert_eq!(st["assignedHub"], "hub-b.azure-devices.net", "{ctx}");
    let payload = json!({"model": "tpm-gateway", "fw": 7});
    assert_eq!(st["payload"], payload, "{ctx}");

    // Another TPM's EK in the enrollment: the 401 carries no authenticationKey, which the Node
    // transport reports as a FormatError.
    let r = by("other-ek");
    assert_eq!(r["ok"], false, "{ctx}");
    assert_eq!(r["error"]["name"], "FormatError", "{ctx}");

    // A corrupted blob: ActivateCredential fails in the TPM; azure-iot-security-tpm 1.9.3 then
    // throws a TypeError instead of reporting a SecurityDeviceError (its known trap).
    let r = by("corrupted-blob");
    assert_eq!(r["ok"], false, "{ctx}");
    assert_eq!(r["crashed"], true, "{ctx}");
    assert_eq!(r["error"]["name"], "TypeError", "{ctx}");

    let c = emu.counters();
    // Challenges: ek-derived-id, payload, corrupted-blob (other-ek is a plain 401 too).
    assert_eq!(c.get("register 401"), 4, "{ctx}");
    assert_eq!(c.get("register 202"), 2, "{ctx}");
    assert!(c.get("operation 200") >= 2, "{ctx}");
}
