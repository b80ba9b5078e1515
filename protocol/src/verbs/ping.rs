//! `ping`: is the daemon there and answering?

use serde::{Deserialize, Serialize};

/// A liveness probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {}

/// The answer to `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PongReply {
    /// The daemon's software version.
    pub daemon_version: String,
    /// The daemon's process id.
    pub pid: u32,
}
