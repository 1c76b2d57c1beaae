//! The `tabrmd` TCTI: a private D-Bus session bus and tpm2-abrmd in front of a swtpm.
//!
//! The tabrmd TCTI finds the session bus through `DBUS_SESSION_BUS_ADDRESS`, which a test
//! cannot set for its own process in safe code, so the test runs its TPM part in a child
//! process: this same test binary, filtered to this test, with the variables set.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::harness::{Service, SwTpm, require, software_hmac};
use super::*;

const CHILD: &str = "DPS_TPM_TABRMD_CHILD";

#[test]
fn tabrmd_tcti_through_tpm2_abrmd() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let sw = SwTpm::start(true);
    let service = Service::new();
    let ek = {
        sw.tool(
            "tpm2_readpublic",
            &["-c", "0x81010001", "-o", "ek.pub"],
            &sw.dir,
        );
        std::fs::read(sw.dir.join("ek.pub")).unwrap()
    };
    let srk = {
        sw.tool(
            "tpm2_readpublic",
            &["-c", "0x81000001", "-o", "srk.pub"],
            &sw.dir,
        );
        std::fs::read(sw.dir.join("srk.pub")).unwrap()
    };
    let k = key(11);
    let blob = service.make_blob(&ek, &srk, &k);
    std::fs::write(sw.dir.join("blob.bin"), &blob).unwrap();

    let bus = sw.dir.join("bus");
    let address = format!("unix:path={}", bus.display());
    let _dbus = Reap(
        Command::new(require("dbus-daemon"))
            .args(["--session", "--nofork", "--address"])
            .arg(&address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon"),
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !bus.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let name = format!("com.intel.tss2.Tabrmd.dps{}", std::process::id());
    let abrmd = Reap(
        Command::new(require("tpm2-abrmd"))
            .args(["--session", "--allow-root", "--dbus-name", &name])
            .arg(format!("--tcti={}", sw.tcti()))
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tpm2-abrmd"),
    );
    let tcti = format!("tabrmd:bus_name={name},bus_type=session");
    // Wait until the daemon owns its name: tpm2_getcap through it succeeds.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = Command::new(require("tpm2_getcap"))
            .arg("handles-persistent")
            .env("TPM2TOOLS_TCTI", &tcti)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(Instant::now() < until, "tpm2-abrmd did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tpm::tests::tabrmd::tabrmd_tcti_through_tpm2_abrmd",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("DBUS_SESSION_BUS_ADDRESS", &address)
        .env("DPS_TPM_TABRMD_TCTI", &tcti)
        .env("DPS_TPM_TABRMD_DIR", &sw.dir)
        .output()
        .expect("run the child test");
    drop(abrmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills and reaps a helper process when the test ends, passed or not.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child() {
    let tcti = std::env::var("DPS_TPM_TABRMD_TCTI").unwrap();
    let dir = std::path::PathBuf::from(std::env::var("DPS_TPM_TABRMD_DIR").unwrap());
    let tpm = Arc::new(
        Tpm::open(&TpmOptions {
            tcti,
            ..TpmOptions::default()
        })
        .expect("open through tabrmd"),
    );
    assert_eq!(
        tpm.endorsement_key(),
        std::fs::read(dir.join("ek.pub")).unwrap()
    );
    tpm.activate(&std::fs::read(dir.join("blob.bin")).unwrap())
        .expect("activate through tabrmd");
    let k = key(11);
    let hk = tpm.hmac_key();
    assert_eq!(
        hk.hmac_sha256(b"via tabrmd").unwrap(),
        software_hmac(&k, b"via tabrmd")
    );
    let err = hk
        .hmac_sha256(&[0u8; 2000])
        .expect_err("no raw path through D-Bus");
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
}
