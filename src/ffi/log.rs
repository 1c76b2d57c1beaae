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

struct Bridge;

impl ::log::Log for Bridge {
    fn enabled(&self, m: &::log::Metadata<'_>) -> bool {
        m.level() <= ::log::max_level()
    }

    fn log(&self, record: &::log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Ok(guard) = SINK.read() else { return };
        let Some(sink) = *guard else { return };
        let level = match record.level() {
            ::log::Level::Error => DPS_LOG_ERROR,
            ::log::Level::Warn => DPS_LOG_WARN,
            ::log::Level::Info => DPS_LOG_INFO,
            ::log::Level::Debug => DPS_LOG_DEBUG,
            ::log::Level::Trace => DPS_LOG_TRACE,
        };
        let line = redact(&format!("{}: {}", record.target(), record.args()));
        let c = cstring(&line);
        // SAFETY: the callback was supplied by the C caller; the string lives across the call.
        unsafe { (sink.cb)(sink.userdata, level, c.as_ptr()) };
    }

    fn flush(&self) {}
}

/// Masks anything that looks like a credential: SAS signatures and tokens,
/// `SharedAccessKey=` values and Basic auth. The library never logs them;
/// this is a second line of defence for messages from dependencies.
pub(crate) fn redact(s: &str) -> String {
    let mut out = s.to_owned();
    // (marker, whether the secret also ends at '&' or ';', not only at whitespace)
    for (marker, in_query) in [
        ("sig=", true),
        ("SharedAccessKey=", true),
        ("SharedAccessSignature ", false),
        ("Basic ", false),
    ] {
        let mut from = 0;
        while let Some(i) = out[from..].find(marker) {
            let start = from + i + marker.len();
            let end = out[start..]
                .find(|c: char| c.is_whitespace() || (in_query && (c == '&' || c == ';')))
                .map_or(out.len(), |j| start + j);
            out.replace_range(start..end, "<redacted>");
            from = start + "<redacted>".len();
        }
    }
    out
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
/// this process by other Rust code. Thread-safe.
#[unsafe(no_mangle)]
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

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_secrets() {
        assert_eq!(
            redact(
                "Authorization: SharedAccessSignature sr=a%2fb&sig=abc%2B&se=1&skn=registration"
            ),
            "Authorization: SharedAccessSignature <redacted>"
        );
        assert_eq!(
            redact("HostName=h;DeviceId=d;SharedAccessKey=secret=="),
            "HostName=h;DeviceId=d;SharedAccessKey=<redacted>"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
