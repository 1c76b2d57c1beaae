//! `dps sas`: a DPS SAS token (the `Authorization` header value) for a device.

use std::time::{SystemTime, UNIX_EPOCH};

use dps::SymmetricKey;
use serde_json::json;

use crate::args::Parsed;
use crate::exit::{self, Failure, Res};
use crate::inputs::{env_or, seconds, secret};
use crate::library::{sas_token, validate_id_scope, validate_registration_id};
use crate::output::print_json;

pub const HELP: &str = "\
dps sas - print a DPS SAS token (the Authorization header value) for a device

Usage: dps sas --id-scope SCOPE --registration-id ID (--symmetric-key KEY | --group-key KEY)
               [--ttl SECS | --expiry UNIX_TIME] [--json]

  --ttl SECS        lifetime from now (default 3600)
  --expiry T        absolute expiry, seconds since 1970
  --json, -j        {\"token\": ..., \"resourceUri\": ..., \"expiry\": ...}

Example (then use with curl -H \"Authorization: $TOKEN\"):
  TOKEN=$(dps sas --id-scope 0ne00000001 --registration-id dev-sym --symmetric-key @dev-sym.key)
";

pub fn run(p: &Parsed) -> Res<u8> {
    let scope = env_or(p, "--id-scope", "DPS_ID_SCOPE")
        .ok_or_else(|| Failure::Usage("--id-scope is required (or DPS_ID_SCOPE)".into()))?;
    let id = env_or(p, "--registration-id", "DPS_REGISTRATION_ID").ok_or_else(|| {
        Failure::Usage("--registration-id is required (or DPS_REGISTRATION_ID)".into())
    })?;
    validate_id_scope(&scope)?;
    validate_registration_id(&id)?;
    let key = match (p.value("--symmetric-key"), p.value("--group-key")) {
        (Some(k), None) => SymmetricKey::individual(&secret("--symmetric-key", k)?)?,
        (None, Some(g)) => SymmetricKey::from_group(&secret("--group-key", g)?, &id)?,
        (Some(_), Some(_)) => {
            return Err(Failure::Usage(
                "give --symmetric-key or --group-key, not both".into(),
            ));
        }
        (None, None) => {
            return Err(Failure::Usage(
                "--symmetric-key or --group-key is required".into(),
            ));
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expiry = match (p.value("--expiry"), p.value("--ttl")) {
        (Some(_), Some(_)) => {
            return Err(Failure::Usage("give --ttl or --expiry, not both".into()));
        }
        (Some(e), None) => e
            .trim()
            .parse::<u64>()
            .map_err(|_| Failure::Usage(format!("--expiry {e:?} is not a Unix time")))?,
        (None, Some(t)) => {
            let ttl = seconds("--ttl", t)?.as_secs();
            if ttl == 0 {
                return Err(Failure::Usage("--ttl must be at least 1 second".into()));
            }
            now + ttl
        }
        (None, None) => now + 3600,
    };
    let (token, resource_uri) = sas_token(&key, &scope, &id, expiry)?;
    if p.flag("--json") {
        print_json(&json!({
            "token": token.as_str(),
            "resourceUri": resource_uri,
            "expiry": expiry,
        }));
    } else {
        println!("{}", token.as_str());
    }
    Ok(exit::OK)
}
