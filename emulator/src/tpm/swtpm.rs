//! Test support: a real software TPM. [`Swtpm`] starts swtpm (libtpms) in a temporary state
//! directory (a fresh EPS, so a fresh EK, every run) on ephemeral loopback ports, and drives it
//! with tpm2-tools, which can play the device's side of PROTOCOL.md 5.4 on the blobs of this
//! module. Used by this crate's tests and by TPM client tests. Without swtpm or tpm2-tools it
//! panics naming the Debian packages to install: a test using it fails, never passes silently.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{ActivationBlob, RsaPublic, hex};

/// The persistent handles of PROTOCOL.md 5.4.
pub const EK_HANDLE: &str = "0x81010001";
pub const SRK_HANDLE: &str = "0x81000001";

/// The hub key TPM test enrollments fix (bytes 0x21..0x40), so a test can check the key the
/// device imported.
pub const TEST_HUB_KEY: &str = "ISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A=";
/// A real device's EK (PROTOCOL.md V8): "another TPM" in the test enrollments.
pub const TEST_OTHER_EK: &str = "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAopqgkUBwtpr1sCgVJcEZxsJtpmtOAt9K7SjGFe4hsp6DJ/dd2E5UFzBC+Jp8Fzqf5ukRBkqrAgIuAvHRsruIedk1uarJSLhbDpFLHxFd7iDNcYfrvdgVNT2T9zrvkh2y04WuRQg2D5qf0tZF82jeTjR/YJK7uWhaRwWOwZ3b1XD9l6wFOrwK/Ic0PEsjneFXQzL0n9uKyuHmHNz+wHppmOiMAabvnXXEin9ou7/iowY/+YhFm3j7atsVvxMI5HEM3Mq+W4imUuzPxVX7fZH+oWPKP5ofpWBTf+MdttGby1AjGnv8JE69JriOYoZG2/4qbsfv9M7a7NFrBlaW7Rt36w==";

/// The TPM enrollments the client and emulator tests share, for a TPM whose EK is
/// `endorsement_key` (base64 TPM2B_PUBLIC): the device itself (hub key [`TEST_HUB_KEY`],
/// device ID `tpm-device`), `tpm-other-ek` enrolled with [`TEST_OTHER_EK`], and
/// `tpm-bad-challenge` / `tpm-bad-hub` whose challenge or hub-key blob the emulator corrupts.
pub fn test_enrollments(endorsement_key: &str) -> String {
    format!(
        r#"
[[enrollments]]
attestation = "tpm"
endorsement_key = "{endorsement_key}"
hub_key = "{TEST_HUB_KEY}"
device_id = "tpm-device"

[[enrollments]]
registration_id = "tpm-other-ek"
attestation = "tpm"
endorsement_key = "{TEST_OTHER_EK}"

[[enrollments]]
registration_id = "tpm-bad-challenge"
attestation = "tpm"
endorsement_key = "{endorsement_key}"
corrupt_blob = "challenge"

[[enrollments]]
registration_id = "tpm-bad-hub"
attestation = "tpm"
endorsement_key = "{endorsement_key}"
corrupt_blob = "hub"
"#
    )
}

/// A running swtpm with its state directory; both are removed on drop.
pub struct Swtpm {
    child: Child,
    dir: PathBuf,
    port: u16,
}

fn missing(tool: &str) -> ! {
    panic!(
        "`{tool}` is not installed: these tests need a software TPM. Install the Debian \
         packages swtpm, swtpm-tools and tpm2-tools (.ci/run does)"
    )
}

fn free_port_pair() -> Option<u16> {
    let a = TcpListener::bind("127.0.0.1:0").ok()?;
    let p = a.local_addr().ok()?.port();
    let _b = TcpListener::bind(("127.0.0.1", p.checked_add(1)?)).ok()?;
    Some(p)
}

fn temp_dir() -> PathBuf {
    let mut r = [0u8; 8];
    super::crypto::random(&mut r).unwrap();
    let d = std::env::temp_dir().join(format!("dps-emu-swtpm-{}-{}", std::process::id(), hex(&r)));
    std::fs::create_dir_all(d.join("state")).unwrap();
    d
}

/// `kill -SIGNAL pid` (tests stop, resume and kill the software TPM).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Starts swtpm on `port` (control on `port + 1`) with its state in `dir/state`, and waits
/// until it accepts connections. `None` if it exited (a lost port race) or did not listen.
fn spawn(dir: &std::path::Path, port: u16) -> Option<Child> {
    let spawned = Command::new("swtpm")
        .arg("socket")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(format!("dir={}", dir.join("state").display()))
        .arg("--server")
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
        .arg("--flags")
        .arg("not-need-init,startup-clear")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = std::fs::remove_dir_all(dir);
            missing("swtpm")
        }
        Err(e) => panic!("cannot start swtpm: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Swtpm {
    /// Starts a fresh TPM (manufactured on first use: new EPS, so a new EK).
    pub fn start() -> Swtpm {
        let dir = temp_dir();
        for _attempt in 0..5 {
            let Some(port) = free_port_pair() else {
                continue;
            };
            if let Some(child) = spawn(&dir, port) {
                return Swtpm { child, dir, port };
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("swtpm did not start listening on 127.0.0.1 after 5 attempts");
    }

    /// The swtpm process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`, `"KILL"`, ...) to the swtpm process: `STOP` makes
    /// the TPM stop answering without closing its socket, `KILL` makes it go away.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Kills swtpm (if it still runs) and starts it again on the same state directory and
    /// ports: the same TPM after a power cycle (persistent objects kept).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(child) = spawn(&self.dir, self.port) {
                self.child = child;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "swtpm did not restart on port {} within 5 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The TPM command port (the control port is the next one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The tpm2-tss TCTI configuration string for this TPM.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// A file in this TPM's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Runs a tpm2-tools command against this TPM in its directory.
    pub fn try_tool(&self, tool: &str, args: &[&str]) -> Output {
        match Command::new(tool)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing(tool),
            Err(e) => panic!("cannot run {tool}: {e}"),
        }
    }

    /// Like [`Swtpm::try_tool`], panicking with the tool's stderr when it fails.
    pub fn tool(&self, tool: &str, args: &[&str]) -> Output {
        let o = self.try_tool(tool, args);
        assert!(
            o.status.success(),
            "{tool} {args:?} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// The device's key provisioning: EK (standard RSA template) and SRK, both persistent.
    /// Returns (EK, SRK) as the device would send them.
    pub fn provision_ek_srk(&self) -> (RsaPublic, RsaPublic) {
        self.tool(
            "tpm2_createek",
            &["-c", EK_HANDLE, "-G", "rsa", "-u", "ek.pub"],
        );
        self.tool(
            "tpm2_createprimary",
            &["-Q", "-C", "o", "-G", "rsa", "-c", "srk.ctx"],
        );
        self.tool(
            "tpm2_evictcontrol",
            &["-Q", "-C", "o", "-c", "srk.ctx", SRK_HANDLE],
        );
        self.tool("tpm2_flushcontext", &["-t"]);
        self.tool(
            "tpm2_readpublic",
            &["-Q", "-c", SRK_HANDLE, "-o", "srk.pub", "-n", "srk.name"],
        );
        self.tool("tpm2_readpublic", &["-Q", "-c", EK_HANDLE, "-n", "ek.name"]);
        (
            RsaPublic::parse(&self.read("ek.pub")).unwrap(),
            RsaPublic::parse(&self.read("srk.pub")).unwrap(),
        )
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    pub fn write(&self, name: &str, data: &[u8]) {
        std::fs::File::create(self.path(name))
            .and_then(|mut f| f.write_all(data))
            .unwrap();
    }

    /// The device's step 3 with tpm2-tools: ActivateCredential under a PolicySecret(endorsement)
    /// session, then Import and Load under the SRK. Returns the failing tool's name and stderr.
    pub fn activate(&self, blob: &ActivationBlob, tag: &str) -> Result<(), (String, String)> {
        // tpm2_activatecredential's input file: magic 0xBADCC0DE, version 1, then
        // TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (the format tpm2_makecredential writes).
        let mut cred = vec![0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1];
        cred.extend_from_slice(&blob.credential_blob);
        cred.extend_from_slice(&blob.encrypted_secret);
        self.write(&format!("{tag}.cred"), &cred);
        self.write(&format!("{tag}.dup"), &blob.dup_blob);
        self.write(&format!("{tag}.seed"), &blob.enc_wrap_key);
        self.write(&format!("{tag}.pub"), &blob.id_key_pub);
        let run = |tool: &str, args: &[&str]| -> Result<(), (String, String)> {
            let o = self.try_tool(tool, args);
            if o.status.success() {
                Ok(())
            } else {
                Err((
                    tool.to_string(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                ))
            }
        };
        let session = format!("{tag}.session");
        run(
            "tpm2_startauthsession",
            &["--policy-session", "-S", &session],
        )?;
        let activated =
            run("tpm2_policysecret", &["-Q", "-S", &session, "-c", "e"]).and_then(|_| {
                run(
                    "tpm2_activatecredential",
                    &[
                        "-Q",
                        "-c",
                        SRK_HANDLE,
                        "-C",
                        EK_HANDLE,
                        "-i",
                        &format!("{tag}.cred"),
                        "-o",
                        &format!("{tag}.inner"),
                        "-P",
                        &format!("session:{session}"),
                    ],
                )
            });
        let _ = self.try_tool("tpm2_flushcontext", &["-s"]);
        activated?;
        run(
            "tpm2_import",
            &[
                "-Q",
                "-C",
                SRK_HANDLE,
                "-u",
                &format!("{tag}.pub"),
                "-i",
                &format!("{tag}.dup"),
                "-s",
                &format!("{tag}.seed"),
                "-k",
                &format!("{tag}.inner"),
                "-r",
                &format!("{tag}.priv"),
            ],
        )?;
        let _ = self.try_tool("tpm2_flushcontext", &["-t"]);
        run(
            "tpm2_load",
            &[
                "-Q",
                "-C",
                SRK_HANDLE,
                "-u",
                &format!("{tag}.pub"),
                "-r",
                &format!("{tag}.priv"),
                "-c",
                &format!("{tag}.ctx"),
            ],
        )?;
        let _ = self.try_tool("tpm2_flushcontext", &["-t"]);
        Ok(())
    }

    /// TPM2_HMAC(SHA-256) of `data` with the key loaded by [`Swtpm::activate`] under `tag`.
    pub fn hmac(&self, tag: &str, data: &[u8]) -> Vec<u8> {
        self.write(&format!("{tag}.data"), data);
        self.tool(
            "tpm2_hmac",
            &[
                "-c",
                &format!("{tag}.ctx"),
                "-g",
                "sha256",
                "-o",
                &format!("{tag}.mac"),
                &format!("{tag}.data"),
            ],
        );
        let _ = self.try_tool("tpm2_flushcontext", &["-t"]);
        self.read(&format!("{tag}.mac"))
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
