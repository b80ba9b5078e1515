//! The refresh engine: keeps every session's token valid without any client doing anything,
//! and is the one place the set of sessions changes.
//!
//! - This file is the API the handlers call: [`Engine::get`] (the hot path),
//!   [`Engine::refresh_now`], the lifecycle entry points [`Engine::add`] and
//!   [`Engine::remove`] (which keep the session map and the deadline index together), and
//!   [`Engine::hold_refreshes`] for a logout.
//! - [`flight`]: single flight — one refresh task per session, its permits, the attempt.
//! - [`policy`]: what an attempt's outcome means, as one pure function.
//! - [`plan`]: when each session is looked at next, and the scheduler loop.
//! - [`scheduler`]: the deadline queue; [`crate::timing`]: the policy's arithmetic; [`thread`]:
//!   the engine's own thread and runtime.
//!
//! The engine's context is narrow: the sessions, the settings cell and (through the
//! sessions) the clock.

mod flight;
mod plan;
pub mod policy;
pub mod scheduler;
pub mod thread;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokd_protocol::verbs::get::{GetRequest, TokenReply};
use tokd_protocol::{ErrorCode, ErrorReply, SessionState, SessionStatus};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config_cell::{ConfigCell, Snapshot};
use crate::sessions::{
    Contents, NewSession, RefreshState, Removal, Session, SessionError, Sessions, audit, human_ms,
    lifetime_ms, status_of,
};
use scheduler::Scheduler;

/// The longest a `get` waits for a refresh, whatever it asks for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Who wants a refresh: it decides whether a planned retry time is respected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The scheduler: the session is due (or its retry time has come).
    Scheduled,
    /// A `get` whose token has less than `min_valid` left: it joins a refresh in flight, but
    /// never starts one before a planned retry (backoff, `Retry-After`).
    OnDemand,
    /// `tokd refresh`: starts one now, subject only to the minimum interval.
    Forced,
}

/// The refresh engine; cheap to clone (a handle).
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What the engine's parts share.
#[derive(Debug)]
struct Inner {
    /// Every session.
    sessions: Arc<Sessions>,
    /// The settings in force.
    settings: Arc<ConfigCell>,
    /// The deadline queue.
    scheduler: Scheduler,
    /// Every refresh task and the scheduler loop; shutdown waits for them.
    tasks: TaskTracker,
    /// Global cap on refreshes in flight.
    global: Arc<Semaphore>,
    /// Cancelled at shutdown: no new request is sent after it (one already sent is awaited).
    stop: CancellationToken,
    /// Longest sleep of the scheduler between wall-clock checks.
    clock_check: Duration,
    /// The thread refresh tasks run on, once [`Engine::start`] has started it.
    thread: OnceLock<thread::EngineThread>,
}

impl Inner {
    /// Spawns an engine task: on the engine's thread once it runs, else on the current
    /// runtime (an engine that was never started, as in unit tests).
    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self.thread.get() {
            Some(thread) => drop(self.tasks.spawn_on(task, thread.handle())),
            None => drop(self.tasks.spawn(task)),
        }
    }
}

impl Engine {
    /// An engine over `sessions` and `settings`, allowing as many refreshes in flight at once
    /// as the settings say.
    pub fn new(sessions: Arc<Sessions>, settings: Arc<ConfigCell>) -> Self {
        let config = &settings.current().config;
        let (max_concurrent, clock_check) = (config.max_concurrent_refreshes, config.clock_check);
        Engine {
            inner: Arc::new(Inner {
                sessions,
                settings: settings.clone(),
                scheduler: Scheduler::default(),
                tasks: TaskTracker::new(),
                global: Arc::new(Semaphore::new(max_concurrent.max(1))),
                stop: CancellationToken::new(),
                clock_check,
                thread: OnceLock::new(),
            }),
        }
    }

    /// Starts the engine's thread, plans every loaded session and starts the scheduler loop
    /// (which answers `probe`, the watchdog's liveness check).
    pub fn start(&self, probe: Option<crate::liveness::ProbeReceiver>) {
        let inner = &self.inner;
        match thread::EngineThread::start() {
            Ok(thread) => {
                let _ = inner.thread.set(thread);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the engine's thread; refreshing on the serving runtime");
            }
        }
        let sessions = inner.sessions.all();
        // Done before anything is served: what a first `get` may act on.
        for session in &sessions {
            session.with_live(|live| {
                // A config problem may have been fixed before this start: try again.
                retry_after_config_change(&mut live.refresh, inner.sessions.now());
                if live.refresh.unsettled() {
                    // The last daemon died with a refresh in flight: the provider may have
                    // rotated the refresh token. The stored one is tried once, now.
                    tracing::warn!(session = %session.name, "a refresh was in flight when the daemon stopped; retrying it");
                }
            });
        }
        // Planning every deadline (a quarter of a second at 100,000 sessions) happens on the
        // engine's thread while connections are already served; a `get` never needs it.
        let engine = inner.clone();
        inner.spawn(async move {
            let began = std::time::Instant::now();
            for session in &sessions {
                plan::plan(&engine, session);
            }
            tracing::debug!(
                sessions = sessions.len(),
                elapsed_ms = began.elapsed().as_millis(),
                "refreshes planned"
            );
            drop(sessions);
            plan::scheduler_loop(engine, probe).await;
        });
    }

    /// After a config reload: sessions that needed a config fix are tried again at once, and
    /// every session is planned again with the new settings on the engine's thread, so a
    /// reload with many sessions never holds up a serving worker.
    pub fn on_reload(&self, before: &Snapshot) {
        let inner = &self.inner;
        let sessions = inner.sessions.all();
        let now = inner.sessions.now();
        let after = inner.settings.current();
        for session in &sessions {
            let (retried, provider) = session
                .with_live(|live| {
                    (
                        retry_after_config_change(&mut live.refresh, now),
                        live.record.provider.clone(),
                    )
                })
                .unwrap_or((false, String::new()));
            if retried {
                tracing::info!(session = %session.name, "config reloaded; trying the session again");
            }
            // A provider the reload removed: its sessions need a config fix now.
            if before.config.providers.contains_key(&provider)
                && !after.config.providers.contains_key(&provider)
            {
                let reason = format!(
                    "provider {provider:?} is not configured; add it to the config and reload"
                );
                audit::needs_config(inner.sessions.events(), &session.name, &provider, &reason);
            }
        }
        let engine = inner.clone();
        let replan = move || {
            for session in &sessions {
                plan::plan(&engine, session);
            }
        };
        if inner.thread.get().is_none() {
            // An engine that was never started (no runtime to spawn on, perhaps): plan here.
            replan();
        } else {
            inner.spawn(async move { replan() });
        }
    }

    /// Stops sending new requests, waits (bounded by the HTTP timeout) for the ones already
    /// sent to be answered and persisted.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.tasks.close();
        // A request that was sent is awaited for as long as it may take, plus time to persist.
        let limit =
            inner.settings.current().providers.longest_request_timeout() + Duration::from_secs(5);
        if tokio::time::timeout(limit, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::error!("refreshes still running after {limit:?}; their results are lost");
        }
        if let Some(thread) = inner.thread.get() {
            thread.stop();
        }
    }

    /// Every session (the engine changes the set; others read it).
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.inner.sessions
    }

    /// Whether the engine is stopping (no new refresh starts).
    pub fn stopping(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// Stores a new session (or replaces one) and plans it: the one way a session is added.
    ///
    /// # Errors
    /// As [`Sessions::add`].
    pub async fn add(&self, new: NewSession) -> Result<(Arc<Session>, bool), SessionError> {
        let (session, replaced) = self.inner.sessions.add(new).await?;
        plan::plan(&self.inner, &session);
        Ok((session, replaced))
    }

    /// Removes a session (only generation `generation` when given) and forgets its
    /// deadline: the one way a session is removed.
    ///
    /// # Errors
    /// As [`Sessions::remove`].
    pub async fn remove(
        &self,
        name: &str,
        generation: Option<u64>,
    ) -> Result<Removal, SessionError> {
        let removal = self.inner.sessions.remove(name, generation).await?;
        if removal == Removal::Removed {
            self.inner.scheduler.cancel(name);
        }
        Ok(removal)
    }

    /// Keeps refreshes of `session` from starting while a logout revokes its grant, after
    /// waiting for one in flight to settle (its answer may carry the refresh token that is
    /// to be revoked). Lets go, and plans the session again, when the hold is dropped.
    pub async fn hold_refreshes(&self, session: &Arc<Session>) -> RefreshHold {
        loop {
            let flight = session
                .with_live(|live| match live.refresh.flight() {
                    Some(flight) => Some(flight.clone()),
                    None => {
                        let before = std::mem::replace(
                            &mut live.refresh,
                            RefreshState::Idle { due_at: None },
                        );
                        live.refresh = RefreshState::Revoking {
                            resume: Box::new(before),
                        };
                        None
                    }
                })
                .flatten();
            match flight {
                Some(mut flight) => {
                    let _ = flight.wait_for(Option::is_some).await;
                }
                None => break,
            }
        }
        self.inner.scheduler.cancel(&session.name);
        RefreshHold {
            engine: self.inner.clone(),
            session: session.clone(),
        }
    }

    /// The `get` hot path: the cached token when it has `min_valid` left; otherwise start or
    /// join the session's refresh, wait (bounded), and answer the best token still valid.
    ///
    /// # Errors
    /// `NotFound`, `Corrupt`, or — with no valid token — `NeedsLogin`, `NeedsConfig`,
    /// `RefreshFailed` or `Expired`.
    pub async fn get(&self, req: &GetRequest) -> Result<TokenReply, SessionError> {
        let sessions = &self.inner.sessions;
        let snapshot = self.inner.settings.current();
        let config = &snapshot.config;
        let session = sessions
            .find(&req.name)
            .ok_or_else(|| SessionError::NotFound(req.name.clone()))?;
        let cached = sessions.token_of(&session, req.min_valid_ms, req.include_id_token, config);
        // After a refresh whose answer was lost, the provider may have rotated the refresh
        // token; the retry then finds it refused and the grant (its access tokens included)
        // revoked. Until that retry has settled, the stored token is not handed out unasked.
        let unsettled = session
            .with_live(|live| live.refresh.unsettled())
            .unwrap_or(false);
        match &cached {
            Ok(token) if token.meets_min_valid && !unsettled => return cached,
            Err(SessionError::Corrupt { .. }) => return cached,
            Ok(_) if !unsettled => {
                if let Some(notice) = beyond_any_token(&session, req) {
                    // No refresh can help: say so instead of waiting for one.
                    return cached.map(|mut token| {
                        token.notice = Some(notice);
                        token
                    });
                }
            }
            _ => {}
        }
        if let Some(mut rx) = flight::start_or_join(&self.inner, &session, Trigger::OnDemand) {
            let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
            let _ = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        }
        // Removed or replaced while we waited: answer for the name as it is now.
        let session = sessions
            .find(&req.name)
            .ok_or_else(|| SessionError::NotFound(req.name.clone()))?;
        sessions.token_of(&session, req.min_valid_ms, req.include_id_token, config)
    }

    /// A guest's `get` (a uid admitted only by a session's `allow_uids`): answered from what
    /// is stored, never by starting a refresh, so a guest cannot make the daemon spend the
    /// grant; only the schedule and the owner refresh. A token with less than `min_valid`
    /// left is answered as the best valid one, with a notice.
    ///
    /// # Errors
    /// No such session, a corrupt record, no valid token, or one withheld while a lost
    /// refresh answer settles.
    pub fn get_cached(&self, req: &GetRequest) -> Result<TokenReply, SessionError> {
        let sessions = &self.inner.sessions;
        let snapshot = self.inner.settings.current();
        let session = sessions
            .find(&req.name)
            .ok_or_else(|| SessionError::NotFound(req.name.clone()))?;
        let unsettled = session
            .with_live(|live| live.refresh.unsettled())
            .unwrap_or(false);
        if unsettled {
            return Err(SessionError::Withheld(req.name.clone()));
        }
        let mut token = sessions.token_of(
            &session,
            req.min_valid_ms,
            req.include_id_token,
            &snapshot.config,
        )?;
        if !token.meets_min_valid && token.notice.is_none() {
            token.notice = Some(format!(
                "the token of session {:?} has less than the asked validity left; a guest is \
                 answered from the cache and the daemon refreshes on its own schedule",
                req.name
            ));
        }
        Ok(token)
    }

    /// `tokd refresh NAME`: a refresh now (subject to the minimum interval), awaited.
    ///
    /// # Errors
    /// Why the session cannot be refreshed, or how the refresh failed.
    pub async fn refresh_now(
        &self,
        name: &str,
        wait: Duration,
    ) -> Result<SessionStatus, ErrorReply> {
        let sessions = &self.inner.sessions;
        let session = sessions
            .find(name)
            .ok_or_else(|| ErrorReply::from(SessionError::NotFound(name.to_owned())))?;
        let Some(mut rx) = flight::start_or_join(&self.inner, &session, Trigger::Forced) else {
            return Err(self.why_not_refreshable(&session));
        };
        let wait = wait.min(MAX_WAIT);
        let waited = tokio::time::timeout(wait, rx.wait_for(Option::is_some))
            .await
            .map(|r| r.map(|result| result.clone()));
        match waited {
            Ok(Ok(Some(Err(e)))) => Err(e),
            Ok(Ok(_)) => Ok(status_of(
                &session,
                &self.inner.settings.current().config,
                sessions.now(),
            )),
            Ok(Err(_)) => Err(policy::shutting_down()),
            Err(_) => Err(ErrorReply::new(
                ErrorCode::Timeout,
                format!(
                    "the refresh of {name:?} did not finish within {}; it goes on in the background",
                    human_ms(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
                ),
            )),
        }
    }

    fn why_not_refreshable(&self, session: &Session) -> ErrorReply {
        if self.stopping() {
            return policy::shutting_down();
        }
        let revoking = matches!(&*session.lock(), Contents::Live(live) if live.refresh.revoking());
        if revoking {
            return ErrorReply::new(
                ErrorCode::Busy,
                format!(
                    "session {:?} is being logged out: its grant is being revoked",
                    session.name
                ),
            );
        }
        let st = status_of(
            session,
            &self.inner.settings.current().config,
            self.inner.sessions.now(),
        );
        let reason = st.last_error.unwrap_or_default();
        match st.state {
            SessionState::Corrupt => ErrorReply::new(
                ErrorCode::NeedsLogin,
                format!("session {:?} is corrupt: {reason}", session.name),
            ),
            SessionState::NeedsConfig => ErrorReply::new(
                ErrorCode::NeedsConfig,
                format!("session {:?} needs a config fix: {reason}", session.name),
            ),
            _ => ErrorReply::new(
                ErrorCode::NeedsLogin,
                format!(
                    "session {:?} cannot be refreshed: {}",
                    session.name,
                    if reason.is_empty() {
                        "it has no refresh token; log in again".to_owned()
                    } else {
                        reason
                    }
                ),
            ),
        }
    }
}

/// When `req.min_valid_ms` is longer than the session's tokens live, no refresh can meet it:
/// the notice that says so.
fn beyond_any_token(session: &Session, req: &GetRequest) -> Option<String> {
    // Only a token the provider issued by a refresh tells what a refresh gives (an imported
    // one may have been shorter-lived).
    let lifetime = session
        .with_live(|live| (live.record.refresh_count > 0).then(|| lifetime_ms(&live.record)))
        .flatten()?;
    let asked = i64::try_from(req.min_valid_ms).unwrap_or(i64::MAX);
    (lifetime > 0 && asked > lifetime).then(|| {
        format!(
            "no token of session {:?} can stay valid for {}: its provider issues tokens that \
             live {}; answering the current one",
            req.name,
            human_ms(asked),
            human_ms(lifetime)
        )
    })
}

/// Clears a "needs config" verdict so that the next plan tries the session again; the config
/// it was about may have been fixed. Says whether there was one.
fn retry_after_config_change(refresh: &mut RefreshState, now: tokd_protocol::EpochMs) -> bool {
    let RefreshState::NeedsConfig { lost, .. } = refresh else {
        return false;
    };
    *refresh = match *lost {
        Some(lost) => RefreshState::Unsettled {
            lost,
            retry_at: now,
            trouble: None,
        },
        None => RefreshState::Idle { due_at: None },
    };
    true
}

/// Keeps refreshes of a session from starting while a logout revokes its grant; lets go
/// (and plans the session again) on drop.
#[derive(Debug)]
pub struct RefreshHold {
    engine: Arc<Inner>,
    session: Arc<Session>,
}

impl Drop for RefreshHold {
    fn drop(&mut self) {
        self.session.with_live(|live| {
            if let RefreshState::Revoking { resume } =
                std::mem::replace(&mut live.refresh, RefreshState::Idle { due_at: None })
            {
                live.refresh = *resume;
            }
        });
        plan::plan(&self.engine, &self.session);
    }
}
