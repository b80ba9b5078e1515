//! `watch`: a stream of session events. The daemon answers [`WatchReply`] once, then one
//! [`WatchEvent`] frame per event until the client hangs up.

use serde::{Deserialize, Serialize};

use crate::types::EpochMs;

/// Subscribes to session events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {}

/// The first answer to `watch`: from here on, events are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchReply {}

/// One thing that happened to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// When it happened.
    pub at_ms: EpochMs,
    /// The session it happened to; `None` for [`WatchEventKind::Resync`].
    pub session: Option<String>,
    /// What happened.
    pub kind: WatchEventKind,
}

/// What happened. Variants are only ever appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchEventKind {
    /// The session was added or replaced.
    Added,
    /// The session was removed.
    Removed,
    /// A refresh succeeded.
    Refreshed {
        /// The new token's expiry.
        expires_at_ms: EpochMs,
    },
    /// A refresh failed and will be retried.
    RefreshFailed {
        /// Why (never a secret).
        error: String,
        /// When the next attempt is planned.
        retry_at_ms: Option<EpochMs>,
    },
    /// Refreshing can never succeed; a login is needed.
    NeedsLogin {
        /// Why.
        reason: String,
    },
    /// The provider rejects the client; the config must be fixed.
    NeedsConfig {
        /// Why.
        reason: String,
    },
    /// The access token expired without a replacement.
    Expired,
    /// A login completed.
    LoggedIn,
    /// Events were dropped because the watcher was too slow: re-read the status.
    Resync,
}

impl WatchEventKind {
    /// Whether a protocol 1.0 client can decode this kind (the nine kinds of 1.0).
    pub fn known_to_1_0(&self) -> bool {
        matches!(
            self,
            WatchEventKind::Added
                | WatchEventKind::Removed
                | WatchEventKind::Refreshed { .. }
                | WatchEventKind::RefreshFailed { .. }
                | WatchEventKind::NeedsLogin { .. }
                | WatchEventKind::NeedsConfig { .. }
                | WatchEventKind::Expired
                | WatchEventKind::LoggedIn
                | WatchEventKind::Resync
        )
    }

    /// A short stable name for the kind (`refreshed`, `needs_login`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            WatchEventKind::Added => "added",
            WatchEventKind::Removed => "removed",
            WatchEventKind::Refreshed { .. } => "refreshed",
            WatchEventKind::RefreshFailed { .. } => "refresh_failed",
            WatchEventKind::NeedsLogin { .. } => "needs_login",
            WatchEventKind::NeedsConfig { .. } => "needs_config",
            WatchEventKind::Expired => "expired",
            WatchEventKind::LoggedIn => "logged_in",
            WatchEventKind::Resync => "resync",
        }
    }
}
