//! A software TPM behind tpm2-pkcs11, all in a temporary directory: swtpm on loopback TCP, a
//! private D-Bus session bus, tpm2-abrmd on it (tpm2-pkcs11 needs a resource manager), and
//! a tpm2-pkcs11 store made with `tpm2_ptool`. Everything is stopped and removed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tpm2-pkcs11 module Debian installs (package `libtpm2-pkcs11-1`).
pub const TPM2_MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so";

/// What each program is and which Debian package brings it.
const PROGRAMS: &[(&str, &str)] = &[
    ("swtpm", "swtpm"),
    ("dbus-daemon", "dbus"),
    ("dbus-send", "dbus"),
    ("tpm2-abrmd", "tpm2-abrmd"),
    ("tpm2_ptool", "libtpm2-pkcs11-tools"),
    ("tpm2_import", "tpm2-tools"),
];

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(prog))
            .find(|f| f.is_file())
    })
}

/// A running software TPM with a resource manager and a tpm2-pkcs11 store.
pub struct Tpm {
    pub dir: PathBuf,
    pub store: PathBuf,
    pub bus: String,
    pub port: u16,
    children: Vec<(&'static str, Child)>,
}

fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two adjacent free ports on 127.0.0.1 for swtpm");
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < timeout,
            "{what} did not come up within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Tpm {
    /// Starts swtpm, a private D-Bus session bus and tpm2-abrmd, and initialises a
    /// tpm2-pkcs11 store. Panics with the missing package's name if a program is missing.
    pub fn start() -> Tpm {
        super::require_file(TPM2_MODULE, "libtpm2-pkcs11-1");
        for (prog, pkg) in PROGRAMS {
            assert!(
                which(prog).is_some(),
                "prerequisite missing: {prog} (Debian package {pkg}); .ci/run installs it"
            );
        }
        let dir = super::fresh_dir("tpm");
        let state = dir.join("state");
        let store = dir.join("store");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&store).unwrap();
        let port = free_port_pair();
        let bus_path = dir.join("bus");
        let mut tpm = Tpm {
            bus: format!("unix:path={}", bus_path.display()),
            dir: dir.clone(),
            store,
            port,
            children: Vec::new(),
        };
        tpm.spawn(
            "swtpm",
            Command::new("swtpm").args([
                "socket",
                "--tpm2",
                "--tpmstate",
                &format!("dir={}", state.display()),
                "--server",
                &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
                "--ctrl",
                &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
                "--flags",
                "not-need-init,startup-clear",
            ]),
        );
        wait_until("swtpm", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        tpm.spawn(
            "dbus-daemon",
            Command::new("dbus-daemon").args([
                "--session",
                &format!("--address={}", tpm.bus),
                "--nofork",
                "--nopidfile",
            ]),
        );
        wait_until("dbus-daemon", Duration::from_secs(10), || bus_path.exists());
        let tcti = format!("--tcti=swtpm:host=127.0.0.1,port={port}");
        let bus = tpm.bus.clone();
        tpm.spawn(
            "tpm2-abrmd",
            Command::new("tpm2-abrmd")
                .args(["--session", "--allow-root", &tcti])
                .env("DBUS_SESSION_BUS_ADDRESS", &bus),
        );
        wait_until(
            "tpm2-abrmd on the private bus",
            Duration::from_secs(15),
            || {
                Command::new("dbus-send")
                    .args([
                        "--session",
                        "--dest=org.freedesktop.DBus",
                        "--print-reply",
                        "/org/freedesktop/DBus",
                        "org.freedesktop.DBus.NameHasOwner",
                        "string:com.intel.tss2.Tabrmd",
                    ])
                    .env("DBUS_SESSION_BUS_ADDRESS", &bus)
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
            },
        );
        tpm.ptool(&["init"]);
        tpm
    }

    fn spawn(&mut self, name: &'static str, cmd: &mut Command) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name, child));
    }

    /// The environment the TPM tools and the tpm2-pkcs11 module need.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS", self.bus.clone()),
            ("TPM2_PKCS11_STORE", self.store.display().to_string()),
            ("TPM2_PKCS11_TCTI", "tabrmd:bus_type=session".into()),
            ("TPM2TOOLS_TCTI", "tabrmd:bus_type=session".into()),
            ("TPM2_PKCS11_LOG_LEVEL", "0".into()),
            // The wrong-PIN check makes the TSS log an authorisation failure: expected.
            ("TSS2_LOG", "all+NONE".into()),
        ]
    }

    /// Sets [`Tpm::env`] in this process, for the tpm2-pkcs11 module it loads next.
    pub fn set_process_env(&self) {
        for (k, v) in self.env() {
            super::set_env(k, v);
        }
    }

    fn run(&self, prog: &str, args: &[&str]) -> String {
        let out = Command::new(prog)
            .args(args)
            .envs(self.env())
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tpm2_ptool <args> --path <store>`.
    pub fn ptool(&self, args: &[&str]) -> String {
        let path = format!("--path={}", self.store.display());
        let mut a = args.to_vec();
        a.push(&path);
        self.run("tpm2_ptool", &a)
    }

    /// A token `label` with user PIN `pin` and SO PIN `so_pin`.
    pub fn add_token(&self, label: &str, pin: &str, so_pin: &str) {
        self.ptool(&[
            "addtoken",
            "--pid=1",
            &format!("--label={label}"),
            &format!("--userpin={pin}"),
            &format!("--sopin={so_pin}"),
        ]);
    }

    /// A key generated in the TPM: `algorithm` is `ecc256`, `ecc384`, `rsa2048` or
    /// `hmac:sha256`. tpm2_ptool stores `id` as given, in ASCII (`--id=01` is CKA_ID `3031`,
    /// so the URI says `id=01`).
    pub fn add_key(&self, token: &str, pin: &str, key_label: &str, id: &str, algorithm: &str) {
        self.ptool(&[
            "addkey",
            &format!("--algorithm={algorithm}"),
            &format!("--label={token}"),
            &format!("--key-label={key_label}"),
            &format!("--id={id}"),
            &format!("--userpin={pin}"),
        ]);
    }

    /// An HMAC-SHA256 key with a known value, imported under the store's primary key
    /// (0x81000001) with tpm2_import and linked into the token with `tpm2_ptool link`
    /// (tpm2-pkcs11 refuses C_CreateObject for secret keys). Only for tests that compare
    /// with a software HMAC: a real device's key is generated in the TPM.
    pub fn import_hmac(&self, token: &str, pin: &str, key_label: &str, id: &str, key: &[u8]) {
        let kf = self.dir.join(format!("{key_label}.bin"));
        std::fs::write(&kf, key).unwrap();
        let (pub_f, priv_f) = (format!("{key_label}.pub"), format!("{key_label}.priv"));
        self.run(
            "tpm2_import",
            &[
                "-C",
                "0x81000001",
                "-G",
                "hmac",
                "-g",
                "sha256",
                "-i",
                &kf.display().to_string(),
                "-u",
                &pub_f,
                "-r",
                &priv_f,
                "-p",
                "key-auth",
            ],
        );
        std::fs::remove_file(&kf).unwrap();
        self.ptool(&[
            "link",
            &format!("--label={token}"),
            &format!("--key-label={key_label}"),
            &format!("--id={id}"),
            &format!("--userpin={pin}"),
            "--auth=key-auth",
            &pub_f,
            &priv_f,
        ]);
    }

    /// The URI of `object` in `token`, with the module and the PIN.
    pub fn uri(&self, token: &str, object: &str, id: &str, pin: &str) -> String {
        format!(
            "pkcs11:token={token};object={object};id={id}?module-path={TPM2_MODULE}&pin-value={pin}"
        )
    }

    /// The logs of swtpm, dbus-daemon and tpm2-abrmd (for failure messages).
    pub fn logs(&self) -> String {
        ["swtpm", "dbus-daemon", "tpm2-abrmd"]
            .iter()
            .map(|n| {
                let p = self.dir.join(format!("{n}.log"));
                format!(
                    "--- {n}:\n{}",
                    std::fs::read_to_string(&p).unwrap_or_default()
                )
            })
            .collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        // Stop only the processes this fixture started, newest first.
        while let Some((_, mut c)) = self.children.pop() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
