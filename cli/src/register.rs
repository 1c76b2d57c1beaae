//! `dps register`: registers the device and prints its assignment; `--save` / `--use-saved`
//! keep the assignment for the next boot; `--csr` asks for a certificate (see `csr.rs`).

use std::sync::Arc;

use dps::{Client, Error, ErrorKind};
use serde_json::json;

use crate::args::Parsed;
use crate::exit::{self, Failure, Res};
use crate::logging::{progress_observer, progress_wanted};
use crate::output::{print_json, print_registration, registration_json};
use crate::saved;
use crate::setup::setup;

pub const HELP: &str = "\
dps register - register the device with DPS and print its assignment

Usage: dps register --id-scope SCOPE [--registration-id ID] CREDENTIAL [OPTIONS]

Device:
  --id-scope SCOPE            DPS ID scope (env DPS_ID_SCOPE)
  --registration-id ID        registration ID (env DPS_REGISTRATION_ID); with X.509 it
                              defaults to the certificate's subject CN, with --tpm to
                              the EK-derived ID
Credential (exactly one):
  --symmetric-key KEY         individual enrollment key (base64)
  --group-key KEY             enrollment group key (base64); the device key is derived
  --cert FILE                 PEM certificate chain, leaf first (with --private-key FILE,
                              or a PEM file holding both)
  --private-key FILE          PEM private key (PKCS#8, PKCS#1, SEC1, encrypted PKCS#8)
  --key-password PW           password of an encrypted private key
  --pkcs12 FILE               PKCS#12 (.pfx/.p12) file with chain and key
  --pkcs12-password PW        its password (default: empty)
  --tpm [TCTI]                TPM attestation (default TCTI device:/dev/tpmrm0, or env
                              DPS_TPM_TCTI; e.g. swtpm:host=127.0.0.1,port=2321); the
                              registration ID defaults to the EK-derived one (dps tpm-info)
  --tpm-handles EK,SRK,ID     persistent handles in hex (0 = default 0x81010001,
                              0x81000001, 0x81000100; ID is replaced by each registration)
  --tpm-create-missing        create the EK and SRK from the standard templates if absent
  --pkcs11-uri URI            X.509 key in a PKCS#11 token (RFC 7512, e.g.
                              'pkcs11:token=dps;object=device-key'); the certificate
                              from --cert FILE, else the one stored beside the key
  --pkcs11-hmac-uri URI       symmetric (SAS) key in a PKCS#11 token (a generic secret)
  --pkcs11-module PATH        the PKCS#11 module, unless the URI has module-path=
  --pkcs11-pin PIN            the token's user PIN, unless the URI has pin-value= or
                              pin-source=
  Secret values (KEY, PW, PIN) may be given as VALUE, env:NAME (environment variable),
  @FILE (first line of a file) or - (first line of stdin), to keep them out of `ps`.
Connection:
  --endpoint HOST[:PORT]      DPS endpoint (env DPS_ENDPOINT; default
                              global.azure-devices-provisioning.net)
  --ca FILE                   trust these PEM root(s) too (repeatable), e.g. the emulator CA
  --roots azure|mozilla|none  built-in roots (default azure)
  --proxy URL                 HTTP CONNECT proxy http://[user:pass@]host[:port]
  --proxy-from-env            use HTTPS_PROXY / NO_PROXY
  --timeout SECS              overall deadline (default 300)
  --request-timeout SECS      per-request timeout (default 30)
  --poll-interval SECS        poll interval when DPS sends no Retry-After (default 2)
  --backoff MIN,MAX           retry backoff bounds in seconds (default 1,60)
  --sas-ttl SECS              SAS token lifetime (default 3600)
  --max-retry-after SECS      cap on the Retry-After honoured (default 300)
  --api-version V             api-version (default 2021-06-01)
  --user-agent-suffix TEXT    appended to the User-Agent (e.g. firmware version)
Registration:
  --payload JSON|@FILE        custom allocation payload (a JSON object)
  --force                     forceRegistration=true
  --save FILE                 after success, write the assignment (JSON) to FILE
  --use-saved FILE            if FILE holds an assignment for this ID scope, registration
                              ID and endpoint, print it and exit 0 without contacting DPS;
                              otherwise register and save to FILE (unless --save is given)
Certificate issuance (experimental; api-version 2025-07-01-preview):
  --csr p256|p384|rsa2048|KEYFILE|pkcs11:URI
                              send a certificate signing request (CN = registration ID)
                              made with a key generated in memory (p256, p384, rsa2048),
                              the PEM private key in KEYFILE, or a PKCS#11 token key
                              (--pkcs11-module / --pkcs11-pin apply)
  --csr-key-password PW       password of an encrypted KEYFILE
  --cert-out FILE             where the issued chain goes (PEM, leaf first; needed)
  --key-out FILE              where the generated key goes (PKCS#8 PEM; needed with p256,
                              p384, rsa2048, refused otherwise)
  --overwrite                 replace existing --cert-out / --key-out files (without it
                              an existing file is refused before DPS is contacted)
  The files are written only after the issued chain checked out (it certifies the CSR's
  key, its CN is the registration ID, each certificate is issued by the next, the leaf is
  valid now), mode 0600, each through a temporary file renamed into place. Renewal:
  `dps renew` (a new registration with a new CSR).
Output:
  --json, -j                  one JSON object on stdout (errors too: {\"error\": {...}})
  --connection-string         also print the IoT Hub connection string (contains the key)
  --progress                  progress on stderr even when it is not a terminal
  --quiet, -q                 no progress
  --verbose, -v               library log lines on stderr (-vv debug, -vvv trace)

Examples:
  dps register --endpoint localhost:8443 --ca /tmp/dps-ca.pem --roots none \\
      --id-scope 0ne00000001 --registration-id dev-sym \\
      --symmetric-key AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
  dps register --id-scope 0ne00ABCDEF --pkcs12 device.p12 --pkcs12-password env:P12_PASS --json
  dps register --id-scope 0ne00ABCDEF --cert dev.pem --private-key dev.key \\
      --use-saved /var/lib/dps/assignment.json
  dps register --id-scope 0ne00ABCDEF --pkcs11-uri 'pkcs11:token=dps;object=device-key' \\
      --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --pkcs11-pin env:DPS_PIN

Exit codes: 0 ok, 2 usage, 3 credential/file, 4 network/TLS, 5 refused by DPS,
6 registration failed/disabled, 7 deadline/cancelled, 1 internal (see `dps --help`).
";

pub fn run(p: &Parsed) -> Res<u8> {
    run_with(p, None)
}

/// `register`, or `renew` (`renewing`: the certificate and key files it replaces).
pub fn run_with(p: &Parsed, renewing: Option<crate::csr::Renewing>) -> Res<u8> {
    let mut s = setup(p)?;
    let plan = crate::csr::apply(p, &mut s.builder, renewing)?;
    let config = Arc::new(s.builder.build()?);
    let json_out = p.flag("--json");
    let save_to = p.value("--save").or(p.value("--use-saved"));

    if let Some(path) = p.value("--use-saved") {
        match saved::load(path) {
            Ok(Some(a)) if a.matches(config.id_scope(), config.registration_id(), &s.endpoint) => {
                let reg = a.to_registration();
                let cs = if p.flag("--connection-string") {
                    Some(dps::connection_string(&reg, config.credential())?)
                } else {
                    None
                };
                if json_out {
                    let mut v = registration_json(&reg, "saved", cs.as_deref().map(String::as_str));
                    v["savedFile"] = json!(path);
                    if !a.saved_at.is_empty() {
                        v["savedAt"] = json!(a.saved_at);
                    }
                    print_json(&v);
                } else {
                    let source = format!("saved {path} ({})", a.saved_at);
                    print_registration(&reg, false, &source, cs.as_deref().map(String::as_str));
                }
                return Ok(exit::OK);
            }
            Ok(Some(_)) => eprintln!(
                "dps: {path} holds an assignment for another device, ID scope or endpoint; registering"
            ),
            Ok(None) => {}
            Err(e) => eprintln!("dps: ignoring {path}: {e}; registering"),
        }
    }

    let mut client = Client::new(config.clone());
    if progress_wanted(p) {
        client.set_observer(Some(progress_observer(s.endpoint.clone())));
    }
    let reg = client.register()?;
    let cs = if p.flag("--connection-string") {
        Some(dps::connection_string(&reg, config.credential())?)
    } else {
        None
    };
    if let Some(path) = save_to {
        saved::save(path, config.id_scope(), &s.endpoint, &reg).map_err(|e| {
            // Registered, but the cache failed: still print the result first.
            print_registration(&reg, json_out, "dps", cs.as_deref().map(String::as_str));
            match e {
                // A malformed answer (exit 4), kept out of the file a boot script reads.
                saved::SaveError::Unsafe(why) => Failure::Dps(Error::new(
                    ErrorKind::MalformedResponse,
                    format!("registered, but not saving the assignment to {path:?}: {why}"),
                )),
                saved::SaveError::Io(why) => Failure::Other(
                    exit::CREDENTIAL,
                    format!("registered, but cannot save the assignment to {path:?}: {why}"),
                ),
            }
        })?;
    }
    if let Some(plan) = &plan {
        let lines = crate::csr::write(plan, &reg).inspect_err(|_| {
            print_registration(&reg, json_out, "dps", cs.as_deref().map(String::as_str));
        })?;
        if !p.flag("--quiet") {
            lines.iter().for_each(|l| eprintln!("dps: {l}"));
        }
    }
    print_registration(&reg, json_out, "dps", cs.as_deref().map(String::as_str));
    Ok(exit::OK)
}
