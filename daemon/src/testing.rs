//! An in-process daemon on a temp dir, for tests that drive the engine and the handlers
//! directly: the engine's own transition tests, the clock-jump tests of the end-to-end
//! suite, and the `dispatch` fuzz target share it (feature `testing`).
//!
//! Every path the daemon uses (key, state, socket) lives in the fixture's directory; the
//! clock is an [`OffsetClock`] that tests can jump.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::DaemonState;
use crate::clock::OffsetClock;
use crate::config::{Config, Overrides};

/// A daemon's state opened on a temp dir, not yet serving a socket.
#[derive(Debug)]
pub struct Fixture {
    /// The daemon's state (its engine is not started: call `state.engine().start(None)`).
    pub state: Arc<DaemonState>,
    /// The wall clock it reads.
    pub clock: Arc<OffsetClock>,
    /// The config file (rewrite it and call [`crate::reload`] with [`Fixture::overrides`]).
    pub config_file: PathBuf,
    /// Holds the key, the state directory, the socket path and the config file.
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// Opens a daemon whose config file holds `extra` after its `[daemon]` table (which
    /// points the key and the state directory into the fixture), in a temp dir under `base`
    /// (the system's temp dir when `None`).
    ///
    /// # Panics
    /// When the directory, the config or the store cannot be set up (a test set-up error).
    pub fn open(base: Option<&Path>, prefix: &str, extra: &str) -> Fixture {
        let mut builder = tempfile::Builder::new();
        builder.prefix(prefix);
        let dir = match base {
            Some(base) => builder.tempdir_in(base),
            None => builder.tempdir(),
        }
        .expect("a temp dir for the fixture");
        let config_file = dir.path().join("config.toml");
        let fixture_config = format!(
            "[daemon]\nkey_file = \"{}\"\nstate_dir = \"{}\"\n{extra}\n",
            dir.path().join("key").display(),
            dir.path().join("state").display()
        );
        std::fs::write(&config_file, fixture_config).expect("the fixture's config file");
        let clock = OffsetClock::new();
        let config = Self::load(dir.path(), &config_file);
        let state = crate::open_with_clock(config, clock.clone()).expect("the daemon opens");
        Fixture {
            state,
            clock,
            config_file,
            dir,
        }
    }

    fn load(dir: &Path, config_file: &Path) -> Config {
        let home = dir.join("home").display().to_string();
        let env = move |key: &str| (key == "HOME").then(|| home.clone());
        Config::load_with(&Self::overrides_in(dir, config_file), &env).expect("the config loads")
    }

    fn overrides_in(dir: &Path, config_file: &Path) -> Overrides {
        Overrides {
            config_file: Some(config_file.to_path_buf()),
            socket: Some(dir.join("tokd.sock")),
            state_dir: None,
        }
    }

    /// The overrides the fixture's config was loaded with (for a reload).
    pub fn overrides(&self) -> Overrides {
        Self::overrides_in(self.dir.path(), &self.config_file)
    }

    /// The socket path the fixture's config names.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("tokd.sock")
    }

    /// Replaces what follows the `[daemon]` table of the config file and reloads it.
    ///
    /// # Errors
    /// The reload's, as [`crate::reload`].
    pub fn reload_with(&self, extra: &str) -> Result<(), crate::DaemonError> {
        let text = std::fs::read_to_string(&self.config_file).unwrap_or_default();
        let daemon_table: String = text.lines().take(3).collect::<Vec<_>>().join("\n");
        std::fs::write(&self.config_file, format!("{daemon_table}\n{extra}\n"))
            .expect("the fixture's config file");
        crate::reload(&self.state, &self.overrides())
    }
}
