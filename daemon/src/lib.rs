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
//!   refresh state (one enum), generations; token-response import; the audit trail.
//! - [`engine`]: the refresh engine — the lifecycle entry points, single-flight refresh
//!   tasks, the outcome policy (a pure function), planning and the scheduler loop.
//! - [`providers`]: how tokens are obtained; where HTTP happens.
//! - [`login`]: device flow and browser flow (PKCE, loopback redirect), run by the daemon.
//! - [`store`]: the only code that touches sled or key bytes — sealed records, key sources,
//!   quarantine of records that fail to open.
//! - [`config`]: embedded defaults, the optional TOML file, flags; [`config_cell`]: the
//!   settings in force, one snapshot per piece of work.
//! - [`state`]: the composition root handlers and the server receive.
//! - [`reply`]: what a handler answers (one frame or a stream).
//! - [`sinks`]: token files, kept in step by a task of their own.
//! - [`systemd`]: socket activation, `READY=1`/`STATUS=`/`WATCHDOG=1`/`STOPPING=1`;
//!   [`liveness`]: the probes the watchdog pings on.
//! - `notify`: the command run when a session needs you.
//! - `timing`: the refresh policy's arithmetic (due time, jitter, minimum interval, backoff).
//! - [`fsutil`]: the atomic file write.
//!
//! [`run`] is the one entry point shared by `main` and the tests: it takes a listener and a
//! shutdown token.

pub mod clock;
pub mod config;
pub(crate) mod config_cell;
pub mod engine;
pub mod error;
pub(crate) mod fsutil;
pub mod handlers;
pub(crate) mod liveness;
pub(crate) mod login;
pub(crate) mod notify;
pub(crate) mod providers;
pub(crate) mod reply;
pub mod server;
pub(crate) mod sessions;
pub(crate) mod sinks;
pub mod state;
pub mod store;
pub mod systemd;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub(crate) mod timing;

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
    providers::http::log_proxy_settings();
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

/// Re-reads the configuration (SIGHUP): new providers appear, changed settings apply,
/// sessions are kept and those that needed a config fix are tried again. A broken file is
/// rejected and the configuration in force stays.
///
/// # Errors
/// [`DaemonError::Config`] naming what is wrong; nothing changed.
pub fn reload(state: &Arc<DaemonState>, overrides: &config::Overrides) -> Result<(), DaemonError> {
    let notifying = systemd::notifying();
    if notifying {
        systemd::notify_reloading();
    }
    let applied = apply_config(state, overrides);
    if let Err(e) = &applied {
        state.reload_rejected(e.to_string());
    }
    if notifying {
        systemd::notify_ready(&systemd::summary(state.sessions(), state.settings_cell()));
    }
    applied
}

/// Loads the config again and puts what a running daemon can change into force.
fn apply_config(
    state: &Arc<DaemonState>,
    overrides: &config::Overrides,
) -> Result<(), DaemonError> {
    let mut new = Config::load(overrides)?;
    let providers = providers::Providers::from_config(&new)?;
    let snapshot = state.settings();
    let old = &snapshot.config;
    log_restart_only_changes(old, &new);
    // What only a restart can change stays as it runs, so nothing reads a value that
    // disagrees with the bound socket, the open store or the sized semaphores.
    new.socket = old.socket.clone();
    new.state_dir = old.state_dir.clone();
    new.key_file = old.key_file.clone();
    new.credentials_dir = old.credentials_dir.clone();
    new.limits.max_connections = old.limits.max_connections;
    new.max_concurrent_refreshes = old.max_concurrent_refreshes;
    new.log = old.log.clone();
    let count = new.providers.len();
    state.replace_config(new, providers);
    state.engine().on_reload(&snapshot);
    // The token files follow the new config (their task waits for this).
    state.reloaded().notify_one();
    tracing::info!(providers = count, "config reloaded");
    Ok(())
}

/// Says, for each setting a reload changed, whether it applies now or at the next start.
fn log_restart_only_changes(old: &Config, new: &Config) {
    let (o, n) = (&old.limits, &new.limits);
    for (what, changed) in [
        ("socket", old.socket.path != new.socket.path),
        ("state_dir", old.state_dir != new.state_dir),
        ("key_file", old.key_file != new.key_file),
        ("max_connections", o.max_connections != n.max_connections),
        (
            "max_concurrent_refreshes",
            old.max_concurrent_refreshes != new.max_concurrent_refreshes,
        ),
        ("log", old.log != new.log),
    ] {
        if changed {
            tracing::warn!(
                setting = what,
                "changed in the config; takes effect at the next restart"
            );
        }
    }
    for (what, changed) in [
        (
            "handshake_timeout",
            o.handshake_timeout != n.handshake_timeout,
        ),
        ("idle_timeout", o.idle_timeout != n.idle_timeout),
        ("max_frame_bytes", o.max_frame != n.max_frame),
    ] {
        if changed {
            tracing::info!(
                setting = what,
                "changed in the config; applies to connections opened from now on"
            );
        }
    }
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
    if let Some(path) = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
    {
        state.listening_on(path);
    }
    let (live, accept_probe, scheduler_probe) = liveness::liveness();
    state.engine().start(Some(scheduler_probe));
    let tracker = TaskTracker::new();
    let accepting = tokio::spawn(server::accept_loop(
        listener,
        state.clone(),
        shutdown.clone(),
        tracker.clone(),
        Some(accept_probe),
    ));
    let summary = || systemd::summary(state.sessions(), state.settings_cell());
    // The store is open and the socket listens (connections queue until accepted).
    if systemd::notifying() {
        // The summary walks every session; only systemd reads it.
        systemd::notify_ready(&summary());
    }
    let helpers = CancellationToken::new();
    let token_files = sinks::TokenFiles::spawn(
        state.sessions().clone(),
        state.settings_cell().clone(),
        state.reloaded().clone(),
    );
    let notifier = notify::Notifier::spawn(
        state.sessions().clone(),
        state.settings_cell().clone(),
        helpers.clone(),
    );
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(liveness::watchdog(live, interval, helpers.clone()));
    }
    if systemd::notifying() {
        tokio::spawn(systemd::status_updates(
            state.sessions().clone(),
            state.settings_cell().clone(),
            helpers.clone(),
        ));
    }
    let crashed = accepting.await.err();
    if let Some(e) = &crashed {
        tracing::error!(error = %e, "the accept loop ended abnormally; stopping");
        shutdown.cancel();
    }
    helpers.cancel();
    let _ = notifier.await;
    systemd::notify_stopping();
    tracing::info!("shutting down: no new connections");
    state.engine().shutdown().await;
    tracker.close();
    if tokio::time::timeout(CONNECTION_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the grace period");
    }
    // Last: refreshes that finished during the shutdown, and `rm`/`logout` requests that
    // were still being answered, reach the token files too.
    token_files.finish().await;
    state.store().flush().await?;
    tracing::info!("store flushed; bye");
    match crashed {
        Some(e) => Err(DaemonError::Internal(format!("the accept loop ended: {e}"))),
        None => Ok(()),
    }
}
