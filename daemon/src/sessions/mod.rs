//! Where session state lives: every session by name, its record and its refresh state.
//!
//! A [`Session`] is one stored grant. Replacing a session (add `--replace`, login) creates a
//! new `Session` with a new generation; work started against an old generation (a refresh)
//! commits through [`Sessions::commit`], which refuses a stale one, so `rm` during a refresh
//! does not bring the session back.
//!
//! Reads (the `get` hot path) take a read lock on the map and a short mutex on one session;
//! changes to the set of sessions are serialised by one async lock held across the store
//! write, so two `add`s of one name cannot interleave. Only the engine changes the set of
//! sessions (`engine::Engine::add` / `remove`), so its deadline index and this map cannot
//! drift apart.
//!
//! Lock order: `admin` → a session's `commit` → the store's writer; a session's slot mutex
//! is only ever held for moments, never across an await.

pub mod events;
pub mod import;
pub mod jwt;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use sha2::{Digest, Sha256};
use thiserror::Error;
use tokd_protocol::verbs::get::TokenReply;
use tokd_protocol::verbs::list::ListEntry;
use tokd_protocol::{EpochMs, ErrorCode, ErrorReply, Secret, SessionState, SessionStatus};

use crate::clock::WallClock;
use crate::config::{Config, Grant};
use crate::store::{Loaded, SessionRecord, Store, StoreError};
use events::Events;
use import::TokenSet;
pub use state::{Prior, RefreshResult, RefreshState, Trouble};

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
    /// The stored token is held back from a guest while a refresh whose answer was lost
    /// settles (the provider may have revoked it); only the owner or the schedule settles it.
    #[error(
        "the token of session {0:?} is held back until an interrupted refresh settles; try \
         again shortly"
    )]
    Withheld(String),
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
            SessionError::Withheld(_) => ErrorCode::Busy,
            SessionError::Store(_) => ErrorCode::Internal,
        }
    }
}

impl From<SessionError> for ErrorReply {
    fn from(e: SessionError) -> Self {
        ErrorReply::new(e.code(), e.to_string())
    }
}

/// A session whose record opened: the record, where its refresh stands, and the clock of
/// its current token.
#[derive(Debug)]
pub struct Live {
    /// The stored record. Its two state fields (`terminal`, `in_flight_since_ms`) are
    /// always `None` in memory: the truth is [`Live::refresh`], and [`Live::persisted`]
    /// writes it back for the store.
    pub record: SessionRecord,
    /// Where its refresh stands.
    pub refresh: RefreshState,
    /// The jitter chosen for the current token's refresh time (ms).
    pub jitter_ms: i64,
    /// The current token's expiry has been reported (log line and event).
    pub expiry_reported: bool,
    /// When the last attempt was sent (monotonic), for the minimum interval.
    pub last_attempt: Option<tokio::time::Instant>,
}

impl Live {
    /// A loaded or newly stored record, its state taken out of it.
    pub fn new(mut record: SessionRecord, now: EpochMs) -> Live {
        let refresh = RefreshState::load(
            record.terminal.take(),
            record.in_flight_since_ms.take(),
            now,
        );
        let jitter_ms = random_jitter(&record);
        Live {
            record,
            refresh,
            jitter_ms,
            expiry_reported: false,
            last_attempt: None,
        }
    }

    /// The record as the store keeps it, with the state's verdict and crash mark.
    pub fn persisted(&self) -> SessionRecord {
        self.persisted_as(&self.refresh)
    }

    /// The record as the store keeps it once the state is `refresh`.
    pub fn persisted_as(&self, refresh: &RefreshState) -> SessionRecord {
        let mut record = self.record.clone();
        record.terminal = refresh.terminal();
        record.in_flight_since_ms = refresh.mark();
        record
    }

    /// When the minimum interval since the last attempt ends, if it has not yet (wall
    /// clock, from `now`).
    pub fn refresh_allowed_at(&self, now: EpochMs) -> Option<EpochMs> {
        let interval = crate::timing::min_interval(lifetime_ms(&self.record));
        let left =
            (self.last_attempt? + interval).saturating_duration_since(tokio::time::Instant::now());
        (!left.is_zero()).then(|| now + i64::try_from(left.as_millis()).unwrap_or(i64::MAX / 2))
    }

    /// Whether the session can be refreshed at all with a provider of `grant` (`None`: no
    /// such provider): not terminal, and a refresh token held or client credentials.
    pub fn can_refresh(&self, grant: Option<Grant>) -> bool {
        self.refresh.terminal().is_none()
            && match grant {
                Some(Grant::ClientCredentials) => true,
                Some(Grant::RefreshToken) => self.record.refresh_token.is_some(),
                None => false,
            }
    }

    /// The state as `tokd status` names it, with its reason: the refresh state, or what the
    /// record and the config say where that decides (no provider, nothing to refresh with).
    pub fn standing(&self, grant: Option<Grant>, now: EpochMs) -> (SessionState, Option<String>) {
        if self.refresh.terminal().is_some() {
            return self.refresh.public();
        }
        let record = &self.record;
        let Some(grant) = grant else {
            return (
                SessionState::NeedsConfig,
                Some(format!(
                    "provider {:?} is not configured; add it to the config and reload",
                    record.provider
                )),
            );
        };
        let expired = record.expires_at_ms <= now;
        if expired && !self.can_refresh(Some(grant)) {
            return (
                SessionState::NeedsLogin,
                Some("the token expired and there is no refresh token; log in again".into()),
            );
        }
        if expired
            && grant != Grant::ClientCredentials
            && record.refresh_expires_at_ms.is_some_and(|t| t <= now)
        {
            return (
                SessionState::NeedsLogin,
                Some("the refresh token expired; log in again".into()),
            );
        }
        self.refresh.public()
    }
}

/// A token's lifetime: from when it was obtained to when it expires (never negative).
pub fn lifetime_ms(record: &SessionRecord) -> i64 {
    let obtained = record.last_refresh_at_ms.unwrap_or(record.created_at_ms);
    record.expires_at_ms.saturating_sub(obtained).max(0)
}

/// A random jitter for the refresh time of `record`'s token, in `[0, max_jitter]`.
pub fn random_jitter(record: &SessionRecord) -> i64 {
    let max = crate::timing::max_jitter_ms(lifetime_ms(record));
    if max <= 0 {
        return 0;
    }
    (rand::random::<f64>() * max as f64) as i64
}

/// What one session holds.
#[derive(Debug)]
pub enum Contents {
    /// A record that opened (boxed: it is large and corrupt ones are rare).
    Live(Box<Live>),
    /// A record that failed to open: never served, never overwritten.
    Corrupt {
        /// Why it failed to open.
        reason: String,
    },
}

/// One session: a name, a generation and what it holds.
#[derive(Debug)]
pub struct Session {
    /// The session's name.
    pub name: String,
    /// Bumped by add, login and remove; work against an older generation is discarded.
    pub generation: u64,
    contents: Mutex<Contents>,
    /// Held while this session's record is written to the store, and by add/remove while
    /// they replace or delete it: a refresh commits only if its generation is still
    /// current, and nothing can change that between the check and the write.
    commit: tokio::sync::Mutex<()>,
}

impl Session {
    /// Locks what the session holds. A poisoned lock (a panic elsewhere) still yields the
    /// data: every update replaces whole values, so it is never half-written.
    pub fn lock(&self) -> MutexGuard<'_, Contents> {
        self.contents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the live part of the session; `None` for a corrupt one.
    pub fn with_live<T>(&self, f: impl FnOnce(&mut Live) -> T) -> Option<T> {
        match &mut *self.lock() {
            Contents::Live(live) => Some(f(live)),
            Contents::Corrupt { .. } => None,
        }
    }
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

/// A [`Sessions::commit`] whose write failed: nothing changed, and here is what it was to
/// write (the caller may still put it in force from memory).
#[derive(Debug)]
pub struct CommitFailed {
    /// Why the write failed.
    pub error: StoreError,
    /// The record it was to write.
    pub record: SessionRecord,
    /// The state it was to put in force.
    pub refresh: RefreshState,
}

/// What [`Sessions::remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The session is gone.
    Removed,
    /// The session of that name is a newer generation than the one asked for: kept.
    NewerKept,
}

/// A refresh token as the grant index knows it: a keyed hash, never the token itself.
type GrantKey = [u8; 32];

/// All sessions, by name.
#[derive(Debug)]
pub struct Sessions {
    map: RwLock<HashMap<String, Arc<Session>>>,
    /// Which session holds which refresh token (by keyed hash), so that refusing a second
    /// session on one grant costs a lookup, not a scan.
    grants: Mutex<HashMap<GrantKey, String>>,
    /// The per-process key of the grant index's hash.
    grant_key: [u8; 32],
    /// Serialises changes to the set of sessions across their store writes.
    admin: tokio::sync::Mutex<()>,
    next_generation: AtomicU64,
    store: Store,
    events: Events,
    clock: Arc<dyn WallClock>,
}

impl Sessions {
    /// Builds the registry from what the store loaded at start.
    pub fn new(store: Store, loaded: Loaded, events: Events, clock: Arc<dyn WallClock>) -> Self {
        let mut grant_key = [0u8; 32];
        if getrandom::fill(&mut grant_key).is_err() {
            grant_key.iter_mut().for_each(|b| *b = rand::random());
        }
        let sessions = Sessions {
            map: RwLock::new(HashMap::new()),
            grants: Mutex::new(HashMap::new()),
            grant_key,
            admin: tokio::sync::Mutex::new(()),
            next_generation: AtomicU64::new(1),
            store,
            events,
            clock,
        };
        let now = sessions.now();
        {
            let mut map = sessions.write_map();
            let mut grants = sessions.grants();
            for record in loaded.records {
                let name = record.name.clone();
                if let Some(rt) = &record.refresh_token {
                    grants.insert(sessions.grant_of(rt), name.clone());
                }
                let contents = Contents::Live(Box::new(Live::new(record, now)));
                map.insert(name.clone(), sessions.new_session(name, contents));
            }
            for corrupt in loaded.corrupt {
                let contents = Contents::Corrupt {
                    reason: corrupt.reason,
                };
                map.insert(
                    corrupt.name.clone(),
                    sessions.new_session(corrupt.name, contents),
                );
            }
        }
        sessions
    }

    /// Wall-clock now, from the daemon's clock.
    pub fn now(&self) -> EpochMs {
        self.clock.now_ms()
    }

    /// The wall clock every expiry decision reads.
    pub fn clock(&self) -> &Arc<dyn WallClock> {
        &self.clock
    }

    /// The store (for status: where it lives, where the key came from).
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

    fn new_session(&self, name: String, contents: Contents) -> Arc<Session> {
        Arc::new(Session {
            name,
            generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
            contents: Mutex::new(contents),
            commit: tokio::sync::Mutex::new(()),
        })
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    fn grants(&self) -> MutexGuard<'_, HashMap<GrantKey, String>> {
        self.grants.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn grant_of(&self, refresh_token: &Secret) -> GrantKey {
        let mut hash = Sha256::new();
        hash.update(self.grant_key);
        hash.update(refresh_token.expose().as_bytes());
        hash.finalize().into()
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
    pub(crate) fn len(&self) -> usize {
        self.read_map().len()
    }

    /// All sessions, sorted by name.
    fn sorted(&self) -> Vec<Arc<Session>> {
        let mut all: Vec<_> = self.read_map().values().cloned().collect();
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
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
        let contents = session.lock();
        let live = match &*contents {
            Contents::Live(live) => live,
            Contents::Corrupt { reason } => {
                return Err(SessionError::Corrupt {
                    name: name.to_owned(),
                    reason: reason.clone(),
                });
            }
        };
        let record = &live.record;
        let (state, reason) = live.standing(config.grant_of(&record.provider), now);
        if record.expires_at_ms <= now {
            return Err(expired_error(
                name,
                state,
                reason,
                now - record.expires_at_ms,
            ));
        }
        let left = u64::try_from(record.expires_at_ms.saturating_sub(now)).unwrap_or(0);
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
                let (provider, state) = match &*s.lock() {
                    Contents::Live(live) => (
                        live.record.provider.clone(),
                        live.standing(config.grant_of(&live.record.provider), now).0,
                    ),
                    Contents::Corrupt { .. } => (String::new(), SessionState::Corrupt),
                };
                ListEntry {
                    name: s.name.clone(),
                    provider,
                    state,
                }
            })
            .collect()
    }

    /// Stores a new session (or replaces one), persisted and flushed before it is served.
    /// Only the engine calls it (`engine::Engine::add`), which plans the session next.
    ///
    /// # Errors
    /// `Invalid` for a bad name or attributes; `AlreadyExists` / `GrantInUse` / `Corrupt`
    /// when the name or grant is taken; `Store` when persisting failed (nothing changed).
    pub(crate) async fn add(&self, new: NewSession) -> Result<(Arc<Session>, bool), SessionError> {
        tokd_protocol::name::validate_session_name(&new.name).map_err(SessionError::Invalid)?;
        validate_attrs(&new.attrs)?;
        let now = self.now();
        let _admin = self.admin.lock().await;
        let existing = self.find(&new.name);
        if let Some(existing) = &existing {
            if let Contents::Corrupt { reason } = &*existing.lock() {
                return Err(SessionError::Corrupt {
                    name: new.name.clone(),
                    reason: reason.clone(),
                });
            }
            if !new.replace {
                return Err(SessionError::AlreadyExists(new.name.clone()));
            }
        }
        let grant = new
            .tokens
            .refresh_token
            .as_ref()
            .map(|rt| self.grant_of(rt));
        if let Some(key) = &grant
            && let Some(other) = self.grants().get(key).filter(|n| **n != new.name)
        {
            return Err(SessionError::GrantInUse {
                other: other.clone(),
            });
        }
        let record = new_record(new, now);
        // A refresh of the replaced session must not commit between our write and the swap.
        let _old_commit = match &existing {
            Some(old) => Some(old.commit.lock().await),
            None => None,
        };
        // Persist (and flush) before anything is acknowledged or served.
        self.store.put(&record).await?;
        let name = record.name.clone();
        let provider = record.provider.clone();
        if let Some(old) = &existing {
            self.forget_grant_of(old);
        }
        if let Some(key) = grant {
            self.grants().insert(key, name.clone());
        }
        let session = self.new_session(
            name.clone(),
            Contents::Live(Box::new(Live::new(record, now))),
        );
        self.write_map().insert(name.clone(), session.clone());
        let replaced = existing.is_some();
        audit::stored(&self.events, &name, &provider, replaced);
        Ok((session, replaced))
    }

    /// Removes a session — only generation `generation` of it, when given (a logout removes
    /// the grant it revoked, never a session that replaced it meanwhile); a corrupt record is
    /// moved to the quarantine tree, not deleted. Only the engine calls it
    /// (`engine::Engine::remove`), which forgets the session's deadline next.
    ///
    /// # Errors
    /// `NotFound`, or `Store` when the removal could not be persisted.
    pub(crate) async fn remove(
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
        let corrupt = matches!(&*session.lock(), Contents::Corrupt { .. });
        // Waits for a refresh commit of this session in progress; later ones see a stale
        // generation and discard their result.
        let _commit = session.commit.lock().await;
        if corrupt {
            self.store.discard_corrupt(name).await?;
        } else {
            self.store.remove(name).await?;
        }
        self.forget_grant_of(&session);
        self.write_map().remove(name);
        audit::removed(&self.events, name, corrupt);
        Ok(Removal::Removed)
    }

    /// Writes what `update` makes of the session (its record and refresh state) and then
    /// puts it in force, if `session` is still the current generation: the store holds a
    /// change before anything acts on it. `Ok(false)`: a removed or replaced session,
    /// nothing written.
    ///
    /// # Errors
    /// The store's, with nothing changed in memory.
    pub async fn commit(
        &self,
        session: &Session,
        record: SessionRecord,
        refresh: RefreshState,
    ) -> Result<bool, Box<CommitFailed>> {
        let _commit = session.commit.lock().await;
        if !self.is_current(session) {
            return Ok(false);
        }
        let mut stored = record;
        stored.terminal = refresh.terminal();
        stored.in_flight_since_ms = refresh.mark();
        if let Err(e) = self.store.put(&stored).await {
            stored.terminal = None;
            stored.in_flight_since_ms = None;
            return Err(Box::new(CommitFailed {
                error: e,
                record: stored,
                refresh,
            }));
        }
        stored.terminal = None;
        stored.in_flight_since_ms = None;
        self.put_in_force(session, stored, refresh);
        Ok(true)
    }

    /// Puts a record and state in force without writing them (after a failed write whose
    /// tokens exist nowhere else: serving them beats losing them).
    pub fn put_in_force(&self, session: &Session, record: SessionRecord, refresh: RefreshState) {
        let old_rt = session.with_live(|live| {
            let old = live.record.refresh_token.clone();
            live.record = record;
            live.refresh = refresh;
            (old, live.record.refresh_token.clone())
        });
        if let Some((old, new)) = old_rt
            && old != new
        {
            let mut grants = self.grants();
            if let Some(old) = &old {
                grants.remove(&self.grant_of(old));
            }
            if let Some(new) = &new {
                grants.insert(self.grant_of(new), session.name.clone());
            }
        }
    }

    fn forget_grant_of(&self, session: &Session) {
        let rt = session
            .with_live(|live| live.record.refresh_token.clone())
            .flatten();
        if let Some(rt) = rt {
            let key = self.grant_of(&rt);
            let mut grants = self.grants();
            if grants.get(&key) == Some(&session.name) {
                grants.remove(&key);
            }
        }
    }

    /// Counts of (total, healthy, needing login) for summaries.
    pub fn health_counts(&self, config: &Config) -> (usize, usize, usize) {
        let now = self.now();
        let all = self.all();
        let mut healthy = 0;
        let mut needs_login = 0;
        for s in &all {
            if let Contents::Live(live) = &*s.lock() {
                let (state, _) = live.standing(config.grant_of(&live.record.provider), now);
                if state.is_healthy() && live.record.expires_at_ms > now {
                    healthy += 1;
                }
                if state == SessionState::NeedsLogin {
                    needs_login += 1;
                }
            }
        }
        (all.len(), healthy, needs_login)
    }
}

/// The record a new session starts with.
fn new_record(new: NewSession, now: EpochMs) -> SessionRecord {
    let t = new.tokens;
    SessionRecord {
        name: new.name,
        provider: new.provider,
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
    }
}

/// Why an expired token cannot be answered, by the session's state.
fn expired_error(
    name: &str,
    state: SessionState,
    reason: Option<String>,
    ago_ms: i64,
) -> SessionError {
    let name = name.to_owned();
    let ago = human_ms(ago_ms);
    match (state, reason) {
        (SessionState::NeedsLogin, reason) => SessionError::NeedsLogin {
            name,
            reason: reason.unwrap_or_default(),
        },
        (SessionState::NeedsConfig, reason) => SessionError::NeedsConfig {
            name,
            reason: reason.unwrap_or_default(),
        },
        (SessionState::Backoff, Some(error)) => SessionError::RefreshFailed { name, ago, error },
        _ => SessionError::Expired { name, ago },
    }
}

fn validate_attrs(attrs: &[(String, String)]) -> Result<(), SessionError> {
    if attrs.len() > MAX_ATTRS {
        return Err(SessionError::Invalid(format!(
            "at most {MAX_ATTRS} attributes are allowed"
        )));
    }
    for (i, (k, v)) in attrs.iter().enumerate() {
        if !tokd_protocol::name::is_valid_name(k, MAX_ATTR_LEN) {
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

/// The status of one session at `now`.
pub fn status_of(session: &Session, config: &Config, now: EpochMs) -> SessionStatus {
    match &*session.lock() {
        Contents::Corrupt { reason } => corrupt_status(&session.name, reason),
        Contents::Live(live) => {
            let record = &live.record;
            let grant = config.grant_of(&record.provider);
            let (state, last_error) = live.standing(grant, now);
            SessionStatus {
                name: session.name.clone(),
                provider: record.provider.clone(),
                state,
                token_valid: record.expires_at_ms > now,
                expires_at_ms: Some(record.expires_at_ms),
                refresh_expires_at_ms: record.refresh_expires_at_ms,
                next_refresh_at_ms: live.refresh.planned_at(),
                last_refresh_at_ms: record.last_refresh_at_ms,
                refresh_count: record.refresh_count,
                consecutive_failures: live.refresh.trouble().map_or(0, |t| t.failures),
                last_error,
                has_refresh_token: record.refresh_token.is_some(),
                has_id_token: record.id_token.is_some(),
                scope: record.scope.clone(),
                attrs: record.attrs.clone(),
                client_credentials: grant == Some(Grant::ClientCredentials),
                refresh_origin: record.refresh_origin.clone(),
                resource: None,
                registered_client: false,
                derived: Vec::new(),
                refresh_allowed_at_ms: live.refresh_allowed_at(now),
            }
        }
    }
}

fn corrupt_status(name: &str, reason: &str) -> SessionStatus {
    SessionStatus {
        name: name.to_owned(),
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
        refresh_allowed_at_ms: None,
    }
}

/// A duration in milliseconds as `4m12s`-style text.
pub fn human_ms(ms: i64) -> String {
    let secs = u64::try_from(ms.max(0) / 1000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// The audit trail: each change of a session is one structured log line (target
/// `tokd::audit`) and the matching `watch` event, written together here.
pub mod audit {
    use tokd_protocol::EpochMs;
    use tokd_protocol::verbs::watch::WatchEventKind;

    use super::events::Events;

    /// A session was stored by `add` or a login.
    pub fn stored(events: &Events, session: &str, provider: &str, replaced: bool) {
        tracing::info!(
            target: "tokd::audit",
            event = if replaced { "replaced" } else { "added" },
            session = %session,
            provider = %provider,
            "session stored"
        );
        events.emit(session, WatchEventKind::Added);
    }

    /// A session was removed.
    pub fn removed(events: &Events, session: &str, corrupt: bool) {
        tracing::info!(target: "tokd::audit", event = "removed", session = %session, corrupt, "session removed");
        events.emit(session, WatchEventKind::Removed);
    }

    /// A login completed.
    pub fn logged_in(events: &Events, session: &str, provider: &str) {
        tracing::info!(target: "tokd::audit", event = "logged_in", session = %session, provider = %provider, "login completed");
        events.emit(session, WatchEventKind::LoggedIn);
    }

    /// A refresh succeeded.
    pub fn refreshed(
        events: &Events,
        session: &str,
        provider: &str,
        expires_at_ms: EpochMs,
        now: EpochMs,
        refresh_count: u64,
    ) {
        tracing::info!(
            target: "tokd::audit",
            event = "refreshed",
            session = %session,
            provider = %provider,
            expires_in_s = expires_at_ms.saturating_sub(now) / 1000,
            refresh_count,
            "session refreshed"
        );
        events.emit(session, WatchEventKind::Refreshed { expires_at_ms });
    }

    /// A refresh failed and will be retried.
    #[allow(clippy::too_many_arguments)]
    pub fn refresh_failed(
        events: &Events,
        session: &str,
        provider: &str,
        failures: u32,
        retry_at: EpochMs,
        now: EpochMs,
        sent_no_answer: bool,
        error: &str,
    ) {
        tracing::warn!(
            target: "tokd::audit",
            event = "refresh_failed",
            session = %session,
            provider = %provider,
            failures,
            retry_in_ms = retry_at - now,
            sent_no_answer,
            error = %error,
            "refresh failed; will retry"
        );
        events.emit(
            session,
            WatchEventKind::RefreshFailed {
                error: error.to_owned(),
                retry_at_ms: Some(retry_at),
            },
        );
    }

    /// Refreshing can never succeed: a login is needed.
    pub fn needs_login(events: &Events, session: &str, provider: &str, reason: &str) {
        tracing::warn!(target: "tokd::audit", event = "needs_login", session = %session, provider = %provider, reason = %reason, "session needs a login");
        events.emit(
            session,
            WatchEventKind::NeedsLogin {
                reason: reason.to_owned(),
            },
        );
    }

    /// The provider rejects the client or the config is wrong.
    pub fn needs_config(events: &Events, session: &str, provider: &str, reason: &str) {
        tracing::warn!(target: "tokd::audit", event = "needs_config", session = %session, provider = %provider, reason = %reason, "session needs a config fix");
        events.emit(
            session,
            WatchEventKind::NeedsConfig {
                reason: reason.to_owned(),
            },
        );
    }

    /// The access token expired without a replacement.
    pub fn expired(events: &Events, session: &str, provider: &str) {
        tracing::info!(target: "tokd::audit", event = "expired", session = %session, provider = %provider, "access token expired without a replacement");
        events.emit(session, WatchEventKind::Expired);
    }

    /// A logout revoked (or could not revoke) and removed a session.
    pub fn logged_out(session: &str, revoked: bool, newer_kept: bool) {
        tracing::info!(target: "tokd::audit", event = "logged_out", session = %session, revoked, newer_kept, "session logged out");
    }
}
