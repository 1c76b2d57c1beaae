//! Poll pacing: at most `max_polls` polls of an operation per sliding window (DPS documents 5
//! per 10 s per device). `Retry-After` is followed exactly while the window has room, so a
//! quick first poll (`Retry-After: 0`) costs no latency; a server that keeps asking for 0 gets
//! a small burst and then one poll per freed slot, never a busy loop.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::PollRate;

#[derive(Debug)]
pub(crate) struct PollPacer {
    rate: PollRate,
    /// When the polls of the current window were sent, oldest first (at most `max_polls`).
    sent: VecDeque<Instant>,
}

impl PollPacer {
    pub(crate) fn new(rate: PollRate) -> PollPacer {
        PollPacer {
            rate,
            sent: VecDeque::with_capacity(rate.max_polls as usize),
        }
    }

    /// Forgets the polls of an earlier operation.
    pub(crate) fn reset(&mut self) {
        self.sent.clear();
    }

    /// The earliest time a poll may be sent, given the server asked for `wanted`.
    pub(crate) fn earliest(&self, wanted: Instant) -> Instant {
        if self.sent.len() < self.rate.max_polls as usize {
            return wanted;
        }
        match self.sent.front() {
            Some(&oldest) => wanted.max(oldest + self.rate.window),
            None => wanted,
        }
    }

    /// Records a poll sent at `at`.
    pub(crate) fn record(&mut self, at: Instant) {
        while self.sent.len() >= self.rate.max_polls as usize {
            self.sent.pop_front();
        }
        self.sent.push_back(at);
    }

    /// How much longer than `wanted` the pacer makes a poll wait.
    pub(crate) fn extra(&self, wanted: Instant) -> Duration {
        self.earliest(wanted).saturating_duration_since(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_freed_slot() {
        let rate = PollRate {
            max_polls: 5,
            window: Duration::from_secs(10),
        };
        let mut p = PollPacer::new(rate);
        let t0 = Instant::now();
        let mut now = t0;
        let mut times = Vec::new();
        for _ in 0..12 {
            // The server always asks for Retry-After: 0.
            now = p.earliest(now);
            p.record(now);
            times.push(now - t0);
        }
        assert!(times[..5].iter().all(|t| t.is_zero()), "{times:?}");
        assert_eq!(times[5], Duration::from_secs(10));
        assert_eq!(times[10], Duration::from_secs(20));
        // Never more than 5 in any 10 s window.
        for w in times.windows(6) {
            assert!(w[5] - w[0] >= Duration::from_secs(10), "{times:?}");
        }
        p.reset();
        assert_eq!(p.extra(now), Duration::ZERO);
    }
}
