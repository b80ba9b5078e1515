//! `status`: the daemon's identity and every session's health.

use tokd_protocol::Response;
use tokd_protocol::verbs::status::{StatusReply, StatusRequest};

use crate::state::DaemonState;

pub(super) fn handle(req: StatusRequest, state: &DaemonState) -> Response {
    let snapshot = state.settings();
    match state
        .sessions()
        .status(req.name.as_deref(), &snapshot.config)
    {
        Ok(sessions) => Response::Status2(StatusReply {
            daemon: state.info(&snapshot),
            sessions,
        }),
        Err(e) => Response::Error(e.into()),
    }
}
