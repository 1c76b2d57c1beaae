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

use rustls::InconsistentKeys;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

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

    /// The subject common name (CN) of the leaf certificate, if it has one.
    ///
    /// DPS requires it to equal the registration id. If the subject has several CNs, the
    /// first is returned.
    pub fn leaf_common_name(&self) -> Option<String> {
        self.common_name.clone()
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

// ---------------------------------------------------------------------------------------------
// PEM

fn parse_cert_chain_pem(data: &[u8]) -> Result<Vec<CertificateDer<'static>>, CredentialError> {
    let chain = CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CredentialError::BadCertificate(pem_error_message(&e)))?;
    if chain.is_empty() {
        return Err(CredentialError::NoCertificate);
    }
    Ok(chain)
}

/// A short description of a PEM error that never echoes input bytes.
fn pem_error_message(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "PEM block without its END line".into(),
        pem::Error::IllegalSectionStart { .. } => "malformed PEM BEGIN line".into(),
        pem::Error::Base64Decode(_) => "invalid base64 in a PEM block".into(),
        pem::Error::SectionTooLarge => "PEM block too large".into(),
        _ => "malformed PEM".into(),
    }
}

/// One `-----BEGIN <label>-----` line: its byte offset and its label.
struct PemBegin<'a> {
    offset: usize,
    label: &'a [u8],
}

/// Lines of `data` with their byte offsets, without line terminators or trailing blanks.
fn lines_with_offsets(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut offset = 0usize;
    data.split(|&b| b == b'\n').map(move |line| {
        let start = offset;
        offset = offset.saturating_add(line.len()).saturating_add(1);
        (start, line.trim_ascii_end())
    })
}

fn pem_begin_lines(data: &[u8]) -> impl Iterator<Item = PemBegin<'_>> {
    lines_with_offsets(data).filter_map(|(offset, line)| {
        let label = line
            .trim_ascii_start()
            .strip_prefix(b"-----BEGIN ")?
            .strip_suffix(b"-----")?;
        Some(PemBegin { offset, label })
    })
}

/// The body lines of the PEM block starting at `begin` (between its BEGIN and END lines).
fn pem_body_lines<'a>(data: &'a [u8], begin: &PemBegin<'_>) -> Result<Vec<&'a [u8]>, ()> {
    let rest = data.get(begin.offset..).ok_or(())?;
    let mut body = Vec::new();
    for (_, line) in lines_with_offsets(rest).skip(1) {
        let line = line.trim_ascii_start();
        if let Some(end) = line.strip_prefix(b"-----END ") {
            return if end.starts_with(begin.label) {
                Ok(body)
            } else {
                Err(())
            };
        }
        body.push(line);
    }
    Err(())
}

const LABEL_PKCS8: &[u8] = b"PRIVATE KEY";
const LABEL_PKCS1: &[u8] = b"RSA PRIVATE KEY";
const LABEL_SEC1: &[u8] = b"EC PRIVATE KEY";
const LABEL_ENCRYPTED: &[u8] = b"ENCRYPTED PRIVATE KEY";

/// Finds the first private key block of `data` and returns the (decrypted) key DER.
fn parse_key_pem(
    data: &[u8],
    password: Option<&[u8]>,
) -> Result<Zeroizing<PrivateKeyDer<'static>>, CredentialError> {
    let begin = pem_begin_lines(data)
        .find(|b| b.label.ends_with(b"PRIVATE KEY"))
        .ok_or(CredentialError::NoPrivateKey)?;
    match begin.label {
        LABEL_PKCS8 | LABEL_PKCS1 | LABEL_SEC1 => {
            let body = pem_body_lines(data, &begin).map_err(|()| {
                CredentialError::BadPrivateKey("PEM block without its END line".into())
            })?;
            if body.iter().any(|l| l.starts_with(b"Proc-Type:")) {
                return Err(CredentialError::UnsupportedKey(
                    "legacy OpenSSL PEM encryption (Proc-Type: 4,ENCRYPTED); convert it with \
                     `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
                        .into(),
                ));
            }
            let rest = data.get(begin.offset..).unwrap_or_default();
            PrivateKeyDer::from_pem_slice(rest)
                .map(Zeroizing::new)
                .map_err(|e| match e {
                    pem::Error::NoItemsFound => CredentialError::NoPrivateKey,
                    e => CredentialError::BadPrivateKey(pem_error_message(&e)),
                })
        }
        LABEL_ENCRYPTED => {
            let body = pem_body_lines(data, &begin).map_err(|()| {
                CredentialError::BadPrivateKey("PEM block without its END line".into())
            })?;
            let Some(password) = password else {
                return Err(CredentialError::KeyPasswordRequired);
            };
            decrypt_pkcs8(&body, password)
        }
        other => Err(CredentialError::UnsupportedKey(format!(
            "PEM block type {} (expected PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY or \
             ENCRYPTED PRIVATE KEY)",
            crate::config::echo(&String::from_utf8_lossy(other))
        ))),
    }
}

#[cfg(not(feature = "encrypted-keys"))]
fn decrypt_pkcs8(
    _body: &[&[u8]],
    _password: &[u8],
) -> Result<Zeroizing<PrivateKeyDer<'static>>, CredentialError> {
    Err(CredentialError::UnsupportedKey(
        "ENCRYPTED PRIVATE KEY: this library was built without the encrypted-keys feature".into(),
    ))
}

/// Upper bounds on the key-derivation cost accepted from a key file, so a hostile file cannot
/// stall or exhaust the device. OpenSSL writes 2048 PBKDF2 iterations, and scrypt
/// N = 16384, r = 8, p = 1 (16 MiB); it refuses scrypt above 32 MiB by default.
#[cfg(feature = "encrypted-keys")]
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Bytes of scrypt working memory (128 * N * r).
#[cfg(feature = "encrypted-keys")]
const MAX_SCRYPT_MEMORY: u64 = 64 * 1024 * 1024;
#[cfg(feature = "encrypted-keys")]
const MAX_SCRYPT_PARALLELIZATION: u16 = 16;

#[cfg(feature = "encrypted-keys")]
fn decrypt_pkcs8(
    body: &[&[u8]],
    password: &[u8],
) -> Result<Zeroizing<PrivateKeyDer<'static>>, CredentialError> {
    use base64::Engine as _;
    use pkcs8::pkcs5::{self, EncryptionScheme, pbes2};

    let b64: Vec<u8> = body
        .iter()
        .flat_map(|l| l.iter().copied())
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .map_err(|_| CredentialError::BadPrivateKey("invalid base64 in a PEM block".into()))?;
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).map_err(|_| {
        CredentialError::BadPrivateKey("malformed ENCRYPTED PRIVATE KEY structure".into())
    })?;

    match &info.encryption_algorithm {
        EncryptionScheme::Pbes2(params) => match &params.kdf {
            pbes2::Kdf::Pbkdf2(p) if p.iteration_count > MAX_PBKDF2_ITERATIONS => {
                return Err(CredentialError::UnsupportedKey(format!(
                    "PBKDF2 iteration count {} is above the limit of {MAX_PBKDF2_ITERATIONS}",
                    p.iteration_count
                )));
            }
            pbes2::Kdf::Scrypt(p) => {
                let n = p.cost_parameter;
                let r = u64::from(p.block_size);
                if !n.is_power_of_two() || r == 0 || p.parallelization == 0 {
                    return Err(CredentialError::BadPrivateKey(
                        "invalid scrypt parameters".into(),
                    ));
                }
                if n.saturating_mul(r).saturating_mul(128) > MAX_SCRYPT_MEMORY
                    || p.parallelization > MAX_SCRYPT_PARALLELIZATION
                {
                    return Err(CredentialError::UnsupportedKey(format!(
                        "scrypt parameters N={n} r={r} p={} exceed the limits \
                         ({MAX_SCRYPT_MEMORY} bytes, p <= {MAX_SCRYPT_PARALLELIZATION})",
                        p.parallelization
                    )));
                }
            }
            _ => {}
        },
        EncryptionScheme::Pbes1(_) => {
            return Err(CredentialError::UnsupportedKey(
                "PBES1 key encryption (e.g. PBE-SHA1-3DES); re-encrypt with \
                 `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
                    .into(),
            ));
        }
        _ => {
            return Err(CredentialError::UnsupportedKey(
                "unknown key encryption scheme".into(),
            ));
        }
    }

    let doc = info.decrypt(password).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::DecryptFailed) => {
            CredentialError::WrongKeyPassword
        }
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::UnsupportedAlgorithm { oid }) => {
            CredentialError::UnsupportedKey(format!("key encryption algorithm {oid}"))
        }
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::NoPbes1CryptSupport) => {
            CredentialError::UnsupportedKey("PBES1 key encryption".into())
        }
        pkcs8::Error::EncryptedPrivateKey(e) => {
            CredentialError::BadPrivateKey(format!("ENCRYPTED PRIVATE KEY: {e}"))
        }
        // The ciphertext decrypted (valid padding) but is not DER: a wrong password.
        _ => CredentialError::WrongKeyPassword,
    })?;
    // `doc` zeroizes itself on drop; the copy handed out is held in `Zeroizing`.
    Ok(Zeroizing::new(PrivateKeyDer::Pkcs8(
        doc.as_bytes().to_vec().into(),
    )))
}

// ---------------------------------------------------------------------------------------------
// PKCS#12

#[cfg(feature = "pkcs12")]
mod pkcs12 {
    use super::{CredentialError, X509Credential, load_signing_key};
    use p12_keystore::{Certificate, Pkcs12Archive};
    use rustls::sign::CertifiedKey;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use zeroize::Zeroizing;

    pub(super) fn load(der: &[u8], password: &str) -> Result<X509Credential, CredentialError> {
        // p12-keystore parses untrusted input with third-party code: contain a panic, should
        // one ever happen, as an error.
        let parsed = std::panic::catch_unwind(|| Pkcs12Archive::from_pkcs12(der, password))
            .map_err(|_| CredentialError::Pkcs12("the PKCS#12 parser failed".into()))?;
        let archive = parsed.map_err(map_error)?;
        if archive.keys.is_empty() {
            return Err(CredentialError::NoPrivateKey);
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
                    Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                        by_id
                    }
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

    fn map_error(e: p12_keystore::error::Error) -> CredentialError {
        use p12_keystore::error::Error as E;
        match e {
            // The MAC did not verify; or, for a MAC-less file, the bags did not decrypt.
            E::MacError(_) | E::UnpadError | E::Pkcs5Error(_) => {
                CredentialError::Pkcs12WrongPassword
            }
            E::UnsupportedEncryptionScheme => {
                CredentialError::Pkcs12("unsupported encryption or MAC algorithm".into())
            }
            E::UnsupportedMacAlgorithm => {
                CredentialError::Pkcs12("unsupported MAC algorithm".into())
            }
            E::DerError(e) => CredentialError::Pkcs12(format!(
                "malformed DER ({e}); BER (indefinite length) files are not supported, \
                 re-export with openssl"
            )),
            e => CredentialError::Pkcs12(e.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal DER reader: certificate shape check, subject CN, and key-type diagnostics.

mod der {
    use rustls_pki_types::PrivateKeyDer;

    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const INTEGER: u8 = 0x02;
    const BIT_STRING: u8 = 0x03;
    const OCTET_STRING: u8 = 0x04;
    const OID: u8 = 0x06;
    const CONTEXT_0: u8 = 0xa0;

    /// Splits one DER TLV off `input`: (tag, value, rest). Single-byte tags, definite lengths.
    pub(super) fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // high tag numbers do not occur in the structures read here
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None; // indefinite length, or absurdly long
            }
            let (bytes, after) = rest.split_at_checked(n)?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (value, rest) = rest.split_at_checked(len)?;
        Some((tag, value, rest))
    }

    /// Reads a TLV that must have tag `want`: (value, rest).
    fn take(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
        match read(input)? {
            (tag, value, rest) if tag == want => Some((value, rest)),
            _ => None,
        }
    }

    /// Reads a TLV that must have tag `want` and fill `input` exactly.
    fn take_whole(input: &[u8], want: u8) -> Option<&[u8]> {
        match take(input, want)? {
            (value, []) => Some(value),
            _ => None,
        }
    }

    /// The fields of a TBSCertificate up to and including the subject: (tbs, subject).
    fn tbs_and_subject(cert: &[u8]) -> Option<(&[u8], &[u8])> {
        let cert = take_whole(cert, SEQUENCE)?;
        let (tbs, rest) = take(cert, SEQUENCE)?;
        let (_sig_alg, rest) = take(rest, SEQUENCE)?;
        let (_sig, rest) = take(rest, BIT_STRING)?;
        if !rest.is_empty() {
            return None;
        }
        let mut fields = tbs;
        if let Some((CONTEXT_0, _, rest)) = read(fields) {
            fields = rest; // explicit version
        }
        let (_serial, fields) = take(fields, INTEGER)?;
        let (_sig_alg, fields) = take(fields, SEQUENCE)?;
        let (_issuer, fields) = take(fields, SEQUENCE)?;
        let (_validity, fields) = take(fields, SEQUENCE)?;
        let (subject, fields) = take(fields, SEQUENCE)?;
        let (_spki, _) = take(fields, SEQUENCE)?;
        Some((tbs, subject))
    }

    /// Whether `cert` has the outer shape of an X.509 certificate.
    pub(super) fn is_certificate(cert: &[u8]) -> bool {
        tbs_and_subject(cert).is_some()
    }

    const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

    /// The first subject commonName of `cert`.
    pub(super) fn subject_common_name(cert: &[u8]) -> Option<String> {
        let (_, mut rdns) = tbs_and_subject(cert)?;
        while !rdns.is_empty() {
            let (mut rdn, rest) = take(rdns, SET)?;
            rdns = rest;
            while !rdn.is_empty() {
                let (attr, rest) = take(rdn, SEQUENCE)?;
                rdn = rest;
                let (oid, value) = take(attr, OID)?;
                if oid == OID_COMMON_NAME {
                    let (tag, value, _) = read(value)?;
                    return decode_string(tag, value);
                }
            }
        }
        None
    }

    fn decode_string(tag: u8, value: &[u8]) -> Option<String> {
        match tag {
            // UTF8String, PrintableString, IA5String, VisibleString
            0x0c | 0x13 | 0x16 | 0x1a => String::from_utf8(value.to_vec()).ok(),
            // TeletexString: treated as Latin-1, as most software does
            0x14 => Some(value.iter().map(|&b| char::from(b)).collect()),
            // BMPString: UTF-16BE
            0x1e => {
                let units: Vec<u16> = value
                    .chunks(2)
                    .map(|c| match c {
                        [hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                char::decode_utf16(units)
                    .collect::<Result<String, _>>()
                    .ok()
            }
            // UniversalString: UCS-4BE
            0x1c => value
                .chunks(4)
                .map(|c| match c {
                    [a, b, c, d] => char::from_u32(u32::from_be_bytes([*a, *b, *c, *d])),
                    _ => None,
                })
                .collect::<Option<String>>(),
            _ => None,
        }
    }

    const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const OID_DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
    const OID_X25519: &[u8] = &[0x2b, 0x65, 0x6e];
    const OID_X448: &[u8] = &[0x2b, 0x65, 0x6f];
    const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];
    const OID_DH: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x03, 0x01];
    const OID_SM2: &[u8] = &[0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];

    const MIN_RSA_BITS: usize = 2048;
    const MAX_RSA_BITS: usize = 8192;

    /// Why ring cannot use `key`, when the key is well-formed but of an unsupported kind.
    pub(super) fn unsupported_key_reason(key: &PrivateKeyDer<'_>) -> Option<String> {
        match key {
            PrivateKeyDer::Pkcs1(k) => rsa_reason(k.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(k) => {
                let (ec, _) = take(k.secret_sec1_der(), SEQUENCE)?;
                let (_version, rest) = take(ec, INTEGER)?;
                let (_key, rest) = take(rest, OCTET_STRING)?;
                let (params, _) = take(rest, CONTEXT_0)?;
                let (curve, _) = take(params, OID)?;
                curve_reason(curve)
            }
            PrivateKeyDer::Pkcs8(k) => {
                let (info, _) = take(k.secret_pkcs8_der(), SEQUENCE)?;
                let (_version, rest) = take(info, INTEGER)?;
                let (alg, rest) = take(rest, SEQUENCE)?;
                let (oid, params) = take(alg, OID)?;
                match oid {
                    OID_RSA => {
                        let (inner, _) = take(rest, OCTET_STRING)?;
                        rsa_reason(inner)
                    }
                    OID_RSA_PSS => Some(
                        "RSA-PSS (id-RSASSA-PSS) keys; use a plain rsaEncryption RSA key".into(),
                    ),
                    OID_EC_PUBLIC_KEY => {
                        let (curve, _) = take(params, OID)?;
                        curve_reason(curve)
                    }
                    OID_DSA => Some("DSA keys".into()),
                    OID_ED448 => Some("Ed448 keys".into()),
                    OID_X25519 | OID_X448 | OID_DH => {
                        Some("key-agreement keys (X25519/X448/DH) cannot sign".into())
                    }
                    OID_SM2 => Some("SM2 keys".into()),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn rsa_reason(pkcs1: &[u8]) -> Option<String> {
        let (rsa, _) = take(pkcs1, SEQUENCE)?;
        let (_version, rest) = take(rsa, INTEGER)?;
        let (modulus, _) = take(rest, INTEGER)?;
        let start = modulus.iter().position(|&b| b != 0)?;
        let significant = modulus.get(start..)?;
        let top = significant.first()?;
        let bits = (significant.len() - 1) * 8 + (8 - top.leading_zeros() as usize);
        if bits < MIN_RSA_BITS {
            Some(format!(
                "RSA key of {bits} bits (at least {MIN_RSA_BITS} are required)"
            ))
        } else if bits > MAX_RSA_BITS {
            Some(format!(
                "RSA key of {bits} bits (at most {MAX_RSA_BITS} are supported)"
            ))
        } else {
            None
        }
    }

    fn curve_reason(curve: &[u8]) -> Option<String> {
        const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
        let name = match curve {
            P256 | P384 => return None,
            [0x2b, 0x81, 0x04, 0x00, 0x23] => "P-521",
            [0x2b, 0x81, 0x04, 0x00, 0x0a] => "secp256k1",
            [0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, ..] => "brainpool",
            _ => "this curve",
        };
        Some(format!(
            "ECDSA key on {name} (only P-256 and P-384 are supported)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fixtures/x509/", $name)).as_slice()
        };
    }

    const PASS: &[u8] = b"fixture-pass";

    fn ok(cert: &[u8], key: &[u8], password: Option<&[u8]>) -> X509Credential {
        match X509Credential::from_pem(cert, key, password) {
            Ok(c) => c,
            Err(e) => panic!("expected a credential, got: {e}"),
        }
    }

    fn err(cert: &[u8], key: &[u8], password: Option<&[u8]>) -> CredentialError {
        match X509Credential::from_pem(cert, key, password) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    fn assert_single(cred: &X509Credential, cn: &str) {
        assert_eq!(cred.leaf_common_name().as_deref(), Some(cn));
        assert_eq!(cred.chain().len(), 1);
        let ck = cred.certified_key();
        assert_eq!(ck.cert.len(), 1);
        assert!(ck.keys_match().is_ok());
    }

    #[test]
    fn rsa_pkcs8_and_pkcs1() {
        let cert = fixture!("rsa.cert.pem");
        assert_single(&ok(cert, fixture!("rsa.key.pem"), None), "x509-rsa-device");
        assert_single(
            &ok(cert, fixture!("rsa.pkcs1.key.pem"), None),
            "x509-rsa-device",
        );
    }

    #[test]
    fn p256_sec1_and_pkcs8() {
        let cert = fixture!("p256.cert.pem");
        assert_single(
            &ok(cert, fixture!("p256.sec1.key.pem"), None),
            "x509-p256-device",
        );
        assert_single(
            &ok(cert, fixture!("p256.key.pem"), None),
            "x509-p256-device",
        );
        // A password is ignored for a plaintext key.
        assert_single(
            &ok(cert, fixture!("p256.key.pem"), Some(PASS)),
            "x509-p256-device",
        );
    }

    #[test]
    fn p384_and_ed25519() {
        let p384 = ok(
            fixture!("p384.cert.pem"),
            fixture!("p384.sec1.key.pem"),
            None,
        );
        assert_single(&p384, "x509-p384-device");
        let ed = ok(
            fixture!("ed25519.cert.pem"),
            fixture!("ed25519.key.pem"),
            None,
        );
        assert_single(&ed, "x509-ed25519-device");
    }

    /// The signing key of every supported key type offers a TLS signature scheme and signs.
    #[test]
    fn every_key_type_can_sign() {
        use rustls::SignatureScheme as S;
        let offered = [
            S::ED25519,
            S::ECDSA_NISTP384_SHA384,
            S::ECDSA_NISTP256_SHA256,
            S::RSA_PSS_SHA256,
            S::RSA_PKCS1_SHA256,
        ];
        let cases: [(&[u8], &[u8], S); 5] = [
            (
                fixture!("rsa.cert.pem"),
                fixture!("rsa.pkcs1.key.pem"),
                S::RSA_PSS_SHA256,
            ),
            (
                fixture!("p256.cert.pem"),
                fixture!("p256.sec1.key.pem"),
                S::ECDSA_NISTP256_SHA256,
            ),
            (
                fixture!("p384.cert.pem"),
                fixture!("p384.sec1.key.pem"),
                S::ECDSA_NISTP384_SHA384,
            ),
            (
                fixture!("ed25519.cert.pem"),
                fixture!("ed25519.key.pem"),
                S::ED25519,
            ),
            (
                fixture!("chain.pem"),
                fixture!("chain-leaf.key.pem"),
                S::ECDSA_NISTP256_SHA256,
            ),
        ];
        for (cert, key, expected) in cases {
            let ck = ok(cert, key, None).certified_key();
            let signer = ck.key.choose_scheme(&offered).expect("a scheme");
            assert_eq!(signer.scheme(), expected);
            assert!(
                !signer
                    .sign(b"handshake transcript")
                    .expect("signature")
                    .is_empty()
            );
        }
    }

    #[test]
    fn chain_leaf_first_with_intermediate() {
        let cred = ok(fixture!("chain.pem"), fixture!("chain-leaf.key.pem"), None);
        assert_eq!(
            cred.leaf_common_name().as_deref(),
            Some("x509-chain-device")
        );
        assert_eq!(cred.chain().len(), 2);
        let int = CertificateDer::from_pem_slice(fixture!("chain-int.cert.pem")).unwrap();
        assert_eq!(cred.chain()[1], int);
        assert_eq!(cred.certified_key().cert.len(), 2);
    }

    #[test]
    fn chain_in_wrong_order_is_a_mismatch() {
        let mut reversed = fixture!("chain-int.cert.pem").to_vec();
        reversed.extend_from_slice(fixture!("chain-leaf.cert.pem"));
        let e = err(&reversed, fixture!("chain-leaf.key.pem"), None);
        assert_eq!(e, CredentialError::KeyMismatch);
    }

    #[test]
    fn combined_cert_and_key_file() {
        let mut both = fixture!("p256.key.pem").to_vec();
        both.extend_from_slice(fixture!("p256.cert.pem"));
        assert_single(&ok(&both, &both, None), "x509-p256-device");
    }

    #[test]
    fn crlf_line_endings() {
        let crlf = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .replace('\n', "\r\n")
                .into_bytes()
        };
        let cert = crlf(fixture!("p256.cert.pem"));
        assert_single(
            &ok(&cert, &crlf(fixture!("p256.key.pem")), None),
            "x509-p256-device",
        );
        if cfg!(feature = "encrypted-keys") {
            let key = crlf(fixture!("p256.enc.key.pem"));
            assert_single(&ok(&cert, &key, Some(PASS)), "x509-p256-device");
        }
    }

    #[cfg(feature = "encrypted-keys")]
    #[test]
    fn encrypted_pkcs8() {
        let rsa = ok(
            fixture!("rsa.cert.pem"),
            fixture!("rsa.enc.key.pem"),
            Some(PASS),
        );
        assert_single(&rsa, "x509-rsa-device");
        let cert = fixture!("p256.cert.pem");
        assert_single(
            &ok(cert, fixture!("p256.enc.key.pem"), Some(PASS)),
            "x509-p256-device",
        );
        let scrypt = ok(cert, fixture!("p256.scrypt.key.pem"), Some(PASS));
        assert_single(&scrypt, "x509-p256-device");
    }

    #[cfg(feature = "encrypted-keys")]
    #[test]
    fn encrypted_pkcs8_wrong_password() {
        let cert = fixture!("p256.cert.pem");
        for key in [
            fixture!("p256.enc.key.pem"),
            fixture!("p256.scrypt.key.pem"),
        ] {
            for pw in [b"wrong".as_slice(), b"", b"fixture-pas", b"fixture-pass "] {
                assert_eq!(err(cert, key, Some(pw)), CredentialError::WrongKeyPassword);
            }
        }
        let e = err(
            fixture!("rsa.cert.pem"),
            fixture!("rsa.enc.key.pem"),
            Some(b"nope"),
        );
        assert_eq!(e, CredentialError::WrongKeyPassword);
    }

    #[cfg(not(feature = "encrypted-keys"))]
    #[test]
    fn encrypted_pkcs8_without_feature() {
        let e = err(
            fixture!("p256.cert.pem"),
            fixture!("p256.enc.key.pem"),
            Some(PASS),
        );
        assert!(matches!(&e, CredentialError::UnsupportedKey(m) if m.contains("encrypted-keys")));
    }

    #[test]
    fn encrypted_key_needs_password() {
        let e = err(
            fixture!("p256.cert.pem"),
            fixture!("p256.enc.key.pem"),
            None,
        );
        assert_eq!(e, CredentialError::KeyPasswordRequired);
    }

    #[test]
    fn legacy_openssl_encryption_is_explained() {
        let key = fixture!("p256.legacy-enc.key.pem");
        let e = err(fixture!("p256.cert.pem"), key, Some(PASS));
        assert!(matches!(&e, CredentialError::UnsupportedKey(m) if m.contains("Proc-Type")));
    }

    #[test]
    fn unsupported_key_types() {
        let e = err(
            fixture!("rsa1024.cert.pem"),
            fixture!("rsa1024.key.pem"),
            None,
        );
        assert!(
            matches!(&e, CredentialError::UnsupportedKey(m) if m.contains("1024 bits")),
            "{e}"
        );
        let e = err(
            fixture!("p521.cert.pem"),
            fixture!("p521.sec1.key.pem"),
            None,
        );
        assert!(
            matches!(&e, CredentialError::UnsupportedKey(m) if m.contains("P-521")),
            "{e}"
        );
        let dsa = b"-----BEGIN DSA PRIVATE KEY-----\nMAA=\n-----END DSA PRIVATE KEY-----\n";
        let e = err(fixture!("p256.cert.pem"), dsa, None);
        assert!(
            matches!(&e, CredentialError::UnsupportedKey(m) if m.contains("DSA")),
            "{e}"
        );
    }

    #[test]
    fn mismatched_pairs() {
        let e = err(
            fixture!("p256.cert.pem"),
            fixture!("mismatch.key.pem"),
            None,
        );
        assert_eq!(e, CredentialError::KeyMismatch);
        let e = err(fixture!("rsa.cert.pem"), fixture!("p256.key.pem"), None);
        assert_eq!(e, CredentialError::KeyMismatch);
        let e = err(
            fixture!("p256.cert.pem"),
            fixture!("p384.sec1.key.pem"),
            None,
        );
        assert_eq!(e, CredentialError::KeyMismatch);
    }

    #[test]
    fn no_certificate() {
        let key = fixture!("p256.key.pem");
        assert_eq!(err(b"", key, None), CredentialError::NoCertificate);
        assert_eq!(err(key, key, None), CredentialError::NoCertificate);
        assert_eq!(
            err(b"hello world", key, None),
            CredentialError::NoCertificate
        );
    }

    #[test]
    fn bad_certificate() {
        let key = fixture!("p256.key.pem");
        let bad_b64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            err(bad_b64, key, None),
            CredentialError::BadCertificate(_)
        ));
        let not_x509 = b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            err(not_x509, key, None),
            CredentialError::BadCertificate(_)
        ));
        let empty = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            err(empty, key, None),
            CredentialError::BadCertificate(_)
        ));
        let unterminated = b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n";
        assert!(matches!(
            err(unterminated, key, None),
            CredentialError::BadCertificate(_)
        ));
        // A malformed second certificate is reported too.
        let mut chain = fixture!("p256.cert.pem").to_vec();
        chain.extend_from_slice(not_x509);
        let e = err(&chain, key, None);
        assert!(
            matches!(&e, CredentialError::BadCertificate(m) if m.contains("#2")),
            "{e}"
        );
    }

    #[test]
    fn no_private_key() {
        let cert = fixture!("p256.cert.pem");
        assert_eq!(err(cert, b"", None), CredentialError::NoPrivateKey);
        assert_eq!(err(cert, cert, None), CredentialError::NoPrivateKey);
        assert_eq!(
            err(cert, b"\x00\xff garbage", None),
            CredentialError::NoPrivateKey
        );
    }

    #[test]
    fn bad_private_key() {
        let cert = fixture!("p256.cert.pem");
        let bad_b64 = b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            err(cert, bad_b64, None),
            CredentialError::BadPrivateKey(_)
        ));
        let not_key = b"-----BEGIN PRIVATE KEY-----\nMAMCAQE=\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            err(cert, not_key, None),
            CredentialError::BadPrivateKey(_)
        ));
        let enc = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAMCAQE=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = err(cert, enc, Some(PASS));
        assert!(matches!(
            e,
            CredentialError::BadPrivateKey(_) | CredentialError::UnsupportedKey(_)
        ));
    }

    #[test]
    fn debug_and_display_leak_no_secrets() {
        let cred = ok(fixture!("p256.cert.pem"), fixture!("p256.key.pem"), None);
        assert_eq!(
            format!("{cred:?}"),
            r#"X509Credential { leaf_common_name: Some("x509-p256-device"), chain_len: 1, .. }"#
        );
        let key_pem = String::from_utf8_lossy(fixture!("p256.key.pem")).into_owned();
        let key_b64_line = key_pem.lines().nth(1).unwrap_or_default();
        let errors = [
            err(
                fixture!("p256.cert.pem"),
                fixture!("p256.enc.key.pem"),
                Some(b"secret-pw"),
            ),
            err(
                fixture!("p256.cert.pem"),
                fixture!("mismatch.key.pem"),
                None,
            ),
            err(fixture!("p256.cert.pem"), &key_pem.as_bytes()[..120], None),
        ];
        for e in errors {
            for s in [format!("{e}"), format!("{e:?}")] {
                assert!(!s.contains("secret-pw") && !s.contains(key_b64_line), "{s}");
                assert!(!s.contains('\n'), "{s}");
            }
        }
    }

    #[test]
    fn every_error_displays_one_line() {
        let all = [
            CredentialError::NoCertificate,
            CredentialError::BadCertificate("x".into()),
            CredentialError::NoPrivateKey,
            CredentialError::BadPrivateKey("x".into()),
            CredentialError::UnsupportedKey("x".into()),
            CredentialError::KeyPasswordRequired,
            CredentialError::WrongKeyPassword,
            CredentialError::KeyMismatch,
            CredentialError::Pkcs12("x".into()),
            CredentialError::Pkcs12WrongPassword,
        ];
        for e in all {
            let s = e.to_string();
            assert!(!s.is_empty() && !s.contains('\n'));
        }
    }

    /// Certificate PEM, key PEM, key password.
    type PemCase = (&'static [u8], &'static [u8], Option<&'static [u8]>);

    /// Truncations and single-byte corruptions of valid inputs never panic.
    #[test]
    fn garbage_and_truncated_pem_do_not_panic() {
        let pairs: [PemCase; 4] = [
            (fixture!("chain.pem"), fixture!("chain-leaf.key.pem"), None),
            (
                fixture!("rsa.cert.pem"),
                fixture!("rsa.pkcs1.key.pem"),
                None,
            ),
            (
                fixture!("p384.cert.pem"),
                fixture!("p384.sec1.key.pem"),
                None,
            ),
            (
                fixture!("p256.cert.pem"),
                fixture!("p256.scrypt.key.pem"),
                Some(PASS),
            ),
        ];
        for (cert, key, pw) in pairs {
            for len in (0..cert.len()).step_by(13) {
                let _ = X509Credential::from_pem(&cert[..len], key, pw);
            }
            for len in (0..key.len()).step_by(11) {
                let _ = X509Credential::from_pem(cert, &key[..len], pw);
            }
        }
        // Corrupt decoded DER (re-encoded as PEM) so the DER readers see damaged structures.
        let cert_der = CertificateDer::from_pem_slice(fixture!("p256.cert.pem")).unwrap();
        let key_der = PrivateKeyDer::from_pem_slice(fixture!("p256.key.pem")).unwrap();
        for i in 0..cert_der.len() {
            let mut bad = cert_der.to_vec();
            bad[i] ^= 0x80;
            let _ = X509Credential::from_pem(
                &to_pem("CERTIFICATE", &bad),
                fixture!("p256.key.pem"),
                None,
            );
            bad.truncate(i);
            let _ = X509Credential::from_pem(
                &to_pem("CERTIFICATE", &bad),
                fixture!("p256.key.pem"),
                None,
            );
        }
        for i in 0..key_der.secret_der().len() {
            let mut bad = key_der.secret_der().to_vec();
            bad[i] ^= 0x80;
            let _ = X509Credential::from_pem(
                fixture!("p256.cert.pem"),
                &to_pem("PRIVATE KEY", &bad),
                None,
            );
            bad.truncate(i);
            let _ = X509Credential::from_pem(
                fixture!("p256.cert.pem"),
                &to_pem("PRIVATE KEY", &bad),
                None,
            );
        }
        #[cfg(feature = "encrypted-keys")]
        {
            // PBKDF2 (cheap in debug builds): every byte. scrypt (slow in debug builds): only
            // the bytes before the salt (structure and algorithm identifiers), and truncations.
            let pbkdf2 = pem_body_der(fixture!("p256.enc.key.pem"));
            let scrypt = pem_body_der(fixture!("p256.scrypt.key.pem"));
            for (enc, flip_until) in [(&pbkdf2, pbkdf2.len()), (&scrypt, 32)] {
                for i in 0..enc.len() {
                    let mut bad = enc.clone();
                    if i < flip_until {
                        bad[i] ^= 0x41;
                        let pem = to_pem("ENCRYPTED PRIVATE KEY", &bad);
                        let _ =
                            X509Credential::from_pem(fixture!("p256.cert.pem"), &pem, Some(PASS));
                    }
                    bad.truncate(i);
                    let pem = to_pem("ENCRYPTED PRIVATE KEY", &bad);
                    let _ = X509Credential::from_pem(fixture!("p256.cert.pem"), &pem, Some(PASS));
                }
            }
        }
        for junk in [
            &b"-----BEGIN "[..],
            b"-----BEGIN PRIVATE KEY-----",
            b"-----BEGIN PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n",
            b"-----BEGIN CERTIFICATE----\nAAAA\n-----END CERTIFICATE-----\n",
            b"\xff\xfe\x00-----BEGIN\n",
        ] {
            let _ = X509Credential::from_pem(junk, junk, Some(b""));
            let _ = X509Credential::from_pem(fixture!("p256.cert.pem"), junk, None);
        }
    }

    /// Scrypt parameters that would panic in pkcs5 (N = 0) or exhaust memory are refused.
    #[cfg(feature = "encrypted-keys")]
    #[test]
    fn hostile_scrypt_parameters_are_refused() {
        let der = pem_body_der(fixture!("p256.scrypt.key.pem"));
        // openssl writes N = 16384 as INTEGER 02 02 40 00; find and replace it.
        let pos = der
            .windows(4)
            .position(|w| w == [0x02, 0x02, 0x40, 0x00])
            .unwrap();
        for (n_hi, n_lo) in [(0x00u8, 0x00u8), (0x40, 0x01), (0x7f, 0xff)] {
            let mut bad = der.clone();
            bad[pos + 2] = n_hi;
            bad[pos + 3] = n_lo;
            let pem = to_pem("ENCRYPTED PRIVATE KEY", &bad);
            let e = err(fixture!("p256.cert.pem"), &pem, Some(PASS));
            assert!(
                matches!(
                    e,
                    CredentialError::BadPrivateKey(_) | CredentialError::UnsupportedKey(_)
                ),
                "{e}"
            );
        }
    }

    fn to_pem(label: &str, der: &[u8]) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n").into_bytes()
    }

    #[cfg(feature = "encrypted-keys")]
    fn pem_body_der(pem: &[u8]) -> Vec<u8> {
        use base64::Engine as _;
        let text = String::from_utf8_lossy(pem);
        let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    #[test]
    fn der_reader_edge_cases() {
        assert!(der::read(&[]).is_none());
        assert!(der::read(&[0x30]).is_none());
        assert!(der::read(&[0x30, 0x80, 0x00, 0x00]).is_none()); // indefinite length
        assert!(der::read(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none()); // 5 length bytes
        assert!(der::read(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none()); // too long
        assert!(der::read(&[0x1f, 0x01, 0x00]).is_none()); // high tag number
        assert_eq!(
            der::read(&[0x04, 0x01, 0xaa, 0x05]),
            Some((0x04, &[0xaa][..], &[0x05][..]))
        );
        assert!(!der::is_certificate(&[0x30, 0x00]));
        assert_eq!(der::subject_common_name(&[0x30, 0x00]), None);
    }

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match u8::try_from(content.len()) {
            Ok(n) if n < 0x80 => out.push(n),
            Ok(n) => out.extend([0x81, n]),
            Err(_) => out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// A structurally valid certificate whose subject has the given (OID, tag, value) attributes.
    fn synthetic_cert(attrs: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let rdns: Vec<u8> = attrs
            .iter()
            .flat_map(|(oid, tag, value)| {
                let atv = [tlv(0x06, oid), tlv(*tag, value)].concat();
                tlv(0x31, &tlv(0x30, &atv))
            })
            .collect();
        let tbs = [
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            tlv(0x30, &[]),
            tlv(0x30, &[]),
            tlv(0x30, &[]),
            tlv(0x30, &rdns),
            tlv(0x30, &[]),
        ]
        .concat();
        tlv(
            0x30,
            &[tlv(0x30, &tbs), tlv(0x30, &[]), tlv(0x03, &[0])].concat(),
        )
    }

    #[test]
    fn common_name_string_types() {
        const CN: &[u8] = &[0x55, 0x04, 0x03];
        const O: &[u8] = &[0x55, 0x04, 0x0a];
        let cn = |attrs: &[(&[u8], u8, &[u8])]| {
            let cert = synthetic_cert(attrs);
            assert!(der::is_certificate(&cert));
            der::subject_common_name(&cert)
        };
        assert_eq!(
            cn(&[(CN, 0x0c, "dévice-1".as_bytes())]).as_deref(),
            Some("dévice-1")
        );
        assert_eq!(cn(&[(CN, 0x13, b"dev-2")]).as_deref(), Some("dev-2"));
        assert_eq!(cn(&[(CN, 0x16, b"dev-3")]).as_deref(), Some("dev-3"));
        assert_eq!(cn(&[(CN, 0x14, b"d\xe9v")]).as_deref(), Some("dév"));
        assert_eq!(
            cn(&[(CN, 0x1e, &[0, b'b', 0x00, 0xe9])]).as_deref(),
            Some("bé")
        );
        assert_eq!(cn(&[(CN, 0x1c, &[0, 0, 0, b'u'])]).as_deref(), Some("u"));
        assert_eq!(
            cn(&[
                (O, 0x0c, b"org"),
                (CN, 0x0c, b"first"),
                (CN, 0x0c, b"second")
            ])
            .as_deref(),
            Some("first")
        );
        assert_eq!(cn(&[(O, 0x0c, b"org")]), None);
        assert_eq!(cn(&[]), None);
        // Invalid encodings give no CN rather than a panic or garbage.
        assert_eq!(cn(&[(CN, 0x0c, &[0xff, 0xfe])]), None);
        assert_eq!(cn(&[(CN, 0x1e, &[0, b'a', 0])]), None);
        assert_eq!(cn(&[(CN, 0x1e, &[0xd8, 0x00])]), None); // lone surrogate
        assert_eq!(cn(&[(CN, 0x1c, &[0, 0x11, 0, 0])]), None); // beyond U+10FFFF
        assert_eq!(cn(&[(CN, 0x04, b"octets")]), None);
        assert_eq!(der::subject_common_name(b"not a cert"), None);
    }

    #[cfg(feature = "pkcs12")]
    mod pkcs12 {
        use super::*;

        fn ok12(der: &[u8], pw: &str) -> X509Credential {
            match X509Credential::from_pkcs12(der, pw) {
                Ok(c) => c,
                Err(e) => panic!("expected a credential, got: {e}"),
            }
        }

        fn err12(der: &[u8], pw: &str) -> CredentialError {
            match X509Credential::from_pkcs12(der, pw) {
                Ok(c) => panic!("expected an error, got {c:?}"),
                Err(e) => e,
            }
        }

        #[test]
        fn modern_rsa() {
            assert_single(
                &ok12(fixture!("rsa.p12"), "fixture-pass"),
                "x509-rsa-device",
            );
        }

        #[test]
        fn legacy_p256() {
            assert_single(
                &ok12(fixture!("p256-legacy.p12"), "fixture-pass"),
                "x509-p256-device",
            );
        }

        #[test]
        fn empty_password() {
            assert_single(&ok12(fixture!("p256-nopass.p12"), ""), "x509-p256-device");
            assert_eq!(
                err12(fixture!("p256-nopass.p12"), "x"),
                CredentialError::Pkcs12WrongPassword
            );
        }

        #[test]
        fn chain_excludes_root() {
            let cred = ok12(fixture!("chain.p12"), "fixture-pass");
            assert_eq!(
                cred.leaf_common_name().as_deref(),
                Some("x509-chain-device")
            );
            let pem_chain = ok(fixture!("chain.pem"), fixture!("chain-leaf.key.pem"), None);
            assert_eq!(cred.chain(), pem_chain.chain());
        }

        #[test]
        fn wrong_password() {
            for f in [
                fixture!("rsa.p12"),
                fixture!("p256-legacy.p12"),
                fixture!("chain.p12"),
            ] {
                assert_eq!(err12(f, "wrong"), CredentialError::Pkcs12WrongPassword);
                assert_eq!(err12(f, ""), CredentialError::Pkcs12WrongPassword);
            }
        }

        #[test]
        fn no_key() {
            assert_eq!(
                err12(fixture!("nokey.p12"), "fixture-pass"),
                CredentialError::NoPrivateKey
            );
        }

        #[test]
        fn garbage() {
            assert!(matches!(err12(b"", ""), CredentialError::Pkcs12(_)));
            assert!(matches!(
                err12(b"not a pfx", "x"),
                CredentialError::Pkcs12(_)
            ));
            assert!(matches!(
                err12(fixture!("p256.cert.pem"), "x"),
                CredentialError::Pkcs12(_)
            ));
        }

        #[test]
        fn truncated_and_corrupted_do_not_panic() {
            for f in [
                fixture!("rsa.p12"),
                fixture!("p256-legacy.p12"),
                fixture!("p256-nopass.p12"),
            ] {
                for len in (0..f.len()).step_by(29) {
                    assert!(X509Credential::from_pkcs12(&f[..len], "fixture-pass").is_err());
                }
                for i in (0..f.len()).step_by(31) {
                    let mut bad = f.to_vec();
                    bad[i] ^= 0x55;
                    let _ = X509Credential::from_pkcs12(&bad, "fixture-pass");
                    let _ = X509Credential::from_pkcs12(&bad, "");
                }
            }
        }
    }
}
