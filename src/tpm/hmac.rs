//! HMAC-SHA256 with the persisted identity key (PROTOCOL.md 5.4 step 4).
//!
//! Data up to the TPM's input buffer (TPM2_PT_INPUT_BUFFER, 1024 bytes on most TPMs) costs one
//! TPM2_HMAC. Longer data goes through TPM2_HMAC_Start, TPM2_SequenceUpdate per full buffer and
//! TPM2_SequenceComplete; tss-esapi 7 has no wrapper for these, so they are sent as raw TPM
//! commands ([`super::raw`]) on a connection of their own.

use std::sync::Arc;
use std::time::Instant;

use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::MaxBuffer;

use super::{State, Tpm, raw, tpm_error};
use crate::error::{Error, ErrorKind, Result};

/// The identity key persisted in the TPM, as an [`crate::credential::HmacKey`]: every
/// signature is a TPM command, the key never leaves the TPM.
#[derive(Clone)]
pub struct TpmHmacKey {
    tpm: Arc<Tpm>,
}

impl std::fmt::Debug for TpmHmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TpmHmacKey({})", self.description())
    }
}

impl TpmHmacKey {
    pub(crate) fn new(tpm: Arc<Tpm>) -> Self {
        TpmHmacKey { tpm }
    }

    /// The TPM this key lives in.
    pub fn tpm(&self) -> &Arc<Tpm> {
        &self.tpm
    }

    /// HMAC-SHA256 bounded by the caller's deadline (e.g. the registration's) and cancel token
    /// ([`crate::credential::HmacKey::hmac_sha256`] uses the TPM's command timeout).
    pub fn hmac_sha256_until(
        &self,
        data: &[u8],
        deadline: Instant,
        cancel: Option<&crate::transport::CancelToken>,
    ) -> Result<[u8; 32]> {
        self.tpm.hmac_until(data, deadline, cancel)
    }

    pub(crate) fn sign(&self, data: &[u8]) -> Result<[u8; 32]> {
        self.tpm.hmac_until(
            data,
            Instant::now() + self.tpm.options().command_timeout,
            None,
        )
    }

    pub(crate) fn description(&self) -> String {
        format!(
            "TPM HMAC key at {:#010x} (TCTI {})",
            self.tpm.options().identity_handle,
            self.tpm.options().tcti
        )
    }
}

/// Runs on the worker thread.
pub(crate) fn hmac(st: &mut State, data: &[u8]) -> Result<[u8; 32]> {
    let handle = st.identity_handle;
    // Reconnect first if the last connection broke (handles are per context).
    st.ctx()?;
    let key = match st.identity {
        Some(h) => h,
        None => {
            let h = st.persistent(handle)?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Tpm,
                    format!(
                        "the TPM has no identity key at {handle:#010x}: answer the DPS \
                         challenge (activate) first"
                    ),
                )
            })?;
            st.identity = Some(h);
            h
        }
    };
    let digest = if data.len() <= st.input_buffer {
        let buffer = MaxBuffer::try_from(data.to_vec())
            .map_err(|e| tpm_error("preparing the TPM2_HMAC input", &e))?;
        st.count(1);
        let digest = st
            .ctx()?
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.hmac(key, buffer, HashingAlgorithm::Sha256)
            })
            .map_err(|e| tpm_error(&format!("TPM2_HMAC with the key at {handle:#010x}"), &e))?;
        digest.value().to_vec()
    } else {
        raw::hmac_sequence(st, data)?
    };
    digest.as_slice().try_into().map_err(|_| {
        Error::new(
            ErrorKind::Tpm,
            format!(
                "the TPM returned a {}-byte HMAC, not 32: is the key at {handle:#010x} an \
                 HMAC-SHA256 key?",
                digest.len()
            ),
        )
    })
}
