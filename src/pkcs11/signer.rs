//! A private key in a PKCS#11 token as a [`DigestSigner`]: EC P-256/P-384 with `CKM_ECDSA`,
//! RSA (2048 bits and more) with `CKM_RSA_PKCS` (the library adds the SHA-256 DigestInfo) and
//! `CKM_RSA_PKCS_PSS` (SHA-256, MGF1-SHA-256, 32-byte salt). The public key and the
//! certificate are read from the objects with the same label and id.

use std::fmt;

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};

use super::error::object_error;
use super::session::KeySession;
use super::uri::Pkcs11Uri;
use crate::credential::{DigestSigner, SignatureScheme};
use crate::error::{Error, ErrorKind, Result};

const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// DER of `DigestInfo { sha256, NULL }` up to the digest (RFC 8017 9.2 note 1).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The kind of a token key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256.
    EcP256,
    /// ECDSA on P-384.
    EcP384,
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// The modulus length.
        bits: usize,
    },
}

impl KeyKind {
    /// The signature schemes this key can produce, preferred first.
    pub const fn schemes(self) -> &'static [SignatureScheme] {
        match self {
            Self::EcP256 => &[SignatureScheme::EcdsaP256Sha256],
            Self::EcP384 => &[SignatureScheme::EcdsaP384Sha384],
            Self::Rsa { .. } => &[
                SignatureScheme::RsaPssSha256,
                SignatureScheme::RsaPkcs1Sha256,
            ],
        }
    }
}

/// The public half of a token key.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPublicKey {
    kind: KeyKind,
    key: Vec<u8>,
}

impl TokenPublicKey {
    /// The key kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The `subjectPublicKey` bytes: the uncompressed EC point (`04 || x || y`), or the
    /// PKCS#1 `RSAPublicKey` DER. This is what `ring::signature::UnparsedPublicKey` takes.
    pub fn key_bytes(&self) -> &[u8] {
        &self.key
    }

    /// The X.509 `SubjectPublicKeyInfo` DER.
    pub fn spki_der(&self) -> Vec<u8> {
        let alg = match self.kind {
            KeyKind::EcP256 => der(0x30, &[OID_EC_PUBLIC_KEY, OID_P256].concat()),
            KeyKind::EcP384 => der(0x30, &[OID_EC_PUBLIC_KEY, OID_P384].concat()),
            KeyKind::Rsa { .. } => der(0x30, &[OID_RSA_ENCRYPTION, &[0x05, 0x00]].concat()),
        };
        let bits = der(0x03, &[&[0u8][..], &self.key].concat());
        der(0x30, &[alg, bits].concat())
    }
}

impl fmt::Debug for TokenPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPublicKey")
            .field("kind", &self.kind)
            .field("len", &self.key.len())
            .finish()
    }
}

/// One DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = n.to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER from an unsigned big-endian number.
fn der_uint(v: &[u8]) -> Vec<u8> {
    let v = &v[v
        .iter()
        .take_while(|b| **b == 0)
        .count()
        .min(v.len().saturating_sub(1))..];
    let mut c = Vec::with_capacity(v.len() + 1);
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        c.push(0);
    }
    c.extend_from_slice(v);
    der(0x02, &c)
}

/// The uncompressed point from `CKA_EC_POINT`, which is a DER OCTET STRING (PKCS#11 2.40)
/// or, in some older tokens, the bare point.
fn ec_point(v: &[u8], field: usize) -> Option<Vec<u8>> {
    let raw = 1 + 2 * field;
    if v.len() == raw && v[0] == 0x04 {
        return Some(v.to_vec());
    }
    match v {
        [0x04, len, rest @ ..] if *len as usize == raw && rest.len() == raw && rest[0] == 0x04 => {
            Some(rest.to_vec())
        }
        _ => None,
    }
}

/// The schemes of `kind` that the token's mechanisms `mechs` allow, preferred first.
fn supported_schemes(kind: KeyKind, mechs: &[MechanismType]) -> &'static [SignatureScheme] {
    use SignatureScheme::*;
    match kind {
        KeyKind::EcP256 | KeyKind::EcP384 if !mechs.contains(&MechanismType::ECDSA) => &[],
        KeyKind::EcP256 | KeyKind::EcP384 => kind.schemes(),
        KeyKind::Rsa { .. } => match (
            mechs.contains(&MechanismType::RSA_PKCS_PSS),
            mechs.contains(&MechanismType::RSA_PKCS),
        ) {
            (true, true) => &[RsaPssSha256, RsaPkcs1Sha256],
            (true, false) => &[RsaPssSha256],
            (false, true) => &[RsaPkcs1Sha256],
            (false, false) => &[],
        },
    }
}

/// A private key in a PKCS#11 token, signing digests (see the module documentation).
///
/// One session per signer; signatures are serialised on it, so a signer shared by several
/// clients on several threads is safe (each waits for the other's signature).
pub struct Pkcs11Signer {
    inner: KeySession,
    kind: KeyKind,
    schemes: &'static [SignatureScheme],
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("uri", &self.inner.uri().to_string())
            .field("kind", &self.kind)
            .finish()
    }
}

fn unsupported_key(msg: String) -> Error {
    Error::new(ErrorKind::InvalidPrivateKey, msg)
}

impl Pkcs11Signer {
    /// Opens the private key the URI names (`type=private` or no type): loads the module,
    /// logs in and checks that the key is EC P-256, EC P-384 or RSA of at least 2048 bits.
    pub fn open(uri: &Pkcs11Uri) -> Result<Self> {
        let inner = KeySession::open(uri, ObjectClass::PRIVATE_KEY)?;
        let attrs = inner.with_key("reading the key type", |s, k| {
            s.get_attributes(
                k,
                &[
                    AttributeType::KeyType,
                    AttributeType::Sign,
                    AttributeType::AlwaysAuthenticate,
                ],
            )
        })?;
        let mut key_type = None;
        for a in &attrs {
            match a {
                Attribute::KeyType(t) => key_type = Some(*t),
                Attribute::Sign(false) => {
                    return Err(unsupported_key(format!(
                        "the PKCS#11 key {} may not sign (CKA_SIGN is false)",
                        inner.uri()
                    )));
                }
                // Such a key wants the PIN again before every signature (C_Login with
                // CKU_CONTEXT_SPECIFIC between C_SignInit and C_Sign).
                Attribute::AlwaysAuthenticate(true) => {
                    return Err(unsupported_key(format!(
                        "the PKCS#11 key {} needs the PIN for every signature \
                         (CKA_ALWAYS_AUTHENTICATE), which is not supported",
                        inner.uri()
                    )));
                }
                _ => {}
            }
        }
        let kind = match key_type {
            Some(KeyType::EC) => {
                let params = inner.with_key("reading the curve", |s, k| {
                    s.get_attributes(k, &[AttributeType::EcParams])
                })?;
                match params.first() {
                    Some(Attribute::EcParams(p)) if p == OID_P256 => KeyKind::EcP256,
                    Some(Attribute::EcParams(p)) if p == OID_P384 => KeyKind::EcP384,
                    _ => {
                        return Err(unsupported_key(format!(
                            "the PKCS#11 key {} is on a curve other than P-256 and P-384",
                            inner.uri()
                        )));
                    }
                }
            }
            Some(KeyType::RSA) => {
                let bits = Self::rsa_modulus(&inner)?.len() * 8;
                if bits < 2048 {
                    return Err(unsupported_key(format!(
                        "the PKCS#11 RSA key {} has {bits} bits; at least 2048 are needed",
                        inner.uri()
                    )));
                }
                KeyKind::Rsa { bits }
            }
            other => {
                return Err(unsupported_key(format!(
                    "the PKCS#11 key {} is of type {}; EC P-256/P-384 or RSA is needed",
                    inner.uri(),
                    other.map_or("unknown".to_string(), |t| t.to_string())
                )));
            }
        };
        let mechs = inner.mechanisms(&[
            MechanismType::ECDSA,
            MechanismType::RSA_PKCS,
            MechanismType::RSA_PKCS_PSS,
        ])?;
        let schemes = supported_schemes(kind, &mechs);
        if schemes.is_empty() {
            return Err(unsupported_key(format!(
                "the PKCS#11 token of {} offers none of {} for this key",
                inner.uri(),
                if matches!(kind, KeyKind::Rsa { .. }) {
                    "CKM_RSA_PKCS, CKM_RSA_PKCS_PSS"
                } else {
                    "CKM_ECDSA"
                }
            )));
        }
        Ok(Pkcs11Signer {
            inner,
            kind,
            schemes,
        })
    }

    /// The modulus of an RSA key, from the private key object or its public key.
    fn rsa_modulus(inner: &KeySession) -> Result<Vec<u8>> {
        Ok(Self::rsa_public(inner)?.0)
    }

    fn rsa_public(inner: &KeySession) -> Result<(Vec<u8>, Vec<u8>)> {
        let types = [AttributeType::Modulus, AttributeType::PublicExponent];
        let pick = |attrs: &[Attribute]| {
            let (mut n, mut e) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Modulus(v) if !v.is_empty() => n = Some(v.clone()),
                    Attribute::PublicExponent(v) if !v.is_empty() => e = Some(v.clone()),
                    _ => {}
                }
            }
            n.zip(e)
        };
        let own = inner.with_key("reading the RSA modulus", |s, k| {
            s.get_attributes(k, &types)
        })?;
        if let Some(ne) = pick(&own) {
            return Ok(ne);
        }
        inner
            .sibling_attributes(ObjectClass::PUBLIC_KEY, &types)?
            .and_then(|a| pick(&a))
            .ok_or_else(|| {
                object_error(format!(
                    "the PKCS#11 RSA key {} shows no modulus and has no public key object",
                    inner.uri()
                ))
            })
    }

    /// The key kind.
    pub fn key_kind(&self) -> KeyKind {
        self.kind
    }

    /// The signature schemes this key can produce with this token's mechanisms, preferred
    /// first (an RSA key on a token without CKM_RSA_PKCS_PSS offers PKCS#1 v1.5 only, which
    /// TLS 1.3 does not allow).
    pub fn schemes(&self) -> &'static [SignatureScheme] {
        self.schemes
    }

    /// The public key, from the public key object with the same label and id (for RSA, the
    /// private key's own modulus and exponent do).
    pub fn public_key(&self) -> Result<TokenPublicKey> {
        let key = match self.kind {
            KeyKind::Rsa { .. } => {
                let (n, e) = Self::rsa_public(&self.inner)?;
                der(0x30, &[der_uint(&n), der_uint(&e)].concat())
            }
            KeyKind::EcP256 | KeyKind::EcP384 => {
                let field = if self.kind == KeyKind::EcP256 { 32 } else { 48 };
                let attrs = self
                    .inner
                    .sibling_attributes(ObjectClass::PUBLIC_KEY, &[AttributeType::EcPoint])?
                    .ok_or_else(|| {
                        object_error(format!(
                            "no public key object next to the PKCS#11 key {}",
                            self.inner.uri()
                        ))
                    })?;
                attrs
                    .iter()
                    .find_map(|a| match a {
                        Attribute::EcPoint(p) => ec_point(p, field),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        object_error(format!(
                            "the public key next to {} has no valid CKA_EC_POINT",
                            self.inner.uri()
                        ))
                    })?
            }
        };
        Ok(TokenPublicKey {
            kind: self.kind,
            key,
        })
    }

    /// The DER certificate stored in the token with the same label and id (`type=cert`), or
    /// `None` when there is none.
    pub fn certificate_der(&self) -> Result<Option<Vec<u8>>> {
        let attrs = self
            .inner
            .sibling_attributes(ObjectClass::CERTIFICATE, &[AttributeType::Value])?;
        Ok(attrs.and_then(|a| {
            a.into_iter().find_map(|a| match a {
                Attribute::Value(v) if !v.is_empty() => Some(v),
                _ => None,
            })
        }))
    }

    fn mechanism(&self, scheme: SignatureScheme) -> Result<Mechanism<'static>> {
        let ok = self.schemes.contains(&scheme);
        if !ok {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the PKCS#11 key {} ({:?}) cannot sign with {scheme:?}",
                    self.inner.uri(),
                    self.kind
                ),
            ));
        }
        Ok(match scheme {
            SignatureScheme::EcdsaP256Sha256 | SignatureScheme::EcdsaP384Sha384 => Mechanism::Ecdsa,
            SignatureScheme::RsaPkcs1Sha256 => Mechanism::RsaPkcs,
            SignatureScheme::RsaPssSha256 => Mechanism::RsaPkcsPss(PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                s_len: 32.into(),
            }),
        })
    }
}

impl DigestSigner for Pkcs11Signer {
    fn sign_digest(&self, scheme: SignatureScheme, digest: &[u8]) -> Result<Vec<u8>> {
        if digest.len() != scheme.digest_len() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{scheme:?} needs a {}-byte digest, got {}",
                    scheme.digest_len(),
                    digest.len()
                ),
            ));
        }
        let mech = self.mechanism(scheme)?;
        let input = match scheme {
            SignatureScheme::RsaPkcs1Sha256 => [SHA256_DIGEST_INFO, digest].concat(),
            _ => digest.to_vec(),
        };
        let sig = self
            .inner
            .with_key("signing", |s, k| s.sign(&mech, k, &input))?;
        let expected = match self.kind {
            KeyKind::EcP256 => 64,
            KeyKind::EcP384 => 96,
            KeyKind::Rsa { bits } => bits.div_ceil(8),
        };
        if sig.len() != expected {
            return Err(ck_error_len(self, sig.len(), expected));
        }
        Ok(sig)
    }

    fn describe(&self) -> String {
        format!("PKCS#11 private key {}", self.inner.uri())
    }
}

fn ck_error_len(s: &Pkcs11Signer, got: usize, want: usize) -> Error {
    Error::new(
        ErrorKind::SignerFailed,
        format!(
            "the PKCS#11 token returned a {got}-byte signature for {}, expected {want}",
            s.inner.uri()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_follow_the_token_mechanisms() {
        use SignatureScheme::*;
        let rsa = KeyKind::Rsa { bits: 2048 };
        let m = MechanismType::RSA_PKCS;
        let pss = MechanismType::RSA_PKCS_PSS;
        assert_eq!(
            supported_schemes(rsa, &[m, pss]),
            &[RsaPssSha256, RsaPkcs1Sha256]
        );
        assert_eq!(supported_schemes(rsa, &[m]), &[RsaPkcs1Sha256]);
        assert_eq!(supported_schemes(rsa, &[pss]), &[RsaPssSha256]);
        assert!(supported_schemes(rsa, &[MechanismType::ECDSA]).is_empty());
        assert_eq!(
            supported_schemes(KeyKind::EcP384, &[MechanismType::ECDSA]),
            &[EcdsaP384Sha384]
        );
        assert!(supported_schemes(KeyKind::EcP256, &[m]).is_empty());
    }

    #[test]
    fn der_helpers() {
        assert_eq!(der_uint(&[0x00, 0x01]), vec![0x02, 0x01, 0x01]);
        assert_eq!(der_uint(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_uint(&[0x00]), vec![0x02, 0x01, 0x00]);
        let long = der(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let mut p = vec![0x04u8];
        p.extend_from_slice(&[7u8; 64]);
        assert_eq!(ec_point(&p, 32).as_deref(), Some(&p[..]));
        let wrapped = der(0x04, &p);
        assert_eq!(ec_point(&wrapped, 32).as_deref(), Some(&p[..]));
        assert_eq!(ec_point(&wrapped, 48), None);
    }
}
