//! Test helpers shared by the workspace's test suites (the library's, the CLI's, the
//! emulator's): the standard emulator of `tests/fixtures/emulator.toml`, the test keys, a raw
//! HTTPS client for the emulator, a CONNECT proxy and raw TLS servers, temporary directories,
//! the target and release directories and the CMake build of the C examples.
//!
//! Not published; nothing here is for production use (the keys are public test keys).

#[cfg(feature = "client")]
mod client;
mod net;
mod raw;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use dps_emulator::{Config, Emulator};

#[cfg(feature = "client")]
pub use client::*;
pub use net::*;
pub use raw::*;

/// The id scope of the standard emulator (`id_scope` of the fixture).
pub const SCOPE: &str = "0ne00000001";
/// Base64 of bytes 0x00..0x1f: the key of `dev-sym` and the other individual enrollments.
pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// A valid key no standard enrollment but `dev-other` has (the wrong key; bytes 0x1f..0x00).
pub const OTHER_KEY: &str = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
/// The emulator tests' name for [`OTHER_KEY`] (a second key of their own `dev-sym`).
pub const KEY2: &str = OTHER_KEY;
/// The V1 group key of PROTOCOL.md section 7: the key of `sym-group`.
pub const GROUP_KEY: &str =
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
/// The api-version the raw client sends (the library's default).
pub const API_VERSION: &str = "2021-06-01";

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lives in the workspace root")
        .to_path_buf()
}

/// `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// `tests/fixtures/x509` (the committed X.509 fixtures of `tests/fixtures/make.sh`).
pub fn x509_fixtures() -> PathBuf {
    fixtures_dir().join("x509")
}

/// `tests/fixtures/emulator.toml`: the standard emulator configuration.
pub fn fixture_path() -> PathBuf {
    fixtures_dir().join("emulator.toml")
}

fn fixture_table() -> toml::Table {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut t: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // relative paths are relative to the fixture: make them absolute for a config built here
    if let Some(toml::Value::Array(es)) = t.get_mut("enrollments") {
        for e in es {
            if let Some(toml::Value::String(f)) = e.get_mut("ca_file") {
                *f = fixtures_dir().join(&*f).display().to_string();
            }
        }
    }
    t
}

fn enrollment_id(e: &toml::Value) -> Option<String> {
    let id = e.get("registration_id").or_else(|| e.get("group_id"))?;
    Some(format!(
        "{}:{}",
        e.get("group_id").is_some(),
        id.as_str()?.to_ascii_lowercase()
    ))
}

/// The standard configuration with `extra` TOML merged in: `extra`'s enrollments come first and
/// replace a standard enrollment with the same id, its hubs are added, its other keys and
/// tables replace the standard ones.
pub fn standard_toml(extra: &str) -> String {
    let mut t = fixture_table();
    let extra: toml::Table = extra
        .parse()
        .unwrap_or_else(|e| panic!("extra TOML: {e}\n{extra}"));
    for (k, v) in extra {
        match (k.as_str(), v) {
            ("enrollments", toml::Value::Array(mut mine)) => {
                let ids: Vec<_> = mine.iter().filter_map(enrollment_id).collect();
                if let Some(toml::Value::Array(std)) = t.remove("enrollments") {
                    mine.extend(
                        std.into_iter()
                            .filter(|e| enrollment_id(e).is_none_or(|id| !ids.contains(&id))),
                    );
                }
                t.insert(k, toml::Value::Array(mine));
            }
            ("hubs", toml::Value::Array(more)) => match t.get_mut("hubs") {
                Some(toml::Value::Array(hubs)) => hubs.extend(more),
                _ => {
                    t.insert(k, toml::Value::Array(more));
                }
            },
            (_, v) => {
                t.insert(k, v);
            }
        }
    }
    toml::to_string(&t).expect("TOML serialises")
}

/// The fixture's settings and hubs without its enrollments (for tests that define their own).
pub fn base_toml() -> String {
    let mut t = fixture_table();
    t.remove("enrollments");
    format!("{}\n", toml::to_string(&t).expect("TOML serialises"))
}

/// An `[[enrollments]]` table for an individual symmetric-key enrollment `registration_id` with
/// [`KEY`], followed by `more` (further fields of the table, e.g. `faults = [...]`).
pub fn sym_enrollment(registration_id: &str, more: &str) -> String {
    format!(
        "\n[[enrollments]]\nregistration_id = \"{registration_id}\"\nattestation = \"symmetric_key\"\nprimary_key = \"{KEY}\"\n{more}\n"
    )
}

/// Starts an emulator with this TOML configuration.
pub fn start(toml: &str) -> Emulator {
    let cfg = Config::from_toml_str(toml).unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
    Emulator::start(cfg).expect("emulator starts")
}

/// Starts the standard emulator with `extra` merged in (see [`standard_toml`]).
pub fn emulator(extra: &str) -> Emulator {
    start(&standard_toml(extra))
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<temp>/<prefix>-<pid>-<n>`, empty.
    pub fn new(prefix: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        TempDir(p)
    }
    pub fn dir(&self) -> &Path {
        &self.0
    }
    /// Writes `content` to `name` inside; returns its path.
    pub fn file(&self, name: &str, content: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p.to_str().expect("UTF-8 temp path").to_owned()
    }
    /// The path of `name` inside (not created).
    pub fn path(&self, name: &str) -> String {
        self.0
            .join(name)
            .to_str()
            .expect("UTF-8 temp path")
            .to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// `$<env_override>` if set, else `target/release`; it must hold `libdps.a` (`hint` says how to
/// build it).
pub fn release_dir(env_override: Option<&str>, hint: &str) -> PathBuf {
    let dir = env_override
        .and_then(std::env::var_os)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release"));
    assert!(
        dir.join("libdps.a").exists(),
        "{}/libdps.a is missing: {hint}",
        dir.display()
    );
    dir
}

/// Runs `cmd`; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`; panics with its output unless it succeeds.
pub fn check(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Configures (Release, linking `lib_dir`'s `libdps.a`) and builds the project's CMake tree
/// into `dir`, with `extra` configure arguments.
pub fn cmake_build(dir: &Path, lib_dir: &Path, extra: &[&str]) {
    let lib = format!("-DDPS_LIB_DIR={}", lib_dir.display());
    check(
        Command::new("cmake")
            .arg("-S")
            .arg(repo_root())
            .arg("-B")
            .arg(dir)
            .arg(&lib)
            .args(["-DCMAKE_BUILD_TYPE=Release"])
            .args(extra),
    );
    check(
        Command::new("cmake")
            .arg("--build")
            .arg(dir)
            .args(["-j", "2"]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_value(kind: &str, id: &str, key: &str) -> String {
        let t = fixture_table();
        let es = t["enrollments"].as_array().unwrap();
        let e = es
            .iter()
            .find(|e| e.get(kind).and_then(|v| v.as_str()) == Some(id))
            .unwrap_or_else(|| panic!("{kind} {id} not in the fixture"));
        e[key].as_str().unwrap().to_string()
    }

    #[test]
    fn the_constants_are_the_fixture_values() {
        assert_eq!(fixture_table()["id_scope"].as_str(), Some(SCOPE));
        assert_eq!(
            fixture_value("registration_id", "dev-sym", "primary_key"),
            KEY
        );
        assert_eq!(
            fixture_value("registration_id", "dev-other", "primary_key"),
            OTHER_KEY
        );
        assert_eq!(
            fixture_value("group_id", "sym-group", "primary_key"),
            GROUP_KEY
        );
    }

    #[test]
    fn the_fixture_thumbprints_match_the_certificates() {
        for (id, file) in [("x509-p256-device", "p256"), ("x509-rsa-device", "rsa")] {
            let read = |n: String| std::fs::read_to_string(x509_fixtures().join(n)).unwrap();
            let ca = dps_emulator::pki::TestCa::from_pem(
                &read(format!("{file}.cert.pem")),
                &read(format!("{file}.key.pem")),
            )
            .unwrap();
            assert_eq!(
                fixture_value("registration_id", id, "thumbprint"),
                ca.sha256_thumbprint(),
                "{id}"
            );
        }
    }

    #[test]
    fn the_standard_emulator_starts_and_extras_replace_by_id() {
        let cfg = Config::from_toml_str(&standard_toml(&format!(
            "[[enrollments]]\nregistration_id = \"DEV-SLOW\"\nattestation = \"symmetric_key\"\nprimary_key = \"{KEY}\"\n"
        )))
        .unwrap();
        let slow: Vec<_> = cfg
            .enrollments
            .iter()
            .filter(|e| e.id().eq_ignore_ascii_case("dev-slow"))
            .collect();
        assert_eq!(slow.len(), 1);
        assert!(slow[0].faults.is_empty(), "the extra one replaced it");
        assert_eq!(cfg.enrollments[0].id(), "DEV-SLOW", "extras come first");
        let emu = emulator("");
        assert_eq!(emu.id_scope(), SCOPE);
        assert!(
            emu.config()
                .enrollments
                .iter()
                .any(|e| e.id() == "x509-chain-group")
        );
        assert!(base_toml().contains("hub-b.azure-devices.net"));
        assert!(!base_toml().contains("enrollments"));
    }
}
