//! `remove`: forget a session; persisted before the answer.

use tokd_protocol::Response;
use tokd_protocol::verbs::remove::{RemoveReply, RemoveRequest};

use crate::state::DaemonState;

pub(super) async fn handle(req: RemoveRequest, state: &DaemonState) -> Response {
    match state.engine().remove(&req.name, None).await {
        Ok(_) => Response::Removed(RemoveReply { name: req.name }),
        Err(e) => Response::Error(e.into()),
    }
}
