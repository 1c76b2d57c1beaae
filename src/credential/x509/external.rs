//! A [`DigestSigner`] as a rustls signing key: the library hashes each TLS handshake message,
//! the signer (a C callback, a PKCS#11 token, a TPM) signs the digest, and the result is
//! checked for shape and converted to what TLS sends (DER for ECDSA).

use std::fmt;
use std::sync::Arc;

use ring::digest;
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme as TlsScheme};
use rustls_pki_types::CertificateDer;

use super::CredentialError;
use super::der::{self, PublicKeyKind};
use crate::credential::{DigestSigner, SignatureScheme};
use crate::error::{Error, ErrorKind};

/// A signing key whose private half lives behind a [`DigestSigner`].
pub(super) struct ExternalKey {
    signer: Arc<dyn DigestSigner>,
    /// The schemes the signer was seen to produce valid signatures for, in preference order.
    schemes: Vec<SignatureScheme>,
    algorithm: SignatureAlgorithm,
    /// The length of an RSA signature with this key (0 for ECDSA).
    rsa_len: usize,
}

impl fmt::Debug for ExternalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalKey")
            .field("signer", &self.signer.describe())
            .field("schemes", &self.schemes)
            .finish()
    }
}

fn tls_scheme(s: SignatureScheme) -> TlsScheme {
    match s {
        SignatureScheme::EcdsaP256Sha256 => TlsScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::EcdsaP384Sha384 => TlsScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::RsaPkcs1Sha256 => TlsScheme::RSA_PKCS1_SHA256,
        SignatureScheme::RsaPssSha256 => TlsScheme::RSA_PSS_SHA256,
    }
}

fn verification_alg(
    s: SignatureScheme,
) -> &'static dyn rustls_pki_types::SignatureVerificationAlgorithm {
    match s {
        SignatureScheme::EcdsaP256Sha256 => webpki::ring::ECDSA_P256_SHA256,
        SignatureScheme::EcdsaP384Sha384 => webpki::ring::ECDSA_P384_SHA384,
        SignatureScheme::RsaPkcs1Sha256 => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        SignatureScheme::RsaPssSha256 => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    }
}

/// Signs `message` under `scheme` through `signer` and returns the signature as TLS sends it.
fn sign_message(
    signer: &dyn DigestSigner,
    scheme: SignatureScheme,
    message: &[u8],
    rsa_len: usize,
) -> Result<Vec<u8>, Error> {
    let alg = match scheme {
        SignatureScheme::EcdsaP384Sha384 => &digest::SHA384,
        _ => &digest::SHA256,
    };
    let d = digest::digest(alg, message);
    let sig = signer.sign_digest(scheme, d.as_ref()).map_err(|e| {
        Error::new(
            ErrorKind::SignerFailed,
            format!("the signer {} failed: {}", signer.describe(), e.message),
        )
    })?;
    let field = scheme.digest_len();
    if scheme.is_ecdsa() {
        if der::is_ecdsa_der(&sig, field) {
            return Ok(sig);
        }
        if sig.len() == 2 * field {
            return Ok(der::ecdsa_raw_to_der(&sig));
        }
        return Err(Error::new(
            ErrorKind::SignerFailed,
            format!(
                "the signer {} returned {} bytes for {scheme:?}: expected {} bytes of raw r||s or a DER ECDSA-Sig-Value",
                signer.describe(),
                sig.len(),
                2 * field
            ),
        ));
    }
    if sig.len() != rsa_len {
        return Err(Error::new(
            ErrorKind::SignerFailed,
            format!(
                "the signer {} returned {} bytes for {scheme:?}: an RSA signature with this key is {rsa_len} bytes",
                signer.describe(),
                sig.len()
            ),
        ));
    }
    Ok(sig)
}

impl ExternalKey {
    /// Builds the key for `leaf` and checks, with a fresh random message, that `signer`
    /// produces signatures that verify against the leaf's public key.
    pub(super) fn check(
        signer: Arc<dyn DigestSigner>,
        leaf: &CertificateDer<'_>,
    ) -> Result<ExternalKey, Error> {
        let bad_cert = |m: &str| Error::from(CredentialError::BadCertificate(m.to_string()));
        let kind = der::public_key_kind(leaf)
            .ok_or_else(|| bad_cert("the leaf certificate is not valid X.509 DER"))?;
        let (candidates, algorithm, rsa_len): (&[SignatureScheme], _, usize) = match kind {
            PublicKeyKind::EcP256 => (
                &[SignatureScheme::EcdsaP256Sha256],
                SignatureAlgorithm::ECDSA,
                0,
            ),
            PublicKeyKind::EcP384 => (
                &[SignatureScheme::EcdsaP384Sha384],
                SignatureAlgorithm::ECDSA,
                0,
            ),
            PublicKeyKind::Rsa(bits) if (2048..=8192).contains(&bits) => (
                &[
                    SignatureScheme::RsaPssSha256,
                    SignatureScheme::RsaPkcs1Sha256,
                ],
                SignatureAlgorithm::RSA,
                bits.div_ceil(8),
            ),
            PublicKeyKind::Rsa(bits) => {
                return Err(CredentialError::UnsupportedKey(format!(
                    "RSA-{bits} certificate key (an external signer needs RSA 2048-8192 bits)"
                ))
                .into());
            }
            PublicKeyKind::Other => {
                return Err(CredentialError::UnsupportedKey(
                    "the certificate's key is not ECDSA P-256/P-384 or RSA, which external signers support"
                        .into(),
                )
                .into());
            }
        };
        let ee = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| bad_cert(&format!("the leaf certificate could not be parsed: {e}")))?;
        let mut message = [0u8; 48];
        message[..16].copy_from_slice(b"dps signer check");
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut message[16..])
            .map_err(|_| Error::new(ErrorKind::Internal, "no system randomness"))?;
        let mut schemes = Vec::new();
        let mut first_error = None;
        for &scheme in candidates {
            let outcome = sign_message(signer.as_ref(), scheme, &message, rsa_len).and_then(|sig| {
                ee.verify_signature(verification_alg(scheme), &message, &sig)
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::KeyMismatch,
                            format!(
                                "a {scheme:?} signature from {} does not verify against the leaf certificate's public key: the signer does not hold this certificate's key",
                                signer.describe()
                            ),
                        )
                    })
            });
            match outcome {
                Ok(()) => schemes.push(scheme),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if schemes.is_empty() {
            return Err(first_error
                .unwrap_or_else(|| Error::new(ErrorKind::Internal, "no signature scheme tried")));
        }
        Ok(ExternalKey {
            signer,
            schemes,
            algorithm,
            rsa_len,
        })
    }
}

impl ExternalKey {
    /// An RSA signer that cannot make PSS signatures cannot sign a TLS 1.3 handshake.
    pub(super) fn tls12_only(&self) -> bool {
        self.algorithm == SignatureAlgorithm::RSA
            && !self.schemes.contains(&SignatureScheme::RsaPssSha256)
    }
}

impl SigningKey for ExternalKey {
    fn choose_scheme(&self, offered: &[TlsScheme]) -> Option<Box<dyn Signer>> {
        let scheme = self
            .schemes
            .iter()
            .copied()
            .find(|s| offered.contains(&tls_scheme(*s)))?;
        Some(Box::new(ExternalSigner {
            signer: Arc::clone(&self.signer),
            scheme,
            rsa_len: self.rsa_len,
        }))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }
}

struct ExternalSigner {
    signer: Arc<dyn DigestSigner>,
    scheme: SignatureScheme,
    rsa_len: usize,
}

impl fmt::Debug for ExternalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalSigner")
            .field("signer", &self.signer.describe())
            .field("scheme", &self.scheme)
            .finish()
    }
}

/// Carries a signer failure through rustls so the transport reports `SignerFailed`.
#[derive(Debug)]
pub(crate) struct SignerFailure(pub(crate) Error);

impl fmt::Display for SignerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for SignerFailure {}

impl Signer for ExternalSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        sign_message(self.signer.as_ref(), self.scheme, message, self.rsa_len)
            .map_err(|e| rustls::Error::Other(rustls::OtherError(Arc::new(SignerFailure(e)))))
    }

    fn scheme(&self) -> TlsScheme {
        tls_scheme(self.scheme)
    }
}
