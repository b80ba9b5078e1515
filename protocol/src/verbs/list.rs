//! `list`: session names, cheaply.

use serde::{Deserialize, Serialize};

use crate::types::SessionState;

/// Asks for the list of sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {}

/// One line of `tokd list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// The session's name.
    pub name: String,
    /// Its provider.
    pub provider: String,
    /// Its state.
    pub state: SessionState,
}

/// The answer to `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    /// All sessions, sorted by name.
    pub sessions: Vec<ListEntry>,
}
