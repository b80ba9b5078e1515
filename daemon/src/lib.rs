//! The tokd daemon: keeps OAuth2 / OpenID Connect sessions alive and serves their bearer
//! tokens to local programs over a Unix socket.
//!
//! # Layout
//!
//! From the outside in:
//! - [`server`]: where requests enter — the socket (bind, stale check, 0600), the accept loop,
//!   one task per connection (peer check, hello, frames).
//! - [`handlers`]: one module per verb; `handlers::dispatch` is the single exhaustive match.
//! - [`sessions`]: where session state lives — every session by name, its record, its
//!   runtime state, generations; token-response import.
//! - [`engine`]: the refresh engine — deadline scheduler, single-flight refresh tasks,
//!   commits guarded by generation, backoff, terminal states.
//! - [`providers`]: how tokens are obtained; where HTTP happens.
//! - [`store`]: the only code that touches sled or key bytes — sealed records, key sources,
//!   quarantine of records that fail to open.
//! - [`config`]: embedded defaults, the optional TOML file, flags.
//! - [`state`]: the shared handle handlers receive.
//!
//! [`run`] is the one entry point shared by `main` and the tests: it takes a listener and a
//! shutdown token.

pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod handlers;
pub mod providers;
pub mod server;
pub mod sessions;
pub mod state;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use error::DaemonError;
pub use state::DaemonState;

/// How long connections get to finish after shutdown begins.
const CONNECTION_GRACE: Duration = Duration::from_secs(5);

/// Opens the store for `config` and builds the daemon's state, on the system clock.
///
/// # Errors
/// [`DaemonError::Store`] for a wrong or missing key, a locked or unusable state directory;
/// [`DaemonError::Config`] for an unreadable client secret file.
pub fn open(config: Config) -> Result<Arc<DaemonState>, DaemonError> {
    open_with_clock(config, Arc::new(clock::SystemClock))
}

/// [`open`] with another wall clock (tests use one that jumps, as after a suspend).
///
/// # Errors
/// See [`open`].
pub fn open_with_clock(
    config: Config,
    clock: Arc<dyn clock::WallClock>,
) -> Result<Arc<DaemonState>, DaemonError> {
    let providers = providers::Providers::from_config(&config)?;
    let options = store::StoreOptions {
        state_dir: config.state_dir.clone(),
        key_file: config.key_file.clone(),
        credentials_dir: config.credentials_dir.clone(),
    };
    let (store, loaded) = store::Store::open(&options)?;
    for corrupt in &loaded.corrupt {
        tracing::error!(
            session = %corrupt.name,
            reason = %corrupt.reason,
            "stored record failed to open; quarantined (not served, not overwritten)"
        );
    }
    let uid = tokd_protocol::paths::current_uid();
    Ok(Arc::new(DaemonState::new(
        config, providers, store, loaded, uid, clock,
    )))
}

/// Starts the refresh engine and serves `listener` until `shutdown` is cancelled; then
/// stops accepting, waits for refreshes already sent (their answers may carry the only copy
/// of a rotated refresh token), drains connections and flushes the store.
///
/// # Errors
/// [`DaemonError::Store`] if the final flush fails.
pub async fn run(
    state: Arc<DaemonState>,
    listener: UnixListener,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    engine::start(&state);
    let tracker = TaskTracker::new();
    server::accept_loop(listener, state.clone(), shutdown.clone(), tracker.clone()).await;
    tracing::info!("shutting down: no new connections");
    engine::shutdown(&state).await;
    tracker.close();
    if tokio::time::timeout(CONNECTION_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the grace period");
    }
    state.store.flush().await?;
    tracing::info!("store flushed; bye");
    Ok(())
}
