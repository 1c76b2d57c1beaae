//! The checks made on the `issuedCertificateChain` DPS returns for a CSR before it is handed
//! out: the leaf certifies the CSR's key, its CN is the registration ID, each certificate is
//! issued by the next, the leaf is valid now.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls_pki_types::CertificateDer;

use super::super::der;
use super::pkcs10::{
    BIT_STRING, CONTEXT_0, GENERALIZED_TIME, INTEGER, OID, OID_ECDSA_SHA256, OID_ECDSA_SHA384,
    OID_ECDSA_SHA512, OID_RSA_SHA256, OID_RSA_SHA384, OID_RSA_SHA512, SEQUENCE, UTC_TIME, tlv_read,
};
use crate::config::echo;
use crate::error::{Error, ErrorKind, Result};

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
    let days = crate::civil::days_from_civil(year, mo, d);
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
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
                    crate::civil::utc(nb),
                    crate::civil::utc(now_s)
                ),
            ));
        }
        (_, Some(na)) if now_s > na => {
            return Err(broken(
                ErrorKind::IssuedCertNotValid,
                format!(
                    "the issued leaf certificate expired at {} (now {})",
                    crate::civil::utc(na),
                    crate::civil::utc(now_s)
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
        assert_eq!(crate::civil::utc(1_796_124_153), "2026-12-01T11:22:33Z");
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
}
