//! Generates the C header from `src/ffi/` with cbindgen.
//!
//! The header is always generated into `OUT_DIR` (tests compare it with the
//! committed `include/dps.h`, so drift fails the test suite). With
//! `DPS_UPDATE_HEADER=1` it is also written to `include/dps.h`.

use std::env;
use std::path::PathBuf;

/// The version of package `name` in the Cargo.lock of this build: next to the manifest, or
/// in an ancestor of OUT_DIR (the workspace that depends on this crate).
fn locked_version(name: &str) -> Option<String> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").ok()?);
    let out = PathBuf::from(env::var("OUT_DIR").ok()?);
    let lock = std::iter::once(manifest.as_path())
        .chain(out.ancestors())
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())?;
    let text = std::fs::read_to_string(lock).ok()?;
    let needle = format!("name = \"{name}\"\nversion = \"");
    let at = text.find(&needle)? + needle.len();
    Some(text[at..].split('"').next()?.to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DPS_UPDATE_HEADER");

    // dps_version(): "dps/<version> (rustls <version>, ring; <enabled features>)".
    println!("cargo:rerun-if-changed=Cargo.lock");
    let mut features: Vec<String> = env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_owned))
        .filter(|f| f != "DEFAULT")
        .map(|f| f.to_lowercase().replace('_', "-"))
        .collect();
    features.sort();
    let mut version = format!(
        "dps/{} (rustls {}, ring",
        env::var("CARGO_PKG_VERSION").unwrap(),
        locked_version("rustls").unwrap_or_else(|| "0.23".into())
    );
    if !features.is_empty() {
        version.push_str("; ");
        version.push_str(&features.join(", "));
    }
    version.push(')');
    println!("cargo:rustc-env=DPS_VERSION_STRING={version}");

    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("dps.h");
    let major: u32 = env::var("CARGO_PKG_VERSION_MAJOR")
        .unwrap()
        .parse()
        .unwrap();
    let minor: u32 = env::var("CARGO_PKG_VERSION_MINOR")
        .unwrap()
        .parse()
        .unwrap();
    let patch: u32 = env::var("CARGO_PKG_VERSION_PATCH")
        .unwrap()
        .parse()
        .unwrap();
    let after = format!(
        "\n#define DPS_VERSION_MAJOR {major}\n#define DPS_VERSION_MINOR {minor}\n#define DPS_VERSION_PATCH {patch}\n\
         /** The header's version as 0xMMmmpp; compare with dps_version_number(). */\n\
         #define DPS_VERSION_NUMBER 0x{:06x}\n\
         /** True when the header is at least version a.b.c. */\n\
         #define DPS_VERSION_AT_LEAST(a, b, c) (DPS_VERSION_NUMBER >= (((a) << 16) | ((b) << 8) | (c)))\n",
        (major << 16) | (minor << 8) | patch
    );
    // The shared library's soname: libdps.so.0.<minor> while the major version is 0 (a minor
    // release may break the ABI), libdps.so.<major> after; CMake installs the matching links.
    if env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux") {
        let soname = if major == 0 {
            format!("libdps.so.0.{minor}")
        } else {
            format!("libdps.so.{major}")
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    // with_after_include replaces cbindgen.toml's after_includes: keep both.
    let after = format!(
        "{after}{}",
        config.after_includes.clone().unwrap_or_default()
    );
    let bindings = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .with_after_include(after)
        .generate()
    {
        Ok(b) => b,
        Err(cbindgen::Error::ParseSyntaxError { .. }) => {
            // A syntax error: rustc reports it better; let it.
            return;
        }
        Err(e) => panic!("cbindgen failed: {e}"),
    };
    bindings.write_to_file(&out);
    if env::var_os("DPS_UPDATE_HEADER").is_some_and(|v| v == "1") {
        bindings.write_to_file(crate_dir.join("include/dps.h"));
    }
}
