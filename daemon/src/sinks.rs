//! Token files: per-session file sinks (`[sessions.NAME] file = …`) for programs that can
//! only read a file, such as the WLCG `BEARER_TOKEN_FILE` convention.
//!
//! One task follows the event bus and owns what it knows of the files it wrote: after every
//! event about a session with a sink, the file is brought in line with the session — the
//! current access token, written atomically ([`crate::fsutil::write_atomically`]) only when
//! it changed; removed when the session is gone, needs a login, or its token expired. A
//! lagging subscription, a config reload, the start and the end all reconcile every sink.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokd_protocol::{Secret, SessionState};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::config_cell::ConfigCell;
use crate::sessions::{Sessions, status_of};

/// The running sink task; finish it at the end.
#[derive(Debug)]
pub struct TokenFiles {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TokenFiles {
    /// Starts the sink task: it reconciles every sink once, then follows the events and
    /// `reconfigured` (poked after a config reload).
    pub fn spawn(
        sessions: Arc<Sessions>,
        settings: Arc<ConfigCell>,
        reconfigured: Arc<Notify>,
    ) -> TokenFiles {
        let stop = CancellationToken::new();
        let sink = Sink {
            sessions,
            settings,
            written: HashMap::new(),
        };
        let task = tokio::spawn(sink.run(reconfigured, stop.clone()));
        TokenFiles { stop, task }
    }

    /// Reconciles every sink one last time (refreshes that finished during a shutdown, and
    /// `rm` or `logout` answered last, reach the files too) and ends the task.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The sink task and what it knows about the files it wrote.
struct Sink {
    sessions: Arc<Sessions>,
    settings: Arc<ConfigCell>,
    /// Per session: the file last written (or removed) and a digest of what it holds.
    written: HashMap<String, Written>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    path: PathBuf,
    /// SHA-256 of the token in the file (never the token itself); `None`: no file.
    digest: Option<[u8; 32]>,
}

impl Sink {
    async fn run(mut self, reconfigured: Arc<Notify>, stop: CancellationToken) {
        let mut events = self.sessions.events().subscribe();
        self.reconcile_all().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = reconfigured.notified() => self.reconcile_all().await,
                event = events.recv() => match event {
                    Ok(event) => {
                        if let Some(name) = event.session {
                            self.reconcile(&name).await;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.reconcile_all().await,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        self.reconcile_all().await;
    }

    /// Brings every configured sink (and every file written under an older config) in line.
    async fn reconcile_all(&mut self) {
        let config = &self.settings.current().config;
        let mut names: Vec<String> = config
            .sessions
            .iter()
            .filter(|(_, s)| s.file.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        names.extend(self.written.keys().cloned());
        names.sort_unstable();
        names.dedup();
        for name in names {
            self.reconcile(&name).await;
        }
    }

    /// Brings the sink of one session in line with it.
    async fn reconcile(&mut self, name: &str) {
        let snapshot = self.settings.current();
        let config = &snapshot.config;
        let wanted = config.sessions.get(name).and_then(|s| s.file.clone());
        let previous = self.written.get(name).cloned();
        if wanted.is_none() && previous.is_none() {
            return;
        }
        let token = wanted
            .as_ref()
            .and_then(|_| servable_token(&self.sessions, name, config));
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
            self.written.remove(name);
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
            self.written.insert(name.to_owned(), next);
        }
    }
}

/// The access token a sink should hold: a live session's unexpired token, unless the
/// session needs a login (its provider refused the refresh token; the token is on its way out).
fn servable_token(sessions: &Sessions, name: &str, config: &Config) -> Option<Secret> {
    let session = sessions.find(name)?;
    let status = status_of(&session, config, sessions.now());
    if matches!(
        status.state,
        SessionState::NeedsLogin | SessionState::Corrupt
    ) {
        return None;
    }
    let reply = sessions.token_of(&session, 0, false, config).ok()?;
    Some(reply.access_token)
}

/// Writes `token` to `path` atomically; logs (without the token) and returns false on failure.
async fn write(path: &Path, token: Secret) -> bool {
    let target = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        crate::fsutil::write_atomically(&target, token.expose().as_bytes())
    })
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
