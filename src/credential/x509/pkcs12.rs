//! PKCS#12 / `.pfx` files (feature `pkcs12`).
// ---------------------------------------------------------------------------------------------
// PKCS#12

use super::{CredentialError, X509Credential, load_signing_key};
use p12_keystore::{Certificate, Pkcs12Archive};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

pub(super) fn load(der: &[u8], password: &str) -> Result<X509Credential, CredentialError> {
    if der.is_empty() {
        return Err(CredentialError::Pkcs12(
            "the input is empty (expected the bytes of a .pfx file)".into(),
        ));
    }
    if der.trim_ascii_start().starts_with(b"-----BEGIN ") {
        return Err(CredentialError::Pkcs12(
            "this is PEM text, not a PKCS#12 (.pfx) file: load it as PEM".into(),
        ));
    }
    // p12-keystore parses untrusted input with third-party code: contain a panic, should
    // one ever happen, as an error.
    let parsed = std::panic::catch_unwind(|| Pkcs12Archive::from_pkcs12(der, password))
        .map_err(|_| CredentialError::Pkcs12("the PKCS#12 parser failed".into()))?;
    let archive = parsed.map_err(|e| map_error(e, der, password))?;
    if archive.keys.is_empty() {
        return Err(if archive.certs.is_empty() {
            CredentialError::NoPrivateKey
        } else {
            CredentialError::Pkcs12NoKey
        });
    }
    if archive.certs.is_empty() {
        return Err(CredentialError::NoCertificate);
    }

    let mut first_key_error = None;
    for key_bag in &archive.keys {
        let key = Zeroizing::new(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key_bag.key.as_der().to_vec(),
        )));
        let signing_key = match load_signing_key(&key) {
            Ok(k) => k,
            Err(e) => {
                first_key_error.get_or_insert(e);
                continue;
            }
        };
        drop(key);
        // Certificates paired with the key by local key id first, then all others.
        let key_id = key_bag.local_key_id.as_ref().map(|id| id.as_ref());
        let paired = |c: &&p12_keystore::CertificateBag| {
            key_id.is_some() && c.local_key_id.as_deref() == key_id
        };
        let candidates = archive
            .certs
            .iter()
            .filter(paired)
            .map(|c| (c, true))
            .chain(
                archive
                    .certs
                    .iter()
                    .filter(|c| !paired(c))
                    .map(|c| (c, false)),
            );
        for (bag, by_id) in candidates {
            let leaf = CertificateDer::from(bag.cert.as_der().to_vec());
            let probe = CertifiedKey::new(vec![leaf], signing_key.clone());
            let matches = match probe.keys_match() {
                Ok(()) => true,
                // The key cannot tell its public key: trust the local key id pairing.
                Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => by_id,
                Err(_) => false,
            };
            if matches {
                let chain = build_chain(&bag.cert, archive.certs.iter().map(|c| &c.cert));
                return X509Credential::assemble(chain, signing_key);
            }
        }
    }
    Err(first_key_error.unwrap_or(CredentialError::KeyMismatch))
}

/// Leaf, then its issuers found among `certs` (by name), stopping before self-signed roots.
fn build_chain<'a>(
    leaf: &'a Certificate,
    certs: impl Iterator<Item = &'a Certificate> + Clone,
) -> Vec<CertificateDer<'static>> {
    let mut chain: Vec<&Certificate> = vec![leaf];
    let mut current = leaf;
    while let Some(issuer) = certs.clone().find(|c| {
        c.subject() == current.issuer()
            && c.subject() != c.issuer()
            && !chain.iter().any(|seen| seen.as_der() == c.as_der())
    }) {
        chain.push(issuer);
        current = issuer;
    }
    chain
        .into_iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect()
}

fn map_error(e: p12_keystore::error::Error, der: &[u8], password: &str) -> CredentialError {
    use p12_keystore::error::Error as E;
    match e {
        // The MAC did not verify; or, for a MAC-less file, the bags did not decrypt.
        E::MacError(_) | E::UnpadError | E::Pkcs5Error(_) if password.is_empty() => {
            CredentialError::Pkcs12PasswordRequired
        }
        E::MacError(_) | E::UnpadError | E::Pkcs5Error(_) => CredentialError::Pkcs12WrongPassword,
        E::UnsupportedEncryptionScheme => {
            CredentialError::Pkcs12("unsupported encryption or MAC algorithm".into())
        }
        E::UnsupportedMacAlgorithm => CredentialError::Pkcs12("unsupported MAC algorithm".into()),
        // 30 80: a SEQUENCE of indefinite length, which only BER allows.
        E::DerError(e) if der.starts_with(&[0x30, 0x80]) => CredentialError::Pkcs12(format!(
            "malformed DER ({e}); this file uses BER indefinite lengths, which are not \
             supported: re-export it with openssl pkcs12"
        )),
        E::DerError(e) => CredentialError::Pkcs12(format!("malformed DER ({e})")),
        e => CredentialError::Pkcs12(e.to_string()),
    }
}
