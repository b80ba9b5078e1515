//! `list`: names, providers, states.

use tokd_protocol::Response;
use tokd_protocol::verbs::list::{ListReply, ListRequest};

use crate::state::DaemonState;

pub(super) fn handle(_req: ListRequest, state: &DaemonState) -> Response {
    Response::List(ListReply {
        sessions: state.sessions().list(&state.settings().config),
    })
}
