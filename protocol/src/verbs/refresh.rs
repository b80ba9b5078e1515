//! `refresh`: refresh a session now (subject to the minimum interval).

use serde::{Deserialize, Serialize};

use crate::types::SessionStatus;

/// Forces a refresh of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// The session's name.
    pub name: String,
    /// How long to wait for the refresh to finish (ms).
    pub wait_ms: u64,
}

/// The answer to `refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshReply {
    /// The session after the refresh.
    pub session: SessionStatus,
}
