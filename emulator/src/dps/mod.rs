//! The DPS device runtime: routing, validation, authentication, enrollments, registration state,
//! operations and scripted faults. I/O-free: takes a parsed request, returns what to send.
//!
//! [`Service::handle`] runs one request through a pipeline of steps over one [`Ctx`]: each
//! step reads what the earlier ones filled in, adds its own part, and either lets the request
//! go on (`Ok`) or answers it (`Err(response)`):
//!
//! | step | module | fills in / refuses with |
//! | --- | --- | --- |
//! | route, method, path ids | `request` | route, scope, registration id, operation id / 404, 405, 400 |
//! | api-version, scope, registration id | `request` | api-version / 400, 404 |
//! | body | `request` | `DeviceRegistration` (payload, csr, tpm) / 415, 400 |
//! | authenticate | `auth` (the [`auth::Attestor`] list: the extension point for TPM) | enrollment / 401 |
//! | strict polling | `faults` | / 429 |
//! | fault | `faults` | the scripted fault, applied around the answer in one place |
//! | issue | `registration` | the certificate chain for a CSR / 400 |
//! | answer | `registration` | register, poll or lookup |

pub(crate) mod auth;
mod faults;
mod json;
mod registration;
mod request;
mod tpm;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use serde_json::Value;

use crate::config::Config;
use crate::http::{Request, Response};

use auth::Attestor;
use json::{err_response, record_json};

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
pub(crate) enum Route {
    Register,
    Operation,
    Lookup,
    /// Not a DPS path (answered 404).
    Other,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Register => "register",
            Route::Operation => "operation",
            Route::Lookup => "lookup",
            Route::Other => "other",
        }
    }
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
    /// Base64 activation blob of the hub key, for a TPM device (`registrationState.tpm`).
    tpm_key: Option<String>,
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
    /// The attestation mechanisms, asked in order (see [`auth`]).
    attestors: Vec<Box<dyn Attestor>>,
    /// TPM challenges issued, shared with the TPM attestor.
    tpm: Arc<crate::tpm::TpmService>,
}

impl Service {
    pub fn new(config: Config, issuer: Option<crate::pki::TestCa>) -> Service {
        let tpm = Arc::new(crate::tpm::TpmService::default());
        Service {
            config: RwLock::new(Arc::new(config)),
            state: Mutex::new(State::default()),
            issuer,
            attestors: auth::default_attestors(&tpm),
            tpm,
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
    /// Test hook: the TPM identity key of the device's last challenge (see
    /// [`crate::Emulator::test_hook_tpm_identity_key`]).
    pub fn test_hook_tpm_identity_key(&self, registration_id: &str) -> Option<Vec<u8>> {
        self.tpm.identity_key(&registration_id.to_ascii_lowercase())
    }

    /// Test hook: see [`crate::Emulator::test_hook_tpm_inner_wrap_keys`].
    pub fn test_hook_tpm_inner_wrap_keys(&self, registration_id: &str) -> Vec<[u8; 16]> {
        self.tpm
            .test_hook_inner_wrap_keys(&registration_id.to_ascii_lowercase())
    }

    pub fn registration_state(&self, registration_id: &str) -> Option<Value> {
        let st = self.lock();
        let rec = st
            .devices
            .get(&registration_id.to_ascii_lowercase())?
            .record
            .as_ref()?;
        serde_json::from_str(&record_json(rec, None, None).render()).ok()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Handles one request. `peer_chain` is the TLS client certificate chain (may be empty).
    pub fn handle(&self, req: &Request, peer_chain: &[CertificateDer<'static>]) -> Handled {
        let cfg = self.config();
        let mut cx = Ctx::new(req, peer_chain, &cfg);
        let mut h = Handled {
            route: "other",
            response: err_response(404, 404003, "Not found."),
            delivery: Delivery::Normal,
            delay: None,
            auth: String::new(),
            note: String::new(),
        };
        self.run(&mut cx, &mut h);
        h.route = cx.route.name();
        h.auth = if cx.auth.is_empty() {
            "none".into()
        } else {
            cx.auth
        };
        h.note = cx.note;
        h
    }

    /// The pipeline (see the module documentation).
    fn run(&self, cx: &mut Ctx<'_>, h: &mut Handled) {
        const STATELESS: &[fn(&mut Ctx<'_>) -> Flow] = &[
            request::route,
            request::method,
            request::path_ids,
            request::api_version,
            request::scope,
            request::registration_id,
            request::body,
        ];
        let stateless = STATELESS.iter().try_for_each(|step| step(cx));
        if let Err(r) = stateless.and_then(|()| auth::authenticate(cx, &self.attestors)) {
            h.response = r;
            return;
        }
        let Some(enrollment) = cx.enrollment else {
            return;
        };
        let enr = &cx.cfg.enrollments[enrollment];
        let mut st = self.lock();
        let dev = st.devices.entry(cx.lower.clone()).or_default();
        if cx.route == Route::Operation
            && cx.cfg.strict_polling
            && let Err(r) = faults::strict_polling(&mut dev.polls, &mut cx.note)
        {
            h.response = r;
            return;
        }
        let fault = faults::due(enr, &mut dev.fault_cursor, cx.route, &mut cx.note);
        let cx = &*cx;
        faults::apply(fault, h, |ov| {
            let issued_chain = registration::issue(cx, enrollment, self.issuer.as_ref(), ov)?;
            Ok(match cx.route {
                Route::Register => {
                    let tpm_key = tpm::hub_blob(&self.tpm, cx, enrollment)?;
                    registration::register(&mut st, cx, enrollment, ov, issued_chain, tpm_key)
                }
                Route::Operation => registration::poll(&mut st, cx, enrollment, ov),
                Route::Lookup | Route::Other => registration::lookup(&st, cx, ov),
            })
        });
    }
}

/// The outcome of one step: go on, or answer with this response.
pub(crate) type Flow = Result<(), Response>;

/// A `DeviceRegistration` request body, as the request step validated it.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeviceRegistration {
    /// The device's `payload` object (api-version 2019-03-31 and later).
    pub payload: Option<Value>,
    /// The base64 DER PKCS#10 `csr` (api-version 2025-07-01-preview and later).
    pub csr: Option<String>,
    /// The `tpm` member as sent (`endorsementKey`, `storageRootKey`), for a TPM attestor.
    pub tpm: Option<Value>,
}

/// One request on its way through the pipeline: what the request said, and what the steps so
/// far made of it.
pub(crate) struct Ctx<'a> {
    pub req: &'a Request,
    /// The TLS client certificate chain, leaf first (empty without a client certificate).
    pub peer_chain: &'a [CertificateDer<'static>],
    pub cfg: &'a Config,
    pub route: Route,
    /// Path segments, percent-decoded.
    pub scope: String,
    pub regid: String,
    /// `regid` in lowercase: the key of the device's state.
    pub lower: String,
    pub opid: Option<String>,
    pub api_version: String,
    pub body: DeviceRegistration,
    /// Index into `cfg.enrollments`, once authenticated.
    pub enrollment: Option<usize>,
    /// How the device authenticated, or why it did not (for the log; no secrets).
    pub auth: String,
    /// Free text for the log (fault applied, reason of a refusal).
    pub note: String,
}

impl<'a> Ctx<'a> {
    fn new(req: &'a Request, peer_chain: &'a [CertificateDer<'static>], cfg: &'a Config) -> Self {
        Ctx {
            req,
            peer_chain,
            cfg,
            route: Route::Other,
            scope: String::new(),
            regid: String::new(),
            lower: String::new(),
            opid: None,
            api_version: String::new(),
            body: DeviceRegistration::default(),
            enrollment: None,
            auth: String::new(),
            note: String::new(),
        }
    }
}
