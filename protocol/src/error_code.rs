//! The stable error codes every failure on the socket is reduced to.

use serde::{Deserialize, Serialize};

/// Why a request failed, in a form scripts can rely on.
///
/// The snake_case names are part of the stable interface (`tokd get --json`, logs) and the CLI
/// maps each code to an exit status. Variants are only ever appended: bincode encodes the
/// variant index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// No session (or provider) of that name.
    NotFound,
    /// A session of that name exists and `--replace` was not given, or the grant is held by
    /// another session.
    AlreadyExists,
    /// Refreshing can never succeed; a new login is needed.
    NeedsLogin,
    /// The provider rejects the client; the configuration must be fixed.
    NeedsConfig,
    /// The token is expired and no fresh one could be obtained.
    Expired,
    /// A refresh was attempted and failed.
    RefreshFailed,
    /// The request did not complete in time.
    Timeout,
    /// The request is malformed or its arguments are invalid.
    Invalid,
    /// A frame or value exceeds a size limit.
    TooLarge,
    /// The peer's uid is not allowed to talk to this daemon.
    PeerRejected,
    /// Client and daemon speak incompatible protocol versions.
    VersionMismatch,
    /// The daemon is at a limit (connections, concurrency); try again.
    Busy,
    /// The daemon is stopping.
    ShuttingDown,
    /// A bug or an unexpected failure inside the daemon.
    Internal,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::NeedsLogin,
        ErrorCode::NeedsConfig,
        ErrorCode::Expired,
        ErrorCode::RefreshFailed,
        ErrorCode::Timeout,
        ErrorCode::Invalid,
        ErrorCode::TooLarge,
        ErrorCode::PeerRejected,
        ErrorCode::VersionMismatch,
        ErrorCode::Busy,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];

    /// The stable snake_case name (`not_found`, `needs_login`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::NeedsLogin => "needs_login",
            ErrorCode::NeedsConfig => "needs_config",
            ErrorCode::Expired => "expired",
            ErrorCode::RefreshFailed => "refresh_failed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Invalid => "invalid",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::PeerRejected => "peer_rejected",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::Busy => "busy",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
        }
    }

    /// The number used in the fixed-layout hello answer (never 0, which means "ok").
    pub fn wire_number(self) -> u8 {
        let index = Self::ALL.iter().position(|c| *c == self).unwrap_or(13);
        // ALL has 14 entries, so index + 1 always fits in a u8.
        (index + 1) as u8
    }

    /// The code for a hello-answer status number; unknown numbers (a newer daemon) become
    /// [`ErrorCode::Internal`].
    pub fn from_wire_number(n: u8) -> ErrorCode {
        usize::from(n)
            .checked_sub(1)
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or(ErrorCode::Internal)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request: the stable code and a message for humans.
///
/// The message never contains a secret; it may name sessions, providers and paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of failure this is.
    pub code: ErrorCode,
    /// What went wrong and, where possible, what to do about it.
    pub message: String,
}

impl ErrorReply {
    /// Builds a reply from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ErrorReply {}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn wire_numbers_round_trip_and_are_nonzero() {
        for code in ErrorCode::ALL {
            assert_ne!(code.wire_number(), 0);
            assert_eq!(ErrorCode::from_wire_number(code.wire_number()), code);
        }
        assert_eq!(ErrorCode::from_wire_number(200), ErrorCode::Internal);
    }
}
