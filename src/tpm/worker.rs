//! The thread that owns the ESAPI context, so a caller can stop waiting for a TPM that hangs.
//!
//! tpm2-tss' TCTIs block without a timeout (the swtpm and mssim TCTIs poll with an infinite
//! timeout; a kernel TPM driver has its own, minutes long). Every operation is therefore sent
//! as a job to this thread and the caller waits for the answer on a channel until its deadline.
//! When the deadline passes (or the [`CancelToken`] fires) the caller returns at once and the
//! worker is abandoned: the connection is marked unusable, because the TPM may still execute
//! the command, and the thread ends when the TCTI returns (a killed TPM process closes the
//! socket) or when the process exits.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::State;
use crate::error::{Error, ErrorKind, Result};
use crate::transport::CancelToken;

type Job = Box<dyn FnOnce(&mut State) + Send>;

/// How often a waiting caller looks at its cancel token.
const CANCEL_POLL: Duration = Duration::from_millis(20);

pub(crate) struct Worker {
    jobs: Option<Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Why the connection is unusable, once a command was abandoned.
    broken: Option<String>,
}

impl Worker {
    /// Starts the thread, runs `init` on it (which opens the context) and waits for it.
    pub(crate) fn start<T: Send + 'static>(
        init: impl FnOnce() -> Result<(State, T)> + Send + 'static,
        deadline: Instant,
        cancel: Option<&CancelToken>,
    ) -> Result<(Worker, T)> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<T>>(1);
        let thread = std::thread::Builder::new()
            .name("dps-tpm".into())
            .spawn(move || {
                let mut state = match init() {
                    Ok((state, value)) => {
                        if ready_tx.send(Ok(value)).is_err() {
                            return;
                        }
                        state
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for job in jobs_rx {
                    job(&mut state);
                    if super::CONNECTION_BROKEN.with(|b| b.replace(false)) {
                        // Reconnect (ESAPI context and handles) before the next command.
                        state.ctx = None;
                        state.identity = None;
                    }
                }
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("cannot start the TPM thread: {e}"),
                )
            })?;
        let mut worker = Worker {
            jobs: Some(jobs_tx),
            thread: Some(thread),
            broken: None,
        };
        match wait(&ready_rx, deadline, cancel, "opening the TPM") {
            Ok(value) => Ok((worker, value)),
            Err(e) => {
                // Still connecting or not: do not wait for it on drop.
                worker.broken = Some(e.message.clone());
                Err(e)
            }
        }
    }

    /// Runs `job` on the worker and waits for its result until `deadline`.
    pub(crate) fn run<T: Send + 'static>(
        &mut self,
        deadline: Instant,
        cancel: Option<&CancelToken>,
        job: impl FnOnce(&mut State) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if let Some(why) = &self.broken {
            return Err(Error::new(ErrorKind::Tpm, why.clone()));
        }
        if cancel.is_some_and(|c| c.is_cancelled()) {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "the TPM operation was cancelled",
            ));
        }
        let (tx, rx) = mpsc::sync_channel::<Result<T>>(1);
        let sent = self.jobs.as_ref().is_some_and(|jobs| {
            jobs.send(Box::new(move |st: &mut State| {
                let _ = tx.send(job(st));
            }))
            .is_ok()
        });
        if !sent {
            self.broken = Some("the TPM thread has ended; open the TPM again".into());
            return Err(Error::new(
                ErrorKind::Tpm,
                "the TPM thread has ended; open the TPM again",
            ));
        }
        let result = wait(&rx, deadline, cancel, "the TPM command");
        if let Err(e) = &result {
            if matches!(e.kind, ErrorKind::DeadlineExceeded | ErrorKind::Cancelled) {
                // The TPM may still be executing: nothing more can be sent on this connection.
                self.broken = Some(format!(
                    "an earlier TPM command was abandoned ({}); open the TPM again",
                    e.message
                ));
                self.jobs = None;
            } else if e.message.contains("TPM thread") {
                self.broken = Some(e.message.clone());
            }
        }
        result
    }
}

impl Drop for Worker {
    /// Closes the connection before returning, so the TPM (a swtpm or mssim socket serves one
    /// client) is free for the next user. An abandoned worker is not waited for.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if self.broken.is_none() {
                let _ = thread.join();
            }
        }
    }
}

fn wait<T>(
    rx: &Receiver<Result<T>>,
    deadline: Instant,
    cancel: Option<&CancelToken>,
    what: &str,
) -> Result<T> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::new(
                ErrorKind::DeadlineExceeded,
                format!("{what} did not finish before the deadline: the TPM is not answering"),
            ));
        }
        let slice = match cancel {
            Some(_) => (deadline - now).min(CANCEL_POLL),
            None => deadline - now,
        };
        match rx.recv_timeout(slice) {
            Ok(result) => return result,
            Err(RecvTimeoutError::Timeout) => {
                if cancel.is_some_and(|c| c.is_cancelled()) {
                    return Err(Error::new(
                        ErrorKind::Cancelled,
                        format!("{what} was cancelled"),
                    ));
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::new(
                    ErrorKind::Tpm,
                    format!("{what} failed: the TPM thread ended unexpectedly"),
                ));
            }
        }
    }
}
