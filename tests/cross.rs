//! ARM builds under emulation: the C examples cross-linked for aarch64 and
//! armv7 (by `.ci/cross-test`, with the README's link line) register against
//! the x86_64 emulator of this process under qemu-user; and CMake with a
//! toolchain file builds the examples for aarch64 from
//! `target/<triple>/release`.
//!
//! These tests need the cross toolchain (`.ci/cross-setup`) and the artifacts
//! of `.ci/cross-test`, so they are `#[ignore]`d in a plain `cargo test` (and
//! reported as ignored); `.ci/cross-test` runs them with `--ignored` and
//! `DPS_CROSS_TARGETS` set. Run that way without the artifacts, they fail and
//! say what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dps_emulator::pki;
use dps_test_support::*;

const WHY: &str = "needs the ARM cross toolchain and qemu-user: run .ci/cross-test";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where `.ci/cross-test` builds (`DPS_CROSS_TARGET_DIR`, default `target/cross`).
fn cross_dir() -> PathBuf {
    std::env::var_os("DPS_CROSS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/cross"))
}

fn targets() -> Vec<String> {
    let list = std::env::var("DPS_CROSS_TARGETS").unwrap_or_else(|_| {
        panic!("DPS_CROSS_TARGETS is not set (e.g. \"aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf\"): {WHY}")
    });
    let v: Vec<String> = list.split_whitespace().map(str::to_owned).collect();
    assert!(!v.is_empty(), "DPS_CROSS_TARGETS is empty: {WHY}");
    v
}

/// The qemu-user command line for `triple`, as `.ci/cross-env` exports it for cargo.
fn runner(triple: &str) -> Vec<String> {
    let var = format!(
        "CARGO_TARGET_{}_RUNNER",
        triple.to_uppercase().replace('-', "_")
    );
    let r = std::env::var(&var).unwrap_or_else(|_| panic!("{var} is not set: {WHY}"));
    let v: Vec<String> = r.split_whitespace().map(str::to_owned).collect();
    assert!(!v.is_empty(), "{var} is empty");
    v
}

/// ELF e_machine of the file: proves the binary is really built for the target.
fn elf_machine(path: &Path) -> u16 {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e} ({WHY})", path.display()));
    assert_eq!(&b[..4], b"\x7fELF", "{} is not an ELF file", path.display());
    u16::from_le_bytes([b[18], b[19]])
}

fn expected_machine(triple: &str) -> u16 {
    match triple.split('-').next().unwrap() {
        "aarch64" => 0xb7,
        a if a.starts_with("arm") => 0x28,
        "x86_64" => 0x3e,
        other => panic!("no ELF machine known for {other}"),
    }
}

fn check(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Setup {
    emu: dps_emulator::Emulator,
    files: PathBuf,
}

fn setup(name: &str) -> Setup {
    let leaf = pki::self_signed_device("cross-x509-device");
    let fixtures = root().join("tests/fixtures/x509");
    let root_pem = std::fs::read_to_string(fixtures.join("chain-root.cert.pem")).unwrap();
    let emu = emulator(&format!(
        r#"
[[enrollments]]
registration_id = "cross-x509-device"
attestation = "x509"
thumbprint = "{}"
[[enrollments]]
group_id = "pfx-group"
attestation = "x509"
ca_pem = """{root_pem}"""
"#,
        leaf.sha256_thumbprint
    ));
    let files = cross_dir().join("test-files").join(name);
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("emulator-ca.pem"), emu.ca_pem()).unwrap();
    std::fs::write(files.join("leaf.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(files.join("leaf.key"), &leaf.key_pem).unwrap();
    Setup { emu, files }
}

/// Runs `exe` of `triple` under qemu with the settings of the C examples.
fn run_example(s: &Setup, triple: &str, exe: &Path, env: &[(&str, &str)]) -> Output {
    let r = runner(triple);
    let mut cmd = Command::new(&r[0]);
    cmd.args(&r[1..]).arg(exe).env_clear();
    cmd.env("DPS_ID_SCOPE", SCOPE)
        .env("DPS_ENDPOINT", format!("localhost:{}", s.emu.port()))
        .env("DPS_CA_FILE", s.files.join("emulator-ca.pem"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "needs the ARM cross toolchain and qemu-user: run .ci/cross-test"]
fn cross_linked_c_examples_register_under_qemu() {
    let s = setup("examples");
    let pfx = root().join("tests/fixtures/x509/chain.p12");
    let (cert, key) = (s.files.join("leaf.pem"), s.files.join("leaf.key"));
    let mut registrations = 0;
    for t in targets() {
        let dir = cross_dir().join(&t).join("c-examples");
        let exe = |n: &str| {
            let p = dir.join(n);
            assert_eq!(
                elf_machine(&p),
                expected_machine(&t),
                "{} is not a {t} binary",
                p.display()
            );
            p
        };
        let o = run_example(
            &s,
            &t,
            &exe("register_symmetric_key"),
            &[
                ("DPS_REGISTRATION_ID", "dev-sym"),
                ("DPS_SYMMETRIC_KEY", KEY),
            ],
        );
        assert!(o.status.success(), "{t}: {o:?}");
        assert_eq!(
            stdout(&o),
            "assigned hub=hub-a.azure-devices.net device=dev-sym-device substatus=initialAssignment\n",
            "{t}"
        );
        let o = run_example(
            &s,
            &t,
            &exe("register_symmetric_key"),
            &[
                ("DPS_REGISTRATION_ID", "cross-group-device"),
                ("DPS_GROUP_KEY", GROUP_KEY),
                ("DPS_PAYLOAD", r#"{"board":"arm"}"#),
            ],
        );
        assert!(o.status.success(), "{t}: {o:?}");
        assert!(
            stdout(&o).contains("device=cross-group-device")
                && stdout(&o).contains(r#"payload={"board":"arm"}"#),
            "{t}: {o:?}"
        );
        let o = run_example(
            &s,
            &t,
            &exe("register_x509"),
            &[
                ("DPS_CERT_FILE", cert.to_str().unwrap()),
                ("DPS_KEY_FILE", key.to_str().unwrap()),
            ],
        );
        assert!(o.status.success(), "{t}: {o:?}");
        assert!(
            stdout(&o).contains("device=cross-x509-device"),
            "{t}: {o:?}"
        );
        let o = run_example(
            &s,
            &t,
            &exe("register_pfx"),
            &[
                ("DPS_PFX_FILE", pfx.to_str().unwrap()),
                ("DPS_PFX_PASSWORD", "fixture-pass"),
            ],
        );
        assert!(o.status.success(), "{t}: {o:?}");
        assert!(
            stdout(&o).contains("device=x509-chain-device"),
            "{t}: {o:?}"
        );
        let o = run_example(
            &s,
            &t,
            &exe("register_pfx"),
            &[
                ("DPS_PFX_FILE", pfx.to_str().unwrap()),
                ("DPS_PFX_PASSWORD", "wrong"),
            ],
        );
        assert_eq!(o.status.code(), Some(3), "{t}: wrong PFX password: {o:?}");
        registrations += 4;
        eprintln!(
            "{t}: symmetric key, group key + payload, X.509 PEM, .pfx: registered under qemu"
        );
    }
    assert_eq!(
        s.emu.counters().tls_handshakes,
        registrations,
        "one TLS handshake per registration"
    );
}

#[test]
#[ignore = "needs the ARM cross toolchain and qemu-user: run .ci/cross-test"]
fn cmake_with_a_toolchain_file_builds_the_examples_for_aarch64() {
    let t = "aarch64-unknown-linux-gnu";
    assert!(
        targets().iter().any(|x| x == t),
        "DPS_CROSS_TARGETS lacks {t}"
    );
    let build = cross_dir().join("cmake-aarch64");
    let _ = std::fs::remove_dir_all(&build);
    let cargo = std::env::var("DPS_CARGO").unwrap_or_else(|_| "/usr/bin/cargo".into());
    let rustc = std::env::var("DPS_RUSTC").unwrap_or_else(|_| "/usr/bin/rustc".into());
    let configure = check(
        Command::new("cmake")
            .arg("-S")
            .arg(root())
            .arg("-B")
            .arg(&build)
            .arg(format!(
                "-DCMAKE_TOOLCHAIN_FILE={}",
                root()
                    .join("cmake/toolchains/aarch64-linux-gnu.cmake")
                    .display()
            ))
            .arg(format!("-DDPS_CARGO={cargo}"))
            .arg(format!("-DDPS_RUSTC={rustc}"))
            .arg("-DCMAKE_BUILD_TYPE=Release")
            // The cross build of .ci/cross-test: cargo finds the library up to date.
            .env("CARGO_TARGET_DIR", cross_dir()),
    );
    let lib_dir = cross_dir().join(t).join("release");
    assert!(
        stdout(&configure).contains(&format!(
            "Rust target '{t}' (empty = host), library from {}",
            lib_dir.display()
        )),
        "the target comes from the C compiler:\n{}",
        stdout(&configure)
    );
    check(
        Command::new("cmake")
            .arg("--build")
            .arg(&build)
            .args(["-j", "2"])
            .env("CARGO_TARGET_DIR", cross_dir()),
    );
    // The examples link target/<triple>/release/libdps.a, not the host's target/release.
    let link = std::fs::read_to_string(
        build.join("c-examples/CMakeFiles/register_symmetric_key.dir/link.txt"),
    )
    .expect("CMake's link command");
    assert!(
        link.contains(&format!("{}/libdps.a", lib_dir.display())),
        "{link}"
    );
    let exe = build.join("c-examples/register_symmetric_key");
    assert_eq!(elf_machine(&exe), 0xb7, "an aarch64 binary");

    let s = setup("cmake");
    let o = run_example(
        &s,
        t,
        &exe,
        &[
            ("DPS_REGISTRATION_ID", "dev-sym"),
            ("DPS_SYMMETRIC_KEY", KEY),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("device=dev-sym-device"), "{o:?}");
    let o = run_example(
        &s,
        t,
        &build.join("c-examples/step_superloop"),
        &[
            ("DPS_REGISTRATION_ID", "dev-sym"),
            ("DPS_SYMMETRIC_KEY", KEY),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("after 3 steps"), "{o:?}");
}

const CONSUMER_C: &str = r#"#include <stdio.h>
#include <string.h>
#include "dps.h"
int main(void) {
    char key[64];
    size_t len = 0;
    if (dps_version_number() != DPS_VERSION_NUMBER) return 1;
    if (dps_derive_device_key("8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
                              "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", key, sizeof key, &len) != DPS_OK) return 3;
    puts(key);
    return strcmp(key, "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=") == 0 ? 0 : 4;
}
"#;
const DERIVED: &str = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=\n";

/// Unpacks `target/dist/dps-<version>-<triple>.tar.gz` (written by `scripts/dist`) into `into`.
fn unpack_archive(triple: &str, into: &Path) -> PathBuf {
    let name = format!("dps-{}-{triple}", env!("CARGO_PKG_VERSION"));
    let archive = std::env::var_os("DPS_DIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/dist"))
        .join(format!("{name}.tar.gz"));
    assert!(
        archive.is_file(),
        "{} is missing: run scripts/dist {triple}",
        archive.display()
    );
    let _ = std::fs::remove_dir_all(into);
    std::fs::create_dir_all(into).unwrap();
    check(
        Command::new("tar")
            .arg("-C")
            .arg(into)
            .arg("-xzf")
            .arg(&archive),
    );
    let prefix = into.join(&name);
    for f in [
        "include/dps.h",
        "lib/libdps.a",
        "lib/pkgconfig/dps.pc",
        "lib/cmake/dps/dpsConfig.cmake",
        "lib/cmake/dps/dpsConfigVersion.cmake",
        "README.md",
    ] {
        assert!(prefix.join(f).is_file(), "{name} lacks {f}");
    }
    // The shared library: real file, soname link, development link.
    let so = prefix.join(format!("lib/libdps.so.{}", env!("CARGO_PKG_VERSION")));
    assert!(so.is_file(), "{name} lacks {}", so.display());
    let soname = if env!("CARGO_PKG_VERSION_MAJOR") == "0" {
        format!("libdps.so.0.{}", env!("CARGO_PKG_VERSION_MINOR"))
    } else {
        format!("libdps.so.{}", env!("CARGO_PKG_VERSION_MAJOR"))
    };
    for link in [soname.as_str(), "libdps.so"] {
        let p = prefix.join("lib").join(link);
        assert!(
            std::fs::symlink_metadata(&p)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false),
            "{name}: lib/{link} is not a symlink"
        );
    }
    let dynamic = check(Command::new("readelf").arg("-d").arg(&so));
    assert!(
        stdout(&dynamic).contains(&format!("Library soname: [{soname}]")),
        "{name}: soname of libdps.so:\n{}",
        stdout(&dynamic)
    );
    let readme = std::fs::read_to_string(prefix.join("README.md")).unwrap();
    assert!(readme.contains("-Wl,--gc-sections"), "{readme}");
    prefix
}

/// Builds the consumer against the unpacked archive `prefix` with find_package (CMake, static
/// dps::dps and dps::shared) and with pkg-config, for `triple`; returns the executables.
fn consume(triple: &str, prefix: &Path, work: &Path) -> Vec<(PathBuf, bool)> {
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("main.c"), CONSUMER_C).unwrap();
    std::fs::write(
        src.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.16)\nproject(consumer C)\nfind_package(dps 0.1 REQUIRED)\n\
         add_executable(consumer main.c)\ntarget_link_libraries(consumer PRIVATE dps::dps)\n\
         add_executable(consumer_shared main.c)\ntarget_link_libraries(consumer_shared PRIVATE dps::shared)\n",
    )
    .unwrap();
    let build = work.join("build");
    let mut cfg = Command::new("cmake");
    cfg.arg("-S")
        .arg(&src)
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()));
    let gcc = match triple {
        "x86_64-unknown-linux-gnu" => "cc".to_owned(),
        "aarch64-unknown-linux-gnu" => {
            cfg.arg(format!(
                "-DCMAKE_TOOLCHAIN_FILE={}",
                root()
                    .join("cmake/toolchains/aarch64-linux-gnu.cmake")
                    .display()
            ));
            "aarch64-linux-gnu-gcc".to_owned()
        }
        other => panic!("no consumer setup for {other}"),
    };
    check(&mut cfg);
    check(Command::new("cmake").arg("--build").arg(&build));
    let pc = check(
        Command::new("pkg-config")
            .args(["--static", "--cflags", "--libs", "dps"])
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
            .env_remove("PKG_CONFIG_LIBDIR")
            .env_remove("PKG_CONFIG_SYSROOT_DIR"),
    );
    let flags = stdout(&pc);
    assert!(
        flags.contains("-ldps")
            && flags.contains("-lpthread")
            && flags.contains(&format!("-I{}", prefix.display())),
        "{flags}"
    );
    // pkg-config: -ldps picks the shared library; -Bstatic around it picks libdps.a.
    let pc_shared = work.join("consumer-pc-shared");
    check(
        Command::new(&gcc)
            .arg(src.join("main.c"))
            .arg("-o")
            .arg(&pc_shared)
            .args(flags.split_whitespace())
            .arg("-Wl,--gc-sections"),
    );
    let pc_static = work.join("consumer-pc-static");
    let static_flags: Vec<String> = flags
        .split_whitespace()
        .map(|f| {
            if f == "-ldps" {
                "-Wl,-Bstatic -ldps -Wl,-Bdynamic".to_owned()
            } else {
                f.to_owned()
            }
        })
        .collect();
    check(
        Command::new(&gcc)
            .arg(src.join("main.c"))
            .arg("-o")
            .arg(&pc_static)
            .args(static_flags.iter().flat_map(|f| f.split(' ')))
            .arg("-Wl,--gc-sections"),
    );
    vec![
        (build.join("consumer"), false),
        (build.join("consumer_shared"), true),
        (pc_shared, true),
        (pc_static, false),
    ]
}

fn run_consumer(triple: &str, exe: &Path, shared: bool, prefix: &Path) {
    assert_eq!(
        elf_machine(exe),
        expected_machine(triple),
        "{}",
        exe.display()
    );
    let needed = check(Command::new("readelf").arg("-d").arg(exe));
    assert_eq!(
        stdout(&needed).contains("Shared library: [libdps.so."),
        shared,
        "{}: links libdps.so by its soname exactly when dynamic:\n{}",
        exe.display(),
        stdout(&needed)
    );
    let mut cmd = if triple == "x86_64-unknown-linux-gnu" {
        Command::new(exe)
    } else {
        let r = runner(triple);
        let mut c = Command::new(&r[0]);
        c.args(&r[1..]).arg(exe);
        c
    };
    // The shared library is found by its soname in the archive's lib/.
    cmd.env("LD_LIBRARY_PATH", prefix.join("lib"));
    if triple != "x86_64-unknown-linux-gnu" {
        cmd.env(
            "QEMU_SET_ENV",
            format!("LD_LIBRARY_PATH={}", prefix.join("lib").display()),
        );
    }
    let out = check(&mut cmd);
    assert_eq!(stdout(&out), DERIVED, "{}", exe.display());
}

#[test]
#[ignore = "needs the archives of scripts/dist (and the ARM cross toolchain): run .ci/cross-test"]
fn dist_archives_work_with_find_package_and_pkg_config() {
    for t in ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] {
        let work = cross_dir().join("dist-test").join(t);
        let prefix = unpack_archive(t, &work.join("unpacked"));
        let exes = consume(t, &prefix, &work);
        for (exe, shared) in &exes {
            run_consumer(t, exe, *shared, &prefix);
        }
        eprintln!(
            "{t}: archive consumed by find_package (static, shared) and pkg-config (shared, static)"
        );
    }
}
