//! `login`: interactive login performed by the daemon (streamed answer: prompts, then the
//! stored session).

use tokd_protocol::verbs::login::LoginRequest;

use super::Reply;
use crate::state::DaemonState;

pub(super) fn handle(req: LoginRequest, state: &DaemonState) -> Reply {
    let ctx = crate::login::Login {
        engine: state.engine().clone(),
        snapshot: state.settings(),
    };
    let (stream, input) = crate::login::start(ctx, req);
    Reply::Conversation(stream, input)
}
