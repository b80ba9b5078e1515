//! Where session state lives: every session by name, its record and its runtime state.
//!
//! A [`Session`] is one stored grant. Replacing a session (add `--replace`, login) creates a
//! new `Session` with a new generation; work started against an old generation (a refresh)
//! must check [`Sessions::is_current`] before committing, so `rm` during a refresh does not
//! bring the session back.
//!
//! Reads (the `get` hot path) take a read lock on the map and a short mutex on one session;
//! changes to the set of sessions are serialised by one async lock held across the store
//! write, so two `add`s of one name cannot interleave.

pub mod events;
pub mod import;
pub mod jwt;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use thiserror::Error;
use tokd_protocol::verbs::add::AddReply;
use tokd_protocol::verbs::get::TokenReply;
use tokd_protocol::verbs::list::ListEntry;
use tokd_protocol::verbs::watch::WatchEventKind;
use tokd_protocol::{EpochMs, ErrorCode, ErrorReply, SessionState, SessionStatus};

use crate::clock::WallClock;
use crate::config::{Config, Grant};
use crate::store::{Loaded, SessionRecord, Store, StoreError, Terminal};
use events::Events;
use import::TokenSet;

/// Most attributes one session may carry, and the longest key or value.
const MAX_ATTRS: usize = 32;
const MAX_ATTR_LEN: usize = 1024;

/// Why a session operation failed; each maps to a stable [`ErrorCode`].
#[derive(Debug, Error)]
pub enum SessionError {
    /// No such session.
    #[error("no session named {0:?} (see `tokd list`)")]
    NotFound(String),
    /// The name is taken.
    #[error("a session named {0:?} already exists (use --replace to replace it)")]
    AlreadyExists(String),
    /// The refresh token belongs to another session.
    #[error(
        "that refresh token already belongs to session {other:?}: two sessions refreshing one \
         grant make the provider revoke it (remove {other:?} first, or replace it)"
    )]
    GrantInUse {
        /// The session holding the grant.
        other: String,
    },
    /// The request's input is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The stored record cannot be opened.
    #[error(
        "the stored record of session {name:?} is corrupt and quarantined ({reason}); \
         `tokd rm {name}` moves it aside, then add or log in again"
    )]
    Corrupt {
        /// The session.
        name: String,
        /// Why it failed to open.
        reason: String,
    },
    /// The token is expired and a login is needed.
    #[error("session {name:?} needs a login: {reason}")]
    NeedsLogin {
        /// The session.
        name: String,
        /// Why.
        reason: String,
    },
    /// The token is expired and the configuration must be fixed.
    #[error("session {name:?} needs a config fix: {reason}")]
    NeedsConfig {
        /// The session.
        name: String,
        /// Why.
        reason: String,
    },
    /// The token is expired and refreshing it keeps failing.
    #[error("the token of session {name:?} expired {ago} ago; refreshing failed: {error}")]
    RefreshFailed {
        /// The session.
        name: String,
        /// How long ago, in human form.
        ago: String,
        /// The last failure.
        error: String,
    },
    /// The token is expired and nothing better is available yet.
    #[error("the token of session {name:?} expired {ago} ago and no fresh one is available")]
    Expired {
        /// The session.
        name: String,
        /// How long ago, in human form.
        ago: String,
    },
    /// Persisting failed; nothing was acknowledged.
    #[error("storing the session failed: {0}")]
    Store(#[from] StoreError),
}

impl SessionError {
    /// The stable code this error is reported with.
    pub fn code(&self) -> ErrorCode {
        match self {
            SessionError::NotFound(_) => ErrorCode::NotFound,
            SessionError::AlreadyExists(_) | SessionError::GrantInUse { .. } => {
                ErrorCode::AlreadyExists
            }
            SessionError::Invalid(_) => ErrorCode::Invalid,
            SessionError::Corrupt { .. } | SessionError::NeedsLogin { .. } => ErrorCode::NeedsLogin,
            SessionError::NeedsConfig { .. } => ErrorCode::NeedsConfig,
            SessionError::Expired { .. } => ErrorCode::Expired,
            SessionError::RefreshFailed { .. } => ErrorCode::RefreshFailed,
            SessionError::Store(_) => ErrorCode::Internal,
        }
    }
}

impl From<SessionError> for ErrorReply {
    fn from(e: SessionError) -> Self {
        ErrorReply::new(e.code(), e.to_string())
    }
}

/// How a refresh ended, as seen by the requests waiting for it.
pub type RefreshResult = Result<(), ErrorReply>;

/// Runtime state of a live session that is not persisted.
#[derive(Debug, Default)]
pub struct Runtime {
    /// The refresh task of this session, if any: waiters clone the receiver (single flight).
    pub inflight: Option<tokio::sync::watch::Receiver<Option<RefreshResult>>>,
    /// The task's request has been sent and not yet answered (`refreshing` in status; a task
    /// still waiting out the minimum interval or a concurrency permit is not).
    pub sending: bool,
    /// When the last attempt was sent (monotonic), for the minimum interval.
    pub last_attempt: Option<tokio::time::Instant>,
    /// A refresh was sent and never answered (in-flight mark found at start, or a request
    /// without an answer): the provider may have rotated the refresh token already.
    pub interrupted: bool,
    /// The jitter chosen for the current token's refresh time (ms).
    pub jitter_ms: i64,
    /// The expiry of the current token has been reported (log line and event).
    pub expired_reported: bool,
    /// A logout is revoking the session's grant: no refresh may start until it is done.
    pub revoking: bool,
    /// The last attempts failed retryably.
    pub backoff: bool,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// The last failure, never a secret.
    pub last_error: Option<String>,
    /// The next planned refresh.
    pub next_refresh_at_ms: Option<EpochMs>,
    /// When to retry after a failure (overrides the normal due time).
    pub retry_at_ms: Option<EpochMs>,
}

/// What one session holds.
#[derive(Debug)]
pub enum Slot {
    /// A record that opened.
    Live {
        /// The decrypted record (boxed: it is large and corrupt slots are rare).
        record: Box<SessionRecord>,
        /// Runtime state.
        runtime: Runtime,
    },
    /// A record that failed to open: never served, never overwritten.
    Corrupt {
        /// Why it failed to open.
        reason: String,
    },
}

/// One session: a name, a generation and its slot.
#[derive(Debug)]
pub struct Session {
    /// The session's name.
    pub name: String,
    /// Bumped by add, login and remove; work against an older generation is discarded.
    pub generation: u64,
    slot: Mutex<Slot>,
    /// Held while this session's record is written to the store, and by add/remove while
    /// they replace or delete it: a refresh commits only if its generation is still
    /// current, and nothing can change that between the check and the write.
    pub commit: tokio::sync::Mutex<()>,
}

impl Session {
    /// Locks the session's slot. A poisoned lock (a panic elsewhere) still yields the data:
    /// every update replaces whole values, so it is never half-written.
    pub fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// All sessions, by name.
#[derive(Debug)]
pub struct Sessions {
    map: RwLock<HashMap<String, Arc<Session>>>,
    /// Serialises changes to the set of sessions across their store writes.
    admin: tokio::sync::Mutex<()>,
    next_generation: AtomicU64,
    store: Store,
    events: Events,
    clock: Arc<dyn WallClock>,
}

/// What [`Sessions::remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The session is gone.
    Removed,
    /// The session of that name is a newer generation than the one asked for: kept.
    NewerKept,
}

/// A session about to be stored by `add` (or a login).
#[derive(Debug)]
pub struct NewSession {
    /// Its name (checked against the name rule).
    pub name: String,
    /// Its provider (checked by the caller).
    pub provider: String,
    /// Attributes (`--attr`).
    pub attrs: Vec<(String, String)>,
    /// Replace an existing session of that name.
    pub replace: bool,
    /// The tokens.
    pub tokens: TokenSet,
    /// The token endpoint origin the refresh token is bound to, when known.
    pub origin: Option<String>,
}

impl Sessions {
    /// Builds the registry from what the store loaded at start.
    pub fn new(store: Store, loaded: Loaded, events: Events, clock: Arc<dyn WallClock>) -> Self {
        let sessions = Sessions {
            map: RwLock::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
            next_generation: AtomicU64::new(1),
            store,
            events,
            clock,
        };
        {
            let mut map = sessions.write_map();
            for record in loaded.records {
                let name = record.name.clone();
                let slot = Slot::Live {
                    record: Box::new(record),
                    runtime: Runtime::default(),
                };
                map.insert(name.clone(), sessions.new_session(name, slot));
            }
            for corrupt in loaded.corrupt {
                let slot = Slot::Corrupt {
                    reason: corrupt.reason,
                };
                map.insert(
                    corrupt.name.clone(),
                    sessions.new_session(corrupt.name, slot),
                );
            }
        }
        sessions
    }

    /// Wall-clock now, from the daemon's clock.
    pub fn now(&self) -> EpochMs {
        self.clock.now_ms()
    }

    /// The store, for the engine's commits.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The event bus.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Every session, unordered.
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.read_map().values().cloned().collect()
    }

    fn new_session(&self, name: String, slot: Slot) -> Arc<Session> {
        Arc::new(Session {
            name,
            generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
            slot: Mutex::new(slot),
            commit: tokio::sync::Mutex::new(()),
        })
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The session of that name.
    pub fn find(&self, name: &str) -> Option<Arc<Session>> {
        self.read_map().get(name).cloned()
    }

    /// Whether `session` is still the current generation of its name.
    pub fn is_current(&self, session: &Session) -> bool {
        self.read_map()
            .get(&session.name)
            .is_some_and(|s| s.generation == session.generation)
    }

    /// How many sessions there are (corrupt ones included).
    pub fn len(&self) -> usize {
        self.read_map().len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All sessions, sorted by name.
    fn sorted(&self) -> Vec<Arc<Session>> {
        let mut all: Vec<_> = self.read_map().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The current token of `session` if it is valid by the wall clock.
    ///
    /// `meets_min_valid` says whether it has `min_valid_ms` left.
    ///
    /// # Errors
    /// `Corrupt`, or — when the token is expired — `NeedsLogin`, `NeedsConfig`,
    /// `RefreshFailed` or `Expired` depending on the session's state.
    pub fn token_of(
        &self,
        session: &Session,
        min_valid_ms: u64,
        include_id_token: bool,
        config: &Config,
    ) -> Result<TokenReply, SessionError> {
        let name = &session.name;
        let now = self.now();
        let slot = session.lock();
        let (record, runtime) = match &*slot {
            Slot::Live { record, runtime } => (record, runtime),
            Slot::Corrupt { reason } => {
                return Err(SessionError::Corrupt {
                    name: name.to_owned(),
                    reason: reason.clone(),
                });
            }
        };
        if record.expires_at_ms <= now {
            let (state, reason) = derive_state(record, runtime, config, now);
            let ago = human_ms(now.saturating_sub(record.expires_at_ms));
            return Err(match (state, reason) {
                (SessionState::NeedsLogin, reason) => SessionError::NeedsLogin {
                    name: name.to_owned(),
                    reason: reason.unwrap_or_default(),
                },
                (SessionState::NeedsConfig, reason) => SessionError::NeedsConfig {
                    name: name.to_owned(),
                    reason: reason.unwrap_or_default(),
                },
                (SessionState::Backoff, Some(error)) => SessionError::RefreshFailed {
                    name: name.to_owned(),
                    ago,
                    error,
                },
                _ => SessionError::Expired {
                    name: name.to_owned(),
                    ago,
                },
            });
        }
        let left = u64::try_from(record.expires_at_ms.saturating_sub(now)).unwrap_or(0);
        let (state, reason) = derive_state(record, runtime, config, now);
        let notice = (state == SessionState::NeedsLogin).then(|| {
            format!(
                "session {name:?} needs a login ({}); the provider may already have revoked \
                 this token",
                reason.unwrap_or_default()
            )
        });
        Ok(TokenReply {
            access_token: record.access_token.clone(),
            token_type: record.token_type.clone(),
            expires_at_ms: record.expires_at_ms,
            id_token: if include_id_token {
                record.id_token.clone()
            } else {
                None
            },
            meets_min_valid: left >= min_valid_ms,
            state,
            notice,
        })
    }

    /// Status of one session or all, sorted by name.
    ///
    /// # Errors
    /// `NotFound` when a named session does not exist.
    pub fn status(
        &self,
        name: Option<&str>,
        config: &Config,
    ) -> Result<Vec<SessionStatus>, SessionError> {
        let now = self.now();
        match name {
            Some(name) => {
                let session = self
                    .find(name)
                    .ok_or_else(|| SessionError::NotFound(name.to_owned()))?;
                Ok(vec![status_of(&session, config, now)])
            }
            None => Ok(self
                .sorted()
                .iter()
                .map(|s| status_of(s, config, now))
                .collect()),
        }
    }

    /// Names, providers and states, sorted by name.
    pub fn list(&self, config: &Config) -> Vec<ListEntry> {
        let now = self.now();
        self.sorted()
            .iter()
            .map(|s| {
                let st = status_of(s, config, now);
                ListEntry {
                    name: st.name,
                    provider: st.provider,
                    state: st.state,
                }
            })
            .collect()
    }

    /// Stores a new session (or replaces one), persisted and flushed before it is served.
    ///
    /// # Errors
    /// `Invalid` for a bad name or attributes; `AlreadyExists` / `GrantInUse` / `Corrupt`
    /// when the name or grant is taken; `Store` when persisting failed (nothing changed).
    pub async fn add(
        &self,
        new: NewSession,
        config: &Config,
    ) -> Result<(Arc<Session>, AddReply), SessionError> {
        tokd_protocol::name::validate_session_name(&new.name).map_err(SessionError::Invalid)?;
        validate_attrs(&new.attrs)?;
        let now = self.now();
        let _admin = self.admin.lock().await;
        let existing = self.find(&new.name);
        if let Some(existing) = &existing {
            if let Slot::Corrupt { reason } = &*existing.lock() {
                return Err(SessionError::Corrupt {
                    name: new.name.clone(),
                    reason: reason.clone(),
                });
            }
            if !new.replace {
                return Err(SessionError::AlreadyExists(new.name.clone()));
            }
        }
        if let Some(rt) = &new.tokens.refresh_token
            && let Some(other) = self.holder_of(rt, &new.name)
        {
            return Err(SessionError::GrantInUse { other });
        }
        let t = new.tokens;
        let record = SessionRecord {
            name: new.name.clone(),
            provider: new.provider.clone(),
            attrs: new.attrs,
            access_token: t.access_token,
            token_type: t.token_type,
            expires_at_ms: t.expires_at_ms,
            refresh_token: t.refresh_token,
            refresh_expires_at_ms: t.refresh_expires_at_ms,
            id_token: t.id_token,
            scope: t.scope,
            created_at_ms: now,
            last_refresh_at_ms: None,
            refresh_count: 0,
            terminal: None,
            refresh_origin: new.origin,
            in_flight_since_ms: None,
        };
        // A refresh of the replaced session must not commit between our write and the swap.
        let _old_commit = match &existing {
            Some(old) => Some(old.commit.lock().await),
            None => None,
        };
        // Persist (and flush) before anything is acknowledged or served.
        self.store.put(&record).await?;
        let session = self.new_session(
            new.name.clone(),
            Slot::Live {
                record: Box::new(record),
                runtime: Runtime::default(),
            },
        );
        self.write_map().insert(new.name.clone(), session.clone());
        let replaced = existing.is_some();
        tracing::info!(
            target: "tokd::audit",
            event = if replaced { "replaced" } else { "added" },
            session = %new.name,
            provider = %new.provider,
            "session stored"
        );
        self.events.emit(&new.name, WatchEventKind::Added);
        let reply = AddReply {
            session: status_of(&session, config, self.now()),
            replaced,
        };
        Ok((session, reply))
    }

    /// Removes a session — only generation `generation` of it, when given (a logout removes
    /// the grant it revoked, never a session that replaced it meanwhile); a corrupt record is
    /// moved to the quarantine tree, not deleted.
    ///
    /// # Errors
    /// `NotFound`, or `Store` when the removal could not be persisted.
    pub async fn remove(
        &self,
        name: &str,
        generation: Option<u64>,
    ) -> Result<Removal, SessionError> {
        let _admin = self.admin.lock().await;
        let session = self
            .find(name)
            .ok_or_else(|| SessionError::NotFound(name.to_owned()))?;
        if generation.is_some_and(|g| g != session.generation) {
            return Ok(Removal::NewerKept);
        }
        let corrupt = matches!(&*session.lock(), Slot::Corrupt { .. });
        // Waits for a refresh commit of this session in progress; later ones see a stale
        // generation and discard their result.
        let _commit = session.commit.lock().await;
        if corrupt {
            self.store.discard_corrupt(name).await?;
        } else {
            self.store.remove(name).await?;
        }
        self.write_map().remove(name);
        tracing::info!(target: "tokd::audit", event = "removed", session = %name, corrupt, "session removed");
        self.events.emit(name, WatchEventKind::Removed);
        Ok(Removal::Removed)
    }

    /// The session (other than `except`) that holds this refresh token, if any.
    fn holder_of(&self, refresh_token: &tokd_protocol::Secret, except: &str) -> Option<String> {
        self.read_map()
            .values()
            .filter(|s| s.name != except)
            .find(|s| match &*s.lock() {
                Slot::Live { record, .. } => record.refresh_token.as_ref() == Some(refresh_token),
                Slot::Corrupt { .. } => false,
            })
            .map(|s| s.name.clone())
    }

    /// Counts of (total, healthy, needing login) for summaries.
    pub fn health_counts(&self, config: &Config) -> (usize, usize, usize) {
        let now = self.now();
        let all = self.sorted();
        let mut healthy = 0;
        let mut needs_login = 0;
        for s in &all {
            let st = status_of(s, config, now);
            if st.state.is_healthy() && st.token_valid {
                healthy += 1;
            }
            if st.state == SessionState::NeedsLogin {
                needs_login += 1;
            }
        }
        (all.len(), healthy, needs_login)
    }
}

fn validate_attrs(attrs: &[(String, String)]) -> Result<(), SessionError> {
    if attrs.len() > MAX_ATTRS {
        return Err(SessionError::Invalid(format!(
            "at most {MAX_ATTRS} attributes are allowed"
        )));
    }
    for (i, (k, v)) in attrs.iter().enumerate() {
        if k.is_empty()
            || k.len() > MAX_ATTR_LEN
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(SessionError::Invalid(format!(
                "attribute name {k:?}: use 1 to {MAX_ATTR_LEN} letters, digits, '.', '_' or '-'"
            )));
        }
        if v.len() > MAX_ATTR_LEN {
            return Err(SessionError::Invalid(format!(
                "attribute {k:?} is longer than {MAX_ATTR_LEN} bytes"
            )));
        }
        if attrs[..i].iter().any(|(other, _)| other == k) {
            return Err(SessionError::Invalid(format!(
                "attribute {k:?} given twice"
            )));
        }
    }
    Ok(())
}

/// A session's state and the reason for it, from its record, runtime and the config.
pub fn derive_state(
    record: &SessionRecord,
    runtime: &Runtime,
    config: &Config,
    now: EpochMs,
) -> (SessionState, Option<String>) {
    match &record.terminal {
        Some(Terminal::NeedsLogin { reason }) => {
            return (SessionState::NeedsLogin, Some(reason.clone()));
        }
        Some(Terminal::NeedsConfig { reason }) => {
            return (SessionState::NeedsConfig, Some(reason.clone()));
        }
        None => {}
    }
    let Some(provider) = config.providers.get(&record.provider) else {
        return (
            SessionState::NeedsConfig,
            Some(format!(
                "provider {:?} is not configured; add it to the config and reload",
                record.provider
            )),
        );
    };
    let can_refresh = record.refresh_token.is_some() || provider.grant == Grant::ClientCredentials;
    if !can_refresh && record.expires_at_ms <= now {
        return (
            SessionState::NeedsLogin,
            Some("the token expired and there is no refresh token; log in again".into()),
        );
    }
    if let Some(refresh_exp) = record.refresh_expires_at_ms
        && refresh_exp <= now
        && record.expires_at_ms <= now
        && provider.grant != Grant::ClientCredentials
    {
        return (
            SessionState::NeedsLogin,
            Some("the refresh token expired; log in again".into()),
        );
    }
    // A refresh whose answer was lost is retried at once (at start, or after the lost
    // answer): until the retry settles, the session is refreshing, not valid.
    let state = if runtime.sending {
        SessionState::Refreshing
    } else if runtime.backoff {
        SessionState::Backoff
    } else if runtime.interrupted {
        SessionState::Refreshing
    } else {
        SessionState::Valid
    };
    (state, runtime.last_error.clone())
}

/// The status of one session at `now`.
pub fn status_of(session: &Session, config: &Config, now: EpochMs) -> SessionStatus {
    match &*session.lock() {
        Slot::Corrupt { reason } => SessionStatus {
            name: session.name.clone(),
            provider: String::new(),
            state: SessionState::Corrupt,
            token_valid: false,
            expires_at_ms: None,
            refresh_expires_at_ms: None,
            next_refresh_at_ms: None,
            last_refresh_at_ms: None,
            refresh_count: 0,
            consecutive_failures: 0,
            last_error: Some(format!("stored record failed to open: {reason}")),
            has_refresh_token: false,
            has_id_token: false,
            scope: None,
            attrs: Vec::new(),
            client_credentials: false,
            refresh_origin: None,
            resource: None,
            registered_client: false,
            derived: Vec::new(),
        },
        Slot::Live { record, runtime } => {
            let (state, last_error) = derive_state(record, runtime, config, now);
            SessionStatus {
                name: session.name.clone(),
                provider: record.provider.clone(),
                state,
                token_valid: record.expires_at_ms > now,
                expires_at_ms: Some(record.expires_at_ms),
                refresh_expires_at_ms: record.refresh_expires_at_ms,
                next_refresh_at_ms: runtime.next_refresh_at_ms,
                last_refresh_at_ms: record.last_refresh_at_ms,
                refresh_count: record.refresh_count,
                consecutive_failures: runtime.consecutive_failures,
                last_error,
                has_refresh_token: record.refresh_token.is_some(),
                has_id_token: record.id_token.is_some(),
                scope: record.scope.clone(),
                attrs: record.attrs.clone(),
                client_credentials: config
                    .providers
                    .get(&record.provider)
                    .is_some_and(|p| p.grant == Grant::ClientCredentials),
                refresh_origin: record.refresh_origin.clone(),
                resource: None,
                registered_client: false,
                derived: Vec::new(),
            }
        }
    }
}

/// A duration in milliseconds as `4m12s`-style text.
pub fn human_ms(ms: i64) -> String {
    let secs = u64::try_from(ms.max(0) / 1000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}
