//! Retry policy, pure: `Retry-After` parsing (delta seconds and HTTP-date),
//! exponential backoff with jitter, and which answers are worth retrying.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a `Retry-After` value: delta seconds (`"3"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, RFC 9110 IMF-fixdate, also RFC 850 and
/// asctime forms). A date in the past gives zero. `now` is the current time.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurd values instead of failing; the caller caps them.
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(v)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Parses an HTTP-date into Unix seconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split([' ', ',', '-']).filter(|p| !p.is_empty()).collect();
    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT -> [Sun, 06, Nov, 1994, 08:49:37, GMT]
    // RFC 850:     Sunday, 06-Nov-94 08:49:37 GMT -> [Sunday, 06, Nov, 94, 08:49:37, GMT]
    // asctime:     Sun Nov  6 08:49:37 1994       -> [Sun, Nov, 6, 08:49:37, 1994]
    let (day, month, year, time) = match parts.as_slice() {
        [_, d, m, y, t, "GMT"] => (*d, *m, *y, *t),
        [_, m, d, t, y] => (*d, *m, *y, *t),
        _ => return None,
    };
    // Fixed-width fields only (found by fuzzing: a 20-digit year overflowed
    // the day count): day 1-2 digits, year 4 (or 2 in RFC 850), hh:mm:ss.
    let digits =
        |s: &str, lens: &[usize]| lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(day, &[1, 2])
        || !digits(year, &[2, 4])
        || time.len() != 8
        || !time.split(':').all(|p| digits(p, &[2]))
    {
        return None;
    }
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|&m| m == month)? as u64
        + 1;
    let mut year: u64 = year.parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, se] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *mi > 59 || *se > 60 || year < 1970 {
        return None;
    }
    let days = crate::civil::days_from_civil(year as i64, month as i64, day as i64);
    Some(u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + se)
}

/// Exponential backoff bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub min: Duration,
    /// Upper bound of any computed delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s doubling up to 60 s (PROTOCOL.md 4.2 recommendation).
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based): `min * 2^attempt`
    /// capped at `max`, then "equal jitter": half of it fixed, the other half
    /// scaled by `jitter` in `[0, 1]`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        let half = base / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A jitter value in `[0, 1]` from the system's random source.
pub fn random_jitter() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

/// Whether an HTTP status from DPS is transient (PROTOCOL.md 3.5 and 4.1):
/// 429 and every 5xx.
pub fn is_transient_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// Decides the wait before the next attempt after a transient failure: the
/// server's `Retry-After` when it sent one (capped at `cap`, and raised to
/// `backoff.min` so that `Retry-After: 0` cannot make the client spin),
/// otherwise the backoff delay.
pub fn next_delay(
    retry_after: Option<Duration>,
    backoff: &Backoff,
    attempt: u32,
    jitter: f64,
    cap: Duration,
) -> Duration {
    match retry_after {
        Some(d) => d.min(cap).max(backoff.min.min(cap)),
        None => backoff.delay(attempt, jitter),
    }
}

/// The wait before the next poll of an operation that is still `assigning`:
/// exactly the server's `Retry-After` (0 included: the client never waits
/// longer than DPS asks), else `interval`; capped at `cap`. A server that
/// keeps answering `assigning` with `Retry-After: 0` is polled as it asks,
/// until the registration deadline.
pub fn poll_delay(retry_after: Option<Duration>, interval: Duration, cap: Duration) -> Duration {
    retry_after.unwrap_or(interval).min(cap)
}

/// What the state machine does with an HTTP answer (PROTOCOL.md 3.5, 4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// 200/202: parse the operation status.
    Proceed,
    /// 429 or 5xx: wait (`Retry-After` or backoff) and resend the same request.
    Retry,
    /// Start again from the PUT: a 404 while polling (the operation is no
    /// longer known) or, with a SAS, a 401 while polling (once, with a fresh
    /// token). The caller bounds how often.
    Restart,
    /// Everything else (400, 401, 403, 404, 409, 415, other codes): give up.
    Fail,
}

/// Classifies an HTTP status. `polling`: the request was a GET of the
/// operation; `sas`: the credential is a symmetric key.
pub fn classify(status: u16, polling: bool, sas: bool) -> Action {
    match status {
        200 | 202 => Action::Proceed,
        s if is_transient_status(s) => Action::Retry,
        401 if polling && sas => Action::Restart,
        404 if polling => Action::Restart,
        _ => Action::Fail,
    }
}

/// The waiting policy of a registration, pure: the caller passes the time
/// left before the deadline (so it is tested with a fake clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Backoff for retries without `Retry-After`.
    pub backoff: Backoff,
    /// Poll interval when an `assigning` answer has no `Retry-After`.
    pub poll_interval: Duration,
    /// Cap on any `Retry-After`.
    pub max_retry_after: Duration,
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then send again.
    Wait(Duration),
    /// The wait (given) would end at or after the deadline: give up now
    /// rather than sleep into it.
    GiveUp(Duration),
}

impl Policy {
    /// After a transient failure (429, 5xx, connection-level): retry number
    /// `attempt` (0-based) with `jitter` in `[0, 1]`.
    pub fn retry(
        &self,
        retry_after: Option<Duration>,
        attempt: u32,
        jitter: f64,
        remaining: Duration,
    ) -> Decision {
        let wait = next_delay(
            retry_after,
            &self.backoff,
            attempt,
            jitter,
            self.max_retry_after,
        );
        decide(wait, remaining)
    }

    /// After an `assigning` answer.
    pub fn poll(&self, retry_after: Option<Duration>, remaining: Duration) -> Decision {
        let wait = poll_delay(retry_after, self.poll_interval, self.max_retry_after);
        decide(wait, remaining)
    }
}

fn decide(wait: Duration, remaining: Duration) -> Decision {
    if wait < remaining {
        Decision::Wait(wait)
    } else {
        Decision::GiveUp(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("3", at(0)), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", at(0)), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", at(0)),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("-1", at(0)), None);
        assert_eq!(parse_retry_after("1.5", at(0)), None);
        assert_eq!(parse_retry_after("", at(0)), None);
    }

    #[test]
    fn retry_after_http_dates() {
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT
        let base = 784_111_777;
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(base));
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(base)
        );
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(base));
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 19943"), None);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 18446744073709551615 08:49:37 GMT"),
            None
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 8:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 +8:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 32 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", at(base)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", at(base)),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sat, 29 Feb 2020 12:00:00 GMT"),
            Some(1_582_977_600)
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.delay(0, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(10, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(30));
        let j = random_jitter();
        assert!((0.0..=1.0).contains(&j));
    }

    #[test]
    fn retry_after_wins_over_backoff() {
        let b = Backoff::default();
        let cap = Duration::from_secs(300);
        // Retry-After: 0 is raised to the backoff minimum: no hot loop.
        assert_eq!(
            next_delay(Some(Duration::ZERO), &b, 5, 1.0, cap),
            Duration::from_secs(1)
        );
        assert_eq!(
            next_delay(Some(Duration::from_secs(9999)), &b, 0, 1.0, cap),
            cap
        );
        assert_eq!(next_delay(None, &b, 1, 1.0, cap), Duration::from_secs(2));
        assert!(is_transient_status(429) && is_transient_status(503) && !is_transient_status(404));
    }

    // --- The policy over whole registrations, with a fake clock. ---

    /// What the scripted server answers to request number `n`.
    #[derive(Clone, Copy)]
    enum Answer {
        /// 429/5xx/connection failure, with an optional Retry-After.
        Transient(Option<Duration>),
        /// 202 assigning, with an optional Retry-After.
        Assigning(Option<Duration>),
        /// 200 assigned.
        Done,
    }

    struct Run {
        assigned: bool,
        elapsed: Duration,
        requests: u32,
        waits: Vec<Duration>,
    }

    /// Mirrors `Client::step`/`apply`: each request takes `latency` (bounded by
    /// the deadline, as the transport is), then the policy decides. The clock
    /// is a plain `Duration`: nothing sleeps.
    fn simulate(
        policy: Policy,
        deadline: Duration,
        latency: Duration,
        jitter: f64,
        mut server: impl FnMut(u32) -> Answer,
    ) -> Run {
        let mut now = Duration::ZERO;
        let mut attempt = 0;
        let mut run = Run {
            assigned: false,
            elapsed: now,
            requests: 0,
            waits: Vec::new(),
        };
        loop {
            if now >= deadline {
                break;
            }
            now = (now + latency).min(deadline);
            let answer = server(run.requests);
            run.requests += 1;
            let remaining = deadline.saturating_sub(now);
            let decision = match answer {
                Answer::Done => {
                    run.assigned = true;
                    break;
                }
                Answer::Assigning(ra) => {
                    attempt = 0;
                    policy.poll(ra, remaining)
                }
                Answer::Transient(ra) => {
                    let d = policy.retry(ra, attempt, jitter, remaining);
                    attempt += 1;
                    d
                }
            };
            match decision {
                Decision::Wait(w) => {
                    run.waits.push(w);
                    now += w;
                }
                Decision::GiveUp(_) => break,
            }
        }
        run.elapsed = now;
        run
    }

    fn policy() -> Policy {
        Policy {
            backoff: Backoff::default(),
            poll_interval: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(300),
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn endless_429_with_retry_after_stops_before_the_deadline() {
        let r = simulate(policy(), S(300), MS(100), 0.5, |_| {
            Answer::Transient(Some(S(3)))
        });
        assert!(!r.assigned);
        assert!(r.elapsed <= S(300), "{:?}", r.elapsed);
        // Every wait is the server's 3 s; 3.1 s per round trip.
        assert!(r.waits.iter().all(|w| *w == S(3)));
        assert_eq!(r.requests, 97);
        assert!(r.elapsed > S(296));
    }

    #[test]
    fn endless_5xx_backs_off_exponentially_to_the_cap() {
        let r = simulate(policy(), S(300), MS(10), 1.0, |_| Answer::Transient(None));
        assert!(!r.assigned && r.elapsed <= S(300));
        let secs: Vec<u64> = r.waits.iter().map(Duration::as_secs).collect();
        // jitter 1.0 gives the upper bound of each step: 1, 2, 4 ... 60.
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        // jitter 0.0: the lower half.
        let r = simulate(policy(), S(300), MS(10), 0.0, |_| Answer::Transient(None));
        assert_eq!(r.waits[..3], [MS(500), S(1), S(2)]);
        assert!(r.elapsed <= S(300));
    }

    #[test]
    fn transient_failures_then_success() {
        let script = [
            Answer::Transient(Some(S(5))), // 429 Retry-After: 5 on the PUT
            Answer::Transient(None),       // 503 without Retry-After
            Answer::Assigning(Some(S(3))), // 202
            Answer::Transient(Some(Duration::ZERO)), // 429 Retry-After: 0 on a poll
            Answer::Assigning(None),       // 202 without Retry-After
            Answer::Done,
        ];
        let r = simulate(policy(), S(300), MS(50), 1.0, |n| script[n as usize]);
        assert!(r.assigned);
        // 5 s as told; backoff attempt 1 = 2 s; 3 s as told; 0 raised to the
        // 1 s backoff minimum (the attempt counter restarted with the poll);
        // the 2 s default poll interval.
        assert_eq!(r.waits, vec![S(5), S(2), S(3), S(1), S(2)]);
        assert_eq!(r.elapsed, S(13) + MS(300));
    }

    #[test]
    fn retry_after_beyond_the_deadline_gives_up_at_once() {
        let r = simulate(policy(), S(60), MS(50), 0.5, |_| {
            Answer::Transient(Some(S(120)))
        });
        assert_eq!((r.requests, r.elapsed), (1, MS(50)));
        // A huge value is capped at max_retry_after, still past the deadline.
        assert_eq!(
            policy().retry(Some(S(u64::MAX)), 0, 0.5, S(600)),
            Decision::Wait(S(300))
        );
        assert_eq!(
            policy().retry(Some(S(u64::MAX)), 0, 0.5, S(299)),
            Decision::GiveUp(S(300))
        );
    }

    #[test]
    fn retry_after_zero_on_a_poll_is_honoured_until_the_deadline() {
        let r = simulate(policy(), S(30), MS(20), 0.5, |n| {
            if n == 0 {
                Answer::Assigning(Some(S(3)))
            } else {
                Answer::Assigning(Some(Duration::ZERO))
            }
        });
        assert!(!r.assigned && r.elapsed <= S(30));
        // No wait beyond what the server asks: 3 s, then back-to-back polls.
        assert_eq!(r.waits[0], S(3));
        assert!(r.waits[1..].iter().all(|w| w.is_zero()), "{:?}", r.waits);
    }

    #[test]
    fn http_date_retry_after_with_a_fake_wall_clock() {
        // The server's clock says 08:49:37; it asks for 08:49:47.
        let now = at(784_111_777);
        let ra = parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now);
        assert_eq!(ra, Some(S(10)));
        assert_eq!(policy().retry(ra, 7, 1.0, S(60)), Decision::Wait(S(10)));
        // A date in the past: retry at the backoff minimum, not at once.
        let past = parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now);
        assert_eq!(past, Some(Duration::ZERO));
        assert_eq!(policy().retry(past, 0, 1.0, S(60)), Decision::Wait(S(1)));
        // Garbage: ignored, backoff applies.
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn status_classification() {
        for s in [200, 202] {
            assert_eq!(classify(s, false, true), Action::Proceed);
        }
        for s in [429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(s, false, true), Action::Retry, "{s} on the PUT");
            assert_eq!(classify(s, true, false), Action::Retry, "{s} on a poll");
        }
        for s in [400, 401, 403, 404, 405, 409, 412, 415, 302, 204] {
            assert_eq!(classify(s, false, true), Action::Fail, "{s} on the PUT");
        }
        // PROTOCOL.md 4.2: a 401 while polling with a SAS re-registers (once,
        // counted by the client); with X.509 it is final.
        assert_eq!(classify(401, true, true), Action::Restart);
        assert_eq!(classify(401, true, false), Action::Fail);
        // An operation that is no longer known restarts from the PUT.
        assert_eq!(classify(404, true, false), Action::Restart);
        for s in [400, 403, 409, 415] {
            assert_eq!(classify(s, true, true), Action::Fail, "{s} on a poll");
        }
    }
}
