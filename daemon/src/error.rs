//! `DaemonError`: why the daemon could not start or stopped uncleanly.

use thiserror::Error;

use crate::config::ConfigError;
use crate::server::socket::SocketError;
use crate::store::StoreError;

/// A failure that ends the daemon. Each variant's message says what to fix.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened or flushed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The socket could not be set up.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// A core loop ended abnormally (a bug): the daemon stops with an error so that a
    /// supervisor restarts it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DaemonError {
    /// The process exit status for this failure: 2 for configuration mistakes, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) => 2,
            _ => 1,
        }
    }
}
