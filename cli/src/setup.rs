//! The library configuration for `register` and `lookup`, built from the device, credential,
//! connection and timing options (no network).

use dps::{ConfigBuilder, DefaultRoots, Error, ErrorKind};

use crate::args::Parsed;
use crate::exit::{Failure, Res};
use crate::inputs::{env_or, read_file, seconds};
use crate::logging::init_logging;

/// The default DPS endpoint.
const GLOBAL_ENDPOINT: &str = "global.azure-devices-provisioning.net";

/// Everything `register`/`lookup` need, built from the options (no network).
pub struct Setup {
    pub builder: ConfigBuilder,
    pub endpoint: String,
}

pub fn setup(p: &Parsed) -> Res<Setup> {
    let scope = env_or(p, "--id-scope", "DPS_ID_SCOPE")
        .ok_or_else(|| Failure::Usage("--id-scope is required (or DPS_ID_SCOPE)".into()))?;
    let mut b = ConfigBuilder::new(&scope)?;
    if let Some(id) = env_or(p, "--registration-id", "DPS_REGISTRATION_ID") {
        b.registration_id(&id)?;
    }

    crate::credential::apply(p, &mut b)?;

    let endpoint =
        env_or(p, "--endpoint", "DPS_ENDPOINT").unwrap_or_else(|| GLOBAL_ENDPOINT.into());
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
        })?;
    }
    for ca in p.values("--ca") {
        let pem = read_file("--ca", ca)?;
        b.add_trusted_roots_pem(&pem).map_err(|mut e| {
            e.message = format!("--ca {ca}: {}", e.message);
            crate::credential::der_hint(e, ca, &pem, "x509")
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
