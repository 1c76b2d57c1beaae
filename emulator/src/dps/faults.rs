//! Scripted faults and the strict polling limit: the only code that interprets `FaultKind`.
//!
//! A fault either replaces the answer (an error status, a close, a black hole), changes what
//! the normal answer says (a terminal result, endless `assigning`, a broken issued chain),
//! delays it, or changes how
//! it looks on the wire (truncated, malformed, wrong content type, oversized, trickled).
//! [`apply`] does all of it around the normal answer, so the route handlers never see a fault.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{ChainFault, Enrollment, FaultKind, FaultOn, RetryAfter, TerminalResult};
use crate::http::Response;
use crate::util::{http_date, uuid_v4};

use super::json::err_response;
use super::{Delivery, Handled, Route};

/// What a fault changes in the normal answer.
#[derive(Clone, Debug, Default)]
pub(super) struct Overrides {
    /// The operation ends (register) or is answered now (poll) with this result; the lookup
    /// reports it.
    pub terminal: Option<TerminalResult>,
    /// The operation never leaves `assigning`.
    pub endless: bool,
    /// The certificate issued for the CSR is broken so.
    pub broken_chain: Option<ChainFault>,
}

/// The enrollment's next fault step if it applies to this route (the device's cursor moves on).
pub(super) fn due(
    enr: &Enrollment,
    cursor: &mut usize,
    route: Route,
    note: &mut String,
) -> Option<FaultKind> {
    let step = enr.faults.get(*cursor)?;
    let applies = match step.on {
        FaultOn::Any => true,
        FaultOn::Register => route == Route::Register,
        FaultOn::Poll => route == Route::Operation,
        FaultOn::Lookup => route == Route::Lookup,
    };
    if !applies {
        return None;
    }
    *cursor += 1;
    *note = format!("fault #{}: {:?}", *cursor, step.kind);
    Some(step.kind.clone())
}

/// Runs `answer` (the normal answer under the fault's overrides) unless the fault replaces it,
/// and reshapes what it returns. `answer` returns `Err` for a refusal that no fault reshapes.
pub(super) fn apply(
    fault: Option<FaultKind>,
    h: &mut Handled,
    answer: impl FnOnce(&Overrides) -> Result<Response, Response>,
) {
    let mut ov = Overrides::default();
    match fault.clone() {
        Some(FaultKind::Status {
            status,
            error_code,
            message,
            retry_after,
        }) => {
            h.response = err_response(status, error_code, &message);
            match retry_after {
                Some(RetryAfter::Raw(v)) => h.response.set_header("Retry-After", v),
                Some(RetryAfter::HttpDateIn(s)) => h.response.set_header(
                    "Retry-After",
                    http_date(SystemTime::now() + Duration::from_secs(s)),
                ),
                None => {}
            }
            return;
        }
        Some(FaultKind::Close) => {
            h.delivery = Delivery::Close;
            return;
        }
        Some(FaultKind::BlackHole) => {
            h.delivery = Delivery::BlackHole;
            return;
        }
        Some(FaultKind::Delay { ms }) => h.delay = Some(Duration::from_millis(ms)),
        Some(FaultKind::Result(t)) => ov.terminal = Some(t),
        Some(FaultKind::EndlessAssigning) => ov.endless = true,
        Some(FaultKind::BrokenChain(c)) => ov.broken_chain = Some(c),
        _ => {}
    }
    h.response = match answer(&ov) {
        Ok(r) => r,
        Err(refusal) => {
            h.response = refusal;
            return;
        }
    };
    match fault {
        Some(FaultKind::Truncate) => h.delivery = Delivery::Truncate,
        Some(FaultKind::MalformedJson) => {
            h.response.body = b"{\"operationId\":\"5.bad\",\"status\":\"assign".to_vec();
        }
        Some(FaultKind::WrongContentType { content_type }) => {
            h.response.set_header("Content-Type", content_type);
            h.response.body = b"<html><head><title>Service Unavailable</title></head><body>The service is temporarily unavailable.</body></html>".to_vec();
        }
        Some(FaultKind::Oversized { bytes }) => {
            let head = format!(
                "{{\"operationId\":\"5.0000000000000000.{}\",\"status\":\"assigning\",\"padding\":\"",
                uuid_v4()
            );
            let tail = "\"}";
            let pad = bytes.saturating_sub(head.len() + tail.len());
            let mut body = head.into_bytes();
            body.extend(std::iter::repeat_n(b'x', pad));
            body.extend_from_slice(tail.as_bytes());
            h.response.body = body;
        }
        Some(FaultKind::Trickle {
            chunk_bytes,
            interval_ms,
        }) => {
            h.delivery = Delivery::Trickle {
                chunk_bytes,
                interval_ms,
            }
        }
        _ => {}
    }
}

/// `strict_polling`: more than 5 polls per 10 s per device get 429 with the wait in Retry-After.
pub(super) fn strict_polling(
    polls: &mut VecDeque<Instant>,
    note: &mut String,
) -> Result<(), Response> {
    let now = Instant::now();
    let window = Duration::from_secs(10);
    while polls
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        polls.pop_front();
    }
    if polls.len() >= 5 {
        let oldest = polls.front().copied().unwrap_or(now);
        let wait = window.saturating_sub(now.duration_since(oldest));
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut r = err_response(
            429,
            429001,
            "Too many requests: device polling limit is 5 per 10 seconds.",
        );
        r.set_header("Retry-After", secs.max(1).to_string());
        *note = "strict polling".into();
        return Err(r);
    }
    polls.push_back(now);
    Ok(())
}
