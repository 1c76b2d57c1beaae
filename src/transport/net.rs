//! The network under TLS: DNS and TCP connect on a helper thread bounded by the deadline,
//! the cancel token (socket shutdown), the SIGPIPE-safe socket, timeouts.

use super::*;

/// Lets another thread interrupt a client: sets a flag, wakes any wait, and
/// shuts the socket down so a blocked read returns at once.
#[derive(Debug, Default)]
pub struct CancelToken {
    cancelled: AtomicBool,
    socket: Mutex<Option<TcpStream>>,
    wake: Condvar,
}

impl CancelToken {
    /// Requests cancellation. Safe from any thread, any number of times.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let guard = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = guard.as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.wake.notify_all();
    }

    /// Whether cancellation was requested since the last [`CancelToken::reset`].
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Clears the flag before a new operation.
    pub fn reset(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }

    /// Sleeps for `d` unless cancelled first; returns `true` when cancelled.
    pub fn wait(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut guard = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_cancelled() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            guard = match self.wake.wait_timeout(guard, until - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    pub(super) fn set_socket(&self, s: Option<TcpStream>) {
        *self.socket.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

/// The TCP socket under TLS. Every write goes through `TcpStream::write`,
/// which uses `send(MSG_NOSIGNAL)` on Linux; `TcpStream::write_vectored`
/// (what rustls calls by default) is `writev`, which raises SIGPIPE when the
/// server has closed the connection. A Rust program ignores SIGPIPE, but a C
/// program linking this library would be killed by it.
pub(super) struct Sock(pub(super) TcpStream);

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    // write_vectored: the default (first non-empty buffer through `write`).
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Whether a kept-alive connection can carry the next request, checked without blocking
/// (curl does the same before reusing a connection). Closed (end of stream, reset) or
/// anything other than TLS housekeeping received while idle (a `close_notify`, a stray
/// HTTP answer such as `408`) means no: the server is done with it. Session tickets that
/// arrived late are taken in and the connection kept.
pub(super) fn idle_connection_usable(tls: &mut Tls) -> bool {
    if tls.sock.0.set_nonblocking(true).is_err() {
        return false;
    }
    let usable = loop {
        match tls.sock.0.peek(&mut [0u8; 1]) {
            Ok(0) => break false,
            Ok(_) => match tls.conn.read_tls(&mut tls.sock) {
                Ok(0) => break false,
                Ok(_) => match tls.conn.process_new_packets() {
                    Ok(state)
                        if !state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 => {}
                    _ => break false,
                },
                Err(e) => break e.kind() == io::ErrorKind::WouldBlock,
            },
            Err(e) => break e.kind() == io::ErrorKind::WouldBlock,
        }
    };
    tls.sock.0.set_nonblocking(false).is_ok() && usable
}

/// Resolves `host:port` within the request deadline. The system resolver
/// cannot be interrupted, so it runs on a helper thread and we stop waiting
/// for it at `until` (the thread ends when the resolver gives up).
/// Resolves `host` and connects to the first address that answers, all
/// before `until`. Neither the system resolver nor a TCP connect can be
/// interrupted, so both run on a helper thread; this thread waits for it in
/// short slices and stops at `until` or as soon as `cancel` is set (the
/// helper ends on its own when the resolver or the connect gives up).
pub(super) fn open_tcp(
    host: &str,
    port: u16,
    until: Instant,
    cancel: &CancelToken,
) -> Result<TcpStream> {
    const SLICE: Duration = Duration::from_millis(20);
    let (tx, rx) = mpsc::channel();
    let owned = host.to_owned();
    let spawned = std::thread::Builder::new()
        .name("dps-connect".into())
        .spawn(move || {
            let _ = tx.send(resolve_and_connect(&owned, port, until));
        });
    if spawned.is_err() {
        // No thread available: do it inline (bounded by `until`, not cancellable).
        return resolve_and_connect(host, port, until);
    }
    loop {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let left = remaining(until).ok_or_else(timeout_error)?;
        match rx.recv_timeout(left.min(SLICE)) {
            Ok(r) => return r,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "the connecting thread ended without a result",
                ));
            }
        }
    }
}

pub(super) fn resolve_and_connect(host: &str, port: u16, until: Instant) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| {
                Error::new(ErrorKind::Dns, format!("cannot resolve {host}: {e}")).retriable(true)
            })?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        let left = remaining(until).ok_or_else(timeout_error)?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((_, e)) if e.kind() == io::ErrorKind::TimedOut => timeout_error(),
        Some((addr, e)) => {
            Error::new(ErrorKind::Connect, format!("cannot connect to {addr}: {e}")).retriable(true)
        }
        None => {
            Error::new(ErrorKind::Dns, format!("{host} resolved to no address")).retriable(true)
        }
    })
}

pub(super) fn remaining(until: Instant) -> Option<Duration> {
    let left = until.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

pub(super) fn set_timeouts(sock: &TcpStream, until: Instant) -> Result<()> {
    let left = remaining(until).ok_or_else(timeout_error)?;
    let _ = sock.set_read_timeout(Some(left));
    let _ = sock.set_write_timeout(Some(left));
    Ok(())
}

pub(super) fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}
