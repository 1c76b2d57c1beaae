//! Certificate issuance from a CSR (api-version 2025-07-01-preview, experimental): the key
//! ([`CsrKey`]), a minimal DER writer for the PKCS#10 request, and the checks made on the
//! `issuedCertificateChain` before it is handed out.
//!
//! The request: version 0, subject `CN=<registration ID>`, the key's SubjectPublicKeyInfo, no
//! attributes, signed ecdsa-with-SHA256 (P-256), ecdsa-with-SHA384 (P-384) or
//! sha256WithRSAEncryption (RSA keys supplied as PEM or held by a signer). The library generates
//! ECDSA P-256 and P-384 keys only: ring, its crypto library, cannot generate RSA keys.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, EcdsaKeyPair};
use rustls::SignatureAlgorithm;
use rustls::SignatureScheme as TlsScheme;
use rustls::sign::SigningKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer,
};
use zeroize::Zeroizing;

use super::der::{self, PublicKeyKind};
use super::load_signing_key;
use super::pemfile::parse_key_pem;
use crate::config::echo;
use crate::credential::{DigestSigner, SignatureScheme};
use crate::error::{Error, ErrorKind, Result};

/// The curve of a key the library generates for a CSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrAlgorithm {
    /// ECDSA on P-256, the CSR signed ecdsa-with-SHA256 (the default).
    P256,
    /// ECDSA on P-384, the CSR signed ecdsa-with-SHA384 (the curve Microsoft's documentation
    /// names for the preview).
    P384,
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
                let ring_alg = match alg {
                    CsrAlgorithm::P256 => &ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    CsrAlgorithm::P384 => &ring_sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                };
                let doc = EcdsaKeyPair::generate_pkcs8(ring_alg, &SystemRandom::new())
                    .map_err(|_| Error::new(ErrorKind::Internal, "key generation failed"))?;
                let pkcs8 = Zeroizing::new(doc.as_ref().to_vec());
                // ring's Document has no Drop (not zeroizable); it goes out of scope here.
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
        let mut info = Vec::new();
        info.extend(tlv(INTEGER, &[0]));
        info.extend(name(registration_id));
        info.extend_from_slice(&spki);
        info.extend([CONTEXT_0, 0]);
        let info = tlv(SEQUENCE, &info);
        let sig = tbs_signer(&info)?;
        verify_with_spki(&spki, &algid, &info, &sig).map_err(|()| {
            Error::new(
                ErrorKind::KeyMismatch,
                "the CSR's signature does not verify against the key's public key: the signer does not hold that key",
            )
        })?;
        let mut bits = vec![0u8];
        bits.extend_from_slice(&sig);
        let mut body = info;
        body.extend(algid);
        body.extend(tlv(BIT_STRING, &bits));
        let csr = tlv(SEQUENCE, &body);
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

// --- DER writer -------------------------------------------------------------------------------

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const CONTEXT_0: u8 = 0xa0;

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];

/// One DER TLV with a definite length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = Vec::with_capacity(n + 6);
    out.push(tag);
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// `Name` with the single RDN `CN=<cn>` (UTF8String).
fn name(cn: &str) -> Vec<u8> {
    let mut atv = tlv(OID, OID_COMMON_NAME);
    atv.extend(tlv(UTF8_STRING, cn.as_bytes()));
    tlv(SEQUENCE, &tlv(SET, &tlv(SEQUENCE, &atv)))
}

fn alg_ecdsa(oid: &[u8]) -> Vec<u8> {
    tlv(SEQUENCE, &tlv(OID, oid))
}

fn alg_rsa_sha256() -> Vec<u8> {
    let mut v = tlv(OID, OID_RSA_SHA256);
    v.extend([NULL, 0]);
    tlv(SEQUENCE, &v)
}

/// Verifies `sig` over `msg` with the key in `spki` (DER SubjectPublicKeyInfo).
fn verify_with_spki(
    spki: &[u8],
    algid: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> std::result::Result<(), ()> {
    let (_, spki_body, _) = der::read(spki).ok_or(())?;
    let (_, _alg, rest) = der::read(spki_body).ok_or(())?;
    let (tag, bits, _) = der::read(rest).ok_or(())?;
    if tag != BIT_STRING {
        return Err(());
    }
    let key = bits.get(1..).ok_or(())?;
    let (_, alg_body, _) = der::read(algid).ok_or(())?;
    let (_, oid, _) = der::read(alg_body).ok_or(())?;
    let ring_alg: &dyn ring_sig::VerificationAlgorithm = match oid {
        OID_ECDSA_SHA256 => &ring_sig::ECDSA_P256_SHA256_ASN1,
        OID_ECDSA_SHA384 => &ring_sig::ECDSA_P384_SHA384_ASN1,
        _ => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
    };
    ring_sig::UnparsedPublicKey::new(ring_alg, key)
        .verify(msg, sig)
        .map_err(|_| ())
}

// --- checks on the issued chain ---------------------------------------------------------------

/// The parts of one certificate the checks need.
struct Parsed<'a> {
    tbs: &'a [u8],
    sig_oid: &'a [u8],
    sig: &'a [u8],
    issuer: &'a [u8],
    not_before: Option<i64>,
    not_after: Option<i64>,
    subject: &'a [u8],
    spki: &'a [u8],
}

/// (whole TLV, tag, value, rest).
type Tlv<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

fn tlv_read(input: &[u8]) -> Option<Tlv<'_>> {
    let (tag, value, rest) = der::read(input)?;
    Some((&input[..input.len() - rest.len()], tag, value, rest))
}

fn parse_cert(cert: &[u8]) -> Option<Parsed<'_>> {
    let (_, SEQUENCE, body, []) = tlv_read(cert)? else {
        return None;
    };
    let (tbs, SEQUENCE, tbs_body, rest) = tlv_read(body)? else {
        return None;
    };
    let (_, SEQUENCE, alg, rest) = tlv_read(rest)? else {
        return None;
    };
    let (_, OID, sig_oid, _) = tlv_read(alg)? else {
        return None;
    };
    let (_, BIT_STRING, sig_bits, []) = tlv_read(rest)? else {
        return None;
    };
    let sig = sig_bits.get(1..)?;
    let mut f = tbs_body;
    if let Some((_, CONTEXT_0, _, rest)) = tlv_read(f) {
        f = rest;
    }
    let (_, INTEGER, _, f) = tlv_read(f)? else {
        return None;
    };
    let (_, SEQUENCE, _, f) = tlv_read(f)? else {
        return None;
    };
    let (issuer, SEQUENCE, _, f) = tlv_read(f)? else {
        return None;
    };
    let (_, SEQUENCE, validity, f) = tlv_read(f)? else {
        return None;
    };
    let (subject, SEQUENCE, _, f) = tlv_read(f)? else {
        return None;
    };
    let (spki, SEQUENCE, _, _) = tlv_read(f)? else {
        return None;
    };
    let (_, t1, nb, rest) = tlv_read(validity)?;
    let (_, t2, na, _) = tlv_read(rest)?;
    Some(Parsed {
        tbs,
        sig_oid,
        sig,
        issuer,
        not_before: parse_time(t1, nb),
        not_after: parse_time(t2, na),
        subject,
        spki,
    })
}

/// UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ` as Unix seconds.
fn parse_time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.strip_suffix('Z')?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, s.len()) {
        (UTC_TIME, 12) => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (GENERALIZED_TIME, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| rest[i..i + 2].parse::<i64>().ok();
    let (mo, d, h, mi, se) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // days from civil (proleptic Gregorian)
    let y = if mo <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

fn utc(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // civil from days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn broken(kind: ErrorKind, msg: String) -> Error {
    Error::new(kind, format!("issuedCertificateChain refused: {msg}"))
}

/// Checks the `issuedCertificateChain` DPS returned for a CSR with public key `csr_spki`:
/// the leaf certifies that key, its CN is `registration_id`, each certificate is issued
/// (signed) by the next, and the leaf is valid at `now`. Returns the chain as PEM, leaf first.
pub(crate) fn check_issued_chain(
    chain_b64: &[String],
    csr_spki: &[u8],
    registration_id: &str,
    now: SystemTime,
) -> Result<String> {
    if chain_b64.is_empty() {
        return Err(broken(
            ErrorKind::IssuedChainBroken,
            "DPS assigned the device without an issuedCertificateChain although a CSR was sent"
                .into(),
        ));
    }
    let mut ders = Vec::with_capacity(chain_b64.len());
    for (i, c) in chain_b64.iter().enumerate() {
        let der = B64.decode(c.trim()).map_err(|_| {
            broken(
                ErrorKind::IssuedChainBroken,
                format!("certificate #{} is not base64", i + 1),
            )
        })?;
        ders.push(der);
    }
    let mut parsed = Vec::with_capacity(ders.len());
    for (i, d) in ders.iter().enumerate() {
        parsed.push(parse_cert(d).ok_or_else(|| {
            broken(
                ErrorKind::IssuedChainBroken,
                format!("certificate #{} is not X.509 DER", i + 1),
            )
        })?);
    }
    let cn_of = |i: usize| {
        der::subject_common_name(&ders[i])
            .map(|cn| echo(&cn))
            .unwrap_or_else(|| "(no CN)".into())
    };
    let leaf = &parsed[0];
    if leaf.spki != csr_spki {
        if let Some(j) = parsed.iter().position(|p| p.spki == csr_spki) {
            return Err(broken(
                ErrorKind::IssuedChainBroken,
                format!(
                    "the chain is out of order: the certificate for the CSR's key is #{} of {}, it must come first (leaf first, each certificate issued by the next)",
                    j + 1,
                    parsed.len()
                ),
            ));
        }
        return Err(broken(
            ErrorKind::IssuedKeyMismatch,
            format!(
                "the issued leaf certificate (CN {}) certifies another public key than the CSR's",
                cn_of(0)
            ),
        ));
    }
    match der::subject_common_name(&ders[0]) {
        Some(cn) if cn.eq_ignore_ascii_case(registration_id) => {}
        other => {
            return Err(broken(
                ErrorKind::IssuedNameMismatch,
                format!(
                    "the issued leaf certificate's subject CN is {}, not the registration ID {}",
                    other.map(|c| echo(&c)).unwrap_or_else(|| "absent".into()),
                    echo(registration_id)
                ),
            ));
        }
    }
    for i in 0..parsed.len() - 1 {
        let (child, parent) = (&parsed[i], &parsed[i + 1]);
        let link = |why: &str| {
            broken(
                ErrorKind::IssuedChainBroken,
                format!(
                    "certificate #{} (CN {}) is not issued by certificate #{} (CN {}): {why}",
                    i + 1,
                    cn_of(i),
                    i + 2,
                    cn_of(i + 1)
                ),
            )
        };
        if child.issuer != parent.subject {
            return Err(link(
                "its issuer name is not the next certificate's subject",
            ));
        }
        let parent_cert = CertificateDer::from(ders[i + 1].as_slice());
        let issuer = webpki::EndEntityCert::try_from(&parent_cert)
            .map_err(|e| link(&format!("the issuer could not be parsed ({e})")))?;
        let candidates: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] =
            match child.sig_oid {
                OID_ECDSA_SHA256 => &[
                    webpki::ring::ECDSA_P256_SHA256,
                    webpki::ring::ECDSA_P384_SHA256,
                ],
                OID_ECDSA_SHA384 => &[
                    webpki::ring::ECDSA_P384_SHA384,
                    webpki::ring::ECDSA_P256_SHA384,
                ],
                OID_RSA_SHA256 => &[webpki::ring::RSA_PKCS1_2048_8192_SHA256],
                OID_RSA_SHA384 => &[webpki::ring::RSA_PKCS1_2048_8192_SHA384],
                OID_RSA_SHA512 => &[webpki::ring::RSA_PKCS1_2048_8192_SHA512],
                OID_ECDSA_SHA512 => &[],
                _ => &[],
            };
        if candidates.is_empty() {
            return Err(link("its signature algorithm is not supported"));
        }
        if !candidates
            .iter()
            .any(|alg| issuer.verify_signature(*alg, child.tbs, child.sig).is_ok())
        {
            return Err(link("the signature does not verify with the issuer's key"));
        }
    }
    let now_s = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match (leaf.not_before, leaf.not_after) {
        (Some(nb), _) if now_s < nb => {
            return Err(broken(
                ErrorKind::IssuedCertNotValid,
                format!(
                    "the issued leaf certificate is not valid before {} (now {})",
                    utc(nb),
                    utc(now_s)
                ),
            ));
        }
        (_, Some(na)) if now_s > na => {
            return Err(broken(
                ErrorKind::IssuedCertNotValid,
                format!(
                    "the issued leaf certificate expired at {} (now {})",
                    utc(na),
                    utc(now_s)
                ),
            ));
        }
        (Some(_), Some(_)) => {}
        _ => {
            return Err(broken(
                ErrorKind::IssuedChainBroken,
                "the issued leaf certificate's validity dates could not be read".into(),
            ));
        }
    }
    let mut pem = String::new();
    for d in &ders {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b = B64.encode(d);
        for chunk in b.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(parse_time(UTC_TIME, b"700101000000Z"), Some(0));
        assert_eq!(
            parse_time(GENERALIZED_TIME, b"20261201112233Z"),
            Some(1_796_124_153)
        );
        assert_eq!(utc(1_796_124_153), "2026-12-01T11:22:33Z");
        assert_eq!(parse_time(UTC_TIME, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(UTC_TIME, b"7001010000Z"), None);
        assert_eq!(parse_time(UTC_TIME, b"701301000000Z"), None);
    }

    fn params(cn: &str, ca: bool) -> rcgen::CertificateParams {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2049, 12, 31);
        if ca {
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        p
    }

    fn b64s(certs: &[&[u8]]) -> Vec<String> {
        certs.iter().map(|c| B64.encode(c)).collect()
    }

    /// The checks the emulator's scripted faults do not reach: another CN, a signature by
    /// another key under the right issuer name, not yet valid, garbage, no chain.
    #[test]
    fn every_check_has_its_precise_refusal() {
        use rcgen::{KeyPair, PublicKeyData};
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let ca_key = KeyPair::generate_for(alg).unwrap();
        let ca_params = params("Issuing CA", true);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let dev = KeyPair::generate_for(alg).unwrap();
        let spki = dev.subject_public_key_info();
        let now = SystemTime::now();
        let good = params("dev-1", false).signed_by(&dev, &issuer).unwrap();
        let pem = check_issued_chain(&b64s(&[good.der(), ca.der()]), &spki, "dev-1", now).unwrap();
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
        // a leaf without its issuer is accepted: there is no next certificate to check
        check_issued_chain(&b64s(&[good.der()]), &spki, "DEV-1", now).unwrap();

        let refused =
            |chain: Vec<String>| check_issued_chain(&chain, &spki, "dev-1", now).unwrap_err();

        let other_cn = params("dev-2", false).signed_by(&dev, &issuer).unwrap();
        let e = refused(b64s(&[other_cn.der(), ca.der()]));
        assert_eq!(e.kind, ErrorKind::IssuedNameMismatch);
        assert!(
            e.message
                .contains("CN is \"dev-2\", not the registration ID \"dev-1\""),
            "{}",
            e.message
        );

        // same issuer name, another key: the signature does not verify
        let impostor_key = KeyPair::generate_for(alg).unwrap();
        let impostor = params("Issuing CA", true)
            .self_signed(&impostor_key)
            .unwrap();
        let e = refused(b64s(&[good.der(), impostor.der()]));
        assert_eq!(e.kind, ErrorKind::IssuedChainBroken);
        assert!(e.message.contains("certificate #1 (CN \"dev-1\") is not issued by certificate #2 (CN \"Issuing CA\"): the signature does not verify"), "{}", e.message);

        let stranger = params("Someone Else", true)
            .self_signed(&impostor_key)
            .unwrap();
        let e = refused(b64s(&[good.der(), stranger.der()]));
        assert!(
            e.message
                .contains("its issuer name is not the next certificate's subject"),
            "{}",
            e.message
        );

        let mut future = params("dev-1", false);
        future.not_before = rcgen::date_time_ymd(2048, 1, 1);
        let future = future.signed_by(&dev, &issuer).unwrap();
        let e = refused(b64s(&[future.der(), ca.der()]));
        assert_eq!(e.kind, ErrorKind::IssuedCertNotValid);
        assert!(
            e.message.contains("not valid before 2048-01-01T00:00:00Z"),
            "{}",
            e.message
        );

        let e = refused(vec!["%%%".into()]);
        assert_eq!(
            (e.kind, e.message.contains("#1 is not base64")),
            (ErrorKind::IssuedChainBroken, true)
        );
        let e = refused(vec![B64.encode(b"not a certificate")]);
        assert!(e.message.contains("#1 is not X.509 DER"), "{}", e.message);
        let e = refused(vec![]);
        assert!(
            e.message.contains("without an issuedCertificateChain"),
            "{}",
            e.message
        );
    }

    #[test]
    fn long_lengths_are_encoded() {
        assert_eq!(tlv(0x04, &[1; 3])[..2], [0x04, 3]);
        assert_eq!(tlv(0x04, &[1; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[1; 300])[..4], [0x04, 0x82, 1, 44]);
    }

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
