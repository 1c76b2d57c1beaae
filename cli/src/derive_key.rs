//! `dps derive-key`: device keys from an enrollment group key, for factories.

use std::io::Read;

use dps::{Error, ErrorKind, SymmetricKey};
use serde_json::{Value, json};

use crate::args::Parsed;
use crate::exit::{self, Failure, Res};
use crate::inputs::secret;
use crate::output::print_json;

pub const HELP: &str = "\
dps derive-key - derive device keys from an enrollment group key

Usage: dps derive-key --group-key KEY --registration-id ID [--registration-id ID ...]
       dps derive-key --group-key KEY --registration-ids FILE|-

  --group-key KEY          the group key (base64; VALUE, env:NAME, @FILE or -)
  --registration-id ID     a device (repeatable)
  --registration-ids FILE  one registration ID per line (- for stdin)
  --json, -j               [{\"registrationId\": ..., \"deviceKey\": ...}, ...]

Prints the key alone for one ID, `ID KEY` lines for several. The key is
base64(HMAC-SHA256(base64decode(group key), registration ID)), as DPS computes it.

Example:
  dps derive-key --group-key env:GROUP_KEY --registration-id sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6
";

pub fn run(p: &Parsed) -> Res<u8> {
    let gk = p
        .value("--group-key")
        .ok_or_else(|| Failure::Usage("--group-key is required".into()))?;
    let gk = secret("--group-key", gk)?;
    // The group key is checked before the IDs are read (the rules of any DPS key).
    SymmetricKey::individual(&gk)?;
    let mut ids: Vec<String> = p.values("--registration-id").to_vec();
    if let Some(src) = p.value("--registration-ids") {
        let text = if src == "-" {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .map_err(|e| Failure::Other(exit::CREDENTIAL, format!("cannot read stdin: {e}")))?;
            t
        } else {
            std::fs::read_to_string(src).map_err(|e| {
                Failure::Dps(Error::new(
                    ErrorKind::FileRead,
                    format!("--registration-ids: cannot read {src:?}: {e}"),
                ))
            })?
        };
        ids.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    if ids.is_empty() {
        return Err(Failure::Usage(
            "--registration-id (or --registration-ids) is required".into(),
        ));
    }
    let mut rows = Vec::new();
    for id in &ids {
        // Checks the registration ID too.
        rows.push((id, dps::derive_device_key(&gk, id)?));
    }
    if p.flag("--json") {
        let v: Vec<Value> = rows
            .iter()
            .map(|(id, k)| json!({"registrationId": id, "deviceKey": k.as_str()}))
            .collect();
        print_json(&Value::Array(v));
    } else if rows.len() == 1 {
        println!("{}", rows[0].1.as_str());
    } else {
        for (id, k) in &rows {
            println!("{id} {}", k.as_str());
        }
    }
    Ok(exit::OK)
}
