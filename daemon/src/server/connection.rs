//! One connection: peer check → hello → loop { frame → dispatch → answer }.

use std::os::fd::AsFd;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokd_protocol::codec::FrameCodec;
use tokd_protocol::frame::{MAX_RESPONSE_FRAME, decode_request, encode_payload};
use tokd_protocol::hello::{Hello, HelloAck, PROTOCOL_MAJOR, compatibility};
use tokd_protocol::{ErrorCode, ErrorReply, ProtocolError, Request, Response};
use tokio::net::UnixStream;
use tokio::time::{Instant, timeout};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::access::{self, Peer};
use super::creds::CredStream;
use super::peer::{self, PeerCheck};
use super::registry::{Phase, Slot};
use crate::handlers::{self, Reply};
use crate::state::DaemonState;

type Conn = Framed<CredStream, FrameCodec>;

/// How long a refusal may take to write before the connection is dropped anyway.
const REFUSAL_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves one accepted connection until the peer hangs up, misbehaves, idles out, or the
/// daemon shuts down.
pub async fn serve(
    stream: UnixStream,
    state: Arc<DaemonState>,
    shutdown: CancellationToken,
    slot: Slot,
) {
    let snapshot = state.settings();
    let config = &snapshot.config;
    let limits = config.limits.clone();
    let verdict = peer::check(&stream, state.own_uid(), config.allow_root, |uid| {
        access::is_listed_uid(config, uid)
    });
    // Writers are collected only while some session has an access list: a plain read is
    // cheaper on the hot path.
    let collect = access::has_access_lists(config);
    let connector = match &verdict {
        PeerCheck::Allowed { pid, .. } => *pid,
        PeerCheck::Rejected { .. } => None,
    };
    let stream = match CredStream::new(stream, collect, connector) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "cannot collect the writers of a connection; dropping it");
            return;
        }
    };
    let mut conn = Framed::new(
        stream,
        FrameCodec::new(limits.max_frame, MAX_RESPONSE_FRAME),
    );
    let peer = match verdict {
        PeerCheck::Allowed { uid, pid, owner } => Peer::new(uid, pid, owner, config),
        PeerCheck::Rejected { uid, message } => {
            tracing::warn!(peer_uid = ?uid, "rejected a connection from another user");
            refuse(&mut conn, ErrorCode::PeerRejected, message).await;
            return;
        }
    };
    drop(snapshot);
    if !peer.owner {
        if let Err(cap) = slot.claim_guest() {
            tracing::info!(
                peer_uid = peer.uid,
                "refused a guest over the guests' share of connection slots"
            );
            refuse(
                &mut conn,
                ErrorCode::Busy,
                format!(
                    "guests may hold at most {cap} connections to this daemon at once; try again"
                ),
            )
            .await;
            return;
        }
    }
    let pid = peer.pid;

    // The hello must arrive within the handshake timeout.
    let first = tokio::select! {
        () = shutdown.cancelled() => return,
        () = slot.evicted().cancelled() => return,
        r = timeout(limits.handshake_timeout, conn.next()) => r,
    };
    let hello_bytes = match first {
        Ok(Some(Ok(bytes))) => bytes,
        Ok(Some(Err(e))) => {
            tracing::debug!(peer_pid = ?pid, error = %e, "bad first frame");
            refuse(&mut conn, code_for(&e), format!("bad hello frame: {e}")).await;
            return;
        }
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(peer_pid = ?pid, "no hello within the handshake timeout");
            refuse(
                &mut conn,
                ErrorCode::Timeout,
                "no hello within the handshake timeout",
            )
            .await;
            return;
        }
    };
    // The hello's writer does not matter; each request is judged by its own bytes.
    let carried_over = !conn.read_buffer().is_empty();
    let _ = conn.get_mut().take_writer(carried_over);
    let hello = match Hello::decode(&hello_bytes) {
        Ok(hello) => hello,
        Err(e) => {
            tracing::debug!(peer_pid = ?pid, error = %e, "not a tokd hello");
            refuse(&mut conn, ErrorCode::Invalid, e.to_string()).await;
            return;
        }
    };
    if let Err(message) = compatibility(&hello, PROTOCOL_MAJOR) {
        tracing::info!(peer_pid = ?pid, client = %hello.client_name, client_major = hello.major, "protocol version mismatch");
        refuse(&mut conn, ErrorCode::VersionMismatch, message).await;
        return;
    }
    let ack = HelloAck::accept(env!("CARGO_PKG_VERSION")).encode();
    if conn.send(ack.as_slice()).await.is_err() {
        return;
    }
    tracing::trace!(peer_pid = ?pid, client = %hello.client_name, "client connected");
    // Each answer goes out in the layouts this client's minor version reads.
    let minor = hello.minor;

    // Per connection, not per request: the cancellation waits stay registered across
    // requests, and the idle timer is only moved when it fires early (it fires at most once
    // per idle timeout; each answer only notes the time), so a busy connection never
    // touches the timer wheel.
    let stopping = shutdown.cancelled();
    let evicted = slot.evicted().cancelled();
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(stopping, evicted, idle);
    loop {
        slot.set(Phase::Idle);
        // Idle counts from the end of the last answer (a request may take a while).
        let idle_since = Instant::now();
        let next = loop {
            // Biased: a request already waiting is served before the idle timer is looked at.
            tokio::select! {
                biased;
                () = &mut stopping => return,
                () = &mut evicted => {
                    tracing::trace!(peer_pid = ?pid, "evicted an idle connection at the cap");
                    return;
                }
                r = conn.next() => break r,
                () = &mut idle => {
                    let deadline = idle_since + limits.idle_timeout;
                    if Instant::now() >= deadline {
                        tracing::trace!(peer_pid = ?pid, "closing idle connection");
                        return;
                    }
                    idle.as_mut().reset(deadline);
                }
            }
        };
        let payload = match next {
            None => return,
            Some(Err(e)) => {
                // The framing itself is broken (oversize, truncated): nothing after this
                // point can be trusted, so answer once and hang up.
                tracing::debug!(peer_pid = ?pid, error = %e, "dropping connection after a framing error");
                let reply = ErrorReply::new(code_for(&e), e.to_string());
                let _ = timeout(
                    REFUSAL_WRITE_TIMEOUT,
                    send(&mut conn, &Response::Error(reply)),
                )
                .await;
                return;
            }
            Some(Ok(payload)) => payload,
        };
        slot.set(Phase::Working);
        let request: Request = match decode_request(&payload) {
            Ok(request) => request,
            Err(e) => {
                // The frame boundary is intact, so the connection can go on.
                tracing::debug!(peer_pid = ?pid, error = %e, "malformed request");
                let reply = ErrorReply::new(
                    ErrorCode::Invalid,
                    format!(
                        "malformed request ({e}); if this client is newer than the daemon, \
                         restart tokd"
                    ),
                );
                if send(&mut conn, &Response::Error(reply)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let carried_over = !conn.read_buffer().is_empty();
        let writer = conn.get_mut().take_writer(carried_over);
        let from = handlers::Caller {
            peer: &peer,
            writer: &writer,
            socket: conn.get_ref().get_ref().as_fd(),
        };
        match handlers::dispatch(request, &state, from).await {
            Reply::One(response) => {
                let Some(response) = response.for_minor(minor) else {
                    continue;
                };
                if send(&mut conn, &response).await.is_err() {
                    return;
                }
            }
            Reply::Stream(stream) => {
                slot.set(Phase::Streaming);
                stream_out(&mut conn, stream, None, &shutdown, minor).await;
                return;
            }
            Reply::Conversation(stream, input) => {
                slot.set(Phase::Streaming);
                stream_out(&mut conn, stream, Some(input), &shutdown, minor).await;
                return;
            }
        }
    }
}

/// Sends a streamed answer (watch, login) until it ends, the client leaves, or shutdown.
/// Streams are exempt from the idle timeout.
async fn stream_out(
    conn: &mut Conn,
    mut stream: handlers::ResponseStream,
    input: Option<tokio::sync::mpsc::Sender<Request>>,
    shutdown: &CancellationToken,
    minor: u16,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let reply = crate::engine::policy::shutting_down();
                let _ = timeout(REFUSAL_WRITE_TIMEOUT, send(conn, &Response::Error(reply))).await;
                return;
            }
            item = stream.next() => match item {
                Some(response) => {
                    let Some(response) = response.for_minor(minor) else {
                        continue;
                    };
                    if send(conn, &response).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            incoming = conn.next() => match incoming {
                // Only a conversation takes frames from the client; others ignore them, and
                // anything but data ends the stream.
                Some(Ok(frame)) => {
                    if let (Some(input), Ok(request)) = (&input, decode_request(&frame)) {
                        let _ = input.try_send(request);
                    }
                }
                _ => return,
            },
        }
    }
}

async fn send(conn: &mut Conn, response: &Response) -> Result<(), ProtocolError> {
    let payload = match encode_payload(response) {
        Ok(payload) => payload,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a response");
            encode_payload(&Response::Error(ErrorReply::new(
                ErrorCode::Internal,
                "the daemon could not encode its answer",
            )))?
        }
    };
    match conn.send(payload.as_slice()).await {
        Err(ProtocolError::FrameTooLarge { len, max }) => {
            let reply = ErrorReply::new(
                ErrorCode::TooLarge,
                format!("the answer is {len} bytes, over the {max}-byte frame limit"),
            );
            let payload = encode_payload(&Response::Error(reply))?;
            conn.send(payload.as_slice()).await
        }
        other => other,
    }
}

/// Answers a hello-layout refusal (readable by any client version) and gives up.
async fn refuse(conn: &mut Conn, code: ErrorCode, message: impl Into<String>) {
    let ack = HelloAck::refuse(code, message).encode();
    let _ = timeout(REFUSAL_WRITE_TIMEOUT, conn.send(ack.as_slice())).await;
}

/// Refuses a connection over the connection cap.
pub async fn refuse_busy(stream: UnixStream, max_frame: usize) {
    let Ok(stream) = CredStream::new(stream, false, None) else {
        return;
    };
    let mut conn = Framed::new(stream, FrameCodec::new(max_frame, MAX_RESPONSE_FRAME));
    refuse(
        &mut conn,
        ErrorCode::Busy,
        "the daemon is at its connection limit; try again",
    )
    .await;
}

fn code_for(e: &ProtocolError) -> ErrorCode {
    match e {
        ProtocolError::FrameTooLarge { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::Invalid,
    }
}
