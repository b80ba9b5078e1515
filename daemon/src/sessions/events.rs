//! Session events: the audit trail's broadcast half, consumed by `watch`.

use tokd_protocol::verbs::watch::{WatchEvent, WatchEventKind};
use tokio::sync::broadcast;

use crate::clock::now_ms;

/// How many events a slow watcher may fall behind before it gets a `resync`.
pub const EVENT_QUEUE: usize = 256;

/// The sending side of the event bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<WatchEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// A bus with no subscribers yet.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(EVENT_QUEUE);
        Events { tx }
    }

    /// Publishes an event about `session`; nobody listening is fine.
    pub fn emit(&self, session: &str, kind: WatchEventKind) {
        let _ = self.tx.send(WatchEvent {
            at_ms: now_ms(),
            session: Some(session.to_owned()),
            kind,
        });
    }

    /// A new subscription: events from now on. A lagging subscriber's queue does not grow; it
    /// sees a lag error and answers `resync`.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.tx.subscribe()
    }
}
