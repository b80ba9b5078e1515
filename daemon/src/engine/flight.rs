//! Single flight: at most one refresh per session runs, in a task the engine owns, so a
//! waiter that times out or disconnects never cancels the HTTP call. An attempt waits for
//! its turn (the minimum interval, the provider's and the global permits), marks the
//! request in flight in the store when it spends a refresh token, sends it, and hands what
//! came back to the policy ([`super::policy::settle`]).
//!
//! An attempt reads one settings snapshot, taken when it starts, to its end: a reload in the
//! middle never mixes two generations of a provider.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::policy::{self, Attempted, Report, Settled};
use super::{Inner, Trigger};
use crate::config::Grant;
use crate::config_cell::Snapshot;
use crate::providers::{Provider, ProviderError, TokenGrant, TokenRequest};
use crate::sessions::{
    Contents, Prior, RefreshResult, RefreshState, Session, audit, lifetime_ms, random_jitter,
};
use crate::store::SessionRecord;
use crate::timing;

/// Starts a refresh of `session` or joins the one in flight. `None` when the session cannot
/// be refreshed (terminal, no refresh token, unknown provider, corrupt, being logged out),
/// the daemon is stopping, or an on-demand request comes before a planned retry.
pub(super) fn start_or_join(
    engine: &Arc<Inner>,
    session: &Arc<Session>,
    trigger: Trigger,
) -> Option<watch::Receiver<Option<RefreshResult>>> {
    let snapshot = engine.settings.current();
    let now = engine.sessions.now();
    let mut contents = session.lock();
    let Contents::Live(live) = &mut *contents else {
        return None;
    };
    if let Some(flight) = live.refresh.flight() {
        return Some(flight.clone());
    }
    if engine.stop.is_cancelled() || live.refresh.revoking() {
        return None;
    }
    if trigger == Trigger::OnDemand && live.refresh.retry_at().is_some_and(|at| at > now) {
        return None;
    }
    let provider = snapshot.providers.get(&live.record.provider)?;
    if !live.can_refresh(Some(provider.grant())) {
        return None;
    }
    let not_before = live
        .last_attempt
        .map(|t| t + timing::min_interval(lifetime_ms(&live.record)));
    let (tx, rx) = watch::channel(None);
    let prior = live.refresh.prior();
    live.refresh = RefreshState::Waiting {
        flight: rx.clone(),
        prior: prior.clone(),
    };
    drop(contents);
    let attempt = Attempt {
        engine: engine.clone(),
        session: session.clone(),
        snapshot,
        provider,
        prior,
        tx: Some(tx),
    };
    engine.spawn(attempt.run(not_before));
    Some(rx)
}

/// One refresh attempt and everything it needs, from one settings snapshot.
struct Attempt {
    engine: Arc<Inner>,
    session: Arc<Session>,
    snapshot: Arc<Snapshot>,
    provider: Arc<Provider>,
    /// What it started from.
    prior: Prior,
    /// The waiters' channel; taken by [`Attempt::finish`] (a drop without it is a panic).
    tx: Option<watch::Sender<Option<RefreshResult>>>,
}

impl Attempt {
    fn spends_refresh_token(&self) -> bool {
        self.provider.grant() == Grant::RefreshToken
    }

    async fn run(mut self, not_before: Option<Instant>) {
        let (outcome, record) = self.attempt(not_before).await;
        self.finish(outcome, record.as_ref()).await;
    }

    /// Waits for its turn, sends, and says what came back (with the record it sent for).
    async fn attempt(&mut self, not_before: Option<Instant>) -> (Attempted, Option<SessionRecord>) {
        let stop = self.engine.stop.clone();
        if let Some(at) = not_before {
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = stop.cancelled() => return (Attempted::Aborted, None),
            }
        }
        // The provider's own cap first: waiting for it must not hold a global permit that
        // another provider's refresh could use.
        let _per_provider = tokio::select! {
            p = self.provider.semaphore.clone().acquire_owned() => p,
            () = stop.cancelled() => return (Attempted::Aborted, None),
        };
        let _global = tokio::select! {
            p = self.engine.global.clone().acquire_owned() => p,
            () = stop.cancelled() => return (Attempted::Aborted, None),
        };
        let Some(record) = self.session.with_live(|live| {
            live.last_attempt = Some(Instant::now());
            live.record.clone()
        }) else {
            return (Attempted::Stale, None);
        };
        let outcome = self.send(&record).await;
        (outcome, Some(record))
    }

    /// Resolves the endpoint, marks the request in flight, sends it.
    async fn send(&self, record: &SessionRecord) -> Attempted {
        let client = &self.snapshot.providers.client;
        // Resolve (and discover) the endpoint before anything is marked or sent.
        let url = match self.provider.target(client).await {
            Ok(url) => url,
            Err(e) => {
                return Attempted::Failed {
                    error: e.nothing_sent(),
                    sent_at: None,
                };
            }
        };
        let spends = self.spends_refresh_token();
        if spends
            && let Err(error) = self
                .provider
                .check_binding(&url, record.refresh_origin.as_deref())
        {
            return Attempted::Failed {
                error,
                sent_at: None,
            };
        }
        if self.engine.stop.is_cancelled() {
            return Attempted::Aborted;
        }
        let sent_at = self.engine.sessions.now();
        if let Some(stopped) = self.mark_sending(record, sent_at).await {
            return stopped;
        }
        let grant = match (&record.refresh_token, spends) {
            (Some(rt), true) => TokenGrant::Refresh { refresh_token: rt },
            _ => TokenGrant::ClientCredentials,
        };
        tracing::debug!(session = %self.session.name, provider = %self.provider.name, "refresh request sent");
        let headers = self.snapshot.config.session_headers(&self.session.name);
        let result = self
            .provider
            .send(
                client,
                &url,
                TokenRequest {
                    grant,
                    attrs: &record.attrs,
                    session_headers: &headers,
                    bound_origin: record.refresh_origin.as_deref(),
                    sent_at,
                },
            )
            .await;
        match result {
            Ok(obtained) => Attempted::Tokens {
                tokens: obtained.tokens,
                origin: obtained.origin,
                sent_at,
            },
            Err(error) => Attempted::Failed {
                error,
                sent_at: Some(sent_at),
            },
        }
    }

    /// The crash window: a request that spends the refresh token is marked in flight in the
    /// store before the provider can rotate. `Some` when it must not be sent.
    async fn mark_sending(&self, record: &SessionRecord, sent_at: i64) -> Option<Attempted> {
        let flight = self
            .session
            .with_live(|live| live.refresh.flight().cloned())??;
        let sending = RefreshState::Sending {
            flight,
            since: sent_at,
            prior: self.prior.clone(),
        };
        if !self.spends_refresh_token() {
            if !self.engine.sessions.is_current(&self.session) {
                return Some(Attempted::Stale);
            }
            self.session.with_live(|live| live.refresh = sending);
            return None;
        }
        match self
            .engine
            .sessions
            .commit(&self.session, record.clone(), sending)
            .await
        {
            Ok(true) => None,
            Ok(false) => Some(Attempted::Stale),
            Err(failed) => Some(Attempted::Failed {
                error: ProviderError::retryable(format!(
                    "cannot persist the refresh mark, so nothing was sent: {}",
                    failed.error
                )),
                sent_at: None,
            }),
        }
    }

    /// Applies the outcome: persists what it means, puts the next state in force, tells the
    /// waiters, reports it, plans the next look.
    async fn finish(&mut self, outcome: Attempted, sent_for: Option<&SessionRecord>) {
        let Some(tx) = self.tx.take() else { return };
        let record = sent_for
            .cloned()
            .or_else(|| self.session.with_live(|live| live.record.clone()));
        let Some(record) = record else {
            let _ = tx.send(Some(stale_reply(&self.session)));
            return;
        };
        let ctx = policy::Context {
            name: &self.session.name,
            record: &record,
            prior: &self.prior,
            spends_refresh_token: self.spends_refresh_token(),
            now: self.engine.sessions.now(),
            backoff_jitter: 0.5 + rand::random::<f64>() / 2.0,
        };
        let settled = policy::settle(&ctx, outcome);
        let reply = settled.reply.clone();
        self.apply(settled).await;
        let _ = tx.send(Some(reply));
        super::plan::plan(&self.engine, &self.session);
    }

    /// Persists and puts in force what the policy decided, and reports it.
    async fn apply(&self, settled: Settled) {
        let Settled {
            record,
            refresh,
            new_token,
            report,
            ..
        } = settled;
        let sessions = &self.engine.sessions;
        match record {
            Some(record) => match sessions.commit(&self.session, record, refresh).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(failed) => {
                    // The provider may have rotated: the new tokens exist only in memory now.
                    // Serving them beats losing the session; the next refresh persists again.
                    tracing::error!(session = %self.session.name, error = %failed.error, "cannot persist the refresh's outcome; serving it from memory");
                    sessions.put_in_force(&self.session, failed.record, failed.refresh);
                }
            },
            None => {
                if !sessions.is_current(&self.session) {
                    return;
                }
                self.session.with_live(|live| live.refresh = refresh);
            }
        }
        if new_token {
            self.session.with_live(|live| {
                live.jitter_ms = random_jitter(&live.record);
                live.expiry_reported = false;
            });
        }
        self.report(&report);
    }

    fn report(&self, report: &Report) {
        let events = self.engine.sessions.events();
        let (name, provider) = (&self.session.name, &self.provider.name);
        let now = self.engine.sessions.now();
        match report {
            Report::Refreshed {
                expires_at_ms,
                refresh_count,
            } => audit::refreshed(events, name, provider, *expires_at_ms, now, *refresh_count),
            Report::RefreshFailed {
                failures,
                retry_at,
                sent_no_answer,
                error,
            } => audit::refresh_failed(
                events,
                name,
                provider,
                *failures,
                *retry_at,
                now,
                *sent_no_answer,
                error,
            ),
            Report::NeedsLogin { reason } => audit::needs_login(events, name, provider, reason),
            Report::NeedsConfig { reason } => audit::needs_config(events, name, provider, reason),
            Report::Nothing => {}
        }
    }
}

fn stale_reply(session: &Session) -> RefreshResult {
    Err(tokd_protocol::ErrorReply::new(
        tokd_protocol::ErrorCode::NotFound,
        format!(
            "session {:?} was removed or replaced during the refresh",
            session.name
        ),
    ))
}

/// A refresh task that never reached `finish` (a panic): the session is not left
/// `refreshing` forever, its waiters hear about it, and it is planned again.
impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        tracing::error!(session = %self.session.name, "a refresh task ended abnormally");
        let error = "internal error during the refresh".to_owned();
        let now = self.engine.sessions.now();
        self.session.with_live(|live| {
            live.refresh = match self.prior.lost {
                Some(lost) => RefreshState::Unsettled {
                    lost,
                    retry_at: now,
                    trouble: None,
                },
                None => RefreshState::Backoff {
                    trouble: crate::sessions::Trouble::after(
                        self.prior.trouble.as_ref(),
                        error.clone(),
                    ),
                    retry_at: now + 1_000,
                },
            };
        });
        let _ = tx.send(Some(Err(tokd_protocol::ErrorReply::new(
            tokd_protocol::ErrorCode::RefreshFailed,
            error,
        ))));
        super::plan::plan(&self.engine, &self.session);
    }
}
