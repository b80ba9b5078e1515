//! `remove`: forget a session.

use serde::{Deserialize, Serialize};

/// Removes a session and its stored secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// The session's name.
    pub name: String,
}

/// The answer to `remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveReply {
    /// The session that was removed.
    pub name: String,
}
