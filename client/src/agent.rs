//! [`Agent`]: one connection for a long-running program, re-established transparently after
//! the daemon restarts; [`Watch`]: a session-event stream that resumes the same way.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokd_protocol::paths::{SocketPath, resolve_socket_path};
use tokd_protocol::verbs::add::{AddReply, AddRequest};
use tokd_protocol::verbs::get::{GetRequest, TokenReply};
use tokd_protocol::verbs::list::ListEntry;
use tokd_protocol::verbs::logout::LogoutReply;
use tokd_protocol::verbs::ping::PongReply;
use tokd_protocol::verbs::refresh::RefreshReply;
use tokd_protocol::verbs::status::StatusReply;
use tokd_protocol::verbs::watch::{WatchEvent, WatchEventKind};
use tokd_protocol::{Request, Response};

use crate::calls;
use crate::connection::{Client, Stream, answer_limit};
use crate::error::ClientError;
use crate::retry::{
    Backoff, Next, RetryPolicy, after_answer_failure, after_send_failure, answer_retryable,
    connect_retryable,
};

/// The client name an [`Agent`] gives in its hello unless told otherwise.
const DEFAULT_CLIENT_NAME: &str = concat!("tokd-lib/", env!("CARGO_PKG_VERSION"));

/// A reconnecting client for long-running programs: one connection, kept for every call and
/// re-established when the daemon restarts.
///
/// The connection is made at the first call (or [`Agent::connect`]). When it breaks — the
/// daemon restarted, crashed, or closed an idle connection — the next call reconnects,
/// retrying with backoff under the [`RetryPolicy`] (by default for up to 10 s), then gives
/// up with the last error, typically [`ClientError::NotRunning`].
///
/// Only transport failures are retried, never the daemon's answers: `not_found`,
/// `needs_login` and the like come back as [`ClientError::Daemon`] at once. A request whose
/// answer was lost with the connection is sent again only when that is harmless (`get`,
/// `status`, `list`, `ping`); `refresh`, `add`, `remove` and `logout` fail with
/// [`ClientError::Interrupted`] instead, because they may already have taken effect.
///
/// Calls take `&mut self`; share an agent between tasks behind a `tokio::sync::Mutex`.
/// Dropping a call's future half-way (a timeout, `select!`) is safe: the connection is then
/// out of step with its answers, so the next call replaces it.
///
/// ```no_run
/// # async fn demo() -> Result<(), tokd::ClientError> {
/// use std::time::Duration;
/// let mut agent = tokd::Agent::new();
/// loop {
///     let token = agent.token("work", Duration::from_secs(60)).await?;
///     // … use token.access_token.expose() …
/// #   let _ = token; break;
/// }
/// # Ok(()) }
/// ```
pub struct Agent {
    socket: SocketPath,
    client_name: String,
    retry: RetryPolicy,
    conn: Option<Client>,
    /// A request was sent on `conn` and its answer not read (the caller dropped the call):
    /// the next answer on `conn` would be the wrong one, so `conn` must not be used again.
    in_flight: bool,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("socket", &self.socket)
            .field("client_name", &self.client_name)
            .field("retry", &self.retry)
            .field("connected", &self.conn.is_some())
            .finish()
    }
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

    /// An agent for `socket` (e.g. from
    /// [`resolve_socket_path`](crate::protocol::paths::resolve_socket_path) with an explicit
    /// path). It connects at the first call.
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

    /// The retry policy in force.
    pub fn policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Whether a connection is open right now (it may still turn out to be broken).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The software version of the daemon at the other end of the current connection.
    pub fn daemon_version(&self) -> Option<&str> {
        self.conn.as_ref().map(Client::daemon_version)
    }

    /// Connects now if not connected (retrying under the policy), so that a program can fail
    /// early when no daemon comes up. Calls connect by themselves; this is optional.
    ///
    /// # Errors
    /// [`ClientError::NotRunning`] when the budget ran out, `VersionMismatch`, `Refused`, …
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        if self.in_flight {
            self.drop_connection();
        }
        if self.conn.is_none() {
            let mut backoff = Backoff::new(self.retry);
            self.conn =
                Some(connect_with_retry(&self.socket, &self.client_name, &mut backoff).await?);
        }
        Ok(())
    }

    /// The current token of session `name`, valid for at least `min_valid` if at all
    /// possible (the daemon refreshes first when it has less left, waiting up to 10 s).
    /// Check [`TokenReply::meets_min_valid`] when the margin matters.
    ///
    /// # Errors
    /// [`ClientError::Daemon`] with `not_found`, `needs_login`, `expired`, … when the daemon
    /// has no valid token; [`ClientError::NotRunning`] when it cannot be reached in time.
    pub async fn token(
        &mut self,
        name: &str,
        min_valid: Duration,
    ) -> Result<TokenReply, ClientError> {
        self.get_with(calls::get(name, min_valid)).await
    }

    /// [`Agent::token`] with every option of the `get` request.
    ///
    /// # Errors
    /// See [`Agent::token`].
    pub async fn get_with(&mut self, req: GetRequest) -> Result<TokenReply, ClientError> {
        let wait = calls::get_wait(&req);
        calls::token(self.call(&calls::get_request(req), wait).await?)
    }

    /// Daemon identity and session health (all sessions, or one).
    ///
    /// # Errors
    /// `Daemon` with `not_found` for an unknown name; transport errors after retrying.
    pub async fn status(&mut self, name: Option<&str>) -> Result<StatusReply, ClientError> {
        calls::status_reply(self.call(&calls::status(name), Duration::ZERO).await?)
    }

    /// Every session's name, provider and state.
    ///
    /// # Errors
    /// Transport errors after retrying.
    pub async fn list(&mut self) -> Result<Vec<ListEntry>, ClientError> {
        calls::list_reply(self.call(&calls::list(), Duration::ZERO).await?)
    }

    /// Liveness probe; the answer holds the daemon's pid and version.
    ///
    /// # Errors
    /// Transport errors after retrying.
    pub async fn ping(&mut self) -> Result<PongReply, ClientError> {
        calls::pong(self.call(&calls::ping(), Duration::ZERO).await?)
    }

    /// Refreshes session `name` now, even if its token is still good (subject to the
    /// daemon's minimum interval between two refreshes), and waits for the result. Not
    /// repeated when the connection breaks after it was sent.
    ///
    /// # Errors
    /// `Daemon` with `not_found`, `needs_login`, `refresh_failed`, …;
    /// [`ClientError::Interrupted`] when the connection broke before the answer.
    pub async fn refresh(&mut self, name: &str) -> Result<RefreshReply, ClientError> {
        calls::refreshed(
            self.call(&calls::refresh(name), calls::REFRESH_WAIT)
                .await?,
        )
    }

    /// Imports (or replaces) a session. Not repeated when the connection breaks after it
    /// was sent.
    ///
    /// # Errors
    /// `Daemon` with `already_exists` or `invalid`; [`ClientError::Interrupted`].
    pub async fn add(&mut self, req: AddRequest) -> Result<AddReply, ClientError> {
        calls::added(
            self.call(&calls::add(req), calls::PROVIDER_CALL_WAIT)
                .await?,
        )
    }

    /// Removes a session. Not repeated when the connection breaks after it was sent.
    ///
    /// # Errors
    /// `Daemon` with `not_found`; [`ClientError::Interrupted`].
    pub async fn remove(&mut self, name: &str) -> Result<(), ClientError> {
        calls::removed(self.call(&calls::remove(name), Duration::ZERO).await?)
    }

    /// Revokes (where the provider can) and removes a session. Not repeated when the
    /// connection breaks after it was sent.
    ///
    /// # Errors
    /// `Daemon` with `not_found`; [`ClientError::Interrupted`].
    pub async fn logout(&mut self, name: &str) -> Result<LogoutReply, ClientError> {
        calls::logged_out(
            self.call(&calls::logout(name), calls::PROVIDER_CALL_WAIT)
                .await?,
        )
    }

    /// Subscribes to session events on a connection of its own (same socket, name and
    /// retry policy), and returns once subscribed: every event from here on is delivered.
    /// The stream survives daemon restarts; see [`Watch`].
    ///
    /// # Errors
    /// [`ClientError::NotRunning`] when the daemon cannot be reached in time, or a refusal.
    pub async fn watch(&self) -> Result<Watch, ClientError> {
        let mut conn = WatchConn {
            socket: self.socket.clone(),
            client_name: self.client_name.clone(),
            retry: self.retry,
            stream: None,
            resync_due: false,
        };
        conn.subscribe().await?;
        Ok(Watch {
            state: WatchState::Idle(Box::new(conn)),
        })
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.in_flight = false;
    }

    /// One request and its answer, reconnecting and retrying under the rules above.
    async fn call(&mut self, request: &Request, wait: Duration) -> Result<Response, ClientError> {
        let mut backoff = Backoff::new(self.retry);
        loop {
            if self.in_flight {
                self.drop_connection();
            }
            let client = match self.conn.take() {
                Some(client) => client,
                None => connect_with_retry(&self.socket, &self.client_name, &mut backoff).await?,
            };
            let client = self.conn.insert(client);
            self.in_flight = true;
            let next = match client.send_request(request).await {
                Err(e) => after_send_failure(e, &mut backoff),
                Ok(()) => match client.next_response(answer_limit(wait)).await {
                    Ok(response) => {
                        self.in_flight = false;
                        return Ok(response);
                    }
                    Err(e) => after_answer_failure(request, e, &mut backoff),
                },
            };
            match next {
                Next::Answered(e) => {
                    // The connection is in step and stays.
                    self.in_flight = false;
                    return Err(e);
                }
                // No usable answer (closed, broken, timed out, garbled): this connection is
                // done either way.
                Next::GiveUp(e) => {
                    self.drop_connection();
                    return Err(e);
                }
                Next::Retry(delay) => {
                    self.drop_connection();
                    pause(delay).await;
                }
            }
        }
    }
}

/// Connects and greets, retrying what is worth retrying until `backoff` says stop.
async fn connect_with_retry(
    socket: &SocketPath,
    name: &str,
    backoff: &mut Backoff,
) -> Result<Client, ClientError> {
    loop {
        match Client::connect_named(socket, name).await {
            Ok(client) => return Ok(client),
            Err(e) if connect_retryable(&e) => match backoff.next_delay() {
                Some(delay) => pause(delay).await,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// The event a [`Watch`] yields after it had to resubscribe.
fn resync_event() -> WatchEvent {
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    WatchEvent {
        at_ms,
        session: None,
        kind: WatchEventKind::Resync,
    }
}

/// A stream of session events ([`Agent::watch`]) that survives daemon restarts.
///
/// When the connection drops, the next [`Watch::next`] resubscribes (retrying under the
/// agent's [`RetryPolicy`]) and then yields one event of kind
/// [`WatchEventKind::Resync`] with no session: events may have been missed meanwhile, so
/// re-read the state ([`Agent::status`]) before relying on it. Live events follow. The
/// daemon sends the same `Resync` when a watcher falls too far behind; treat both alike.
///
/// If the daemon stays away longer than the budget, `next` returns the error (typically
/// [`ClientError::NotRunning`]); calling `next` again starts over (and yields the `Resync`
/// once it is back). The stream never ends by itself.
///
/// `Watch` implements [`futures_util::Stream`] (items are `Result`s; it never yields
/// `None`). [`Watch::next`] is cancel-safe: dropping its future (in `select!`, say) loses
/// no event, the next call continues where it stopped.
///
/// ```no_run
/// # async fn demo() -> Result<(), tokd::ClientError> {
/// use tokd::protocol::verbs::watch::WatchEventKind;
/// let agent = tokd::Agent::new();
/// let mut events = agent.watch().await?;
/// loop {
///     let event = events.next().await?;
///     match event.kind {
///         WatchEventKind::Resync => { /* re-read: agent.status(None) */ }
///         kind => println!("{:?}: {}", event.session, kind.as_str()),
///     }
/// }
/// # }
/// ```
pub struct Watch {
    state: WatchState,
}

type StepFuture =
    Pin<Box<dyn Future<Output = (Box<WatchConn>, Result<WatchEvent, ClientError>)> + Send>>;

enum WatchState {
    /// Between two events.
    Idle(Box<WatchConn>),
    /// Waiting for the next event (kept across cancelled `next` calls).
    Waiting(StepFuture),
    /// Only while a poll is replacing the state.
    Empty,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            WatchState::Idle(_) => "idle",
            WatchState::Waiting(_) => "waiting",
            WatchState::Empty => "empty",
        };
        f.debug_struct("Watch").field("state", &state).finish()
    }
}

impl Watch {
    /// The next event: live events, or one `Resync` after a reconnection.
    ///
    /// # Errors
    /// [`ClientError::NotRunning`] (or another transport error) when the daemon could not be
    /// reached again within the budget; a protocol error for garbled frames. The watch can
    /// be used again after an error.
    pub async fn next(&mut self) -> Result<WatchEvent, ClientError> {
        match futures_util::StreamExt::next(self).await {
            Some(item) => item,
            None => Err(ClientError::Closed),
        }
    }
}

impl futures_util::Stream for Watch {
    type Item = Result<WatchEvent, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, WatchState::Empty) {
                WatchState::Idle(conn) => {
                    this.state = WatchState::Waiting(Box::pin(conn.step()));
                }
                WatchState::Waiting(mut step) => match step.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = WatchState::Waiting(step);
                        return Poll::Pending;
                    }
                    Poll::Ready((conn, item)) => {
                        this.state = WatchState::Idle(conn);
                        return Poll::Ready(Some(item));
                    }
                },
                // Only reachable if a step panicked; nothing is left to watch with.
                WatchState::Empty => return Poll::Ready(None),
            }
        }
    }
}

/// The connection behind a [`Watch`].
struct WatchConn {
    socket: SocketPath,
    client_name: String,
    retry: RetryPolicy,
    stream: Option<Stream>,
    /// The stream was lost: after resubscribing, say `Resync` before anything else.
    resync_due: bool,
}

impl WatchConn {
    async fn step(mut self: Box<Self>) -> (Box<Self>, Result<WatchEvent, ClientError>) {
        let item = self.next_event().await;
        (self, item)
    }

    async fn subscribe(&mut self) -> Result<(), ClientError> {
        let mut backoff = Backoff::new(self.retry);
        loop {
            let client = connect_with_retry(&self.socket, &self.client_name, &mut backoff).await?;
            match client.watch().await {
                Ok(stream) => {
                    self.stream = Some(stream);
                    return Ok(());
                }
                Err(e) if answer_retryable(&e) => match backoff.next_delay() {
                    Some(delay) => pause(delay).await,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    async fn next_event(&mut self) -> Result<WatchEvent, ClientError> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                self.subscribe().await?;
                if std::mem::take(&mut self.resync_due) {
                    return Ok(resync_event());
                }
                continue;
            };
            match stream.next().await {
                Ok(Some(Response::Event(event))) => return Ok(event),
                // Nothing else belongs on a watch stream; skip it.
                Ok(Some(_)) => {}
                // The daemon went away (or said it is going): resubscribe.
                Ok(None) => self.lost(),
                Err(e) if answer_retryable(&e) => self.lost(),
                Err(e) => {
                    self.lost();
                    return Err(e);
                }
            }
        }
    }

    fn lost(&mut self) {
        self.stream = None;
        self.resync_due = true;
    }
}
