//! One handler per verb; [`dispatch`] holds the only exhaustive match over [`Request`], so a
//! new verb does not compile until every layer handles it.

mod add;
mod get;
mod list;
mod login;
mod logout;
mod ping;
mod refresh;
mod remove;
mod status;
mod watch;

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use tokd_protocol::{ErrorCode, ErrorReply, Request, Response};

pub use crate::reply::{Reply, ResponseStream};
use crate::server::access::Peer;
pub use crate::server::creds::Writer;
use crate::state::DaemonState;

/// Who sent a request: the peer, the process that wrote it, and the socket it came on (for
/// the connector's pidfd).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The peer as checked at accept.
    pub peer: &'a Peer,
    /// The process that wrote this request's bytes, as the kernel stamped them.
    pub writer: &'a Writer,
    /// The connection's socket.
    pub socket: BorrowedFd<'a>,
}

/// Routes a request to its handler.
pub async fn dispatch(request: Request, state: &Arc<DaemonState>, from: Caller<'_>) -> Reply {
    let verb = request.verb();
    if !from.peer.owner
        && !matches!(
            request,
            Request::Get(_) | Request::Get2(_) | Request::Ping(_)
        )
    {
        // A uid admitted through a session's `allow_uids` gets tokens, nothing else.
        return Reply::One(Response::Error(ErrorReply::new(
            ErrorCode::PeerRejected,
            format!(
                "uid {} may only get the tokens of sessions that list it in allow_uids",
                from.peer.uid
            ),
        )));
    }
    let reply = match request {
        Request::Get(req) => Reply::One(get::handle(req.into(), state, from).await),
        Request::Get2(req) => Reply::One(get::handle(req, state, from).await),
        Request::Status(req) => Reply::One(status::handle(req, state)),
        Request::List(req) => Reply::One(list::handle(req, state)),
        Request::Add(req) => Reply::One(add::handle(req, state).await),
        Request::Remove(req) => Reply::One(remove::handle(req, state).await),
        Request::Refresh(req) => Reply::One(refresh::handle(req, state).await),
        Request::Login(req) => login::handle(req.into(), state),
        Request::Login2(req) => login::handle(req, state),
        Request::LoginRedirect(_) => Reply::One(Response::Error(ErrorReply::new(
            ErrorCode::Invalid,
            "no browser login is waiting on this connection for a pasted address",
        ))),
        Request::Logout(req) => Reply::One(logout::handle(req, state).await),
        Request::Watch(req) => watch::handle(req, state),
        Request::Ping(req) => Reply::One(ping::handle(req, state)),
    };
    if let Reply::One(Response::Error(e)) = &reply {
        tracing::debug!(verb, code = %e.code, message = %e.message, "request failed");
    }
    reply
}
