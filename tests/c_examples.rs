//! Builds the C examples with CMake against the release `libdps.a` and runs
//! them against the emulator; installs the package and builds a consumer
//! with `find_package(dps)` and with `pkg-config`.
//!
//! Needs `cargo build --release -p dps` first (the release build is shared
//! with the Python tests and the benchmarks) and `cmake`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dps_emulator::pki;
use dps_test_support::*;

fn release_dir() -> PathBuf {
    dps_test_support::release_dir(None, "run `cargo build --release -p dps` first")
}

/// Configures and builds the project (examples included) into `dir`.
fn cmake_build(dir: &Path, extra: &[&str]) {
    dps_test_support::cmake_build(dir, &release_dir(), extra);
}

#[test]
fn c_examples_register_against_the_emulator() {
    let build = target_dir().join("c-tests/build");
    cmake_build(&build, &[]);
    let tmp = target_dir().join("c-tests/files");
    std::fs::create_dir_all(&tmp).unwrap();

    let leaf = pki::self_signed_device("c-x509-device");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/x509");
    let root_pem = std::fs::read_to_string(fixtures.join("chain-root.cert.pem")).unwrap();
    let emu = emulator(&format!(
        r#"
[[enrollments]]
registration_id = "c-x509-device"
attestation = "x509"
thumbprint = "{}"
[[enrollments]]
group_id = "pfx-group"
attestation = "x509"
ca_pem = """{root_pem}"""
"#,
        leaf.sha256_thumbprint
    ));
    let ca = tmp.join("emulator-ca.pem");
    std::fs::write(&ca, emu.ca_pem()).unwrap();
    std::fs::write(tmp.join("leaf.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(tmp.join("leaf.key"), &leaf.key_pem).unwrap();

    let example = |name: &str, env: &[(&str, &str)]| {
        let mut cmd = Command::new(build.join("c-examples").join(name));
        cmd.env_clear()
            .env("DPS_ID_SCOPE", SCOPE)
            .env("DPS_ENDPOINT", format!("localhost:{}", emu.port()))
            .env("DPS_CA_FILE", &ca);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    };
    let stdout = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();

    let o = example(
        "register_symmetric_key",
        &[
            ("DPS_REGISTRATION_ID", "dev-sym"),
            ("DPS_SYMMETRIC_KEY", KEY),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&o),
        "assigned hub=hub-a.azure-devices.net device=dev-sym-device substatus=initialAssignment\n"
    );

    let o = example(
        "register_symmetric_key",
        &[
            ("DPS_REGISTRATION_ID", "c-group-device"),
            ("DPS_GROUP_KEY", GROUP_KEY),
            ("DPS_PAYLOAD", r#"{"fw":"1.0"}"#),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).contains("device=c-group-device")
            && stdout(&o).contains(r#"payload={"fw":"1.0"}"#),
        "{o:?}"
    );

    let cert = tmp.join("leaf.pem");
    let key = tmp.join("leaf.key");
    let o = example(
        "register_x509",
        &[
            ("DPS_CERT_FILE", cert.to_str().unwrap()),
            ("DPS_KEY_FILE", key.to_str().unwrap()),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("device=c-x509-device"), "{o:?}");

    let pfx = fixtures.join("chain.p12");
    let o = example(
        "register_pfx",
        &[
            ("DPS_PFX_FILE", pfx.to_str().unwrap()),
            ("DPS_PFX_PASSWORD", "fixture-pass"),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("device=x509-chain-device"), "{o:?}");
    let o = example(
        "register_pfx",
        &[
            ("DPS_PFX_FILE", pfx.to_str().unwrap()),
            ("DPS_PFX_PASSWORD", "wrong"),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "wrong PFX password is its own error: {o:?}"
    );

    let o = example(
        "step_superloop",
        &[
            ("DPS_REGISTRATION_ID", "dev-sym"),
            ("DPS_SYMMETRIC_KEY", KEY),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("after 3 steps and 4 events"), "{o:?}");

    // A wrong key: the error line carries the DPS error code and exit code 1.
    let o = example(
        "register_symmetric_key",
        &[
            ("DPS_REGISTRATION_ID", "dev-sym"),
            (
                "DPS_SYMMETRIC_KEY",
                "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=",
            ),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("errorCode 401002"),
        "{o:?}"
    );
    // Six registrations reached the server (the wrong PFX password failed before any traffic).
    assert_eq!(
        emu.counters().tls_handshakes,
        6,
        "one TLS handshake per registration"
    );
}

fn sha256_hex(cert_pem: &str) -> String {
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .expect("a PEM certificate");
    ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// `register_signer.c`: the key is read only by another process (`openssl pkeyutl`, started
/// by the callback for each signature), for ECDSA P-256, P-384 and RSA-2048 (TLS 1.3: PSS);
/// a signer holding another key is refused before any traffic.
#[test]
fn c_signer_example_registers_with_a_key_held_by_another_process() {
    let build = target_dir().join("c-tests/build-signer");
    cmake_build(&build, &[]);
    let tmp = target_dir().join("c-tests/files-signer");
    std::fs::create_dir_all(&tmp).unwrap();
    let openssl = Command::new("openssl").arg("version").output();
    assert!(
        openssl.is_ok_and(|o| o.status.success()),
        "prerequisite missing: the openssl command (apt-get install openssl; .ci/run does)"
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/x509");
    let leaf = pki::self_signed_device("c-signer-p256");
    std::fs::write(tmp.join("p256.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(tmp.join("p256.key"), &leaf.key_pem).unwrap();
    let p256 = ("c-signer-p256", tmp.join("p256.pem"), tmp.join("p256.key"));
    let p384 = (
        "x509-p384-device",
        fixtures.join("p384.cert.pem"),
        fixtures.join("p384.sec1.key.pem"),
    );
    let rsa = (
        "x509-rsa-device",
        fixtures.join("rsa.cert.pem"),
        fixtures.join("rsa.key.pem"),
    );
    let mut extra = String::new();
    for (id, cert, _) in [&p256, &p384, &rsa] {
        let hex = sha256_hex(&std::fs::read_to_string(cert).unwrap());
        extra.push_str(&format!(
            "[[enrollments]]\nregistration_id = \"{id}\"\nattestation = \"x509\"\nthumbprint = \"{hex}\"\n"
        ));
    }
    let emu = emulator(&extra);
    let ca = tmp.join("emulator-ca.pem");
    std::fs::write(&ca, emu.ca_pem()).unwrap();
    let example = |cert: &Path, key: &Path| {
        let mut cmd = Command::new(build.join("c-examples/register_signer"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DPS_ID_SCOPE", SCOPE)
            .env("DPS_ENDPOINT", format!("localhost:{}", emu.port()))
            .env("DPS_CA_FILE", &ca)
            .env("DPS_CERT_FILE", cert)
            .env("DPS_SIGNER_KEY_FILE", key);
        run(&mut cmd)
    };
    for (id, cert, key) in [&p256, &p384, &rsa] {
        let o = example(cert, key);
        assert!(o.status.success(), "{id}: {o:?}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&format!("device={id}")),
            "{id}: {o:?}"
        );
    }
    // The P-256 certificate, signed by another key: KEY_MISMATCH before any traffic.
    let before = emu.counters().tls_handshakes;
    let o = example(&p256.1, &fixtures.join("p256.key.pem"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("configuration"), "{o:?}");
    assert!(err.to_lowercase().contains("key"), "{o:?}");
    // A signing process that fails (no such key file): the callback's own status.
    let o = example(&p256.1, &tmp.join("missing.key"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("returned 13"),
        "the callback's return value is quoted: {o:?}"
    );
    assert_eq!(
        emu.counters().tls_handshakes,
        before,
        "no traffic after a refused signer"
    );
}

#[test]
fn installed_package_works_with_find_package_and_pkg_config() {
    let base = target_dir().join("c-tests/install");
    let _ = std::fs::remove_dir_all(&base);
    let build = base.join("build");
    let prefix = base.join("prefix");
    cmake_build(&build, &["-DDPS_BUILD_EXAMPLES=OFF"]);
    check(
        Command::new("cmake")
            .arg("--install")
            .arg(&build)
            .arg("--prefix")
            .arg(&prefix),
    );
    assert!(prefix.join("include/dps.h").exists());

    // A consumer: checks the header/library versions agree and derives a key.
    let consumer = base.join("consumer");
    std::fs::create_dir_all(&consumer).unwrap();
    std::fs::write(
        consumer.join("main.c"),
        r#"#include <stdio.h>
#include <string.h>
#include "dps.h"
int main(void) {
    char key[64];
    size_t len = 0;
    if (dps_version_number() != DPS_VERSION_NUMBER) return 1;
    if (!DPS_VERSION_AT_LEAST(0, 1, 0)) return 2;
    if (dps_derive_device_key("8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
                              "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", key, sizeof key, &len) != DPS_OK) return 3;
    puts(key);
    return strcmp(key, "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=") == 0 ? 0 : 4;
}
"#,
    )
    .unwrap();
    std::fs::write(
        consumer.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.16)\nproject(consumer C)\nfind_package(dps 0.1 REQUIRED)\n\
         add_executable(consumer main.c)\ntarget_link_libraries(consumer PRIVATE dps::dps)\n",
    )
    .unwrap();
    let cbuild = base.join("consumer-build");
    check(
        Command::new("cmake")
            .arg("-S")
            .arg(&consumer)
            .arg("-B")
            .arg(&cbuild)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())),
    );
    check(Command::new("cmake").arg("--build").arg(&cbuild));
    let out = check(&mut Command::new(cbuild.join("consumer")));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=\n"
    );

    // pkg-config --static, as a plain Makefile user would link.
    let pc = check(
        Command::new("pkg-config")
            .args(["--static", "--cflags", "--libs", "dps"])
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")),
    );
    let flags = String::from_utf8_lossy(&pc.stdout).into_owned();
    assert!(
        flags.contains("-ldps") && flags.contains("-lpthread"),
        "{flags}"
    );
    let exe = base.join("consumer-pc");
    let mut gcc = Command::new("cc");
    gcc.arg(consumer.join("main.c"))
        .arg("-o")
        .arg(&exe)
        .args(flags.split_whitespace())
        .arg("-Wl,--gc-sections");
    check(&mut gcc);
    // `-ldps` picks the shared library when both are installed: its soname
    // (libdps.so.0.1) is found through the install prefix.
    check(Command::new(&exe).env("LD_LIBRARY_PATH", prefix.join("lib")));
}

#[test]
fn native_static_libs_match_what_we_ship() {
    // rustc's list for this target, saved by the release build step of .ci/run
    // (`cargo rustc --release ... -- --print native-static-libs`); the CMake
    // target and dps.pc must carry each library.
    let saved = release_dir().join("native-static-libs.txt");
    let text = std::fs::read_to_string(&saved).unwrap_or_else(|_| {
        panic!(
            "{} is missing: build the release library with .ci/build-release",
            saved.display()
        )
    });
    let line = text
        .lines()
        .find(|l| l.contains("native-static-libs:"))
        .expect("rustc printed the list");
    let cmake =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("CMakeLists.txt"))
            .unwrap();
    let shipped = cmake
        .lines()
        .find(|l| l.starts_with("set(DPS_NATIVE_LIBS"))
        .unwrap();
    for lib in line.split_whitespace().filter_map(|f| f.strip_prefix("-l")) {
        assert!(
            shipped.split([' ', '(', ')']).any(|w| w == lib),
            "-l{lib} from rustc is missing in CMakeLists.txt: {shipped}"
        );
    }
}

#[test]
fn header_compiles_as_c99_c11_and_cxx17() {
    let dir = target_dir().join("c-tests/header");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("use_header.c");
    std::fs::write(&src, "#include \"dps.h\"\nint main(void) { return dps_version_number() == DPS_VERSION_NUMBER ? 0 : 1; }\n").unwrap();
    let include = format!("-I{}/include", env!("CARGO_MANIFEST_DIR"));
    for std in ["-std=c99", "-std=c11"] {
        check(
            Command::new("cc")
                .args([
                    std,
                    "-Wall",
                    "-Wextra",
                    "-Wpedantic",
                    "-Wstrict-prototypes",
                    "-Werror",
                    "-fsyntax-only",
                    &include,
                ])
                .arg(&src),
        );
    }
    check(
        Command::new("c++")
            .args([
                "-x",
                "c++",
                "-std=c++17",
                "-Wall",
                "-Wextra",
                "-Wpedantic",
                "-Werror",
                "-fsyntax-only",
                &include,
            ])
            .arg(&src),
    );
}
