//! TPM attestation: `dps tpm-info` (what an Azure portal enrollment takes) and the options of
//! `dps register --tpm [TCTI]`.

use std::sync::Arc;

use dps::tpm::{Tpm, TpmOptions, tpm_info};
use dps::{ConfigBuilder, Error};
use serde_json::json;

use crate::args::Parsed;
use crate::exit::{self, Failure, Res};
use crate::output::print_json;

pub const HELP: &str = "\
dps tpm-info - print what an Azure DPS TPM enrollment takes

Usage: dps tpm-info [--tcti TCTI] [--tpm-handles EK,SRK] [--tpm-create-missing] [--json]

  --tcti TCTI             the TPM (default device:/dev/tpmrm0; swtpm:host=H,port=P,
                          mssim:host=H,port=P, tabrmd[:bus_type=session])
  --tpm-handles EK,SRK    persistent handles in hex (default 0x81010001,0x81000001)
  --tpm-create-missing    create the EK and SRK from the standard templates if absent
  --json, -j              {\"registrationId\": ..., \"endorsementKey\": ..., \"storageRootKey\": ...}

Prints the registration ID derived from the EK (lowercase base32 of SHA-256 of the EK's
TPM2B_PUBLIC) and the endorsement key (base64 TPM2B_PUBLIC): paste both into an individual
enrollment with mechanism \"Trusted Platform Module (TPM)\". Then register with
`dps register --id-scope SCOPE --tpm [TCTI]`.

tpm2-tss prints its own WARNING/ERROR lines on stderr when a TPM command fails; set
TSS2_LOG=all+none to silence them (our error message carries the response code).
";

/// `--tpm-handles A,B[,C]` (hex, `0x` optional, 0 for a default) into `o`.
fn handles(p: &Parsed, o: &mut TpmOptions, max: usize) -> Res<()> {
    let Some(v) = p.value("--tpm-handles") else {
        return Ok(());
    };
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.len() > max {
        return Err(Failure::Usage(format!(
            "--tpm-handles takes at most {max} comma-separated hex handles"
        )));
    }
    let slots = [&mut o.ek_handle, &mut o.srk_handle, &mut o.identity_handle];
    for (part, slot) in parts.iter().zip(slots) {
        let hex = part.trim_start_matches("0x").trim_start_matches("0X");
        let h = u32::from_str_radix(hex, 16)
            .map_err(|_| Failure::Usage(format!("--tpm-handles: {part:?} is not a hex handle")))?;
        if h != 0 {
            *slot = h;
        }
    }
    Ok(())
}

fn options(p: &Parsed, tcti: Option<&str>, max_handles: usize) -> Res<TpmOptions> {
    let mut o = TpmOptions::default();
    if let Some(t) = tcti.filter(|t| !t.is_empty()) {
        o.tcti = t.to_owned();
    } else if let Ok(t) = std::env::var("DPS_TPM_TCTI") {
        o.tcti = t;
    }
    handles(p, &mut o, max_handles)?;
    o.create_missing = p.flag("--tpm-create-missing");
    Ok(o)
}

pub fn run_info(p: &Parsed) -> Res<u8> {
    let o = options(p, p.value("--tcti"), 2)?;
    let info = tpm_info(&o)?;
    if p.flag("--json") {
        print_json(&json!({
            "registrationId": info.registration_id,
            "endorsementKey": info.endorsement_key,
            "storageRootKey": info.storage_root_key,
            "tcti": o.tcti,
        }));
    } else {
        println!("Registration ID: {}", info.registration_id);
        println!("Endorsement key: {}", info.endorsement_key);
    }
    Ok(exit::OK)
}

/// `--tpm [TCTI]`: opens the TPM and makes it the credential.
pub fn apply(p: &Parsed, b: &mut ConfigBuilder) -> Res<()> {
    let o = options(p, p.value("--tpm"), 3)?;
    let tpm = Tpm::open(&o).map_err(|e| {
        Failure::Dps(Error::new(
            e.kind,
            format!("opening the TPM ({}): {}", o.tcti, e.message),
        ))
    })?;
    b.tpm(Arc::new(tpm));
    Ok(())
}

/// `--tpm-handles` / `--tpm-create-missing` without `--tpm`.
pub fn check_options(p: &Parsed) -> Res<()> {
    for opt in ["--tpm-handles", "--tpm-create-missing"] {
        if p.has(opt) && !p.has("--tpm") {
            return Err(Failure::Usage(format!("{opt} needs --tpm")));
        }
    }
    Ok(())
}
