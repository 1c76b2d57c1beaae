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
    /// Each request's `Authorization` and body.
    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    details: Vec<(Option<String>, String)>,
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
        self.log.lock().unwrap().details.push((
            req.authorization.map(str::to_owned),
            String::from_utf8_lossy(req.body.unwrap_or_default()).into_owned(),
        ));
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

/// An attempt cut short by the deadline (its time-out is the deadline's, not the request
/// timeout's) is not reported as the cause: the last failure that completed is (seen on a
/// loaded machine: a refused connection reported as "the request timed out").
#[test]
fn an_attempt_cut_by_the_deadline_reports_the_failure_before_it() {
    let tune = |b: &mut ConfigBuilder| {
        b.deadline(Duration::from_secs(10)).unwrap();
    };
    let refused = || Err(Error::new(ErrorKind::Connect, "connection refused").retriable(true));
    let cut = Err(Error::new(ErrorKind::Timeout, "the request timed out").retriable(true));
    let mut h = harness(tune, vec![refused(), cut], None);
    let e = h.client.register().unwrap_err();
    assert_eq!(e.kind, ErrorKind::DeadlineExceeded, "{e}");
    assert_eq!(e.cause, Some(ErrorKind::Connect), "{e}");
    assert!(
        e.message.ends_with("last failure: connection refused"),
        "{e}"
    );
    // A first attempt that times out has nothing before it: the time-out is the cause.
    let mut h = harness(
        tune,
        vec![Err(
            Error::new(ErrorKind::Timeout, "the request timed out").retriable(true)
        )],
        Some(|| Err(Error::new(ErrorKind::Timeout, "the request timed out").retriable(true))),
    );
    let e = h.client.register().unwrap_err();
    assert_eq!(e.cause, Some(ErrorKind::Timeout), "{e}");
}

/// Issue 14 item 8: a capped `Retry-After` is reported as what DPS asked and what it was
/// capped to, not as if DPS had asked for the capped value.
#[test]
fn a_capped_retry_after_is_reported_as_asked_and_capped() {
    let tune = |b: &mut ConfigBuilder| {
        b.max_retry_after(Duration::from_secs(120));
    };
    let mut h = harness(tune, vec![resp(429, Some("600"), "{}")], None);
    let e = h.client.register().unwrap_err();
    assert!(
        e.message
            .contains("the next retry (DPS asked to wait 600 s, capped at 120000 ms by the maximum Retry-After)"),
        "{e}"
    );
    let mut h = harness(tune, vec![resp(202, Some("900"), ASSIGNING)], None);
    let e = h.client.register().unwrap_err();
    assert!(
        e.message
            .contains("the next poll (DPS asked to wait 900 s, capped at 120000 ms"),
        "{e}"
    );
    let mut h = harness(|_| {}, vec![resp(429, Some("90"), "{}")], None);
    let e = h.client.register().unwrap_err();
    assert!(
        e.message
            .contains("the next retry (in 90000 ms, as DPS asked)"),
        "{e}"
    );
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

/// The TPM challenge decisions (PROTOCOL.md 5.4) with a fake TPM whose identity key is the last
/// blob it activated, so each signature shows which key made it.
#[cfg(feature = "tpm")]
mod tpm {
    use super::*;
    use crate::credential::TpmCredential;
    use crate::credential::tpm::TpmDevice;
    use crate::protocol::sas;
    use base64::Engine as _;

    #[derive(Default)]
    struct FakeTpm {
        activated: Mutex<Vec<Vec<u8>>>,
    }

    const EK: &[u8] = b"\x00\x04fake-ek";
    const SRK: &[u8] = b"\x00\x05fake-srk";

    impl TpmDevice for FakeTpm {
        fn endorsement_key(&self) -> Vec<u8> {
            EK.to_vec()
        }
        fn storage_root_key(&self) -> Vec<u8> {
            SRK.to_vec()
        }
        fn registration_id(&self) -> String {
            crate::tpm::registration_id_from_ek(EK)
        }
        fn activate_until(
            &self,
            blob: &[u8],
            _deadline: Instant,
            _cancel: Option<&CancelToken>,
        ) -> Result<()> {
            if blob == b"tampered" {
                return Err(Error::new(
                    ErrorKind::TpmActivationFailed,
                    "TPM2_ActivateCredential failed: TPM_RC 0x0000098f",
                ));
            }
            self.activated.lock().unwrap().push(blob.to_vec());
            Ok(())
        }
        fn hmac_until(
            &self,
            data: &[u8],
            _deadline: Instant,
            _cancel: Option<&CancelToken>,
        ) -> Result<[u8; 32]> {
            match self.activated.lock().unwrap().last() {
                Some(key) => Ok(sas::hmac_sha256(key, data)),
                None => Err(Error::new(ErrorKind::Tpm, "no identity key")),
            }
        }
        fn describe(&self) -> String {
            "in the fake TPM".into()
        }
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn challenge(key: &[u8]) -> Result<Response> {
        resp(
            401,
            None,
            &format!(
                r#"{{"message":"TPM challenge","authenticationKey":"{}","keyName":"registration"}}"#,
                b64(key)
            ),
        )
    }

    fn assigned_with_hub_key(key: &[u8]) -> Result<Response> {
        resp(
            200,
            None,
            &format!(
                r#"{{"operationId":"op-1","status":"assigned","registrationState":{{"registrationId":"dev","assignedHub":"hub.azure-devices.net","deviceId":"dev","status":"assigned","tpm":{{"authenticationKey":"{}"}}}}}}"#,
                b64(key)
            ),
        )
    }

    fn tpm_harness(script: Vec<Result<Response>>) -> (Harness, Arc<FakeTpm>) {
        let fake = Arc::new(FakeTpm::default());
        let device: Arc<dyn TpmDevice> = fake.clone();
        let h = harness(
            |b| {
                b.tpm_credential(TpmCredential::with_device(device));
            },
            script,
            None,
        );
        (h, fake)
    }

    fn details(h: &Harness) -> Vec<(Option<String>, String)> {
        h.log.lock().unwrap().details.clone()
    }

    /// The SAS the device must send after activating `key`, as the fake clock makes it.
    fn expected_sas(key: &[u8], h: &Harness) -> String {
        let exp = h
            .client
            .clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let sr = sas::resource_uri("0ne00000001", "dev");
        let mac = sas::hmac_sha256(key, sas::string_to_sign(&sr, exp).as_bytes());
        sas::assemble(&sr, &mac, exp, Some("registration")).to_string()
    }

    #[test]
    fn challenge_activates_resends_signed_put_polls_and_imports_the_hub_key() {
        let (mut h, fake) = tpm_harness(vec![
            challenge(b"dps-identity-key"),
            assigning0(),
            assigned_with_hub_key(b"iot-hub-key"),
        ]);
        let r = h.client.register().unwrap();
        assert_eq!(h.requests(), [PUT, PUT, GET]);
        let d = details(&h);
        let tpm_block = format!(
            r#""tpm":{{"endorsementKey":"{}","storageRootKey":"{}"}}"#,
            b64(EK),
            b64(SRK)
        );
        assert_eq!(d[0].0, None, "the first PUT carries no Authorization");
        assert_eq!(d[0].1, format!(r#"{{"registrationId":"dev",{tpm_block}}}"#));
        assert_eq!(d[1].1, d[0].1);
        let sas = expected_sas(b"dps-identity-key", &h);
        assert_eq!(d[1].0.as_deref(), Some(sas.as_str()));
        assert_eq!(d[2].0.as_deref(), Some(sas.as_str()));
        assert_eq!(
            *fake.activated.lock().unwrap(),
            [b"dps-identity-key".to_vec(), b"iot-hub-key".to_vec()]
        );
        // The IoT Hub token is signed with the imported hub key.
        let token = iot_hub_sas_token(&r, &h.client.config().credential, 1_800_000_000).unwrap();
        let sr = sas::iot_hub_resource_uri("hub.azure-devices.net", "dev");
        let mac = sas::hmac_sha256(
            b"iot-hub-key",
            sas::string_to_sign(&sr, 1_800_000_000).as_bytes(),
        );
        assert_eq!(
            token.as_str(),
            sas::assemble(&sr, &mac, 1_800_000_000, None).as_str()
        );
        let cs = connection_string(&r, &h.client.config().credential).unwrap_err();
        assert_eq!(cs.kind, ErrorKind::Unsupported);
    }

    #[test]
    fn a_second_challenge_fails_as_unauthorized() {
        let (mut h, fake) = tpm_harness(vec![challenge(b"k1"), challenge(b"k2")]);
        let e = h.client.register().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(h.requests(), [PUT, PUT]);
        assert_eq!(fake.activated.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_401_without_authentication_key_is_a_refusal() {
        let (mut h, fake) = tpm_harness(vec![resp(
            401,
            None,
            r#"{"errorCode":401002,"message":"unknown EK"}"#,
        )]);
        let e = h.client.register().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(e.dps_error_code, Some(401002));
        assert!(fake.activated.lock().unwrap().is_empty());
    }

    #[test]
    fn malformed_challenges_are_malformed_responses() {
        for body in [
            r#"{"authenticationKey":5,"keyName":"registration"}"#,
            r#"{"authenticationKey":"@@not base64@@","keyName":"registration"}"#,
            r#"{"authenticationKey":"","keyName":"registration"}"#,
            r#"{"authenticationKey":"a2V5"}"#,
            r#"{"authenticationKey":"a2V5","keyName":"a&b"}"#,
        ] {
            let (mut h, fake) = tpm_harness(vec![resp(401, None, body)]);
            let e = h.client.register().unwrap_err();
            assert_eq!(e.kind, ErrorKind::MalformedResponse, "{body}");
            assert_eq!(h.requests(), [PUT], "{body}");
            assert!(fake.activated.lock().unwrap().is_empty(), "{body}");
        }
    }

    #[test]
    fn a_blob_the_tpm_refuses_fails_with_activation_failed() {
        let (mut h, _) = tpm_harness(vec![challenge(b"tampered")]);
        let e = h.client.register().unwrap_err();
        assert_eq!(e.kind, ErrorKind::TpmActivationFailed);
        assert!(e.message.contains("TPM_RC 0x0000098f"), "{}", e.message);
        assert_eq!(h.requests(), [PUT]);
    }

    #[test]
    fn assigned_without_hub_key_is_malformed() {
        let (mut h, _) = tpm_harness(vec![challenge(b"k1"), resp(200, None, ASSIGNED)]);
        let e = h.client.register().unwrap_err();
        assert_eq!(e.kind, ErrorKind::MalformedResponse);
        assert_eq!(h.requests(), [PUT, PUT]);
    }

    #[test]
    fn a_poll_401_is_not_a_second_challenge() {
        let (mut h, _) = tpm_harness(vec![
            challenge(b"k1"),
            assigning0(),
            resp(401, None, r#"{"errorCode":401002,"message":"bad sas"}"#),
        ]);
        let e = h.client.register().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(h.requests(), [PUT, PUT, GET]);
    }

    #[test]
    fn each_registration_answers_its_own_challenge() {
        let (mut h, fake) = tpm_harness(vec![
            challenge(b"k1"),
            assigned_with_hub_key(b"hub1"),
            challenge(b"k2"),
            assigned_with_hub_key(b"hub2"),
        ]);
        h.client.register().unwrap();
        h.client.register().unwrap();
        let d = details(&h);
        assert_eq!(
            d[2].0, None,
            "a new registration starts without Authorization"
        );
        assert_eq!(d[3].0.as_deref(), Some(expected_sas(b"k2", &h).as_str()));
        assert_eq!(fake.activated.lock().unwrap().len(), 4);
    }

    #[test]
    fn the_registration_id_defaults_to_the_ek_derived_one() {
        let mut b = ConfigBuilder::new("0ne00000001").unwrap();
        b.tpm_credential(TpmCredential::with_device(Arc::new(FakeTpm::default())));
        let c = b.build().unwrap();
        assert_eq!(c.registration_id(), crate::tpm::registration_id_from_ek(EK));
        assert_eq!(c.registration_id().len(), 52);
        assert!(!format!("{c:?}").contains("fake-ek"));
    }
}
