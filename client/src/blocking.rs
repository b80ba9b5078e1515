//! The blocking API, for programs without an async runtime: std sockets and the protocol's
//! pure frame functions, no hidden runtime.
//!
//! - [`Agent`]: a persistent connection with [`Agent::token`], [`Agent::status`], …, that
//!   reconnects after a daemon restart exactly like [`crate::Agent`].
//! - [`get`] / [`get_from`]: a one-shot `get` (and the `tokd get` hot path): hello and
//!   request leave in one write, both answers are read back — one round trip.
//!
//! ```no_run
//! # fn demo() -> Result<(), tokd::ClientError> {
//! let mut agent = tokd::blocking::Agent::new();
//! let token = agent.token("work", std::time::Duration::from_secs(30))?;
//! let header = format!("Bearer {}", token.access_token.expose());
//! # let _ = header; Ok(()) }
//! ```

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokd_protocol::frame::{
    DEFAULT_MAX_FRAME, MAX_RESPONSE_FRAME, decode_payload, encode_frame, encode_message,
    read_frame_blocking,
};
use tokd_protocol::paths::{SocketPath, resolve_socket_path};
use tokd_protocol::verbs::get::{GetRequest, TokenReply};
use tokd_protocol::verbs::list::ListEntry;
use tokd_protocol::verbs::ping::PongReply;
use tokd_protocol::verbs::refresh::RefreshReply;
use tokd_protocol::verbs::status::StatusReply;
use tokd_protocol::{Hello, HelloAck, ProtocolError, Request, Response};

use crate::calls;
use crate::connection::{CONNECT_TIMEOUT, answer_limit};
use crate::dial::connect_blocking;
use crate::error::{ClientError, check_ack, connect_error};
use crate::retry::{
    Backoff, Next, RetryPolicy, after_answer_failure, after_send_failure, connect_retryable,
};

/// Fetches a token in one round trip over a fresh connection to the default socket.
///
/// # Errors
/// As [`crate::Client::get_with`].
pub fn get(req: GetRequest) -> Result<TokenReply, ClientError> {
    get_from(&resolve_socket_path(None), req)
}

/// Fetches a token in one round trip over a fresh connection to `socket`.
///
/// # Errors
/// As [`crate::Client::get_with`].
pub fn get_from(socket: &SocketPath, req: GetRequest) -> Result<TokenReply, ClientError> {
    let mut stream = connect_blocking(socket)?;
    let limit = Duration::from_millis(req.wait_ms) + Duration::from_secs(10);
    stream
        .set_read_timeout(Some(limit))
        .map_err(|e| connect_error(&socket.path, e))?;

    let mut out = Vec::with_capacity(256);
    let hello = Hello::current(concat!("tokd/", env!("CARGO_PKG_VERSION"))).encode();
    encode_frame(&hello, DEFAULT_MAX_FRAME, &mut out)?;
    encode_message(&calls::get_request(req), DEFAULT_MAX_FRAME, &mut out)?;
    stream.write_all(&out).map_err(|e| {
        // A peer that was rejected may close before reading; the refusal is still readable.
        tokd_protocol::ProtocolError::Io(e)
    }).or_else(|e| if matches!(&e, tokd_protocol::ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe) { Ok(()) } else { Err(e) })?;

    let ack =
        read_frame_blocking(&mut stream, MAX_RESPONSE_FRAME).map_err(|e| timeout(e, limit))?;
    check_ack(HelloAck::decode(&ack)?)?;
    let answer =
        read_frame_blocking(&mut stream, MAX_RESPONSE_FRAME).map_err(|e| timeout(e, limit))?;
    match decode_payload::<Response>(&answer)? {
        Response::Error(e) => Err(ClientError::Daemon(e)),
        other => calls::token(other),
    }
}

fn timeout(e: tokd_protocol::ProtocolError, limit: Duration) -> ClientError {
    match &e {
        tokd_protocol::ProtocolError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            ClientError::Timeout(limit)
        }
        tokd_protocol::ProtocolError::Truncated => ClientError::Closed,
        _ => ClientError::Protocol(e),
    }
}

/// The client name a blocking [`Agent`] gives in its hello unless told otherwise.
const DEFAULT_CLIENT_NAME: &str = concat!("tokd-lib-blocking/", env!("CARGO_PKG_VERSION"));

/// The blocking twin of [`crate::Agent`]: one persistent connection (a std `UnixStream`),
/// re-established when the daemon restarts, with the same rules.
///
/// It connects at the first call. A transport failure (daemon restarted, crashed, closed an
/// idle connection) makes the call reconnect, retrying with backoff under the
/// [`RetryPolicy`] (10 s by default) before it returns the last error, typically
/// [`ClientError::NotRunning`]. The daemon's answers (`not_found`, `needs_login`, …) are
/// returned at once, never retried. A request whose answer was lost is repeated only when
/// that is harmless (`get`, `status`, `list`, `ping`); a lost `refresh` is reported as
/// [`ClientError::Interrupted`]. Calls block the calling thread; nothing runs in the
/// background.
#[derive(Debug)]
pub struct Agent {
    socket: SocketPath,
    client_name: String,
    retry: RetryPolicy,
    conn: Option<Conn>,
    /// A request was sent on `conn` and its answer not read (a panic unwound through the
    /// call): `conn` is out of step and must not be used again.
    in_flight: bool,
}

/// One greeted connection.
#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    daemon_version: String,
}

impl Default for Agent {
    fn default() -> Self {
        Agent::new()
    }
}

impl Agent {
    /// An agent for the default socket (`TOKD_SOCKET`, `$XDG_RUNTIME_DIR`, `/run/user/$UID`,
    /// or the per-user temp directory), resolved now. It connects at the first call, and
    /// only to a daemon of this user or root (or of the uid in `TOKD_DAEMON_UID`).
    pub fn new() -> Agent {
        Agent::with_socket(resolve_socket_path(None))
    }

    /// An agent for `socket`. It connects at the first call.
    pub fn with_socket(socket: SocketPath) -> Agent {
        Agent {
            socket,
            client_name: DEFAULT_CLIENT_NAME.to_owned(),
            retry: RetryPolicy::DEFAULT,
            conn: None,
            in_flight: false,
        }
    }

    /// This agent with another retry policy.
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Agent {
        self.retry = policy;
        self
    }

    /// This agent with another client name in its hello (it shows in the daemon's logs).
    #[must_use]
    pub fn client_name(mut self, name: impl Into<String>) -> Agent {
        self.client_name = name.into();
        self
    }

    /// The socket this agent talks to.
    pub fn socket(&self) -> &SocketPath {
        &self.socket
    }

    /// Whether a connection is open right now (it may still turn out to be broken).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The software version of the daemon at the other end of the current connection.
    pub fn daemon_version(&self) -> Option<&str> {
        self.conn.as_ref().map(|c| c.daemon_version.as_str())
    }

    /// Connects now if not connected (retrying under the policy). Optional: calls connect
    /// by themselves.
    ///
    /// # Errors
    /// [`ClientError::NotRunning`] when the budget ran out, `VersionMismatch`, `Refused`, …
    pub fn connect(&mut self) -> Result<(), ClientError> {
        if self.in_flight {
            self.drop_connection();
        }
        if self.conn.is_none() {
            let mut backoff = Backoff::new(self.retry);
            self.conn = Some(connect_with_retry(
                &self.socket,
                &self.client_name,
                &mut backoff,
            )?);
        }
        Ok(())
    }

    /// The current token of session `name`, valid for at least `min_valid` if at all
    /// possible (the daemon refreshes first when it has less left, waiting up to 10 s).
    ///
    /// # Errors
    /// [`ClientError::Daemon`] with `not_found`, `needs_login`, `expired`, …;
    /// [`ClientError::NotRunning`] when the daemon cannot be reached in time.
    pub fn token(&mut self, name: &str, min_valid: Duration) -> Result<TokenReply, ClientError> {
        self.get_with(calls::get(name, min_valid))
    }

    /// [`Agent::token`] with every option of the `get` request.
    ///
    /// # Errors
    /// See [`Agent::token`].
    pub fn get_with(&mut self, req: GetRequest) -> Result<TokenReply, ClientError> {
        let wait = calls::get_wait(&req);
        calls::token(self.call(&calls::get_request(req), wait)?)
    }

    /// Daemon identity and session health (all sessions, or one).
    ///
    /// # Errors
    /// `Daemon` with `not_found` for an unknown name; transport errors after retrying.
    pub fn status(&mut self, name: Option<&str>) -> Result<StatusReply, ClientError> {
        calls::status_reply(self.call(&calls::status(name), Duration::ZERO)?)
    }

    /// Every session's name, provider and state.
    ///
    /// # Errors
    /// Transport errors after retrying.
    pub fn list(&mut self) -> Result<Vec<ListEntry>, ClientError> {
        calls::list_reply(self.call(&calls::list(), Duration::ZERO)?)
    }

    /// Liveness probe; the answer holds the daemon's pid and version.
    ///
    /// # Errors
    /// Transport errors after retrying.
    pub fn ping(&mut self) -> Result<PongReply, ClientError> {
        calls::pong(self.call(&calls::ping(), Duration::ZERO)?)
    }

    /// Refreshes session `name` now (subject to the daemon's minimum interval) and waits
    /// for the result. Not repeated when the connection breaks after it was sent.
    ///
    /// # Errors
    /// `Daemon` with `not_found`, `needs_login`, `refresh_failed`, …;
    /// [`ClientError::Interrupted`] when the connection broke before the answer.
    pub fn refresh(&mut self, name: &str) -> Result<RefreshReply, ClientError> {
        calls::refreshed(self.call(&calls::refresh(name), calls::REFRESH_WAIT)?)
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.in_flight = false;
    }

    /// One request and its answer, reconnecting and retrying like [`crate::Agent`].
    fn call(&mut self, request: &Request, wait: Duration) -> Result<Response, ClientError> {
        let mut backoff = Backoff::new(self.retry);
        let mut frame = Vec::with_capacity(128);
        encode_message(request, DEFAULT_MAX_FRAME, &mut frame)?;
        loop {
            if self.in_flight {
                self.drop_connection();
            }
            let conn = match self.conn.take() {
                Some(conn) => conn,
                None => connect_with_retry(&self.socket, &self.client_name, &mut backoff)?,
            };
            let conn = self.conn.insert(conn);
            self.in_flight = true;
            let next = match conn.stream.write_all(&frame) {
                Err(e) => {
                    after_send_failure(ClientError::Protocol(ProtocolError::Io(e)), &mut backoff)
                }
                Ok(()) => match read_response(&mut conn.stream, answer_limit(wait)) {
                    Ok(response) => {
                        self.in_flight = false;
                        return Ok(response);
                    }
                    Err(e) => after_answer_failure(request, e, &mut backoff),
                },
            };
            match next {
                Next::Answered(e) => {
                    self.in_flight = false;
                    return Err(e);
                }
                Next::GiveUp(e) => {
                    self.drop_connection();
                    return Err(e);
                }
                Next::Retry(delay) => {
                    self.drop_connection();
                    pause(delay);
                }
            }
        }
    }
}

/// Reads one answer within `limit`; an `Error` answer becomes `Err`.
fn read_response(stream: &mut UnixStream, limit: Duration) -> Result<Response, ClientError> {
    stream
        .set_read_timeout(Some(limit))
        .map_err(|e| ClientError::Protocol(ProtocolError::Io(e)))?;
    let frame = read_frame_blocking(stream, MAX_RESPONSE_FRAME).map_err(|e| timeout(e, limit))?;
    match decode_payload::<Response>(&frame)? {
        Response::Error(e) => Err(ClientError::Daemon(e)),
        other => Ok(other),
    }
}

/// Connects and greets once.
fn connect_once(socket: &SocketPath, name: &str) -> Result<Conn, ClientError> {
    let mut stream = connect_blocking(socket)?;
    let io = |e| ClientError::Protocol(ProtocolError::Io(e));
    stream
        .set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(io)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(io)?;
    let mut out = Vec::with_capacity(64);
    encode_frame(&Hello::current(name).encode(), DEFAULT_MAX_FRAME, &mut out)?;
    match stream.write_all(&out) {
        // A peer that was refused may be closed before reading; the refusal is readable.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(io(e)),
        _ => {}
    }
    let ack = read_frame_blocking(&mut stream, MAX_RESPONSE_FRAME)
        .map_err(|e| timeout(e, CONNECT_TIMEOUT))?;
    let (daemon_version, _minor) = check_ack(HelloAck::decode(&ack)?)?;
    Ok(Conn {
        stream,
        daemon_version,
    })
}

/// Connects and greets, retrying what is worth retrying until `backoff` says stop.
fn connect_with_retry(
    socket: &SocketPath,
    name: &str,
    backoff: &mut Backoff,
) -> Result<Conn, ClientError> {
    loop {
        match connect_once(socket, name) {
            Ok(conn) => return Ok(conn),
            Err(e) if connect_retryable(&e) => match backoff.next_delay() {
                Some(delay) => pause(delay),
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

fn pause(delay: Duration) {
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
}
