//! The device credential from the options: exactly one of `--symmetric-key`, `--group-key`,
//! `--cert` [`--private-key`] [`--key-password`], `--pkcs12` [`--pkcs12-password`], or a key
//! in a PKCS#11 token (`--pkcs11-uri` [`--cert`], `--pkcs11-hmac-uri`: see `pkcs11.rs`).
//! Errors name the file they are about: the key file for a key or password problem, the
//! certificate file for a certificate problem.

use dps::{ConfigBuilder, Error, ErrorKind, X509Credential};
use zeroize::Zeroizing;

use crate::args::Parsed;
use crate::exit::{Failure, Res};
use crate::inputs::{read_file, secret};

/// Checks the credential options and puts the credential into `b`.
pub fn apply(p: &Parsed, b: &mut ConfigBuilder) -> Res<()> {
    crate::tpm::check_options(p)?;
    let token_key = p.has("--pkcs11-uri");
    let creds: Vec<&str> = [
        "--symmetric-key",
        "--group-key",
        "--cert",
        "--pkcs12",
        "--tpm",
        "--pkcs11-uri",
        "--pkcs11-hmac-uri",
    ]
    .into_iter()
    // With --pkcs11-uri, --cert is the certificate of the token's key.
    .filter(|o| p.has(o) && !(token_key && *o == "--cert"))
    .collect();
    match creds.as_slice() {
        [] => {
            return Err(Failure::Usage(
                "a credential is required: --symmetric-key, --group-key, --cert, --pkcs12, \
                 --pkcs11-uri, --pkcs11-hmac-uri or --tpm"
                    .into(),
            ));
        }
        [_] => {}
        more => {
            return Err(Failure::Usage(format!(
                "give one credential, not {}",
                more.join(" and ")
            )));
        }
    }
    if token_key && p.has("--private-key") {
        return Err(Failure::Usage(
            "--private-key does not go with --pkcs11-uri (the key is in the token)".into(),
        ));
    }
    for (opt, needs) in [
        ("--private-key", "--cert"),
        ("--key-password", "--cert"),
        ("--pkcs12-password", "--pkcs12"),
    ] {
        if p.has(opt) && !p.has(needs) {
            return Err(Failure::Usage(format!("{opt} needs {needs}")));
        }
    }
    if crate::pkcs11::apply(p, b)? {
        return Ok(());
    }
    if p.has("--tpm") {
        crate::tpm::apply(p, b)?;
    } else if let Some(k) = p.value("--symmetric-key") {
        b.symmetric_key(&secret("--symmetric-key", k)?)?;
    } else if let Some(k) = p.value("--group-key") {
        b.group_key(&secret("--group-key", k)?)?;
    } else if let Some(cert) = p.value("--cert") {
        let chain = read_file("--cert", cert)?;
        let key_file = p.value("--private-key");
        let key = match key_file {
            Some(k) => read_file("--private-key", k)?,
            None => chain.clone(),
        };
        let pw = match p.value("--key-password") {
            Some(v) => Some(secret("--key-password", v)?),
            None => None,
        };
        let cred = X509Credential::from_pem(&chain, &key, pw.as_ref().map(|s| s.as_bytes()))
            .map_err(|e| {
                let err = pem_error(e.into(), cert, key_file, pw.is_some());
                match err.kind {
                    ErrorKind::InvalidCertificate => der_hint(err, cert, &chain, "x509"),
                    ErrorKind::InvalidPrivateKey => {
                        der_hint(err, key_file.unwrap_or(cert), &key, "pkey")
                    }
                    _ => err,
                }
            })?;
        b.x509(cred);
    } else if let Some(file) = p.value("--pkcs12") {
        let der = read_file("--pkcs12", file)?;
        let given = p.value("--pkcs12-password");
        let pw = match given {
            Some(v) => secret("--pkcs12-password", v)?,
            None => Zeroizing::new(String::new()),
        };
        let cred = X509Credential::from_pkcs12(&der, &pw).map_err(|e| {
            let mut err = pkcs12_error(e.into(), file, given.is_some());
            if der.is_empty() {
                err.message = format!("{file}: the file is empty (expected a PKCS#12 / .pfx file)");
            }
            err
        })?;
        b.x509(cred);
    }
    Ok(())
}

/// A PEM credential error, naming the file it is about: the key file (`--private-key`, or the
/// `--cert` file when it holds the key too) for a key or password problem, both files for a
/// key that does not match, the certificate file otherwise.
fn pem_error(mut err: Error, cert: &str, key: Option<&str>, password_given: bool) -> Error {
    let key_file = key.unwrap_or(cert);
    err.message = match err.kind {
        ErrorKind::KeyPassword if !password_given => format!(
            "{key_file}: the private key is encrypted and needs a password: give it with --key-password"
        ),
        ErrorKind::KeyPassword => format!("{key_file}: {} (--key-password)", err.message),
        ErrorKind::InvalidPrivateKey => format!("{key_file}: {}", err.message),
        ErrorKind::KeyMismatch if key.is_some() => {
            format!("{key_file} and {cert}: {}", err.message)
        }
        _ => format!("{cert}: {}", err.message),
    };
    err
}

/// Whether `bytes` look like a DER (binary) structure rather than PEM text.
fn looks_like_der(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x30) && !bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Adds to a "not PEM" error the openssl command that converts a DER `file` (`tool`: `x509`
/// for certificates, `pkey` for keys), when the file looks like DER.
pub fn der_hint(mut err: Error, file: &str, bytes: &[u8], tool: &str) -> Error {
    if looks_like_der(bytes) {
        err.message = format!(
            "{}; {file} looks like DER (binary), not PEM: convert it with `openssl {tool} -inform der -in {file} -out {file}.pem`",
            err.message
        );
    }
    err
}

/// A PKCS#12 error naming the file; without `--pkcs12-password` (the empty password was
/// tried), a password error says that the file needs one.
fn pkcs12_error(mut err: Error, file: &str, password_given: bool) -> Error {
    err.message = match err.kind {
        ErrorKind::Pkcs12Password if !password_given => format!(
            "{file}: the PKCS#12 file needs a password (the empty password does not open it): give it with --pkcs12-password"
        ),
        ErrorKind::Pkcs12Password => format!("{file}: {} (--pkcs12-password)", err.message),
        _ => format!("{file}: {}", err.message),
    };
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: ErrorKind, m: &str) -> Error {
        Error::new(kind, m)
    }

    #[test]
    fn pem_errors_name_the_file_they_are_about() {
        let pw = |given| {
            pem_error(
                err(ErrorKind::KeyPassword, "lib says"),
                "dev.pem",
                Some("dev.key"),
                given,
            )
            .message
        };
        assert_eq!(
            pw(false),
            "dev.key: the private key is encrypted and needs a password: give it with --key-password"
        );
        assert_eq!(pw(true), "dev.key: lib says (--key-password)");
        // One file holding both: that file is the key file.
        let m = pem_error(err(ErrorKind::KeyPassword, "x"), "both.pem", None, false).message;
        assert!(
            m.starts_with("both.pem: the private key is encrypted"),
            "{m}"
        );
        let m = pem_error(
            err(ErrorKind::InvalidPrivateKey, "bad"),
            "dev.pem",
            Some("dev.key"),
            false,
        );
        assert_eq!(m.message, "dev.key: bad");
        let m = pem_error(
            err(ErrorKind::KeyMismatch, "no match"),
            "dev.pem",
            Some("dev.key"),
            false,
        );
        assert_eq!(m.message, "dev.key and dev.pem: no match");
        let m = pem_error(
            err(ErrorKind::InvalidCertificate, "bad"),
            "dev.pem",
            Some("dev.key"),
            true,
        );
        assert_eq!(m.message, "dev.pem: bad");
        assert_eq!(m.kind, ErrorKind::InvalidCertificate);
    }

    #[test]
    fn der_files_get_the_conversion_command() {
        let e = der_hint(
            err(ErrorKind::InvalidCertificate, "d.crt: no certificate found"),
            "d.crt",
            &[0x30, 0x82, 1, 2],
            "x509",
        );
        assert_eq!(
            e.message,
            "d.crt: no certificate found; d.crt looks like DER (binary), not PEM: convert it with `openssl x509 -inform der -in d.crt -out d.crt.pem`"
        );
        assert_eq!(e.kind, ErrorKind::InvalidCertificate);
        for not_der in [&b""[..], b"garbage", b"0\x82-----BEGIN CERTIFICATE-----"] {
            let e = der_hint(
                err(ErrorKind::InvalidCertificate, "m"),
                "f",
                not_der,
                "x509",
            );
            assert_eq!(e.message, "m");
        }
    }

    #[test]
    fn pkcs12_without_password_says_it_needs_one() {
        let m = pkcs12_error(err(ErrorKind::Pkcs12Password, "wrong"), "d.pfx", false).message;
        assert!(
            m.starts_with("d.pfx: the PKCS#12 file needs a password"),
            "{m}"
        );
        assert!(!m.contains("wrong"), "{m}");
        let m = pkcs12_error(err(ErrorKind::Pkcs12Password, "wrong"), "d.pfx", true).message;
        assert_eq!(m, "d.pfx: wrong (--pkcs12-password)");
        let m = pkcs12_error(err(ErrorKind::InvalidPkcs12, "not BER"), "d.pfx", false).message;
        assert_eq!(m, "d.pfx: not BER");
    }
}
