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
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + se)
}

// Howard Hinnant's days_from_civil, for years >= 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
/// the server's `Retry-After` if any, else `interval`; raised to `floor`
/// (PROTOCOL.md 4.2: at least 1 s by default, so a server answering
/// `Retry-After: 0` cannot make the client spin) and capped at `cap`.
pub fn poll_delay(
    retry_after: Option<Duration>,
    interval: Duration,
    floor: Duration,
    cap: Duration,
) -> Duration {
    retry_after.unwrap_or(interval).min(cap).max(floor.min(cap))
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

/// Whether a wait of `wait` starting `elapsed` into a registration still ends
/// before `deadline`; when it does not, the client gives up at once instead
/// of sleeping into the deadline.
pub fn fits(elapsed: Duration, wait: Duration, deadline: Duration) -> bool {
    elapsed.saturating_add(wait) < deadline
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
}
