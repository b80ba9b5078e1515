//! `get`: the hot path. Answered from memory when the token has `min_valid` left; otherwise
//! the engine refreshes (single flight) and the best valid token is answered. A guest (a uid
//! admitted by `allow_uids`) is answered from memory only: it never starts a refresh.

use tokd_protocol::Response;
use tokd_protocol::verbs::get::GetRequest;

use super::Caller;
use crate::server::access;
use crate::state::DaemonState;

pub(super) async fn handle(req: GetRequest, state: &DaemonState, from: Caller<'_>) -> Response {
    if let Err(refusal) = access::check_get(
        &state.settings().config,
        from.peer,
        from.writer,
        from.socket,
        &req.name,
    ) {
        tracing::warn!(
            target: "tokd::audit",
            event = "peer_rejected",
            session = %req.name,
            peer_uid = from.peer.uid,
            peer_pid = ?from.peer.pid,
            reason = %refusal.message,
            "token refused by the session's access list"
        );
        return Response::Error(refusal);
    }
    let answer = if from.peer.owner {
        state.engine().get(&req).await
    } else {
        state.engine().get_cached(&req)
    };
    match answer {
        Ok(token) => Response::Token2(token),
        Err(e) => Response::Error(e.into()),
    }
}
