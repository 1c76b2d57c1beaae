//! A minimal DER reader: certificate shape check, subject CN, the public key, and key-type
//! diagnostics.
// ---------------------------------------------------------------------------------------------
// Minimal DER reader: certificate shape check, subject CN, and key-type diagnostics.

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

/// The fields of a TBSCertificate this module reads.
struct Tbs<'a> {
    whole: &'a [u8],
    issuer: &'a [u8],
    subject: &'a [u8],
    /// What follows the SubjectPublicKeyInfo: optional unique IDs, then `[3]` extensions.
    after_spki: &'a [u8],
}

fn tbs_fields(cert: &[u8]) -> Option<Tbs<'_>> {
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
    let (issuer, fields) = take(fields, SEQUENCE)?;
    let (_validity, fields) = take(fields, SEQUENCE)?;
    let (subject, fields) = take(fields, SEQUENCE)?;
    let (_spki, after_spki) = take(fields, SEQUENCE)?;
    Some(Tbs {
        whole: tbs,
        issuer,
        subject,
        after_spki,
    })
}

/// The fields of a TBSCertificate up to and including the subject: (tbs, subject).
fn tbs_and_subject(cert: &[u8]) -> Option<(&[u8], &[u8])> {
    tbs_fields(cert).map(|t| (t.whole, t.subject))
}

const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const BOOLEAN: u8 = 0x01;
const CONTEXT_3: u8 = 0xa3;

/// Where a certificate chain sent to DPS ends: whether its last certificate can anchor the
/// chain on the service's side (self-issued, or a CA by its basicConstraints), and the
/// names needed to explain it when it cannot.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ChainEnd {
    pub(super) self_issued: bool,
    pub(super) is_ca: bool,
    pub(super) subject_cn: Option<String>,
    pub(super) issuer_cn: Option<String>,
}

pub(super) fn chain_end(cert: &[u8]) -> Option<ChainEnd> {
    let t = tbs_fields(cert)?;
    Some(ChainEnd {
        self_issued: t.issuer == t.subject,
        is_ca: basic_constraints_ca(t.after_spki),
        subject_cn: name_common_name(t.subject),
        issuer_cn: name_common_name(t.issuer),
    })
}

/// `cA` of the basicConstraints extension, false when absent or unreadable.
fn basic_constraints_ca(mut fields: &[u8]) -> bool {
    while let Some((tag, value, rest)) = read(fields) {
        fields = rest;
        if tag != CONTEXT_3 {
            continue; // issuerUniqueID [1], subjectUniqueID [2]
        }
        let Some(mut exts) = take_whole(value, SEQUENCE) else {
            return false;
        };
        while let Some((ext, rest)) = take(exts, SEQUENCE) {
            exts = rest;
            let Some((oid, mut ext)) = take(ext, OID) else {
                return false;
            };
            if oid != OID_BASIC_CONSTRAINTS {
                continue;
            }
            if let Some((BOOLEAN, _, rest)) = read(ext) {
                ext = rest; // critical
            }
            let Some(bc) = take_whole(ext, OCTET_STRING).and_then(|v| take_whole(v, SEQUENCE))
            else {
                return false;
            };
            return matches!(read(bc), Some((BOOLEAN, [0xff], _)));
        }
        return false;
    }
    false
}

/// Whether `cert` has the outer shape of an X.509 certificate.
pub(super) fn is_certificate(cert: &[u8]) -> bool {
    tbs_and_subject(cert).is_some()
}

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The first subject commonName of `cert`.
pub(super) fn subject_common_name(cert: &[u8]) -> Option<String> {
    name_common_name(tbs_and_subject(cert)?.1)
}

/// The first commonName of a Name (the contents of its SEQUENCE).
fn name_common_name(mut rdns: &[u8]) -> Option<String> {
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
                OID_RSA_PSS => {
                    Some("RSA-PSS (id-RSASSA-PSS) keys; use a plain rsaEncryption RSA key".into())
                }
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

/// The type of the public key in a certificate's SubjectPublicKeyInfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PublicKeyKind {
    /// ECDSA on P-256.
    EcP256,
    /// ECDSA on P-384.
    EcP384,
    /// RSA with a modulus of this many bits.
    Rsa(usize),
    /// Anything else (Ed25519, other curves, DSA, ...).
    Other,
}

const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// The public key type of certificate `cert`, or `None` when it is not a certificate.
pub(crate) fn public_key_kind(cert: &[u8]) -> Option<PublicKeyKind> {
    let cert = take_whole(cert, SEQUENCE)?;
    let (tbs, _) = take(cert, SEQUENCE)?;
    let mut fields = tbs;
    if let Some((CONTEXT_0, _, rest)) = read(fields) {
        fields = rest;
    }
    let (_serial, fields) = take(fields, INTEGER)?;
    let (_sig_alg, fields) = take(fields, SEQUENCE)?;
    let (_issuer, fields) = take(fields, SEQUENCE)?;
    let (_validity, fields) = take(fields, SEQUENCE)?;
    let (_subject, fields) = take(fields, SEQUENCE)?;
    let (spki, _) = take(fields, SEQUENCE)?;
    spki_body_kind(spki)
}

/// The key type of a DER SubjectPublicKeyInfo, or `None` when it is not one.
pub(crate) fn spki_kind(spki: &[u8]) -> Option<PublicKeyKind> {
    spki_body_kind(take_whole(spki, SEQUENCE)?)
}

fn spki_body_kind(spki: &[u8]) -> Option<PublicKeyKind> {
    let (alg, key) = take(spki, SEQUENCE)?;
    let (oid, params) = take(alg, OID)?;
    Some(match oid {
        OID_EC_PUBLIC_KEY => match take(params, OID) {
            Some((OID_P256, _)) => PublicKeyKind::EcP256,
            Some((OID_P384, _)) => PublicKeyKind::EcP384,
            _ => PublicKeyKind::Other,
        },
        OID_RSA => {
            let (bits, _) = take(key, BIT_STRING)?;
            let (_unused, rsa_key) = bits.split_first()?;
            let (n, _) = take(take_whole(rsa_key, SEQUENCE)?, INTEGER)?;
            let n = n.strip_prefix(&[0]).unwrap_or(n);
            PublicKeyKind::Rsa(n.len() * 8)
        }
        _ => PublicKeyKind::Other,
    })
}

/// A DER `ECDSA-Sig-Value` from raw `r || s` (each half the input).
pub(crate) fn ecdsa_raw_to_der(raw: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, v: &[u8]) {
        let v = match v.iter().position(|&b| b != 0) {
            Some(i) => &v[i..],
            None => &[0u8][..],
        };
        let pad = v[0] & 0x80 != 0;
        out.push(INTEGER);
        out.push((v.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = Vec::with_capacity(raw.len() + 6);
    integer(&mut body, r);
    integer(&mut body, s);
    let mut out = Vec::with_capacity(body.len() + 3);
    out.push(SEQUENCE);
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    out
}

/// Whether `sig` is exactly one DER `ECDSA-Sig-Value` whose integers fit `field_len` bytes.
pub(crate) fn is_ecdsa_der(sig: &[u8], field_len: usize) -> bool {
    let Some(body) = take_whole(sig, SEQUENCE) else {
        return false;
    };
    let Some((r, rest)) = take(body, INTEGER) else {
        return false;
    };
    let Some(s) = take_whole(rest, INTEGER) else {
        return false;
    };
    let fits = |v: &[u8]| !v.is_empty() && v.strip_prefix(&[0]).unwrap_or(v).len() <= field_len;
    fits(r) && fits(s)
}
