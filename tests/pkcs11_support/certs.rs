//! Signatures and certificates for token keys: ring verification, rcgen (self-signed
//! certificates and CSRs signed by the token) and a rustls client key (mutual TLS with the
//! emulator).

use dps::credential::{DigestSigner, SignatureScheme};
use dps::pkcs11::{KeyKind, Pkcs11Signer, TokenPublicKey};

/// One DER TLV at the start of `d`: (tag, header length, total length).
fn tlv(d: &[u8]) -> (u8, usize, usize) {
    let tag = d[0];
    let (hl, len) = if d[1] < 0x80 {
        (2, d[1] as usize)
    } else {
        let n = (d[1] & 0x7f) as usize;
        let mut len = 0usize;
        for b in &d[2..2 + n] {
            len = len << 8 | *b as usize;
        }
        (2 + n, len)
    };
    (tag, hl, hl + len)
}

/// The subject Name DER of an X.509 certificate.
pub fn cert_subject(cert: &[u8]) -> &[u8] {
    let (_, hl, _) = tlv(cert);
    let tbs = &cert[hl..];
    let (_, thl, _) = tlv(tbs);
    let mut rest = &tbs[thl..];
    // [0] version (optional), serial, signature, issuer, validity, subject
    if rest[0] == 0xa0 {
        rest = &rest[tlv(rest).2..];
    }
    for _ in 0..4 {
        rest = &rest[tlv(rest).2..];
    }
    &rest[..tlv(rest).2]
}

/// Raw `r || s` to a DER `ECDSA-Sig-Value`.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let skip = v.iter().take_while(|b| **b == 0).count().min(v.len() - 1);
        let v = &v[skip..];
        let mut out = vec![0x02];
        let pad = v[0] & 0x80 != 0;
        out.push((v.len() + pad as usize) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    out
}

/// Verifies `sig` (raw r||s for ECDSA) over `msg` with ring against the token's public key.
pub fn verify(public: &TokenPublicKey, scheme: SignatureScheme, msg: &[u8], sig: &[u8]) -> bool {
    use ring::signature as rs;
    let alg: &dyn rs::VerificationAlgorithm = match scheme {
        SignatureScheme::EcdsaP256Sha256 => &rs::ECDSA_P256_SHA256_FIXED,
        SignatureScheme::EcdsaP384Sha384 => &rs::ECDSA_P384_SHA384_FIXED,
        SignatureScheme::RsaPkcs1Sha256 => &rs::RSA_PKCS1_2048_8192_SHA256,
        SignatureScheme::RsaPssSha256 => &rs::RSA_PSS_2048_8192_SHA256,
    };
    rs::UnparsedPublicKey::new(alg, public.key_bytes())
        .verify(msg, sig)
        .is_ok()
}

/// The digest of `msg` for `scheme`.
pub fn digest(scheme: SignatureScheme, msg: &[u8]) -> Vec<u8> {
    let alg = if scheme == SignatureScheme::EcdsaP384Sha384 {
        &ring::digest::SHA384
    } else {
        &ring::digest::SHA256
    };
    ring::digest::digest(alg, msg).as_ref().to_vec()
}

/// A token key as an rcgen signing key: rcgen hands the message, the token signs its digest.
pub struct RcgenTokenKey<'a> {
    signer: &'a Pkcs11Signer,
    public: TokenPublicKey,
}

impl<'a> RcgenTokenKey<'a> {
    pub fn new(signer: &'a Pkcs11Signer) -> Self {
        RcgenTokenKey {
            public: signer.public_key().expect("token public key"),
            signer,
        }
    }

    fn scheme(&self) -> SignatureScheme {
        match self.public.kind() {
            KeyKind::EcP256 => SignatureScheme::EcdsaP256Sha256,
            KeyKind::EcP384 => SignatureScheme::EcdsaP384Sha384,
            KeyKind::Rsa { .. } => SignatureScheme::RsaPkcs1Sha256,
        }
    }
}

impl rcgen::PublicKeyData for RcgenTokenKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.public.key_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self.public.kind() {
            KeyKind::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl rcgen::SigningKey for RcgenTokenKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let scheme = self.scheme();
        let sig = self
            .signer
            .sign_digest(scheme, &digest(scheme, msg))
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(if scheme.is_ecdsa() {
            ecdsa_raw_to_der(&sig)
        } else {
            sig
        })
    }
}

fn device_params(cn: &str) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    p
}

/// A self-signed device certificate (CN = `cn`, clientAuth) for the token key, signed by the
/// token: PEM, for an individual X.509 enrollment in the emulator.
pub fn self_signed_certificate(signer: &Pkcs11Signer, cn: &str) -> (String, Vec<u8>) {
    let key = RcgenTokenKey::new(signer);
    let cert = device_params(cn)
        .self_signed(&key)
        .expect("self-signed certificate for the token key");
    (cert.pem(), cert.der().to_vec())
}

/// A PKCS#10 request (DER, CN = `cn`) signed by the token key, for
/// `dps_emulator::pki::TestCa::sign_csr_der` (a group enrollment's CA issues the chain).
pub fn csr_der(signer: &Pkcs11Signer, cn: &str) -> Vec<u8> {
    let key = RcgenTokenKey::new(signer);
    let mut p = device_params(cn);
    p.is_ca = rcgen::IsCa::NoCa; // a CSR cannot carry basicConstraints in rcgen
    p.serialize_request(&key)
        .expect("CSR for the token key")
        .der()
        .to_vec()
}

/// A device certificate for the token key issued by `ca` (the CA checks the CSR the token
/// signed): the chain PEM, leaf first, then the intermediates and `ca` (for a group
/// enrollment on `ca` in the emulator).
pub fn ca_issued_chain_pem(
    ca: &dps_emulator::pki::TestCa,
    signer: &Pkcs11Signer,
    cn: &str,
) -> String {
    use base64::Engine as _;
    let chain = ca
        .sign_csr_der(&csr_der(signer, cn), cn, &issue_any())
        .expect("the CA issues a certificate for the token key");
    let mut pem = String::new();
    for der in chain {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// A token key as a rustls client key (test-side stand-in for the library's own X.509
/// credential over a `DigestSigner`): rustls hands the message, the token signs its digest.
#[derive(Debug)]
pub struct RustlsTokenKey {
    pub signer: std::sync::Arc<Pkcs11Signer>,
    /// The schemes to offer, preferred first (a subset of the signer's).
    pub prefer: Vec<SignatureScheme>,
}

fn to_rustls(s: SignatureScheme) -> rustls::SignatureScheme {
    match s {
        SignatureScheme::EcdsaP256Sha256 => rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::EcdsaP384Sha384 => rustls::SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::RsaPkcs1Sha256 => rustls::SignatureScheme::RSA_PKCS1_SHA256,
        SignatureScheme::RsaPssSha256 => rustls::SignatureScheme::RSA_PSS_SHA256,
    }
}

impl rustls::sign::SigningKey for RustlsTokenKey {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        let s = *self
            .prefer
            .iter()
            .find(|s| offered.contains(&to_rustls(**s)))?;
        Some(Box::new(RustlsTokenSigner {
            signer: self.signer.clone(),
            scheme: s,
        }))
    }
    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        match self.signer.key_kind() {
            KeyKind::Rsa { .. } => rustls::SignatureAlgorithm::RSA,
            _ => rustls::SignatureAlgorithm::ECDSA,
        }
    }
}

#[derive(Debug)]
struct RustlsTokenSigner {
    signer: std::sync::Arc<Pkcs11Signer>,
    scheme: SignatureScheme,
}

impl rustls::sign::Signer for RustlsTokenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let sig = self
            .signer
            .sign_digest(self.scheme, &digest(self.scheme, message))
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(if self.scheme.is_ecdsa() {
            ecdsa_raw_to_der(&sig)
        } else {
            sig
        })
    }
    fn scheme(&self) -> rustls::SignatureScheme {
        to_rustls(self.scheme)
    }
}

#[derive(Debug)]
struct OneCert(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OneCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Registers `registration_id` with the emulator over mutual TLS whose client key is the
/// token key (certificate chain `chain_der`, leaf first), with the TLS `versions` given.
/// Returns the HTTP status line and the body, or the TLS/IO error.
pub fn register_over_mutual_tls(
    emu: &dps_emulator::Emulator,
    scope: &str,
    registration_id: &str,
    chain_der: Vec<Vec<u8>>,
    key: RustlsTokenKey,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<(String, String), String> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(emu.ca_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let certified = rustls::sign::CertifiedKey::new(
        chain_der.into_iter().map(CertificateDer::from).collect(),
        std::sync::Arc::new(key),
    );
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(std::sync::Arc::new(OneCert(std::sync::Arc::new(certified))));
    let conn =
        rustls::ClientConnection::new(std::sync::Arc::new(config), "localhost".try_into().unwrap())
            .unwrap();
    let tcp = std::net::TcpStream::connect(emu.local_addr()).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = format!("{{\"registrationId\":\"{registration_id}\"}}");
    let req = format!(
        "PUT /{scope}/registrations/{registration_id}/register?api-version=2021-06-01 HTTP/1.1\r\n\
         Host: localhost\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes())
        .map_err(|e| format!("TLS handshake or request: {e}"))?;
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            // The emulator may close without close_notify once the response is out.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}

/// Issuance options accepting every key type, with the emulator's default validity.
pub fn issue_any() -> dps_emulator::pki::IssueOptions<'static> {
    use dps_emulator::config::CsrKeyType;
    const ALL: [CsrKeyType; 3] = [CsrKeyType::P256, CsrKeyType::P384, CsrKeyType::Rsa];
    dps_emulator::pki::IssueOptions {
        key_types: &ALL,
        validity_days: None,
        broken: None,
    }
}
