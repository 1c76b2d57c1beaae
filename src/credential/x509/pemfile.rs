//! PEM: certificate chains and private key blocks.

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use super::CredentialError;
use super::encrypted::decrypt_pkcs8;
// ---------------------------------------------------------------------------------------------
// PEM

pub(super) fn parse_cert_chain_pem(
    data: &[u8],
) -> Result<Vec<CertificateDer<'static>>, CredentialError> {
    let chain = CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CredentialError::BadCertificate(pem_error_message(&e)))?;
    if chain.is_empty() {
        if looks_like_der(data) {
            return Err(CredentialError::BadCertificate(
                "this is DER (binary), not PEM: convert it with \
                 `openssl x509 -inform der -in FILE -out FILE.pem`"
                    .into(),
            ));
        }
        return Err(CredentialError::NoCertificate);
    }
    Ok(chain)
}

/// Whether `data` is one whole DER SEQUENCE (a certificate or key saved as DER) rather than
/// PEM text: the usual reason no PEM block is found.
fn looks_like_der(data: &[u8]) -> bool {
    matches!(super::der::read(data), Some((0x30, _, [])))
}

/// A short description of a PEM error. The parser's own message lists the bytes of the
/// offending line; this names the block by its label when the label is a plain one
/// (`CERTIFICATE`, `EC PRIVATE KEY`, ...) and otherwise echoes no input at all.
pub(crate) fn pem_error_message(e: &pem::Error) -> String {
    let plain_label = |label: &[u8]| {
        (1..=40).contains(&label.len())
            && label
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' ')
    };
    match e {
        pem::Error::MissingSectionEnd { end_marker } if plain_label(end_marker) => format!(
            "the {} block has no END line (a truncated file?)",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::MissingSectionEnd { .. } => {
            "a PEM block has no END line (a truncated file?)".into()
        }
        pem::Error::IllegalSectionStart { .. } => "malformed PEM BEGIN line".into(),
        pem::Error::Base64Decode(_) => "invalid base64 in a PEM block".into(),
        pem::Error::SectionTooLarge => "PEM block too large".into(),
        _ => "malformed PEM".into(),
    }
}

/// One `-----BEGIN <label>-----` line: its byte offset and its label.
struct PemBegin<'a> {
    offset: usize,
    label: &'a [u8],
}

/// Lines of `data` with their byte offsets, without line terminators or trailing blanks.
fn lines_with_offsets(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut offset = 0usize;
    data.split(|&b| b == b'\n').map(move |line| {
        let start = offset;
        offset = offset.saturating_add(line.len()).saturating_add(1);
        (start, line.trim_ascii_end())
    })
}

fn pem_begin_lines(data: &[u8]) -> impl Iterator<Item = PemBegin<'_>> {
    lines_with_offsets(data).filter_map(|(offset, line)| {
        let label = line
            .trim_ascii_start()
            .strip_prefix(b"-----BEGIN ")?
            .strip_suffix(b"-----")?;
        Some(PemBegin { offset, label })
    })
}

/// The body lines of the PEM block starting at `begin` (between its BEGIN and END lines).
fn pem_body_lines<'a>(data: &'a [u8], begin: &PemBegin<'_>) -> Result<Vec<&'a [u8]>, ()> {
    let rest = data.get(begin.offset..).ok_or(())?;
    let mut body = Vec::new();
    for (_, line) in lines_with_offsets(rest).skip(1) {
        let line = line.trim_ascii_start();
        if let Some(end) = line.strip_prefix(b"-----END ") {
            return if end.starts_with(begin.label) {
                Ok(body)
            } else {
                Err(())
            };
        }
        body.push(line);
    }
    Err(())
}

const LABEL_PKCS8: &[u8] = b"PRIVATE KEY";
const LABEL_PKCS1: &[u8] = b"RSA PRIVATE KEY";
const LABEL_SEC1: &[u8] = b"EC PRIVATE KEY";
const LABEL_ENCRYPTED: &[u8] = b"ENCRYPTED PRIVATE KEY";

/// Finds the first private key block of `data` and returns the (decrypted) key DER.
pub(super) fn parse_key_pem(
    data: &[u8],
    password: Option<&[u8]>,
) -> Result<Zeroizing<PrivateKeyDer<'static>>, CredentialError> {
    let Some(begin) = pem_begin_lines(data).find(|b| b.label.ends_with(b"PRIVATE KEY")) else {
        return Err(if looks_like_der(data) {
            CredentialError::BadPrivateKey(
                "this is DER (binary), not PEM: convert it with \
                 `openssl pkey -inform der -in FILE -out FILE.pem`"
                    .into(),
            )
        } else {
            CredentialError::NoPrivateKey
        });
    };
    let unterminated = |()| {
        CredentialError::BadPrivateKey(pem_error_message(&pem::Error::MissingSectionEnd {
            end_marker: begin.label.to_vec(),
        }))
    };
    match begin.label {
        LABEL_PKCS8 | LABEL_PKCS1 | LABEL_SEC1 => {
            let body = pem_body_lines(data, &begin).map_err(unterminated)?;
            if body.iter().any(|l| l.starts_with(b"Proc-Type:")) {
                return Err(CredentialError::UnsupportedKey(
                    "legacy OpenSSL PEM encryption (Proc-Type: 4,ENCRYPTED); convert it with \
                     `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
                        .into(),
                ));
            }
            let rest = data.get(begin.offset..).unwrap_or_default();
            PrivateKeyDer::from_pem_slice(rest)
                .map(Zeroizing::new)
                .map_err(|e| match e {
                    pem::Error::NoItemsFound => CredentialError::NoPrivateKey,
                    e => CredentialError::BadPrivateKey(pem_error_message(&e)),
                })
        }
        LABEL_ENCRYPTED => {
            let body = pem_body_lines(data, &begin).map_err(unterminated)?;
            let Some(password) = password else {
                return Err(CredentialError::KeyPasswordRequired);
            };
            decrypt_pkcs8(&body, password)
        }
        other => Err(CredentialError::UnsupportedKey(format!(
            "PEM block type {} (expected PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY or \
             ENCRYPTED PRIVATE KEY)",
            crate::config::echo(&String::from_utf8_lossy(other))
        ))),
    }
}
