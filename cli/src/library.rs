//! The only place the CLI reaches past the `dps` crate's public API (into `dps::protocol`),
//! for what that API does not offer yet:
//!
//! - checking an ID scope or a registration ID on its own (without a `ConfigBuilder`), for
//!   `dps sas` (`dps derive-key` has `dps::derive_device_key`, which checks the ID);
//! - the resource URI (`sr`) of the DPS device API that a SAS token signs, for `dps sas`
//!   (`SymmetricKey::sas_token` takes it already encoded).
//!
//! When the library exports these, the bodies below become one call each.

use dps::{Result, SymmetricKey};
use zeroize::Zeroizing;

/// Checks an ID scope (1-64 ASCII letters and digits).
pub fn validate_id_scope(scope: &str) -> Result<()> {
    dps::protocol::ids::validate_id_scope(scope)
}

/// Checks a registration ID against DPS's rules.
pub fn validate_registration_id(id: &str) -> Result<()> {
    dps::protocol::ids::validate_registration_id(id)
}

/// A SAS token for the DPS device API, `SharedAccessSignature sr=..&sig=..&se=..&skn=registration`,
/// signed with `key` and valid until `expiry_unix`, and the resource URI (`sr`) it signs.
pub fn sas_token(
    key: &SymmetricKey,
    id_scope: &str,
    registration_id: &str,
    expiry_unix: u64,
) -> Result<(Zeroizing<String>, String)> {
    let sr = dps::protocol::sas::resource_uri(id_scope, registration_id);
    Ok((key.sas_token(&sr, expiry_unix, Some("registration"))?, sr))
}
