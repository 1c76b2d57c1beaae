//! `dps_client` and the one-call `dps_register`.

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex};

use super::*;
use crate::client::{Client, Event, Step};
use crate::error::Error;
use crate::transport::CancelToken;

/// A registration client: one configuration (copied at creation), one
/// keep-alive connection, one registration at a time.
///
/// Methods: `dps_client_new`, `dps_client_register`, `dps_client_step`,
/// `dps_client_lookup`, `dps_client_cancel`, `dps_client_set_event_callback`,
/// `dps_client_last_error`, `dps_client_connection_string`,
/// `dps_client_iot_hub_sas_token`, `dps_client_registration_id`,
/// `dps_client_free`.
///
/// Thread safety: a client is driven by one thread at a time and may move
/// between threads. A driving call (`register`, `step`, `lookup`,
/// `set_event_callback`) made while another driving call on the same client is
/// in progress, on another thread or from one of its callbacks, returns
/// `DPS_ERR_INVALID_STATE` at once instead of waiting. The getters
/// (`last_error`, `connection_string`, `iot_hub_sas_token`, `registration_id`)
/// and `dps_client_cancel` never wait: any thread, any time, callbacks included.
pub struct dps_client {
    cancel: Arc<CancelToken>,
    registration_id: std::ffi::CString,
    /// The immutable configuration, readable without the lock (getters never wait for a
    /// registration running on another thread).
    config: Arc<crate::Config>,
    /// Held for the whole of a driving call.
    inner: Mutex<Client>,
    /// The error of the last completed driving call; locked only to read or replace it.
    last_error: Mutex<Option<Box<dps_error>>>,
}

/// Event: the register request (PUT) is about to be sent.
pub const DPS_EVENT_REGISTERING: u32 = 1;
/// Event: DPS is assigning; the next poll is in `wait_ms`.
pub const DPS_EVENT_ASSIGNING: u32 = 2;
/// Event: a transient failure (`cause`); retrying in `wait_ms`.
pub const DPS_EVENT_RETRYING: u32 = 3;
/// Event: the device is assigned.
pub const DPS_EVENT_ASSIGNED: u32 = 4;
/// Event: the registration failed with status `cause`.
pub const DPS_EVENT_FAILED: u32 = 5;

/// Event callback: progress of a registration. `userdata` is what was given with the
/// callback; `event` is a `DPS_EVENT_*` value; `wait_ms` is the coming wait for
/// `ASSIGNING` and `RETRYING` (else 0); `cause` is the failure status for
/// `RETRYING` and `FAILED` (else `DPS_OK`). Runs on the thread that called
/// into the client, inside that call. It must return normally (no longjmp, no
/// C++ exception). On the same client it may call `dps_client_cancel` and the
/// getters (`dps_client_last_error` gives the previous call's error); driving
/// calls (`register`, `step`, `lookup`, `set_event_callback`) return
/// `DPS_ERR_INVALID_STATE`. Other clients and configs may be used freely.
pub type dps_event_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, event: u32, wait_ms: u32, cause: dps_status),
>;

struct CallbackTarget {
    cb: unsafe extern "C" fn(*mut c_void, u32, u32, dps_status),
    userdata: *mut c_void,
}
// SAFETY: the C caller promises the callback and userdata may be used from
// the thread that drives the client, which is the only place they are called.
unsafe impl Send for CallbackTarget {}

fn ms(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Runs a driving call on the client: NULL gives `DPS_ERR_NULL_ARGUMENT`, a client
/// poisoned by an earlier panic `DPS_ERR_PANIC`, a client already inside a driving call
/// (another thread, or a callback of this one) `DPS_ERR_INVALID_STATE` at once.
fn with_client(
    client: *mut dps_client,
    f: impl FnOnce(&dps_client, &mut Client) -> dps_status,
) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        // SAFETY: NULL or a live client.
        let Some(c) = (unsafe { client.as_ref() }) else {
            return DPS_ERR_NULL_ARGUMENT;
        };
        match c.inner.try_lock() {
            Ok(mut inner) => f(c, &mut inner),
            Err(std::sync::TryLockError::WouldBlock) => DPS_ERR_INVALID_STATE,
            Err(std::sync::TryLockError::Poisoned(_)) => DPS_ERR_PANIC,
        }
    })
}

impl dps_client {
    /// Hands a result to C: the registration through `out`, or the error kept
    /// as the client's last error.
    ///
    /// # Safety
    /// `out` is non-NULL and writable.
    unsafe fn deliver(
        &self,
        r: Result<crate::Registration, Error>,
        out: *mut *mut dps_registration,
    ) -> dps_status {
        match r {
            Ok(r) => {
                self.set_last_error(None);
                // SAFETY: per the contract.
                unsafe { put(out, Box::into_raw(dps_registration::new(r))) };
                DPS_OK
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&self, e: Error) -> dps_status {
        let code = e.kind.code();
        self.set_last_error(Some(dps_error::new(e)));
        code
    }

    fn set_last_error(&self, e: Option<Box<dps_error>>) {
        match self.last_error.lock() {
            Ok(mut g) => *g = e,
            Err(p) => *p.into_inner() = e,
        }
    }
}

/// Creates a client from `config`, which is validated and copied (the config
/// may be changed or freed afterwards). Builds the TLS configuration once.
///
/// - `out`: receives the client; free it with `dps_client_free`.
/// - `error_out`: may be NULL; on failure, receives an error to free with
///   `dps_error_free`.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_NO_CREDENTIAL`,
/// `DPS_ERR_INVALID_REGISTRATION_ID` (none set and no certificate CN),
/// `DPS_ERR_INVALID_CERTIFICATE` (CN differs from the registration ID) or
/// `DPS_ERR_INVALID_TRUST_ANCHOR` (no roots). Thread-safe for distinct `out`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_client_new(
    config: *const dps_config,
    out: *mut *mut dps_client,
    error_out: *mut *mut dps_error,
) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        // SAFETY: NULL or a live config.
        let Some(cfg) = (unsafe { config.as_ref() }) else {
            return DPS_ERR_NULL_ARGUMENT;
        };
        if out.is_null() {
            return DPS_ERR_NULL_ARGUMENT;
        }
        match cfg.builder().and_then(|b| b.build()) {
            Ok(c) => {
                let client = Client::new(Arc::new(c));
                let h = Box::new(dps_client {
                    cancel: client.cancel_token(),
                    registration_id: cstring(client.config().registration_id()),
                    config: Arc::clone(client.config()),
                    inner: Mutex::new(client),
                    last_error: Mutex::new(None),
                });
                // SAFETY: out is non-NULL and writable.
                unsafe { put(out, Box::into_raw(h)) };
                DPS_OK
            }
            // SAFETY: error_out is NULL or writable.
            Err(e) => unsafe { report(e, error_out) },
        }
    })
}

/// Frees a client, closing its connection. NULL is ignored. Must not be
/// called while another thread is inside a call on this client.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_client_free(client: *mut dps_client) {
    guard((), || {
        if !client.is_null() {
            // SAFETY: client came from dps_client_new and is freed once.
            drop(unsafe { Box::from_raw(client) });
        }
    })
}

/// Registers the device, blocking until DPS assigns it, the registration
/// fails, the deadline passes or `dps_client_cancel` is called. Retries
/// throttling (429), server errors (5xx) and network failures, honouring
/// `Retry-After`, within the deadline. Reuses one TLS connection.
///
/// - `out`: on `DPS_OK`, receives the registration; free it with
///   `dps_registration_free`.
///
/// On failure returns the error status (for example `DPS_ERR_UNAUTHORIZED`,
/// `DPS_ERR_REGISTRATION_FAILED`, `DPS_ERR_DISABLED`,
/// `DPS_ERR_DEADLINE_EXCEEDED`, `DPS_ERR_CANCELLED`, a `DPS_ERR_TLS_*`) and
/// the detail is available from `dps_client_last_error`. The client stays
/// usable: a later call starts a new registration.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_client_register(
    client: *mut dps_client,
    out: *mut *mut dps_registration,
) -> dps_status {
    with_client(client, |c, client| {
        if out.is_null() {
            return DPS_ERR_NULL_ARGUMENT;
        }
        let r = client.register();
        // SAFETY: out is non-NULL and writable.
        unsafe { c.deliver(r, out) }
    })
}

/// Advances a registration by at most one HTTP exchange, without sleeping:
/// for super-loops and RTOS tasks. The first call starts a registration.
///
/// - `wait_ms`: on `DPS_PENDING`, receives how long to wait before the next
///   call (calling earlier just returns `DPS_PENDING` again with the rest).
/// - `out`: on `DPS_OK`, receives the registration (free with
///   `dps_registration_free`).
///
/// Returns `DPS_PENDING` (call again), `DPS_OK` (done), or an error status
/// as `dps_client_register` does (the registration is over; the next call
/// starts a new one). Network I/O inside one call is bounded by the request
/// timeout and the deadline.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_client_step(
    client: *mut dps_client,
    wait_ms: *mut u32,
    out: *mut *mut dps_registration,
) -> dps_status {
    with_client(client, |c, client| {
        if out.is_null() || wait_ms.is_null() {
            return DPS_ERR_NULL_ARGUMENT;
        }
        match client.step() {
            Ok(Step::Pending(d)) => {
                // SAFETY: wait_ms is non-NULL and writable.
                unsafe { put(wait_ms, ms(d)) };
                DPS_PENDING
            }
            // SAFETY: out is non-NULL and writable.
            Ok(Step::Done(r)) => unsafe { c.deliver(Ok(r), out) },
            Err(e) => c.fail(e),
        }
    })
}

/// Asks DPS for the device's current registration (Device Registration
/// Status Lookup: POST, not billable) without re-registering. Blocking, with
/// the same retries and deadline as `dps_client_register`.
///
/// - `out`: on `DPS_OK`, receives the result (its status may be `FAILED` or
///   `DISABLED`); free it with `dps_registration_free`.
///
/// Errors as `dps_client_register`; detail from `dps_client_last_error`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_client_lookup(
    client: *mut dps_client,
    out: *mut *mut dps_registration,
) -> dps_status {
    with_client(client, |c, client| {
        if out.is_null() {
            return DPS_ERR_NULL_ARGUMENT;
        }
        let r = client.lookup();
        // SAFETY: out is non-NULL and writable.
        unsafe { c.deliver(r, out) }
    })
}

/// Cancels the registration or lookup in progress on `client`: a blocking
/// call returns `DPS_ERR_CANCELLED` promptly (a wait is interrupted and the
/// socket is shut down); with the step API, the next step returns it. A
/// cancel made while nothing is in progress is kept: the next driving call
/// returns `DPS_ERR_CANCELLED` at once, without sending anything (a watchdog
/// racing the start of a registration never loses its cancel). Each cancel
/// ends one operation; the client stays usable. Safe from any thread, including a signal-free
/// watchdog thread, and from any callback. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_client_cancel(client: *const dps_client) {
    guard((), || {
        // SAFETY: NULL or a live client; only the thread-safe token is touched.
        if let Some(c) = unsafe { client.as_ref() } {
            c.cancel.cancel();
        }
    })
}

/// Sets (or, with a NULL `callback`, clears) the event callback (see
/// `dps_event_callback`). `userdata` is passed back as the first argument and
/// is not touched otherwise; it must stay valid while the callback is set.
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, or `DPS_ERR_INVALID_STATE` when
/// called during a driving call on the same client (from its own callback, or
/// another thread).
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_client_set_event_callback(
    client: *mut dps_client,
    callback: dps_event_callback,
    userdata: *mut c_void,
) -> dps_status {
    with_client(client, |_, client| {
        let observer = callback.map(|cb| {
            let t = CallbackTarget { cb, userdata };
            Box::new(move |ev: Event| {
                let t = &t;
                let (event, wait, cause) = match ev {
                    Event::Registering => (DPS_EVENT_REGISTERING, 0, DPS_OK),
                    Event::Assigning { wait } => (DPS_EVENT_ASSIGNING, ms(wait), DPS_OK),
                    Event::Retrying { wait, cause } => (DPS_EVENT_RETRYING, ms(wait), cause.code()),
                    Event::Assigned => (DPS_EVENT_ASSIGNED, 0, DPS_OK),
                    Event::Failed(kind) => (DPS_EVENT_FAILED, 0, kind.code()),
                };
                // SAFETY: the C caller supplied a valid function and userdata.
                unsafe { (t.cb)(t.userdata, event, wait, cause) };
            }) as crate::client::Observer
        });
        client.set_observer(observer);
        DPS_OK
    })
}

/// The error of the last completed driving call on this client, or NULL if it
/// succeeded (or `client` is NULL). Never waits: while a call runs (on another
/// thread, or inside its callbacks) it returns the previous call's error.
/// Borrowed: valid until the next driving call on this client returns, or the
/// client is freed; do not pass it to `dps_error_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_client_last_error(client: *const dps_client) -> *const dps_error {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or a live client.
        let Some(c) = (unsafe { client.as_ref() }) else {
            return std::ptr::null();
        };
        let g = match c.last_error.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.as_deref()
            .map_or(std::ptr::null(), |e| e as *const dps_error)
    })
}

/// Formats the IoT Hub connection string for `reg` with this client's
/// credential: `HostName=<hub>;DeviceId=<id>;SharedAccessKey=<key>` for
/// symmetric keys (the derived key for group enrollments) or
/// `HostName=<hub>;DeviceId=<id>;x509=true` for certificates. The result
/// contains the device key: treat the buffer as a secret.
///
/// - `buf`, `cap`: receives the string and a NUL. `buf` may be NULL with
///   `cap` 0 to ask for the length only.
/// - `out_len`: if not NULL, receives the string length (also on
///   `DPS_ERR_BUFFER_TOO_SMALL`, to size the buffer).
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_STATE` (no hub
/// or device ID in `reg`) or `DPS_ERR_BUFFER_TOO_SMALL`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_client_connection_string(
    client: *const dps_client,
    reg: *const dps_registration,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        // SAFETY: NULL or live objects.
        let (Some(c), Some(r)) = (unsafe { client.as_ref() }, unsafe { reg.as_ref() }) else {
            return DPS_ERR_NULL_ARGUMENT;
        };
        match crate::client::connection_string(&r.inner, c.config.credential()) {
            // SAFETY: buf/cap/out_len per the contract.
            Ok(cs) => unsafe { write_str_out(&cs, buf, cap, out_len) },
            Err(e) => e.kind.code(),
        }
    })
}

/// Makes the SAS token the device presents to its IoT hub after provisioning:
/// `SharedAccessSignature sr=<hub>%2Fdevices%2F<deviceId>&sig=...&se=<expiry_unix>`, signed
/// with this client's symmetric key wherever it lives (in memory, the derived group key, or
/// an HMAC callback, which is called during this function). The hub and device ID come from
/// `reg`. The token is a secret until it expires.
///
/// - `expiry_unix`: the token's expiry, seconds since 1970 (UTC).
/// - `buf`, `cap`, `out_len`: as `dps_client_connection_string`.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_STATE` (no hub or device ID in
/// `reg`), `DPS_ERR_UNSUPPORTED` (an X.509 credential: the hub authenticates the certificate),
/// `DPS_ERR_SIGNER_FAILED` (the HMAC callback failed) or `DPS_ERR_BUFFER_TOO_SMALL`. Never
/// waits for a registration running on another thread; may be called from the client's
/// event callback.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_client_iot_hub_sas_token(
    client: *const dps_client,
    reg: *const dps_registration,
    expiry_unix: u64,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        // SAFETY: NULL or live objects.
        let (Some(c), Some(r)) = (unsafe { client.as_ref() }, unsafe { reg.as_ref() }) else {
            return DPS_ERR_NULL_ARGUMENT;
        };
        match crate::client::iot_hub_sas_token(&r.inner, c.config.credential(), expiry_unix) {
            // SAFETY: buf/cap/out_len per the contract.
            Ok(t) => unsafe { write_str_out(&t, buf, cap, out_len) },
            Err(e) => e.kind.code(),
        }
    })
}

/// The registration ID this client registers: the one configured, or the
/// X.509 certificate's subject CN when none was. Borrowed: valid until the
/// client is freed. NULL only for a NULL `client`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_client_registration_id(client: *const dps_client) -> *const c_char {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or a live client.
        unsafe { client.as_ref() }.map_or(std::ptr::null(), |c| c.registration_id.as_ptr())
    })
}

/// Registers the device in one call: builds a client from `config`,
/// registers (blocking, as `dps_client_register`), and frees the client.
///
/// - `out`: on `DPS_OK`, receives the registration (free with
///   `dps_registration_free`).
/// - `error_out`: may be NULL; on failure, receives the error detail (free
///   with `dps_error_free`).
///
/// Use a `dps_client` instead to cancel, observe progress, or register again
/// over the same connection. Thread-safe: several threads may call it with
/// the same config at once.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_register(
    config: *const dps_config,
    out: *mut *mut dps_registration,
    error_out: *mut *mut dps_error,
) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        // SAFETY: NULL or a live config.
        let Some(cfg) = (unsafe { config.as_ref() }) else {
            return DPS_ERR_NULL_ARGUMENT;
        };
        if out.is_null() {
            return DPS_ERR_NULL_ARGUMENT;
        }
        let result = cfg
            .builder()
            .and_then(|b| b.build())
            .and_then(|c| Client::new(Arc::new(c)).register());
        match result {
            Ok(r) => {
                // SAFETY: out is non-NULL and writable.
                unsafe { put(out, Box::into_raw(dps_registration::new(r))) };
                DPS_OK
            }
            // SAFETY: error_out is NULL or writable.
            Err(e) => unsafe { report(e, error_out) },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_a_client_call_poisons_the_client() {
        let mut cfg = std::ptr::null_mut();
        let mut client = std::ptr::null_mut();
        unsafe {
            assert_eq!(
                dps_config_new(c"0ne00000001".as_ptr(), c"dev".as_ptr(), &mut cfg),
                DPS_OK
            );
            assert_eq!(
                dps_config_set_symmetric_key(
                    cfg,
                    c"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".as_ptr()
                ),
                DPS_OK
            );
            assert_eq!(
                dps_client_new(cfg, &mut client, std::ptr::null_mut()),
                DPS_OK
            );
        }
        // The same path every client function takes, with a body that panics.
        assert_eq!(
            with_client(client, |_, _| panic!("injected by the test")),
            DPS_ERR_PANIC
        );
        let mut reg = std::ptr::null_mut();
        let mut wait = 0;
        unsafe {
            assert_eq!(dps_client_register(client, &mut reg), DPS_ERR_PANIC);
            assert_eq!(dps_client_step(client, &mut wait, &mut reg), DPS_ERR_PANIC);
            assert_eq!(dps_client_lookup(client, &mut reg), DPS_ERR_PANIC);
            assert!(reg.is_null());
            dps_client_cancel(client); // still safe
            dps_client_free(client);
            dps_config_free(cfg);
        }
    }
}
