//! Certificate issuance from a CSR (api-version 2025-07-01-preview, experimental): the key
//! ([`CsrKey`]: generated, from PEM, or held by a signer) and the request made with it. The
//! PKCS#10 writer is in `pkcs10`, the checks on the `issuedCertificateChain` in `issued`, RSA
//! key generation (cargo feature `rsa-keygen`) in `rsa_keygen`.
//!
//! The request is signed ecdsa-with-SHA256 (P-256), ecdsa-with-SHA384 (P-384) or
//! sha256WithRSAEncryption (RSA). The library generates ECDSA P-256 and P-384 keys with ring;
//! ring cannot generate RSA keys, so RSA-2048 generation takes the `rsa-keygen` feature (the
//! RustCrypto `rsa` crate generates the key; ring signs with it).

mod issued;
mod pkcs10;
#[cfg(feature = "rsa-keygen")]
mod rsa_keygen;

pub(crate) use issued::check_issued_chain;

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, EcdsaKeyPair};
use rustls::SignatureAlgorithm;
use rustls::SignatureScheme as TlsScheme;
use rustls::sign::SigningKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use zeroize::Zeroizing;

use self::pkcs10::{
    OID_ECDSA_SHA256, OID_ECDSA_SHA384, alg_ecdsa, alg_rsa_sha256, verify_with_spki,
};
use super::der::{self, PublicKeyKind};
use super::load_signing_key;
use super::pemfile::parse_key_pem;
use crate::credential::{DigestSigner, SignatureScheme};
use crate::error::{Error, ErrorKind, Result};

/// The kind of key the library generates for a CSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrAlgorithm {
    /// ECDSA on P-256, the CSR signed ecdsa-with-SHA256 (the default).
    P256,
    /// ECDSA on P-384, the CSR signed ecdsa-with-SHA384 (the curve Microsoft's documentation
    /// names for the preview).
    P384,
    /// RSA-2048 (public exponent 65537), the CSR signed sha256WithRSAEncryption. Needs the
    /// cargo feature `rsa-keygen` (the RustCrypto `rsa` crate; ring cannot generate RSA
    /// keys): without it the configuration is refused with [`ErrorKind::Unsupported`].
    /// Generation (a random prime search) took 28-204 ms, median 110 ms, in a release build
    /// on x86_64; expect several times that on small CPUs.
    Rsa2048,
}

impl CsrAlgorithm {
    /// Whether this build can generate keys of this kind (RSA-2048 needs `rsa-keygen`).
    pub fn is_supported(self) -> bool {
        !matches!(self, CsrAlgorithm::Rsa2048) || cfg!(feature = "rsa-keygen")
    }
}

/// The refusal for RSA-2048 generation in a build without the `rsa-keygen` feature.
pub(crate) fn rsa_keygen_unsupported() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "this build of dps cannot generate RSA keys (cargo feature `rsa-keygen`): generate \
         an ECDSA key (P-256, P-384), or bring the RSA key as PEM",
    )
}

/// A new PKCS#8 private key (DER, zeroized on drop) of kind `alg`.
fn generate_pkcs8(alg: CsrAlgorithm) -> Result<Zeroizing<Vec<u8>>> {
    let ring_alg = match alg {
        CsrAlgorithm::P256 => &ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING,
        CsrAlgorithm::P384 => &ring_sig::ECDSA_P384_SHA384_ASN1_SIGNING,
        #[cfg(feature = "rsa-keygen")]
        CsrAlgorithm::Rsa2048 => return rsa_keygen::generate_pkcs8(2048),
        #[cfg(not(feature = "rsa-keygen"))]
        CsrAlgorithm::Rsa2048 => return Err(rsa_keygen_unsupported()),
    };
    let doc = EcdsaKeyPair::generate_pkcs8(ring_alg, &SystemRandom::new())
        .map_err(|_| Error::new(ErrorKind::Internal, "key generation failed"))?;
    // ring's Document has no Drop (not zeroizable); it goes out of scope here.
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

#[derive(Clone)]
enum Source {
    Generate(CsrAlgorithm),
    Local(Arc<dyn SigningKey>),
    External {
        signer: Arc<dyn DigestSigner>,
        spki: Vec<u8>,
    },
}

/// The key a certificate signing request is made with (experimental, see the README's
/// "Certificate issuance" section).
#[derive(Clone)]
pub struct CsrKey {
    source: Source,
}

impl fmt::Debug for CsrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Generate(a) => write!(f, "CsrKey::Generate({a:?})"),
            Source::Local(_) => f.write_str("CsrKey::Pem"),
            Source::External { signer, .. } => {
                write!(f, "CsrKey::External({})", signer.describe())
            }
        }
    }
}

impl CsrKey {
    /// A new key generated in memory when the configuration is built; its PKCS#8 PEM is
    /// handed out with the issued certificate ([`crate::Registration::issued_private_key_pem`]).
    pub fn generate(algorithm: CsrAlgorithm) -> CsrKey {
        CsrKey {
            source: Source::Generate(algorithm),
        }
    }

    /// An existing private key in PEM (PKCS#8, PKCS#1, SEC1, or encrypted PKCS#8 with
    /// `password`): ECDSA P-256, P-384 or RSA 2048-8192.
    pub fn from_pem(key_pem: &[u8], password: Option<&[u8]>) -> Result<CsrKey> {
        let key = parse_key_pem(key_pem, password)?;
        let signing = load_signing_key(&key)?;
        drop(key);
        if signing.algorithm() == SignatureAlgorithm::ED25519 {
            return Err(Error::new(
                ErrorKind::InvalidPrivateKey,
                "an Ed25519 key cannot make a CSR for DPS: use ECDSA P-256, P-384 or RSA",
            ));
        }
        if signing.public_key().is_none() {
            return Err(Error::new(
                ErrorKind::InvalidPrivateKey,
                "the public key of this private key could not be derived",
            ));
        }
        Ok(CsrKey {
            source: Source::Local(signing),
        })
    }

    /// A key held by `signer` (a C callback, a PKCS#11 token, a secure element), whose public
    /// key is `public_key` (SubjectPublicKeyInfo, DER or `PUBLIC KEY` PEM): the CSR's
    /// to-be-signed part is hashed here and its digest signed there. The signature is checked
    /// against `public_key` when the configuration is built.
    pub fn from_signer(signer: Arc<dyn DigestSigner>, public_key: &[u8]) -> Result<CsrKey> {
        let spki = match SubjectPublicKeyInfoDer::from_pem_slice(public_key) {
            Ok(k) => k.as_ref().to_vec(),
            Err(_) => public_key.to_vec(),
        };
        match der::spki_kind(&spki) {
            Some(PublicKeyKind::EcP256 | PublicKeyKind::EcP384) => {}
            Some(PublicKeyKind::Rsa(bits)) if (2048..=8192).contains(&bits) => {}
            Some(PublicKeyKind::Rsa(bits)) => {
                return Err(Error::new(
                    ErrorKind::InvalidPrivateKey,
                    format!("an RSA key of {bits} bits is not supported (2048-8192)"),
                ));
            }
            Some(PublicKeyKind::Other) => {
                return Err(Error::new(
                    ErrorKind::InvalidPrivateKey,
                    "the public key is neither ECDSA P-256/P-384 nor RSA",
                ));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "the public key is not a SubjectPublicKeyInfo (DER or PUBLIC KEY PEM)",
                ));
            }
        }
        Ok(CsrKey {
            source: Source::External { signer, spki },
        })
    }

    /// Makes the CSR for `registration_id` (generating the key first when asked to).
    pub(crate) fn prepare(&self, registration_id: &str) -> Result<PreparedCsr> {
        let mut generated = None;
        let (spki, algid, tbs_signer): Prepared = match &self.source {
            Source::Generate(alg) => {
                let pkcs8 = generate_pkcs8(*alg)?;
                let key = Zeroizing::new(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    pkcs8.to_vec(),
                )));
                let signing = load_signing_key(&key)?;
                drop(key);
                generated = Some(SecretPem(pkcs8_pem(&pkcs8)));
                local(signing)?
            }
            Source::Local(signing) => local(signing.clone())?,
            Source::External { signer, spki } => external(signer.clone(), spki.clone())?,
        };
        let info = pkcs10::request_info(registration_id, &spki);
        let sig = tbs_signer(&info)?;
        verify_with_spki(&spki, &algid, &info, &sig).map_err(|()| {
            Error::new(
                ErrorKind::KeyMismatch,
                "the CSR's signature does not verify against the key's public key: the signer does not hold that key",
            )
        })?;
        let csr = pkcs10::request(info, algid, &sig);
        Ok(PreparedCsr {
            der_base64: B64.encode(&csr),
            spki,
            generated_key: generated,
        })
    }
}

type Prepared = (Vec<u8>, Vec<u8>, Box<dyn Fn(&[u8]) -> Result<Vec<u8>>>);

fn local(signing: Arc<dyn SigningKey>) -> Result<Prepared> {
    let spki = signing
        .public_key()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidPrivateKey,
                "the public key of this private key could not be derived",
            )
        })?
        .as_ref()
        .to_vec();
    let offered = [
        TlsScheme::ECDSA_NISTP256_SHA256,
        TlsScheme::ECDSA_NISTP384_SHA384,
        TlsScheme::RSA_PKCS1_SHA256,
    ];
    let signer = signing.choose_scheme(&offered).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidPrivateKey,
            "the key cannot sign with ECDSA (P-256/SHA-256, P-384/SHA-384) or RSA PKCS#1 SHA-256",
        )
    })?;
    let algid = match signer.scheme() {
        TlsScheme::ECDSA_NISTP256_SHA256 => alg_ecdsa(OID_ECDSA_SHA256),
        TlsScheme::ECDSA_NISTP384_SHA384 => alg_ecdsa(OID_ECDSA_SHA384),
        _ => alg_rsa_sha256(),
    };
    let sign = move |m: &[u8]| {
        signer.sign(m).map_err(|e| {
            Error::new(
                ErrorKind::InvalidPrivateKey,
                format!("signing the CSR failed: {e}"),
            )
        })
    };
    Ok((spki, algid, Box::new(sign)))
}

fn external(signer: Arc<dyn DigestSigner>, spki: Vec<u8>) -> Result<Prepared> {
    let (scheme, algid, digest_alg, field) = match der::spki_kind(&spki) {
        Some(PublicKeyKind::EcP256) => (
            SignatureScheme::EcdsaP256Sha256,
            alg_ecdsa(OID_ECDSA_SHA256),
            &ring::digest::SHA256,
            32,
        ),
        Some(PublicKeyKind::EcP384) => (
            SignatureScheme::EcdsaP384Sha384,
            alg_ecdsa(OID_ECDSA_SHA384),
            &ring::digest::SHA384,
            48,
        ),
        _ => (
            SignatureScheme::RsaPkcs1Sha256,
            alg_rsa_sha256(),
            &ring::digest::SHA256,
            0,
        ),
    };
    let sign = move |m: &[u8]| {
        let digest = ring::digest::digest(digest_alg, m);
        let sig = signer.sign_digest(scheme, digest.as_ref()).map_err(|e| {
            Error::new(
                ErrorKind::SignerFailed,
                format!(
                    "{} failed to sign the CSR: {}",
                    signer.describe(),
                    e.message
                ),
            )
        })?;
        if scheme.is_ecdsa() && sig.len() == 2 * field {
            return Ok(der::ecdsa_raw_to_der(&sig));
        }
        if scheme.is_ecdsa() && !der::is_ecdsa_der(&sig, field) {
            return Err(Error::new(
                ErrorKind::SignerFailed,
                format!(
                    "{} returned {} bytes for an ECDSA signature (expected raw r||s of {} bytes or DER)",
                    signer.describe(),
                    sig.len(),
                    2 * field
                ),
            ));
        }
        Ok(sig)
    };
    Ok((spki, algid, Box::new(sign)))
}

/// A CSR made for one configuration.
#[derive(Clone)]
pub(crate) struct PreparedCsr {
    /// The `csr` member: base64 DER, no PEM armour.
    pub(crate) der_base64: String,
    /// The SubjectPublicKeyInfo in the request (DER).
    pub(crate) spki: Vec<u8>,
    /// The generated private key, when the library made it.
    pub(crate) generated_key: Option<SecretPem>,
}

impl fmt::Debug for PreparedCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Csr")
            .field("generated_key", &self.generated_key.is_some())
            .finish_non_exhaustive()
    }
}

/// PEM text of a private key: zeroized when dropped, never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretPem(Zeroizing<String>);

impl SecretPem {
    /// The PEM text (`-----BEGIN PRIVATE KEY-----`, PKCS#8). Handle it as a secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

fn pkcs8_pem(pkcs8: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(B64.encode(pkcs8));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + 80));
    out.push_str("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::pkcs10::{BIT_STRING, tlv_read};
    use super::*;

    #[test]
    fn generated_csrs_verify_and_carry_the_registration_id() {
        for alg in [CsrAlgorithm::P256, CsrAlgorithm::P384] {
            let p = CsrKey::generate(alg).prepare("dev-1").unwrap();
            let der = B64.decode(&p.der_base64).unwrap();
            let (_, body, []) = der::read(&der).unwrap() else {
                panic!("trailing bytes")
            };
            let (info, _, _, rest) = tlv_read(body).unwrap();
            let (algid, _, _, rest) = tlv_read(rest).unwrap();
            let (_, BIT_STRING, bits, []) = tlv_read(rest).unwrap() else {
                panic!("no signature")
            };
            verify_with_spki(&p.spki, algid, info, &bits[1..]).unwrap();
            assert!(der.windows(5).any(|w| w == b"dev-1"));
            let key = p.generated_key.unwrap();
            assert!(key.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
            assert_eq!(format!("{key:?}"), "SecretPem(<redacted>)");
            // the generated key loads as a CSR key again, with the same public key
            let again = CsrKey::from_pem(key.expose().as_bytes(), None)
                .unwrap()
                .prepare("dev-1")
                .unwrap();
            assert_eq!(again.spki, p.spki);
            assert!(again.generated_key.is_none());
        }
    }
}
