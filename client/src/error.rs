//! `ClientError`: every way talking to the daemon can fail, as variants (no downcasting).

use std::path::PathBuf;

use thiserror::Error;
use tokd_protocol::paths::{Candidate, PathError};
use tokd_protocol::{ErrorCode, ErrorReply, ProtocolError};

/// Why a request to the daemon failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing listens on the socket (on any of the places tried).
    #[error(
        "the tokd daemon is not running: nothing listens on {}; start it with \
         `tokd-daemon` or `systemctl --user start tokd`",
        tried_places(path, tried)
    )]
    NotRunning {
        /// The socket path tried first.
        path: PathBuf,
        /// Every place tried, in order, with why it was on the list (empty when only `path`
        /// was tried and there is nothing to say about it).
        tried: Vec<Candidate>,
    },
    /// A process of another user listens on the socket. Nothing was sent to it: it could
    /// keep what it is sent (a token response given to `tokd add`) or hand out tokens of
    /// its choosing.
    #[error(
        "refusing to talk to {path}: the process listening there runs as uid {uid}, not as \
         this user (uid {own}) or root; nothing was sent to it. If that is the daemon you \
         mean to use, set {env}={uid}",
        env = crate::trust::DAEMON_UID_ENV
    )]
    UntrustedDaemon {
        /// The socket.
        path: PathBuf,
        /// The uid of the process listening on it (SO_PEERCRED).
        uid: u32,
        /// This process's (effective) uid.
        own: u32,
    },
    /// `TOKD_DAEMON_UID` is set to something that is not a uid.
    #[error("{env} must be a numeric uid, not {0:?}", env = crate::trust::DAEMON_UID_ENV)]
    InvalidDaemonUid(String),
    /// The socket exists but cannot be connected to (permissions, …).
    #[error("cannot connect to the tokd daemon at {path}: {source}")]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The socket's directory is not safe to trust (another owner, open permissions).
    #[error("refusing to talk to the socket: {0}")]
    UnsafeSocketDir(#[from] PathError),
    /// The daemon speaks another protocol major version.
    #[error("{0}")]
    VersionMismatch(String),
    /// The daemon refused the connection at the hello (peer rejected, busy, …).
    #[error("the daemon refused the connection: {0}")]
    Refused(ErrorReply),
    /// The daemon answered the request with an error.
    #[error("{}", .0.message)]
    Daemon(ErrorReply),
    /// The bytes on the socket made no sense.
    #[error("protocol error talking to the daemon: {0}")]
    Protocol(#[from] ProtocolError),
    /// The daemon answered with a message that does not fit the request.
    #[error("unexpected answer from the daemon (expected {0})")]
    Unexpected(&'static str),
    /// The daemon speaks an older minor version of the protocol that cannot say what this
    /// request needs.
    #[error("{0}")]
    DaemonTooOld(&'static str),
    /// The daemon did not answer in time.
    #[error("the daemon did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The daemon closed the connection.
    #[error("the daemon closed the connection")]
    Closed,
    /// The connection broke after a request that is not safe to repeat (`refresh`, `add`,
    /// `remove`, `logout`) was sent and before its answer came. The request may or may not
    /// have taken effect, so it was not sent again: look (`status`) before repeating it.
    #[error(
        "the connection to the daemon broke after the `{verb}` request was sent; it may or \
         may not have taken effect and was not repeated"
    )]
    Interrupted {
        /// The verb of the request (`refresh`, `add`, …).
        verb: &'static str,
        /// The transport failure that interrupted it.
        #[source]
        source: Box<ClientError>,
    },
}

impl ClientError {
    /// Whether the failure is the connection's rather than an answer: nothing listens on the
    /// socket, or the connection was closed or broke. A new connection may succeed; the
    /// reconnecting clients ([`crate::Agent`], [`crate::blocking::Agent`]) retry exactly
    /// these (and only for requests that are safe to repeat).
    pub fn is_transport(&self) -> bool {
        match self {
            ClientError::NotRunning { .. } | ClientError::Closed => true,
            ClientError::Protocol(e) => {
                matches!(e, ProtocolError::Io(_) | ProtocolError::Truncated)
            }
            _ => false,
        }
    }

    /// The stable error code behind this failure, when the daemon gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Daemon(e) | ClientError::Refused(e) => Some(e.code),
            ClientError::VersionMismatch(_) => Some(ErrorCode::VersionMismatch),
            _ => None,
        }
    }

    /// The exit status the `tokd` command reports for this failure (the design's table):
    /// 1 negative answer (and a socket not safe to talk to: an unsafe directory, a daemon of
    /// another user), 2 invalid input, 3 daemon not running, 4 no such session, 5 version
    /// mismatch.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::NotRunning { .. } => 3,
            ClientError::InvalidDaemonUid(_) => 2,
            ClientError::VersionMismatch(_) | ClientError::DaemonTooOld(_) => 5,
            ClientError::Daemon(e) | ClientError::Refused(e) => match e.code {
                ErrorCode::NotFound => 4,
                ErrorCode::Invalid | ErrorCode::TooLarge | ErrorCode::AlreadyExists => 2,
                ErrorCode::VersionMismatch => 5,
                _ => 1,
            },
            _ => 1,
        }
    }
}

/// Maps a connect error on `path` to the right variant.
pub(crate) fn connect_error(path: &std::path::Path, source: std::io::Error) -> ClientError {
    use std::io::ErrorKind;
    match source.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => ClientError::NotRunning {
            path: path.to_path_buf(),
            tried: Vec::new(),
        },
        _ => ClientError::Connect {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// The places of a [`ClientError::NotRunning`], each with why it was tried: `/a (why), nor
/// on /b (why)`.
fn tried_places(path: &std::path::Path, tried: &[Candidate]) -> String {
    if tried.is_empty() {
        return path.display().to_string();
    }
    tried
        .iter()
        .map(|c| format!("{} ({})", c.socket.path.display(), c.why))
        .collect::<Vec<_>>()
        .join(", nor on ")
}

/// Checks a hello answer: `Ok(daemon version)` or the refusal as an error.
pub(crate) fn check_ack(ack: tokd_protocol::HelloAck) -> Result<(String, u16), ClientError> {
    match ack.outcome {
        Ok(version) => Ok((version, ack.minor)),
        Err(e) if e.code == ErrorCode::VersionMismatch => {
            Err(ClientError::VersionMismatch(e.message))
        }
        Err(e) => Err(ClientError::Refused(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokd_protocol::paths::{SocketPath, SocketSource};

    #[test]
    fn not_running_names_every_place_tried_and_why() {
        let place = |path: &str, source, why: &str| Candidate {
            socket: SocketPath {
                path: PathBuf::from(path),
                source,
            },
            why: why.to_owned(),
        };
        let e = ClientError::NotRunning {
            path: PathBuf::from("/run/user/7/tokd/tokd.sock"),
            tried: vec![
                place("/run/user/7/tokd/tokd.sock", SocketSource::RunUser, "first"),
                place("/tmp/tokd-7/tokd.sock", SocketSource::TempDir, "second"),
            ],
        };
        let text = e.to_string();
        assert!(
            text.contains(
                "nothing listens on /run/user/7/tokd/tokd.sock (first), nor on \
                 /tmp/tokd-7/tokd.sock (second);"
            ),
            "{text}"
        );
        assert_eq!(e.exit_code(), 3);
        assert!(e.is_transport());
        let bare = ClientError::NotRunning {
            path: PathBuf::from("/s.sock"),
            tried: Vec::new(),
        };
        assert!(
            bare.to_string().contains("nothing listens on /s.sock;"),
            "{bare}"
        );
    }

    #[test]
    fn a_daemon_of_another_user_is_no_transport_failure() {
        let e = ClientError::UntrustedDaemon {
            path: PathBuf::from("/tmp/x.sock"),
            uid: 1001,
            own: 1000,
        };
        assert!(!e.is_transport(), "never retried");
        assert_eq!(e.exit_code(), 1);
        let text = e.to_string();
        assert!(
            text.contains("uid 1001") && text.contains("TOKD_DAEMON_UID=1001"),
            "{text}"
        );
    }
}
