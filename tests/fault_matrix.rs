//! The fault matrix: every fault of issue 4 scripted in dps-emulator (or made
//! by a small helper server/proxy where the emulator cannot), driven through
//! the C ABI. Each row checks the status the C caller gets, that it came
//! within the deadline (plus a small margin), and the detail surfaced on the
//! error object (HTTP status, DPS errorCode, trackingId, message).
//!
//! The rows run in parallel (they mostly wait). The table is printed to
//! stdout (`cargo test --test fault_matrix -- --nocapture`) and written to
//! `target/fault-matrix.md`; with `DPS_UPDATE_FAULT_MATRIX=1` it is also
//! written to `docs/fault-matrix.md`.

use dps_test_support as support;

use std::ffi::{CStr, CString, c_char};
use std::fmt::Write as _;
use std::path::Path;
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use dps::ffi::*;
use dps_emulator::pki;
use dps_test_support::*;
use support::{ProxyOptions, RawReply, TestProxy};

/// Allowed overshoot of the deadline.
const MARGIN: Duration = Duration::from_millis(1500);
const DEADLINE_MS: u32 = 4000;
const REQUEST_TIMEOUT_MS: u32 = 1000;
/// Longest error message or tracking ID a row may surface.
const MAX_MESSAGE_CHARS: usize = 640;
const WRONG_KEY: &str = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn text(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// How a row reaches a server, when it is not the plain emulator.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    /// Not DPS: a TLS server that answers these bytes.
    Raw(RawReply),
    /// A hostile DPS: a TLS server that answers this HTTP status and JSON body
    /// (`{id}` replaced by the row's registration ID) to every request.
    Hostile(u16, &'static str),
    Emulator,
    WrongKey,
    UnknownScope,
    /// SAS lifetime 1 s and a proxy that takes 2.5 s to open the tunnel: the
    /// token has expired when DPS checks it (what a device clock running
    /// behind looks like to DPS).
    ExpiredToken,
    /// The emulator's CA is not trusted.
    UntrustedServer,
    /// The emulator reached under another name (a proxy maps every name to it).
    WrongHostName,
    /// A TLS server that requires a client certificate from another CA.
    ClientCertRefusedTls,
    /// An X.509 device DPS does not know: refused at HTTP level (401).
    ClientCertUnknown,
    /// Nothing listens on the port.
    ConnectionRefused,
    /// The TCP connect never completes (SYNs dropped).
    SynBlackHole,
}

struct Row {
    fault: &'static str,
    /// Extra lines of the row's enrollment (faults etc.).
    enrollment: &'static str,
    setup: Setup,
    expect: dps_status,
    http: Option<u32>,
    code: Option<i64>,
    tracking: bool,
    /// Requests the emulator must see for this device (None: not checked).
    requests: Option<usize>,
    min_elapsed: Duration,
    deadline_ms: u32,
    request_timeout_ms: u32,
}

fn row(fault: &'static str, enrollment: &'static str, expect: dps_status) -> Row {
    Row {
        fault,
        enrollment,
        setup: Setup::Emulator,
        expect,
        http: None,
        code: None,
        tracking: false,
        requests: None,
        min_elapsed: Duration::ZERO,
        deadline_ms: DEADLINE_MS,
        request_timeout_ms: REQUEST_TIMEOUT_MS,
    }
}

impl Row {
    fn http(mut self, h: u32, code: Option<i64>) -> Self {
        self.http = Some(h);
        self.code = code;
        self.tracking = true;
        self
    }
    fn requests(mut self, n: usize) -> Self {
        self.requests = Some(n);
        self
    }
    fn at_least_ms(mut self, ms: u64) -> Self {
        self.min_elapsed = Duration::from_millis(ms);
        self
    }
    fn setup(mut self, s: Setup) -> Self {
        self.setup = s;
        self
    }
    fn timeouts(mut self, deadline_ms: u32, request_ms: u32) -> Self {
        self.deadline_ms = deadline_ms;
        self.request_timeout_ms = request_ms;
        self
    }
}

fn rows() -> Vec<Row> {
    use Setup::*;
    vec![
        // Transient faults: retried (PUT and polls), the registration succeeds.
        row(
            "429 on the PUT, `Retry-After: 1` (seconds)",
            r#"faults = [{ on = "register", status = 429, retry_after = "1" }]"#,
            DPS_OK,
        )
        .requests(4)
        .at_least_ms(1000),
        row(
            "429 on the PUT, `Retry-After` as an HTTP-date 2 s ahead",
            r#"faults = [{ on = "register", status = 429, retry_after_http_date_secs = 2 }]"#,
            DPS_OK,
        )
        .requests(4)
        .at_least_ms(900),
        row(
            "429 on a poll, no `Retry-After` (x2)",
            r#"faults = [{ on = "poll", status = 429, times = 2 }]"#,
            DPS_OK,
        )
        .requests(5),
        row(
            "500 on the PUT (x2)",
            r#"faults = [{ on = "register", status = 500, times = 2 }]"#,
            DPS_OK,
        )
        .requests(5),
        row(
            "503 on a poll (x2)",
            r#"faults = [{ on = "poll", status = 503, times = 2 }]"#,
            DPS_OK,
        )
        .requests(5),
        row(
            "503 with `Retry-After` HTTP-date 1 s ahead, on a poll",
            r#"faults = [{ on = "poll", status = 503, retry_after_http_date_secs = 1 }]"#,
            DPS_OK,
        )
        .requests(4),
        row(
            "connection reset before the response (PUT, x2)",
            r#"faults = [{ on = "register", action = "close", times = 2 }]"#,
            DPS_OK,
        )
        .requests(5),
        row(
            "connection reset before the response (poll)",
            r#"faults = [{ on = "poll", action = "close" }]"#,
            DPS_OK,
        ),
        row(
            "truncated body (PUT)",
            r#"faults = [{ on = "register", action = "truncate" }]"#,
            DPS_OK,
        )
        .requests(4),
        row(
            "truncated body (poll)",
            r#"faults = [{ on = "poll", action = "truncate" }]"#,
            DPS_OK,
        ),
        row(
            "slow trickle once (1 byte / 50 ms; request timeout 1 s)",
            r#"faults = [{ on = "register", action = "trickle", chunk_bytes = 1, interval_ms = 50 }]"#,
            DPS_OK,
        )
        .requests(4)
        .at_least_ms(1000),
        row(
            "black hole once (request timeout 1 s)",
            r#"faults = [{ on = "register", action = "black_hole" }]"#,
            DPS_OK,
        )
        .requests(4)
        .at_least_ms(1000),
        row(
            "delay 500 ms (under the request timeout)",
            r#"faults = [{ on = "poll", action = "delay", ms = 500 }]"#,
            DPS_OK,
        )
        .requests(3)
        .at_least_ms(500),
        row(
            "operation no longer known (404 on a poll): restart from the PUT",
            r#"faults = [{ on = "poll", status = 404, error_code = 404002 }]"#,
            DPS_OK,
        )
        .requests(5),
        row(
            "401 on a poll: one re-registration with a fresh token",
            r#"faults = [{ on = "poll", status = 401, error_code = 401002 }]"#,
            DPS_OK,
        )
        .requests(5),
        // Persistent faults: bounded by the deadline, last failure surfaced.
        row(
            "429 forever, `Retry-After: 1`",
            r#"faults = [{ status = 429, retry_after = "1", times = 1000 }]"#,
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .http(429, Some(429001))
        .at_least_ms(2900),
        row(
            "429 forever, no `Retry-After` (backoff 50-500 ms)",
            r#"faults = [{ status = 429, times = 1000 }]"#,
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .http(429, Some(429001))
        .at_least_ms(3000),
        row(
            "429 with `Retry-After: 600` (past the deadline)",
            r#"faults = [{ status = 429, retry_after = "600", times = 1000 }]"#,
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .http(429, Some(429001))
        .requests(1),
        row(
            "500 forever",
            r#"faults = [{ status = 500, times = 1000 }]"#,
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .http(500, Some(500001))
        .at_least_ms(3000),
        row(
            "503 forever on polls",
            r#"faults = [{ on = "poll", status = 503, times = 1000 }]"#,
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .http(503, Some(503001))
        .at_least_ms(3000),
        row(
            "connection reset forever",
            r#"faults = [{ action = "close", times = 1000 }]"#,
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .at_least_ms(3000),
        row(
            "truncated body forever",
            r#"faults = [{ action = "truncate", times = 1000 }]"#,
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .at_least_ms(3000),
        row(
            "slow trickle forever (1 byte / 50 ms)",
            r#"faults = [{ action = "trickle", chunk_bytes = 1, interval_ms = 50, times = 1000 }]"#,
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .at_least_ms(3500),
        row(
            "black hole forever",
            r#"faults = [{ action = "black_hole", times = 1000 }]"#,
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .at_least_ms(3500),
        row(
            "black hole forever, request timeout 30 s (> deadline)",
            r#"faults = [{ action = "black_hole", times = 1000 }]"#,
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .timeouts(DEADLINE_MS, 30_000)
        .at_least_ms(3900),
        row(
            "endless `assigning` (Retry-After 1)",
            "retry_after_secs = 1\nfaults = [{ on = \"register\", action = \"endless_assigning\" }]",
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .at_least_ms(2900),
        row("nothing listening (connection refused)", "", DPS_ERR_DEADLINE_EXCEEDED)
            .setup(ConnectionRefused)
            .at_least_ms(3000),
        row(
            "TCP connect never completes (SYNs dropped)",
            "",
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .setup(SynBlackHole)
        .at_least_ms(3500),
        // Bad answers: not retried, precise status.
        row(
            "malformed JSON",
            r#"faults = [{ on = "register", action = "malformed_json" }]"#,
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .http(202, None)
        .requests(1),
        row(
            "non-JSON content type (text/html)",
            r#"faults = [{ on = "register", action = "wrong_content_type" }]"#,
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .http(202, None)
        .requests(1),
        row(
            "oversized response (200 000-byte body; cap 128 KiB)",
            r#"faults = [{ on = "register", action = "oversized", bytes = 200000 }]"#,
            DPS_ERR_RESPONSE_TOO_LARGE,
        )
        .requests(1),
        row(
            "`failed` 400207 (custom allocation failed)",
            r#"faults = [{ on = "register", result = "failed", error_code = 400207 }]"#,
            DPS_ERR_REGISTRATION_FAILED,
        )
        .http(200, Some(400207)),
        row(
            "`failed` 400208 (no hub)",
            r#"faults = [{ on = "register", result = "failed", error_code = 400208 }]"#,
            DPS_ERR_REGISTRATION_FAILED,
        )
        .http(200, Some(400208)),
        row(
            "`failed` 400209 (hub refused DPS)",
            r#"faults = [{ on = "register", result = "failed", error_code = 400209 }]"#,
            DPS_ERR_REGISTRATION_FAILED,
        )
        .http(200, Some(400209)),
        row(
            "`disabled`",
            r#"faults = [{ on = "register", result = "disabled" }]"#,
            DPS_ERR_DISABLED,
        )
        .http(200, None),
        row(
            "409203 (concurrent registration)",
            r#"faults = [{ on = "register", status = 409, error_code = 409203 }]"#,
            DPS_ERR_CONFLICT,
        )
        .http(409, Some(409203))
        .requests(1),
        row(
            "`assigned` without `assignedHub`",
            r#"faults = [{ on = "register", result = "assigned_without_hub" }]"#,
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .http(200, None),
        row(
            "400 on the PUT",
            r#"faults = [{ on = "register", status = 400, error_code = 400004 }]"#,
            DPS_ERR_BAD_REQUEST,
        )
        .http(400, Some(400004))
        .requests(1),
        row(
            "403 on the PUT",
            r#"faults = [{ on = "register", status = 403 }]"#,
            DPS_ERR_FORBIDDEN,
        )
        .http(403, Some(403001))
        .requests(1),
        row(
            "415 on the PUT",
            r#"faults = [{ on = "register", status = 415 }]"#,
            DPS_ERR_UNSUPPORTED_MEDIA_TYPE,
        )
        .http(415, Some(415001))
        .requests(1),
        row(
            "401 on two polls (one fresh-token re-registration only)",
            r#"faults = [{ on = "poll", status = 401, times = 2 }]"#,
            DPS_ERR_UNAUTHORIZED,
        )
        .http(401, Some(401001))
        .requests(4),
        row("401 wrong key", "", DPS_ERR_UNAUTHORIZED)
            .setup(WrongKey)
            .http(401, Some(401002))
            .requests(1),
        row(
            "401 expired token (SAS TTL 1 s, tunnel takes 2.5 s)",
            "",
            DPS_ERR_UNAUTHORIZED,
        )
        .setup(ExpiredToken)
        .timeouts(8000, 5000)
        .http(401, Some(401002))
        .at_least_ms(2500)
        .requests(1),
        row("404 unknown ID scope", "", DPS_ERR_NOT_FOUND)
            .setup(UnknownScope)
            .http(404, Some(404001)),
        row(
            "untrusted server certificate",
            "",
            DPS_ERR_TLS_SERVER_UNTRUSTED,
        )
        .setup(UntrustedServer)
        .requests(0),
        row(
            "wrong host name (certificate for localhost)",
            "",
            DPS_ERR_TLS_SERVER_NAME_MISMATCH,
        )
        .setup(WrongHostName)
        .requests(0),
        row(
            "client certificate refused in the TLS handshake",
            "",
            DPS_ERR_TLS_CLIENT_CERT_REJECTED,
        )
        .setup(ClientCertRefusedTls),
        row(
            "client certificate unknown to DPS (401 at HTTP level)",
            "",
            DPS_ERR_UNAUTHORIZED,
        )
        .setup(ClientCertUnknown)
        .http(401, Some(401002))
        .requests(1),
        // Not DPS at all: a TLS server answering bytes of our choosing.
        row("not HTTP (an SSH banner)", "", DPS_ERR_MALFORMED_RESPONSE)
            .setup(Raw(RawReply::Bytes(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))),
        row("response head over 16 KiB", "", DPS_ERR_RESPONSE_TOO_LARGE)
            .setup(Raw(RawReply::Bytes(huge_head()))),
        row("100 response headers", "", DPS_ERR_MALFORMED_RESPONSE)
            .setup(Raw(RawReply::Bytes(many_headers()))),
        row(
            "`Content-Length: 10000000000`",
            "",
            DPS_ERR_RESPONSE_TOO_LARGE,
        )
        .setup(Raw(RawReply::Bytes(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{",
        ))),
        row(
            "chunk size `ffffffffffffffff` after a first chunk",
            "",
            DPS_ERR_RESPONSE_TOO_LARGE,
        )
        .setup(Raw(RawReply::Bytes(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\nffffffffffffffff\r\n}\r\n0\r\n\r\n",
        ))),
        row(
            "endless body without length (read until close)",
            "",
            DPS_ERR_RESPONSE_TOO_LARGE,
        )
        .setup(Raw(RawReply::Endless {
            prefix: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[",
            filler: FILLER,
            interval_ms: 0,
        })),
        row("endless chunked body", "", DPS_ERR_RESPONSE_TOO_LARGE).setup(Raw(RawReply::Endless {
            prefix: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            filler: chunk_filler(),
            interval_ms: 0,
        })),
        // A hostile DPS: every string it sends is validated before it reaches the caller.
        row(
            "`assignedHub` `evil.example.com;SharedAccessKey=AAAA` (connection-string injection)",
            "",
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .setup(Hostile(200, ASSIGNED_EVIL_HUB))
        .http(200, None),
        row(
            "`assignedHub` of 100 000 characters",
            "",
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .setup(Hostile(200, long_hub()))
        .http(200, None),
        row(
            "`assignedHub` with CR/LF",
            "",
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .setup(Hostile(200, ASSIGNED_CRLF_HUB))
        .http(200, None),
        row(
            "`deviceId` `dev;SharedAccessKey=AAAA`",
            "",
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .setup(Hostile(200, ASSIGNED_EVIL_DEVICE))
        .http(200, None),
        row(
            "`deviceId` with an embedded NUL",
            "",
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .setup(Hostile(200, ASSIGNED_NUL_DEVICE))
        .http(200, None),
        row(
            "`substatus` with a terminal escape sequence (ESC ] 0 ; ... BEL)",
            "",
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .setup(Hostile(200, ASSIGNED_ESC_SUBSTATUS))
        .http(200, None),
        row(
            "`etag` / `lastUpdatedDateTimeUtc` with control characters (DEL, C1 CSI)",
            "",
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .setup(Hostile(200, ASSIGNED_CONTROL_ETAG))
        .http(200, None),
        row(
            "answer for another `registrationId`",
            "",
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .setup(Hostile(200, ASSIGNED_OTHER_DEVICE))
        .http(200, None),
        row(
            "`operationId` of 100 000 characters",
            "",
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .setup(Hostile(202, long_operation()))
        .http(202, None),
        row(
            "`operationId` `../../x?y` (not URL-safe)",
            "",
            DPS_ERR_MALFORMED_RESPONSE,
        )
        .setup(Hostile(202, r#"{"operationId":"../../x?y","status":"assigning"}"#))
        .http(202, None),
        row(
            "400 with a 60 000-character message full of ESC/CR/LF (cut to 256, cleaned)",
            "",
            DPS_ERR_BAD_REQUEST,
        )
        .setup(Hostile(400, long_error_message()))
        .http(400, Some(400004)),
        row(
            "`failed` with an `errorMessage` full of control characters (cleaned)",
            "",
            DPS_ERR_REGISTRATION_FAILED,
        )
        .setup(Hostile(200, FAILED_CONTROL_MESSAGE))
        .http(200, Some(400207)),
        row(
            "endless `100 Continue` interim answers",
            "",
            DPS_ERR_DEADLINE_EXCEEDED,
        )
        .setup(Raw(RawReply::Endless {
            prefix: b"",
            filler: b"HTTP/1.1 100 Continue\r\n\r\n",
            interval_ms: 10,
        }))
        .at_least_ms(3000),
    ]
}

const FILLER: &[u8] = &[b'['; 4096];

const ASSIGNED_EVIL_HUB: &str = r#"{"operationId":"5.a.b","status":"assigned","registrationState":{"registrationId":"{id}","assignedHub":"evil.example.com;SharedAccessKey=AAAA","deviceId":"{id}","status":"assigned"}}"#;
const ASSIGNED_CRLF_HUB: &str = r#"{"operationId":"5.a.b","status":"assigned","registrationState":{"registrationId":"{id}","assignedHub":"hub.azure-devices.net\r\nX-Evil: 1","deviceId":"{id}","status":"assigned"}}"#;
const ASSIGNED_EVIL_DEVICE: &str = r#"{"operationId":"5.a.b","status":"assigned","registrationState":{"registrationId":"{id}","assignedHub":"hub.azure-devices.net","deviceId":"dev;SharedAccessKey=AAAA","status":"assigned"}}"#;
const ASSIGNED_NUL_DEVICE: &str = r#"{"operationId":"5.a.b","status":"assigned","registrationState":{"registrationId":"{id}","assignedHub":"hub.azure-devices.net","deviceId":"{id}\u0000hidden","status":"assigned"}}"#;
const ASSIGNED_ESC_SUBSTATUS: &str = r#"{"operationId":"5.a.b","status":"assigned","registrationState":{"registrationId":"{id}","assignedHub":"hub.azure-devices.net","deviceId":"{id}","status":"assigned","substatus":"\u001b]0;pwned\u0007\u001b[2J"}}"#;
const ASSIGNED_CONTROL_ETAG: &str = r#"{"operationId":"5.a.b","status":"assigned","registrationState":{"registrationId":"{id}","assignedHub":"hub.azure-devices.net","deviceId":"{id}","status":"assigned","etag":"e\u007f","lastUpdatedDateTimeUtc":"\u009b31m2022"}}"#;
const ASSIGNED_OTHER_DEVICE: &str = r#"{"operationId":"5.a.b","status":"assigned","registrationState":{"registrationId":"someone-else","assignedHub":"hub.azure-devices.net","deviceId":"someone-else","status":"assigned"}}"#;
const FAILED_CONTROL_MESSAGE: &str = r#"{"operationId":"5.a.b","status":"failed","registrationState":{"registrationId":"{id}","status":"failed","errorCode":400207,"errorMessage":"Custom allocation failed\u001b[31m\r\n\u0000\u202e with status code: 400"}}"#;

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn long_hub() -> &'static str {
    leak(format!(
        r#"{{"operationId":"5.a.b","status":"assigned","registrationState":{{"registrationId":"{{id}}","assignedHub":"{}.net","deviceId":"{{id}}","status":"assigned"}}}}"#,
        "a".repeat(100_000)
    ))
}

fn long_operation() -> &'static str {
    leak(format!(
        r#"{{"operationId":"{}","status":"assigning"}}"#,
        "o".repeat(100_000)
    ))
}

fn long_error_message() -> &'static str {
    leak(format!(
        r#"{{"errorCode":400004,"trackingId":"t-1","message":"{}","timestampUtc":"2026-01-01T00:00:00Z"}}"#,
        "\\u001b[31mbad\\r\\n".repeat(6_000)
    ))
}

/// The whole answer of a [`Setup::Hostile`] row.
fn hostile_reply(status: u16, body: &str, id: &str) -> &'static [u8] {
    let body = body.replace("{id}", id);
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        _ => "Bad Request",
    };
    leak(format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nx-ms-request-id: \u{9b}31mreq-{id}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
    .as_bytes()
}

/// One 1 KiB chunk of a chunked body.
fn chunk_filler() -> &'static [u8] {
    let mut v = b"400\r\n".to_vec();
    v.extend(std::iter::repeat_n(b'[', 0x400));
    v.extend_from_slice(b"\r\n");
    Box::leak(v.into_boxed_slice())
}

fn huge_head() -> &'static [u8] {
    let mut v = b"HTTP/1.1 200 OK\r\nX-Padding: ".to_vec();
    v.extend(std::iter::repeat_n(b'a', 20 * 1024));
    v.extend_from_slice(b"\r\n\r\n");
    Box::leak(v.into_boxed_slice())
}

fn many_headers() -> &'static [u8] {
    let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..100 {
        v.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    v.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Box::leak(v.into_boxed_slice())
}

struct Outcome {
    status: dps_status,
    elapsed: Duration,
    http: u32,
    code: i64,
    tracking: Option<String>,
    message: Option<String>,
    requests: usize,
}

struct World {
    emu: dps_emulator::Emulator,
    wrong_name_proxy: TestProxy,
    slow_proxy: TestProxy,
    tls_refuser_port: u16,
    tls_refuser_ca: String,
    refused_port: u16,
    unknown_device: pki::Issued,
    raw_ca: String,
    raw_server: pki::Issued,
    syn_hole: support::SynBlackHole,
}

fn registration_id(i: usize) -> String {
    format!("fm-{i:02}")
}

unsafe fn run_row(w: &World, i: usize, r: &Row) -> Outcome {
    let id = match r.setup {
        Setup::ClientCertRefusedTls | Setup::ClientCertUnknown => "fm-x509".to_owned(),
        _ => registration_id(i),
    };
    let scope = if r.setup == Setup::UnknownScope {
        "0ne99999999"
    } else {
        SCOPE
    };
    unsafe {
        let mut cfg = null_mut();
        assert_eq!(
            dps_config_new(cs(scope).as_ptr(), cs(&id).as_ptr(), &mut cfg),
            DPS_OK
        );
        let endpoint = match r.setup {
            Setup::WrongHostName => format!("dps.wrong-name.invalid:{}", w.emu.port()),
            Setup::ClientCertRefusedTls => format!("localhost:{}", w.tls_refuser_port),
            Setup::ConnectionRefused => format!("localhost:{}", w.refused_port),
            Setup::SynBlackHole => format!("127.0.0.1:{}", w.syn_hole.port),
            Setup::Raw(reply) => format!(
                "localhost:{}",
                support::raw_tls_server(&w.raw_server.chain_pem, &w.raw_server.key_pem, reply)
            ),
            Setup::Hostile(status, body) => format!(
                "localhost:{}",
                support::raw_tls_server(
                    &w.raw_server.chain_pem,
                    &w.raw_server.key_pem,
                    RawReply::Bytes(hostile_reply(status, body, &id))
                )
            ),
            _ => format!("localhost:{}", w.emu.port()),
        };
        assert_eq!(dps_config_set_endpoint(cfg, cs(&endpoint).as_ptr()), DPS_OK);
        assert_eq!(dps_config_set_default_roots(cfg, DPS_ROOTS_NONE), DPS_OK);
        let ca = match r.setup {
            Setup::UntrustedServer => pki::TestCa::new("Some Other CA").cert_pem(),
            Setup::ClientCertRefusedTls => w.tls_refuser_ca.clone(),
            Setup::Raw(_) | Setup::Hostile(..) => w.raw_ca.clone(),
            _ => w.emu.ca_pem(),
        };
        assert_eq!(dps_config_add_trusted_ca_pem(cfg, cs(&ca).as_ptr()), DPS_OK);
        match r.setup {
            Setup::ClientCertRefusedTls | Setup::ClientCertUnknown => assert_eq!(
                dps_config_set_x509_pem(
                    cfg,
                    cs(&w.unknown_device.cert_pem).as_ptr(),
                    cs(&w.unknown_device.key_pem).as_ptr(),
                    std::ptr::null()
                ),
                DPS_OK
            ),
            Setup::WrongKey => assert_eq!(
                dps_config_set_symmetric_key(cfg, cs(WRONG_KEY).as_ptr()),
                DPS_OK
            ),
            _ => assert_eq!(dps_config_set_symmetric_key(cfg, cs(KEY).as_ptr()), DPS_OK),
        }
        match r.setup {
            Setup::WrongHostName => assert_eq!(
                dps_config_set_proxy(cfg, cs(&w.wrong_name_proxy.url(None)).as_ptr()),
                DPS_OK
            ),
            Setup::ExpiredToken => {
                assert_eq!(
                    dps_config_set_proxy(cfg, cs(&w.slow_proxy.url(None)).as_ptr()),
                    DPS_OK
                );
                assert_eq!(dps_config_set_sas_ttl_s(cfg, 1), DPS_OK);
            }
            _ => {}
        }
        assert_eq!(dps_config_set_timeout_ms(cfg, r.deadline_ms), DPS_OK);
        assert_eq!(
            dps_config_set_request_timeout_ms(cfg, r.request_timeout_ms),
            DPS_OK
        );
        assert_eq!(dps_config_set_backoff_ms(cfg, 50, 500), DPS_OK);
        let mut client = null_mut();
        assert_eq!(dps_client_new(cfg, &mut client, null_mut()), DPS_OK);
        dps_config_free(cfg);

        let started = Instant::now();
        let mut reg = null_mut();
        let status = dps_client_register(client, &mut reg);
        let elapsed = started.elapsed();
        let err = dps_client_last_error(client);
        let out = Outcome {
            status,
            elapsed,
            http: dps_error_http_status(err),
            code: dps_error_dps_code(err),
            tracking: text(dps_error_tracking_id(err)),
            message: text(dps_error_message(err)),
            requests: 0,
        };
        if status == DPS_OK {
            assert!(err.is_null());
            assert_eq!(dps_registration_status(reg), DPS_REGISTRATION_ASSIGNED);
            dps_registration_free(reg);
        }
        dps_client_free(client);
        out
    }
}

fn enrollment_toml(rows: &[Row]) -> String {
    let mut s = String::new();
    for (i, r) in rows.iter().enumerate() {
        let _ = write!(
            s,
            "\n[[enrollments]]\nregistration_id = \"{}\"\nattestation = \"symmetric_key\"\nprimary_key = \"{KEY}\"\n{}\n",
            registration_id(i),
            r.enrollment
        );
    }
    s
}

fn status_name(s: dps_status) -> String {
    let names = [
        (DPS_OK, "DPS_OK"),
        (DPS_ERR_DEADLINE_EXCEEDED, "DPS_ERR_DEADLINE_EXCEEDED"),
        (DPS_ERR_MALFORMED_RESPONSE, "DPS_ERR_MALFORMED_RESPONSE"),
        (DPS_ERR_RESPONSE_TOO_LARGE, "DPS_ERR_RESPONSE_TOO_LARGE"),
        (DPS_ERR_REGISTRATION_FAILED, "DPS_ERR_REGISTRATION_FAILED"),
        (DPS_ERR_DISABLED, "DPS_ERR_DISABLED"),
        (DPS_ERR_CONFLICT, "DPS_ERR_CONFLICT"),
        (DPS_ERR_BAD_REQUEST, "DPS_ERR_BAD_REQUEST"),
        (DPS_ERR_FORBIDDEN, "DPS_ERR_FORBIDDEN"),
        (
            DPS_ERR_UNSUPPORTED_MEDIA_TYPE,
            "DPS_ERR_UNSUPPORTED_MEDIA_TYPE",
        ),
        (DPS_ERR_UNAUTHORIZED, "DPS_ERR_UNAUTHORIZED"),
        (DPS_ERR_NOT_FOUND, "DPS_ERR_NOT_FOUND"),
        (DPS_ERR_TLS_SERVER_UNTRUSTED, "DPS_ERR_TLS_SERVER_UNTRUSTED"),
        (
            DPS_ERR_TLS_SERVER_NAME_MISMATCH,
            "DPS_ERR_TLS_SERVER_NAME_MISMATCH",
        ),
        (
            DPS_ERR_TLS_CLIENT_CERT_REJECTED,
            "DPS_ERR_TLS_CLIENT_CERT_REJECTED",
        ),
        (DPS_ERR_CONNECTION_LOST, "DPS_ERR_CONNECTION_LOST"),
        (DPS_ERR_TIMEOUT, "DPS_ERR_TIMEOUT"),
        (DPS_ERR_THROTTLED, "DPS_ERR_THROTTLED"),
        (DPS_ERR_SERVICE, "DPS_ERR_SERVICE"),
        (DPS_ERR_CONNECT, "DPS_ERR_CONNECT"),
        (DPS_ERR_TLS, "DPS_ERR_TLS"),
        (DPS_ERR_PROXY, "DPS_ERR_PROXY"),
    ];
    names
        .iter()
        .find(|(c, _)| *c == s)
        .map_or_else(|| format!("status {s}"), |(_, n)| (*n).to_owned())
}

fn detail(o: &Outcome) -> String {
    if o.status == DPS_OK {
        return String::new();
    }
    let mut d = String::new();
    if o.http != 0 {
        let _ = write!(d, "http {}", o.http);
    }
    if o.code != 0 {
        let _ = write!(d, ", errorCode {}", o.code);
    }
    if o.tracking.is_some() {
        d.push_str(", trackingId");
    }
    let msg = o.message.as_deref().unwrap_or("");
    let msg: String = msg.chars().take(110).collect();
    if !d.is_empty() {
        d.push_str(": ");
    }
    d.push_str(&msg.replace('|', "\\|"));
    d
}

#[test]
fn fault_matrix() {
    let rows = rows();
    let server_ca = pki::TestCa::new("Refusing Server CA");
    let server = server_ca.issue_server("localhost");
    let other_client_ca = pki::TestCa::new("Client CA the device does not use");
    let tls_refuser_port = support::client_auth_tls_server(
        &server.chain_pem,
        &server.key_pem,
        &other_client_ca.cert_pem(),
    );
    let emu = emulator(&enrollment_toml(&rows));
    let refused_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let world = World {
        wrong_name_proxy: TestProxy::start(ProxyOptions {
            target: Some(emu.local_addr()),
            ..ProxyOptions::default()
        }),
        slow_proxy: TestProxy::start(ProxyOptions {
            delay: Duration::from_millis(2500),
            ..ProxyOptions::default()
        }),
        emu,
        tls_refuser_port,
        tls_refuser_ca: server_ca.cert_pem(),
        refused_port,
        unknown_device: pki::self_signed_device("fm-x509"),
        raw_ca: server_ca.cert_pem(),
        raw_server: server_ca.issue_server("localhost"),
        syn_hole: support::syn_black_hole(),
    };

    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let w = &world;
                s.spawn(move || unsafe { run_row(w, i, r) })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = started.elapsed();
    let log = world.emu.log_lines();
    for (i, o) in outcomes.iter_mut().enumerate() {
        let needle = format!("/registrations/{}/", registration_id(i));
        let needle2 = format!("/registrations/{}?", registration_id(i));
        o.requests = log
            .iter()
            .filter(|l| l.contains(&needle) || l.contains(&needle2))
            .count();
    }

    // The table.
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| # | Fault | Expected | Got | Elapsed (deadline) | Requests | Detail surfaced |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    for (i, (r, o)) in rows.iter().zip(&outcomes).enumerate() {
        let deadline = Duration::from_millis(r.deadline_ms.into());
        let mut problems = Vec::new();
        if o.status != r.expect {
            problems.push(format!(
                "status {} != {}",
                status_name(o.status),
                status_name(r.expect)
            ));
        }
        if o.elapsed > deadline + MARGIN {
            problems.push(format!("elapsed {:?} > deadline + margin", o.elapsed));
        }
        if o.elapsed < r.min_elapsed {
            problems.push(format!(
                "elapsed {:?} < {:?}: a wait was not honoured",
                o.elapsed, r.min_elapsed
            ));
        }
        if let Some(h) = r.http {
            if o.http != h {
                problems.push(format!("http {} != {h}", o.http));
            }
        }
        if let Some(c) = r.code {
            if o.code != c {
                problems.push(format!("errorCode {} != {c}", o.code));
            }
        }
        if r.tracking && o.tracking.as_deref().is_none_or(str::is_empty) {
            problems.push("no trackingId".into());
        }
        if r.expect != DPS_OK && o.message.as_deref().is_none_or(str::is_empty) {
            problems.push("no message".into());
        }
        // Whatever the server sent, what reaches the caller is printable and bounded.
        for (what, t) in [("message", &o.message), ("trackingId", &o.tracking)] {
            let t = t.as_deref().unwrap_or("");
            if t.chars()
                .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c))
            {
                problems.push(format!("{what} has control characters: {t:?}"));
            }
            if t.chars().count() > MAX_MESSAGE_CHARS {
                problems.push(format!("{what} is {} characters long", t.chars().count()));
            }
        }
        let counted = !matches!(
            r.setup,
            Setup::ClientCertRefusedTls
                | Setup::ClientCertUnknown
                | Setup::ConnectionRefused
                | Setup::SynBlackHole
                | Setup::Raw(_)
                | Setup::Hostile(..)
        );
        if let (Some(n), true) = (r.requests, counted) {
            if o.requests != n {
                problems.push(format!("{} requests reached DPS, expected {n}", o.requests));
            }
        }
        let _ = writeln!(
            table,
            "| {} | {} | `{}` | {}`{}` | {:.2} s ({} s) | {} | {} |",
            i + 1,
            r.fault,
            status_name(r.expect),
            if problems.is_empty() { "" } else { "**FAIL** " },
            status_name(o.status),
            o.elapsed.as_secs_f64(),
            r.deadline_ms / 1000,
            if counted {
                o.requests.to_string()
            } else {
                "n/a".into()
            },
            detail(o)
        );
        if !problems.is_empty() {
            failures.push(format!(
                "row {} ({}): {}",
                i + 1,
                r.fault,
                problems.join("; ")
            ));
        }
    }
    let worst = rows
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.status == DPS_ERR_DEADLINE_EXCEEDED)
        .map(|(r, o)| o.elapsed.as_secs_f64() - f64::from(r.deadline_ms) / 1000.0)
        .fold(f64::MIN, f64::max);
    let doc = format!(
        "# Fault matrix\n\n\
         Generated by `tests/fault_matrix.rs` (`DPS_UPDATE_FAULT_MATRIX=1 cargo test --test fault_matrix`).\n\
         Each row is one registration through the C ABI (`dps_client_register`) against `dps-emulator`\n\
         with the fault scripted for that device; deadline {} s unless noted, request timeout {} s,\n\
         backoff 50-500 ms, debug build, all rows in parallel on 2 cores. \"Requests\" counts the requests\n\
         the emulator logged for the device (PUT + polls, retries included). A row fails if the status\n\
         differs, if it took longer than the deadline + {:.1} s, if a `Retry-After` wait was not honoured,\n\
         or if the HTTP status / errorCode / trackingId / message is missing, or if the message or\n\
         trackingId holds a control character or exceeds {MAX_MESSAGE_CHARS} characters (rows 56-67: a hostile DPS).\n\n{table}\n\
         Worst overshoot past the deadline among the deadline rows: {:+.3} s. Whole matrix: {:.1} s.\n",
        DEADLINE_MS / 1000,
        REQUEST_TIMEOUT_MS / 1000,
        MARGIN.as_secs_f64(),
        worst,
        total.as_secs_f64()
    );
    println!("{doc}");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&target);
    let _ = std::fs::write(target.join("fault-matrix.md"), &doc);
    if std::env::var_os("DPS_UPDATE_FAULT_MATRIX").is_some() && failures.is_empty() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("fault-matrix.md"), &doc).unwrap();
    }
    assert!(
        failures.is_empty(),
        "fault matrix failures:\n{}",
        failures.join("\n")
    );
}
