//! Getting a listening socket: refuse if a daemon answers, replace a stale file, bind with
//! mode 0600 before anyone can connect, and unlink only the socket we bound ourselves.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokd_protocol::paths::{PathError, SocketPath, ensure_private_dir};
use tokio::net::{UnixListener, UnixSocket};

/// Why the daemon could not listen.
#[derive(Debug, Error)]
pub enum SocketError {
    /// Another daemon answers on the socket.
    #[error(
        "another tokd-daemon is already running on {0} (stop it first; a second daemon needs \
         both its own --socket and its own --state-dir)"
    )]
    AlreadyRunning(PathBuf),
    /// Something that is not a socket sits at the path; we do not delete it.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The socket's directory is unsafe.
    #[error(transparent)]
    Dir(#[from] PathError),
    /// A system call failed.
    #[error("cannot listen on {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A listener plus the knowledge of which file to unlink at the end.
#[derive(Debug)]
pub struct BoundSocket {
    /// The listening socket.
    pub listener: UnixListener,
    /// Removes the socket file on drop if it is still the one we bound.
    pub guard: UnlinkGuard,
}

/// Unlinks the socket file on drop, but only if the file at the path is still the socket
/// this process bound (same device and inode): a successor's socket is never removed.
#[derive(Debug)]
pub struct UnlinkGuard {
    path: PathBuf,
    dev_ino: Option<(u64, u64)>,
}

impl Drop for UnlinkGuard {
    fn drop(&mut self) {
        let Some(bound) = self.dev_ino else { return };
        if let Ok(meta) = fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == bound
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Fails with [`SocketError::AlreadyRunning`] when a daemon answers on `path`; a socket file
/// that refuses connections is stale and is removed. Called before the store is opened so a
/// second daemon stops with the clearest message.
///
/// # Errors
/// See [`SocketError`].
pub fn refuse_if_running(path: &Path) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket(path.to_path_buf()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::AlreadyRunning(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing stale socket file");
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(SocketError::Io {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        Err(source) => Err(SocketError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Binds and listens on the resolved socket path.
///
/// The directory is created 0700 (and must be private when tokd manages it); the socket is
/// bound, made 0600, and only then listens, so no other user can ever connect.
///
/// # Errors
/// See [`SocketError`].
pub fn bind(socket: &SocketPath) -> Result<BoundSocket, SocketError> {
    let path = &socket.path;
    let io_err = |source| SocketError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // A directory tokd manages must be private; one the user named is only created
        // (0700) when missing, and otherwise left as the user made it.
        if socket.dir_is_managed() || !dir.exists() {
            ensure_private_dir(dir)?;
        }
    }
    refuse_if_running(path)?;
    let sock = UnixSocket::new_stream().map_err(io_err)?;
    sock.bind(path).map_err(io_err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    let meta = fs::symlink_metadata(path).map_err(io_err)?;
    let guard = UnlinkGuard {
        path: path.clone(),
        dev_ino: Some((meta.dev(), meta.ino())),
    };
    let listener = sock.listen(1024).map_err(io_err)?;
    Ok(BoundSocket { listener, guard })
}
