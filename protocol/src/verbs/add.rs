//! `add`: import a session from a token response (or fetch one for client credentials).

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::types::SessionStatus;

/// Creates (or with `replace`, replaces) a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddRequest {
    /// The new session's name (see [`crate::name::validate_session_name`]).
    pub name: String,
    /// The provider that will refresh it.
    pub provider: String,
    /// Attributes (`--attr KEY=VALUE`) used by providers, e.g. a user id.
    pub attrs: Vec<(String, String)>,
    /// Replace an existing session of that name instead of failing with `already_exists`.
    pub replace: bool,
    /// The token response as JSON text (RFC 6749 §5.1 or `{token, refreshToken, expiresAt}`);
    /// `None` asks the provider for a first token (client credentials).
    pub token_response: Option<Secret>,
}

/// The answer to `add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddReply {
    /// The session as stored.
    pub session: SessionStatus,
    /// True when an existing session was replaced.
    pub replaced: bool,
}
