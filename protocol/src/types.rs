//! Values shared by several verbs: session states and the status of one session.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, by the wall clock.
pub type EpochMs = i64;

/// Where a session stands (the design's state table).
///
/// Variants are only ever appended (bincode encodes the index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionState {
    /// Token valid, nothing pending.
    Valid,
    /// A refresh is in flight; the current token is served while valid.
    Refreshing,
    /// Retryable failures; retrying with backoff, serving while valid.
    Backoff,
    /// Refreshing can never succeed; the refresh token was dropped.
    NeedsLogin,
    /// The provider rejects the client; a config fix and reload revives it.
    NeedsConfig,
    /// The stored record failed authentication; quarantined, never served.
    Corrupt,
}

impl SessionState {
    /// The stable snake_case name used in `tokd status` and its JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Valid => "valid",
            SessionState::Refreshing => "refreshing",
            SessionState::Backoff => "backoff",
            SessionState::NeedsLogin => "needs_login",
            SessionState::NeedsConfig => "needs_config",
            SessionState::Corrupt => "corrupt",
        }
    }

    /// Whether the state itself is healthy (`valid`, `refreshing`, `backoff`); `tokd status`
    /// also requires a valid token.
    pub fn is_healthy(self) -> bool {
        matches!(
            self,
            SessionState::Valid | SessionState::Refreshing | SessionState::Backoff
        )
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything `tokd status` shows about one session. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// The session's name.
    pub name: String,
    /// The provider that refreshes it.
    pub provider: String,
    /// Where the session stands.
    pub state: SessionState,
    /// Whether the current access token is unexpired by the wall clock right now.
    pub token_valid: bool,
    /// When the access token expires.
    pub expires_at_ms: Option<EpochMs>,
    /// When the refresh token expires, if known.
    pub refresh_expires_at_ms: Option<EpochMs>,
    /// When the next refresh is planned, if one is.
    pub next_refresh_at_ms: Option<EpochMs>,
    /// When the last successful refresh happened.
    pub last_refresh_at_ms: Option<EpochMs>,
    /// Successful refreshes since the session was added or logged in.
    pub refresh_count: u64,
    /// Failed refresh attempts since the last success.
    pub consecutive_failures: u32,
    /// The last failure or the reason for a terminal state; never a secret.
    pub last_error: Option<String>,
    /// Whether a refresh token is held.
    pub has_refresh_token: bool,
    /// Whether an id_token is held.
    pub has_id_token: bool,
    /// The granted scope, if the provider said.
    pub scope: Option<String>,
    /// Session attributes given at `add` (`--attr KEY=VALUE`); not secret.
    pub attrs: Vec<(String, String)>,
    /// The provider obtains tokens with client credentials: no refresh token is needed
    /// (protocol 1.1).
    pub client_credentials: bool,
    /// The origin (`scheme://host:port`) the refresh token is bound to, when known
    /// (protocol 1.1).
    pub refresh_origin: Option<String>,
    /// The protected resource (RFC 8707) the session's tokens are for, when the session is
    /// bound to one (protocol 1.1).
    pub resource: Option<String>,
    /// The session runs on a client tokd registered itself (RFC 7591) (protocol 1.1).
    pub registered_client: bool,
    /// The tokens derived from this session's grant for other audiences, resources or
    /// scopes (protocol 1.1).
    pub derived: Vec<DerivedStatus>,
    /// The earliest time the next refresh may be sent (the minimum interval between two
    /// refreshes), when that is still to come (protocol 1.1).
    pub refresh_allowed_at_ms: Option<EpochMs>,
}

/// What a token is for beyond its session: an audience, resource indicators (RFC 8707)
/// and a scope. Empty (the default) means the session's own token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TokenTarget {
    /// The `audience` parameter (Auth0, Keycloak and the WLCG profile use it).
    pub audience: Option<String>,
    /// RFC 8707 resource indicators, sorted and without duplicates.
    pub resources: Vec<String>,
    /// The scope to ask for (a subset of the granted scope), space-separated.
    pub scope: Option<String>,
}

impl TokenTarget {
    /// Whether this names the session's own token.
    pub fn is_own(&self) -> bool {
        self.audience.is_none() && self.resources.is_empty() && self.scope.is_none()
    }

    /// The same target in its one canonical form: resources sorted and deduplicated, scope
    /// words sorted and deduplicated, empty strings dropped. Two spellings of one target
    /// name one derived token.
    #[must_use]
    pub fn canonical(mut self) -> TokenTarget {
        self.audience = self.audience.filter(|a| !a.is_empty());
        self.resources.retain(|r| !r.is_empty());
        self.resources.sort();
        self.resources.dedup();
        self.scope = self.scope.and_then(|scope| {
            let mut words: Vec<&str> = scope.split_whitespace().collect();
            words.sort_unstable();
            words.dedup();
            (!words.is_empty()).then(|| words.join(" "))
        });
        self
    }
}

impl std::fmt::Display for TokenTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(audience) = &self.audience {
            parts.push(format!("audience {audience}"));
        }
        for resource in &self.resources {
            parts.push(format!("resource {resource}"));
        }
        if let Some(scope) = &self.scope {
            parts.push(format!("scope {scope:?}"));
        }
        if parts.is_empty() {
            f.write_str("the session's own token")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One token derived from a session's grant, as `tokd status` shows it. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedStatus {
    /// What the token is for.
    pub target: TokenTarget,
    /// Where it stands (`valid`, `refreshing`, `backoff`, or `needs_config` when the
    /// provider refuses this target).
    pub state: SessionState,
    /// Whether it is unexpired by the wall clock right now.
    pub token_valid: bool,
    /// When it expires, once obtained.
    pub expires_at_ms: Option<EpochMs>,
    /// When its next refresh is planned, if one is.
    pub next_refresh_at_ms: Option<EpochMs>,
    /// When a `get` last asked for it (it is dropped after an idle period).
    pub last_used_at_ms: EpochMs,
    /// Successful refreshes since it was first obtained.
    pub refresh_count: u64,
    /// The last failure, never a secret.
    pub last_error: Option<String>,
}

/// The daemon half of `tokd status`: answers "who is serving me, and from where?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// The daemon's software version.
    pub version: String,
    /// The daemon's protocol major version.
    pub protocol_major: u16,
    /// The daemon's protocol minor version.
    pub protocol_minor: u16,
    /// The daemon's process id.
    pub pid: u32,
    /// Milliseconds since the daemon started.
    pub uptime_ms: u64,
    /// The socket it listens on.
    pub socket: String,
    /// The state directory holding the database.
    pub state_dir: String,
    /// Where the store key came from (`key file …` or `systemd credential …`).
    pub key_source: String,
    /// The config file in force, if any.
    pub config_file: Option<String>,
    /// How many sessions the daemon holds (corrupt ones included).
    pub session_count: u64,
    /// The proxy token requests to `https` providers go through, credential-free; `None`
    /// when there is none (protocol 1.1).
    pub proxy: Option<String>,
    /// The last config reload that was rejected since the daemon started, if any: a
    /// broken config file shows here without reading the log (protocol 1.1).
    pub last_rejected_reload: Option<RejectedReload>,
    /// The providers the daemon knows, sorted by name (protocol 1.1).
    pub providers: Vec<ProviderInfo>,
}

/// A config reload the daemon rejected (the configuration in force stayed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedReload {
    /// When.
    pub at_ms: EpochMs,
    /// Why, as the daemon logged it (never a secret).
    pub error: String,
}

/// Where a provider's definition comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderSource {
    /// A `[providers.NAME]` table of the config file.
    Config,
    /// Created by `tokd login NAME --resource URL` from the resource's metadata, and
    /// stored (sealed) by the daemon.
    Discovered {
        /// The protected resource whose metadata named the authorization server.
        resource: String,
    },
}

/// One provider as `tokd status` and shell completion see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// Its name.
    pub name: String,
    /// Where it is defined.
    pub source: ProviderSource,
    /// Its issuer, when it has one.
    pub issuer: Option<String>,
    /// Whether it runs on a client tokd registered itself (RFC 7591).
    pub registered_client: bool,
}
