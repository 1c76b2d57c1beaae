//! TLS: server configuration (optional client certificates whose proof of possession is checked
//! by rustls, trust decided per request) and a blocking TLS stream with deadlines.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, ServerConfig, ServerConnection, SignatureScheme,
};

/// Offers client authentication without requiring it; accepts any chain at the TLS layer but
/// checks the handshake signature (proof of key possession). The request handler then decides
/// trust (thumbprint or chain to a group CA), as DPS does.
#[derive(Debug)]
struct OptionalClientAuth {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for OptionalClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server configuration from a certificate chain (leaf first) and key.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    versions: &[String],
) -> Result<Arc<ServerConfig>, String> {
    let provider = provider();
    let mut vs: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if versions.is_empty() || versions.iter().any(|v| v == "1.3") {
        vs.push(&rustls::version::TLS13);
    }
    if versions.is_empty() || versions.iter().any(|v| v == "1.2") {
        vs.push(&rustls::version::TLS12);
    }
    let verifier = Arc::new(OptionalClientAuth {
        algs: provider.signature_verification_algorithms,
    });
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&vs)
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate/key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
pub enum ConnError {
    /// Deadline passed.
    Timeout,
    /// The peer closed (cleanly or not).
    Closed,
    /// TLS protocol error (garbage, bad handshake signature, ...).
    Tls(rustls::Error),
    Io(io::Error),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Timeout => write!(f, "timeout"),
            ConnError::Closed => write!(f, "closed by peer"),
            ConnError::Tls(e) => write!(f, "TLS error: {e}"),
            ConnError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A server-side TLS stream over a blocking socket; every read takes a deadline.
pub struct TlsStream {
    pub sock: TcpStream,
    pub tls: ServerConnection,
    eof: bool,
}

impl TlsStream {
    pub fn new(sock: TcpStream, tls: ServerConnection) -> TlsStream {
        TlsStream {
            sock,
            tls,
            eof: false,
        }
    }

    fn read_tls_until(&mut self, deadline: Instant) -> Result<(), ConnError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(ConnError::Timeout);
        }
        let wait = (deadline - now).max(Duration::from_millis(1));
        self.sock
            .set_read_timeout(Some(wait))
            .map_err(ConnError::Io)?;
        match self.tls.read_tls(&mut self.sock) {
            Ok(0) => {
                self.eof = true;
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err(ConnError::Timeout),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(ConnError::Io(e)),
        }
        if let Err(e) = self.tls.process_new_packets() {
            // Try to tell the peer (alert), then give up.
            let _ = self.flush();
            return Err(ConnError::Tls(e));
        }
        Ok(())
    }

    /// Completes the handshake before `deadline`.
    pub fn handshake(&mut self, deadline: Instant) -> Result<(), ConnError> {
        while self.tls.is_handshaking() {
            self.flush().map_err(ConnError::Io)?;
            if self.eof {
                return Err(ConnError::Closed);
            }
            if self.tls.wants_read() {
                self.read_tls_until(deadline)?;
            }
        }
        self.flush().map_err(ConnError::Io)?;
        Ok(())
    }

    /// Reads some plaintext; `Ok(0)` means the peer closed.
    pub fn read_some(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, ConnError> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(ConnError::Io(e)),
            }
            if self.eof {
                return Ok(0);
            }
            self.flush().map_err(ConnError::Io)?;
            self.read_tls_until(deadline)?;
        }
    }

    /// Sends all pending TLS records.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes plaintext and flushes it to the socket (in 16 KiB pieces).
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(16 * 1024) {
            self.tls.writer().write_all(chunk)?;
            self.flush()?;
        }
        Ok(())
    }

    /// Sends close_notify.
    pub fn close_notify(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush();
    }

    /// The client certificate chain, if the client sent one.
    pub fn peer_chain(&self) -> Vec<CertificateDer<'static>> {
        self.tls
            .peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
            .unwrap_or_default()
    }
}
