//! Stderr: library log lines (`-v`, `-vv`, `-vvv`) and progress lines.

use std::io::IsTerminal;

use dps::Event;

use crate::args::Parsed;
use crate::output::clean;
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            // Log lines may quote what the server sent: never raw control characters; and
            // never a secret, whatever a dependency logged (the library's own redaction).
            eprintln!(
                "dps: [{}] {}: {}",
                r.level().as_str().to_ascii_lowercase(),
                r.target(),
                clean(&dps::redact::redact(&r.args().to_string()))
            );
        }
    }
    fn flush(&self) {}
}

pub fn init_logging(verbosity: u32) {
    let level = match verbosity {
        0 => return,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    if log::set_boxed_logger(Box::new(StderrLogger)).is_ok() {
        log::set_max_level(level);
    }
}

pub fn progress_wanted(p: &Parsed) -> bool {
    !p.flag("--quiet") && (p.flag("--progress") || std::io::stderr().is_terminal())
}

pub fn progress_observer(endpoint: String) -> dps::client::Observer {
    Box::new(move |ev: Event| {
        let line = match ev {
            Event::Registering => format!("registering with {endpoint} ..."),
            Event::Assigning { wait } => {
                format!("assigning; next poll in {:.1} s", wait.as_secs_f64())
            }
            Event::Retrying { wait, cause } => format!(
                "retrying in {:.1} s after: {}",
                wait.as_secs_f64(),
                cause.describe()
            ),
            Event::Assigned => "assigned".into(),
            Event::Failed(kind) => format!("failed: {}", kind.describe()),
        };
        eprintln!("dps: {}", clean(&line));
    })
}
