//! Private keys the library never sees: anything that signs a digest.
//!
//! Secure elements (ATECC608, OPTIGA, SE050), PKCS#11 tokens and TPMs sign digests, not
//! messages. [`DigestSigner`] is the one thing an X.509 credential needs from such a key: the
//! library hashes the TLS handshake message itself and hands over the digest and the
//! [`SignatureScheme`]; the signer returns the signature.

use std::fmt;

use crate::error::Result;

/// The signature schemes a [`DigestSigner`] may be asked for. The key type decides which:
/// ECDSA P-256 keys get [`EcdsaP256Sha256`](Self::EcdsaP256Sha256), P-384 keys
/// [`EcdsaP384Sha384`](Self::EcdsaP384Sha384), RSA keys (2048 bits and more) either RSA scheme,
/// as the server offers (TLS 1.3 allows only PSS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// ECDSA over P-256; the digest is SHA-256 (32 bytes).
    EcdsaP256Sha256,
    /// ECDSA over P-384; the digest is SHA-384 (48 bytes).
    EcdsaP384Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-256; the digest is 32 bytes and the signer applies the
    /// EMSA-PKCS1-v1_5 encoding (the DigestInfo prefix for SHA-256) itself.
    RsaPkcs1Sha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt; the digest is 32 bytes.
    RsaPssSha256,
}

impl SignatureScheme {
    /// The length in bytes of the digest the signer receives.
    pub const fn digest_len(self) -> usize {
        match self {
            Self::EcdsaP384Sha384 => 48,
            _ => 32,
        }
    }

    /// Whether this is an ECDSA scheme.
    pub const fn is_ecdsa(self) -> bool {
        matches!(self, Self::EcdsaP256Sha256 | Self::EcdsaP384Sha384)
    }
}

/// A private key held elsewhere (a secure element, a PKCS#11 token, a TPM, a signing service)
/// that signs digests.
///
/// `sign_digest` is called on the thread that drives the registration, inside a library call:
/// once when the credential is built (the library checks one signature against the
/// certificate's public key before any traffic) and once per TLS handshake. It may block; the
/// registration deadline keeps running meanwhile. It may be called concurrently when the same
/// signer is shared by several clients on several threads.
pub trait DigestSigner: Send + Sync {
    /// Signs `digest` (the hash of the message, [`SignatureScheme::digest_len`] bytes).
    ///
    /// Returns, for ECDSA, the signature either as raw `r || s` (each big-endian, padded to the
    /// curve size: 64 bytes for P-256, 96 for P-384) or as a DER `ECDSA-Sig-Value`; the library
    /// accepts both and sends DER. For RSA, the signature (as long as the modulus).
    fn sign_digest(&self, scheme: SignatureScheme, digest: &[u8]) -> Result<Vec<u8>>;

    /// A short description for logs and errors (never key material), e.g.
    /// `"PKCS#11 object 'device-key'"`.
    fn describe(&self) -> String;
}

impl fmt::Debug for dyn DigestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DigestSigner({})", self.describe())
    }
}
