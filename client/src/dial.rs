//! Opening a connection to the daemon, the one way every client does it (async and
//! blocking): the socket's places in order ([`candidates`]), the directory check for the
//! places tokd picks itself, and the check of who listens ([`crate::trust`]) before a
//! single byte is sent.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use tokd_protocol::paths::{Candidate, PathError, SocketPath, SocketSource, check_private_dir};

use crate::error::{ClientError, connect_error};
use crate::trust::check_daemon;

/// The places to try for `socket`, in order. An explicit socket (`--socket`, `TOKD_SOCKET`,
/// `XDG_RUNTIME_DIR`) is the only one. A default one stands for the defaults as they are
/// now: `/run/user/$UID` (when it is the user's) and then the temp dir, so that a daemon
/// started before the runtime directory existed is still found.
pub(crate) fn candidates(socket: &SocketPath) -> Vec<Candidate> {
    let given = Candidate {
        socket: socket.clone(),
        why: socket.source.why().to_owned(),
    };
    if !matches!(socket.source, SocketSource::RunUser | SocketSource::TempDir) {
        return vec![given];
    }
    let mut now = tokd_protocol::paths::socket_candidates(None);
    if !now.iter().any(|c| c.socket == *socket) {
        now.insert(0, given);
    }
    now
}

/// Connects to the first of `socket`'s places where a daemon listens (std socket).
///
/// # Errors
/// [`ClientError::NotRunning`] naming every place tried, [`ClientError::UntrustedDaemon`],
/// [`ClientError::UnsafeSocketDir`], [`ClientError::Connect`].
pub(crate) fn connect_blocking(
    socket: &SocketPath,
) -> Result<std::os::unix::net::UnixStream, ClientError> {
    let tried = candidates(socket);
    for c in &tried {
        let path = &c.socket.path;
        let attempt = check_socket_dir(&c.socket).and_then(|()| {
            std::os::unix::net::UnixStream::connect(path).map_err(|e| connect_error(path, e))
        });
        if let Some(stream) = settle(attempt, path)? {
            return Ok(stream);
        }
    }
    Err(not_running(tried))
}

/// [`connect_blocking`] for tokio, each connect bounded by `limit`.
///
/// # Errors
/// See [`connect_blocking`]; [`ClientError::Timeout`] when a connect takes too long.
pub(crate) async fn connect_async(
    socket: &SocketPath,
    limit: Duration,
) -> Result<tokio::net::UnixStream, ClientError> {
    let tried = candidates(socket);
    for c in &tried {
        let path = &c.socket.path;
        let attempt = match check_socket_dir(&c.socket) {
            Err(e) => Err(e),
            Ok(()) => {
                match tokio::time::timeout(limit, tokio::net::UnixStream::connect(path)).await {
                    Err(_) => return Err(ClientError::Timeout(limit)),
                    Ok(result) => result.map_err(|e| connect_error(path, e)),
                }
            }
        };
        if let Some(stream) = settle(attempt, path)? {
            return Ok(stream);
        }
    }
    Err(not_running(tried))
}

/// What one connection attempt means: `Some(stream)` once the daemon on it is trusted,
/// `None` when nothing listens (try the next place), or the error that ends the search.
fn settle<S: AsFd>(attempt: Result<S, ClientError>, path: &Path) -> Result<Option<S>, ClientError> {
    match attempt {
        Ok(stream) => {
            check_daemon(&stream, path)?;
            Ok(Some(stream))
        }
        Err(ClientError::NotRunning { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn not_running(tried: Vec<Candidate>) -> ClientError {
    ClientError::NotRunning {
        path: tried
            .first()
            .map(|c| c.socket.path.clone())
            .unwrap_or_default(),
        tried,
    }
}

/// Refuses a socket in a directory tokd picked itself (the temp-dir fallback, the user's
/// runtime directory found without `XDG_RUNTIME_DIR`) that is not ours and private:
/// anyone can create directories in `/tmp`, and a planted socket would receive our
/// requests. A missing directory means nothing listens there.
fn check_socket_dir(socket: &SocketPath) -> Result<(), ClientError> {
    if !matches!(socket.source, SocketSource::TempDir | SocketSource::RunUser) {
        return Ok(());
    }
    let Some(dir) = socket.path.parent() else {
        return Ok(());
    };
    match check_private_dir(dir) {
        Ok(()) => Ok(()),
        Err(PathError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(ClientError::NotRunning {
                path: socket.path.clone(),
                tried: Vec::new(),
            })
        }
        Err(e) => Err(e.into()),
    }
}
