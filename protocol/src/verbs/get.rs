//! `get`: the hot path — the current bearer of one session.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::types::{EpochMs, SessionState, TokenTarget};

/// Asks for a session's current access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// The session's name.
    pub name: String,
    /// The token must stay valid at least this long (ms); a token with less left makes the
    /// daemon start or join a refresh.
    pub min_valid_ms: u64,
    /// How long to wait for such a refresh (ms) before answering the best token still valid.
    pub wait_ms: u64,
    /// Also return the stored id_token.
    pub include_id_token: bool,
    /// Which token: the session's own (empty), or one derived from its grant for an
    /// audience, resources or a scope.
    pub target: TokenTarget,
}

/// The answer to `get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenReply {
    /// The bearer.
    pub access_token: Secret,
    /// The token type the provider gave (`Bearer` when it gave none).
    pub token_type: String,
    /// When the access token expires.
    pub expires_at_ms: EpochMs,
    /// The id_token, when asked for and stored.
    pub id_token: Option<Secret>,
    /// False when the token has less than the requested `min_valid` left (no fresher one
    /// could be had in time) but is still valid by the wall clock.
    pub meets_min_valid: bool,
    /// The session's state when it answered (a `needs_login` session still answers its
    /// token while it is valid).
    pub state: SessionState,
    /// Something the user should know about this answer (the session needs a login, no
    /// token can meet `min_valid`, …); never a secret. The CLI prints it on stderr.
    pub notice: Option<String>,
}
