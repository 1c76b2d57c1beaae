//! Keys in PKCS#11 tokens: `--pkcs11-uri URI` (the X.509 private key; the certificate from
//! `--cert FILE` or, without it, from the token) or `--pkcs11-hmac-uri URI` (the SAS key, a
//! generic secret used with CKM_SHA256_HMAC), with `--pkcs11-module PATH` and
//! `--pkcs11-pin SECRET` (VALUE, env:NAME, @FILE or -) when the URI does not carry them.

use std::sync::Arc;

use dps::ConfigBuilder;
use dps::pkcs11::{Pkcs11HmacKey, Pkcs11Uri, x509_credential};

use crate::args::Parsed;
use crate::exit::{Failure, Res};
use crate::inputs::{read_file, secret};

/// The URI of `option` with `--pkcs11-module` and `--pkcs11-pin` applied.
pub fn uri(p: &Parsed, option: &str, raw: &str) -> Res<Pkcs11Uri> {
    let mut uri = Pkcs11Uri::parse(raw).map_err(|mut e| {
        e.message = format!("{option}: {}", e.message);
        Failure::Dps(e)
    })?;
    if let Some(m) = p.value("--pkcs11-module") {
        uri.set_module_path(m);
    }
    if let Some(v) = p.value("--pkcs11-pin") {
        uri.set_pin(&secret("--pkcs11-pin", v)?);
    }
    Ok(uri)
}

/// Puts the token credential into `b`; `Ok(false)` when no PKCS#11 URI was given.
pub fn apply(p: &Parsed, b: &mut ConfigBuilder) -> Res<bool> {
    if let Some(raw) = p.value("--pkcs11-uri") {
        let uri = uri(p, "--pkcs11-uri", raw)?;
        let chain = match p.value("--cert") {
            Some(f) => Some(read_file("--cert", f)?),
            None => None,
        };
        let cred = x509_credential(&uri, chain.as_deref().map(|c| &c[..])).map_err(|mut e| {
            e.message = match p.value("--cert") {
                Some(f) if e.kind == dps::ErrorKind::KeyMismatch => {
                    format!("{f} and {uri}: {}", e.message)
                }
                Some(f) if e.kind == dps::ErrorKind::InvalidCertificate => {
                    format!("{f}: {}", e.message)
                }
                _ => e.message,
            };
            e
        })?;
        b.x509(cred);
        Ok(true)
    } else if let Some(raw) = p.value("--pkcs11-hmac-uri") {
        let uri = uri(p, "--pkcs11-hmac-uri", raw)?;
        b.hmac_key(Arc::new(Pkcs11HmacKey::open(&uri)?));
        Ok(true)
    } else {
        let csr_token = p.value("--csr").is_some_and(|c| c.starts_with("pkcs11:"));
        for opt in ["--pkcs11-module", "--pkcs11-pin"] {
            if p.has(opt) && !csr_token {
                return Err(Failure::Usage(format!(
                    "{opt} needs --pkcs11-uri, --pkcs11-hmac-uri or --csr pkcs11:URI"
                )));
            }
        }
        Ok(false)
    }
}
