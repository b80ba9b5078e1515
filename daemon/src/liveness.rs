//! Liveness probes: the watchdog pings systemd only after the loops it vouches for (the
//! accept loop and the refresh scheduler) answered a probe, so a stuck loop stops the pings.
//! Kept apart from systemd's notifications, which know nothing of the loops.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A liveness probe answered by a loop that is still turning.
pub type Probe = oneshot::Sender<()>;

/// The receiving end a loop polls for probes.
pub type ProbeReceiver = mpsc::Receiver<Probe>;

/// Probes for the two loops the watchdog vouches for.
#[derive(Debug)]
pub struct Liveness {
    /// Probes the accept loop answers.
    pub accept: mpsc::Sender<Probe>,
    /// Probes the refresh scheduler answers.
    pub scheduler: mpsc::Sender<Probe>,
}

/// Creates the probe channels: the senders for the watchdog, the receivers for the loops.
pub fn liveness() -> (Liveness, ProbeReceiver, ProbeReceiver) {
    let (accept, accept_rx) = mpsc::channel(1);
    let (scheduler, scheduler_rx) = mpsc::channel(1);
    (Liveness { accept, scheduler }, accept_rx, scheduler_rx)
}

/// Sends `WATCHDOG=1` at half `WATCHDOG_USEC`, but only after both the accept loop and the
/// scheduler answered a probe: a ping from a task of its own would prove nothing.
pub async fn watchdog(live: Liveness, interval: Duration, shutdown: CancellationToken) {
    let period = interval / 2;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let answer_limit = period / 2;
        let alive = answers(&live.accept, answer_limit).await
            && answers(&live.scheduler, answer_limit).await;
        if alive {
            crate::systemd::notify_watchdog();
        } else {
            tracing::error!(
                "a core loop did not answer its liveness probe; withholding the watchdog ping"
            );
        }
    }
}

async fn answers(probe: &mpsc::Sender<Probe>, limit: Duration) -> bool {
    let (tx, rx) = oneshot::channel();
    if probe.try_send(tx).is_err() {
        return false;
    }
    matches!(tokio::time::timeout(limit, rx).await, Ok(Ok(())))
}

/// The next probe from `rx`; never resolves when there is no probe channel (no watchdog) or
/// it closed, so a `select!` branch on it simply never fires.
pub async fn next_probe(rx: &mut Option<ProbeReceiver>) -> Probe {
    if let Some(r) = rx.as_mut()
        && let Some(probe) = r.recv().await
    {
        return probe;
    }
    *rx = None;
    std::future::pending().await
}
