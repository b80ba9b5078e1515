//! `refresh`: refresh one session now (subject to the minimum interval) and wait for it.

use std::time::Duration;

use tokd_protocol::Response;
use tokd_protocol::verbs::refresh::{RefreshReply, RefreshRequest};

use crate::state::DaemonState;

pub(super) async fn handle(req: RefreshRequest, state: &DaemonState) -> Response {
    let wait = Duration::from_millis(req.wait_ms);
    match state.engine().refresh_now(&req.name, wait).await {
        Ok(session) => Response::Refreshed2(RefreshReply { session }),
        Err(e) => Response::Error(e),
    }
}
