//! `ping`: liveness.

use tokd_protocol::Response;
use tokd_protocol::verbs::ping::{PingRequest, PongReply};

use crate::state::DaemonState;

pub(super) fn handle(_req: PingRequest, _state: &DaemonState) -> Response {
    Response::Pong(PongReply {
        daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
    })
}
