//! `refresh`: force a refresh of one session.

use tokd_protocol::verbs::refresh::RefreshRequest;
use tokd_protocol::{ErrorCode, ErrorReply, Response};

use crate::state::DaemonState;

pub(super) fn handle(req: RefreshRequest, state: &DaemonState) -> Response {
    if state.sessions.find(&req.name).is_none() {
        return Response::Error(ErrorReply::new(
            ErrorCode::NotFound,
            format!("no session named {:?} (see `tokd list`)", req.name),
        ));
    }
    Response::Error(ErrorReply::new(
        ErrorCode::RefreshFailed,
        "this daemon has no refresh engine yet; the session's token is served until it expires",
    ))
}
