//! `add`: import a session; persisted and flushed before the answer.

use tokd_protocol::Response;
use tokd_protocol::verbs::add::AddRequest;

use crate::state::DaemonState;

pub(super) async fn handle(req: AddRequest, state: &DaemonState) -> Response {
    let config = state.config();
    match state.sessions.add(req, &config).await {
        Ok(reply) => Response::Added(reply),
        Err(e) => Response::Error(e.into()),
    }
}
