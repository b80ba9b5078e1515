//! The socket server: where requests enter the daemon.
//!
//! `socket` produces the listener, the accept loop here hands each connection to
//! `connection::serve` on the daemon's task tracker, and `peer` checks who is calling.

pub mod access;
pub mod connection;
pub mod creds;
pub mod peer;
pub mod registry;
pub mod socket;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::registry::{Admission, Registry};
use crate::state::DaemonState;

/// Accepts connections until `shutdown` is cancelled. Each connection runs on `tracker`
/// in a slot of the connection table; at the cap the table evicts an ungreeted or idle
/// connection to make room, and only when every slot is busy does a newcomer get `busy`.
pub async fn accept_loop(
    listener: UnixListener,
    state: Arc<DaemonState>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    mut probe: Option<crate::liveness::ProbeReceiver>,
) {
    let limits = state.settings().config.limits.clone();
    let registry = Registry::new(limits.max_connections);
    // Accepted sockets inherit SO_PASSCRED, so the kernel stamps the writer on every byte
    // from the first (a client writes its hello and request before the accept returns);
    // access lists check the process that wrote a request by it (see `creds`).
    if let Err(e) = rustix::net::sockopt::set_socket_passcred(&listener, true) {
        tracing::warn!(error = %e, "cannot turn on SO_PASSCRED; allow_exe lists will refuse every program");
    }
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
            alive = crate::liveness::next_probe(&mut probe) => {
                let _ = alive.send(());
                continue;
            }
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match registry.admit() {
            Some((slot, admission)) => {
                if let Admission::Evicted(phase) = admission {
                    tracing::debug!(?phase, "connection cap reached; evicted a connection");
                }
                let state = state.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(connection::serve(stream, state, shutdown, slot));
            }
            None => {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection cap reached"
                );
                tracker.spawn(connection::refuse_busy(stream, limits.max_frame));
            }
        }
    }
}
