//! The async client: one connection, typed methods per verb.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokd_protocol::codec::FrameCodec;
use tokd_protocol::frame::{DEFAULT_MAX_FRAME, MAX_RESPONSE_FRAME, decode_payload, encode_payload};
use tokd_protocol::paths::{SocketPath, resolve_socket_path};
use tokd_protocol::verbs::add::{AddReply, AddRequest};
use tokd_protocol::verbs::get::{GetRequest, TokenReply};
use tokd_protocol::verbs::list::ListEntry;
use tokd_protocol::verbs::login::LoginRequest;
use tokd_protocol::verbs::logout::LogoutReply;
use tokd_protocol::verbs::ping::PongReply;
use tokd_protocol::verbs::refresh::RefreshReply;
use tokd_protocol::verbs::status::StatusReply;
use tokd_protocol::verbs::watch::WatchRequest;
use tokd_protocol::{Hello, HelloAck, Request, Response};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

use crate::calls;
use crate::error::{ClientError, check_ack};

/// How long connecting and the hello may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time granted beyond a request's own wait before giving up on an answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(10);

/// A connection to the daemon, greeted and ready for requests.
#[derive(Debug)]
pub struct Client {
    conn: Framed<UnixStream, FrameCodec>,
    daemon_version: String,
    daemon_minor: u16,
}

impl Client {
    /// Connects to the daemon at the default socket (`TOKD_SOCKET`, `$XDG_RUNTIME_DIR`,
    /// `/run/user/$UID`, or the per-user temp directory) and exchanges hellos.
    ///
    /// Before anything is sent, the process listening on the socket must run as this user
    /// or root, or as the uid in `TOKD_DAEMON_UID` ([`crate::DAEMON_UID_ENV`]).
    ///
    /// # Errors
    /// [`ClientError::NotRunning`] when no daemon listens; `UntrustedDaemon`,
    /// `VersionMismatch`, `Refused`.
    pub async fn connect() -> Result<Client, ClientError> {
        Self::connect_to(&resolve_socket_path(None)).await
    }

    /// Connects to the daemon at `socket`, with `name` as the client name in the hello.
    ///
    /// # Errors
    /// See [`Client::connect`].
    pub async fn connect_to(socket: &SocketPath) -> Result<Client, ClientError> {
        Self::connect_named(socket, concat!("tokd-lib/", env!("CARGO_PKG_VERSION"))).await
    }

    /// [`Client::connect_to`] with an explicit client name for the daemon's logs.
    ///
    /// # Errors
    /// See [`Client::connect`].
    pub async fn connect_named(socket: &SocketPath, name: &str) -> Result<Client, ClientError> {
        let stream: UnixStream = crate::dial::connect_async(socket, CONNECT_TIMEOUT).await?;
        let mut conn = Framed::new(
            stream,
            FrameCodec::new(MAX_RESPONSE_FRAME, DEFAULT_MAX_FRAME),
        );
        let hello = Hello::current(name).encode();
        conn.send(hello.as_slice()).await?;
        let ack = tokio::time::timeout(CONNECT_TIMEOUT, conn.next())
            .await
            .map_err(|_| ClientError::Timeout(CONNECT_TIMEOUT))?
            .ok_or(ClientError::Closed)??;
        let (daemon_version, daemon_minor) = check_ack(HelloAck::decode(&ack)?)?;
        Ok(Client {
            conn,
            daemon_version,
            daemon_minor,
        })
    }

    /// The daemon's software version, from its hello answer.
    pub fn daemon_version(&self) -> &str {
        &self.daemon_version
    }

    /// The daemon's protocol minor version.
    pub fn daemon_minor(&self) -> u16 {
        self.daemon_minor
    }

    /// Sends one request and reads one answer; an `Error` answer becomes `Err`.
    ///
    /// # Errors
    /// [`ClientError::Daemon`] with the daemon's code and message, or a transport error.
    pub async fn request(
        &mut self,
        request: &Request,
        wait: Duration,
    ) -> Result<Response, ClientError> {
        self.send_request(request).await?;
        self.next_response(answer_limit(wait)).await
    }

    /// Sends one request without reading its answer. An error here means the request did
    /// not reach the daemon whole, so it cannot have been carried out.
    pub(crate) async fn send_request(&mut self, request: &Request) -> Result<(), ClientError> {
        let payload = encode_payload(request)?;
        self.conn.send(payload.as_slice()).await?;
        Ok(())
    }

    /// Reads the next answer, waiting at most `limit`; an `Error` answer becomes `Err`.
    pub(crate) async fn next_response(&mut self, limit: Duration) -> Result<Response, ClientError> {
        let frame = tokio::time::timeout(limit, self.conn.next())
            .await
            .map_err(|_| ClientError::Timeout(limit))?
            .ok_or(ClientError::Closed)??;
        match decode_payload::<Response>(&frame)? {
            Response::Error(e) => Err(ClientError::Daemon(e)),
            other => Ok(other),
        }
    }

    /// The current token of `name`, valid for at least `min_valid` if at all possible.
    ///
    /// # Errors
    /// `Daemon` with `not_found`, `needs_login`, `expired`, … when no valid token exists.
    pub async fn get(
        &mut self,
        name: &str,
        min_valid: Duration,
    ) -> Result<TokenReply, ClientError> {
        self.get_with(calls::get(name, min_valid)).await
    }

    /// `get` with every option.
    ///
    /// # Errors
    /// See [`Client::get`].
    pub async fn get_with(&mut self, req: GetRequest) -> Result<TokenReply, ClientError> {
        let wait = calls::get_wait(&req);
        calls::token(self.request(&calls::get_request(req), wait).await?)
    }

    /// Daemon identity and session health (all sessions, or one).
    ///
    /// # Errors
    /// `Daemon` with `not_found` for an unknown name.
    pub async fn status(&mut self, name: Option<&str>) -> Result<StatusReply, ClientError> {
        calls::status_reply(self.request(&calls::status(name), Duration::ZERO).await?)
    }

    /// Every session's name, provider and state.
    ///
    /// # Errors
    /// Transport errors only.
    pub async fn list(&mut self) -> Result<Vec<ListEntry>, ClientError> {
        calls::list_reply(self.request(&calls::list(), Duration::ZERO).await?)
    }

    /// Imports (or replaces) a session.
    ///
    /// # Errors
    /// `Daemon` with `already_exists` or `invalid`.
    pub async fn add(&mut self, req: AddRequest) -> Result<AddReply, ClientError> {
        calls::added(
            self.request(&calls::add(req), calls::PROVIDER_CALL_WAIT)
                .await?,
        )
    }

    /// Removes a session.
    ///
    /// # Errors
    /// `Daemon` with `not_found`.
    pub async fn remove(&mut self, name: &str) -> Result<(), ClientError> {
        calls::removed(self.request(&calls::remove(name), Duration::ZERO).await?)
    }

    /// Refreshes a session now (subject to the minimum interval).
    ///
    /// # Errors
    /// `Daemon` with `not_found`, `needs_login`, `refresh_failed`, …
    pub async fn refresh(&mut self, name: &str) -> Result<RefreshReply, ClientError> {
        calls::refreshed(
            self.request(&calls::refresh(name), calls::REFRESH_WAIT)
                .await?,
        )
    }

    /// Revokes (where the provider can) and removes a session.
    ///
    /// # Errors
    /// `Daemon` with `not_found`.
    pub async fn logout(&mut self, name: &str) -> Result<LogoutReply, ClientError> {
        calls::logged_out(
            self.request(&calls::logout(name), calls::PROVIDER_CALL_WAIT)
                .await?,
        )
    }

    /// Liveness probe.
    ///
    /// # Errors
    /// Transport errors only.
    pub async fn ping(&mut self) -> Result<PongReply, ClientError> {
        calls::pong(self.request(&calls::ping(), Duration::ZERO).await?)
    }

    /// Subscribes to session events; the connection becomes the event stream.
    ///
    /// # Errors
    /// Transport errors, or a daemon refusal.
    pub async fn watch(mut self) -> Result<Stream, ClientError> {
        match self
            .request(&Request::Watch(WatchRequest {}), Duration::ZERO)
            .await?
        {
            Response::Watching(_) => Ok(Stream { client: self }),
            _ => Err(ClientError::Unexpected("a watch answer")),
        }
    }

    /// Starts a login; the connection becomes the stream of prompts and the final answer.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn login(mut self, req: LoginRequest) -> Result<Stream, ClientError> {
        let payload = encode_payload(&calls::login_request(req, self.daemon_minor)?)?;
        self.conn.send(payload.as_slice()).await?;
        Ok(Stream { client: self })
    }
}

/// A streamed answer (`watch` events, `login` prompts and result).
#[derive(Debug)]
pub struct Stream {
    client: Client,
}

impl Stream {
    /// Sends a request into the conversation (the redirected address a user pasted during a
    /// browser login whose browser runs elsewhere).
    ///
    /// # Errors
    /// A transport error.
    pub async fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        let payload = encode_payload(req)?;
        self.client.conn.send(payload.as_slice()).await?;
        Ok(())
    }

    /// The next frame; `Ok(None)` when the daemon ended the stream.
    ///
    /// # Errors
    /// [`ClientError::Daemon`] when the daemon sends an error frame, or a transport error.
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        match self.client.conn.next().await {
            None => Ok(None),
            Some(frame) => match decode_payload::<Response>(&frame?)? {
                Response::Error(e) => Err(ClientError::Daemon(e)),
                other => Ok(Some(other)),
            },
        }
    }
}

/// How long to wait for the answer to a request that may itself wait `wait`.
pub(crate) fn answer_limit(wait: Duration) -> Duration {
    wait.saturating_add(ANSWER_MARGIN)
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
