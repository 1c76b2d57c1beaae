//! `dps renew` (experimental): renewal of an issued certificate is a new registration with a
//! new CSR, authenticated by the certificate being renewed.

use crate::args::Parsed;
use crate::csr::Renewing;
use crate::exit::{Failure, Res};

pub const HELP: &str = "\
dps renew - renew a certificate issued by DPS (experimental)

Usage: dps renew --id-scope SCOPE --cert FILE --private-key FILE [OPTIONS]

Renewal is a new registration with a new CSR: the device registers with the certificate it
holds (--cert, --private-key: the X.509 credential, e.g. the files `dps register --csr`
wrote) and sends a CSR for a new key; the enrollment must accept that certificate (an X.509
enrollment group whose CA is the issuing CA). The new chain and key replace --cert and
--private-key, atomically and only after the issued chain checked out.

Options:
  --cert FILE                 the current certificate chain (PEM, leaf first)
  --private-key FILE          its private key (PEM)
  --key-password PW           password of an encrypted --private-key
  --csr p256|p384|rsa2048|KEYFILE|pkcs11:URI
                              the new key (default p256, generated in memory)
  --csr-key-password PW       password of an encrypted KEYFILE
  --cert-out FILE             write the new chain here instead of replacing --cert
  --key-out FILE              write the new key here instead of replacing --private-key
  --overwrite                 replace existing --cert-out / --key-out files
  --pkcs11-module PATH, --pkcs11-pin PIN
                              for --csr pkcs11:URI
  --payload JSON|@FILE        custom allocation payload
  The connection options (--endpoint, --ca, --roots, --timeout, ...) and output options
  (--json, --quiet, --verbose) are those of `dps register` (dps register --help).

Example:
  dps register --id-scope 0ne00ABCDEF --registration-id sn-0042 --group-key env:KEY \\
      --csr p256 --cert-out /etc/dps/device.pem --key-out /etc/dps/device.key
  dps renew --id-scope 0ne00ABCDEF --cert /etc/dps/device.pem --private-key /etc/dps/device.key

Exit codes: those of `dps register`; 3 also when a file cannot be written (nothing is
replaced then).
";

pub fn run(p: &Parsed) -> Res<u8> {
    let (Some(cert), Some(key)) = (p.value("--cert"), p.value("--private-key")) else {
        return Err(Failure::Usage(
            "renew needs --cert FILE and --private-key FILE (the certificate being renewed)".into(),
        ));
    };
    crate::register::run_with(p, Some(Renewing { cert, key }))
}
