//! The DPS activation blob (PROTOCOL.md 5.4 step 3) and the TPM commands that import the HMAC
//! key it carries.
//!
//! Blob layout (TPM wire format, big-endian, every field a TPM2B: u16 size then bytes):
//! `credentialBlob` (TPM2B_ID_OBJECT), `encryptedSecret` (TPM2B_ENCRYPTED_SECRET), `dupBlob`
//! (TPM2B_PRIVATE), `encWrapKey` (TPM2B_ENCRYPTED_SECRET), `idKeyPub` (TPM2B_PUBLIC), then an
//! optional `encUriData` (TPM2B) that clients ignore.
//!
//! Commands per activation: StartAuthSession, PolicySecret, ActivateCredential, FlushContext
//! (session), Import, Load, [EvictControl of the previous key], EvictControl, FlushContext
//! (loaded copy): 8, or 9 when a key is replaced, plus one ReadPublic the first time the
//! identity handle is looked at.

use std::fmt;

use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::Provision;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, Digest, EncryptedSecret, IdObject, Nonce, Private, Public, SymmetricDefinition,
    SymmetricDefinitionObject,
};
use tss_esapi::traits::UnMarshall;
use zeroize::Zeroizing;

use super::{State, persistent_handle, persistent_of, tpm_error, tpm_error_kind};
use crate::error::{Error, ErrorKind, Result};

/// The decoded `authenticationKey`. Everything in it is encrypted to this TPM, but `Debug`
/// shows sizes only all the same.
pub(crate) struct ActivationBlob {
    credential_blob: Vec<u8>,
    encrypted_secret: Vec<u8>,
    dup_blob: Vec<u8>,
    enc_wrap_key: Vec<u8>,
    id_key_public: Vec<u8>,
}

impl fmt::Debug for ActivationBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivationBlob")
            .field("credential_blob_len", &self.credential_blob.len())
            .field("encrypted_secret_len", &self.encrypted_secret.len())
            .field("dup_blob_len", &self.dup_blob.len())
            .field("enc_wrap_key_len", &self.enc_wrap_key.len())
            .field("id_key_public_len", &self.id_key_public.len())
            .finish()
    }
}

fn malformed(what: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::TpmActivationFailed,
        format!("the activation blob (authenticationKey) is malformed: {what}"),
    )
}

impl ActivationBlob {
    /// Splits the base64-decoded `authenticationKey` into its fields.
    pub(crate) fn parse(bytes: &[u8]) -> Result<ActivationBlob> {
        let mut rest = bytes;
        let mut field = |name: &str| -> Result<Vec<u8>> {
            if rest.len() < 2 {
                return Err(malformed(format_args!(
                    "its {} bytes end before the {name} field",
                    bytes.len()
                )));
            }
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            if rest.len() - 2 < len {
                return Err(malformed(format_args!(
                    "the {name} field announces {len} bytes, {} remain",
                    rest.len() - 2
                )));
            }
            let value = rest[2..2 + len].to_vec();
            rest = &rest[2 + len..];
            if value.is_empty() && name != "encUriData" {
                return Err(malformed(format_args!("the {name} field is empty")));
            }
            Ok(value)
        };
        let blob = ActivationBlob {
            credential_blob: field("credentialBlob")?,
            encrypted_secret: field("encryptedSecret")?,
            dup_blob: field("dupBlob")?,
            enc_wrap_key: field("encWrapKey")?,
            id_key_public: field("idKeyPub")?,
        };
        // encUriData is optional: absent, or exactly one TPM2B that clients ignore.
        let consumed: usize = [
            &blob.credential_blob,
            &blob.encrypted_secret,
            &blob.dup_blob,
            &blob.enc_wrap_key,
            &blob.id_key_public,
        ]
        .iter()
        .map(|f| 2 + f.len())
        .sum();
        let tail = &bytes[consumed..];
        if !tail.is_empty() {
            let mut tail_rest = tail;
            if tail_rest.len() < 2 {
                return Err(malformed("one stray byte after idKeyPub"));
            }
            let len = usize::from(u16::from_be_bytes([tail_rest[0], tail_rest[1]]));
            tail_rest = &tail_rest[2..];
            if tail_rest.len() != len {
                return Err(malformed(format_args!(
                    "encUriData announces {len} bytes, {} follow",
                    tail_rest.len()
                )));
            }
        }
        Ok(blob)
    }
}

fn activation_failed(step: &str, e: &tss_esapi::Error) -> Error {
    let mut err = tpm_error_kind(ErrorKind::TpmActivationFailed, step, e);
    err.message
        .push_str(": the blob was not made for this TPM's EK and SRK, or it was altered");
    err
}

/// Runs the whole activation on the worker thread.
pub(crate) fn activate(st: &mut State, blob: &ActivationBlob) -> Result<()> {
    let id_public = parse_public(&blob.id_key_public)?;
    let inner_wrap_key = activate_credential(st, blob)?;
    let srk = st.srk;
    // TPM2_Import: the duplicate, inner-wrapped with the credential, outer-wrapped to the SRK.
    let (encryption_key, symmetric) = if inner_wrap_key.is_empty() {
        (None, SymmetricDefinitionObject::Null)
    } else {
        let key = Data::try_from(inner_wrap_key.to_vec())
            .map_err(|e| activation_failed("using the inner wrapper key", &e))?;
        let sym = match inner_wrap_key.len() {
            16 => SymmetricDefinitionObject::AES_128_CFB,
            24 => SymmetricDefinitionObject::Aes {
                key_bits: tss_esapi::interface_types::key_bits::AesKeyBits::Aes192,
                mode: tss_esapi::interface_types::algorithm::SymmetricMode::Cfb,
            },
            32 => SymmetricDefinitionObject::AES_256_CFB,
            n => {
                return Err(Error::new(
                    ErrorKind::TpmActivationFailed,
                    format!("the activated credential is {n} bytes, not an AES key size"),
                ));
            }
        };
        (Some(key), sym)
    };
    let duplicate = Private::try_from(blob.dup_blob.clone())
        .map_err(|e| activation_failed("reading dupBlob", &e))?;
    let seed = EncryptedSecret::try_from(blob.enc_wrap_key.clone())
        .map_err(|e| activation_failed("reading encWrapKey", &e))?;
    st.count(1);
    let public_for_import = id_public.clone();
    let private = st
        .ctx()?
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.import(
                srk,
                encryption_key,
                public_for_import,
                duplicate,
                seed,
                symmetric,
            )
        })
        .map_err(|e| activation_failed("TPM2_Import of the identity key", &e))?;
    st.count(1);
    let loaded: ObjectHandle = st
        .ctx()?
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.load(srk.into(), private, id_public)
        })
        .map_err(|e| activation_failed("TPM2_Load of the identity key", &e))?
        .into();
    let persisted = persist(st, loaded);
    st.count(1);
    let flushed = st.ctx()?.flush_context(loaded);
    let persisted = persisted?;
    flushed.map_err(|e| tpm_error("TPM2_FlushContext of the loaded identity key", &e))?;
    st.identity = Some(persisted);
    log::info!(
        "activated the DPS challenge; identity key persisted at {:#010x}",
        st.identity_handle
    );
    Ok(())
}

/// The TPMT_PUBLIC inside the idKeyPub TPM2B.
fn parse_public(tpmt: &[u8]) -> Result<Public> {
    let public = Public::unmarshall(tpmt)
        .map_err(|e| activation_failed("reading idKeyPub (TPMT_PUBLIC)", &e))?;
    match &public {
        Public::KeyedHash { .. } => Ok(public),
        _ => Err(malformed("idKeyPub is not a keyed-hash (HMAC) key")),
    }
}

/// PolicySecret(endorsement) session, then TPM2_ActivateCredential: the inner wrapper key.
fn activate_credential(st: &mut State, blob: &ActivationBlob) -> Result<Zeroizing<Vec<u8>>> {
    let credential_blob = IdObject::try_from(blob.credential_blob.clone())
        .map_err(|e| activation_failed("reading credentialBlob", &e))?;
    let secret = EncryptedSecret::try_from(blob.encrypted_secret.clone())
        .map_err(|e| activation_failed("reading encryptedSecret", &e))?;
    // Reconnect first if the last connection broke: the EK and SRK handles are resolved
    // again in the new context, and the old context's handles are meaningless in it.
    st.ctx()?;
    let (srk, ek) = (st.srk, st.ek);
    st.count(1);
    let session = st
        .ctx()?
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::Null,
            HashingAlgorithm::Sha256,
        )
        .map_err(|e| tpm_error("TPM2_StartAuthSession (policy)", &e))?
        .ok_or_else(|| Error::new(ErrorKind::Tpm, "TPM2_StartAuthSession returned no session"))?;
    let result = (|| -> Result<Zeroizing<Vec<u8>>> {
        let (attrs, mask) = SessionAttributesBuilder::new()
            .with_continue_session(true)
            .build();
        st.ctx()?
            .tr_sess_set_attributes(session, attrs, mask)
            .map_err(|e| tpm_error("setting the policy session attributes", &e))?;
        let policy = PolicySession::try_from(session)
            .map_err(|e| tpm_error("using the policy session", &e))?;
        st.count(1);
        st.ctx()?
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.policy_secret(
                    policy,
                    AuthHandle::Endorsement,
                    Nonce::default(),
                    Digest::default(),
                    Nonce::default(),
                    None,
                )
            })
            .map_err(|e| tpm_error("TPM2_PolicySecret(TPM_RH_ENDORSEMENT)", &e))?;
        st.count(1);
        let ctx = st.ctx()?;
        ctx.set_sessions((Some(AuthSession::Password), Some(session), None));
        let credential = ctx.activate_credential(srk.into(), ek.into(), credential_blob, secret);
        ctx.clear_sessions();
        let credential =
            credential.map_err(|e| activation_failed("TPM2_ActivateCredential", &e))?;
        Ok(Zeroizing::new(credential.value().to_vec()))
    })();
    st.count(1);
    let flushed =
        st.ctx()?
            .flush_context(ObjectHandle::from(tss_esapi::handles::SessionHandle::from(
                session,
            )));
    let key = result?;
    flushed.map_err(|e| tpm_error("TPM2_FlushContext of the policy session", &e))?;
    Ok(key)
}

/// EvictControl: removes the key at the identity handle, if any, and persists `loaded` there.
fn persist(st: &mut State, loaded: ObjectHandle) -> Result<ObjectHandle> {
    let handle = st.identity_handle;
    let existing = match st.identity.take() {
        Some(h) => Some(h),
        None => st.persistent(handle)?,
    };
    let target = persistent_handle(handle)?;
    if let Some(old) = existing {
        st.count(1);
        st.ctx()?
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.evict_control(Provision::Owner, old, persistent_of(target))
            })
            .map_err(|e| {
                tpm_error(
                    &format!("TPM2_EvictControl removing the previous key at {handle:#010x}"),
                    &e,
                )
            })?;
    }
    st.count(1);
    st.ctx()?
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.evict_control(Provision::Owner, loaded, persistent_of(target))
        })
        .map_err(|e| {
            tpm_error(
                &format!("TPM2_EvictControl persisting the identity key at {handle:#010x}"),
                &e,
            )
        })
}
