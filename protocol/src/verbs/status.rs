//! `status`: the daemon's identity and every session's health.

use serde::{Deserialize, Serialize};

use crate::types::{DaemonInfo, SessionStatus};

/// Asks for status, of one session or of all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    /// Only this session; `None` for all.
    pub name: Option<String>,
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// Who is answering.
    pub daemon: DaemonInfo,
    /// The sessions asked for, sorted by name.
    pub sessions: Vec<SessionStatus>,
}
