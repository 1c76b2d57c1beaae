//! X.509 device credentials for mutual TLS with the Device Provisioning Service.
//!
//! An [`X509Credential`] is a certificate chain (leaf first, then intermediates) plus the
//! private key of the leaf, loaded from PEM text ([`X509Credential::from_pem`]) or from a
//! PKCS#12 / `.pfx` file ([`X509Credential::from_pkcs12`], feature `pkcs12`).
//!
//! Every constructor checks that the private key matches the leaf certificate, so a bad pair
//! is reported here instead of failing (or panicking) at connect time.
//!
//! Supported keys: RSA 2048..=8192 bits, ECDSA P-256 and P-384, Ed25519; in PKCS#8
//! (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) form, and as
//! password-encrypted PKCS#8 (`ENCRYPTED PRIVATE KEY`, PBES2 with PBKDF2 or scrypt, feature
//! `encrypted-keys`).

use std::fmt;
use std::sync::Arc;

pub(crate) mod csr;
mod der;
mod encrypted;
mod external;
pub(crate) use external::SignerFailure;
mod pemfile;
#[cfg(feature = "pkcs12")]
mod pkcs12;
#[cfg(test)]
mod tests;

pub(crate) use pemfile::pem_error_message;
use pemfile::{parse_cert_chain_pem, parse_key_pem};
use rustls::InconsistentKeys;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::credential::DigestSigner;

/// Why an X.509 credential could not be loaded.
///
/// The messages never contain key bytes or passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    /// No certificate was found (no `CERTIFICATE` PEM block, or no certificate in the PKCS#12 file).
    NoCertificate,
    /// A certificate is malformed (bad PEM or DER).
    BadCertificate(String),
    /// No private key was found.
    NoPrivateKey,
    /// The private key is malformed.
    BadPrivateKey(String),
    /// The private key is of a type or size that is not supported (DSA, RSA < 2048 bits, P-521, ...).
    UnsupportedKey(String),
    /// The private key is encrypted (`ENCRYPTED PRIVATE KEY`) and no password was given.
    KeyPasswordRequired,
    /// The password of the encrypted private key is wrong.
    WrongKeyPassword,
    /// The private key does not belong to the leaf (first) certificate.
    KeyMismatch,
    /// The PKCS#12 file is malformed or uses an unsupported feature.
    Pkcs12(String),
    /// The PKCS#12 password is wrong (MAC verification or decryption failed).
    Pkcs12WrongPassword,
    /// The PKCS#12 file is protected by a password and the empty password was given.
    Pkcs12PasswordRequired,
    /// The PKCS#12 file holds certificates but no private key.
    Pkcs12NoKey,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCertificate => f.write_str("no certificate found (expected a CERTIFICATE block)"),
            Self::BadCertificate(m) => write!(f, "malformed certificate: {m}"),
            Self::NoPrivateKey => f.write_str("no private key found"),
            Self::BadPrivateKey(m) => write!(f, "malformed private key: {m}"),
            Self::UnsupportedKey(m) => write!(f, "unsupported private key: {m}"),
            Self::KeyPasswordRequired => {
                f.write_str("the private key is encrypted but no key password was given")
            }
            Self::WrongKeyPassword => f.write_str("wrong password for the encrypted private key"),
            Self::KeyMismatch => f.write_str(
                "the private key does not match the leaf certificate (the leaf must come first in the chain)",
            ),
            Self::Pkcs12(m) => write!(f, "invalid PKCS#12 file: {m}"),
            Self::Pkcs12WrongPassword => {
                f.write_str("wrong PKCS#12 password (integrity check failed)")
            }
            Self::Pkcs12PasswordRequired => f.write_str(
                "the PKCS#12 file is protected by a password and none was given (the empty password does not open it)",
            ),
            Self::Pkcs12NoKey => f.write_str(
                "the PKCS#12 file holds certificates but no private key: export it with its key (openssl pkcs12 -export -inkey KEY -in CERT)",
            ),
        }
    }
}

impl std::error::Error for CredentialError {}

/// A device identity for mutual TLS: certificate chain (leaf first, then intermediates, all
/// sent in the handshake) and the leaf's private key.
#[derive(Clone)]
pub struct X509Credential {
    certified: Arc<CertifiedKey>,
    common_name: Option<String>,
    tls12_only: bool,
}

impl X509Credential {
    /// Loads a credential from PEM text.
    ///
    /// `cert_chain_pem` holds one or more `CERTIFICATE` blocks, leaf first (other blocks, such
    /// as a private key in a combined file, are ignored). `key_pem` holds the leaf's private key:
    /// `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1), `EC PRIVATE KEY` (SEC1), or
    /// `ENCRYPTED PRIVATE KEY` (encrypted PKCS#8, PBES2) decrypted with `key_password`.
    /// The first private key block in `key_pem` is used.
    pub fn from_pem(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        key_password: Option<&[u8]>,
    ) -> Result<Self, CredentialError> {
        let chain = parse_cert_chain_pem(cert_chain_pem)?;
        let key = parse_key_pem(key_pem, key_password)?;
        let signing_key = load_signing_key(&key)?;
        drop(key);
        Self::assemble(chain, signing_key)
    }

    /// A credential whose private key is held by `signer` (a C callback, a PKCS#11 token, a
    /// TPM, a secure element): the library never sees it.
    ///
    /// `cert_chain_pem` holds the leaf first, then intermediates. Before returning, the
    /// library asks `signer` for one signature over a fresh random message and verifies it
    /// against the leaf's public key, so a signer that does not hold the certificate's key is
    /// reported here ([`ErrorKind::KeyMismatch`](crate::ErrorKind::KeyMismatch)), and a failing
    /// or malformed answer as [`ErrorKind::SignerFailed`](crate::ErrorKind::SignerFailed).
    /// ECDSA P-256/P-384 and RSA 2048-8192 leaf keys are supported; for RSA both PSS and
    /// PKCS#1 v1.5 (SHA-256) are tried and only those the signer produces are offered in TLS.
    pub fn from_signer(
        cert_chain_pem: &[u8],
        signer: Arc<dyn DigestSigner>,
    ) -> crate::Result<Self> {
        Self::from_chain_and_signer(parse_cert_chain_pem(cert_chain_pem)?, signer)
    }

    /// [`from_signer`](Self::from_signer) with the chain already in DER (leaf first), for
    /// example read from a PKCS#11 token.
    pub fn from_chain_and_signer(
        chain: Vec<CertificateDer<'static>>,
        signer: Arc<dyn DigestSigner>,
    ) -> crate::Result<Self> {
        let leaf = chain.first().ok_or(CredentialError::NoCertificate)?;
        let key = external::ExternalKey::check(signer, leaf)?;
        let tls12_only = key.tls12_only();
        let mut cred = Self::from_signing_key(chain, Arc::new(key))?;
        cred.tls12_only = tls12_only;
        Ok(cred)
    }

    /// A credential from a certificate chain (leaf first) and any rustls signing key. The pair
    /// is checked when the key can tell its public key
    /// ([`SigningKey::public_key`]); otherwise it is the caller's promise.
    pub fn from_signing_key(
        chain: Vec<CertificateDer<'static>>,
        key: Arc<dyn SigningKey>,
    ) -> Result<Self, CredentialError> {
        Self::assemble(chain, key)
    }

    /// Loads a credential from PKCS#12 / `.pfx` DER bytes protected by `password` (may be empty).
    ///
    /// Modern files (PBES2/PBKDF2/AES, SHA-256 MAC, the OpenSSL 3 default) and legacy ones
    /// (RC2-40 / 3DES, SHA-1 MAC) are accepted. The leaf is the certificate paired with the key
    /// (by local key id, else by public key); the issuing intermediates found in the file
    /// follow it; self-signed roots are left out.
    #[cfg(feature = "pkcs12")]
    pub fn from_pkcs12(der: &[u8], password: &str) -> Result<Self, CredentialError> {
        pkcs12::load(der, password)
    }

    /// The rustls certified key (chain + signing key), for a client-certificate resolver.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified)
    }

    /// The certificate chain: leaf first, then intermediates.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// Whether the key can only be used with TLS 1.2 (an external RSA signer without PSS).
    pub fn tls12_only(&self) -> bool {
        self.tls12_only
    }

    /// The subject common name (CN) of the leaf certificate, if it has one.
    ///
    /// DPS requires it to equal the registration id. If the subject has several CNs, the
    /// first is returned.
    pub fn leaf_common_name(&self) -> Option<String> {
        self.common_name.clone()
    }

    /// When DPS refuses this certificate: a sentence saying the chain is probably incomplete,
    /// if its last certificate is neither self-issued nor a CA (PROTOCOL.md 4.2, 401002 "CA
    /// certificate not found." is DPS's answer to a group device that sent only its leaf).
    pub(crate) fn incomplete_chain_hint(&self) -> Option<String> {
        let chain = self.chain();
        let end = der::chain_end(chain.last()?)?;
        if end.self_issued || end.is_ca {
            return None;
        }
        let name = |cn: Option<String>| {
            cn.map_or_else(
                || "a certificate without a CN".into(),
                |cn| crate::config::echo(&cn),
            )
        };
        let issuer = name(end.issuer_cn);
        Some(format!(
            "The certificate chain sent ({} certificate{}) ends at {}, issued by {issuer}, not \
             at a CA certificate: unless {issuer} is the enrollment group's CA certificate, the \
             chain is probably incomplete; add the intermediate certificates after the leaf, \
             from {issuer} up to the group's CA.",
            chain.len(),
            if chain.len() == 1 { "" } else { "s" },
            name(end.subject_cn),
        ))
    }

    /// Checks the chain and the key pair and builds the credential.
    fn assemble(
        chain: Vec<CertificateDer<'static>>,
        signing_key: Arc<dyn SigningKey>,
    ) -> Result<Self, CredentialError> {
        let leaf = chain.first().ok_or(CredentialError::NoCertificate)?;
        for (i, cert) in chain.iter().enumerate() {
            if !der::is_certificate(cert) {
                return Err(CredentialError::BadCertificate(if i == 0 {
                    "the leaf certificate is not valid X.509 DER".to_string()
                } else {
                    format!("certificate #{} of the chain is not valid X.509 DER", i + 1)
                }));
            }
        }
        let common_name = der::subject_common_name(leaf);
        let certified = CertifiedKey::new(chain, signing_key);
        check_keys_match(&certified)?;
        Ok(Self {
            certified: Arc::new(certified),
            common_name,
            tls12_only: false,
        })
    }
}

impl fmt::Debug for X509Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Credential")
            .field("leaf_common_name", &self.common_name)
            .field("chain_len", &self.certified.cert.len())
            .finish_non_exhaustive()
    }
}

/// Maps the result of `CertifiedKey::keys_match`: a definite mismatch is an error, "cannot
/// tell" is accepted.
fn check_keys_match(certified: &CertifiedKey) -> Result<(), CredentialError> {
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(CredentialError::KeyMismatch)
        }
        Err(e) => Err(CredentialError::BadCertificate(format!(
            "the leaf certificate could not be parsed: {e}"
        ))),
    }
}

/// Builds a ring signing key; explains unsupported key types.
fn load_signing_key(key: &PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, CredentialError> {
    // The provider takes ownership of (and zeroizes) its copy; `key` stays with the caller,
    // who holds it in `Zeroizing`, and is only read again to explain a failure.
    // Not `ring::default_provider()`: it references every cipher suite, ChaCha20 included
    // (~51 KB), which transport::tls leaves out. Borrowing `key` makes no copy to zeroize.
    rustls::crypto::ring::sign::any_supported_type(key).map_err(|e| {
        match der::unsupported_key_reason(key) {
            Some(reason) => CredentialError::UnsupportedKey(reason),
            None => CredentialError::BadPrivateKey(format!(
                "not a usable RSA, ECDSA P-256/P-384 or Ed25519 key ({e})"
            )),
        }
    })
}
