//! `DaemonState`: the one shared handle every handler gets.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokd_protocol::hello::{PROTOCOL_MAJOR, PROTOCOL_MINOR};
use tokd_protocol::{DaemonInfo, ProviderInfo, ProviderSource, RejectedReload};

use crate::clock::WallClock;
use crate::config::Config;
use crate::engine::Engine;
use crate::providers::Providers;
use crate::sessions::Sessions;
use crate::sessions::events::Events;
use crate::store::Store;

/// Everything the daemon shares between connections and background tasks.
#[derive(Debug)]
pub struct DaemonState {
    /// The configuration in force (replaced whole on reload).
    config: RwLock<Arc<Config>>,
    /// The providers built from that configuration (replaced with it).
    providers: RwLock<Arc<Providers>>,
    /// The refresh engine's queue, tasks and limits.
    pub engine: Engine,
    /// The wall clock every expiry decision reads.
    pub clock: Arc<dyn WallClock>,
    /// All sessions.
    pub sessions: Sessions,
    /// The encrypted store (shared with `sessions`).
    pub store: Store,
    /// The event bus behind `watch` and the audit trail.
    pub events: Events,
    /// This process's uid: the only one served (plus root when configured).
    pub own_uid: u32,
    /// The token files the daemon keeps in step with their sessions.
    pub token_files: crate::sinks::TokenFiles,
    /// When the daemon started, for `uptime`.
    started: Instant,
    /// The last config reload that was rejected, shown in `status`.
    last_rejected_reload: std::sync::Mutex<Option<RejectedReload>>,
}

impl DaemonState {
    /// Assembles the state from an opened store.
    pub fn new(
        config: Config,
        providers: Providers,
        store: Store,
        loaded: crate::store::Loaded,
        own_uid: u32,
        clock: Arc<dyn WallClock>,
    ) -> Self {
        let events = Events::new();
        DaemonState {
            sessions: Sessions::new(store.clone(), loaded, events.clone(), clock.clone()),
            engine: Engine::new(config.max_concurrent_refreshes, config.clock_check),
            providers: RwLock::new(Arc::new(providers)),
            clock,
            config: RwLock::new(Arc::new(config)),
            store,
            events,
            own_uid,
            token_files: crate::sinks::TokenFiles::default(),
            started: Instant::now(),
            last_rejected_reload: std::sync::Mutex::new(None),
        }
    }

    /// The configuration in force; cheap (an `Arc` clone).
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts a reloaded configuration and its providers in force.
    pub fn replace_config(&self, config: Config, providers: Providers) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        *self.providers.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(providers);
    }

    /// The providers in force; cheap (an `Arc` clone).
    pub fn providers(&self) -> Arc<Providers> {
        self.providers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notes a rejected reload (when, why) for `status`.
    pub fn reload_rejected(&self, error: String) {
        let rejected = RejectedReload {
            at_ms: self.clock.now_ms(),
            error,
        };
        *self
            .last_rejected_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(rejected);
    }

    /// The daemon half of `status`.
    pub fn info(&self, config: &Config) -> DaemonInfo {
        DaemonInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol_major: PROTOCOL_MAJOR,
            protocol_minor: PROTOCOL_MINOR,
            pid: std::process::id(),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            socket: config.socket.path.display().to_string(),
            state_dir: self.store.state_dir().display().to_string(),
            key_source: self.store.key_source().to_string(),
            config_file: config.config_file.as_ref().map(|p| p.display().to_string()),
            session_count: self.sessions.len() as u64,
            proxy: self.providers().proxy_description(),
            last_rejected_reload: self
                .last_rejected_reload
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            providers: config
                .providers
                .iter()
                .map(|(name, p)| ProviderInfo {
                    name: name.clone(),
                    source: ProviderSource::Config,
                    issuer: p.issuer.clone(),
                    registered_client: false,
                })
                .collect(),
        }
    }
}
