//! `logout`: revoke at the provider when it can, then remove.

use serde::{Deserialize, Serialize};

/// Revokes a session's tokens and removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutRequest {
    /// The session's name.
    pub name: String,
}

/// The answer to `logout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutReply {
    /// The session that was removed.
    pub name: String,
    /// Whether the provider confirmed a revocation (RFC 7009).
    pub revoked: bool,
    /// The session was replaced (login, `add --replace`) while the revocation was out: the
    /// revoked grant is gone, the newer session was kept.
    pub newer_kept: bool,
}
