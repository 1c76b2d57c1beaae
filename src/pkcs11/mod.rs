//! Keys in PKCS#11 tokens (HSMs, smart cards, SoftHSM, tpm2-pkcs11), addressed by RFC 7512
//! URIs. Enabled by the `pkcs11` cargo feature.
//!
//! - [`Pkcs11Signer`]: a private key (EC P-256/P-384, RSA 2048+) as a
//!   [`DigestSigner`](crate::credential::DigestSigner) for X.509 registration, with the
//!   public key and the certificate stored next to it.
//! - [`Pkcs11HmacKey`]: a generic secret as an [`HmacKey`](crate::credential::HmacKey) for
//!   SAS tokens (`CKM_SHA256_HMAC`).
//!
//! ```no_run
//! # #[cfg(feature = "pkcs11")] {
//! use dps::credential::DigestSigner;
//! use dps::pkcs11::{Pkcs11Signer, Pkcs11Uri};
//! let mut uri = Pkcs11Uri::parse(
//!     "pkcs11:token=dps;object=device-key;type=private\
//!      ?module-path=/usr/lib/softhsm/libsofthsm2.so",
//! )?;
//! uri.set_pin("1234");
//! let signer = Pkcs11Signer::open(&uri)?;
//! let cert = signer.certificate_der()?; // Some(DER) if the token stores it
//! # }
//! # Ok::<(), dps::Error>(())
//! ```
//!
//! Threading and lifetime: each module is loaded and `C_Initialize`d once per process (with
//! OS locking) and never finalised; each signer or HMAC key has its own session, logged in
//! once, on which its calls are serialised. When the token is removed or reset
//! (`CKR_SESSION_HANDLE_INVALID`, `CKR_DEVICE_REMOVED`, `CKR_TOKEN_NOT_PRESENT`, ...), the
//! next call finds the token again, reopens the session, logs in, finds the object and tries
//! once more. PKCS#11 login state is per token and process: when one key holder is logged in,
//! another holder on the same token shares that login (`CKR_USER_ALREADY_LOGGED_IN`), so a
//! second holder's PIN is only checked when it is the first to log in.
//!
//! Errors ([`crate::ErrorKind`]): a malformed URI is `InvalidArgument`; a missing module
//! path, a missing file or a library that is not a PKCS#11 module is `Pkcs11Module`; a
//! missing or wrong PIN `Pkcs11Pin`; a URI that matches no token or object, or several, or a
//! token that has the certificate or public key but not the private key, `Pkcs11Object`; a
//! key of an unsupported type, curve or size, or one that may not sign, `InvalidPrivateKey`
//! (`InvalidKey` for HMAC keys); a failing token call or an unusable result `SignerFailed`.
//! No message contains the PIN or key material.

mod error;
mod hmac;
mod module;
mod session;
mod signer;
mod uri;

pub use hmac::Pkcs11HmacKey;
pub use signer::{KeyKind, Pkcs11Signer, TokenPublicKey};
pub use uri::{ObjectType, Pkcs11Uri};

/// An X.509 credential whose key is the token's private key at `uri`.
///
/// `cert_chain_pem` is the chain (leaf first); `None` reads the certificate stored in the
/// token next to the key (same label and id, `type=cert`), which is then the whole chain.
/// The pair is checked as in [`X509Credential::from_signer`](crate::X509Credential::from_signer)
/// (one signature by the token, verified against the leaf). A token without such a
/// certificate when none is given is [`ErrorKind::Pkcs11Object`](crate::ErrorKind::Pkcs11Object).
pub fn x509_credential(
    uri: &Pkcs11Uri,
    cert_chain_pem: Option<&[u8]>,
) -> crate::Result<crate::X509Credential> {
    use std::sync::Arc;
    let signer = Arc::new(Pkcs11Signer::open(uri)?);
    match cert_chain_pem {
        Some(pem) => crate::X509Credential::from_signer(pem, signer),
        None => {
            let der = signer.certificate_der()?.ok_or_else(|| {
                error::object_error(format!(
                    "the token holds no certificate for {uri} (a certificate object with the \
                     key's label and id); give the certificate chain"
                ))
            })?;
            crate::X509Credential::from_chain_and_signer(
                vec![rustls_pki_types::CertificateDer::from(der)],
                signer,
            )
        }
    }
}
