//! The DPS SAS token of `dps sas`, with the resource URI (`sr`) it signs.

use dps::{Result, SymmetricKey};
use zeroize::Zeroizing;

pub use dps::{validate_id_scope, validate_registration_id};

/// A SAS token for the DPS device API, `SharedAccessSignature sr=..&sig=..&se=..&skn=registration`,
/// signed with `key` and valid until `expiry_unix`, and the resource URI (`sr`) it signs.
pub fn sas_token(
    key: &SymmetricKey,
    id_scope: &str,
    registration_id: &str,
    expiry_unix: u64,
) -> Result<(Zeroizing<String>, String)> {
    let sr = dps::registration_resource_uri(id_scope, registration_id);
    Ok((key.sas_token(&sr, expiry_unix, Some("registration"))?, sr))
}
