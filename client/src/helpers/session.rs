//! What the credential helpers ask of the daemon: a session's token, a forced refresh when a
//! server refused the token it was given, and messages for when neither works — messages
//! that name the command to fix it and never contain a token.
//!
//! Shared by the `tokd` and `docker-credential-tokd` binaries (included with `#[path]`).

use std::time::Duration;

use tokd::ClientError;
use tokd_protocol::ErrorCode;
use tokd_protocol::paths::SocketPath;
use tokd_protocol::verbs::get::{GetRequest, TokenReply};

/// How long a token handed to git or docker must stay valid: long enough for a clone or a
/// pull to finish on it.
pub const HELPER_MIN_VALID: Duration = Duration::from_secs(60);

/// How long a `get` may wait for a refresh.
const WAIT: Duration = tokd::GET_WAIT;

/// The session's token (and id_token when asked for), valid for `min_valid` if at all
/// possible, over the blocking one-shot path.
///
/// # Errors
/// As [`tokd::blocking::get_from`].
pub fn fetch(
    socket: &SocketPath,
    session: &str,
    min_valid: Duration,
    include_id_token: bool,
) -> Result<TokenReply, ClientError> {
    fetch_waiting(socket, session, min_valid, WAIT, include_id_token)
}

/// [`fetch`] waiting up to `wait` (instead of [`tokd::GET_WAIT`]) for a refresh; `tokd get`
/// uses it with its `--wait`.
///
/// # Errors
/// As [`tokd::blocking::get_from`].
pub fn fetch_waiting(
    socket: &SocketPath,
    session: &str,
    min_valid: Duration,
    wait: Duration,
    include_id_token: bool,
) -> Result<TokenReply, ClientError> {
    tokd::blocking::get_from(
        socket,
        GetRequest {
            name: session.to_owned(),
            min_valid_ms: u64::try_from(min_valid.as_millis()).unwrap_or(u64::MAX),
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            include_id_token,
            target: tokd_protocol::TokenTarget::default(),
        },
    )
}

/// Refreshes the session now (the daemon's `refresh` verb, as `tokd refresh` does), so that
/// the next `get` answers a token the server has not refused yet.
///
/// Over the blocking API, with no retry budget: a helper runs while git or docker waits, so
/// a daemon that is not there is reported at once (after the one immediate reconnect every
/// [`tokd::RetryPolicy`] allows).
///
/// # Errors
/// As [`tokd::blocking::Agent::refresh`].
pub fn force_refresh(socket: &SocketPath, session: &str, client: &str) -> Result<(), ClientError> {
    tokd::blocking::Agent::with_socket(socket.clone())
        .client_name(client)
        .retry_policy(tokd::RetryPolicy::NO_WAIT)
        .refresh(session)
        .map(drop)
}

/// What to tell the user when the daemon has no token for `session`: the daemon's reason and
/// what to run about it.
pub fn explain(err: &ClientError, session: &str) -> String {
    // A session that exists logs in again with its own provider: no `--provider` needed.
    let login = format!("`tokd login {session}`");
    match err.code() {
        Some(ErrorCode::NotFound) => format!(
            "tokd has no session {session:?}; create it with `tokd login {session} --provider \
             <provider>` (`tokd status` lists the configured providers), or `tokd add`"
        ),
        Some(ErrorCode::NeedsLogin) => format!("{err}; log in again with {login}"),
        Some(ErrorCode::Expired | ErrorCode::RefreshFailed) => {
            format!("{err}; `tokd status {session}` shows why, {login} starts a new session")
        }
        Some(ErrorCode::NeedsConfig) => format!(
            "{err}; fix the provider in the tokd config file (`tokd status {session}`), or \
             log in again with {login}"
        ),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokd_protocol::ErrorReply;

    #[test]
    fn explanations_name_the_fix() {
        let err = |code| ClientError::Daemon(ErrorReply::new(code, "the daemon's reason"));
        let text = explain(&err(ErrorCode::NeedsLogin), "gh");
        assert!(text.starts_with("the daemon's reason; "), "{text}");
        assert!(text.contains("`tokd login gh`"), "the real command: {text}");
        assert!(!text.contains("PROVIDER"), "{text}");
        let text = explain(&err(ErrorCode::NotFound), "gh");
        assert!(text.contains("no session \"gh\""), "{text}");
        assert!(text.contains("tokd login gh"), "{text}");
        for code in [
            ErrorCode::Expired,
            ErrorCode::RefreshFailed,
            ErrorCode::NeedsConfig,
        ] {
            assert!(
                explain(&err(code), "gh").contains("tokd status gh"),
                "{code:?}"
            );
        }
        let down = ClientError::NotRunning {
            path: "/run/tokd.sock".into(),
            tried: Vec::new(),
        };
        assert!(explain(&down, "gh").contains("not running"));
    }
}
