//! The EK and SRK: found at their persistent handles, or created from the standard templates.

use tss_esapi::abstraction::ek;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::handles::ObjectHandle;
use tss_esapi::interface_types::algorithm::{
    AsymmetricAlgorithm, HashingAlgorithm, PublicAlgorithm,
};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Public, PublicBuilder, PublicKeyRsa, PublicRsaParametersBuilder, RsaExponent, RsaScheme,
    SymmetricDefinitionObject,
};

use super::{State, persistent_handle, persistent_of, tpm_error};
use crate::error::{Error, ErrorKind, Result};

pub(crate) fn resolve_or_create(
    st: &mut State,
    handle: u32,
    what: &str,
    create: bool,
) -> Result<ObjectHandle> {
    if let Some(h) = st.persistent(handle)? {
        return Ok(h);
    }
    if !create {
        return Err(Error::new(
            ErrorKind::Tpm,
            format!(
                "the TPM has no {what} at {handle:#010x} (provision it, e.g. with tpm2_createek / \
                 tpm2_createprimary + tpm2_evictcontrol, or set create_missing)"
            ),
        ));
    }
    let (hierarchy, public) = if what == "EK" {
        (
            Hierarchy::Endorsement,
            ek::create_ek_public_from_default_template(AsymmetricAlgorithm::Rsa, None)
                .map_err(|e| tpm_error("building the EK template", &e))?,
        )
    } else {
        (Hierarchy::Owner, srk_template()?)
    };
    st.count(1);
    let created = st
        .ctx()?
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.create_primary(hierarchy, public, None, None, None, None)
        })
        .map_err(|e| tpm_error(&format!("TPM2_CreatePrimary of the {what}"), &e))?;
    let transient: ObjectHandle = created.key_handle.into();
    st.count(2);
    let persistent = persistent_handle(handle)?;
    let result = st
        .ctx()?
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.evict_control(Provision::Owner, transient, persistent_of(persistent))
        });
    let flushed = st.ctx()?.flush_context(transient);
    let persisted = result.map_err(|e| {
        tpm_error(
            &format!("TPM2_EvictControl of the {what} to {handle:#010x}"),
            &e,
        )
    })?;
    flushed.map_err(|e| tpm_error("TPM2_FlushContext", &e))?;
    log::info!("created the {what} at {handle:#010x} from the standard template");
    Ok(persisted)
}

/// The TCG SRK template (TCG TPM v2.0 Provisioning Guidance 7.5.1): RSA-2048 restricted
/// decryption key, AES-128-CFB, fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth |
/// noDA, empty unique of 256 bytes.
fn srk_template() -> Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(|e| tpm_error("building the SRK attributes", &e))?;
    let params = PublicRsaParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::AES_128_CFB)
        .with_scheme(RsaScheme::Null)
        .with_key_bits(RsaKeyBits::Rsa2048)
        .with_exponent(RsaExponent::default())
        .with_is_decryption_key(true)
        .with_restricted(true)
        .build()
        .map_err(|e| tpm_error("building the SRK parameters", &e))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Rsa)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_rsa_parameters(params)
        .with_rsa_unique_identifier(PublicKeyRsa::new_empty_with_size(RsaKeyBits::Rsa2048))
        .build()
        .map_err(|e| tpm_error("building the SRK template", &e))
}
