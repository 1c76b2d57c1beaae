//! What the state machine needs from the outside world, as two small traits so that unit tests
//! drive it with a scripted server and a fake clock: every retry, deadline, poll and 401
//! decision is tested in microseconds (see `tests.rs`), beside the emulator tests.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::error::Result;
use crate::transport::{CancelToken, Request, Response, Stats, Transport};

/// One HTTP exchange at a time over a kept-alive connection.
pub(crate) trait Exchange: Send {
    /// Sends `req` and reads the whole response before `until`.
    fn send(&mut self, req: &Request<'_>, until: Instant) -> Result<Response>;
    /// Drops the connection (the next request opens a new one).
    fn close(&mut self);
    /// Connection counters.
    fn stats(&self) -> Stats;
}

impl Exchange for Transport {
    fn send(&mut self, req: &Request<'_>, until: Instant) -> Result<Response> {
        Transport::send(self, req, until)
    }
    fn close(&mut self) {
        Transport::close(self)
    }
    fn stats(&self) -> Stats {
        Transport::stats(self)
    }
}

/// Time, and waiting for it.
pub(crate) trait Clock: Send {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock now (SAS expiry, HTTP-date `Retry-After`).
    fn wall(&self) -> SystemTime;
    /// Waits `d` unless `cancel` fires first; `true` when cancelled.
    fn wait(&self, d: Duration, cancel: &Arc<CancelToken>) -> bool;
}

/// The real clock.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    fn wait(&self, d: Duration, cancel: &Arc<CancelToken>) -> bool {
        cancel.wait(d)
    }
}
