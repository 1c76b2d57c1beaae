//! Certificates issued for a device's CSR: the request is checked (signature, CN, key type),
//! the leaf is signed with the enrollment's validity, and on request the chain is broken in a
//! chosen way so that a client's checks can be tested.

use rcgen::{CertificateSigningRequestParams, DnType, KeyPair, date_time_ymd};
use rustls_pki_types::CertificateSigningRequestDer;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use super::{TestCa, leaf_params, new_key};
use crate::config::{ChainFault, CsrKeyType};
use crate::util::utc_date;

/// How to issue.
#[derive(Clone, Copy, Debug)]
pub struct IssueOptions<'a> {
    /// Key types accepted in the CSR.
    pub key_types: &'a [CsrKeyType],
    /// Days of validity from today; `None`: 2024-01-01..2049-12-31.
    pub validity_days: Option<u32>,
    /// Break the returned chain this way.
    pub broken: Option<ChainFault>,
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

fn name(t: CsrKeyType) -> &'static str {
    match t {
        CsrKeyType::P256 => "p256",
        CsrKeyType::P384 => "p384",
        CsrKeyType::Rsa => "rsa",
    }
}

/// The key type of a (parsed) CSR's public key, or why it is not one the emulator issues for.
fn key_type(csr_der: &[u8]) -> Result<CsrKeyType, String> {
    let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
        .map_err(|e| format!("CSR does not parse: {e}"))?;
    let spki = &req.certification_request_info.subject_pki;
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => Ok(CsrKeyType::P256),
                OID_P384 => Ok(CsrKeyType::P384),
                other => Err(format!(
                    "the CSR's EC key is on curve {other}, not P-256 or P-384"
                )),
            }
        }
        OID_RSA => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => Ok(CsrKeyType::Rsa),
            Ok(PublicKey::RSA(rsa)) => Err(format!(
                "the CSR's RSA key has {} bits, fewer than 2048",
                rsa.key_size()
            )),
            _ => Err("the CSR's RSA key does not parse".into()),
        },
        other => Err(format!(
            "the CSR's key algorithm {other} is not EC P-256, P-384 or RSA"
        )),
    }
}

impl TestCa {
    /// Signs a PKCS#10 request (DER) whose signature verifies, whose subject CN equals
    /// `expected_cn` (case-insensitively) and whose key type is accepted; returns the issued
    /// chain as DER, leaf first, then the intermediates and the root (unless `opts.broken`).
    pub fn sign_csr_der(
        &self,
        csr_der: &[u8],
        expected_cn: &str,
        opts: &IssueOptions<'_>,
    ) -> Result<Vec<Vec<u8>>, String> {
        let req =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| format!("CSR does not parse or its signature is invalid: {e}"))?;
        let cn = req
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .and_then(|v| match v {
                rcgen::DnValue::Utf8String(s) => Some(s.clone()),
                rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_string()),
                _ => None,
            })
            .ok_or("CSR has no common name")?;
        if !cn.eq_ignore_ascii_case(expected_cn) {
            return Err(format!(
                "CSR common name {cn:?} does not equal the registration id"
            ));
        }
        let kt = key_type(csr_der)?;
        if !opts.key_types.contains(&kt) {
            let accepted: Vec<_> = opts.key_types.iter().map(|t| name(*t)).collect();
            return Err(format!(
                "the CSR's key type {} is not accepted here ({})",
                name(kt),
                accepted.join(", ")
            ));
        }
        let mut params = leaf_params(&cn);
        params.distinguished_name = req.params.distinguished_name.clone();
        if let Some(days) = opts.validity_days {
            let (y, m, d) = utc_date(0);
            params.not_before = date_time_ymd(y, m, d);
            let (y, m, d) = utc_date(i64::from(days));
            params.not_after = date_time_ymd(y, m, d);
        }
        if opts.broken == Some(ChainFault::Expired) {
            let (y, m, d) = utc_date(-30);
            params.not_before = date_time_ymd(y, m, d);
            let (y, m, d) = utc_date(-1);
            params.not_after = date_time_ymd(y, m, d);
        }
        let signed = if opts.broken == Some(ChainFault::WrongKey) {
            let other: KeyPair = new_key();
            params.signed_by(&other, self.issuer())
        } else {
            CertificateSigningRequestParams {
                params,
                public_key: req.public_key,
            }
            .signed_by(self.issuer())
        }
        .map_err(|e| format!("cannot sign CSR: {e}"))?;
        let mut chain = vec![signed.der().to_vec()];
        chain.extend(self.chain_ders());
        if opts.broken == Some(ChainFault::WrongOrder) {
            chain.reverse();
        }
        Ok(chain)
    }

    /// The certificates above an issued leaf, DER: this CA and its parents, ending with the root.
    fn chain_ders(&self) -> Vec<Vec<u8>> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut out: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(self.chain_above.as_bytes())
            .flatten()
            .map(|c| c.as_ref().to_vec())
            .collect();
        // chain_above holds this CA (when intermediate) and the intermediates above it; a
        // root CA is appended itself so the chain ends with the root, as the spec describes.
        if self.root {
            out.push(self.der.clone());
        }
        out
    }
}
