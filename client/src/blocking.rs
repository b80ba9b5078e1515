//! A blocking one-shot `get` for callers without an async runtime (and for the `tokd get`
//! hot path): hello and request leave in one write, both answers are read back — one round
//! trip, on the same frame functions as everything else.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokd_protocol::frame::{
    DEFAULT_MAX_FRAME, MAX_RESPONSE_FRAME, decode_payload, encode_frame, encode_message,
    read_frame_blocking,
};
use tokd_protocol::paths::{SocketPath, resolve_socket_path};
use tokd_protocol::verbs::get::{GetRequest, TokenReply};
use tokd_protocol::{Hello, HelloAck, Request, Response};

use crate::connection::check_socket_dir;
use crate::error::{ClientError, check_ack, connect_error};

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
    check_socket_dir(socket)?;
    let mut stream =
        UnixStream::connect(&socket.path).map_err(|e| connect_error(&socket.path, e))?;
    let limit = Duration::from_millis(req.wait_ms) + Duration::from_secs(10);
    stream
        .set_read_timeout(Some(limit))
        .map_err(|e| connect_error(&socket.path, e))?;

    let mut out = Vec::with_capacity(256);
    let hello = Hello::current(concat!("tokd/", env!("CARGO_PKG_VERSION"))).encode();
    encode_frame(&hello, DEFAULT_MAX_FRAME, &mut out)?;
    encode_message(&Request::Get(req), DEFAULT_MAX_FRAME, &mut out)?;
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
        Response::Token(t) => Ok(t),
        Response::Error(e) => Err(ClientError::Daemon(e)),
        _ => Err(ClientError::Unexpected("a token")),
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
