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

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokd_protocol::{Request, Response};

use crate::state::DaemonState;

/// A streamed answer (`watch`, `login`): frames until the stream ends.
pub type ResponseStream = Pin<Box<dyn Stream<Item = Response> + Send>>;

/// What a handler answers: one frame, or a stream of them.
pub enum Reply {
    /// A single answer frame.
    One(Response),
    /// A stream of answer frames; the connection ends with it.
    Stream(ResponseStream),
}

/// Routes a request to its handler.
pub async fn dispatch(request: Request, state: &Arc<DaemonState>) -> Reply {
    let verb = request.verb();
    let reply = match request {
        Request::Get(req) => Reply::One(get::handle(req, state).await),
        Request::Status(req) => Reply::One(status::handle(req, state)),
        Request::List(req) => Reply::One(list::handle(req, state)),
        Request::Add(req) => Reply::One(add::handle(req, state).await),
        Request::Remove(req) => Reply::One(remove::handle(req, state).await),
        Request::Refresh(req) => Reply::One(refresh::handle(req, state).await),
        Request::Login(req) => login::handle(req, state),
        Request::Logout(req) => Reply::One(logout::handle(req, state).await),
        Request::Watch(req) => watch::handle(req, state),
        Request::Ping(req) => Reply::One(ping::handle(req, state)),
    };
    if let Reply::One(Response::Error(e)) = &reply {
        tracing::debug!(verb, code = %e.code, message = %e.message, "request failed");
    }
    reply
}
