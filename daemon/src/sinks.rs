//! Token files: per-session file sinks (`[sessions.NAME] file = …`) for programs that can
//! only read a file, such as the WLCG `BEARER_TOKEN_FILE` convention.
//!
//! One task follows the event bus: after every event about a session with a sink, the file
//! is brought in line with the session — the current access token, written atomically
//! (temp file in the same directory, mode 0600, fsync, rename, directory fsync) only when
//! it changed; removed when the session is gone, needs a login, or its token expired. A
//! lagging subscription, a config reload and the start all reconcile every sink.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokd_protocol::{Secret, SessionState};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::sessions::status_of;
use crate::state::DaemonState;

/// What the sink task knows about the files it wrote.
#[derive(Debug, Default)]
pub struct TokenFiles {
    /// Per session: the file last written (or removed) and a digest of what it holds.
    written: Mutex<HashMap<String, Written>>,
    /// Poked on reload: every sink is reconciled against the new config.
    reconfigured: Notify,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    path: PathBuf,
    /// SHA-256 of the token in the file (never the token itself); `None`: no file.
    digest: Option<[u8; 32]>,
}

impl TokenFiles {
    /// Asks the sink task to reconcile every sink (after a config reload).
    pub fn reconfigured(&self) {
        self.reconfigured.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the sink task until `stop`: reconciles everything once, then follows the events.
pub async fn run(state: Arc<DaemonState>, stop: CancellationToken) {
    let mut events = state.events.subscribe();
    reconcile_all(&state).await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = state.token_files.reconfigured.notified() => reconcile_all(&state).await,
            event = events.recv() => match event {
                Ok(event) => {
                    if let Some(name) = event.session {
                        reconcile(&state, &name).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => reconcile_all(&state).await,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Brings every configured sink (and every file written under an older config) in line.
pub async fn reconcile_all(state: &Arc<DaemonState>) {
    let config = state.config();
    let mut names: Vec<String> = config
        .sessions
        .iter()
        .filter(|(_, s)| s.file.is_some())
        .map(|(name, _)| name.clone())
        .collect();
    names.extend(state.token_files.lock().keys().cloned());
    names.sort_unstable();
    names.dedup();
    for name in names {
        reconcile(state, &name).await;
    }
}

/// Brings the sink of one session in line with it.
async fn reconcile(state: &Arc<DaemonState>, name: &str) {
    let config = state.config();
    let wanted = config.sessions.get(name).and_then(|s| s.file.clone());
    let previous = state.token_files.lock().get(name).cloned();
    if wanted.is_none() && previous.is_none() {
        return;
    }
    let token = wanted
        .as_ref()
        .and_then(|_| servable_token(state, name, &config));
    let digest = token
        .as_ref()
        .map(|t| <[u8; 32]>::from(Sha256::digest(t.expose().as_bytes())));

    // A file from an older config (the path changed or the sink was dropped) goes away.
    if let Some(prev) = &previous
        && wanted.as_ref() != Some(&prev.path)
        && prev.digest.is_some()
    {
        remove(&prev.path).await;
    }
    let Some(path) = wanted else {
        state.token_files.lock().remove(name);
        return;
    };
    let next = Written {
        path: path.clone(),
        digest,
    };
    if previous.as_ref() == Some(&next) {
        return;
    }
    let done = match token {
        Some(token) => write(&path, token).await,
        // The configured path is tokd's: whatever is there is a token it no longer vouches for.
        None => remove(&path).await,
    };
    if done {
        state.token_files.lock().insert(name.to_owned(), next);
    }
}

/// The access token a sink should hold: a live session's unexpired token, unless the
/// session needs a login (its provider refused the refresh token; the token is on its way out).
fn servable_token(state: &DaemonState, name: &str, config: &Config) -> Option<Secret> {
    let session = state.sessions.find(name)?;
    let status = status_of(&session, config, state.sessions.now());
    if matches!(
        status.state,
        SessionState::NeedsLogin | SessionState::Corrupt
    ) {
        return None;
    }
    let reply = state.sessions.token_of(&session, 0, false, config).ok()?;
    Some(reply.access_token)
}

/// Writes `token` to `path` atomically; logs (without the token) and returns false on failure.
async fn write(path: &Path, token: Secret) -> bool {
    let target = path.to_path_buf();
    let result =
        tokio::task::spawn_blocking(move || write_atomically(&target, token.expose().as_bytes()))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match result {
        Ok(()) => {
            tracing::debug!(file = %path.display(), "token file written");
            true
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the token file");
            false
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| std::io::Error::other("the token file path has no directory"))?;
    // tempfile creates the file O_EXCL with mode 0600, whatever the umask.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tokd-token-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Removes the file at `path` if there is one; false when it exists and cannot be removed.
async fn remove(path: &Path) -> bool {
    let target = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || std::fs::remove_file(&target))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match result {
        Ok(()) => {
            tracing::info!(file = %path.display(), "token file removed");
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove the token file");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bt");
        std::fs::write(&path, b"old").expect("seed");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_atomically(&path, b"new-token").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new-token");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != "bt")
            .collect();
        assert!(
            leftovers.is_empty(),
            "temp files left behind: {leftovers:?}"
        );
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing/bt");
        assert!(write_atomically(&path, b"x").is_err());
    }
}
