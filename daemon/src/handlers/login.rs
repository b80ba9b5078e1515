//! `login`: interactive login performed by the daemon (streamed answer).

use tokd_protocol::verbs::login::LoginRequest;
use tokd_protocol::{ErrorCode, ErrorReply, Response};

use super::Reply;
use crate::state::DaemonState;

pub(super) fn handle(req: LoginRequest, state: &DaemonState) -> Reply {
    let config = state.config();
    if !config.providers.contains_key(&req.provider) {
        return Reply::One(Response::Error(ErrorReply::new(
            ErrorCode::Invalid,
            format!("no provider named {:?} in the config", req.provider),
        )));
    }
    Reply::One(Response::Error(ErrorReply::new(
        ErrorCode::Invalid,
        "this daemon cannot log in yet; import a token response with `tokd add` instead",
    )))
}
