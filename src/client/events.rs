//! What the state machine tells its caller: the next [`Step`], and progress [`Event`]s.

use std::time::Duration;

use crate::error::ErrorKind;
use crate::protocol::wire::Registration;

/// What [`Client::step`] asks of its caller.
// Returned once per call and moved straight out: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not finished: call `step` again after this long.
    Pending(Duration),
    /// Finished: the device is assigned.
    Done(Registration),
}

/// Progress reported to an observer during a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The register request (PUT) is about to be sent.
    Registering,
    /// DPS accepted the registration and is assigning; the next poll is after `wait`.
    Assigning {
        /// Time until the next poll.
        wait: Duration,
    },
    /// A transient failure (throttling, server or network error); retrying after `wait`.
    Retrying {
        /// Time until the retry.
        wait: Duration,
        /// The kind of the failure being retried.
        cause: ErrorKind,
    },
    /// The device is assigned.
    Assigned,
    /// The registration ended with an error.
    Failed(ErrorKind),
}

/// Receives [`Event`]s on the thread that drives the client.
pub type Observer = Box<dyn FnMut(Event) + Send>;
