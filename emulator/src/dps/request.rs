//! The request steps that need no device state: route and method, the path's scope,
//! registration id and operation id, the api-version, and the `DeviceRegistration` body.

use serde_json::Value;

use crate::config::valid_registration_id;
use crate::util::percent_decode;

use super::json::err_response;
use super::{Ctx, DeviceRegistration, Flow, Route};

/// `/{scope}/registrations/{id}/register` (PUT), `.../operations/{op}` (GET), `/{scope}/registrations/{id}`
/// (POST, the status lookup); anything else is a 404 on the route "other".
pub(super) fn route(cx: &mut Ctx<'_>) -> Flow {
    let path = cx.req.path();
    let raw: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    cx.route = match raw.as_slice() {
        [_, "registrations", _, "register"] => Route::Register,
        [_, "registrations", _, "operations", _] => Route::Operation,
        [_, "registrations", _] => Route::Lookup,
        _ => {
            cx.note = "unknown path".into();
            return Err(err_response(404, 404003, "Not found."));
        }
    };
    Ok(())
}

pub(super) fn method(cx: &mut Ctx<'_>) -> Flow {
    let expected = match cx.route {
        Route::Register => "PUT",
        Route::Operation => "GET",
        Route::Lookup | Route::Other => "POST",
    };
    if cx.req.method != expected {
        let mut r = err_response(405, 405001, "Method not allowed.");
        r.set_header("Allow", expected);
        return Err(r);
    }
    Ok(())
}

/// Decodes the scope, registration id and (polls) operation id segments.
pub(super) fn path_ids(cx: &mut Ctx<'_>) -> Flow {
    let path = cx.req.path();
    let raw: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let seg = |i: usize| raw.get(i).and_then(|s| percent_decode(s));
    let (Some(scope), Some(regid)) = (seg(0), seg(2)) else {
        return Err(err_response(400, 400004, "Malformed path."));
    };
    cx.opid = if cx.route == Route::Operation {
        seg(4)
    } else {
        None
    };
    cx.scope = scope;
    cx.lower = regid.to_ascii_lowercase();
    cx.regid = regid;
    Ok(())
}

pub(super) fn api_version(cx: &mut Ctx<'_>) -> Flow {
    let mut api_version = None;
    for kv in cx.req.query().split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k.eq_ignore_ascii_case("api-version") {
            api_version = percent_decode(v);
        }
    }
    let Some(api_version) = api_version.filter(|v| !v.is_empty()) else {
        return Err(err_response(
            400,
            400001,
            "The api-version query parameter is required.",
        ));
    };
    if !cx.cfg.api_versions.iter().any(|v| v == &api_version) {
        return Err(err_response(
            400,
            400001,
            &format!(
                "The api-version '{api_version}' is not supported. Supported versions: {}.",
                cx.cfg.api_versions.join(", ")
            ),
        ));
    }
    cx.api_version = api_version;
    Ok(())
}

pub(super) fn scope(cx: &mut Ctx<'_>) -> Flow {
    if !cx.scope.eq_ignore_ascii_case(&cx.cfg.id_scope) {
        return Err(err_response(404, 404001, "ID scope not found."));
    }
    Ok(())
}

pub(super) fn registration_id(cx: &mut Ctx<'_>) -> Flow {
    if !valid_registration_id(&cx.regid) {
        return Err(err_response(400, 400004, "Invalid registration id."));
    }
    Ok(())
}

/// PUT and POST carry a JSON `DeviceRegistration`; polls carry none.
pub(super) fn body(cx: &mut Ctx<'_>) -> Flow {
    if cx.route == Route::Operation {
        return Ok(());
    }
    let ct = cx
        .req
        .header("content-type")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let media = ct.split(';').next().unwrap_or("").trim();
    if media != "application/json" {
        cx.note = format!("content-type {ct:?}");
        return Err(err_response(
            415,
            415001,
            "Unsupported media type: the body must be JSON (Content-Type: application/json).",
        ));
    }
    cx.body = check_body(&cx.req.body, &cx.regid, &cx.api_version, cx.route)
        .map_err(|msg| err_response(400, 400004, &msg))?;
    Ok(())
}

/// True when `v` (an api-version) is `min` (a date) or later.
pub(super) fn version_at_least(v: &str, min: &str) -> bool {
    v.get(..10).unwrap_or(v) >= min
}

/// Validates a `DeviceRegistration` body the way the service does (unknown members refused).
fn check_body(
    body: &[u8],
    regid: &str,
    api_version: &str,
    route: Route,
) -> Result<DeviceRegistration, String> {
    if body.is_empty() {
        return Err("The request body is required.".into());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("The request body is not valid JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("The request body must be a JSON object (DeviceRegistration).".into());
    };
    let mut out = DeviceRegistration::default();
    for (k, v) in m {
        match k.as_str() {
            "registrationId" => match v {
                Value::String(s) if s.eq_ignore_ascii_case(regid) => {}
                Value::String(_) => {
                    return Err("Registration IDs in URI and request mismatch.".into());
                }
                Value::Null => {}
                _ => return Err("registrationId must be a string.".into()),
            },
            // Kept as sent: an attestor that knows TPM reads it (see `auth::Attestor`).
            "tpm" => out.tpm = Some(v),
            "payload" if version_at_least(api_version, "2019-03-31") => match v {
                Value::Object(_) => out.payload = Some(v),
                Value::Null => {}
                _ => return Err("payload must be a JSON object.".into()),
            },
            "csr" if version_at_least(api_version, "2025-07-01") => {
                if route == Route::Lookup {
                    return Err("csr is not allowed in a device registration status lookup.".into());
                }
                match v {
                    Value::String(s) => out.csr = Some(s),
                    Value::Null => {}
                    _ => return Err("csr must be a string.".into()),
                }
            }
            other => {
                return Err(format!(
                    "Could not find member '{other}' on object of type 'DeviceRegistration'. Path '{other}'."
                ));
            }
        }
    }
    Ok(out)
}
