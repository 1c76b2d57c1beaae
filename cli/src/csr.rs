//! Certificate issuance from a CSR (experimental): `--csr p256|p384|rsa2048|KEYFILE|pkcs11:URI`
//! with `--cert-out FILE` (the issued chain, leaf first) and `--key-out FILE` (a key generated
//! in memory), for `register` and `renew`.
//!
//! The output files are written only after the library checked the issued chain, each through
//! a temporary file in the same directory (mode 0600, fsync, then linked or renamed into
//! place, then the directory fsynced): a reader sees the old file or the new one, never a
//! part. An existing file is refused before anything is sent to DPS unless `--overwrite` is
//! given (`renew` replaces the files it was given without it). With both files, the key is
//! put in place first and put back (or removed) if the certificate cannot be: the pair on
//! disk stays a pair.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use dps::{ConfigBuilder, CsrAlgorithm, CsrKey, Registration};

use crate::args::Parsed;
use crate::exit::{self, Failure, Res};
use crate::inputs::{read_file, secret};

/// Where the issued chain (and a generated key) go.
pub struct Plan {
    cert_out: Target,
    key_out: Option<Target>,
}

struct Target {
    path: PathBuf,
    /// An existing file may be replaced.
    replace: bool,
}

/// What `renew` was given: its outputs default to these files, which it may replace.
pub struct Renewing<'a> {
    pub cert: &'a str,
    pub key: &'a str,
}

/// Reads `--csr`, `--cert-out`, `--key-out`, `--overwrite`, checks them (including that no
/// output file exists unless it may be replaced) and puts the CSR key into `b`. `Ok(None)`
/// without `--csr` (then `--cert-out` / `--key-out` are refused).
pub fn apply(p: &Parsed, b: &mut ConfigBuilder, renewing: Option<Renewing>) -> Res<Option<Plan>> {
    let Some(spec) = p.value("--csr").or(renewing.as_ref().map(|_| "p256")) else {
        for opt in ["--cert-out", "--key-out", "--overwrite"] {
            if p.has(opt) {
                return Err(Failure::Usage(format!("{opt} needs --csr")));
            }
        }
        return Ok(None);
    };
    if p.has("--use-saved") {
        return Err(Failure::Usage(
            "--use-saved does not go with --csr (a saved assignment issues no certificate)".into(),
        ));
    }
    let generated = match spec {
        "p256" => Some(CsrAlgorithm::P256),
        "p384" => Some(CsrAlgorithm::P384),
        "rsa2048" => Some(CsrAlgorithm::Rsa2048),
        _ => None,
    };
    let overwrite = p.flag("--overwrite");
    let target = |opt: &str, given: Option<&str>, default: Option<&str>| -> Res<Option<Target>> {
        let Some(path) = given.or(default) else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        let replace = overwrite || default.is_some_and(|d| Path::new(d) == path);
        if !replace && fs::symlink_metadata(&path).is_ok() {
            return Err(Failure::Other(
                exit::CREDENTIAL,
                format!(
                    "{opt} {}: the file exists; give --overwrite to replace it",
                    path.display()
                ),
            ));
        }
        Ok(Some(Target { path, replace }))
    };
    let cert_out = target(
        "--cert-out",
        p.value("--cert-out"),
        renewing.as_ref().map(|r| r.cert),
    )?
    .ok_or_else(|| {
        Failure::Usage("--csr needs --cert-out FILE (where the issued certificate goes)".into())
    })?;
    let key_out = match generated {
        Some(_) => Some(
            target(
                "--key-out",
                p.value("--key-out"),
                renewing.as_ref().map(|r| r.key),
            )?
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "--csr {spec} generates the key in memory: give --key-out FILE to keep it"
                ))
            })?,
        ),
        None if p.has("--key-out") => {
            return Err(Failure::Usage(format!(
                "--key-out is only for a key generated in memory (--csr p256, p384 or rsa2048); \
                 the key of --csr {} stays where it is",
                if spec.starts_with("pkcs11:") {
                    "pkcs11:URI"
                } else {
                    spec
                }
            )));
        }
        None => None,
    };
    if let Some(k) = &key_out {
        if k.path == cert_out.path {
            return Err(Failure::Usage(
                "--cert-out and --key-out name the same file".into(),
            ));
        }
    }
    let key = match generated {
        Some(alg) if !alg.is_supported() => {
            return Err(Failure::Dps(dps::Error::new(
                dps::ErrorKind::Unsupported,
                format!(
                    "--csr {spec}: this build cannot generate RSA keys (the library's cargo feature `rsa-keygen`)"
                ),
            )));
        }
        Some(alg) => CsrKey::generate(alg),
        None if spec.starts_with("pkcs11:") => token_key(p, spec)?,
        None => {
            let pem = read_file("--csr", spec)?;
            let pw = match p.value("--csr-key-password") {
                Some(v) => Some(secret("--csr-key-password", v)?),
                None => None,
            };
            CsrKey::from_pem(&pem, pw.as_ref().map(|s| s.as_bytes())).map_err(|mut e| {
                e.message = format!("--csr {spec}: {}", e.message);
                Failure::Dps(e)
            })?
        }
    };
    if p.has("--csr-key-password") && (generated.is_some() || spec.starts_with("pkcs11:")) {
        return Err(Failure::Usage(
            "--csr-key-password is for an encrypted --csr KEYFILE".into(),
        ));
    }
    b.csr(key);
    Ok(Some(Plan { cert_out, key_out }))
}

/// A CSR key held by a PKCS#11 token (`--pkcs11-module` / `--pkcs11-pin` apply).
fn token_key(p: &Parsed, raw: &str) -> Res<CsrKey> {
    let uri = crate::pkcs11::uri(p, "--csr", raw)?;
    let signer = dps::pkcs11::Pkcs11Signer::open(&uri)?;
    let spki = signer.public_key()?.spki_der();
    Ok(CsrKey::from_signer(std::sync::Arc::new(signer), &spki)?)
}

/// Writes the checked chain (and the generated key) of `reg`; returns the lines to report.
pub fn write(plan: &Plan, reg: &Registration) -> Res<Vec<String>> {
    let chain = reg.issued_certificate_chain_pem.as_deref().ok_or_else(|| {
        Failure::Other(
            exit::INTERNAL,
            "the registration carries no issued certificate".into(),
        )
    })?;
    let mut files: Vec<(&Target, &[u8])> = Vec::new();
    if let Some(k) = &plan.key_out {
        let key = reg.issued_private_key_pem.as_ref().ok_or_else(|| {
            Failure::Other(
                exit::INTERNAL,
                "the registration carries no generated key".into(),
            )
        })?;
        files.push((k, key.expose().as_bytes()));
    }
    files.push((&plan.cert_out, chain.as_bytes()));
    commit(&files).map_err(|e| Failure::Other(exit::CREDENTIAL, format!("registered, but {e}")))?;
    let mut lines = vec![format!(
        "issued certificate written to {}",
        plan.cert_out.path.display()
    )];
    if let Some(k) = &plan.key_out {
        lines.push(format!("its private key written to {}", k.path.display()));
    }
    Ok(lines)
}

fn side_path(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to a new file beside `path` (mode 0600, fsynced); returns its path.
fn write_temp(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = side_path(path, "tmp");
    let _ = fs::remove_file(&tmp);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let done = opts.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match done {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// What was done to one target, to undo it.
enum Placed {
    /// The target did not exist: remove it.
    New(PathBuf),
    /// The target was replaced; the old file is kept at the backup path.
    Replaced { target: PathBuf, backup: PathBuf },
}

/// Puts every file in place, all or none (as far as the file system lets us undo).
fn commit(files: &[(&Target, &[u8])]) -> Result<(), String> {
    let mut temps = Vec::new();
    for (t, bytes) in files {
        match write_temp(&t.path, bytes) {
            Ok(tmp) => temps.push(tmp),
            Err(e) => {
                temps.iter().for_each(|p| drop(fs::remove_file(p)));
                return Err(format!("cannot write {}: {e}", t.path.display()));
            }
        }
    }
    let mut placed: Vec<Placed> = Vec::new();
    let mut failure = None;
    for ((t, _), tmp) in files.iter().zip(&temps) {
        match place(t, tmp) {
            Ok(p) => placed.push(p),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    temps.iter().for_each(|p| drop(fs::remove_file(p)));
    if let Some(e) = failure {
        for p in placed.into_iter().rev() {
            match p {
                Placed::New(target) => drop(fs::remove_file(target)),
                Placed::Replaced { target, backup } => drop(fs::rename(backup, target)),
            }
        }
        return Err(e);
    }
    for p in placed {
        if let Placed::Replaced { backup, .. } = p {
            let _ = fs::remove_file(backup);
        }
    }
    for (t, _) in files {
        // the renames reach the disk with the directory
        if let Ok(d) = fs::File::open(dir_of(&t.path)) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn place(t: &Target, tmp: &Path) -> Result<Placed, String> {
    let shown = t.path.display();
    if t.replace && fs::symlink_metadata(&t.path).is_ok() {
        let backup = side_path(&t.path, "old");
        let _ = fs::remove_file(&backup);
        fs::hard_link(&t.path, &backup)
            .map_err(|e| format!("cannot keep a copy of {shown} while replacing it: {e}"))?;
        return match fs::rename(tmp, &t.path) {
            Ok(()) => Ok(Placed::Replaced {
                target: t.path.clone(),
                backup,
            }),
            Err(e) => {
                let _ = fs::remove_file(&backup);
                Err(format!("cannot replace {shown}: {e}"))
            }
        };
    }
    // A hard link does not replace an existing file: a file that appeared since the check
    // is refused, not overwritten.
    fs::hard_link(tmp, &t.path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{shown} exists; give --overwrite to replace it")
        } else {
            format!("cannot write {shown}: {e}")
        }
    })?;
    Ok(Placed::New(t.path.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dps-cli-csr-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_failed_second_file_undoes_the_first() {
        let d = tmpdir("undo");
        let key = Target {
            path: d.join("key.pem"),
            replace: true,
        };
        fs::write(&key.path, "old key").unwrap();
        // the certificate's directory does not exist: its temporary file cannot be made
        let cert = Target {
            path: d.join("missing").join("cert.pem"),
            replace: false,
        };
        let e = commit(&[(&key, b"new key"), (&cert, b"cert")]).unwrap_err();
        assert!(e.starts_with("cannot write"), "{e}");
        assert_eq!(fs::read_to_string(&key.path).unwrap(), "old key");

        // the certificate exists and may not be replaced: refused at the link, key restored
        let cert = Target {
            path: d.join("cert.pem"),
            replace: false,
        };
        fs::write(&cert.path, "old cert").unwrap();
        let e = commit(&[(&key, b"new key"), (&cert, b"cert")]).unwrap_err();
        assert!(e.contains("exists; give --overwrite"), "{e}");
        assert_eq!(fs::read_to_string(&key.path).unwrap(), "old key");
        assert_eq!(fs::read_to_string(&cert.path).unwrap(), "old cert");
        // nothing left beside them
        let mut names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["cert.pem", "key.pem"]);

        let fresh = Target {
            path: d.join("new-key.pem"),
            replace: false,
        };
        let e = commit(&[(&fresh, b"k"), (&cert, b"c")]).unwrap_err();
        assert!(e.contains("exists"), "{e}");
        assert!(!fresh.path.exists(), "a new file is removed again");
        let _ = fs::remove_dir_all(&d);
    }
}
