//! Planning: when each session is looked at next, and the loop that looks.
//!
//! A session's next look is the earlier of its planned refresh (or retry) and, until it is
//! reported, its token's expiry: whatever the session is doing, an expiry is reported (log
//! line and event, which also removes a token file) when it comes. The deadline queue
//! ([`super::scheduler`]) is the only index of these times; the planned refresh time itself
//! lives in the session's state (`Idle { due_at }`, `Backoff { retry_at }`, …).

use std::sync::Arc;
use std::time::Duration;

use tokd_protocol::EpochMs;

use super::{Inner, Trigger, flight};
use crate::providers::Providers;
use crate::sessions::{Live, RefreshState, Session, audit, lifetime_ms};
use crate::timing;

/// Plans the next look at `session`.
pub(super) fn plan(engine: &Inner, session: &Session) {
    if !engine.sessions.is_current(session) {
        return;
    }
    let snapshot = engine.settings.current();
    let when = session
        .with_live(|live| next_look(live, &snapshot.providers))
        .flatten();
    match when {
        Some(at) => engine.scheduler.schedule(&session.name, at),
        None => engine.scheduler.cancel(&session.name),
    }
}

/// The next time to look at a live session: its planned refresh or retry, or its expiry.
/// A session a logout holds is planned again when the logout lets go.
fn next_look(live: &mut Live, providers: &Providers) -> Option<EpochMs> {
    if live.refresh.revoking() {
        return None;
    }
    let provider = providers.get(&live.record.provider);
    let refreshable = live.can_refresh(provider.as_ref().map(|p| p.grant()));
    let refresh_at = match &live.refresh {
        RefreshState::Idle { .. } => {
            let due_at = provider.filter(|_| refreshable).map(|p| {
                timing::due_ms(
                    live.record.expires_at_ms,
                    lifetime_ms(&live.record),
                    p.refresh_ahead,
                    live.jitter_ms,
                )
            });
            live.refresh = RefreshState::Idle { due_at };
            due_at
        }
        other if refreshable => other.retry_at(),
        _ => None,
    };
    let expiry_at = (!live.expiry_reported).then_some(live.record.expires_at_ms);
    match (refresh_at, expiry_at) {
        (Some(r), Some(e)) => Some(r.min(e)),
        (r, e) => r.or(e),
    }
}

/// A deadline came: report an expiry that came, and refresh when the refresh (or retry)
/// time has come.
fn on_due(engine: &Arc<Inner>, name: &str) {
    let Some(session) = engine.sessions.find(name) else {
        return;
    };
    let now = engine.sessions.now();
    let snapshot = engine.settings.current();
    let (expired, refresh_due) = session
        .with_live(|live| {
            let expired = (live.record.expires_at_ms <= now && !live.expiry_reported)
                .then(|| live.record.provider.clone());
            if expired.is_some() {
                live.expiry_reported = true;
            }
            let grant = snapshot
                .providers
                .get(&live.record.provider)
                .map(|p| p.grant());
            let due = live.can_refresh(grant)
                && !live.refresh.revoking()
                && live.refresh.planned_at().is_some_and(|at| at <= now);
            (expired, due)
        })
        .unwrap_or((None, false));
    if let Some(provider) = expired {
        audit::expired(engine.sessions.events(), name, &provider);
    }
    if refresh_due && flight::start_or_join(engine, &session, Trigger::Scheduled).is_some() {
        return;
    }
    plan(engine, &session);
}

/// The scheduler loop: wakes for the next deadline, on an earlier one, or at least every
/// clock-check interval (tokio's timers stop during suspend; the wall clock does not), and
/// answers the watchdog's liveness probes.
pub(super) async fn scheduler_loop(
    engine: Arc<Inner>,
    mut probe: Option<crate::liveness::ProbeReceiver>,
) {
    let check_ms = i64::try_from(engine.clock_check.as_millis()).unwrap_or(60_000);
    loop {
        let now = engine.sessions.now();
        for name in engine.scheduler.pop_due(now) {
            on_due(&engine, &name);
        }
        let wait_ms = engine
            .scheduler
            .next_due()
            .map_or(check_ms, |t| (t - now).clamp(0, check_ms));
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))) => {}
            () = engine.scheduler.notify.notified() => {}
            () = engine.stop.cancelled() => break,
            alive = crate::liveness::next_probe(&mut probe) => {
                let _ = alive.send(());
            }
        }
    }
}
