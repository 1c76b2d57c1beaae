//! Test PKI: EC P-256 certificates made with rcgen, for the emulator's own server certificate
//! and for device certificates in tests (individual self-signed devices, CA chains for groups).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

use crate::util::sha256_hex_upper;

mod csr;

pub use csr::IssueOptions;

/// A certificate with its key.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate alone (PEM).
    pub cert_pem: String,
    /// PKCS#8 private key (PEM).
    pub key_pem: String,
    /// SHA-256 of the certificate DER, uppercase hex, no colons.
    pub sha256_thumbprint: String,
    /// The certificate followed by the intermediates a device must send (not the root), PEM.
    /// Equals `cert_pem` for self-signed devices and for devices issued directly by a root.
    pub chain_pem: String,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

fn base_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2049, 12, 31);
    let serial = crate::util::random_bytes::<16>();
    let mut s = serial.to_vec();
    s[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&s));
    p
}

pub(crate) fn leaf_params(cn: &str) -> CertificateParams {
    let mut p = base_params(cn);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p
}

pub(crate) fn new_key() -> KeyPair {
    // P-256 key generation only fails if the OS RNG fails.
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC P-256 key generation")
}

/// A self-signed device certificate (end entity, clientAuth) for an individual X.509 enrollment.
pub fn self_signed_device(common_name: &str) -> Issued {
    let key = new_key();
    let mut p = leaf_params(common_name);
    p.use_authority_key_identifier_extension = false;
    let cert = p.self_signed(&key).expect("self-signed device certificate");
    let pem = cert.pem();
    Issued {
        chain_pem: pem.clone(),
        cert_pem: pem,
        key_pem: key.serialize_pem(),
        sha256_thumbprint: sha256_hex_upper(cert.der()),
    }
}

/// A certificate authority (root or intermediate) that issues device certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    root: bool,
    cert_pem: String,
    der: Vec<u8>,
    /// PEM of the intermediates between this CA and the root, this CA first (empty for a root).
    chain_above: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("thumbprint", &sha256_hex_upper(&self.der))
            .finish()
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = base_params(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

impl TestCa {
    /// A new self-signed root CA.
    pub fn new(common_name: &str) -> TestCa {
        let key = new_key();
        let params = ca_params(common_name);
        let cert = params.self_signed(&key).expect("root CA certificate");
        TestCa {
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            root: true,
            chain_above: String::new(),
        }
    }

    /// This CA's certificate (PEM).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// This CA's certificate (DER).
    pub fn cert_der(&self) -> Vec<u8> {
        self.der.clone()
    }

    /// SHA-256 thumbprint of this CA's certificate (uppercase hex).
    pub fn sha256_thumbprint(&self) -> String {
        sha256_hex_upper(&self.der)
    }

    /// Private key of this CA (PKCS#8 PEM).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// An intermediate CA signed by this CA.
    pub fn intermediate(&self, common_name: &str) -> TestCa {
        let key = new_key();
        let mut params = ca_params(common_name);
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, self.issuer())
            .expect("intermediate CA certificate");
        let pem = cert.pem();
        let chain_above = if self.root {
            pem.clone()
        } else {
            format!("{pem}{}", self.chain_above)
        };
        TestCa {
            cert_pem: pem,
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            root: false,
            chain_above,
        }
    }

    /// `cert` (signed by this CA) with its key and the chain a peer sends.
    fn issued(&self, cert: &rcgen::Certificate, key: &KeyPair) -> Issued {
        let pem = cert.pem();
        Issued {
            chain_pem: format!("{pem}{}", self.chain_above),
            cert_pem: pem,
            key_pem: key.serialize_pem(),
            sha256_thumbprint: sha256_hex_upper(cert.der()),
        }
    }

    /// An end-entity device certificate (clientAuth) signed by this CA.
    pub fn issue_device(&self, common_name: &str) -> Issued {
        let key = new_key();
        let cert = leaf_params(common_name)
            .signed_by(&key, self.issuer())
            .expect("device certificate");
        self.issued(&cert, &key)
    }

    /// A TLS server certificate for `localhost`, `127.0.0.1` and `::1`, signed by this CA.
    pub fn issue_server(&self, common_name: &str) -> Issued {
        let key = new_key();
        let mut p = base_params(common_name);
        p.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().expect("dns name")),
            SanType::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
        ];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&key, self.issuer())
            .expect("server certificate");
        self.issued(&cert, &key)
    }

    /// Loads a CA from its certificate and key PEM (to issue the emulator's server certificate,
    /// or an enrollment's device certificates). `cert_pem` may continue with the CA's parents
    /// (an intermediate CA followed by its chain up to the root): issued chains then carry them.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<TestCa, String> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("CA key: {e}"))?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| format!("CA certificate: {e:?}"))?;
        let issuer =
            Issuer::from_ca_cert_der(&der, key).map_err(|e| format!("CA certificate: {e}"))?;
        // More certificates after the first: its parents (an intermediate CA with its chain).
        let parents = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).count() > 1;
        Ok(TestCa {
            cert_pem: cert_pem.to_string(),
            der: der.as_ref().to_vec(),
            issuer,
            root: !parents,
            chain_above: if parents {
                cert_pem.to_string()
            } else {
                String::new()
            },
        })
    }
}
