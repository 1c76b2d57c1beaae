//! `dps`: register devices with Azure IoT Hub Device Provisioning Service
//! from the command line. Built on the `dps` crate's Rust API.

mod args;
mod saved;

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dps::{Client, ConfigBuilder, DefaultRoots, Error, ErrorKind, Event, X509Credential};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use args::Parsed;

/// Exit codes: stable, one per failure class (documented in `--help` and cli/README.md).
pub mod exit {
    /// Success (for `lookup`: a result that is not `failed`/`disabled`).
    pub const OK: u8 = 0;
    /// Internal error (a bug).
    pub const INTERNAL: u8 = 1;
    /// Usage: bad command line or an invalid argument value (ID scope, registration ID, payload, endpoint, proxy ...).
    pub const USAGE: u8 = 2;
    /// Credential, certificate, key, password, trusted root or file problem.
    pub const CREDENTIAL: u8 = 3;
    /// Network, DNS, TLS or proxy failure, or a malformed response.
    pub const NETWORK: u8 = 4;
    /// DPS refused the request (HTTP 4xx/5xx: unauthorized, not found, throttled ...).
    pub const REFUSED: u8 = 5;
    /// The registration ended `failed`, or the enrollment is disabled.
    pub const FAILED: u8 = 6;
    /// The deadline (`--timeout`) passed, or the operation was cancelled.
    pub const DEADLINE: u8 = 7;
}

/// The exit code for a library error.
pub fn exit_code_for(kind: ErrorKind) -> u8 {
    match kind.code() {
        100..=199 => exit::USAGE,
        200..=299 => exit::CREDENTIAL,
        300..=399 => exit::NETWORK,
        400..=459 => exit::REFUSED,
        460..=499 => exit::FAILED,
        500..=599 => exit::DEADLINE,
        _ => exit::INTERNAL,
    }
}

const HELP: &str = "\
dps - register devices with Azure IoT Hub Device Provisioning Service (DPS)

Usage:
  dps register [OPTIONS]      register the device; print the assigned hub and device id
  dps lookup [OPTIONS]        show the device's current registration (not billable, no re-registration)
  dps derive-key [OPTIONS]    derive a device key from an enrollment group key
  dps sas [OPTIONS]           print a DPS SAS token for a device
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

const REGISTER_HELP: &str = "\
dps register - register the device with DPS and print its assignment

Usage: dps register --id-scope SCOPE [--registration-id ID] CREDENTIAL [OPTIONS]

Device:
  --id-scope SCOPE            DPS ID scope (env DPS_ID_SCOPE)
  --registration-id ID        registration ID (env DPS_REGISTRATION_ID); with X.509 it
                              defaults to the certificate's subject CN
Credential (exactly one):
  --symmetric-key KEY         individual enrollment key (base64)
  --group-key KEY             enrollment group key (base64); the device key is derived
  --cert FILE                 PEM certificate chain, leaf first (with --private-key FILE,
                              or a PEM file holding both)
  --private-key FILE          PEM private key (PKCS#8, PKCS#1, SEC1, encrypted PKCS#8)
  --key-password PW           password of an encrypted private key
  --pkcs12 FILE               PKCS#12 (.pfx/.p12) file with chain and key
  --pkcs12-password PW        its password (default: empty)
  Secret values (KEY, PW) may be given as VALUE, env:NAME (environment variable),
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

Exit codes: 0 ok, 2 usage, 3 credential/file, 4 network/TLS, 5 refused by DPS,
6 registration failed/disabled, 7 deadline/cancelled, 1 internal (see `dps --help`).
";

const LOOKUP_HELP: &str = "\
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

const DERIVE_HELP: &str = "\
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

const SAS_HELP: &str = "\
dps sas - print a DPS SAS token (the Authorization header value) for a device

Usage: dps sas --id-scope SCOPE --registration-id ID (--symmetric-key KEY | --group-key KEY)
               [--ttl SECS | --expiry UNIX_TIME] [--json]

  --ttl SECS        lifetime from now (default 3600)
  --expiry T        absolute expiry, seconds since 1970
  --json, -j        {\"token\": ..., \"resourceUri\": ..., \"expiry\": ...}

Example (then use with curl -H \"Authorization: $TOKEN\"):
  TOKEN=$(dps sas --id-scope 0ne00000001 --registration-id dev-sym --symmetric-key @dev-sym.key)
";

/// Why a command stopped.
enum Failure {
    /// Bad command line: exit 2 with a hint.
    Usage(String),
    /// A library error, mapped by kind.
    Dps(Error),
    /// A local problem with the given exit code.
    Other(u8, String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Dps(e)
    }
}

type Res<T> = Result<T, Failure>;

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let json = argv.iter().any(|a| a == "--json" || a == "-j");
    let code = match run(&argv) {
        Ok(code) => code,
        Err(f) => report(f, json),
    };
    let _ = std::io::stdout().flush();
    ExitCode::from(code)
}

fn report(f: Failure, json: bool) -> u8 {
    match f {
        Failure::Usage(m) => {
            eprintln!("dps: {m}\nTry `dps --help` or `dps COMMAND --help`.");
            if json {
                print_json(&json!({"error": {"exitCode": exit::USAGE, "message": m}}));
            }
            exit::USAGE
        }
        Failure::Other(code, m) => {
            eprintln!("dps: {m}");
            if json {
                print_json(&json!({"error": {"exitCode": code, "message": m}}));
            }
            code
        }
        Failure::Dps(e) => {
            let code = exit_code_for(e.kind);
            eprintln!("dps: error: {}", one_line(&e));
            if json {
                print_json(&json!({"error": error_json(&e, code)}));
            }
            code
        }
    }
}

/// The error on one line: message, HTTP status, DPS errorCode, trackingId, status.
fn one_line(e: &Error) -> String {
    let mut s = e.message.replace(['\n', '\r'], " ");
    let mut detail = Vec::new();
    if let Some(h) = e.http_status {
        detail.push(format!("HTTP {h}"));
    }
    if let Some(c) = e.dps_error_code {
        detail.push(format!("errorCode {c}"));
    }
    if let Some(t) = &e.tracking_id {
        detail.push(format!("trackingId {t}"));
    }
    detail.push(format!("status {} {:?}", e.kind.code(), e.kind));
    s.push_str(&format!(" ({})", detail.join(", ")));
    s
}

fn error_json(e: &Error, exit_code: u8) -> Value {
    json!({
        "exitCode": exit_code,
        "status": e.kind.code(),
        "kind": format!("{:?}", e.kind),
        "message": e.message,
        "httpStatus": e.http_status,
        "errorCode": e.dps_error_code,
        "trackingId": e.tracking_id,
        "retriable": e.retriable,
    })
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into())
    );
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
                    "register" => REGISTER_HELP,
                    "lookup" => LOOKUP_HELP,
                    "derive-key" => DERIVE_HELP,
                    "sas" => SAS_HELP,
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
                ],
            )?;
            if p.help {
                print!("{REGISTER_HELP}");
                return Ok(exit::OK);
            }
            register(&p)
        }
        "lookup" => {
            let p = parse(
                cmd,
                rest,
                &[args::CONNECTION, args::CREDENTIALS, args::OUTPUT],
            )?;
            if p.help {
                print!("{LOOKUP_HELP}");
                return Ok(exit::OK);
            }
            lookup(&p)
        }
        "derive-key" => {
            let p = parse(cmd, rest, &[args::DERIVE])?;
            if p.help {
                print!("{DERIVE_HELP}");
                return Ok(exit::OK);
            }
            derive_key(&p)
        }
        "sas" => {
            let p = parse(cmd, rest, &[args::SAS])?;
            if p.help {
                print!("{SAS_HELP}");
                return Ok(exit::OK);
            }
            sas(&p)
        }
        other => Err(Failure::Usage(format!(
            "unknown command {other:?} (commands: register, lookup, derive-key, sas, help)"
        ))),
    }
}

fn parse(cmd: &str, rest: &[OsString], tables: &[&[args::Spec]]) -> Res<Parsed> {
    args::parse(cmd, rest, tables).map_err(Failure::Usage)
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// A secret given as VALUE, `env:NAME`, `@FILE` or `-` (stdin).
fn secret(option: &str, raw: &str) -> Res<Zeroizing<String>> {
    let v = if let Some(name) = raw.strip_prefix("env:") {
        std::env::var(name).map_err(|_| {
            Failure::Usage(format!(
                "{option} env:{name}: the environment variable is not set"
            ))
        })?
    } else if let Some(path) = raw.strip_prefix('@') {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Failure::Other(
                exit::CREDENTIAL,
                format!("{option}: cannot read {path:?}: {e}"),
            )
        })?);
        text.lines().next().unwrap_or("").trim().to_owned()
    } else if raw == "-" {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| {
            Failure::Other(
                exit::CREDENTIAL,
                format!("{option}: cannot read stdin: {e}"),
            )
        })?;
        line.trim().to_owned()
    } else {
        raw.to_owned()
    };
    Ok(Zeroizing::new(v))
}

fn read_file(option: &str, path: &str) -> Res<Zeroizing<Vec<u8>>> {
    std::fs::read(path).map(Zeroizing::new).map_err(|e| {
        Failure::Dps(Error::new(
            ErrorKind::FileRead,
            format!("{option}: cannot read {path:?}: {e}"),
        ))
    })
}

fn seconds(option: &str, raw: &str) -> Res<Duration> {
    let v: f64 = raw
        .trim()
        .parse()
        .map_err(|_| Failure::Usage(format!("{option} {raw:?} is not a number of seconds")))?;
    if !v.is_finite() || !(0.0..=4_294_967.0).contains(&v) {
        return Err(Failure::Usage(format!("{option} {raw:?} is out of range")));
    }
    Ok(Duration::from_secs_f64(v))
}

fn env_or(p: &Parsed, option: &str, env: &str) -> Option<String> {
    p.value(option)
        .map(str::to_owned)
        .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
}

/// Everything `register`/`lookup` need, built from the options (no network).
struct Setup {
    builder: ConfigBuilder,
    endpoint: String,
}

fn setup(p: &Parsed) -> Res<Setup> {
    let scope = env_or(p, "--id-scope", "DPS_ID_SCOPE")
        .ok_or_else(|| Failure::Usage("--id-scope is required (or DPS_ID_SCOPE)".into()))?;
    let mut b = ConfigBuilder::new(&scope)?;
    if let Some(id) = env_or(p, "--registration-id", "DPS_REGISTRATION_ID") {
        b.registration_id(&id)?;
    }

    let creds: Vec<&str> = ["--symmetric-key", "--group-key", "--cert", "--pkcs12"]
        .into_iter()
        .filter(|o| p.has(o))
        .collect();
    match creds.as_slice() {
        [] => {
            return Err(Failure::Usage(
                "a credential is required: --symmetric-key, --group-key, --cert or --pkcs12".into(),
            ));
        }
        [_] => {}
        more => {
            return Err(Failure::Usage(format!(
                "give one credential, not {}",
                more.join(" and ")
            )));
        }
    }
    for (opt, needs) in [
        ("--private-key", "--cert"),
        ("--key-password", "--cert"),
        ("--pkcs12-password", "--pkcs12"),
    ] {
        if p.has(opt) && !p.has(needs) {
            return Err(Failure::Usage(format!("{opt} needs {needs}")));
        }
    }
    if let Some(k) = p.value("--symmetric-key") {
        b.symmetric_key(&secret("--symmetric-key", k)?)?;
    } else if let Some(k) = p.value("--group-key") {
        b.group_key(&secret("--group-key", k)?)?;
    } else if let Some(cert) = p.value("--cert") {
        let chain = read_file("--cert", cert)?;
        let key = match p.value("--private-key") {
            Some(k) => read_file("--private-key", k)?,
            None => chain.clone(),
        };
        let pw = match p.value("--key-password") {
            Some(v) => Some(secret("--key-password", v)?),
            None => None,
        };
        let cred = X509Credential::from_pem(&chain, &key, pw.as_ref().map(|s| s.as_bytes()))
            .map_err(|e| {
                let mut err: Error = e.into();
                err.message = format!("{cert}: {}", err.message);
                err
            })?;
        b.x509(cred);
    } else if let Some(file) = p.value("--pkcs12") {
        let der = read_file("--pkcs12", file)?;
        let pw = match p.value("--pkcs12-password") {
            Some(v) => secret("--pkcs12-password", v)?,
            None => Zeroizing::new(String::new()),
        };
        let cred = X509Credential::from_pkcs12(&der, &pw).map_err(|e| {
            let mut err: Error = e.into();
            err.message = format!("{file}: {}", err.message);
            err
        })?;
        b.x509(cred);
    }

    let endpoint = env_or(p, "--endpoint", "DPS_ENDPOINT")
        .unwrap_or_else(|| "global.azure-devices-provisioning.net".into());
    b.endpoint(&endpoint)?;
    if let Some(v) = p.value("--api-version") {
        b.api_version(v)?;
    }
    if let Some(r) = p.value("--roots") {
        b.default_roots(match r {
            "azure" => DefaultRoots::Azure,
            "mozilla" => DefaultRoots::Mozilla,
            "none" => DefaultRoots::None,
            other => {
                return Err(Failure::Usage(format!(
                    "--roots {other:?}: use azure, mozilla or none"
                )));
            }
        });
    }
    for ca in p.values("--ca") {
        let pem = read_file("--ca", ca)?;
        b.add_trusted_roots_pem(&pem).map_err(|mut e| {
            e.message = format!("--ca {ca}: {}", e.message);
            e
        })?;
    }
    if p.has("--proxy") && p.flag("--proxy-from-env") {
        return Err(Failure::Usage(
            "give --proxy or --proxy-from-env, not both".into(),
        ));
    }
    if let Some(url) = p.value("--proxy") {
        b.proxy(url)?;
    }
    if p.flag("--proxy-from-env") {
        b.proxy_from_env()?;
    }
    if let Some(v) = p.value("--timeout") {
        b.deadline(seconds("--timeout", v)?)?;
    }
    if let Some(v) = p.value("--request-timeout") {
        b.request_timeout(seconds("--request-timeout", v)?)?;
    }
    if let Some(v) = p.value("--poll-interval") {
        b.poll_interval(seconds("--poll-interval", v)?);
    }
    if let Some(v) = p.value("--backoff") {
        let (lo, hi) = v.split_once(',').ok_or_else(|| {
            Failure::Usage(format!(
                "--backoff {v:?}: expected MIN,MAX in seconds, e.g. 1,60"
            ))
        })?;
        b.backoff(seconds("--backoff", lo)?, seconds("--backoff", hi)?)?;
    }
    if let Some(v) = p.value("--sas-ttl") {
        b.sas_ttl(seconds("--sas-ttl", v)?)?;
    }
    if let Some(v) = p.value("--max-retry-after") {
        b.max_retry_after(seconds("--max-retry-after", v)?);
    }
    if let Some(v) = p.value("--user-agent-suffix") {
        b.user_agent_suffix(v)?;
    }
    if let Some(v) = p.value("--payload") {
        let text = match v.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                Failure::Dps(Error::new(
                    ErrorKind::FileRead,
                    format!("--payload: cannot read {path:?}: {e}"),
                ))
            })?,
            None => v.to_owned(),
        };
        b.payload_json(&text)?;
    }
    if p.flag("--force") {
        b.force_registration(true);
    }
    init_logging(p.count("--verbose"));
    Ok(Setup {
        builder: b,
        endpoint,
    })
}

// ---------------------------------------------------------------------------------------------
// Logging and progress

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!(
                "dps: [{}] {}: {}",
                r.level().as_str().to_ascii_lowercase(),
                r.target(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

fn init_logging(verbosity: u32) {
    let level = match verbosity {
        0 => return,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    if log::set_boxed_logger(Box::new(StderrLogger)).is_ok() {
        log::set_max_level(level);
    }
}

fn progress_wanted(p: &Parsed) -> bool {
    !p.flag("--quiet") && (p.flag("--progress") || std::io::stderr().is_terminal())
}

fn progress_observer(endpoint: String) -> dps::client::Observer {
    Box::new(move |ev: Event| {
        let line = match ev {
            Event::Registering => format!("registering with {endpoint} ..."),
            Event::Assigning { wait } => {
                format!("assigning; next poll in {:.1} s", wait.as_secs_f64())
            }
            Event::Retrying { wait, cause } => format!(
                "retrying in {:.1} s after: {}",
                wait.as_secs_f64(),
                cause.describe()
            ),
            Event::Assigned => "assigned".into(),
            Event::Failed(kind) => format!("failed: {}", kind.describe()),
        };
        eprintln!("dps: {line}");
    })
}

// ---------------------------------------------------------------------------------------------
// Output

fn registration_json(
    r: &dps::Registration,
    source: &str,
    connection_string: Option<&str>,
) -> Value {
    let payload = r
        .payload_json
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let mut v = json!({
        "status": r.status.map(|s| s.as_str()),
        "registrationId": r.registration_id,
        "assignedHub": r.assigned_hub,
        "deviceId": r.device_id,
        "substatus": r.substatus,
        "createdDateTimeUtc": r.created_date_time_utc,
        "lastUpdatedDateTimeUtc": r.last_updated_date_time_utc,
        "etag": r.etag,
        "payload": payload,
        "enrollmentGroupId": r.enrollment_group_id,
        "errorCode": r.error_code,
        "errorMessage": r.error_message,
        "source": source,
    });
    if !r.issued_certificate_chain.is_empty() {
        v["issuedCertificateChain"] = json!(r.issued_certificate_chain);
    }
    if let Some(cs) = connection_string {
        v["connectionString"] = json!(cs);
    }
    // Leave out absent fields: scripts test for presence.
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

fn print_human(fields: &[(&str, Option<String>)]) {
    let mut out = String::new();
    for (k, v) in fields {
        if let Some(v) = v {
            out.push_str(&format!("{k:<18}{v}\n"));
        }
    }
    print!("{out}");
}

fn print_registration(
    r: &dps::Registration,
    json_out: bool,
    source: &str,
    connection_string: Option<&str>,
) {
    if json_out {
        print_json(&registration_json(r, source, connection_string));
        return;
    }
    print_human(&[
        ("status", r.status.map(|s| s.as_str().to_owned())),
        ("registration id", r.registration_id.clone()),
        ("assigned hub", r.assigned_hub.clone()),
        ("device id", r.device_id.clone()),
        ("substatus", r.substatus.clone()),
        ("enrollment group", r.enrollment_group_id.clone()),
        ("payload", r.payload_json.clone()),
        ("created", r.created_date_time_utc.clone()),
        ("last updated", r.last_updated_date_time_utc.clone()),
        ("error code", r.error_code.map(|c| c.to_string())),
        ("error message", r.error_message.clone()),
        (
            "issued certs",
            (!r.issued_certificate_chain.is_empty())
                .then(|| r.issued_certificate_chain.len().to_string()),
        ),
        ("source", (source != "dps").then(|| source.to_owned())),
        ("connection string", connection_string.map(str::to_owned)),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Commands

fn register(p: &Parsed) -> Res<u8> {
    let s = setup(p)?;
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
            Failure::Other(
                exit::CREDENTIAL,
                format!("registered, but cannot save the assignment to {path:?}: {e}"),
            )
        })?;
    }
    print_registration(&reg, json_out, "dps", cs.as_deref().map(String::as_str));
    Ok(exit::OK)
}

fn lookup(p: &Parsed) -> Res<u8> {
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
            eprintln!("{line}");
            exit::FAILED
        }
        _ => exit::OK,
    })
}

fn derive_key(p: &Parsed) -> Res<u8> {
    let gk = p
        .value("--group-key")
        .ok_or_else(|| Failure::Usage("--group-key is required".into()))?;
    let gk = secret("--group-key", gk)?;
    let group = dps::protocol::sas::decode_key(&gk)?;
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
        dps::protocol::ids::validate_registration_id(id).map_err(|mut e| {
            e.message = format!("registration ID {id:?}: {}", e.message);
            e
        })?;
        rows.push((id, dps::protocol::sas::derive_device_key(&group, id)));
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

fn sas(p: &Parsed) -> Res<u8> {
    let scope = env_or(p, "--id-scope", "DPS_ID_SCOPE")
        .ok_or_else(|| Failure::Usage("--id-scope is required (or DPS_ID_SCOPE)".into()))?;
    let id = env_or(p, "--registration-id", "DPS_REGISTRATION_ID").ok_or_else(|| {
        Failure::Usage("--registration-id is required (or DPS_REGISTRATION_ID)".into())
    })?;
    dps::protocol::ids::validate_id_scope(&scope)?;
    dps::protocol::ids::validate_registration_id(&id)?;
    let key = match (p.value("--symmetric-key"), p.value("--group-key")) {
        (Some(k), None) => dps::protocol::sas::decode_key(&secret("--symmetric-key", k)?)?,
        (None, Some(g)) => {
            let group = dps::protocol::sas::decode_key(&secret("--group-key", g)?)?;
            let derived = dps::protocol::sas::derive_device_key(&group, &id);
            dps::protocol::sas::decode_key(&derived)?
        }
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
    let token = dps::protocol::sas::token(&key, &scope, &id, expiry);
    if p.flag("--json") {
        print_json(&json!({
            "token": token.as_str(),
            "resourceUri": dps::protocol::sas::resource_uri(&scope, &id),
            "expiry": expiry,
        }));
    } else {
        println!("{}", token.as_str());
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_per_class() {
        use ErrorKind as K;
        assert_eq!(exit_code_for(K::InvalidIdScope), exit::USAGE);
        assert_eq!(exit_code_for(K::InvalidKey), exit::CREDENTIAL);
        assert_eq!(exit_code_for(K::FileRead), exit::CREDENTIAL);
        assert_eq!(exit_code_for(K::TlsServerUntrusted), exit::NETWORK);
        assert_eq!(exit_code_for(K::Unauthorized), exit::REFUSED);
        assert_eq!(exit_code_for(K::ServiceError), exit::REFUSED);
        assert_eq!(exit_code_for(K::RegistrationFailed), exit::FAILED);
        assert_eq!(exit_code_for(K::Disabled), exit::FAILED);
        assert_eq!(exit_code_for(K::DeadlineExceeded), exit::DEADLINE);
        assert_eq!(exit_code_for(K::Cancelled), exit::DEADLINE);
        assert_eq!(exit_code_for(K::Panic), exit::INTERNAL);
    }

    #[test]
    fn one_line_has_detail() {
        let mut e = Error::new(
            ErrorKind::Unauthorized,
            "DPS answered HTTP 401: Unauthorized",
        );
        e.http_status = Some(401);
        e.dps_error_code = Some(401002);
        e.tracking_id = Some("t-1".into());
        assert_eq!(
            one_line(&e),
            "DPS answered HTTP 401: Unauthorized (HTTP 401, errorCode 401002, trackingId t-1, status 401 Unauthorized)"
        );
    }
}
