//! The C side under AddressSanitizer + UndefinedBehaviorSanitizer (gcc
//! `-fsanitize=address,undefined`, leak detection on) and under valgrind
//! (`--leak-check=full`, definite and indirect leaks are errors): the C
//! examples (built with CMake, sanitizer flags via `CMAKE_C_FLAGS`) and
//! `tests/c/ffi_misuse.c` (every exported function under NULL, empty,
//! non-UTF-8 and huge inputs, then registrations, cancel from a pthread, step
//! API, lookup, a refused registration and the log callback) against the
//! emulator.
//!
//! Links the release `libdps.a` (`.ci/build-release`, shared with the other
//! C tests); the Rust code itself is not instrumented, but ASan/LSan and
//! valgrind intercept every allocation, so leaks, double frees and overflows
//! of memory crossing the boundary are caught. Needs gcc, cmake, valgrind.
//! `tests/c/valgrind.supp` suppresses only the known false positive of
//! ring's AES-GCM assembly (see the file); the summary line printed by the
//! test shows how many reports it suppressed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dps_emulator::pki;
use dps_test_support::*;

const SAN_FLAGS: &str =
    "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g";

/// `target/release` (or `DPS_SAN_LIB_DIR`, e.g. `target/debug`, to test a
/// library built from the working tree without touching the shared release).
fn release_dir() -> PathBuf {
    dps_test_support::release_dir(
        Some("DPS_SAN_LIB_DIR"),
        "run .ci/build-release first (or set DPS_SAN_LIB_DIR)",
    )
}

const NATIVE_LIBS: [&str; 7] = [
    "-lc",
    "-lm",
    "-lrt",
    "-lpthread",
    "-lgcc_s",
    "-lutil",
    "-ldl",
];

/// Compiles tests/c/ffi_misuse.c against the release library.
fn build_misuse(out: &Path, flags: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cc = Command::new("gcc");
    cc.args([
        "-std=c99",
        "-D_POSIX_C_SOURCE=200809L",
        "-Wall",
        "-Wextra",
        "-Werror",
    ])
    .args(flags.split_whitespace())
    .arg(format!("-I{}", src.join("include").display()))
    .arg(src.join("tests/c/ffi_misuse.c"))
    .arg(release_dir().join("libdps.a"))
    .args(NATIVE_LIBS)
    .arg("-o")
    .arg(out);
    check(&mut cc);
}

struct Env {
    emu: dps_emulator::Emulator,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn setup(dir: &Path) -> Env {
    std::fs::create_dir_all(dir).unwrap();
    let leaf = pki::self_signed_device("san-x509-device");
    let emu = emulator(&format!(
        r#"
[[enrollments]]
registration_id = "slow-dev"
attestation = "symmetric_key"
primary_key = "{KEY}"
faults = [{{ on = "register", status = 429, retry_after = "30" }}]
[[enrollments]]
registration_id = "san-x509-device"
attestation = "x509"
thumbprint = "{}"
"#,
        leaf.sha256_thumbprint
    ));
    let ca = dir.join("emulator-ca.pem");
    std::fs::write(&ca, emu.ca_pem()).unwrap();
    let cert = dir.join("leaf.pem");
    let key = dir.join("leaf.key");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    Env { emu, ca, cert, key }
}

fn env_cmd(exe: &Path, env: &Env) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DPS_ID_SCOPE", SCOPE)
        .env("DPS_ENDPOINT", format!("localhost:{}", env.emu.port()))
        .env("DPS_CA_FILE", &env.ca)
        .env("DPS_SYMMETRIC_KEY", KEY)
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:halt_on_error=1:abort_on_error=0",
        )
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    cmd
}

fn assert_clean(what: &str, o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success()
            && !err.contains("AddressSanitizer")
            && !err.contains("LeakSanitizer")
            && !err.contains("runtime error"),
        "{what}: exit {:?}\nstdout: {}\nstderr: {err}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn c_code_under_address_and_undefined_behaviour_sanitizers() {
    let base = target_dir().join("c-tests/asan");
    let env = setup(&base.join("files"));

    // The C examples, built by CMake with the sanitizer flags.
    let build = base.join("build");
    check(
        Command::new("cmake")
            .args(["-S", env!("CARGO_MANIFEST_DIR"), "-B"])
            .arg(&build)
            .arg(format!("-DDPS_LIB_DIR={}", release_dir().display()))
            .arg("-DCMAKE_BUILD_TYPE=Debug")
            .arg(format!("-DCMAKE_C_FLAGS={SAN_FLAGS}"))
            .arg(format!("-DCMAKE_EXE_LINKER_FLAGS={SAN_FLAGS}")),
    );
    check(
        Command::new("cmake")
            .arg("--build")
            .arg(&build)
            .args(["-j", "2"]),
    );
    let ex = |name: &str| build.join("c-examples").join(name);
    let nm = check(Command::new("nm").arg(ex("register_symmetric_key")));
    assert!(
        String::from_utf8_lossy(&nm.stdout).contains("__asan_init"),
        "the examples are not instrumented"
    );

    let o = env_cmd(&ex("register_symmetric_key"), &env)
        .env("DPS_REGISTRATION_ID", "dev-sym")
        .output()
        .unwrap();
    assert_clean("register_symmetric_key", &o);
    let o = env_cmd(&ex("register_symmetric_key"), &env)
        .env("DPS_REGISTRATION_ID", "san-group-device")
        .env_remove("DPS_SYMMETRIC_KEY")
        .env("DPS_GROUP_KEY", GROUP_KEY)
        .env("DPS_PAYLOAD", r#"{"fw":"1.0"}"#)
        .output()
        .unwrap();
    assert_clean("register_symmetric_key (group)", &o);
    let o = env_cmd(&ex("register_x509"), &env)
        .env("DPS_CERT_FILE", &env.cert)
        .env("DPS_KEY_FILE", &env.key)
        .output()
        .unwrap();
    assert_clean("register_x509", &o);
    let o = env_cmd(&ex("step_superloop"), &env)
        .env("DPS_REGISTRATION_ID", "dev-sym")
        .output()
        .unwrap();
    assert_clean("step_superloop", &o);
    // A failing run exits 1 but must still be clean.
    let o = env_cmd(&ex("register_symmetric_key"), &env)
        .env("DPS_REGISTRATION_ID", "dev-sym")
        .env(
            "DPS_SYMMETRIC_KEY",
            "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=",
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("Sanitizer") && !err.contains("runtime error"),
        "{err}"
    );

    // The misuse program.
    let exe = base.join("ffi_misuse");
    build_misuse(&exe, SAN_FLAGS);
    let o = env_cmd(&exe, &env).output().unwrap();
    assert_clean("ffi_misuse", &o);
    println!(
        "ASan+UBSan ffi_misuse: {}",
        String::from_utf8_lossy(&o.stdout).trim()
    );
}

#[test]
fn c_code_under_valgrind_has_no_leaks_or_errors() {
    let base = target_dir().join("c-tests/valgrind");
    let env = setup(&base.join("files"));
    let exe = base.join("ffi_misuse");
    build_misuse(&exe, "-O1 -g");
    let mut cmd = env_cmd(Path::new("valgrind"), &env);
    cmd.args([
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect",
        "--show-leak-kinds=definite,indirect",
        "--error-exitcode=99",
    ])
    .arg(format!(
        "--suppressions={}/tests/c/valgrind.supp",
        env!("CARGO_MANIFEST_DIR")
    ))
    .arg(&exe);
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "valgrind found problems (exit {:?}):\nstdout: {}\nstderr: {err}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout)
    );
    let summary: Vec<&str> = err
        .lines()
        .filter(|l| {
            l.contains("ERROR SUMMARY")
                || l.contains("definitely lost:")
                || l.contains("indirectly lost:")
        })
        .collect();
    assert!(
        summary
            .iter()
            .any(|l| l.contains("ERROR SUMMARY: 0 errors")),
        "{err}"
    );
    println!(
        "valgrind ffi_misuse: {}\n{}",
        String::from_utf8_lossy(&o.stdout).trim(),
        summary.join("\n")
    );
}
