//! `get`: the hot path. Answered from memory when the token has `min_valid` left; otherwise
//! the engine refreshes (single flight) and the best valid token is answered.

use std::sync::Arc;

use tokd_protocol::Response;
use tokd_protocol::verbs::get::GetRequest;

use crate::engine;
use crate::state::DaemonState;

pub(super) async fn handle(req: GetRequest, state: &Arc<DaemonState>) -> Response {
    match engine::get(state, &req).await {
        Ok(token) => Response::Token(token),
        Err(e) => Response::Error(e.into()),
    }
}
