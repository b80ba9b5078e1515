//! `refresh`: refresh one session now (subject to the minimum interval) and wait for it.

use std::sync::Arc;
use std::time::Duration;

use tokd_protocol::Response;
use tokd_protocol::verbs::refresh::{RefreshReply, RefreshRequest};

use crate::engine;
use crate::state::DaemonState;

pub(super) async fn handle(req: RefreshRequest, state: &Arc<DaemonState>) -> Response {
    match engine::refresh_now(state, &req.name, Duration::from_millis(req.wait_ms)).await {
        Ok(session) => Response::Refreshed2(RefreshReply { session }),
        Err(e) => Response::Error(e),
    }
}
