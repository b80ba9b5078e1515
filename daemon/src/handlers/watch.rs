//! `watch`: `Watching`, then one `Event` per session event. A watcher that falls more than
//! the queue behind gets one `resync` event instead of an ever-growing queue.

use futures_util::stream;
use tokd_protocol::Response;
use tokd_protocol::verbs::watch::{WatchEvent, WatchEventKind, WatchReply, WatchRequest};
use tokio::sync::broadcast::error::RecvError;

use super::Reply;
use crate::clock::now_ms;
use crate::state::DaemonState;

pub(super) fn handle(_req: WatchRequest, state: &DaemonState) -> Reply {
    // Subscribe before answering `Watching`, so no event after the answer is missed.
    let rx = state.events().subscribe();
    let first = stream::iter([Response::Watching(WatchReply {})]);
    let events = stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(event) => Some((Response::Event(event), rx)),
            Err(RecvError::Lagged(_)) => Some((
                Response::Event(WatchEvent {
                    at_ms: now_ms(),
                    session: None,
                    kind: WatchEventKind::Resync,
                }),
                rx,
            )),
            Err(RecvError::Closed) => None,
        }
    });
    Reply::Stream(Box::pin(futures_util::StreamExt::chain(first, events)))
}
