//! `dps`: register devices with Azure IoT Hub Device Provisioning Service
//! from the command line. Built on the `dps` crate's Rust API.
//!
//! One file per command (`register`, `lookup`, `derive_key`, `sas`, each with its help text)
//! and the pieces they share: `args` (the option parser), `inputs` (secret forms, files,
//! numbers), `credential` and `setup` (the library configuration), `output`, `logging`,
//! `saved` (`--save` / `--use-saved`), `exit` (exit codes), `library` (what the library's
//! public API does not offer yet).

mod args;
mod credential;
mod csr;
mod derive_key;
mod exit;
mod inputs;
mod library;
mod logging;
mod lookup;
mod output;
mod pkcs11;
mod register;
mod renew;
mod sas;
mod saved;
mod setup;
mod tpm;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use args::Parsed;
use exit::{Failure, Res};

const HELP: &str = "\
dps - register devices with Azure IoT Hub Device Provisioning Service (DPS)

Usage:
  dps register [OPTIONS]      register the device; print the assigned hub and device id
  dps renew [OPTIONS]         renew a certificate DPS issued (experimental: a new registration with a new CSR)
  dps lookup [OPTIONS]        show the device's current registration (not billable, no re-registration)
  dps derive-key [OPTIONS]    derive a device key from an enrollment group key
  dps sas [OPTIONS]           print a DPS SAS token for a device
  dps tpm-info [OPTIONS]      print a TPM's EK-derived registration ID and EK for an enrollment
  dps help [COMMAND]          this help, or a command's
  dps --version

Run `dps COMMAND --help` for the options of each command.

Examples:
  # Against the local emulator (cargo run -p dps-emulator -- --config emulator/examples/emulator.toml --ca-out /tmp/dps-ca.pem)
  dps register --endpoint localhost:8443 --ca /tmp/dps-ca.pem --roots none \\
      --id-scope 0ne00000001 --registration-id dev-sym \\
      --symmetric-key AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=

  # Real DPS, X.509, cached assignment for the next boot
  dps register --id-scope 0ne00ABCDEF --cert device.pem --private-key device.key \\
      --use-saved /var/lib/dps/assignment.json

  # Group enrollment, key from the environment, payload, JSON for scripts
  DPS_GROUP_KEY=... dps register --id-scope 0ne00ABCDEF --registration-id sn-0042 \\
      --group-key env:DPS_GROUP_KEY --payload '{\"model\":\"x1\"}' --json

  # TPM attestation: enrollment data, then registration through the TPM
  dps tpm-info --tcti device:/dev/tpmrm0
  dps register --id-scope 0ne00ABCDEF --tpm

Exit codes:
  0  success
  1  internal error
  2  usage: bad command line or invalid value (ID scope, registration ID, payload, endpoint, proxy)
  3  credential: key, certificate, private key, password, PKCS#12, trusted root, or a file that cannot be read/written
  4  network: DNS, connect, timeout of a request, TLS (untrusted server, name mismatch), proxy, malformed response
  5  DPS refused the request: HTTP 400/401/403/404/409/415/429 or a server error after retries
  6  the registration failed (DPS errorCode printed) or the enrollment is disabled
  7  the deadline (--timeout) passed (the last failure is printed) or the operation was cancelled

Errors are printed on stderr as one line with the HTTP status, the DPS errorCode and
the trackingId (quote it to Azure support). With --json, stdout also gets
{\"error\": {...}}.
";

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let json = argv.iter().any(|a| a == "--json" || a == "-j");
    let code = match run(&argv) {
        Ok(code) => code,
        Err(f) => output::report(f, json),
    };
    let _ = std::io::stdout().flush();
    ExitCode::from(code)
}

fn run(argv: &[OsString]) -> Res<u8> {
    let Some(first) = argv.first() else {
        eprint!("{HELP}");
        return Err(Failure::Usage("a command is required".into()));
    };
    let cmd = first
        .to_str()
        .ok_or_else(|| Failure::Usage(format!("unknown command {first:?}")))?;
    let rest = &argv[1..];
    match cmd {
        "--help" | "-h" => {
            print!("{HELP}");
            Ok(exit::OK)
        }
        "help" => {
            let topic = rest.first().and_then(|s| s.to_str()).unwrap_or("");
            print!(
                "{}",
                match topic {
                    "register" => register::HELP,
                    "renew" => renew::HELP,
                    "lookup" => lookup::HELP,
                    "derive-key" => derive_key::HELP,
                    "sas" => sas::HELP,
                    "tpm-info" => tpm::HELP,
                    "" => HELP,
                    other => return Err(Failure::Usage(format!("unknown command {other:?}"))),
                }
            );
            Ok(exit::OK)
        }
        "--version" | "-V" | "version" => {
            println!("dps {}", env!("CARGO_PKG_VERSION"));
            Ok(exit::OK)
        }
        "register" => {
            let p = parse(
                cmd,
                rest,
                &[
                    args::CONNECTION,
                    args::CREDENTIALS,
                    args::OUTPUT,
                    args::REGISTER_ONLY,
                    args::TPM,
                    args::CSR,
                ],
            )?;
            if p.help {
                print!("{}", register::HELP);
                return Ok(exit::OK);
            }
            register::run(&p)
        }
        "renew" => {
            let p = parse(
                cmd,
                rest,
                &[args::CONNECTION, args::RENEW, args::CSR, args::OUTPUT],
            )?;
            if p.help {
                print!("{}", renew::HELP);
                return Ok(exit::OK);
            }
            renew::run(&p)
        }
        "lookup" => {
            let p = parse(
                cmd,
                rest,
                &[args::CONNECTION, args::CREDENTIALS, args::OUTPUT],
            )?;
            if p.help {
                print!("{}", lookup::HELP);
                return Ok(exit::OK);
            }
            lookup::run(&p)
        }
        "derive-key" => {
            let p = parse(cmd, rest, &[args::DERIVE])?;
            if p.help {
                print!("{}", derive_key::HELP);
                return Ok(exit::OK);
            }
            derive_key::run(&p)
        }
        "sas" => {
            let p = parse(cmd, rest, &[args::SAS])?;
            if p.help {
                print!("{}", sas::HELP);
                return Ok(exit::OK);
            }
            sas::run(&p)
        }
        "tpm-info" => {
            let p = parse(cmd, rest, &[args::TPM_INFO])?;
            if p.help {
                print!("{}", tpm::HELP);
                return Ok(exit::OK);
            }
            tpm::run_info(&p)
        }
        other => Err(Failure::Usage(format!(
            "unknown command {other:?} (commands: register, renew, lookup, derive-key, sas, tpm-info, help)"
        ))),
    }
}

fn parse(cmd: &str, rest: &[OsString], tables: &[&[args::Spec]]) -> Res<Parsed> {
    args::parse(cmd, rest, tables).map_err(Failure::Usage)
}
