//! The DPS device runtime: routing, validation, authentication, enrollments, registration state,
//! operations and scripted faults. I/O-free: takes a parsed request, returns what to send.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::{CertificateDer, UnixTime};
use serde_json::Value;

use crate::config::{
    Allocation, Attestation, Config, EnrollmentKind, FaultKind, FaultOn, Reprovision, RetryAfter,
    TerminalResult, valid_registration_id,
};
use crate::http::{Request, Response};
use crate::sas;
use crate::util::{http_date, now_timestamp, percent_decode, sha256_hex_upper, uuid_v4};

/// How the answer is delivered on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Normal,
    /// Close without any answer.
    Close,
    /// Send half of the body, then drop the connection.
    Truncate,
    Trickle {
        chunk_bytes: usize,
        interval_ms: u64,
    },
    /// Never answer; hold the connection until the client closes.
    BlackHole,
}

/// The handler's decision for one request.
#[derive(Debug)]
pub struct Handled {
    /// "register", "operation", "lookup" or "other".
    pub route: &'static str,
    pub response: Response,
    pub delivery: Delivery,
    pub delay: Option<Duration>,
    /// Description of the authentication (no secrets).
    pub auth: String,
    /// Free text for the log (fault applied, reason of a refusal).
    pub note: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Register,
    Operation,
    Lookup,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Register => "register",
            Route::Operation => "operation",
            Route::Lookup => "lookup",
        }
    }
}

#[derive(Clone, Debug)]
struct Identity {
    enrollment: usize,
}

#[derive(Clone, Debug)]
enum Outcome {
    Assigned {
        hub: Option<String>,
        device_id: String,
        substatus: &'static str,
    },
    Failed {
        error_code: u32,
        message: String,
    },
    Disabled,
}

#[derive(Clone, Debug)]
struct Record {
    registration_id: String,
    created: String,
    last_updated: String,
    etag: String,
    status: &'static str,
    hub: Option<String>,
    device_id: Option<String>,
    substatus: Option<&'static str>,
    error_code: Option<u32>,
    error_message: Option<String>,
    payload: Option<Value>,
    /// "x509" or "symmetricKey"
    att_key: &'static str,
    group_id: Option<String>,
}

#[derive(Default)]
struct Device {
    fault_cursor: usize,
    registrations: u64,
    current_hub: Option<String>,
    first_hub: Option<String>,
    record: Option<Record>,
    polls: VecDeque<Instant>,
}

struct Operation {
    regid_lower: String,
    polls_left: u32,
    endless: bool,
    retry_after: u32,
    outcome: Outcome,
    payload: Option<Value>,
    /// Base64 DER chain issued for a CSR (leaf first).
    issued_chain: Option<Vec<String>>,
    /// Set once the terminal answer was given (later polls repeat it).
    done: Option<String>,
}

#[derive(Default)]
struct State {
    devices: HashMap<String, Device>,
    operations: HashMap<String, Operation>,
    /// Insertion order of `operations`, to forget the oldest beyond `MAX_OPERATIONS`.
    op_order: VecDeque<String>,
    op_counter: u64,
}

/// Operations remembered (so long benchmarks do not grow memory without bound).
const MAX_OPERATIONS: usize = 100_000;

pub struct Service {
    config: RwLock<Arc<Config>>,
    state: Mutex<State>,
    /// Signs device CSRs (api-version >= 2025-07-01-preview).
    issuer: Option<crate::pki::TestCa>,
}

/// A JSON object that keeps its member order: the real service answers in a fixed order
/// (operationId, status, registrationState; x509/symmetricKey first inside it), and some
/// hand-written device parsers depend on it. (serde_json's `Map` sorts keys unless the
/// workspace-wide `preserve_order` feature is enabled, which we do not want to impose.)
#[derive(Clone, Debug, Default)]
struct Obj(Vec<(String, String)>);

impl Obj {
    fn with(mut self, k: &str, v: impl serde::Serialize) -> Obj {
        self.push(k, v);
        self
    }
    fn push(&mut self, k: &str, v: impl serde::Serialize) {
        let v = serde_json::to_string(&v).unwrap_or_else(|_| "null".into());
        self.0.push((k.to_string(), v));
    }
    fn push_obj(&mut self, k: &str, o: &Obj) {
        self.0.push((k.to_string(), o.render()));
    }
    fn render(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(k).unwrap_or_default());
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        out
    }
}

fn err_response(status: u16, code: u32, message: &str) -> Response {
    let tracking = uuid_v4();
    let body = Obj::default()
        .with("errorCode", code)
        .with("trackingId", &tracking)
        .with("message", message)
        .with("timestampUtc", now_timestamp())
        .render();
    Response {
        status,
        headers: vec![
            (
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("x-ms-request-id".into(), tracking),
            ("x-ms-error-code".into(), code.to_string()),
        ],
        body: body.into_bytes(),
    }
}

fn json_response(status: u16, body: String) -> Response {
    Response {
        status,
        headers: vec![
            (
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("x-ms-request-id".into(), uuid_v4()),
        ],
        body: body.into_bytes(),
    }
}

fn new_etag() -> String {
    use base64::Engine;
    let u = uuid_v4();
    let quoted = format!("\"{}-0000-0100-0000-{}\"", &u[..8], &u[24..]);
    base64::engine::general_purpose::STANDARD.encode(quoted)
}

fn version_at_least(v: &str, min: &str) -> bool {
    v.get(..10).unwrap_or(v) >= min
}

impl Service {
    pub fn new(config: Config, issuer: Option<crate::pki::TestCa>) -> Service {
        Service {
            config: RwLock::new(Arc::new(config)),
            state: Mutex::new(State::default()),
            issuer,
        }
    }

    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces enrollments/hubs/settings; device records are kept, fault scripts restart.
    pub fn reconfigure(&self, config: Config) {
        match self.config.write() {
            Ok(mut c) => *c = Arc::new(config),
            Err(p) => *p.into_inner() = Arc::new(config),
        }
        let mut st = self.lock();
        for d in st.devices.values_mut() {
            d.fault_cursor = 0;
            d.polls.clear();
        }
    }

    /// The device's current `DeviceRegistrationResult` (what a status lookup returns).
    pub fn registration_state(&self, registration_id: &str) -> Option<Value> {
        let st = self.lock();
        let rec = st
            .devices
            .get(&registration_id.to_ascii_lowercase())?
            .record
            .as_ref()?;
        serde_json::from_str(&record_json(rec, None).render()).ok()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Handles one request. `peer_chain` is the TLS client certificate chain (may be empty).
    pub fn handle(&self, req: &Request, peer_chain: &[CertificateDer<'static>]) -> Handled {
        let mut h = Handled {
            route: "other",
            response: err_response(404, 404003, "Not found."),
            delivery: Delivery::Normal,
            delay: None,
            auth: "none".into(),
            note: String::new(),
        };
        let cfg = self.config();
        let path = req.path();
        let raw: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let route = match raw.as_slice() {
            [_, "registrations", _, "register"] => Route::Register,
            [_, "registrations", _, "operations", _] => Route::Operation,
            [_, "registrations", _] => Route::Lookup,
            _ => {
                h.note = "unknown path".into();
                return h;
            }
        };
        h.route = route.name();
        let expected_method = match route {
            Route::Register => "PUT",
            Route::Operation => "GET",
            Route::Lookup => "POST",
        };
        if req.method != expected_method {
            h.response = err_response(405, 405001, "Method not allowed.");
            h.response.set_header("Allow", expected_method);
            return h;
        }
        let seg = |i: usize| percent_decode(raw[i]);
        let (Some(scope), Some(regid)) = (seg(0), seg(2)) else {
            h.response = err_response(400, 400004, "Malformed path.");
            return h;
        };
        let opid = if route == Route::Operation {
            seg(4)
        } else {
            None
        };
        // api-version
        let mut api_version = None;
        for kv in req.query().split('&') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            if k.eq_ignore_ascii_case("api-version") {
                api_version = percent_decode(v);
            }
        }
        let Some(api_version) = api_version.filter(|v| !v.is_empty()) else {
            h.response = err_response(400, 400001, "The api-version query parameter is required.");
            return h;
        };
        if !cfg.api_versions.iter().any(|v| v == &api_version) {
            h.response = err_response(
                400,
                400001,
                &format!(
                    "The api-version '{api_version}' is not supported. Supported versions: {}.",
                    cfg.api_versions.join(", ")
                ),
            );
            return h;
        }
        if !scope.eq_ignore_ascii_case(&cfg.id_scope) {
            h.response = err_response(404, 404001, "ID scope not found.");
            return h;
        }
        if !valid_registration_id(&regid) {
            h.response = err_response(400, 400004, "Invalid registration id.");
            return h;
        }
        // body (PUT/POST)
        let mut device_payload = None;
        let mut csr = None;
        if route != Route::Operation {
            let ct = req
                .header("content-type")
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let media = ct.split(';').next().unwrap_or("").trim();
            if media != "application/json" {
                h.response = err_response(
                    415,
                    415001,
                    "Unsupported media type: the body must be JSON (Content-Type: application/json).",
                );
                h.note = format!("content-type {ct:?}");
                return h;
            }
            match check_body(&req.body, &regid, &api_version, route) {
                Ok((p, c)) => {
                    device_payload = p;
                    csr = c;
                }
                Err(msg) => {
                    h.response = err_response(400, 400004, &msg);
                    return h;
                }
            }
        }
        // authentication
        let ident = match authenticate(&cfg, req, peer_chain, &scope, &regid) {
            Ok((id, desc)) => {
                h.auth = desc;
                id
            }
            Err(desc) => {
                h.auth = desc;
                let msg = if peer_chain.is_empty() {
                    "Unauthorized"
                } else {
                    "Invalid certificate."
                };
                h.response = err_response(401, 401002, msg);
                return h;
            }
        };
        let enr = &cfg.enrollments[ident.enrollment];
        let lower = regid.to_ascii_lowercase();
        let mut st = self.lock();
        let dev = st.devices.entry(lower.clone()).or_default();
        // strict polling
        if route == Route::Operation && cfg.strict_polling {
            let now = Instant::now();
            let window = Duration::from_secs(10);
            while dev
                .polls
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                dev.polls.pop_front();
            }
            if dev.polls.len() >= 5 {
                let oldest = dev.polls.front().copied().unwrap_or(now);
                let wait = window.saturating_sub(now.duration_since(oldest));
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                h.response = err_response(
                    429,
                    429001,
                    "Too many requests: device polling limit is 5 per 10 seconds.",
                );
                h.response
                    .set_header("Retry-After", secs.max(1).to_string());
                h.note = "strict polling".into();
                return h;
            }
            dev.polls.push_back(now);
        }
        // scripted faults
        let mut fault = None;
        if let Some(step) = enr.faults.get(dev.fault_cursor) {
            let applies = match step.on {
                FaultOn::Any => true,
                FaultOn::Register => route == Route::Register,
                FaultOn::Poll => route == Route::Operation,
                FaultOn::Lookup => route == Route::Lookup,
            };
            if applies {
                dev.fault_cursor += 1;
                h.note = format!("fault #{}: {:?}", dev.fault_cursor, step.kind);
                fault = Some(step.kind.clone());
            }
        }
        let mut terminal_override = None;
        let mut endless = false;
        let mut post: Option<FaultKind> = None;
        match fault {
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
                return h;
            }
            Some(FaultKind::Close) => {
                h.delivery = Delivery::Close;
                return h;
            }
            Some(FaultKind::BlackHole) => {
                h.delivery = Delivery::BlackHole;
                return h;
            }
            Some(FaultKind::Delay { ms }) => h.delay = Some(Duration::from_millis(ms)),
            Some(FaultKind::Result(t)) => terminal_override = Some(t),
            Some(FaultKind::EndlessAssigning) => endless = true,
            Some(other) => post = Some(other),
            None => {}
        }
        let retry_after = enr.retry_after_secs.unwrap_or(cfg.retry_after_secs);
        let mut issued_chain = None;
        if let Some(csr) = csr {
            use base64::Engine;
            let engine = base64::engine::general_purpose::STANDARD;
            let signed = match (&self.issuer, engine.decode(csr.trim())) {
                (None, _) => Err("certificate issuance is not available".to_string()),
                (_, Err(_)) => Err("csr must be base64 DER (no PEM header)".to_string()),
                (Some(ca), Ok(der)) => ca.sign_csr_der(&der, &regid),
            };
            match signed {
                Ok(chain) => {
                    issued_chain = Some(chain.iter().map(|d| engine.encode(d)).collect());
                }
                Err(m) => {
                    h.response = err_response(400, 400004, &format!("Invalid CSR: {m}"));
                    return h;
                }
            }
        }
        h.response = match route {
            Route::Register => self.register(
                &mut st,
                &cfg,
                req,
                &ident,
                &scope,
                &regid,
                device_payload,
                issued_chain,
                terminal_override,
                endless,
                retry_after,
            ),
            Route::Operation => self.poll(
                &mut st,
                &cfg,
                &ident,
                &lower,
                opid.as_deref().unwrap_or(""),
                terminal_override,
                endless,
            ),
            Route::Lookup => lookup(&st, &lower, terminal_override),
        };
        drop(st);
        if let Some(p) = post {
            apply_post_fault(&mut h, p);
        }
        h
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        st: &mut State,
        cfg: &Config,
        req: &Request,
        ident: &Identity,
        scope: &str,
        regid: &str,
        device_payload: Option<Value>,
        issued_chain: Option<Vec<String>>,
        terminal_override: Option<TerminalResult>,
        endless: bool,
        retry_after: u32,
    ) -> Response {
        let enr = &cfg.enrollments[ident.enrollment];
        let lower = regid.to_ascii_lowercase();
        let dev = st.devices.entry(lower.clone()).or_default();
        dev.registrations += 1;
        let device_id = enr.device_id.clone().unwrap_or_else(|| regid.to_string());
        let outcome = match terminal_override {
            Some(TerminalResult::Failed {
                error_code,
                message,
            }) => Outcome::Failed {
                error_code,
                message,
            },
            Some(TerminalResult::Disabled) => Outcome::Disabled,
            Some(TerminalResult::AssignedWithoutHub) => Outcome::Assigned {
                hub: None,
                device_id,
                substatus: "initialAssignment",
            },
            None if !enr.enabled => Outcome::Disabled,
            None if enr.hubs.is_empty() => Outcome::Failed {
                error_code: 400208,
                message: "No IoT hub is available for the device.".into(),
            },
            None => {
                let n = (dev.registrations - 1) as usize;
                let hubs = &enr.hubs;
                let target = match (&enr.initial_hub, n) {
                    (Some(h), 0) => h.clone(),
                    _ => match enr.allocation {
                        Allocation::Hashed => {
                            let d = ring::digest::digest(&ring::digest::SHA256, lower.as_bytes());
                            let x =
                                u64::from_be_bytes(d.as_ref()[..8].try_into().unwrap_or([0; 8]));
                            hubs[(x % hubs.len() as u64) as usize].clone()
                        }
                        Allocation::Static => hubs[0].clone(),
                        Allocation::RoundRobin => hubs[n % hubs.len()].clone(),
                    },
                };
                let (hub, substatus) = match dev.current_hub.clone() {
                    None => (target, "initialAssignment"),
                    Some(cur) if enr.reprovision == Reprovision::Never => {
                        (cur, "initialAssignment")
                    }
                    Some(cur) if cur.eq_ignore_ascii_case(&target) => (cur, "initialAssignment"),
                    Some(_)
                        if dev
                            .first_hub
                            .as_deref()
                            .is_some_and(|f| f.eq_ignore_ascii_case(&target)) =>
                    {
                        (target, "reprovisionedToInitialAssignment")
                    }
                    Some(_) => (
                        target,
                        if enr.reprovision == Reprovision::Reset {
                            "deviceDataReset"
                        } else {
                            "deviceDataMigrated"
                        },
                    ),
                };
                Outcome::Assigned {
                    hub: Some(hub),
                    device_id,
                    substatus,
                }
            }
        };
        let payload = if enr.echo_payload && device_payload.is_some() {
            device_payload
        } else {
            enr.payload.clone()
        };
        let now = now_timestamp();
        let created = dev
            .record
            .as_ref()
            .map(|r| r.created.clone())
            .unwrap_or_else(|| now.clone());
        let (att_key, group_id) = att_info(cfg, ident.enrollment);
        let prev = dev.record.take();
        dev.record = Some(Record {
            registration_id: regid.to_string(),
            created,
            last_updated: now,
            etag: new_etag(),
            status: "assigning",
            hub: prev.as_ref().and_then(|r| r.hub.clone()),
            device_id: prev.as_ref().and_then(|r| r.device_id.clone()),
            substatus: None,
            error_code: None,
            error_message: None,
            payload: None,
            att_key,
            group_id,
        });
        st.op_counter += 1;
        let op_id = format!(
            "5.{}.{}",
            crate::util::hex_lower(&crate::util::random_bytes::<8>()),
            uuid_v4()
        );
        if st.op_order.len() >= MAX_OPERATIONS
            && let Some(old) = st.op_order.pop_front()
        {
            st.operations.remove(&old);
        }
        st.op_order.push_back(op_id.clone());
        st.operations.insert(
            op_id.clone(),
            Operation {
                regid_lower: lower,
                polls_left: enr.assigning_polls.unwrap_or(cfg.assigning_polls),
                endless,
                retry_after,
                outcome,
                payload,
                issued_chain,
                done: None,
            },
        );
        let host = req
            .header("host")
            .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()) && !h.is_empty())
            .unwrap_or("global.azure-devices-provisioning.net");
        let mut r = json_response(
            202,
            Obj::default()
                .with("operationId", &op_id)
                .with("status", "assigning")
                .render(),
        );
        r.set_header("Retry-After", retry_after.to_string());
        r.set_header(
            "Location",
            format!(
                "https://{host}/{}/registrations/{}/register",
                pct(scope),
                pct(regid)
            ),
        );
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn poll(
        &self,
        st: &mut State,
        cfg: &Config,
        ident: &Identity,
        lower: &str,
        opid: &str,
        terminal_override: Option<TerminalResult>,
        endless: bool,
    ) -> Response {
        let State {
            devices,
            operations,
            ..
        } = st;
        let Some(op) = operations.get_mut(opid).filter(|o| o.regid_lower == lower) else {
            return err_response(404, 404002, "Operation not found.");
        };
        if let Some(done) = &op.done {
            return json_response(200, done.clone());
        }
        if endless {
            op.endless = true;
        }
        if let Some(t) = terminal_override {
            op.outcome = match t {
                TerminalResult::Failed {
                    error_code,
                    message,
                } => Outcome::Failed {
                    error_code,
                    message,
                },
                TerminalResult::Disabled => Outcome::Disabled,
                TerminalResult::AssignedWithoutHub => Outcome::Assigned {
                    hub: None,
                    device_id: cfg.enrollments[ident.enrollment]
                        .device_id
                        .clone()
                        .unwrap_or_else(|| lower.to_string()),
                    substatus: "initialAssignment",
                },
            };
            op.polls_left = 0;
            op.endless = false;
        }
        let dev = devices.entry(lower.to_string()).or_default();
        if op.endless || op.polls_left > 0 {
            op.polls_left = op.polls_left.saturating_sub(1);
            let regid = dev
                .record
                .as_ref()
                .map(|r| r.registration_id.clone())
                .unwrap_or_else(|| lower.to_string());
            let mut body = Obj::default()
                .with("operationId", opid)
                .with("status", "assigning");
            body.push_obj(
                "registrationState",
                &Obj::default()
                    .with("registrationId", regid)
                    .with("status", "assigning"),
            );
            let mut r = json_response(202, body.render());
            r.set_header("Retry-After", op.retry_after.to_string());
            return r;
        }
        // terminal: commit the record
        let now = now_timestamp();
        let rec = dev.record.get_or_insert_with(|| {
            let (att_key, group_id) = att_info(cfg, ident.enrollment);
            Record {
                registration_id: lower.to_string(),
                created: now.clone(),
                last_updated: now.clone(),
                etag: new_etag(),
                status: "assigning",
                hub: None,
                device_id: None,
                substatus: None,
                error_code: None,
                error_message: None,
                payload: None,
                att_key,
                group_id,
            }
        });
        rec.last_updated = now;
        rec.etag = new_etag();
        rec.error_code = None;
        rec.error_message = None;
        rec.substatus = None;
        rec.payload = None;
        let status = match &op.outcome {
            Outcome::Assigned {
                hub,
                device_id,
                substatus,
            } => {
                rec.hub = hub.clone();
                rec.device_id = Some(device_id.clone());
                rec.substatus = Some(substatus);
                rec.payload = op.payload.clone();
                if let Some(h) = hub {
                    dev.current_hub = Some(h.clone());
                    if dev.first_hub.is_none() {
                        dev.first_hub = Some(h.clone());
                    }
                }
                "assigned"
            }
            Outcome::Failed {
                error_code,
                message,
            } => {
                rec.error_code = Some(*error_code);
                rec.error_message = Some(message.clone());
                "failed"
            }
            Outcome::Disabled => "disabled",
        };
        rec.status = status;
        let chain = if status == "assigned" {
            op.issued_chain.as_ref()
        } else {
            None
        };
        let mut body = Obj::default()
            .with("operationId", opid)
            .with("status", status);
        body.push_obj("registrationState", &record_json(rec, chain));
        let body = body.render();
        op.done = Some(body.clone());
        json_response(200, body)
    }
}

fn lookup(st: &State, lower: &str, terminal_override: Option<TerminalResult>) -> Response {
    let Some(rec) = st.devices.get(lower).and_then(|d| d.record.as_ref()) else {
        return err_response(404, 404201, "Registration not found.");
    };
    let mut rec = rec.clone();
    match terminal_override {
        Some(TerminalResult::Failed {
            error_code,
            message,
        }) => {
            rec.status = "failed";
            rec.error_code = Some(error_code);
            rec.error_message = Some(message);
            rec.hub = None;
        }
        Some(TerminalResult::Disabled) => rec.status = "disabled",
        Some(TerminalResult::AssignedWithoutHub) => {
            rec.status = "assigned";
            rec.hub = None;
        }
        None => {}
    }
    json_response(200, record_json(&rec, None).render())
}

fn att_info(cfg: &Config, idx: usize) -> (&'static str, Option<String>) {
    let e = &cfg.enrollments[idx];
    let key = match e.attestation {
        Attestation::SymmetricKey { .. } => "symmetricKey",
        _ => "x509",
    };
    let group = match &e.kind {
        EnrollmentKind::Group { group_id } => Some(group_id.clone()),
        _ => None,
    };
    (key, group)
}

/// `DeviceRegistrationResult` in the member order of the real service's answers.
fn record_json(r: &Record, issued_chain: Option<&Vec<String>>) -> Obj {
    let mut m = Obj::default();
    if r.status == "disabled" {
        return m
            .with("registrationId", &r.registration_id)
            .with("status", "disabled");
    }
    let mut att = Obj::default();
    if let Some(g) = &r.group_id {
        att.push("enrollmentGroupId", g);
    }
    m.push_obj(r.att_key, &att);
    m.push("registrationId", &r.registration_id);
    m.push("createdDateTimeUtc", &r.created);
    if r.status == "assigned" {
        if let Some(h) = &r.hub {
            m.push("assignedHub", h);
        }
        if let Some(d) = &r.device_id {
            m.push("deviceId", d);
        }
    }
    m.push("status", r.status);
    if r.status == "assigned"
        && let Some(s) = r.substatus
    {
        m.push("substatus", s);
    }
    if let Some(c) = r.error_code {
        m.push("errorCode", c);
    }
    if let Some(msg) = &r.error_message {
        m.push("errorMessage", msg);
    }
    m.push("lastUpdatedDateTimeUtc", &r.last_updated);
    m.push("etag", &r.etag);
    if r.status == "assigned"
        && let Some(p) = &r.payload
    {
        m.push("payload", p);
    }
    if let Some(chain) = issued_chain {
        m.push("issuedCertificateChain", chain);
    }
    m
}

fn pct(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Validates a DeviceRegistration body; returns the device's payload.
fn check_body(
    body: &[u8],
    regid: &str,
    api_version: &str,
    route: Route,
) -> Result<(Option<Value>, Option<String>), String> {
    if body.is_empty() {
        return Err("The request body is required.".into());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("The request body is not valid JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("The request body must be a JSON object (DeviceRegistration).".into());
    };
    let mut payload = None;
    let mut csr = None;
    for (k, v) in &m {
        match k.as_str() {
            "registrationId" => match v {
                Value::String(s) if s.eq_ignore_ascii_case(regid) => {}
                Value::String(_) => {
                    return Err("Registration IDs in URI and request mismatch.".into());
                }
                Value::Null => {}
                _ => return Err("registrationId must be a string.".into()),
            },
            "tpm" => {}
            "payload" if version_at_least(api_version, "2019-03-31") => match v {
                Value::Object(_) => payload = Some(v.clone()),
                Value::Null => {}
                _ => return Err("payload must be a JSON object.".into()),
            },
            "csr" if version_at_least(api_version, "2025-07-01") => {
                if route == Route::Lookup {
                    return Err("csr is not allowed in a device registration status lookup.".into());
                }
                match v {
                    Value::String(s) => csr = Some(s.clone()),
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
    Ok((payload, csr))
}

/// Decides who the device is. Returns the identity and a log description (no secrets).
fn authenticate(
    cfg: &Config,
    req: &Request,
    chain: &[CertificateDer<'static>],
    scope: &str,
    regid: &str,
) -> Result<(Identity, String), String> {
    let mut why = Vec::new();
    if !chain.is_empty() {
        match x509_identity(cfg, chain, regid) {
            Ok(r) => return Ok(r),
            Err(e) => why.push(e),
        }
    }
    if let Some(a) = req.header("authorization") {
        match sas_identity(cfg, a, scope, regid) {
            Ok(r) => return Ok(r),
            Err(e) => why.push(e),
        }
    }
    if why.is_empty() {
        if req.body.windows(5).any(|w| w == b"\"tpm\"") {
            why.push("no credentials (TPM attestation is not emulated)".into());
        } else {
            why.push("no credentials".into());
        }
    }
    Err(why.join("; "))
}

fn sas_identity(
    cfg: &Config,
    header: &str,
    scope: &str,
    regid: &str,
) -> Result<(Identity, String), String> {
    let token = sas::parse(header).map_err(|e| format!("sas refused: {e}"))?;
    sas::check_claims(&token, scope, regid, crate::util::unix_now())
        .map_err(|e| format!("sas refused: {e}"))?;
    // individual enrollment first
    if let Some((i, e)) = cfg.enrollments.iter().enumerate().find(|(_, e)| {
        matches!(&e.kind, EnrollmentKind::Individual { registration_id } if registration_id.eq_ignore_ascii_case(regid))
    }) {
        return match &e.attestation {
            Attestation::SymmetricKey { keys } => match sas::validate(&token, scope, regid, 0, keys) {
                Ok(k) => Ok((
                    Identity { enrollment: i },
                    format!("sas individual={} key={}", e.id(), if k == 0 { "primary" } else { "secondary" }),
                )),
                Err(err) => Err(format!("sas refused: {err} (individual {})", e.id())),
            },
            _ => Err(format!("sas refused: individual enrollment {} uses x509", e.id())),
        };
    }
    for (i, e) in cfg.enrollments.iter().enumerate() {
        let (EnrollmentKind::Group { group_id }, Attestation::SymmetricKey { keys }) =
            (&e.kind, &e.attestation)
        else {
            continue;
        };
        let mut derived = Vec::new();
        for k in keys {
            derived.push(sas::derive_device_key(k, regid));
            let lower = regid.to_ascii_lowercase();
            if lower != regid {
                derived.push(sas::derive_device_key(k, &lower));
            }
        }
        if sas::validate(&token, scope, regid, 0, &derived).is_ok() {
            return Ok((Identity { enrollment: i }, format!("sas group={group_id}")));
        }
    }
    Err("sas refused: signature matches no enrollment key".into())
}

fn leaf_common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

fn x509_identity(
    cfg: &Config,
    chain: &[CertificateDer<'static>],
    regid: &str,
) -> Result<(Identity, String), String> {
    let leaf = &chain[0];
    let thumb = sha256_hex_upper(leaf.as_ref());
    let short = &thumb[..16];
    let cn = leaf_common_name(leaf.as_ref())
        .ok_or_else(|| format!("x509 refused: leaf {short}… has no readable CN"))?;
    if !cn.eq_ignore_ascii_case(regid) {
        return Err(format!("x509 refused: CN {cn:?} != registration id"));
    }
    for (i, e) in cfg.enrollments.iter().enumerate() {
        if let (EnrollmentKind::Individual { registration_id }, Attestation::X509Thumbprints(tps)) =
            (&e.kind, &e.attestation)
            && registration_id.eq_ignore_ascii_case(regid)
            && tps.iter().any(|t| t == &thumb)
        {
            return Ok((
                Identity { enrollment: i },
                format!("x509 individual={} thumbprint={short}…", e.id()),
            ));
        }
    }
    let provider = crate::tls::provider();
    let algs = provider.signature_verification_algorithms.all;
    let ee = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("x509 refused: leaf does not parse: {e:?}"))?;
    let intermediates = &chain[1..];
    let mut last_err = None;
    for (i, e) in cfg.enrollments.iter().enumerate() {
        let (EnrollmentKind::Group { group_id }, Attestation::X509Ca(cas)) =
            (&e.kind, &e.attestation)
        else {
            continue;
        };
        let ders: Vec<CertificateDer<'_>> = cas
            .iter()
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        let anchors: Vec<_> = ders
            .iter()
            .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
            .collect();
        match ee.verify_for_usage(
            algs,
            &anchors,
            intermediates,
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        ) {
            Ok(_) => {
                return Ok((
                    Identity { enrollment: i },
                    format!("x509 group={group_id} leaf={short}…"),
                ));
            }
            Err(err) => last_err = Some(format!("{err:?}")),
        }
    }
    Err(format!(
        "x509 refused: leaf {short}… matches no individual thumbprint and chains to no group CA{}",
        last_err
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default()
    ))
}

/// Faults that change how a computed answer looks on the wire.
fn apply_post_fault(h: &mut Handled, f: FaultKind) {
    match f {
        FaultKind::Truncate => h.delivery = Delivery::Truncate,
        FaultKind::MalformedJson => {
            h.response.body = b"{\"operationId\":\"5.bad\",\"status\":\"assign".to_vec();
        }
        FaultKind::WrongContentType { content_type } => {
            h.response.set_header("Content-Type", content_type);
            h.response.body = b"<html><head><title>Service Unavailable</title></head><body>The service is temporarily unavailable.</body></html>".to_vec();
        }
        FaultKind::Oversized { bytes } => {
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
        FaultKind::Trickle {
            chunk_bytes,
            interval_ms,
        } => {
            h.delivery = Delivery::Trickle {
                chunk_bytes,
                interval_ms,
            }
        }
        _ => {}
    }
}
