//! TLS client configuration: trust anchors and the client certificate.
//! Built once per [`crate::Config`] and shared by every connection it makes.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};

use crate::error::{Error, ErrorKind, Result};

/// Roots Azure DPS and IoT Hub chain to (PROTOCOL.md 6, DEPENDENCIES.md):
/// DigiCert Global Root G2 (current), G3 (ECC chain), and the two Microsoft 2017
/// roots Microsoft recommends. Baltimore CyberTrust Root expired in 2025 and is
/// no longer in the Mozilla bundle.
const AZURE_ROOT_NAMES: [&[u8]; 4] = [
    b"DigiCert Global Root G2",
    b"DigiCert Global Root G3",
    b"Microsoft RSA Root Certificate Authority 2017",
    b"Microsoft ECC Root Certificate Authority 2017",
];

/// Which trust anchors verify the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DefaultRoots {
    /// The Azure subset of the Mozilla bundle (4 roots): small and enough for DPS.
    #[default]
    Azure,
    /// The whole Mozilla bundle from `webpki-roots` (about 150 roots).
    Mozilla,
    /// No built-in roots: only those added explicitly.
    None,
}

/// Builds the root store: the chosen built-in set plus `extra` roots.
pub fn root_store(defaults: DefaultRoots, extra: &RootCertStore) -> RootCertStore {
    let mut store = RootCertStore::empty();
    match defaults {
        DefaultRoots::Azure => store.roots.extend(
            webpki_roots::TLS_SERVER_ROOTS
                .iter()
                .filter(|ta| {
                    AZURE_ROOT_NAMES
                        .iter()
                        .any(|n| contains(ta.subject.as_ref(), n))
                })
                .cloned(),
        ),
        DefaultRoots::Mozilla => store
            .roots
            .extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        DefaultRoots::None => {}
    }
    store.roots.extend(extra.roots.iter().cloned());
    store
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Parses one or more PEM certificates and adds them as trust anchors.
pub fn add_pem_roots(store: &mut RootCertStore, pem: &[u8]) -> Result<usize> {
    let bad = |why: String| Error::new(ErrorKind::InvalidTrustAnchor, why);
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| bad(format!("trusted root PEM is malformed: {e}")))?;
        store
            .add(cert)
            .map_err(|e| bad(format!("trusted root certificate is invalid: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad(
            "no CERTIFICATE block found in the trusted root PEM".into()
        ));
    }
    Ok(added)
}

/// Sends one fixed certificate chain + key. The key may live anywhere rustls can
/// sign with (in memory today; a hardware signer later) since `CertifiedKey`
/// holds an `Arc<dyn SigningKey>`.
#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Builds the rustls client configuration: TLS 1.3 and 1.2 with the ring
/// provider, verification always on.
pub fn client_config(
    roots: RootCertStore,
    client_cert: Option<Arc<CertifiedKey>>,
) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::new(ErrorKind::Internal, format!("TLS configuration: {e}")))?
        .with_root_certificates(roots);
    let mut cfg = match client_cert {
        Some(ck) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(ck))),
        None => builder.with_no_client_auth(),
    };
    // One registration is a handful of requests on one connection: no need for
    // session tickets or a resumption cache that would keep memory alive.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_subset_has_the_four_roots() {
        let store = root_store(DefaultRoots::Azure, &RootCertStore::empty());
        assert_eq!(store.roots.len(), 4);
        assert!(
            root_store(DefaultRoots::Mozilla, &RootCertStore::empty())
                .roots
                .len()
                > 100
        );
        assert!(root_store(DefaultRoots::None, &RootCertStore::empty()).is_empty());
    }

    #[test]
    fn bad_root_pem() {
        let mut s = RootCertStore::empty();
        assert_eq!(
            add_pem_roots(&mut s, b"hello").unwrap_err().kind,
            ErrorKind::InvalidTrustAnchor
        );
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            add_pem_roots(&mut s, garbage).unwrap_err().kind,
            ErrorKind::InvalidTrustAnchor
        );
    }
}
