//! The configuration in force and the providers built from it, replaced together on reload.
//!
//! Every piece of work reads one [`Snapshot`] and keeps it to the end (a refresh attempt, a
//! status answer), so a reload in the middle never mixes two generations of settings.

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::providers::Providers;

/// One generation of settings: the config and its providers.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration.
    pub config: Config,
    /// The providers built from it.
    pub providers: Providers,
}

/// Holds the current [`Snapshot`]; cheap to read (an `Arc` clone under a read lock).
#[derive(Debug)]
pub struct ConfigCell {
    current: RwLock<Arc<Snapshot>>,
}

impl ConfigCell {
    /// A cell holding `config` and its `providers`.
    pub fn new(config: Config, providers: Providers) -> Self {
        ConfigCell {
            current: RwLock::new(Arc::new(Snapshot { config, providers })),
        }
    }

    /// The settings in force now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts a reloaded configuration and its providers in force, both at once.
    pub fn replace(&self, config: Config, providers: Providers) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Snapshot { config, providers });
    }
}
