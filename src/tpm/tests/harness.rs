//! Test-only: a swtpm per test (temporary state directory, fresh EK, ephemeral ports) and a
//! stand-in for the DPS service side built from tpm2-tools (import + duplicate on a second
//! swtpm, offline `tpm2_makecredential -T none`), independent of the library's code.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Panics with the packages to install when a tool is missing (never a silent skip).
pub fn require(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "'{tool}' is not in PATH: the TPM tests need the Debian packages swtpm, \
                 swtpm-tools and tpm2-tools (apt-get install swtpm swtpm-tools tpm2-tools)"
            )
        })
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dps-tpm-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Two consecutive free ports on 127.0.0.1 (the swtpm TCTI uses port + 1 for control).
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free ports on 127.0.0.1");
}

/// Starts swtpm on `port` (control on `port + 1`) and waits until it accepts connections.
fn spawn(swtpm: &Path, dir: &Path, port: u16) -> Option<Child> {
    let log = std::fs::File::create(dir.join("swtpm.log")).unwrap();
    let mut child = Command::new(swtpm)
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", dir.join("state").display()))
        .arg("--server")
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
        .args(["--flags", "not-need-init,startup-clear"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start swtpm");
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return None; // lost the port race
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// One swtpm process with its own state directory.
pub struct SwTpm {
    child: Option<Child>,
    pub dir: PathBuf,
    pub port: u16,
}

impl SwTpm {
    /// `provision`: run `swtpm_setup --createek --create-spk` first (EK at 0x81010001, SRK at
    /// 0x81000001, a fresh endorsement seed each time); otherwise the TPM is blank.
    pub fn start(provision: bool) -> SwTpm {
        let swtpm = require("swtpm");
        let dir = temp_dir("swtpm");
        let state = dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        if provision {
            let setup = require("swtpm_setup");
            // An empty config keeps swtpm_setup away from /etc and /var/lib (no certificates).
            let conf = dir.join("swtpm_setup.conf");
            std::fs::write(&conf, "").unwrap();
            let out = Command::new(setup)
                .args(["--tpm2", "--createek", "--create-spk", "--tpmstate"])
                .arg(&state)
                .arg("--config")
                .arg(&conf)
                .output()
                .expect("run swtpm_setup");
            assert!(
                out.status.success(),
                "swtpm_setup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for _attempt in 0..5 {
            let port = free_port_pair();
            if let Some(child) = spawn(&swtpm, &dir, port) {
                return SwTpm {
                    child: Some(child),
                    dir,
                    port,
                };
            }
        }
        panic!(
            "swtpm did not start: {}",
            std::fs::read_to_string(dir.join("swtpm.log")).unwrap_or_default()
        );
    }

    /// Starts the (killed) TPM again on the same port with the same state.
    pub fn restart(&mut self) {
        self.kill();
        let child = spawn(&require("swtpm"), &self.dir, self.port).expect("restart swtpm");
        self.child = Some(child);
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the process (the TPM "goes away").
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP / SIGCONT: the TPM stops answering without closing its socket.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    /// Runs a tpm2-tools command against this TPM (nothing else may be connected) and flushes
    /// its transient objects (swtpm has no resource manager).
    pub fn tool(&self, tool: &str, args: &[&str], cwd: &Path) -> Vec<u8> {
        let out = Command::new(require(tool))
            .args(args)
            .current_dir(cwd)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output()
            .expect("run tpm2-tools");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if tool != "tpm2_flushcontext" && tool != "tpm2_makecredential" {
            let fl = Command::new(require("tpm2_flushcontext"))
                .arg("-t")
                .env("TPM2TOOLS_TCTI", self.tcti())
                .output()
                .expect("run tpm2_flushcontext");
            assert!(fl.status.success(), "tpm2_flushcontext -t failed");
        }
        out.stdout
    }
}

impl Drop for SwTpm {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped swtpm would not die from SIGKILL until continued on some kernels.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(c.id().to_string())
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The DPS side of the challenge, done with tpm2-tools on a TPM of its own.
pub struct Service {
    tpm: SwTpm,
    work: PathBuf,
}

impl Service {
    pub fn new() -> Service {
        let tpm = SwTpm::start(false);
        let work = tpm.dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        tpm.tool(
            "tpm2_createprimary",
            &["-C", "o", "-c", "prim.ctx", "-Q"],
            &work,
        );
        // The identity key may be duplicated: policy = PolicyCommandCode(TPM2_CC_Duplicate).
        tpm.tool("tpm2_startauthsession", &["-S", "trial.dat"], &work);
        tpm.tool(
            "tpm2_policycommandcode",
            &[
                "-S",
                "trial.dat",
                "-L",
                "dup.policy",
                "TPM2_CC_Duplicate",
                "-Q",
            ],
            &work,
        );
        tpm.tool("tpm2_flushcontext", &["trial.dat"], &work);
        Service { tpm, work }
    }

    /// An activation blob (PROTOCOL.md 5.4 layout) carrying `hmac_key` for the device whose EK
    /// and SRK TPM2B_PUBLICs are given.
    pub fn make_blob(&self, ek_pub: &[u8], srk_pub: &[u8], hmac_key: &[u8]) -> Vec<u8> {
        let w = &self.work;
        let t = &self.tpm;
        let inner: Vec<u8> = (0..16u8)
            .map(|i| i.wrapping_mul(37) ^ hmac_key[i as usize])
            .collect();
        std::fs::write(w.join("hmac.key"), hmac_key).unwrap();
        std::fs::write(w.join("inner.key"), &inner).unwrap();
        std::fs::write(w.join("ek.pub"), ek_pub).unwrap();
        std::fs::write(w.join("srk.pub"), srk_pub).unwrap();
        t.tool(
            "tpm2_import",
            &[
                "-C",
                "prim.ctx",
                "-G",
                "hmac",
                "-i",
                "hmac.key",
                "-L",
                "dup.policy",
                "-a",
                "userwithauth|sign",
                "-u",
                "id.pub",
                "-r",
                "id.priv",
                "-Q",
            ],
            w,
        );
        t.tool(
            "tpm2_load",
            &[
                "-C", "prim.ctx", "-u", "id.pub", "-r", "id.priv", "-c", "id.ctx", "-Q",
            ],
            w,
        );
        t.tool(
            "tpm2_loadexternal",
            &["-C", "o", "-u", "srk.pub", "-c", "srk.ctx", "-Q"],
            w,
        );
        // One shell so the policy session survives between the commands.
        let script = "set -e\n\
            tpm2_startauthsession --policy-session -S s.dat\n\
            tpm2_policycommandcode -S s.dat TPM2_CC_Duplicate -Q\n\
            tpm2_duplicate -C srk.ctx -c id.ctx -G aes -i inner.key -p session:s.dat \
              -r dup.priv -s dup.seed\n\
            tpm2_flushcontext s.dat\n\
            tpm2_flushcontext -t\n";
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(w)
            .env("TPM2TOOLS_TCTI", t.tcti())
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "tpm2_duplicate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let name = srk_name_hex(srk_pub);
        t.tool(
            "tpm2_makecredential",
            &[
                "-T",
                "none",
                "-u",
                "ek.pub",
                "-s",
                "inner.key",
                "-n",
                &name,
                "-o",
                "cred.out",
            ],
            w,
        );
        let cred = std::fs::read(w.join("cred.out")).unwrap();
        assert_eq!(
            &cred[..8],
            &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1],
            "cred.out header"
        );
        let mut blob = cred[8..].to_vec(); // TPM2B_ID_OBJECT || TPM2B_ENCRYPTED_SECRET
        blob.extend(std::fs::read(w.join("dup.priv")).unwrap()); // TPM2B_PRIVATE
        blob.extend(std::fs::read(w.join("dup.seed")).unwrap()); // TPM2B_ENCRYPTED_SECRET
        blob.extend(std::fs::read(w.join("id.pub")).unwrap()); // TPM2B_PUBLIC
        blob.extend([0, 0]); // encUriData, empty
        blob
    }
}

/// Name(SRK) = nameAlg (SHA-256, 0x000b) || SHA-256(TPMT_PUBLIC), in hex.
pub fn srk_name_hex(srk_pub: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, &srk_pub[2..]);
    let mut s = String::from("000b");
    for b in d.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The TPM2B fields of a blob, as (offset of the content, length).
pub fn fields(blob: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 2 <= blob.len() {
        let len = usize::from(u16::from_be_bytes([blob[off], blob[off + 1]]));
        out.push((off + 2, len));
        off += 2 + len;
    }
    out
}

pub fn software_hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data).as_ref().try_into().unwrap()
}

/// A TCP front end speaking the Microsoft simulator ("mssim") protocol, forwarding every
/// TPM_SEND_COMMAND to a swtpm: lets the `mssim:` TCTI and the raw mssim framing be tested
/// without the simulator. Platform commands (power, NV on) are acknowledged.
pub struct MssimProxy {
    pub port: u16,
    /// TPM commands forwarded so far (a resend after TPM_RC_RETRY counted once): an
    /// independent count of what the client sent.
    pub commands: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl MssimProxy {
    pub fn start(backend_port: u16) -> MssimProxy {
        let (tpm, platform, port) = loop {
            let p = free_port_pair();
            if let (Ok(a), Ok(b)) = (
                TcpListener::bind(("127.0.0.1", p)),
                TcpListener::bind(("127.0.0.1", p + 1)),
            ) {
                break (a, b, p);
            }
        };
        std::thread::spawn(move || {
            for conn in platform.incoming() {
                let Ok(mut c) = conn else { return };
                std::thread::spawn(move || {
                    let mut cmd = [0u8; 4];
                    while c.read_exact(&mut cmd).is_ok() {
                        if c.write_all(&0u32.to_be_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let commands = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = commands.clone();
        std::thread::spawn(move || {
            for conn in tpm.incoming() {
                let Ok(c) = conn else { return };
                let counter = counter.clone();
                std::thread::spawn(move || mssim_session(c, backend_port, &counter));
            }
        });
        MssimProxy { port, commands }
    }
}

fn mssim_session(mut c: TcpStream, backend_port: u16, counter: &std::sync::atomic::AtomicU64) {
    let Ok(mut backend) = TcpStream::connect(("127.0.0.1", backend_port)) else {
        return;
    };
    let mut word = [0u8; 4];
    while c.read_exact(&mut word).is_ok() {
        match u32::from_be_bytes(word) {
            8 => {
                // TPM_SEND_COMMAND: locality (u8), size (u32), command
                let mut loc = [0u8; 1];
                let mut size = [0u8; 4];
                if c.read_exact(&mut loc).is_err() || c.read_exact(&mut size).is_err() {
                    return;
                }
                let mut cmd = vec![0u8; u32::from_be_bytes(size) as usize];
                if c.read_exact(&mut cmd).is_err() || backend.write_all(&cmd).is_err() {
                    return;
                }
                let mut header = [0u8; 10];
                if backend.read_exact(&mut header).is_err() {
                    return;
                }
                let n = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
                let mut resp = header.to_vec();
                resp.resize(n, 0);
                if backend.read_exact(&mut resp[10..]).is_err() {
                    return;
                }
                // ESAPI resends a command answered with TPM_RC_RETRY, YIELDED or TESTING
                // (swtpm sometimes answers RETRY just after an NV write): count it once.
                let rc = u32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]]);
                if !matches!(rc, 0x922 | 0x908 | 0x90a) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let mut out = (n as u32).to_be_bytes().to_vec();
                out.extend(resp);
                out.extend(0u32.to_be_bytes());
                if c.write_all(&out).is_err() {
                    return;
                }
            }
            20 => return, // TPM_SESSION_END
            _ => {
                if c.write_all(&0u32.to_be_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}
