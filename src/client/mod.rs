//! The registration state machine: PUT register, then GET the operation until
//! it ends, with retries, a deadline and cancellation; the status lookup (POST)
//! runs on the same machinery. [`Client::step`] does at most one HTTP exchange
//! and says how long to wait; [`Client::register`] and [`Client::lookup`] are
//! loops over it.
//!
//! The phases: `Register` (PUT) -> [challenge: a credential that answers a 401 to the PUT,
//! such as TPM attestation, gets one round trip, then the PUT again] -> `Poll` (GET)* -> done;
//! or `Lookup` (POST) -> done. Every credential-specific decision is asked of the
//! [`Credential`]; the network and the clock come through the [`exchange`] traits.

mod answers;
mod events;
mod exchange;
mod pacing;
mod request;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::credential::TokenCache;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::wire::Registration;
use crate::retry;
use crate::transport::{CancelToken, Stats, Transport};
use exchange::{Clock, Exchange, SystemClock};
use pacing::PollPacer;

pub use answers::{connection_string, iot_hub_sas_token};
use answers::{deadline_from, wait_phrase};
pub use events::{Event, Observer, Step};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// PUT the registration.
    Register,
    /// GET the operation.
    Poll(String),
    /// POST the status lookup.
    Lookup,
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
        retry_after: Option<std::time::Duration>,
    },
    Retry {
        retry_after: Option<Duration>,
        cause: Error,
    },
    Restart(Error),
    /// The credential answered a challenge to the PUT: send the PUT again.
    Challenged,
    Fail(Error),
}

/// A DPS client: one configuration, one keep-alive connection, one
/// registration at a time. Not for concurrent use from several threads
/// (move it, or give each thread its own); [`Client::cancel_token`] may be used
/// from any thread.
pub struct Client {
    config: Arc<Config>,
    net: Box<dyn Exchange>,
    clock: Box<dyn Clock>,
    cancel: Arc<CancelToken>,
    tokens: TokenCache,
    pacer: PollPacer,
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
        Self::with_parts(config, Box::new(transport), Box::new(SystemClock), cancel)
    }

    fn with_parts(
        config: Arc<Config>,
        net: Box<dyn Exchange>,
        clock: Box<dyn Clock>,
        cancel: Arc<CancelToken>,
    ) -> Client {
        Client {
            pacer: PollPacer::new(config.poll_rate),
            config,
            net,
            clock,
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

    /// A handle that cancels the registration in progress from any thread. A cancel that
    /// arrives while no registration or lookup is in progress is kept: the next one ends at
    /// once with [`ErrorKind::Cancelled`]. Each cancel ends one operation.
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
        self.net.stats()
    }

    /// Whether a registration is in progress (started by `step` and not finished).
    pub fn in_progress(&self) -> bool {
        self.run.is_some()
    }

    /// Registers the device, blocking until it is assigned, fails, the
    /// deadline passes or the registration is cancelled.
    pub fn register(&mut self) -> Result<Registration> {
        self.run = None;
        self.run_to_end(Phase::Register)
    }

    /// Looks up the device's current registration (POST, not billable) without
    /// re-registering, with the retries, deadline and cancellation of a registration. The
    /// result may have status `failed` or `disabled`.
    pub fn lookup(&mut self) -> Result<Registration> {
        self.run = None;
        self.run_to_end(Phase::Lookup)
    }

    fn run_to_end(&mut self, first: Phase) -> Result<Registration> {
        loop {
            match self.advance(first.clone())? {
                Step::Done(r) => return Ok(r),
                Step::Pending(wait) => {
                    // A cancel during the wait ends it; the next step sees the flag.
                    if !wait.is_zero() {
                        self.clock.wait(wait, &self.cancel);
                    }
                }
            }
        }
    }

    /// Advances the registration by at most one HTTP exchange. Starts a new
    /// registration when none is in progress. Never sleeps.
    pub fn step(&mut self) -> Result<Step> {
        self.advance(Phase::Register)
    }

    /// One step of the run in progress, or of a new one starting at `first`.
    fn advance(&mut self, first: Phase) -> Result<Step> {
        let now = self.clock.now();
        if self.run.is_none() {
            self.last_error = None;
            self.pacer.reset();
            if first == Phase::Register {
                self.tokens.start_registration();
            }
            self.run = Some(Run {
                phase: first,
                deadline: now + self.config.deadline,
                next_at: now,
                attempt: 0,
                reregistered: false,
                restarts: 0,
                last_failure: None,
            });
        }
        let Some(run) = &self.run else {
            return Err(Error::new(ErrorKind::Internal, "no run in progress"));
        };
        let (deadline, next_at, phase) = (run.deadline, run.next_at, run.phase.clone());
        if self.cancel.is_cancelled() {
            // The cancel shut the socket down: do not keep the connection for the next run.
            self.net.close();
            let what = if phase == Phase::Lookup {
                "lookup"
            } else {
                "registration"
            };
            return Err(self.finish(Error::new(
                ErrorKind::Cancelled,
                format!("the {what} was cancelled"),
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
        match phase {
            Phase::Register => self.notify(Event::Registering),
            Phase::Poll(_) => self.pacer.record(now),
            Phase::Lookup => {}
        }
        let outcome = self.exchange(&phase, until, deadline);
        // An attempt that ran out of time because the deadline (not the request timeout)
        // bounded it was cut short: it says nothing about the server. Report the last failure
        // that completed instead, when there is one (a refused connection, a 503, ...).
        if until == deadline
            && matches!(&outcome, Outcome::Retry { cause, .. } if cause.kind == ErrorKind::Timeout)
            && self.run.as_ref().is_some_and(|r| r.last_failure.is_some())
        {
            let e = self.deadline_error(None);
            return Err(self.finish(e));
        }
        self.apply(outcome)
    }

    fn policy(&self) -> retry::Policy {
        retry::Policy {
            backoff: self.config.backoff,
            poll_interval: self.config.poll_interval,
            max_retry_after: self.config.max_retry_after,
        }
    }

    fn finish(&mut self, e: Error) -> Error {
        self.run = None;
        if e.kind == ErrorKind::Cancelled {
            // A cancel is consumed by the operation it ends.
            self.cancel.reset();
        }
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

    fn apply(&mut self, outcome: Outcome) -> Result<Step> {
        let now = self.clock.now();
        let policy = self.policy();
        let jitter = retry::random_jitter();
        let Some(run) = self.run.as_mut() else {
            return Err(Error::new(ErrorKind::Internal, "no run in progress"));
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
                let asked = match policy.poll(retry_after, remaining) {
                    retry::Decision::Wait(w) => w,
                    retry::Decision::GiveUp(wait) => {
                        let e = Error::new(
                            ErrorKind::DeadlineExceeded,
                            format!(
                                "DPS is still assigning; the next poll ({}) would be after the registration deadline",
                                wait_phrase(retry_after, wait, policy.max_retry_after)
                            ),
                        )
                        .retriable(true);
                        return Err(self.finish(e));
                    }
                };
                // Retry-After as asked while the poll budget lasts, then paced.
                let wait = asked + self.pacer.extra(now + asked);
                if wait >= remaining {
                    let e = Error::new(
                        ErrorKind::DeadlineExceeded,
                        format!(
                            "DPS is still assigning; the next poll allowed by the poll rate ({} per {:?}) is after the registration deadline",
                            self.config.poll_rate.max_polls, self.config.poll_rate.window
                        ),
                    )
                    .retriable(true);
                    return Err(self.finish(e));
                }
                run.next_at = now + wait;
                self.notify(Event::Assigning { wait });
                Ok(Step::Pending(wait))
            }
            Outcome::Retry { retry_after, cause } => {
                let remaining = run.deadline.saturating_duration_since(now);
                let decision = policy.retry(retry_after, run.attempt, jitter, remaining);
                run.attempt = run.attempt.saturating_add(1);
                let wait = match decision {
                    retry::Decision::Wait(w) => w,
                    retry::Decision::GiveUp(wait) => {
                        let when = wait_phrase(retry_after, wait, policy.max_retry_after);
                        let e = deadline_from(cause, &when);
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
            Outcome::Challenged => {
                log::debug!("challenge answered; sending the registration again");
                run.phase = Phase::Register;
                run.attempt = 0;
                run.next_at = now;
                Ok(Step::Pending(Duration::ZERO))
            }
            Outcome::Fail(e) => Err(self.finish(e)),
        }
    }
}
