//! TPM attestation end to end over HTTPS (PROTOCOL.md 5.4), the device played by a real
//! software TPM: swtpm started per test with a fresh EK, driven by tpm2-tools
//! (ActivateCredential under PolicySecret, Import, Load, HMAC). Needs swtpm and tpm2-tools
//! (`.ci/run` installs them); without them the tests fail saying so.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dps_emulator::tpm::swtpm::{Swtpm, TEST_HUB_KEY, TEST_OTHER_EK, test_enrollments};
use dps_emulator::tpm::{ActivationBlob, RsaPublic};
use dps_test_support::*;
use serde_json::{Value, json};

struct Device {
    tpm: Swtpm,
    ek: RsaPublic,
    srk: RsaPublic,
}

impl Device {
    fn new() -> Device {
        let tpm = Swtpm::start();
        let (ek, srk) = tpm.provision_ek_srk();
        Device { tpm, ek, srk }
    }

    fn body(&self, regid: &str) -> String {
        json!({
            "registrationId": regid,
            "tpm": {"endorsementKey": self.ek.to_base64(), "storageRootKey": self.srk.to_base64()},
        })
        .to_string()
    }

    /// Activates a base64 blob under `tag`; the failing tool on refusal.
    fn activate(&self, blob_b64: &str, tag: &str) -> Result<(), String> {
        let bytes = STANDARD
            .decode(blob_b64)
            .expect("authenticationKey is base64");
        let blob = ActivationBlob::parse(&bytes).expect("authenticationKey parses");
        self.tpm.activate(&blob, tag).map_err(|(tool, _)| tool)
    }

    /// The device's SAS: the C SDK form, signed by TPM2_HMAC with the key under `tag`.
    fn sas(&self, tag: &str, regid: &str) -> String {
        let sr = format!("{SCOPE}%2fregistrations%2f{regid}");
        let se = now() + 3600;
        let sig = self.tpm.hmac(tag, format!("{sr}\n{se}").as_bytes());
        format!(
            "SharedAccessSignature sr={sr}&sig={}&se={se}&skn=registration",
            urlenc(&STANDARD.encode(sig))
        )
    }
}

fn config(dev: &Device) -> String {
    format!("{}{}", base_toml(), test_enrollments(&dev.ek.to_base64()))
}

fn challenge(c: &mut Client, dev: &Device, regid: &str) -> Resp {
    c.request("PUT", &reg_path(regid), &[JSON], Some(&dev.body(regid)))
}

fn blob_of(r: &Resp) -> String {
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["keyName"], "registration", "{j}");
    j["authenticationKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no authenticationKey: {j}"))
        .to_string()
}

/// Second PUT with the SAS, then polls with it until the terminal answer.
fn answer(c: &mut Client, dev: &Device, regid: &str, sas: &str) -> (Resp, u32) {
    let r = c.request(
        "PUT",
        &reg_path(regid),
        &[("Authorization", sas), JSON],
        Some(&dev.body(regid)),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    let mut polls = 0;
    loop {
        let p = c.request("GET", &op_path(regid, &op), &[("Authorization", sas)], None);
        polls += 1;
        if p.status != 202 {
            return (p, polls);
        }
    }
}

#[test]
fn a_software_tpm_provisions_and_imports_the_hub_key() {
    let dev = Device::new();
    let emu = start(&config(&dev));
    let regid = dev.ek.registration_id();
    let mut c = Client::connect(&emu);

    // Step 1-2: no Authorization, EK + SRK in the body: 401 with the activation blob.
    let r = challenge(&mut c, &dev, &regid);
    let blob = blob_of(&r);
    // Step 3: the TPM activates it (PolicySecret + ActivateCredential, Import, Load).
    dev.activate(&blob, "id")
        .unwrap_or_else(|t| panic!("{t} refused the challenge"));
    // Step 4-5: SAS signed by the TPM; second PUT; polls with the same SAS.
    let sas = dev.sas("id", &regid);
    let (done, polls) = answer(&mut c, &dev, &regid, &sas);
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    assert_eq!(polls, 2, "assigning_polls = 1, then the terminal answer");
    let j = done.json();
    let st = &j["registrationState"];
    assert_eq!(st["status"], "assigned", "{j}");
    assert_eq!(st["registrationId"], regid.as_str(), "{j}");
    assert_eq!(st["deviceId"], "tpm-device", "{j}");
    // Step 6: the hub key blob; once imported, the TPM's HMAC is the enrolled hub key's.
    let hub_blob = st["tpm"]["authenticationKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no registrationState.tpm.authenticationKey: {j}"));
    assert_ne!(hub_blob, blob);
    dev.activate(hub_blob, "hub")
        .unwrap_or_else(|t| panic!("{t} refused the hub blob"));
    let data = b"hub-a.azure-devices.net%2fdevices%2ftpm-device\n1700000000";
    assert_eq!(
        STANDARD.encode(dev.tpm.hmac("hub", data)),
        sign(
            TEST_HUB_KEY,
            "hub-a.azure-devices.net%2fdevices%2ftpm-device",
            1_700_000_000
        )
    );
    // The lookup answers with the identity-key SAS too.
    let l = c.request(
        "POST",
        &lookup_path(&regid),
        &[("Authorization", &sas), JSON],
        Some("{}"),
    );
    assert_eq!(l.status, 200, "{}", String::from_utf8_lossy(&l.body));

    // A SAS by a key the device was never given, and a poll without any SAS: 401.
    let forged = sas_with_key(&regid, &[0x42; 32]);
    let r = c.request(
        "PUT",
        &reg_path(&regid),
        &[("Authorization", &forged), JSON],
        Some(&dev.body(&regid)),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["errorCode"], 401002);
    assert!(r.json().get("authenticationKey").is_none());

    // Re-registration: a new challenge, a new identity key; the old SAS no longer works.
    let blob2 = blob_of(&challenge(&mut c, &dev, &regid));
    assert_ne!(blob2, blob);
    let r = c.request(
        "PUT",
        &reg_path(&regid),
        &[("Authorization", &sas), JSON],
        Some(&dev.body(&regid)),
    );
    assert_eq!(r.status, 401, "the first identity key was replaced");
    dev.activate(&blob2, "id2").unwrap();
    let sas2 = dev.sas("id2", &regid);
    // Polls are checked too: without a SAS, or with the replaced key's, or a forged one: 401.
    let r = c.request(
        "PUT",
        &reg_path(&regid),
        &[("Authorization", &sas2), JSON],
        Some(&dev.body(&regid)),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    for (what, auth) in [
        ("none", None),
        ("replaced key", Some(&sas)),
        ("forged", Some(&forged)),
    ] {
        let headers: Vec<(&str, &str)> = auth
            .map(|a| ("Authorization", a.as_str()))
            .into_iter()
            .collect();
        let p = c.request("GET", &op_path(&regid, &op), &headers, None);
        assert_eq!(p.status, 401, "poll with SAS: {what}");
    }
    let (done, _) = answer(&mut c, &dev, &regid, &sas2);
    assert_eq!(done.status, 200);

    let log = emu.log_lines().join("\n");
    for secret in [TEST_HUB_KEY, &blob[..16], &hub_blob[..16]] {
        assert!(!log.contains(secret), "the log shows {secret}: {log}");
    }
}

fn sas_with_key(regid: &str, key: &[u8]) -> String {
    let sr = format!("{SCOPE}%2fregistrations%2f{regid}");
    let se = now() + 3600;
    let sig = dps_emulator::sas::hmac_sha256(key, format!("{sr}\n{se}").as_bytes());
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={se}&skn=registration",
        urlenc(&STANDARD.encode(sig))
    )
}

#[test]
fn refusals_another_ek_and_corrupted_blobs() {
    let dev = Device::new();
    let emu = start(&config(&dev));
    let mut c = Client::connect(&emu);

    // The enrollment holds another TPM's EK: 401002, and no blob.
    let r = challenge(&mut c, &dev, "tpm-other-ek");
    assert_eq!(r.status, 401);
    let j: Value = r.json();
    assert_eq!(j["errorCode"], 401002, "{j}");
    assert!(j.get("authenticationKey").is_none(), "{j}");
    assert!(
        emu.log_lines()
            .iter()
            .any(|l| l.contains("not the enrolled one")),
        "{:?}",
        emu.log_lines()
    );
    // An EK with no enrollment at all (registration ID derived from it, none configured for
    // that ID but the first enrollment's): the V8 device is unknown.
    let r = c.request(
        "PUT",
        &reg_path("6rek5qncnygnkzflohxz4u6zlfly6ktm4klsc7xrbgvesqyllnfa"),
        &[JSON],
        Some(
            &json!({"registrationId": "6rek5qncnygnkzflohxz4u6zlfly6ktm4klsc7xrbgvesqyllnfa",
                    "tpm": {"endorsementKey": TEST_OTHER_EK, "storageRootKey": dev.srk.to_base64()}})
            .to_string(),
        ),
    );
    assert_eq!(r.status, 401);
    assert!(r.json().get("authenticationKey").is_none());
    // A body whose EK is not a TPM2B_PUBLIC: 400 naming the field.
    let r = c.request(
        "PUT",
        &reg_path("tpm-bad-challenge"),
        &[JSON],
        Some(r#"{"registrationId":"tpm-bad-challenge","tpm":{"endorsementKey":"AAAA","storageRootKey":"AAAA"}}"#),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("endorsementKey"));

    // A corrupted challenge: the TPM refuses it in ActivateCredential.
    let blob = blob_of(&challenge(&mut c, &dev, "tpm-bad-challenge"));
    assert_eq!(
        dev.activate(&blob, "bad").unwrap_err(),
        "tpm2_activatecredential"
    );

    // A corrupted hub blob: registration succeeds, the final key does not activate.
    let blob = blob_of(&challenge(&mut c, &dev, "tpm-bad-hub"));
    dev.activate(&blob, "ok").unwrap();
    let (done, _) = answer(&mut c, &dev, "tpm-bad-hub", &dev.sas("ok", "tpm-bad-hub"));
    assert_eq!(done.status, 200);
    let hub = done.json()["registrationState"]["tpm"]["authenticationKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        dev.activate(&hub, "badhub").unwrap_err(),
        "tpm2_activatecredential"
    );
}
