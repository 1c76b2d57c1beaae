//! The device credential from the options: exactly one of `--symmetric-key`, `--group-key`,
//! `--cert` [`--private-key`] [`--key-password`] or `--pkcs12` [`--pkcs12-password`].

use dps::{ConfigBuilder, Error, X509Credential};
use zeroize::Zeroizing;

use crate::args::Parsed;
use crate::exit::{Failure, Res};
use crate::inputs::{read_file, secret};

/// Checks the credential options and puts the credential into `b`.
pub fn apply(p: &Parsed, b: &mut ConfigBuilder) -> Res<()> {
    let creds: Vec<&str> = ["--symmetric-key", "--group-key", "--cert", "--pkcs12"]
        .into_iter()
        .filter(|o| p.has(o))
        .collect();
    match creds.as_slice() {
        [] => {
            return Err(Failure::Usage(
                "a credential is required: --symmetric-key, --group-key, --cert or --pkcs12".into(),
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
    for (opt, needs) in [
        ("--private-key", "--cert"),
        ("--key-password", "--cert"),
        ("--pkcs12-password", "--pkcs12"),
    ] {
        if p.has(opt) && !p.has(needs) {
            return Err(Failure::Usage(format!("{opt} needs {needs}")));
        }
    }
    if let Some(k) = p.value("--symmetric-key") {
        b.symmetric_key(&secret("--symmetric-key", k)?)?;
    } else if let Some(k) = p.value("--group-key") {
        b.group_key(&secret("--group-key", k)?)?;
    } else if let Some(cert) = p.value("--cert") {
        let chain = read_file("--cert", cert)?;
        let key = match p.value("--private-key") {
            Some(k) => read_file("--private-key", k)?,
            None => chain.clone(),
        };
        let pw = match p.value("--key-password") {
            Some(v) => Some(secret("--key-password", v)?),
            None => None,
        };
        let cred = X509Credential::from_pem(&chain, &key, pw.as_ref().map(|s| s.as_bytes()))
            .map_err(|e| {
                let mut err: Error = e.into();
                err.message = format!("{cert}: {}", err.message);
                err
            })?;
        b.x509(cred);
    } else if let Some(file) = p.value("--pkcs12") {
        let der = read_file("--pkcs12", file)?;
        let pw = match p.value("--pkcs12-password") {
            Some(v) => secret("--pkcs12-password", v)?,
            None => Zeroizing::new(String::new()),
        };
        let cred = X509Credential::from_pkcs12(&der, &pw).map_err(|e| {
            let mut err: Error = e.into();
            err.message = format!("{file}: {}", err.message);
            err
        })?;
        b.x509(cred);
    }
    Ok(())
}
