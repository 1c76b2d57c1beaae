//! `dps lookup`: the device's current registration (Device Registration Status Lookup: not
//! billable, does not move the device).

use std::sync::Arc;

use dps::Client;

use crate::args::Parsed;
use crate::exit::{self, Res};
use crate::logging::progress_wanted;
use crate::output::{clean, print_registration};
use crate::setup::setup;

pub const HELP: &str = "\
dps lookup - show the device's current registration without re-registering

Usage: dps lookup --id-scope SCOPE [--registration-id ID] CREDENTIAL [OPTIONS]

Takes the device, credential, connection and output options of `dps register`
(not --payload, --force, --save, --use-saved). Device Registration Status Lookup is
not billable and does not move the device.

Exit codes: 0 when the result is assigned/assigning, 6 when it is failed or disabled,
otherwise as `dps register` (a device that never registered: 5, HTTP 404).

Example:
  dps lookup --endpoint localhost:8443 --ca /tmp/dps-ca.pem --id-scope 0ne00000001 \\
      --registration-id dev-sym --symmetric-key @dev-sym.key --json
";

pub fn run(p: &Parsed) -> Res<u8> {
    let s = setup(p)?;
    let config = Arc::new(s.builder.build()?);
    let mut client = Client::new(config.clone());
    if progress_wanted(p) {
        eprintln!("dps: looking up at {} ...", s.endpoint);
    }
    let reg = client.lookup()?;
    let cs = if p.flag("--connection-string") {
        dps::connection_string(&reg, config.credential()).ok()
    } else {
        None
    };
    print_registration(
        &reg,
        p.flag("--json"),
        "dps",
        cs.as_deref().map(String::as_str),
    );
    use dps::RegistrationStatus as S;
    Ok(match reg.status {
        Some(S::Failed) | Some(S::Disabled) => {
            let what = reg.status.map(|s| s.as_str()).unwrap_or("");
            let mut line = format!("dps: the registration is {what}");
            if let Some(c) = reg.error_code {
                line.push_str(&format!(" (errorCode {c})"));
            }
            if let Some(m) = &reg.error_message {
                line.push_str(&format!(": {m}"));
            }
            eprintln!("{}", clean(&line));
            exit::FAILED
        }
        _ => exit::OK,
    })
}
