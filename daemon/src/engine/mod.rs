//! The refresh engine: keeps every session's token valid without any client doing anything.
//!
//! - [`scheduler`] holds one wall-clock deadline per session; its loop wakes for the next
//!   deadline, on an earlier one, or at least every clock-check interval (suspend).
//! - [`start_or_join`] is single flight: at most one refresh per session runs, in a task the
//!   engine owns, so a waiter that times out or disconnects never cancels the HTTP call.
//! - A refresh commits only if the session's generation is unchanged (`rm` during a refresh
//!   does not bring it back); the new record is written and flushed before the new token is
//!   served; a refresh-token request is marked in flight in the store before it is sent.
//! - [`timing`] has the policy's arithmetic: due time, jitter, minimum interval, backoff.

pub mod scheduler;
pub mod thread;
pub mod timing;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokd_protocol::verbs::get::{GetRequest, TokenReply};
use tokd_protocol::verbs::watch::WatchEventKind;
use tokd_protocol::{EpochMs, ErrorCode, ErrorReply, SessionStatus};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Grant;
use crate::providers::{Provider, ProviderError, Providers, TokenGrant, TokenRequest};
use crate::sessions::{RefreshResult, Runtime, Session, SessionError, Slot, human_ms, status_of};
use crate::state::DaemonState;
use crate::store::{SessionRecord, Terminal};
use scheduler::Scheduler;

/// The longest a `get` waits for a refresh, whatever it asks for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Engine-wide state, owned by [`DaemonState`].
#[derive(Debug)]
pub struct Engine {
    /// The deadline queue.
    pub scheduler: Scheduler,
    /// Every refresh task and the scheduler loop; shutdown waits for them.
    tasks: TaskTracker,
    /// Global cap on refreshes in flight.
    global: Arc<Semaphore>,
    /// Cancelled at shutdown: no new request is sent after it (one already sent is awaited).
    stop: CancellationToken,
    /// Longest sleep of the scheduler between wall-clock checks.
    clock_check: Duration,
    /// The thread refresh tasks run on, once [`start`] has started it.
    thread: OnceLock<thread::EngineThread>,
}

impl Engine {
    /// An engine allowing `max_concurrent` refreshes in flight at once.
    pub fn new(max_concurrent: usize, clock_check: Duration) -> Self {
        Engine {
            scheduler: Scheduler::default(),
            tasks: TaskTracker::new(),
            global: Arc::new(Semaphore::new(max_concurrent.max(1))),
            stop: CancellationToken::new(),
            clock_check,
            thread: OnceLock::new(),
        }
    }

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

/// How one attempt ended.
#[derive(Debug)]
enum Outcome {
    /// New tokens are stored and served.
    Refreshed { expires_at_ms: EpochMs },
    /// The provider (or the network) said no.
    Failed(ProviderError),
    /// The session was removed or replaced meanwhile; nothing was committed.
    Stale,
    /// Not sent: shutting down, or the in-flight mark could not be persisted.
    Aborted(ErrorReply),
}

/// Plans every loaded session and starts the scheduler loop (which answers `probe`, the
/// watchdog's liveness check).
pub fn start(state: &Arc<DaemonState>, probe: Option<crate::systemd::ProbeReceiver>) {
    match thread::EngineThread::start() {
        Ok(thread) => {
            let _ = state.engine.thread.set(thread);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the engine's thread; refreshing on the serving runtime");
        }
    }
    let now = state.clock.now_ms();
    let sessions = state.sessions.all();
    // Done before anything is served: what a first `get` may act on.
    for session in &sessions {
        if let Slot::Live { record, runtime } = &mut *session.lock() {
            // A config problem may have been fixed before this start: try again.
            retry_after_config_change(record, runtime);
            if record.in_flight_since_ms.is_some() {
                // The last daemon died with a refresh in flight: the provider may have rotated
                // the refresh token. Try the stored one once, now.
                runtime.interrupted = true;
                runtime.retry_at_ms = Some(now);
                tracing::warn!(session = %session.name, "a refresh was in flight when the daemon stopped; retrying it");
            }
            runtime.jitter_ms = random_jitter(record);
        }
    }
    // Planning every deadline (a quarter of a second at 100,000 sessions) happens on the
    // engine's thread while connections are already served; a `get` never needs the plan.
    let st = state.clone();
    state.engine.spawn(async move {
        let began = std::time::Instant::now();
        for session in &sessions {
            schedule(&st, session);
        }
        tracing::debug!(
            sessions = sessions.len(),
            elapsed_ms = began.elapsed().as_millis(),
            "refreshes planned"
        );
        drop(sessions);
        scheduler_loop(st, probe).await;
    });
}

/// After a config reload: sessions that needed a config fix are tried again at once, and
/// every session is planned again with the new settings (refresh_ahead, providers) on the
/// engine's thread, so a reload with many sessions never holds up a serving worker.
pub fn on_reload(state: &Arc<DaemonState>) {
    let sessions = state.sessions.all();
    for session in &sessions {
        if let Slot::Live { record, runtime } = &mut *session.lock()
            && retry_after_config_change(record, runtime)
        {
            tracing::info!(session = %session.name, "config reloaded; trying the session again");
        }
    }
    if state.engine.thread.get().is_none() {
        // An engine that was never started (no runtime to spawn on, perhaps): plan here.
        for session in &sessions {
            schedule(state, session);
        }
        return;
    }
    let st = state.clone();
    state.engine.spawn(async move {
        for session in &sessions {
            schedule(&st, session);
        }
    });
}

/// Clears a session's "needs config" verdict so that the next plan tries it again; the
/// config it was about may have been fixed. Says whether there was one.
fn retry_after_config_change(record: &mut SessionRecord, runtime: &mut Runtime) -> bool {
    if !matches!(record.terminal, Some(Terminal::NeedsConfig { .. })) {
        return false;
    }
    record.terminal = None;
    runtime.retry_at_ms = None;
    true
}

/// Stops sending new requests, waits (bounded by the HTTP timeout) for the ones already
/// sent to be answered and persisted.
pub async fn shutdown(state: &DaemonState) {
    state.engine.stop.cancel();
    state.engine.tasks.close();
    // A request that was sent is awaited for as long as it may take, plus time to persist.
    let limit = state.providers().longest_request_timeout() + Duration::from_secs(5);
    if tokio::time::timeout(limit, state.engine.tasks.wait())
        .await
        .is_err()
    {
        tracing::error!("refreshes still running after {limit:?}; their results are lost");
    }
    if let Some(thread) = state.engine.thread.get() {
        thread.stop();
    }
}

/// A freshly added session: choose its jitter and plan its refresh.
pub fn on_added(state: &Arc<DaemonState>, session: &Arc<Session>) {
    if let Slot::Live { record, runtime } = &mut *session.lock() {
        runtime.jitter_ms = random_jitter(record);
    }
    schedule(state, session);
}

/// Keeps refreshes of a session from starting while a logout revokes its grant; lets go
/// (and plans the session again) on drop.
#[derive(Debug)]
pub struct RefreshHold {
    state: Arc<DaemonState>,
    session: Arc<Session>,
}

impl Drop for RefreshHold {
    fn drop(&mut self) {
        if let Slot::Live { runtime, .. } = &mut *self.session.lock() {
            runtime.revoking = false;
        }
        schedule(&self.state, &self.session);
    }
}

/// Stops new refreshes of `session` from starting and waits for one in flight to settle (its
/// answer may carry the refresh token that is to be revoked).
pub async fn hold_refreshes(state: &Arc<DaemonState>, session: &Arc<Session>) -> RefreshHold {
    let inflight = match &mut *session.lock() {
        Slot::Live { runtime, .. } => {
            runtime.revoking = true;
            runtime.inflight.clone()
        }
        Slot::Corrupt { .. } => None,
    };
    state.engine.scheduler.cancel(&session.name);
    if let Some(mut rx) = inflight {
        let _ = rx.wait_for(Option::is_some).await;
    }
    RefreshHold {
        state: state.clone(),
        session: session.clone(),
    }
}

/// A removed session: forget its deadline.
pub fn on_removed(state: &DaemonState, name: &str) {
    state.engine.scheduler.cancel(name);
}

/// The `get` hot path: the cached token when it has `min_valid` left; otherwise start or
/// join the session's refresh, wait (bounded), and answer the best token still valid.
///
/// # Errors
/// `NotFound`, `Corrupt`, or — with no valid token — `NeedsLogin`, `NeedsConfig`,
/// `RefreshFailed` or `Expired`.
pub async fn get(state: &Arc<DaemonState>, req: &GetRequest) -> Result<TokenReply, SessionError> {
    let config = state.config();
    let session = state
        .sessions
        .find(&req.name)
        .ok_or_else(|| SessionError::NotFound(req.name.clone()))?;
    let cached = state
        .sessions
        .token_of(&session, req.min_valid_ms, req.include_id_token, &config);
    // After a refresh whose answer was lost, the provider may have rotated the refresh
    // token; the retry then finds it refused and the grant (its access tokens included)
    // revoked. Until that retry has settled, the stored token is not handed out unasked.
    let unsettled = matches!(&*session.lock(), Slot::Live { runtime, .. } if runtime.interrupted);
    match &cached {
        Ok(token) if token.meets_min_valid && !unsettled => return cached,
        Err(SessionError::Corrupt { .. }) => return cached,
        _ => {}
    }
    if let Some(mut rx) = start_or_join(state, &session, Trigger::OnDemand) {
        let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
    }
    // Removed or replaced while we waited: answer for the name as it is now.
    let session = state
        .sessions
        .find(&req.name)
        .ok_or_else(|| SessionError::NotFound(req.name.clone()))?;
    state
        .sessions
        .token_of(&session, req.min_valid_ms, req.include_id_token, &config)
}

/// `tokd refresh NAME`: a refresh now (subject to the minimum interval), awaited.
///
/// # Errors
/// Why the session cannot be refreshed, or how the refresh failed.
pub async fn refresh_now(
    state: &Arc<DaemonState>,
    name: &str,
    wait: Duration,
) -> Result<SessionStatus, ErrorReply> {
    let session = state
        .sessions
        .find(name)
        .ok_or_else(|| ErrorReply::from(SessionError::NotFound(name.to_owned())))?;
    let Some(mut rx) = start_or_join(state, &session, Trigger::Forced) else {
        return Err(why_not_refreshable(state, &session));
    };
    let wait = wait.min(MAX_WAIT);
    let waited = tokio::time::timeout(wait, rx.wait_for(Option::is_some))
        .await
        .map(|r| r.map(|result| result.clone()));
    match waited {
        Ok(Ok(Some(Err(e)))) => Err(e),
        Ok(Ok(_)) => Ok(status_of(&session, &state.config(), state.clock.now_ms())),
        Ok(Err(_)) => Err(ErrorReply::new(
            ErrorCode::ShuttingDown,
            "the daemon stopped the refresh",
        )),
        Err(_) => Err(ErrorReply::new(
            ErrorCode::Timeout,
            format!(
                "the refresh of {name:?} did not finish within {}; it goes on in the background",
                human_ms(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
            ),
        )),
    }
}

fn why_not_refreshable(state: &DaemonState, session: &Session) -> ErrorReply {
    if state.engine.stop.is_cancelled() {
        return ErrorReply::new(ErrorCode::ShuttingDown, "the daemon is shutting down");
    }
    if matches!(&*session.lock(), Slot::Live { runtime, .. } if runtime.revoking) {
        return ErrorReply::new(
            ErrorCode::Busy,
            format!(
                "session {:?} is being logged out: its grant is being revoked",
                session.name
            ),
        );
    }
    let config = state.config();
    let st = status_of(session, &config, state.clock.now_ms());
    let reason = st.last_error.unwrap_or_default();
    match st.state {
        tokd_protocol::SessionState::Corrupt => ErrorReply::new(
            ErrorCode::NeedsLogin,
            format!("session {:?} is corrupt: {reason}", session.name),
        ),
        tokd_protocol::SessionState::NeedsConfig => ErrorReply::new(
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

/// The provider that can refresh this record, if any: not terminal, provider configured,
/// and a refresh token held (or a client-credentials provider).
fn refresher(record: &SessionRecord, providers: &Providers) -> Option<Arc<Provider>> {
    if record.terminal.is_some() {
        return None;
    }
    let provider = providers.get(&record.provider)?;
    (record.refresh_token.is_some() || provider.grant() == Grant::ClientCredentials)
        .then_some(provider)
}

fn obtained_at(record: &SessionRecord) -> EpochMs {
    record.last_refresh_at_ms.unwrap_or(record.created_at_ms)
}

fn random_jitter(record: &SessionRecord) -> i64 {
    let max = timing::max_jitter_ms(timing::lifetime_ms(
        obtained_at(record),
        record.expires_at_ms,
    ));
    if max <= 0 {
        return 0;
    }
    (rand::random::<f64>() * max as f64) as i64
}

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

/// Starts a refresh of `session` or joins the one in flight. `None` when the session cannot
/// be refreshed (terminal, no refresh token, unknown provider, corrupt), the daemon is
/// stopping, or an on-demand request comes before a planned retry.
pub fn start_or_join(
    state: &Arc<DaemonState>,
    session: &Arc<Session>,
    trigger: Trigger,
) -> Option<watch::Receiver<Option<RefreshResult>>> {
    let providers = state.providers();
    let mut slot = session.lock();
    let Slot::Live { record, runtime } = &mut *slot else {
        return None;
    };
    if let Some(rx) = &runtime.inflight {
        return Some(rx.clone());
    }
    if state.engine.stop.is_cancelled() || runtime.revoking {
        return None;
    }
    if trigger == Trigger::OnDemand
        && runtime
            .retry_at_ms
            .is_some_and(|at| at > state.clock.now_ms())
    {
        return None;
    }
    let provider = refresher(record, &providers)?;
    let lifetime = timing::lifetime_ms(obtained_at(record), record.expires_at_ms);
    let not_before = runtime
        .last_attempt
        .map(|t| t + timing::min_interval(lifetime));
    let (tx, rx) = watch::channel(None);
    runtime.inflight = Some(rx.clone());
    drop(slot);
    let mut guard = InflightGuard {
        state: state.clone(),
        session: session.clone(),
        tx: Some(tx),
    };
    state.engine.spawn(async move {
        let outcome = attempt(&guard.state, &guard.session, &provider, not_before).await;
        if let Some(tx) = guard.tx.take() {
            finish(&guard.state, &guard.session, &tx, outcome);
        }
    });
    Some(rx)
}

/// Ends a refresh task that never reached `finish` (a panic): the session is not left
/// `refreshing` forever, its waiters hear about it, and it is planned again.
struct InflightGuard {
    state: Arc<DaemonState>,
    session: Arc<Session>,
    tx: Option<watch::Sender<Option<RefreshResult>>>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        tracing::error!(session = %self.session.name, "a refresh task ended abnormally");
        finish(
            &self.state,
            &self.session,
            &tx,
            Outcome::Failed(ProviderError::retryable(
                "internal error during the refresh",
            )),
        );
    }
}

/// One refresh attempt, from waiting for its turn to committing its result.
async fn attempt(
    state: &Arc<DaemonState>,
    session: &Arc<Session>,
    provider: &Arc<Provider>,
    not_before: Option<Instant>,
) -> Outcome {
    let stop = state.engine.stop.clone();
    let stopping = || {
        Outcome::Aborted(ErrorReply::new(
            ErrorCode::ShuttingDown,
            "the daemon is shutting down",
        ))
    };
    if let Some(at) = not_before {
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = stop.cancelled() => return stopping(),
        }
    }
    // The provider's own cap first: waiting for it must not hold a global permit that
    // another provider's refresh could use.
    let _per_provider = tokio::select! {
        p = provider.semaphore.clone().acquire_owned() => p,
        () = stop.cancelled() => return stopping(),
    };
    let _global = tokio::select! {
        p = state.engine.global.clone().acquire_owned() => p,
        () = stop.cancelled() => return stopping(),
    };
    let (mut record, interrupted) = {
        let mut slot = session.lock();
        let Slot::Live { record, runtime } = &mut *slot else {
            return Outcome::Stale;
        };
        runtime.last_attempt = Some(Instant::now());
        (record.as_ref().clone(), runtime.interrupted)
    };
    let client = state.providers().client.clone();
    let use_refresh_token = provider.grant() == Grant::RefreshToken;
    // Resolve (and discover) the endpoint before anything is marked or sent.
    let url = match provider.target(&client).await {
        Ok(url) => url,
        Err(e @ ProviderError::Retryable { .. }) => return Outcome::Failed(e.nothing_sent()),
        // A verdict (a discovery document naming another issuer, say) is kept in the record,
        // so status shows it and nothing is tried again until the config changes.
        Err(e) => {
            return fail(
                state,
                session,
                record,
                use_refresh_token,
                interrupted,
                e,
                None,
            )
            .await;
        }
    };
    if use_refresh_token
        && let Err(e) = provider.check_binding(&url, record.refresh_origin.as_deref())
    {
        return fail(
            state,
            session,
            record,
            use_refresh_token,
            interrupted,
            e,
            None,
        )
        .await;
    }
    if stop.is_cancelled() {
        return stopping();
    }
    let sent_at = state.clock.now_ms();
    if use_refresh_token {
        // The crash window: mark the refresh as in flight before the provider can rotate.
        record.in_flight_since_ms = Some(sent_at);
        match commit(state, session, &record).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Stale,
            Err(e) => {
                return Outcome::Failed(ProviderError::retryable(format!(
                    "cannot persist the refresh mark, so nothing was sent: {e}"
                )));
            }
        }
    } else if !state.sessions.is_current(session) {
        return Outcome::Stale;
    }
    let config = state.config();
    let headers = config
        .sessions
        .get(&session.name)
        .map(|s| s.headers.clone())
        .unwrap_or_default();
    let grant = match (&record.refresh_token, use_refresh_token) {
        (Some(rt), true) => TokenGrant::Refresh { refresh_token: rt },
        _ => TokenGrant::ClientCredentials,
    };
    if let Slot::Live { runtime, .. } = &mut *session.lock() {
        runtime.sending = true;
    }
    tracing::debug!(session = %session.name, provider = %provider.name, "refresh request sent");
    let result = provider
        .send(
            &client,
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
    let obtained = match result {
        Ok(obtained) => obtained,
        Err(e) => {
            return fail(
                state,
                session,
                record,
                use_refresh_token,
                interrupted,
                e,
                Some(sent_at),
            )
            .await;
        }
    };
    let t = obtained.tokens;
    let expires_at_ms = t.expires_at_ms;
    let new_refresh_token = t.refresh_token.is_some();
    if let Some(rt) = t.refresh_token {
        record.refresh_token = Some(rt);
        record.refresh_expires_at_ms = t.refresh_expires_at_ms;
    } else if t.refresh_expires_at_ms.is_some() {
        record.refresh_expires_at_ms = t.refresh_expires_at_ms;
    }
    if use_refresh_token {
        record.refresh_origin = Some(obtained.origin);
    }
    record.in_flight_since_ms = None;
    // An answer whose token is already expired (expires_in 0 or negative, an expiry in the
    // past) is a failure for the session, but its refresh token may be the only valid one
    // now: keep that, and keep serving the old access token.
    let dead_on_arrival = expires_at_ms <= state.clock.now_ms();
    if !dead_on_arrival {
        record.access_token = t.access_token;
        record.token_type = t.token_type;
        record.expires_at_ms = t.expires_at_ms;
        if t.id_token.is_some() {
            record.id_token = t.id_token;
        }
        if t.scope.is_some() {
            record.scope = t.scope;
        }
        record.last_refresh_at_ms = Some(sent_at);
        record.refresh_count += 1;
        record.terminal = None;
    }
    match commit(state, session, &record).await {
        Ok(true) => {}
        Ok(false) => return Outcome::Stale,
        Err(e) => {
            // The provider may have rotated: the new tokens exist only in memory now.
            // Serving them beats losing the session; the next refresh persists again.
            tracing::error!(session = %session.name, error = %e, "cannot persist refreshed tokens; serving them from memory");
            replace_record(session, record);
        }
    }
    if dead_on_arrival {
        if new_refresh_token && let Slot::Live { runtime, .. } = &mut *session.lock() {
            runtime.interrupted = false;
        }
        return Outcome::Failed(ProviderError::retryable(format!(
            "the provider answered with a token that is already expired (expired {} before \
             the answer arrived)",
            human_ms(state.clock.now_ms().saturating_sub(expires_at_ms))
        )));
    }
    Outcome::Refreshed { expires_at_ms }
}

/// Persists what a failed attempt means for the record, and returns it as the outcome.
/// `sent_at` is when the request left, `None` when nothing was sent.
async fn fail(
    state: &Arc<DaemonState>,
    session: &Arc<Session>,
    mut record: SessionRecord,
    use_refresh_token: bool,
    interrupted: bool,
    err: ProviderError,
    sent_at: Option<EpochMs>,
) -> Outcome {
    let err = match (err, interrupted) {
        (ProviderError::NeedsLogin(m), true) => ProviderError::NeedsLogin(format!(
            "refresh interrupted: a refresh was sent but its answer was lost, and the \
             provider now refuses the stored refresh token ({m})"
        )),
        (other, _) => other,
    };
    let persist = match &err {
        ProviderError::NeedsLogin(reason) => {
            if interrupted && let Some(sent_at) = sent_at {
                // Refusing a refresh token that was already presented is how reuse
                // detection revokes a whole grant, its access tokens included: stop
                // serving the old access token too.
                record.expires_at_ms = record.expires_at_ms.min(sent_at);
            }
            record.refresh_token = None;
            record.refresh_expires_at_ms = None;
            record.terminal = Some(Terminal::NeedsLogin {
                reason: reason.clone(),
            });
            record.in_flight_since_ms = None;
            true
        }
        ProviderError::NeedsConfig(reason) => {
            record.terminal = Some(Terminal::NeedsConfig {
                reason: reason.clone(),
            });
            // The provider answered this request for sure, but an earlier one whose answer
            // was lost may still have rotated the refresh token: the mark stays until a
            // request is answered on the stored refresh token.
            if !interrupted {
                record.in_flight_since_ms = None;
            }
            true
        }
        // While the outcome of an earlier request is unknown, the mark stays.
        ProviderError::Retryable { .. } => {
            let clear = use_refresh_token
                && record.in_flight_since_ms.is_some()
                && !err.outcome_unknown()
                && !interrupted;
            if clear {
                record.in_flight_since_ms = None;
            }
            clear
        }
    };
    if persist && let Err(e) = commit(state, session, &record).await {
        tracing::error!(session = %session.name, error = %e, "cannot persist a refresh failure");
        replace_record(session, record);
    }
    Outcome::Failed(err)
}

/// Writes `record` and then serves it, if `session` is still the current generation.
/// Returns `Ok(false)` (nothing written) for a removed or replaced session.
async fn commit(
    state: &DaemonState,
    session: &Session,
    record: &SessionRecord,
) -> Result<bool, crate::store::StoreError> {
    let _commit = session.commit.lock().await;
    if !state.sessions.is_current(session) {
        return Ok(false);
    }
    state.sessions.store().put(record).await?;
    replace_record(session, record.clone());
    Ok(true)
}

fn replace_record(session: &Session, record: SessionRecord) {
    if let Slot::Live {
        record: current, ..
    } = &mut *session.lock()
    {
        **current = record;
    }
}

/// Applies an outcome to the session's runtime state, tells the waiters, logs the audit
/// line and the event, and plans the next look.
fn finish(
    state: &Arc<DaemonState>,
    session: &Arc<Session>,
    tx: &watch::Sender<Option<RefreshResult>>,
    outcome: Outcome,
) {
    let now = state.clock.now_ms();
    let events = state.sessions.events();
    let name = session.name.as_str();
    let result: RefreshResult = {
        let mut slot = session.lock();
        let (record, runtime) = match &mut *slot {
            Slot::Live { record, runtime } => (record, runtime),
            Slot::Corrupt { .. } => {
                let _ = tx.send(Some(Err(ErrorReply::new(ErrorCode::NeedsLogin, "corrupt"))));
                return;
            }
        };
        runtime.inflight = None;
        runtime.sending = false;
        match &outcome {
            Outcome::Refreshed { expires_at_ms } => {
                *runtime = Runtime {
                    last_attempt: runtime.last_attempt,
                    jitter_ms: random_jitter(record),
                    ..Runtime::default()
                };
                tracing::info!(
                    target: "tokd::audit",
                    event = "refreshed",
                    session = %name,
                    provider = %record.provider,
                    expires_in_s = expires_at_ms.saturating_sub(now) / 1000,
                    refresh_count = record.refresh_count,
                    "session refreshed"
                );
                events.emit(
                    name,
                    WatchEventKind::Refreshed {
                        expires_at_ms: *expires_at_ms,
                    },
                );
                Ok(())
            }
            Outcome::Failed(ProviderError::Retryable {
                message,
                retry_after,
                sent_no_answer,
            }) => {
                runtime.consecutive_failures = runtime.consecutive_failures.saturating_add(1);
                runtime.backoff = true;
                runtime.interrupted |= *sent_no_answer;
                runtime.last_error = Some(message.clone());
                let delay = timing::backoff(
                    runtime.consecutive_failures,
                    *retry_after,
                    0.5 + rand::random::<f64>() / 2.0,
                );
                let retry_at = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                runtime.retry_at_ms = Some(retry_at);
                tracing::warn!(
                    target: "tokd::audit",
                    event = "refresh_failed",
                    session = %name,
                    provider = %record.provider,
                    failures = runtime.consecutive_failures,
                    retry_in_ms = retry_at - now,
                    sent_no_answer = *sent_no_answer,
                    error = %message,
                    "refresh failed; will retry"
                );
                events.emit(
                    name,
                    WatchEventKind::RefreshFailed {
                        error: message.clone(),
                        retry_at_ms: Some(retry_at),
                    },
                );
                Err(ErrorReply::new(ErrorCode::RefreshFailed, message.clone()))
            }
            Outcome::Failed(
                err @ (ProviderError::NeedsLogin(reason) | ProviderError::NeedsConfig(reason)),
            ) => {
                // Terminal: the reason lives in the record; nothing is retried.
                runtime.backoff = false;
                runtime.retry_at_ms = None;
                runtime.last_error = None;
                let (event, code, needs, kind) = match err {
                    ProviderError::NeedsLogin(_) => (
                        "needs_login",
                        ErrorCode::NeedsLogin,
                        "a login",
                        WatchEventKind::NeedsLogin {
                            reason: reason.clone(),
                        },
                    ),
                    _ => (
                        "needs_config",
                        ErrorCode::NeedsConfig,
                        "a config fix",
                        WatchEventKind::NeedsConfig {
                            reason: reason.clone(),
                        },
                    ),
                };
                tracing::warn!(target: "tokd::audit", event, session = %name, provider = %record.provider, reason = %reason, "session needs {needs}");
                events.emit(name, kind);
                Err(ErrorReply::new(
                    code,
                    format!("session {name:?} needs {needs}: {reason}"),
                ))
            }
            Outcome::Stale => Err(ErrorReply::new(
                ErrorCode::NotFound,
                format!("session {name:?} was removed or replaced during the refresh"),
            )),
            Outcome::Aborted(e) => Err(e.clone()),
        }
    };
    let _ = tx.send(Some(result));
    schedule(state, session);
}

/// Plans the next look at `session`: its refresh (or retry) time, or — when it cannot be
/// refreshed — its expiry, so the expiry is reported.
pub fn schedule(state: &DaemonState, session: &Session) {
    if !state.sessions.is_current(session) {
        return;
    }
    let providers = state.providers();
    let when = {
        let mut slot = session.lock();
        let Slot::Live { record, runtime } = &mut *slot else {
            return;
        };
        if runtime.revoking {
            // A logout holds the session; it plans it again when it lets go.
            None
        } else {
            let refresh_at = if runtime.inflight.is_some() {
                None
            } else {
                let at = planned_refresh_at(record, runtime, &providers);
                runtime.next_refresh_at_ms = at;
                at
            };
            // Whatever the session is doing, its expiry is looked at when it comes: the
            // token file goes, and the expiry is reported (event and audit line).
            let expiry_at = (!runtime.expired_reported).then_some(record.expires_at_ms);
            match (refresh_at, expiry_at) {
                (Some(r), Some(e)) => Some(r.min(e)),
                (r, e) => r.or(e),
            }
        }
    };
    match when {
        Some(at) => state.engine.scheduler.schedule(&session.name, at),
        None => state.engine.scheduler.cancel(&session.name),
    }
}

/// When the session's next refresh (or retry) is planned, if it can be refreshed.
fn planned_refresh_at(
    record: &SessionRecord,
    runtime: &Runtime,
    providers: &Providers,
) -> Option<EpochMs> {
    let provider = refresher(record, providers)?;
    let lifetime = timing::lifetime_ms(obtained_at(record), record.expires_at_ms);
    Some(runtime.retry_at_ms.unwrap_or_else(|| {
        timing::due_ms(
            record.expires_at_ms,
            lifetime,
            provider.refresh_ahead,
            runtime.jitter_ms,
        )
    }))
}

/// A deadline came: report an expiry that came, and refresh when the refresh (or retry)
/// time has come.
fn on_due(state: &Arc<DaemonState>, name: &str) {
    let Some(session) = state.sessions.find(name) else {
        return;
    };
    let now = state.clock.now_ms();
    let (expired, refresh_due) = {
        let mut slot = session.lock();
        match &mut *slot {
            Slot::Live { record, runtime } => {
                let expired = (record.expires_at_ms <= now && !runtime.expired_reported)
                    .then(|| record.provider.clone());
                if expired.is_some() {
                    runtime.expired_reported = true;
                }
                let due = planned_refresh_at(record, runtime, &state.providers())
                    .is_some_and(|at| at <= now);
                (expired, due)
            }
            Slot::Corrupt { .. } => (None, false),
        }
    };
    if let Some(provider) = expired {
        tracing::info!(target: "tokd::audit", event = "expired", session = %name, provider = %provider, "access token expired without a replacement");
        state.sessions.events().emit(name, WatchEventKind::Expired);
    }
    if refresh_due && start_or_join(state, &session, Trigger::Scheduled).is_some() {
        return;
    }
    schedule(state, &session);
}

async fn scheduler_loop(state: Arc<DaemonState>, mut probe: Option<crate::systemd::ProbeReceiver>) {
    let engine = &state.engine;
    let check_ms = i64::try_from(engine.clock_check.as_millis()).unwrap_or(60_000);
    loop {
        let now = state.clock.now_ms();
        for name in engine.scheduler.pop_due(now) {
            on_due(&state, &name);
        }
        let wait_ms = engine
            .scheduler
            .next_due()
            .map_or(check_ms, |t| (t - now).clamp(0, check_ms));
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))) => {}
            () = engine.scheduler.notify.notified() => {}
            () = engine.stop.cancelled() => break,
            alive = crate::systemd::next_probe(&mut probe) => {
                let _ = alive.send(());
            }
        }
    }
}
