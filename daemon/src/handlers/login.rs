//! `login`: interactive login performed by the daemon (streamed answer: prompts, then the
//! stored session).

use std::sync::Arc;

use tokd_protocol::verbs::login::LoginRequest;

use super::Reply;
use crate::state::DaemonState;

pub(super) fn handle(req: LoginRequest, state: &Arc<DaemonState>) -> Reply {
    Reply::Stream(crate::login::start(state.clone(), req))
}
