//! The registration state machine: PUT register, then GET the operation until
//! it ends, with retries, a deadline and cancellation. [`Client::step`] does at
//! most one HTTP exchange and says how long to wait; [`Client::register`] is a
//! loop over it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use zeroize::Zeroizing;

use crate::config::Config;
use crate::credential::{Credential, TokenCache};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::wire::{self, Registration, RegistrationStatus};
use crate::protocol::{self};
use crate::retry;
use crate::transport::{CancelToken, Request, Response, Stats, Transport};

/// What [`Client::step`] asks of its caller.
// Returned once per call and moved straight out: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not finished: call `step` again after this long.
    Pending(Duration),
    /// Finished: the device is assigned.
    Done(Registration),
}

/// Progress reported to an observer during a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The register request (PUT) is about to be sent.
    Registering,
    /// DPS accepted the registration and is assigning; the next poll is after `wait`.
    Assigning {
        /// Time until the next poll.
        wait: Duration,
    },
    /// A transient failure (throttling, server or network error); retrying after `wait`.
    Retrying {
        /// Time until the retry.
        wait: Duration,
        /// The kind of the failure being retried.
        cause: ErrorKind,
    },
    /// The device is assigned.
    Assigned,
    /// The registration ended with an error.
    Failed(ErrorKind),
}

/// Receives [`Event`]s on the thread that drives the client.
pub type Observer = Box<dyn FnMut(Event) + Send>;

#[derive(Debug)]
enum Phase {
    Register,
    Poll(String),
}

#[derive(Debug)]
struct Run {
    phase: Phase,
    deadline: Instant,
    next_at: Instant,
    attempt: u32,
    reregistered: bool,
    restarts: u32,
    last_failure: Option<Error>,
}

#[allow(clippy::large_enum_variant)]
enum Outcome {
    Done(Registration),
    Poll {
        operation_id: String,
        retry_after: Option<Duration>,
    },
    Retry {
        retry_after: Option<Duration>,
        cause: Error,
    },
    Restart(Error),
    Fail(Error),
}

/// A DPS client: one configuration, one keep-alive connection, one
/// registration at a time. Not for concurrent use from several threads
/// (move it, or give each thread its own); [`Client::cancel_token`] may be used
/// from any thread.
pub struct Client {
    config: Arc<Config>,
    transport: Transport,
    cancel: Arc<CancelToken>,
    tokens: TokenCache,
    run: Option<Run>,
    last_error: Option<Error>,
    observer: Option<Observer>,
}

/// How early a step may come and still send (callers round waits to ms).
const EARLY_STEP_TOLERANCE: Duration = Duration::from_millis(2);

/// Restarts from the PUT allowed when the operation is no longer known (404).
const MAX_RESTARTS: u32 = 3;

impl Client {
    /// A client for `config`. Nothing is sent until the first call.
    pub fn new(config: Arc<Config>) -> Client {
        let cancel = Arc::new(CancelToken::default());
        let transport = Transport::new(
            config.tls.clone(),
            config.host.clone(),
            config.port,
            config.proxy.clone(),
            config.user_agent.clone(),
            cancel.clone(),
        );
        Client {
            config,
            transport,
            cancel,
            tokens: TokenCache::default(),
            run: None,
            last_error: None,
            observer: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// A handle that cancels the registration in progress from any thread.
    pub fn cancel_token(&self) -> Arc<CancelToken> {
        self.cancel.clone()
    }

    /// Sets (or clears) the progress observer.
    pub fn set_observer(&mut self, observer: Option<Observer>) {
        self.observer = observer;
    }

    /// The error that ended the last operation, if it failed.
    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    /// Connection counters since the client was created.
    pub fn stats(&self) -> Stats {
        self.transport.stats()
    }

    /// Whether a registration is in progress (started by `step` and not finished).
    pub fn in_progress(&self) -> bool {
        self.run.is_some()
    }

    /// Registers the device, blocking until it is assigned, fails, the
    /// deadline passes or the registration is cancelled.
    pub fn register(&mut self) -> Result<Registration> {
        self.run = None;
        loop {
            match self.step()? {
                Step::Done(r) => return Ok(r),
                Step::Pending(wait) => {
                    if !wait.is_zero() && self.cancel.wait(wait) {
                        // The next step sees the flag and ends the run.
                        continue;
                    }
                }
            }
        }
    }

    /// Advances the registration by at most one HTTP exchange. Starts a new
    /// registration when none is in progress. Never sleeps.
    pub fn step(&mut self) -> Result<Step> {
        let now = Instant::now();
        if self.run.is_none() {
            self.cancel.reset();
            self.last_error = None;
            self.run = Some(Run {
                phase: Phase::Register,
                deadline: now + self.config.deadline,
                next_at: now,
                attempt: 0,
                reregistered: false,
                restarts: 0,
                last_failure: None,
            });
        }
        let (deadline, next_at, registering) = match &self.run {
            Some(r) => (r.deadline, r.next_at, matches!(r.phase, Phase::Register)),
            None => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "no registration in progress",
                ));
            }
        };
        if self.cancel.is_cancelled() {
            // The cancel shut the socket down: do not keep it for the next run.
            self.transport.close();
            return Err(self.finish(Error::new(
                ErrorKind::Cancelled,
                "the registration was cancelled",
            )));
        }
        if now >= deadline {
            let e = self.deadline_error(None);
            return Err(self.finish(e));
        }
        // A caller that rounds waits to milliseconds may come back a little
        // early: go ahead rather than return a sub-millisecond wait.
        if next_at.saturating_duration_since(now) > EARLY_STEP_TOLERANCE {
            return Ok(Step::Pending(next_at - now));
        }
        let until = (now + self.config.request_timeout).min(deadline);
        if registering {
            self.notify(Event::Registering);
        }
        let outcome = self.exchange(until);
        self.apply(outcome)
    }

    /// Looks up the device's current registration (POST, not billable) without
    /// re-registering. Retries transient failures within the deadline.
    pub fn lookup(&mut self) -> Result<Registration> {
        self.cancel.reset();
        self.last_error = None;
        let deadline = Instant::now() + self.config.deadline;
        let path = protocol::lookup_path(
            &self.config.id_scope,
            &self.config.registration_id,
            &self.config.api_version,
        );
        let body = wire::request_body(&self.config.registration_id, None);
        let mut attempt = 0;
        loop {
            let now = Instant::now();
            let until = (now + self.config.request_timeout).min(deadline);
            let result = self.send("POST", &path, Some(body.as_bytes()), until);
            let cause = match result {
                Ok(resp) if resp.status == 200 => {
                    return check_json(&resp)
                        .and_then(|_| wire::parse_registration(&resp.body))
                        .map_err(|e| self.fail_plain(with_http(e, &resp)));
                }
                Ok(resp) if retry::is_transient_status(resp.status) => {
                    let ra = self.retry_after(&resp);
                    (service_error(&resp), ra)
                }
                Ok(resp) => return Err(self.fail_plain(service_error(&resp))),
                Err(e) if e.retriable && !self.cancel.is_cancelled() => (e, None),
                Err(e) => return Err(self.fail_plain(e)),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let decision = self
                .policy()
                .retry(cause.1, attempt, retry::random_jitter(), remaining);
            attempt += 1;
            let wait = match decision {
                retry::Decision::Wait(w) => w,
                retry::Decision::GiveUp(wait) => {
                    return Err(self.fail_plain(deadline_from(cause.0, wait)));
                }
            };
            if self.cancel.wait(wait) {
                self.transport.close();
                return Err(
                    self.fail_plain(Error::new(ErrorKind::Cancelled, "the lookup was cancelled"))
                );
            }
        }
    }

    fn policy(&self) -> retry::Policy {
        retry::Policy {
            backoff: self.config.backoff,
            poll_interval: self.config.poll_interval,
            max_retry_after: self.config.max_retry_after,
        }
    }

    fn fail_plain(&mut self, e: Error) -> Error {
        self.last_error = Some(e.clone());
        e
    }

    fn finish(&mut self, e: Error) -> Error {
        self.run = None;
        self.notify(Event::Failed(e.kind));
        log::debug!(
            "registration of {} failed: {e}",
            self.config.registration_id
        );
        self.last_error = Some(e.clone());
        e
    }

    fn notify(&mut self, ev: Event) {
        if let Some(cb) = self.observer.as_mut() {
            cb(ev);
        }
    }

    fn deadline_error(&self, cause: Option<&Error>) -> Error {
        let last = cause.or_else(|| self.run.as_ref().and_then(|r| r.last_failure.as_ref()));
        let mut e = Error::new(
            ErrorKind::DeadlineExceeded,
            format!(
                "the registration did not finish within {:?}",
                self.config.deadline
            ),
        );
        if let Some(l) = last {
            e.message
                .push_str(&format!("; last failure: {}", l.message));
            e.http_status = l.http_status;
            e.dps_error_code = l.dps_error_code;
            e.tracking_id = l.tracking_id.clone();
            e.cause = Some(l.kind);
        }
        e.retriable = true;
        e
    }

    fn retry_after(&self, resp: &Response) -> Option<Duration> {
        resp.retry_after
            .as_deref()
            .and_then(|v| retry::parse_retry_after(v, SystemTime::now()))
    }

    fn send(
        &mut self,
        method: &'static str,
        path: &str,
        body: Option<&[u8]>,
        until: Instant,
    ) -> Result<Response> {
        let token = self.config.credential.authorization(
            &mut self.tokens,
            &self.config.id_scope,
            &self.config.registration_id,
            self.config.sas_ttl,
            SystemTime::now(),
        )?;
        let req = Request {
            method,
            path,
            authorization: token.as_deref().map(String::as_str),
            body,
        };
        let started = Instant::now();
        let result = self.transport.send(&req, until);
        match &result {
            Ok(r) => log::debug!("{method} {path} -> {} in {:?}", r.status, started.elapsed()),
            Err(e) => log::debug!("{method} {path} -> {e}"),
        }
        result
    }

    fn exchange(&mut self, until: Instant) -> Outcome {
        let cfg = self.config.clone();
        let polling = match self.run.as_ref().map(|r| &r.phase) {
            Some(Phase::Poll(op)) => Some(op.clone()),
            _ => None,
        };
        let result = match &polling {
            None => {
                let path = protocol::register_path(
                    &cfg.id_scope,
                    &cfg.registration_id,
                    &cfg.api_version,
                    cfg.force_registration,
                );
                let body = wire::request_body(&cfg.registration_id, cfg.payload_json.as_deref());
                self.send("PUT", &path, Some(body.as_bytes()), until)
            }
            Some(op) => {
                let path = protocol::operation_path(
                    &cfg.id_scope,
                    &cfg.registration_id,
                    op,
                    &cfg.api_version,
                );
                self.send("GET", &path, None, until)
            }
        };
        let resp = match result {
            Ok(r) => r,
            Err(e) if e.kind == ErrorKind::Cancelled || self.cancel.is_cancelled() => {
                return Outcome::Fail(Error::new(
                    ErrorKind::Cancelled,
                    "the registration was cancelled",
                ));
            }
            Err(e) if e.retriable => {
                return Outcome::Retry {
                    retry_after: None,
                    cause: e,
                };
            }
            Err(e) => return Outcome::Fail(e),
        };
        match retry::classify(
            resp.status,
            polling.is_some(),
            cfg.credential.fresh_token_on_401(),
        ) {
            retry::Action::Proceed => self.operation_outcome(&resp),
            retry::Action::Retry => Outcome::Retry {
                retry_after: self.retry_after(&resp),
                cause: service_error(&resp),
            },
            retry::Action::Restart => {
                if resp.status == 401 {
                    // PROTOCOL.md 4.2: one re-registration with a fresh token.
                    self.tokens.clear();
                }
                Outcome::Restart(service_error(&resp))
            }
            retry::Action::Fail => Outcome::Fail(service_error(&resp)),
        }
    }

    fn operation_outcome(&self, resp: &Response) -> Outcome {
        let op = match check_json(resp).and_then(|_| wire::parse_operation(&resp.body)) {
            Ok(op) => op,
            Err(e) => return Outcome::Fail(with_http(e, resp)),
        };
        let tracking = resp.request_id.clone();
        match op.status {
            RegistrationStatus::Assigning | RegistrationStatus::Unassigned => Outcome::Poll {
                operation_id: op.operation_id,
                retry_after: self.retry_after(resp),
            },
            RegistrationStatus::Assigned => {
                let r = op.registration;
                if r.assigned_hub.as_deref().unwrap_or("").is_empty()
                    || r.device_id.as_deref().unwrap_or("").is_empty()
                {
                    let e = Error::new(
                        ErrorKind::MalformedResponse,
                        "DPS reported 'assigned' without assignedHub or deviceId",
                    );
                    return Outcome::Fail(with_http(e, resp));
                }
                Outcome::Done(r)
            }
            RegistrationStatus::Failed => {
                let r = op.registration;
                let mut e = Error::new(
                    ErrorKind::RegistrationFailed,
                    format!(
                        "the registration failed: {}",
                        r.error_message.as_deref().unwrap_or("no message")
                    ),
                );
                e.http_status = Some(resp.status);
                e.dps_error_code = r.error_code;
                e.tracking_id = tracking;
                Outcome::Fail(e)
            }
            RegistrationStatus::Disabled => {
                let mut e = Error::new(ErrorKind::Disabled, "the enrollment is disabled");
                e.http_status = Some(resp.status);
                e.dps_error_code = op.registration.error_code;
                e.tracking_id = tracking;
                Outcome::Fail(e)
            }
        }
    }

    fn apply(&mut self, outcome: Outcome) -> Result<Step> {
        let now = Instant::now();
        let policy = self.policy();
        let Some(run) = self.run.as_mut() else {
            return Err(Error::new(
                ErrorKind::Internal,
                "no registration in progress",
            ));
        };
        match outcome {
            Outcome::Done(r) => {
                self.run = None;
                self.notify(Event::Assigned);
                log::info!(
                    "{} assigned to {} as {}",
                    self.config.registration_id,
                    r.assigned_hub.as_deref().unwrap_or(""),
                    r.device_id.as_deref().unwrap_or("")
                );
                Ok(Step::Done(r))
            }
            Outcome::Poll {
                operation_id,
                retry_after,
            } => {
                run.phase = Phase::Poll(operation_id);
                run.attempt = 0;
                let remaining = run.deadline.saturating_duration_since(now);
                let wait = match policy.poll(retry_after, remaining) {
                    retry::Decision::Wait(w) => w,
                    retry::Decision::GiveUp(wait) => {
                        let e = Error::new(
                        ErrorKind::DeadlineExceeded,
                        format!(
                            "DPS is still assigning and asked to poll again in {} ms, after the registration deadline",
                            wait.as_millis()
                        ),
                    )
                    .retriable(true);
                        return Err(self.finish(e));
                    }
                };
                run.next_at = now + wait;
                self.notify(Event::Assigning { wait });
                Ok(Step::Pending(wait))
            }
            Outcome::Retry { retry_after, cause } => {
                let remaining = run.deadline.saturating_duration_since(now);
                let decision =
                    policy.retry(retry_after, run.attempt, retry::random_jitter(), remaining);
                run.attempt = run.attempt.saturating_add(1);
                let wait = match decision {
                    retry::Decision::Wait(w) => w,
                    retry::Decision::GiveUp(wait) => {
                        let e = deadline_from(cause, wait);
                        return Err(self.finish(e));
                    }
                };
                log::debug!("retrying in {wait:?} after: {cause}");
                let kind = cause.kind;
                run.last_failure = Some(cause);
                run.next_at = now + wait;
                self.notify(Event::Retrying { wait, cause: kind });
                Ok(Step::Pending(wait))
            }
            Outcome::Restart(cause) => {
                let allowed = if cause.kind == ErrorKind::Unauthorized {
                    !std::mem::replace(&mut run.reregistered, true)
                } else {
                    run.restarts += 1;
                    run.restarts <= MAX_RESTARTS
                };
                if !allowed {
                    return Err(self.finish(cause));
                }
                log::debug!("restarting the registration from the PUT after: {cause}");
                run.phase = Phase::Register;
                run.next_at = now;
                run.last_failure = Some(cause);
                Ok(Step::Pending(Duration::ZERO))
            }
            Outcome::Fail(e) => Err(self.finish(e)),
        }
    }
}

fn deadline_from(cause: Error, wait: Duration) -> Error {
    let mut e = Error::new(
        ErrorKind::DeadlineExceeded,
        format!(
            "giving up: the next retry (in {} ms) would pass the deadline; last failure: {}",
            wait.as_millis(),
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

fn check_json(resp: &Response) -> Result<()> {
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

fn with_http(mut e: Error, resp: &Response) -> Error {
    e.http_status = Some(resp.status);
    e.tracking_id = resp.request_id.clone();
    e
}

/// Builds the error for a non-success HTTP answer from DPS.
fn service_error(resp: &Response) -> Error {
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
