//! Each verb's request (with how long the daemon may take) and the answer it expects, shared
//! by [`crate::Client`], [`crate::Agent`] and [`crate::blocking::Agent`].

use std::time::Duration;

use tokd_protocol::verbs::add::{AddReply, AddRequest};
use tokd_protocol::verbs::get::{GetRequest, TokenReply};
use tokd_protocol::verbs::list::{ListEntry, ListRequest};
use tokd_protocol::verbs::logout::{LogoutReply, LogoutRequest};
use tokd_protocol::verbs::ping::{PingRequest, PongReply};
use tokd_protocol::verbs::refresh::{RefreshReply, RefreshRequest};
use tokd_protocol::verbs::remove::RemoveRequest;
use tokd_protocol::verbs::status::{StatusReply, StatusRequest};
use tokd_protocol::{Request, Response};

use crate::connection::millis;
use crate::error::ClientError;

/// How long a `get` may wait for a refresh it starts or joins, unless told otherwise: the
/// library's, the credential helpers' and the CLI's `--wait` default.
pub const GET_WAIT: Duration = Duration::from_secs(10);
/// How long `refresh` waits for the refresh to finish.
pub(crate) const REFRESH_WAIT: Duration = Duration::from_secs(35);
/// How long `add` and `logout` may take (they may talk to the provider).
pub(crate) const PROVIDER_CALL_WAIT: Duration = Duration::from_secs(30);

/// A `get` with the usual options.
pub(crate) fn get(name: &str, min_valid: Duration) -> GetRequest {
    GetRequest {
        name: name.to_owned(),
        min_valid_ms: millis(min_valid),
        wait_ms: millis(GET_WAIT),
        include_id_token: false,
        target: tokd_protocol::TokenTarget::default(),
    }
}

/// The request frame of a `get`: the 1.0 form for the session's own token (every daemon
/// reads it, so the one-shot path needs no version check), the 1.1 form for a derived one.
pub(crate) fn get_request(req: GetRequest) -> Request {
    if req.target.is_own() {
        Request::Get(tokd_protocol::v0::GetRequest {
            name: req.name,
            min_valid_ms: req.min_valid_ms,
            wait_ms: req.wait_ms,
            include_id_token: req.include_id_token,
        })
    } else {
        Request::Get2(req)
    }
}

/// The request frame of a `login` for a daemon of protocol minor `daemon_minor`.
///
/// # Errors
/// [`ClientError::Unsupported`]-style `Unexpected` when a 1.0 daemon is asked for what only
/// 1.1 can say.
pub(crate) fn login_request(
    req: tokd_protocol::verbs::login::LoginRequest,
    daemon_minor: u16,
) -> Result<Request, ClientError> {
    if daemon_minor >= 1 {
        return Ok(Request::Login2(req));
    }
    let plain = req.timeout_ms.is_none()
        && req.resource.is_none()
        && req.issuer.is_none()
        && req.scope_add.is_empty();
    match req.provider {
        Some(provider) if plain => Ok(Request::Login(tokd_protocol::v0::LoginRequest {
            name: req.name,
            provider,
            method: req.method,
            attrs: req.attrs,
        })),
        _ => Err(ClientError::DaemonTooOld(
            "this login needs a newer daemon (protocol 1.1): restart tokd",
        )),
    }
}

/// How long the daemon may take to answer `req`.
pub(crate) fn get_wait(req: &GetRequest) -> Duration {
    Duration::from_millis(req.wait_ms)
}

pub(crate) fn status(name: Option<&str>) -> Request {
    Request::Status(StatusRequest {
        name: name.map(str::to_owned),
    })
}

pub(crate) fn list() -> Request {
    Request::List(ListRequest {})
}

pub(crate) fn ping() -> Request {
    Request::Ping(PingRequest {})
}

pub(crate) fn remove(name: &str) -> Request {
    Request::Remove(RemoveRequest {
        name: name.to_owned(),
    })
}

pub(crate) fn refresh(name: &str) -> Request {
    Request::Refresh(RefreshRequest {
        name: name.to_owned(),
        wait_ms: millis(REFRESH_WAIT),
    })
}

pub(crate) fn logout(name: &str) -> Request {
    Request::Logout(LogoutRequest {
        name: name.to_owned(),
    })
}

pub(crate) fn add(req: AddRequest) -> Request {
    Request::Add(req)
}

pub(crate) fn token(r: Response) -> Result<TokenReply, ClientError> {
    match r {
        Response::Token2(t) => Ok(t),
        Response::Token(t) => Ok(t.into()),
        _ => Err(ClientError::Unexpected("a token")),
    }
}

pub(crate) fn status_reply(r: Response) -> Result<StatusReply, ClientError> {
    match r {
        Response::Status2(s) => Ok(s),
        Response::Status(s) => Ok(s.into()),
        _ => Err(ClientError::Unexpected("a status")),
    }
}

pub(crate) fn list_reply(r: Response) -> Result<Vec<ListEntry>, ClientError> {
    match r {
        Response::List(l) => Ok(l.sessions),
        _ => Err(ClientError::Unexpected("a list")),
    }
}

pub(crate) fn pong(r: Response) -> Result<PongReply, ClientError> {
    match r {
        Response::Pong(p) => Ok(p),
        _ => Err(ClientError::Unexpected("a pong")),
    }
}

pub(crate) fn added(r: Response) -> Result<AddReply, ClientError> {
    match r {
        Response::Added2(a) => Ok(a),
        Response::Added(a) => Ok(a.into()),
        _ => Err(ClientError::Unexpected("an add answer")),
    }
}

pub(crate) fn removed(r: Response) -> Result<(), ClientError> {
    match r {
        Response::Removed(_) => Ok(()),
        _ => Err(ClientError::Unexpected("a remove answer")),
    }
}

pub(crate) fn refreshed(r: Response) -> Result<RefreshReply, ClientError> {
    match r {
        Response::Refreshed2(r) => Ok(r),
        Response::Refreshed(r) => Ok(r.into()),
        _ => Err(ClientError::Unexpected("a refresh answer")),
    }
}

pub(crate) fn logged_out(r: Response) -> Result<LogoutReply, ClientError> {
    match r {
        Response::LoggedOut2(r) => Ok(r),
        Response::LoggedOut(r) => Ok(r.into()),
        _ => Err(ClientError::Unexpected("a logout answer")),
    }
}
