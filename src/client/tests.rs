//! The state machine against a scripted server and a fake clock: no network, no sleeping.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::exchange::{Clock, Exchange};
use super::*;
use crate::config::ConfigBuilder;
use crate::transport::{CancelToken, Request, Response, Stats};

/// What the fake server saw and when.
#[derive(Default)]
struct Log {
    requests: Vec<(String, Duration)>,
}

struct FakeNet {
    script: VecDeque<Result<Response>>,
    /// Answer given once the script is exhausted.
    forever: Option<fn() -> Result<Response>>,
    log: Arc<Mutex<Log>>,
    clock: FakeClock,
}

impl Exchange for FakeNet {
    fn send(&mut self, req: &Request<'_>, _until: Instant) -> Result<Response> {
        let at = self.clock.elapsed();
        self.log.lock().unwrap().requests.push((
            format!("{} {}", req.method, req.path.split('?').next().unwrap()),
            at,
        ));
        match self.script.pop_front() {
            Some(r) => r,
            None => match self.forever {
                Some(f) => f(),
                None => panic!(
                    "the script ran out at request {}",
                    self.log.lock().unwrap().requests.len()
                ),
            },
        }
    }
    fn close(&mut self) {}
    fn stats(&self) -> Stats {
        Stats::default()
    }
}

#[derive(Clone)]
struct FakeClock {
    start: Instant,
    offset: Arc<Mutex<Duration>>,
}

impl FakeClock {
    fn new() -> FakeClock {
        FakeClock {
            start: Instant::now(),
            offset: Arc::default(),
        }
    }
    fn elapsed(&self) -> Duration {
        *self.offset.lock().unwrap()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }
    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + self.elapsed()
    }
    fn wait(&self, d: Duration, cancel: &Arc<CancelToken>) -> bool {
        *self.offset.lock().unwrap() += d;
        cancel.is_cancelled()
    }
}

fn resp(status: u16, retry_after: Option<&str>, body: &str) -> Result<Response> {
    Ok(Response {
        status,
        retry_after: retry_after.map(str::to_owned),
        content_type: Some("application/json; charset=utf-8".into()),
        request_id: Some("track-1".into()),
        error_code: None,
        body: body.as_bytes().to_vec(),
    })
}

const ASSIGNING: &str = r#"{"operationId":"op-1","status":"assigning"}"#;
const ASSIGNED: &str = r#"{"operationId":"op-1","status":"assigned","registrationState":{"registrationId":"dev","assignedHub":"hub.azure-devices.net","deviceId":"dev","status":"assigned"}}"#;
const REGISTRATION: &str = r#"{"registrationId":"dev","assignedHub":"hub.azure-devices.net","deviceId":"dev","status":"assigned"}"#;

fn assigning0() -> Result<Response> {
    resp(202, Some("0"), ASSIGNING)
}
fn server_error() -> Result<Response> {
    resp(500, None, r#"{"errorCode":500000,"message":"boom"}"#)
}

struct Harness {
    client: Client,
    log: Arc<Mutex<Log>>,
    clock: FakeClock,
}

fn harness(
    tune: impl FnOnce(&mut ConfigBuilder),
    script: Vec<Result<Response>>,
    forever: Option<fn() -> Result<Response>>,
) -> Harness {
    let mut b = ConfigBuilder::new("0ne00000001").unwrap();
    b.registration_id("dev").unwrap();
    b.symmetric_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .unwrap();
    b.deadline(Duration::from_secs(60)).unwrap();
    b.backoff(Duration::from_millis(100), Duration::from_secs(2))
        .unwrap();
    tune(&mut b);
    let config = Arc::new(b.build().unwrap());
    let clock = FakeClock::new();
    let log = Arc::new(Mutex::new(Log::default()));
    let net = FakeNet {
        script: script.into(),
        forever,
        log: log.clone(),
        clock: clock.clone(),
    };
    let client = Client::with_parts(
        config,
        Box::new(net),
        Box::new(clock.clone()),
        Arc::new(CancelToken::default()),
    );
    Harness { client, log, clock }
}

impl Harness {
    fn requests(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }
    fn times(&self) -> Vec<Duration> {
        self.log
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|(_, t)| *t)
            .collect()
    }
}

const PUT: &str = "PUT /0ne00000001/registrations/dev/register";
const GET: &str = "GET /0ne00000001/registrations/dev/operations/op-1";
const POST: &str = "POST /0ne00000001/registrations/dev";

#[test]
fn put_then_poll_with_retry_after_zero_waits_nothing() {
    let mut h = harness(|_| {}, vec![assigning0(), resp(200, None, ASSIGNED)], None);
    let r = h.client.register().unwrap();
    assert_eq!(r.device_id.as_deref(), Some("dev"));
    assert_eq!(h.requests(), [PUT, GET]);
    assert_eq!(h.clock.elapsed(), Duration::ZERO);
}

#[test]
fn throttling_honours_retry_after_seconds() {
    let mut h = harness(
        |_| {},
        vec![
            resp(429, Some("3"), "{}"),
            assigning0(),
            resp(200, None, ASSIGNED),
        ],
        None,
    );
    h.client.register().unwrap();
    assert_eq!(h.requests(), [PUT, PUT, GET]);
    assert_eq!(h.times()[1], Duration::from_secs(3));
}

#[test]
fn endless_retry_after_zero_is_paced_to_five_polls_per_ten_seconds() {
    let mut h = harness(|_| {}, vec![], Some(assigning0));
    let e = h.client.register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::DeadlineExceeded);
    let polls: Vec<Duration> = h
        .log
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|(r, _)| r.starts_with("GET"))
        .map(|(_, t)| *t)
        .collect();
    // The first five follow Retry-After: 0 at once (no added latency) ...
    assert!(polls[..5].iter().all(|t| t.is_zero()), "{polls:?}");
    // ... and no 10 s window ever holds more than five.
    for w in polls.windows(6) {
        assert!(w[5] - w[0] >= Duration::from_secs(10), "{polls:?}");
    }
    // 60 s deadline: 5 at t=0, then 5 per 10 s.
    assert!(polls.len() <= 30, "{} polls", polls.len());
    assert!(polls.len() >= 25, "{} polls", polls.len());
}

#[test]
fn the_poll_rate_is_configurable() {
    let mut h = harness(
        |b| {
            b.poll_rate(2, Duration::from_secs(1)).unwrap();
        },
        vec![
            assigning0(),
            assigning0(),
            assigning0(),
            resp(200, None, ASSIGNED),
        ],
        None,
    );
    h.client.register().unwrap();
    assert_eq!(
        h.times(),
        [
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            Duration::from_secs(1)
        ]
    );
    assert!(
        ConfigBuilder::new("0ne00000001")
            .unwrap()
            .poll_rate(0, Duration::from_secs(1))
            .is_err()
    );
}

#[test]
fn a_401_while_polling_earns_one_fresh_token_re_registration() {
    let unauthorized = || resp(401, None, r#"{"errorCode":401002,"message":"no"}"#);
    let mut h = harness(
        |_| {},
        vec![assigning0(), unauthorized(), assigning0(), unauthorized()],
        None,
    );
    let e = h.client.register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(e.dps_error_code, Some(401002));
    assert_eq!(h.requests(), [PUT, GET, PUT, GET]);
}

#[test]
fn an_unknown_operation_restarts_from_the_put_a_bounded_number_of_times() {
    let gone = || resp(404, None, r#"{"errorCode":404201,"message":"gone"}"#);
    let mut script = Vec::new();
    for _ in 0..4 {
        script.push(assigning0());
        script.push(gone());
    }
    let mut h = harness(|_| {}, script, None);
    assert_eq!(h.client.register().unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        h.requests().iter().filter(|r| r.starts_with("PUT")).count(),
        4
    );
}

#[test]
fn server_errors_are_retried_until_the_deadline_with_backoff() {
    let mut h = harness(
        |b| {
            b.deadline(Duration::from_secs(10)).unwrap();
        },
        vec![],
        Some(server_error),
    );
    let e = h.client.register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::DeadlineExceeded);
    assert_eq!(e.cause, Some(ErrorKind::ServiceError));
    assert_eq!(e.http_status, Some(500));
    assert!(h.clock.elapsed() <= Duration::from_secs(10));
    let t = h.times();
    for pair in t.windows(2) {
        // Equal jitter: at least half the minimum backoff between tries.
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(50),
            "backoff minimum: {t:?}"
        );
    }
}

#[test]
fn retry_after_past_the_deadline_gives_up_at_once() {
    let mut h = harness(|_| {}, vec![resp(429, Some("600"), "{}")], None);
    let e = h.client.register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::DeadlineExceeded);
    assert_eq!(e.cause, Some(ErrorKind::Throttled));
    assert_eq!(h.clock.elapsed(), Duration::ZERO);
}

#[test]
fn a_malformed_poll_answer_is_retried_but_a_malformed_put_answer_fails() {
    let garbage = || resp(200, None, "{not json");
    let html = || {
        let mut r = resp(200, None, "<html>")?;
        r.content_type = Some("text/html".into());
        Ok(r)
    };
    let mut h = harness(
        |_| {},
        vec![assigning0(), garbage(), html(), resp(200, None, ASSIGNED)],
        None,
    );
    h.client.register().unwrap();
    assert_eq!(h.requests(), [PUT, GET, GET, GET]);

    let mut h = harness(|_| {}, vec![garbage()], None);
    let e = h.client.register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::MalformedResponse);
    assert_eq!(e.http_status, Some(200));
    assert_eq!(e.tracking_id.as_deref(), Some("track-1"));
}

#[test]
fn a_cancel_before_the_start_cancels_the_next_operation_once() {
    let mut h = harness(|_| {}, vec![assigning0(), resp(200, None, ASSIGNED)], None);
    h.client.cancel_token().cancel();
    assert_eq!(h.client.register().unwrap_err().kind, ErrorKind::Cancelled);
    assert!(h.requests().is_empty(), "nothing was sent");
    // The cancel was consumed: the next registration runs.
    h.client.register().unwrap();
    assert_eq!(h.requests(), [PUT, GET]);
}

#[test]
fn lookup_runs_on_the_same_machinery() {
    let mut h = harness(
        |_| {},
        vec![
            resp(503, Some("2"), "{}"),
            resp(200, None, "{oops"),
            resp(200, None, REGISTRATION),
        ],
        None,
    );
    let r = h.client.lookup().unwrap();
    assert_eq!(r.assigned_hub.as_deref(), Some("hub.azure-devices.net"));
    assert_eq!(h.requests(), [POST, POST, POST]);
    assert_eq!(h.times()[1], Duration::from_secs(2));

    let mut h = harness(
        |_| {},
        vec![resp(404, None, r#"{"errorCode":404202}"#)],
        None,
    );
    assert_eq!(h.client.lookup().unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        h.requests(),
        [POST],
        "a 404 on the lookup is an answer, not a restart"
    );
}

#[test]
fn the_step_api_never_sleeps_and_reports_waits() {
    let mut h = harness(
        |_| {},
        vec![resp(202, Some("2"), ASSIGNING), resp(200, None, ASSIGNED)],
        None,
    );
    assert_eq!(
        h.client.step().unwrap(),
        Step::Pending(Duration::from_secs(2))
    );
    // Calling early just reports the rest of the wait.
    assert_eq!(
        h.client.step().unwrap(),
        Step::Pending(Duration::from_secs(2))
    );
    h.clock
        .wait(Duration::from_secs(2), &Arc::new(CancelToken::default()));
    assert!(matches!(h.client.step().unwrap(), Step::Done(_)));
    assert_eq!(h.requests(), [PUT, GET]);
}
