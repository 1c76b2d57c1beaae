//! Turning DPS's answers into errors and results: service errors, deadline errors, JSON
//! checks, and what a registration gives the device next (connection string, IoT Hub token).

use std::time::Duration;

use zeroize::Zeroizing;

use crate::credential::Credential;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::wire::{self, Registration};
use crate::retry;
use crate::transport::Response;

pub(super) fn deadline_from(cause: Error, wait: &str) -> Error {
    let mut e = Error::new(
        ErrorKind::DeadlineExceeded,
        format!(
            "giving up: the next retry ({wait}) would pass the deadline; last failure: {}",
            cause.message
        ),
    );
    e.http_status = cause.http_status;
    e.dps_error_code = cause.dps_error_code;
    e.tracking_id = cause.tracking_id;
    e.cause = Some(cause.kind);
    e.retriable = true;
    e
}

/// When the next request is due, and who decided it: a `Retry-After` larger than the
/// configured maximum is reported as what the server asked and what it was capped to, never
/// as if the server had asked for the capped value (issue 14 item 8).
pub(super) fn wait_phrase(retry_after: Option<Duration>, wait: Duration, cap: Duration) -> String {
    match retry_after {
        Some(asked) if asked > cap => format!(
            "DPS asked to wait {} s, capped at {} ms by the maximum Retry-After",
            asked.as_secs(),
            wait.as_millis()
        ),
        Some(_) => format!("in {} ms, as DPS asked", wait.as_millis()),
        None => format!("in {} ms", wait.as_millis()),
    }
}

/// Checks the content type and parses the body with `parse`.
pub(super) fn parse_json<T>(resp: &Response, parse: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
    check_json(resp)?;
    parse(&resp.body)
}

pub(super) fn check_json(resp: &Response) -> Result<()> {
    let ct = resp.content_type.as_deref().unwrap_or("");
    if !ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(Error::new(
            ErrorKind::MalformedResponse,
            format!(
                "DPS answered with content type {:?}, not JSON",
                ct.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok(())
}

pub(super) fn with_http(mut e: Error, resp: &Response) -> Error {
    e.http_status = Some(resp.status);
    e.tracking_id = resp.request_id.clone();
    e
}

/// Builds the error for a non-success HTTP answer from DPS.
pub(super) fn service_error(resp: &Response) -> Error {
    let body = wire::parse_error_body(&resp.body);
    let kind = match resp.status {
        400 => ErrorKind::BadRequest,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        415 => ErrorKind::UnsupportedMediaType,
        429 => ErrorKind::Throttled,
        _ => ErrorKind::ServiceError,
    };
    let message = body
        .message
        .as_deref()
        .map(|m| m.chars().take(256).collect::<String>());
    let mut e = Error::new(
        kind,
        format!(
            "DPS answered HTTP {}: {}",
            resp.status,
            message.as_deref().unwrap_or(kind.describe())
        ),
    );
    e.http_status = Some(resp.status);
    e.dps_error_code = body.error_code.or_else(|| {
        resp.error_code
            .as_deref()
            .and_then(|c| c.trim().parse().ok())
    });
    e.tracking_id = body.tracking_id.or_else(|| resp.request_id.clone());
    e.retriable = retry::is_transient_status(resp.status);
    e
}

/// Formats the IoT Hub connection string the device uses next (see
/// [`Credential::connection_string`]). The result may hold a secret and is zeroized on drop.
pub fn connection_string(
    registration: &Registration,
    credential: &Credential,
) -> Result<Zeroizing<String>> {
    let (hub, dev) = assigned(registration)?;
    credential.connection_string(hub, dev)
}

/// The IoT Hub SAS token for the assigned hub and device of `registration`, valid until
/// `expiry_unix`, signed with `credential`'s symmetric key wherever it lives. X.509 devices
/// authenticate to the hub with their certificate: [`ErrorKind::Unsupported`].
pub fn iot_hub_sas_token(
    registration: &Registration,
    credential: &Credential,
    expiry_unix: u64,
) -> Result<Zeroizing<String>> {
    let (hub, dev) = assigned(registration)?;
    let key = credential.symmetric_key().ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            "an X.509 device authenticates to IoT Hub with its certificate, not a SAS token",
        )
    })?;
    key.iot_hub_sas_token(hub, dev, expiry_unix)
}

/// The assigned hub and device ID, both non-empty.
fn assigned(registration: &Registration) -> Result<(&str, &str)> {
    let hub = registration
        .assigned_hub
        .as_deref()
        .filter(|s| !s.is_empty());
    let dev = registration.device_id.as_deref().filter(|s| !s.is_empty());
    match (hub, dev) {
        (Some(hub), Some(dev)) => Ok((hub, dev)),
        _ => Err(Error::new(
            ErrorKind::InvalidState,
            "the registration has no assigned hub or device ID",
        )),
    }
}
