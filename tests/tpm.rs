//! TPM attestation end to end (PROTOCOL.md 5.4): the library's TPM client, on a software TPM
//! (swtpm started per test in a temporary directory, so a fresh EK each run), registers with
//! the emulator through the Rust API and the C ABI; the refusals (another TPM's EK, a tampered
//! challenge or hub-key blob, an unknown EK, an ECC EK), re-registration replacing the
//! persisted key, and the TPM going away mid-registration (killed before the challenge is
//! answered, stopped while the client polls).
//! Needs swtpm and libtss2 (`.ci/run` installs them); without swtpm the tests fail saying so.

use std::ffi::{CString, c_char};
use std::ptr::{null, null_mut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps::tpm::{Tpm, TpmOptions, tpm_info};
use dps::{ErrorKind, Event};
use dps_emulator::tpm::swtpm::{EK_HANDLE, Swtpm, TEST_HUB_KEY, send_signal, test_enrollments};
use dps_test_support::*;

/// A fresh software TPM with its EK and SRK created by the library (DPS_TPM_CREATE_MISSING).
struct Device {
    swtpm: Swtpm,
    options: TpmOptions,
    registration_id: String,
    endorsement_key: String,
}

impl Device {
    fn new() -> Device {
        let swtpm = Swtpm::start();
        let options = TpmOptions {
            tcti: swtpm.tcti(),
            create_missing: true,
            command_timeout: Duration::from_secs(30),
            ..TpmOptions::default()
        };
        let info = tpm_info(&options).expect("tpm_info on swtpm");
        Device {
            swtpm,
            options,
            registration_id: info.registration_id,
            endorsement_key: info.endorsement_key,
        }
    }

    fn open(&self) -> Arc<Tpm> {
        Arc::new(Tpm::open(&self.options).expect("the TPM opens"))
    }
}

fn config(dev: &Device) -> String {
    format!("{}{}", base_toml(), test_enrollments(&dev.endorsement_key))
}

/// The IoT Hub SAS signature the enrolled hub key gives for `hub`/`device` at `se`.
fn hub_signature(hub: &str, device: &str, se: u64) -> String {
    urlenc(&sign(
        TEST_HUB_KEY,
        &format!("{hub}%2Fdevices%2F{device}"),
        se,
    ))
}

#[test]
fn registers_through_the_rust_api_and_re_registers_replacing_the_key() {
    let dev = Device::new();
    let emu = start(&config(&dev));
    let tpm = dev.open();
    let mut b = builder(&emu, "placeholder");
    // The EK-derived registration ID when none is set.
    let mut b2 = dps::ConfigBuilder::new(SCOPE).unwrap();
    b2.tpm(tpm.clone());
    assert_eq!(b2.build().unwrap().registration_id(), dev.registration_id);
    b.registration_id(&dev.registration_id).unwrap();
    b.tpm(tpm.clone());
    let config = Arc::new(b.build().unwrap());
    let mut client = dps::Client::new(config.clone());

    let before = tpm.command_count();
    let t0 = Instant::now();
    let cpu0 = cpu_time();
    let r = client.register().expect("TPM registration");
    let (wall, cpu) = (t0.elapsed(), cpu_time().saturating_sub(cpu0));
    let commands = tpm.command_count() - before;
    println!(
        "TPM registration: {commands} TPM commands, {wall:?} wall, {cpu:?} CPU of this process"
    );
    assert_eq!(r.device_id.as_deref(), Some("tpm-device"));
    assert_eq!(
        r.registration_id.as_deref(),
        Some(dev.registration_id.as_str())
    );
    let hub = r.assigned_hub.clone().unwrap();
    // Activation (9) + hub-key import (9) + at least the HMAC of the second PUT.
    assert!(commands >= 19, "{commands} TPM commands");

    // The IoT Hub token is signed by the TPM with the imported hub key.
    let se = 1_900_000_000;
    let token = dps::iot_hub_sas_token(&r, config.credential(), se).unwrap();
    assert!(
        token.contains(&format!("&sig={}&", hub_signature(&hub, "tpm-device", se))),
        "{}",
        token.as_str()
    );
    assert_eq!(
        dps::connection_string(&r, config.credential())
            .unwrap_err()
            .kind,
        ErrorKind::Unsupported
    );

    // Re-registration: a new challenge, the key at 0x81000100 replaced (the emulator accepts
    // only the new identity key's SAS), the hub key imported again.
    let r2 = client.register().expect("second TPM registration");
    assert_eq!(r2.device_id.as_deref(), Some("tpm-device"));
    let token2 = dps::iot_hub_sas_token(&r2, config.credential(), se).unwrap();
    assert_eq!(token2.as_str(), token.as_str());

    // The cost of one TPM registration (bench/RESULTS.md): medians of 5 more.
    let mut runs = Vec::new();
    for _ in 0..5 {
        let (n0, t0, c0) = (tpm.command_count(), Instant::now(), cpu_time());
        client.register().expect("repeated TPM registration");
        runs.push((
            tpm.command_count() - n0,
            t0.elapsed(),
            cpu_time().saturating_sub(c0),
        ));
    }
    runs.sort_by_key(|r| r.1);
    let (n, wall, _) = runs[2];
    let mut cpus: Vec<Duration> = runs.iter().map(|r| r.2).collect();
    cpus.sort();
    println!(
        "TPM registration, median of 5: {n} TPM commands, {wall:?} wall, {:?} CPU of this \
         process's threads (client, TPM worker, in-process emulator; swtpm not counted)",
        cpus[2]
    );
    assert!(
        runs.iter().all(|r| r.0 == n),
        "TPM commands differ: {runs:?}"
    );

    // A new connection to the same TPM (a reboot) finds the persisted hub key.
    let reopened = dev.open();
    let mut b3 = dps::ConfigBuilder::new(SCOPE).unwrap();
    b3.tpm(reopened);
    let c3 = b3.build().unwrap();
    let token3 = dps::iot_hub_sas_token(&r2, c3.credential(), se).unwrap();
    assert_eq!(token3.as_str(), token.as_str());

    let log = emu.log_lines().join("\n");
    assert!(
        !log.contains(TEST_HUB_KEY),
        "the emulator log shows the hub key"
    );
    drop(dev.swtpm);
}

#[test]
fn refusals_another_ek_tampered_blobs_and_an_unknown_ek() {
    let dev = Device::new();
    let emu = start(&config(&dev));
    let tpm = dev.open();
    let register = |id: &str| {
        let mut b = builder(&emu, id);
        b.tpm(tpm.clone());
        client(&b).register()
    };

    let e = register("tpm-other-ek").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert_eq!(e.dps_error_code, Some(401002), "{e}");

    let e = register("tpm-bad-challenge").unwrap_err();
    assert_eq!(e.kind, ErrorKind::TpmActivationFailed, "{e}");
    assert!(e.message.contains("TPM_RC 0x"), "{}", e.message);

    let e = register("tpm-bad-hub").unwrap_err();
    assert_eq!(e.kind, ErrorKind::TpmActivationFailed, "{e}");

    // No enrollment for this TPM's EK under this ID.
    let e = register("tpm-nobody").unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Unauthorized | ErrorKind::NotFound),
        "{e}"
    );

    // The TPM still works after the refusals: the real enrollment registers.
    let r = register(&dev.registration_id).expect("registers after the refusals");
    assert_eq!(r.device_id.as_deref(), Some("tpm-device"));
}

#[test]
fn a_tpm_killed_before_the_challenge_is_answered_fails_clearly_then_recovers() {
    let mut dev = Device::new();
    let emu = start(&config(&dev));
    let tpm = dev.open();
    let mut b = builder(&emu, &dev.registration_id);
    b.tpm(tpm.clone());
    b.deadline(Duration::from_secs(10)).unwrap();
    let mut client = dps::Client::new(Arc::new(b.build().unwrap()));
    // The TPM dies as the PUT goes out (the open connection is the client's only link to it):
    // the first TPM command of this registration is the activation of the 401's blob.
    let pid = dev.swtpm.pid();
    let mut killed = false;
    client.set_observer(Some(Box::new(move |ev| {
        if ev == Event::Registering && !killed {
            killed = true;
            send_signal(pid, "KILL");
        }
    })));
    let t0 = Instant::now();
    let e = client.register().expect_err("the TPM is gone");
    let took = t0.elapsed();
    println!("TPM killed mid-registration: {e} after {took:?}");
    assert_eq!(e.kind, ErrorKind::Tpm, "{e}");
    assert!(e.message.contains("TSS2_RC 0x"), "{}", e.message);
    assert!(took < Duration::from_secs(5), "{took:?}");
    let log = emu.log_lines().join("\n");
    assert!(
        log.contains("tpm challenge"),
        "no challenge was issued:\n{log}"
    );
    assert!(
        !log.contains("identity key"),
        "a SAS was accepted without a TPM:\n{log}"
    );

    // The TPM comes back (same state, same port): the same client and Tpm reconnect and the
    // next registration works from a new challenge.
    dev.swtpm.restart();
    let r = client.register().expect("registers once the TPM is back");
    assert_eq!(r.device_id.as_deref(), Some("tpm-device"));
}

#[test]
fn a_tpm_that_stops_answering_while_polling_ends_at_the_deadline() {
    let dev = Device::new();
    let emu = start(&config(&dev));
    let tpm = dev.open();
    let mut b = builder(&emu, &dev.registration_id);
    b.tpm(tpm.clone());
    let deadline = Duration::from_secs(3);
    b.deadline(deadline).unwrap();
    let mut client = dps::Client::new(Arc::new(b.build().unwrap()));
    // SIGSTOP when DPS answers 202 assigning to the TPM-signed second PUT: the TPM keeps its
    // socket open and never answers the next command (the SAS of the poll or the hub-key
    // import), so only the registration deadline can end the wait.
    let pid = dev.swtpm.pid();
    let mut stopped = false;
    client.set_observer(Some(Box::new(move |ev| {
        if matches!(ev, Event::Assigning { .. }) && !stopped {
            stopped = true;
            send_signal(pid, "STOP");
        }
    })));
    let t0 = Instant::now();
    let e = client.register().expect_err("the TPM stopped answering");
    let took = t0.elapsed();
    println!("TPM stopped while polling: {e} after {took:?}");
    assert_eq!(e.kind, ErrorKind::DeadlineExceeded, "{e}");
    assert!(
        took >= deadline - Duration::from_millis(500) && took < deadline + Duration::from_secs(2),
        "{took:?}"
    );
    let log = emu.log_lines().join("\n");
    assert!(
        log.contains("identity key"),
        "the second PUT was not accepted:\n{log}"
    );

    // That connection is abandoned (its worker is blocked in the TCTI): the next registration
    // through it fails at once, saying so.
    let t0 = Instant::now();
    let e = client.register().expect_err("abandoned TPM connection");
    assert_eq!(e.kind, ErrorKind::Tpm, "{e}");
    assert!(e.message.contains("abandoned"), "{}", e.message);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());

    // The TPM resumes: a new connection registers.
    dev.swtpm.signal("CONT");
    let mut b = builder(&emu, &dev.registration_id);
    b.tpm(dev.open());
    let r = client_for(&b)
        .register()
        .expect("registers with a new TPM connection");
    assert_eq!(r.device_id.as_deref(), Some("tpm-device"));
}

fn client_for(b: &dps::ConfigBuilder) -> dps::Client {
    dps::Client::new(Arc::new(b.build().unwrap()))
}

#[test]
fn an_ecc_ek_is_refused_before_anything_is_sent() {
    let swtpm = Swtpm::start();
    // tpm2-tools makes the TCG ECC P-256 EK at the RSA EK's handle.
    swtpm.tool(
        "tpm2_createek",
        &["-c", EK_HANDLE, "-G", "ecc", "-u", "ek.pub"],
    );
    let options = TpmOptions {
        tcti: swtpm.tcti(),
        create_missing: true,
        command_timeout: Duration::from_secs(30),
        ..TpmOptions::default()
    };
    let e = tpm_info(&options).expect_err("an ECC EK");
    println!("ECC EK: {e}");
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert!(
        e.message.contains("is an ECC key") && e.message.contains("RSA-2048"),
        "{}",
        e.message
    );
    let e = Tpm::open(&options).expect_err("an ECC EK");
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
}

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

#[test]
fn registers_through_the_c_abi() {
    use dps::ffi::*;
    let dev = Device::new();
    let emu = start(&config(&dev));
    let tcti = cs(&dev.options.tcti);
    unsafe {
        // dps_tpm_info: the ID and EK the enrollment was made from.
        let mut id = [0 as c_char; DPS_TPM_REGISTRATION_ID_LEN + 1];
        let mut ek_len = 0usize;
        let mut err = null_mut();
        assert_eq!(
            dps_tpm_info(
                tcti.as_ptr(),
                0,
                0,
                0,
                id.as_mut_ptr(),
                id.len(),
                null_mut(),
                0,
                &mut ek_len,
                &mut err
            ),
            DPS_ERR_BUFFER_TOO_SMALL
        );
        dps_error_free(err);
        assert_eq!(ek_len, dev.endorsement_key.len());
        let mut ek = vec![0 as c_char; ek_len + 1];
        assert_eq!(
            dps_tpm_info(
                tcti.as_ptr(),
                0,
                0,
                0,
                id.as_mut_ptr(),
                id.len(),
                ek.as_mut_ptr(),
                ek.len(),
                null_mut(),
                null_mut()
            ),
            DPS_OK
        );
        let text = |p: *const c_char| std::ffi::CStr::from_ptr(p).to_str().unwrap().to_owned();
        assert_eq!(text(id.as_ptr()), dev.registration_id);
        assert_eq!(text(ek.as_ptr()), dev.endorsement_key);

        // NULL registration ID: the EK-derived one.
        let mut cfg = null_mut();
        assert_eq!(dps_config_new(cs(SCOPE).as_ptr(), null(), &mut cfg), DPS_OK);
        assert_eq!(
            dps_config_set_endpoint(cfg, cs(&format!("localhost:{}", emu.port())).as_ptr()),
            DPS_OK
        );
        assert_eq!(dps_config_set_default_roots(cfg, DPS_ROOTS_NONE), DPS_OK);
        assert_eq!(
            dps_config_add_trusted_ca_pem(cfg, cs(&emu.ca_pem()).as_ptr()),
            DPS_OK
        );
        assert_eq!(dps_config_set_timeout_ms(cfg, 30_000), DPS_OK);
        assert_eq!(
            dps_config_set_tpm(cfg, tcti.as_ptr(), 0, 0, 0, 2),
            DPS_ERR_INVALID_ARGUMENT
        );
        assert_eq!(dps_config_set_tpm(cfg, tcti.as_ptr(), 0, 0, 0, 0), DPS_OK);
        let mut client = null_mut();
        assert_eq!(dps_client_new(cfg, &mut client, null_mut()), DPS_OK);
        let mut reg = null_mut();
        assert_eq!(dps_client_register(client, &mut reg), DPS_OK);
        assert_eq!(
            text(dps_registration_device_id(reg)),
            "tpm-device".to_owned()
        );
        let hub = text(dps_registration_assigned_hub(reg));
        let mut buf = vec![0 as c_char; 512];
        let se = 1_900_000_000;
        assert_eq!(
            dps_client_iot_hub_sas_token(client, reg, se, buf.as_mut_ptr(), buf.len(), null_mut()),
            DPS_OK
        );
        let token = text(buf.as_ptr());
        assert!(
            token.contains(&format!("&sig={}&", hub_signature(&hub, "tpm-device", se))),
            "{token}"
        );
        assert_eq!(
            dps_client_connection_string(client, reg, buf.as_mut_ptr(), buf.len(), null_mut()),
            DPS_ERR_UNSUPPORTED
        );
        dps_registration_free(reg);
        dps_client_free(client);

        // A TPM that is not there: DPS_ERR_TPM with the TSS2 response code.
        assert_eq!(
            dps_config_set_tpm(cfg, cs("swtpm:host=127.0.0.1,port=1").as_ptr(), 0, 0, 0, 0),
            DPS_ERR_TPM
        );
        let e = dps_config_last_error(cfg);
        assert!(text(dps_error_message(e)).contains("TSS2_RC 0x"));
        dps_config_free(cfg);
    }
}

/// CPU time (ns resolution, from the scheduler's accounting) of the live threads of this
/// process: the client's thread, the TPM worker thread and the in-process emulator's threads.
fn cpu_time() -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}
