//! `get`: the hot path. Answered from memory; the wall clock is checked on every call.

use tokd_protocol::Response;
use tokd_protocol::verbs::get::GetRequest;

use crate::state::DaemonState;

pub(super) fn handle(req: GetRequest, state: &DaemonState) -> Response {
    let config = state.config();
    match state
        .sessions
        .token(&req.name, req.min_valid_ms, req.include_id_token, &config)
    {
        Ok(token) => Response::Token(token),
        Err(e) => Response::Error(e.into()),
    }
}
