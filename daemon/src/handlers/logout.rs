//! `logout`: revoke at the provider when it offers revocation, then remove.

use tokd_protocol::Response;
use tokd_protocol::verbs::logout::{LogoutReply, LogoutRequest};

use crate::state::DaemonState;

pub(super) async fn handle(req: LogoutRequest, state: &DaemonState) -> Response {
    // No provider HTTP yet: nothing is revoked, and the answer says so.
    match state.sessions.remove(&req.name).await {
        Ok(()) => {
            crate::engine::on_removed(state, &req.name);
            Response::LoggedOut(LogoutReply {
                name: req.name,
                revoked: false,
            })
        }
        Err(e) => Response::Error(e.into()),
    }
}
