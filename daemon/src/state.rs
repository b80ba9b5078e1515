//! `DaemonState`: the composition root the request handlers and the server see. It owns the
//! parts (settings, sessions, engine) and hands each the narrow context it needs; its fields
//! are private, so every part is reached through what it is for.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokd_protocol::hello::{PROTOCOL_MAJOR, PROTOCOL_MINOR};
use tokd_protocol::{DaemonInfo, ProviderInfo, ProviderSource, RejectedReload};

use crate::clock::WallClock;
use crate::config::Config;
use crate::config_cell::{ConfigCell, Snapshot};
use crate::engine::Engine;
use crate::providers::Providers;
use crate::sessions::Sessions;
use crate::sessions::events::Events;
use crate::store::Store;

/// Everything the daemon shares between connections and background tasks.
#[derive(Debug)]
pub struct DaemonState {
    /// The settings in force (replaced whole on reload).
    settings: Arc<ConfigCell>,
    /// All sessions.
    sessions: Arc<Sessions>,
    /// The refresh engine; the one place sessions are added and removed.
    engine: Engine,
    /// This process's uid: the only one served (plus root when configured).
    own_uid: u32,
    /// When the daemon started, for `uptime`.
    started: Instant,
    /// The last config reload that was rejected, shown in `status`.
    last_rejected_reload: Mutex<Option<RejectedReload>>,
    /// Poked after each config reload that was taken, for the parts that follow the config
    /// on their own (the token files).
    reloaded: Arc<tokio::sync::Notify>,
    /// The socket actually served (the one systemd passed, under socket activation).
    listening_on: std::sync::OnceLock<String>,
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
        let settings = Arc::new(ConfigCell::new(config, providers));
        let sessions = Arc::new(Sessions::new(store, loaded, Events::new(), clock));
        DaemonState {
            engine: Engine::new(sessions.clone(), settings.clone()),
            settings,
            sessions,
            own_uid,
            started: Instant::now(),
            last_rejected_reload: Mutex::new(None),
            reloaded: Arc::new(tokio::sync::Notify::new()),
            listening_on: std::sync::OnceLock::new(),
        }
    }

    /// The settings in force now (one snapshot: config and providers of one generation).
    pub fn settings(&self) -> Arc<Snapshot> {
        self.settings.current()
    }

    /// The settings cell itself, for the parts that follow reloads (token files, status).
    pub fn settings_cell(&self) -> &Arc<ConfigCell> {
        &self.settings
    }

    /// Every session.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// The refresh engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The event bus behind `watch` and the audit trail.
    pub fn events(&self) -> &Events {
        self.sessions.events()
    }

    /// Poked after each config reload that was taken.
    pub fn reloaded(&self) -> &Arc<tokio::sync::Notify> {
        &self.reloaded
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.sessions.store()
    }

    /// This process's uid: the only one served (plus root when allowed, and listed guests).
    pub fn own_uid(&self) -> u32 {
        self.own_uid
    }

    /// The wall clock every expiry decision reads.
    pub fn clock(&self) -> &Arc<dyn WallClock> {
        self.sessions.clock()
    }

    /// Puts a reloaded configuration and its providers in force.
    pub fn replace_config(&self, config: Config, providers: Providers) {
        self.settings.replace(config, providers);
    }

    /// Notes the socket the daemon serves, for `status` (under socket activation it is the
    /// one systemd passed, not the configured path).
    pub fn listening_on(&self, socket: String) {
        let _ = self.listening_on.set(socket);
    }

    /// Notes a rejected reload (when, why) for `status`.
    pub fn reload_rejected(&self, error: String) {
        let rejected = RejectedReload {
            at_ms: self.clock().now_ms(),
            error,
        };
        *self
            .last_rejected_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(rejected);
    }

    /// The daemon half of `status`.
    pub fn info(&self, snapshot: &Snapshot) -> DaemonInfo {
        let config = &snapshot.config;
        DaemonInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol_major: PROTOCOL_MAJOR,
            protocol_minor: PROTOCOL_MINOR,
            pid: std::process::id(),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            socket: self
                .listening_on
                .get()
                .cloned()
                .unwrap_or_else(|| config.socket.path.display().to_string()),
            state_dir: self.store().state_dir().display().to_string(),
            key_source: self.store().key_source().to_string(),
            config_file: config.config_file.as_ref().map(|p| p.display().to_string()),
            session_count: self.sessions.len() as u64,
            proxy: snapshot.providers.proxy_description(),
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
