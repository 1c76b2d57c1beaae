//! The PKCS#10 request (RFC 2986) written as DER: version 0, subject `CN=<registration ID>`,
//! the key's SubjectPublicKeyInfo, no attributes, the algorithm identifier of the signature;
//! and the few DER pieces the issued-chain checks read back.

use ring::signature as ring_sig;

use super::super::der;

/// `CertificationRequestInfo` for `registration_id` and the key `spki` (DER): the bytes the
/// key signs.
pub(super) fn request_info(registration_id: &str, spki: &[u8]) -> Vec<u8> {
    let mut info = Vec::new();
    info.extend(tlv(INTEGER, &[0]));
    info.extend(name(registration_id));
    info.extend_from_slice(spki);
    info.extend([CONTEXT_0, 0]);
    tlv(SEQUENCE, &info)
}

/// The whole `CertificationRequest`: `info`, the signature algorithm `algid`, `sig`.
pub(super) fn request(info: Vec<u8>, algid: Vec<u8>, sig: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(sig);
    let mut body = info;
    body.extend(algid);
    body.extend(tlv(BIT_STRING, &bits));
    tlv(SEQUENCE, &body)
}

pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const SET: u8 = 0x31;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const NULL: u8 = 0x05;
pub(super) const OID: u8 = 0x06;
pub(super) const UTF8_STRING: u8 = 0x0c;
pub(super) const UTC_TIME: u8 = 0x17;
pub(super) const GENERALIZED_TIME: u8 = 0x18;
pub(super) const CONTEXT_0: u8 = 0xa0;

pub(super) const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
pub(super) const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
pub(super) const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
pub(super) const OID_ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
pub(super) const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
pub(super) const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
pub(super) const OID_RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];

/// One DER TLV with a definite length.
pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
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
pub(super) fn name(cn: &str) -> Vec<u8> {
    let mut atv = tlv(OID, OID_COMMON_NAME);
    atv.extend(tlv(UTF8_STRING, cn.as_bytes()));
    tlv(SEQUENCE, &tlv(SET, &tlv(SEQUENCE, &atv)))
}

pub(super) fn alg_ecdsa(oid: &[u8]) -> Vec<u8> {
    tlv(SEQUENCE, &tlv(OID, oid))
}

pub(super) fn alg_rsa_sha256() -> Vec<u8> {
    let mut v = tlv(OID, OID_RSA_SHA256);
    v.extend([NULL, 0]);
    tlv(SEQUENCE, &v)
}

/// Verifies `sig` over `msg` with the key in `spki` (DER SubjectPublicKeyInfo).
pub(super) fn verify_with_spki(
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

/// (whole TLV, tag, value, rest).
pub(super) type Tlv<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

pub(super) fn tlv_read(input: &[u8]) -> Option<Tlv<'_>> {
    let (tag, value, rest) = der::read(input)?;
    Some((&input[..input.len() - rest.len()], tag, value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_are_encoded() {
        assert_eq!(tlv(0x04, &[1; 3])[..2], [0x04, 3]);
        assert_eq!(tlv(0x04, &[1; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[1; 300])[..4], [0x04, 0x82, 1, 44]);
    }
}
