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
}
