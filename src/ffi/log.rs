//! The process-wide log callback, bridging the `log` facade to C.

use std::ffi::{c_char, c_void};
use std::sync::{OnceLock, RwLock};

use super::*;

/// Log level: errors.
pub const DPS_LOG_ERROR: u32 = 1;
/// Log level: warnings.
pub const DPS_LOG_WARN: u32 = 2;
/// Log level: progress of a registration (one line per outcome).
pub const DPS_LOG_INFO: u32 = 3;
/// Log level: every request and retry decision.
pub const DPS_LOG_DEBUG: u32 = 4;
/// Log level: TLS and internal detail.
pub const DPS_LOG_TRACE: u32 = 5;

/// Log callback. `level` is a `DPS_LOG_*` value; `message` is a NUL-terminated
/// line, borrowed for the duration of the call, with secrets (keys, SAS
/// signatures, passwords) never included. May run on any thread that calls
/// into the library, concurrently: it must be thread-safe and return normally.
pub type dps_log_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, level: u32, message: *const c_char)>;

#[derive(Clone, Copy)]
struct Sink {
    cb: unsafe extern "C" fn(*mut c_void, u32, *const c_char),
    userdata: *mut c_void,
}
// SAFETY: the caller of dps_set_log_callback promises the callback is
// thread-safe and userdata usable from any thread.
unsafe impl Send for Sink {}
unsafe impl Sync for Sink {}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static INSTALLED: OnceLock<bool> = OnceLock::new();

thread_local! {
    static IN_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct Bridge;

impl ::log::Log for Bridge {
    fn enabled(&self, m: &::log::Metadata<'_>) -> bool {
        m.level() <= ::log::max_level()
    }

    fn log(&self, record: &::log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Copy the sink out and release the lock before calling out, so the callback may call
        // dps_set_log_callback (or anything that logs) without deadlocking.
        let sink = match SINK.read() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        };
        let Some(sink) = sink else { return };
        // A line logged while this thread is already inside the callback (the callback called
        // into the library) is dropped rather than delivered re-entrantly.
        if IN_CALLBACK.with(|f| f.replace(true)) {
            return;
        }
        let level = match record.level() {
            ::log::Level::Error => DPS_LOG_ERROR,
            ::log::Level::Warn => DPS_LOG_WARN,
            ::log::Level::Info => DPS_LOG_INFO,
            ::log::Level::Debug => DPS_LOG_DEBUG,
            ::log::Level::Trace => DPS_LOG_TRACE,
        };
        let line = crate::redact::redact(&format!("{}: {}", record.target(), record.args()));
        let c = cstring(&line);
        // SAFETY: the callback was supplied by the C caller; the string lives across the call.
        unsafe { (sink.cb)(sink.userdata, level, c.as_ptr()) };
        IN_CALLBACK.with(|f| f.set(false));
    }

    fn flush(&self) {}
}

/// Sets the process-wide log callback (the library logs through Rust's `log`
/// facade, which allows one logger per process) and the most verbose level to
/// deliver (`DPS_LOG_ERROR` .. `DPS_LOG_TRACE`; 0 turns logging off). Lines
/// above `max_level` are filtered before they are formatted. Calling it again
/// replaces the callback; a NULL `callback` disables logging. `userdata` is
/// passed back as the first argument.
///
/// Returns `DPS_OK`, `DPS_ERR_INVALID_ARGUMENT` (`max_level` > 5) or
/// `DPS_ERR_INVALID_STATE` when another `log` logger was already installed in
/// this process by other Rust code. Thread-safe. May be called from inside the log
/// callback (to replace or disable it); lines the library logs while the callback runs
/// on the same thread are dropped. A callback replaced while another thread is inside it
/// finishes that call: keep the old `userdata` valid until such calls have returned.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn dps_set_log_callback(
    callback: dps_log_callback,
    userdata: *mut c_void,
    max_level: u32,
) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        let filter = match max_level {
            0 => ::log::LevelFilter::Off,
            DPS_LOG_ERROR => ::log::LevelFilter::Error,
            DPS_LOG_WARN => ::log::LevelFilter::Warn,
            DPS_LOG_INFO => ::log::LevelFilter::Info,
            DPS_LOG_DEBUG => ::log::LevelFilter::Debug,
            DPS_LOG_TRACE => ::log::LevelFilter::Trace,
            _ => return DPS_ERR_INVALID_ARGUMENT,
        };
        let ours = *INSTALLED.get_or_init(|| ::log::set_boxed_logger(Box::new(Bridge)).is_ok());
        if !ours {
            return DPS_ERR_INVALID_STATE;
        }
        let sink = callback.map(|cb| Sink { cb, userdata });
        match SINK.write() {
            Ok(mut g) => *g = sink,
            Err(p) => *p.into_inner() = sink,
        }
        ::log::set_max_level(if sink.is_some() {
            filter
        } else {
            ::log::LevelFilter::Off
        });
        DPS_OK
    })
}
