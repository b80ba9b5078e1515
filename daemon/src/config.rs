//! Configuration: embedded defaults, an optional TOML file, then flags. Loaded once,
//! strict (unknown keys are errors), every path resolved to an absolute path at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use thiserror::Error;
use tokd_protocol::Secret;
use tokd_protocol::frame::DEFAULT_MAX_FRAME;
use tokd_protocol::paths::{self, SocketPath, current_uid, resolve_with};

/// Why the configuration could not be loaded. Each message names the file or variable.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file given with `--config` / `TOKD_CONFIG` does not exist or cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config{}: {message}", .path.as_ref().map(|p| format!(" file {}", p.display())).unwrap_or_default())]
    Invalid {
        /// The file, if the value came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
    /// Neither the XDG variable nor `HOME` says where a default directory is.
    #[error("cannot find a default {what}: neither {xdg} nor HOME is set (use {flag})")]
    NoHome {
        /// Which directory.
        what: &'static str,
        /// The XDG variable consulted.
        xdg: &'static str,
        /// The flag that sets it.
        flag: &'static str,
    },
}

/// A duration written the human way in the config file (`"5m"`, `"1h30m"`, `"500ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

/// The `[daemon]` table of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Default refresh-ahead for every provider.
    pub refresh_ahead: Option<HumanDuration>,
    /// Global cap on refreshes in flight.
    pub max_concurrent_refreshes: Option<usize>,
    /// Socket path (the `--socket` flag and `TOKD_SOCKET` win).
    pub socket: Option<PathBuf>,
    /// State directory (the `--state-dir` flag wins).
    pub state_dir: Option<PathBuf>,
    /// Key file used when no systemd credential is given.
    pub key_file: Option<PathBuf>,
    /// Connection cap.
    pub max_connections: Option<usize>,
    /// Time a new connection has to send its hello.
    pub handshake_timeout: Option<HumanDuration>,
    /// Time an idle connection is kept open.
    pub idle_timeout: Option<HumanDuration>,
    /// Largest frame accepted.
    pub max_frame_bytes: Option<usize>,
    /// Serve root's connections too (root can read our files anyway, but is refused by default).
    pub allow_root: Option<bool>,
    /// Log filter (`info`, `tokd_daemon=debug`, …); `TOKD_LOG` / `RUST_LOG` win.
    pub log: Option<String>,
    /// Longest time between two wall-clock checks of the scheduler (suspend, clock jumps).
    pub clock_check_interval: Option<HumanDuration>,
    /// Keep the process dumpable (core dumps, ptrace by the same user): off by default,
    /// because the daemon's memory holds every token.
    pub allow_core_dumps: Option<bool>,
    /// How long a login waits for the user (default 5 min; `tokd login --timeout` wins).
    pub login_timeout: Option<HumanDuration>,
    /// A shell command run when a session needs you (see `notify.rs`).
    pub notify_command: Option<String>,
    /// Refresh failures in a row that make a notification (default 3).
    pub notify_after_failures: Option<u32>,
    /// Also notify this long before a refresh token expires.
    pub notify_before_refresh_expiry: Option<HumanDuration>,
    /// How long the notify command may run (default 30 s).
    pub notify_timeout: Option<HumanDuration>,
}

/// When and how a session that needs you is announced.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// The shell command; `None`: no notifications.
    pub command: Option<String>,
    /// Refresh failures in a row that make a notification.
    pub after_failures: u32,
    /// Notify this long before a refresh token expires.
    pub before_refresh_expiry: Option<Duration>,
    /// How long the command may run.
    pub timeout: Duration,
}

/// How a provider obtains tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// RFC 6749 token endpoint.
    #[default]
    Oauth2,
    /// A non-standard JSON refresh endpoint.
    Json,
}

/// The OAuth2 grant a provider refreshes with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// RFC 6749 §6.
    #[default]
    RefreshToken,
    /// RFC 6749 §4.4: a new grant each time; no login needed.
    ClientCredentials,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with client id and secret.
    #[default]
    ClientSecretBasic,
    /// Client id and secret in the form body.
    ClientSecretPost,
    /// Public client: only the client id.
    None,
}

/// The unit of an absolute or relative expiry in a JSON response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryUnit {
    /// Epoch milliseconds.
    #[default]
    Ms,
    /// Epoch seconds.
    S,
    /// Seconds from now.
    SecondsFromNow,
}

/// One `[providers.NAME]` table: how sessions of this provider are refreshed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `oauth2` (default) or `json`.
    #[serde(default)]
    pub kind: ProviderKind,
    /// Issuer for discovery of the endpoints.
    pub issuer: Option<String>,
    /// Token endpoint given directly.
    pub token_endpoint: Option<String>,
    /// Device authorization endpoint (login).
    pub device_authorization_endpoint: Option<String>,
    /// Authorization endpoint (browser login).
    pub authorization_endpoint: Option<String>,
    /// Revocation endpoint (logout).
    pub revocation_endpoint: Option<String>,
    /// The grant to refresh with.
    #[serde(default)]
    pub grant: Grant,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// Client secret, inline.
    pub client_secret: Option<Secret>,
    /// Client secret, from a file.
    pub client_secret_file: Option<PathBuf>,
    /// Client authentication method.
    pub auth_method: Option<AuthMethod>,
    /// Scope to request.
    pub scope: Option<String>,
    /// `audience` parameter.
    pub audience: Option<String>,
    /// `resource` parameter (RFC 8707).
    pub resource: Option<String>,
    /// Extra form fields on token requests.
    #[serde(default)]
    pub extra_params: BTreeMap<String, String>,
    /// Extra HTTP headers on token requests.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long before expiry to refresh.
    pub refresh_ahead: Option<HumanDuration>,
    /// Lifetime assumed when a response says nothing about expiry.
    pub default_lifetime: Option<HumanDuration>,
    /// Cap on this provider's refreshes in flight.
    pub max_concurrent_refreshes: Option<usize>,
    /// Total time a token request may take (default 30 s).
    pub request_timeout: Option<HumanDuration>,
    /// The loopback port of the browser login's redirect URI, for providers that demand an
    /// exact `http://127.0.0.1:PORT/callback` (default: any free port, RFC 8252 §7.3).
    pub redirect_port: Option<u16>,
    /// JSON kind: the refresh URL.
    pub refresh_url: Option<String>,
    /// JSON kind: request body fields, templated (`{refresh_token}`, `{attr.NAME}`).
    #[serde(default)]
    pub request: BTreeMap<String, String>,
    /// JSON kind: response field names.
    #[serde(default)]
    pub response: BTreeMap<String, String>,
    /// JSON kind: unit of the expiry field.
    pub expires_at_unit: Option<ExpiryUnit>,
}

/// One `[sessions.NAME]` table: per-session settings (the session itself lives in the store).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Extra headers on this session's token requests.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A token file sink, rewritten atomically on refresh.
    pub file: Option<PathBuf>,
    /// Only these executables may get this session's token.
    #[serde(default)]
    pub allow_exe: Vec<PathBuf>,
    /// The files `allow_exe` names, by identity (device and inode) as they were when the
    /// config was read; `None` for one that did not exist then. A peer is matched by the
    /// identity of its executable, never by the path it shows.
    #[serde(skip)]
    pub allow_exe_ids: Vec<Option<FileId>>,
    /// Only these uids may get this session's token.
    #[serde(default)]
    pub allow_uids: Vec<u32>,
}

/// A file by identity: what a bind mount over its path in another mount namespace cannot
/// fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file at `path` (symlinks followed).
    ///
    /// # Errors
    /// The file cannot be stat'ed.
    pub fn of(path: impl AsRef<std::path::Path>) -> std::io::Result<FileId> {
        let st = rustix::fs::stat(path.as_ref())?;
        #[allow(
            clippy::useless_conversion,
            reason = "the field types differ by target"
        )]
        Ok(FileId {
            dev: u64::from(st.st_dev),
            ino: u64::from(st.st_ino),
        })
    }
}

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[daemon]`.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// `[providers.NAME]`.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// `[sessions.NAME]`.
    #[serde(default)]
    pub sessions: BTreeMap<String, SessionConfig>,
    /// `[helpers.*]`: read by the credential helpers (`tokd git-credential`,
    /// `docker-credential-tokd`), which validate it themselves; the daemon only lets it be.
    #[serde(default)]
    pub helpers: toml::Table,
}

/// Limits that protect the daemon from its peers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connection cap.
    pub max_connections: usize,
    /// Time a new connection has to send its hello.
    pub handshake_timeout: Duration,
    /// Time an idle connection is kept open.
    pub idle_timeout: Duration,
    /// Largest frame accepted.
    pub max_frame: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// The configuration in force: every default applied and every path resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub config_file: Option<PathBuf>,
    /// The socket to listen on.
    pub socket: SocketPath,
    /// Where the database lives.
    pub state_dir: PathBuf,
    /// The key file (used when no systemd credential is given).
    pub key_file: PathBuf,
    /// systemd's `$CREDENTIALS_DIRECTORY`, if set.
    pub credentials_dir: Option<PathBuf>,
    /// Connection and frame limits.
    pub limits: Limits,
    /// Serve root's connections too.
    pub allow_root: bool,
    /// Default refresh-ahead.
    pub refresh_ahead: Duration,
    /// Global cap on refreshes in flight.
    pub max_concurrent_refreshes: usize,
    /// Log filter from the file, if any.
    pub log: Option<String>,
    /// Longest time between two wall-clock checks of the scheduler.
    pub clock_check: Duration,
    /// Keep the process dumpable.
    pub allow_core_dumps: bool,
    /// How long a login waits for the user, unless the request says.
    pub login_timeout: Duration,
    /// When a session that needs you is announced.
    pub notify: NotifySettings,
    /// Providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Per-session settings by name.
    pub sessions: BTreeMap<String, SessionConfig>,
}

impl Config {
    /// The grant of provider `name`; `None` when no such provider is configured.
    pub fn grant_of(&self, name: &str) -> Option<Grant> {
        self.providers.get(name).map(|p| p.grant)
    }

    /// The one answer for a request naming a provider the config does not have: it lists
    /// the configured ones, or says where to add one.
    pub fn unknown_provider(&self, name: &str) -> tokd_protocol::ErrorReply {
        let known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
        let message = if known.is_empty() {
            format!(
                "no provider named {name:?}: the config has no providers (add a \
                 [providers.{name}] table to {})",
                self.config_file
                    .as_ref()
                    .map_or_else(|| "the config file".to_owned(), |p| p.display().to_string())
            )
        } else {
            format!(
                "no provider named {name:?} (configured: {})",
                known.join(", ")
            )
        };
        tokd_protocol::ErrorReply::new(tokd_protocol::ErrorCode::Invalid, message)
    }

    /// The extra headers of session `name`'s token requests.
    pub fn session_headers(&self, name: &str) -> BTreeMap<String, String> {
        self.sessions
            .get(name)
            .map(|s| s.headers.clone())
            .unwrap_or_default()
    }
}

/// How long a login waits for the user by default.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The longest a login may wait for the user.
pub const MAX_LOGIN_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// What the command line can override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
}

/// Reads a process environment variable; a seam so tests can pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Loads the configuration: defaults, then the file (`--config` > `TOKD_CONFIG` >
    /// `$XDG_CONFIG_HOME/tokd/config.toml` if it exists), then the flags.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and what is wrong.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        Self::load_with(overrides, &env)
    }

    /// [`Config::load`] with the environment passed in.
    ///
    /// # Errors
    /// See [`Config::load`].
    pub fn load_with(overrides: &Overrides, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let config_home = paths::config_home(env);
        let (file, path) = match paths::config_file(overrides.config_file.as_deref(), env) {
            Some((path, explicit)) if explicit || path.exists() => (read_file(&path)?, Some(path)),
            _ => (ConfigFile::default(), None),
        };
        Self::resolve(file, path, overrides, env, config_home)
    }

    /// Parses config text (for tests and reload).
    ///
    /// # Errors
    /// [`ConfigError::Parse`] with the parser's message.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: toml_error_without_source(text, &e),
        })
    }

    fn resolve(
        file: ConfigFile,
        path: Option<PathBuf>,
        overrides: &Overrides,
        env: EnvLookup<'_>,
        config_home: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let r = Resolver {
            base: path
                .as_ref()
                .and_then(|p| p.parent())
                .map(Path::to_path_buf),
            path,
            env,
        };
        let d = &file.daemon;
        let limits = r.limits(d)?;
        let max_concurrent_refreshes = d.max_concurrent_refreshes.unwrap_or(16);
        if max_concurrent_refreshes == 0 {
            return Err(r.invalid("daemon.max_concurrent_refreshes must be at least 1".into()));
        }
        Ok(Config {
            socket: r.socket(overrides, d),
            state_dir: r.state_dir(overrides, d)?,
            key_file: r.key_file(d, config_home)?,
            credentials_dir: env("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            limits,
            allow_root: d.allow_root.unwrap_or(false),
            refresh_ahead: d.refresh_ahead.map_or(Duration::from_secs(300), |h| h.0),
            max_concurrent_refreshes,
            log: d.log.clone(),
            allow_core_dumps: d.allow_core_dumps.unwrap_or(false),
            notify: NotifySettings {
                command: d.notify_command.clone().filter(|c| !c.trim().is_empty()),
                after_failures: d.notify_after_failures.unwrap_or(3).max(1),
                before_refresh_expiry: d.notify_before_refresh_expiry.map(|h| h.0),
                timeout: d
                    .notify_timeout
                    .map_or(Duration::from_secs(30), |h| h.0)
                    .clamp(Duration::from_secs(1), Duration::from_secs(600)),
            },
            login_timeout: d
                .login_timeout
                .map_or(DEFAULT_LOGIN_TIMEOUT, |h| h.0)
                .clamp(Duration::from_secs(10), MAX_LOGIN_TIMEOUT),
            clock_check: d
                .clock_check_interval
                .map_or(Duration::from_secs(60), |h| h.0)
                .clamp(Duration::from_millis(100), Duration::from_secs(60)),
            providers: r.providers(file.providers)?,
            sessions: r.sessions(file.sessions)?,
            config_file: r.path,
        })
    }
}

/// Turns what the file says into settings: paths made absolute (relative ones against the
/// file's directory), values checked.
struct Resolver<'a> {
    /// The config file, if any.
    path: Option<PathBuf>,
    /// Its directory: what relative paths in it are relative to.
    base: Option<PathBuf>,
    env: EnvLookup<'a>,
}

impl Resolver<'_> {
    fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            message,
        }
    }

    /// A path from the file: relative to the file's directory, then (without a file) to
    /// the working directory.
    fn absolute(&self, p: &Path) -> PathBuf {
        let joined = match (&self.base, p.is_absolute()) {
            (Some(base), false) => base.join(p),
            _ => p.to_path_buf(),
        };
        absolutize_cwd(&joined)
    }

    fn socket(&self, overrides: &Overrides, d: &DaemonSection) -> SocketPath {
        let env = self.env;
        let socket_flag = overrides
            .socket
            .clone()
            .map(|p| absolutize_cwd(&p))
            .or_else(|| {
                // TOKD_SOCKET outranks the file; the resolver checks it when no flag is set.
                if env("TOKD_SOCKET").is_some() {
                    None
                } else {
                    d.socket.as_deref().map(|p| self.absolute(p))
                }
            });
        resolve_with(
            socket_flag.as_deref(),
            |key| env(key).map(std::ffi::OsString::from),
            current_uid(),
        )
    }

    fn state_dir(&self, overrides: &Overrides, d: &DaemonSection) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &overrides.state_dir {
            return Ok(absolutize_cwd(dir));
        }
        if let Some(dir) = &d.state_dir {
            return Ok(self.absolute(dir));
        }
        // systemd's StateDirectory= (the first one, if several), then XDG.
        let systemd = (self.env)("STATE_DIRECTORY")
            .and_then(|list| list.split(':').next().map(str::to_owned))
            .filter(|first| first.starts_with('/'));
        match systemd {
            Some(first) => Ok(PathBuf::from(first)),
            None => Ok(xdg_dir(self.env, "XDG_STATE_HOME", ".local/state")
                .ok_or(ConfigError::NoHome {
                    what: "state directory",
                    xdg: "XDG_STATE_HOME",
                    flag: "--state-dir",
                })?
                .join("tokd")),
        }
    }

    fn key_file(
        &self,
        d: &DaemonSection,
        config_home: Option<PathBuf>,
    ) -> Result<PathBuf, ConfigError> {
        match &d.key_file {
            Some(p) => Ok(self.absolute(p)),
            None => Ok(config_home
                .ok_or(ConfigError::NoHome {
                    what: "key file",
                    xdg: "XDG_CONFIG_HOME",
                    flag: "key_file in the config file",
                })?
                .join("tokd/key")),
        }
    }

    fn limits(&self, d: &DaemonSection) -> Result<Limits, ConfigError> {
        let defaults = Limits::default();
        let limits = Limits {
            max_connections: d.max_connections.unwrap_or(defaults.max_connections),
            handshake_timeout: d
                .handshake_timeout
                .map_or(defaults.handshake_timeout, |h| h.0),
            idle_timeout: d.idle_timeout.map_or(defaults.idle_timeout, |h| h.0),
            max_frame: d.max_frame_bytes.unwrap_or(defaults.max_frame),
        };
        if limits.max_connections == 0 {
            return Err(self.invalid("daemon.max_connections must be at least 1".into()));
        }
        // The request decoder's allocation limit is the ceiling: a frame that passes the size
        // check must be able to decode.
        let ceiling = tokd_protocol::frame::REQUEST_DECODE_LIMIT;
        if !(1024..=ceiling).contains(&limits.max_frame) {
            return Err(self.invalid(format!(
                "daemon.max_frame_bytes must be between 1024 and {ceiling}"
            )));
        }
        Ok(limits)
    }

    fn providers(
        &self,
        mut providers: BTreeMap<String, ProviderConfig>,
    ) -> Result<BTreeMap<String, ProviderConfig>, ConfigError> {
        for (name, provider) in &mut providers {
            validate_provider(name, provider).map_err(|m| self.invalid(m))?;
            // Like every path in the file: relative to the file's directory, never to the
            // daemon's working directory.
            if let Some(secret_file) = provider.client_secret_file.take() {
                let expanded = expand_path(&secret_file, self.env).map_err(|e| {
                    self.invalid(format!("[providers.{name}] client_secret_file: {e}"))
                })?;
                provider.client_secret_file = Some(self.absolute(&expanded));
            }
        }
        Ok(providers)
    }

    fn sessions(
        &self,
        mut sessions: BTreeMap<String, SessionConfig>,
    ) -> Result<BTreeMap<String, SessionConfig>, ConfigError> {
        let mut sink_owner: BTreeMap<PathBuf, String> = BTreeMap::new();
        for (name, session) in &mut sessions {
            tokd_protocol::name::validate_session_name(name)
                .map_err(|e| self.invalid(format!("[sessions.{name}]: {e}")))?;
            if let Some(resolved) = self.token_file(name, session)? {
                if let Some(other) = sink_owner.insert(resolved.clone(), name.clone()) {
                    return Err(self.invalid(format!(
                        "[sessions.{name}] and [sessions.{other}] write the same token file {}",
                        resolved.display()
                    )));
                }
                session.file = Some(resolved);
            }
            self.allow_exe(name, session)?;
        }
        Ok(sessions)
    }

    /// The session's token file, resolved (taken out of `session`).
    fn token_file(
        &self,
        name: &str,
        session: &mut SessionConfig,
    ) -> Result<Option<PathBuf>, ConfigError> {
        let Some(raw) = session.file.take() else {
            return Ok(None);
        };
        let expanded = expand_path(&raw, self.env)
            .map_err(|e| self.invalid(format!("[sessions.{name}] file: {e}")))?;
        if !(session.allow_exe.is_empty() && session.allow_uids.is_empty()) {
            return Err(self.invalid(format!(
                "[sessions.{name}]: `file` and `allow_exe`/`allow_uids` exclude each \
                 other: every program of the user can read a token file, so the \
                 access list would protect nothing"
            )));
        }
        Ok(Some(self.absolute(&expanded)))
    }

    fn allow_exe(&self, name: &str, session: &mut SessionConfig) -> Result<(), ConfigError> {
        for exe in &mut session.allow_exe {
            let expanded = expand_path(exe, self.env)
                .map_err(|e| self.invalid(format!("[sessions.{name}] allow_exe: {e}")))?;
            if !expanded.is_absolute() {
                return Err(self.invalid(format!(
                    "[sessions.{name}] allow_exe: {} is not an absolute path",
                    expanded.display()
                )));
            }
            // The kernel reports a process's executable with symlinks resolved.
            *exe = std::fs::canonicalize(&expanded).unwrap_or(expanded);
        }
        session.allow_exe_ids = session
            .allow_exe
            .iter()
            .map(|exe| FileId::of(exe).ok())
            .collect();
        Ok(())
    }
}

/// Request parameters tokd sets itself in some flow (token, device and authorization
/// requests, client authentication). `extra_params` may add to a request, never send one of
/// these a second time or replace what the flow depends on.
pub const RESERVED_PARAMS: [&str; 12] = [
    "grant_type",
    "refresh_token",
    "device_code",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "response_type",
    "state",
    "code_challenge",
    "code_challenge_method",
];

fn validate_provider(name: &str, p: &ProviderConfig) -> Result<(), String> {
    if !tokd_protocol::name::is_valid_name(name, usize::MAX) {
        return Err(format!(
            "provider name {name:?}: only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    if p.client_secret.is_some() && p.client_secret_file.is_some() {
        return Err(format!(
            "[providers.{name}]: set client_secret or client_secret_file, not both"
        ));
    }
    match p.kind {
        ProviderKind::Oauth2 => {
            if p.issuer.is_none() && p.token_endpoint.is_none() {
                return Err(format!(
                    "[providers.{name}]: set issuer (for discovery) or token_endpoint"
                ));
            }
        }
        ProviderKind::Json => {
            if p.refresh_url.is_none() {
                return Err(format!(
                    "[providers.{name}]: kind = \"json\" needs refresh_url"
                ));
            }
        }
    }
    if let Some(key) = p
        .extra_params
        .keys()
        .find(|k| RESERVED_PARAMS.contains(&k.as_str()))
    {
        return Err(format!(
            "[providers.{name}]: extra_params may not set {key:?}, which tokd sets itself"
        ));
    }
    // Sent once, from either place. (`resource` may be both: RFC 8707 allows several.)
    for (key, field) in [("scope", &p.scope), ("audience", &p.audience)] {
        if field.is_some() && p.extra_params.contains_key(key) {
            return Err(format!(
                "[providers.{name}]: {key} is set twice, as {key} = and in extra_params; keep one"
            ));
        }
    }
    if let Some(t) = p.request_timeout
        && !(std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(300))
            .contains(&t.0)
    {
        return Err(format!(
            "[providers.{name}]: request_timeout must be between 100ms and 5m"
        ));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Config::parse(&text, path)
}

fn xdg_dir(env: EnvLookup<'_>, var: &str, fallback: &str) -> Option<PathBuf> {
    env(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(fallback)))
}

/// Expands a leading `~/` and the variables `$XDG_RUNTIME_DIR`, `$HOME` and `$UID`
/// (also as `${NAME}`) in a configured path, so token files can follow the WLCG
/// `$XDG_RUNTIME_DIR/bt_u$UID` convention without hard-coding a uid.
fn expand_path(raw: &Path, env: EnvLookup<'_>) -> Result<PathBuf, String> {
    let Some(text) = raw.to_str() else {
        return Ok(raw.to_path_buf());
    };
    let lookup = |var: &str| -> Result<String, String> {
        match var {
            "UID" => Ok(current_uid().to_string()),
            "XDG_RUNTIME_DIR" | "HOME" => env(var).ok_or_else(|| format!("${var} is not set")),
            other => Err(format!(
                "unknown variable ${other} (known: $XDG_RUNTIME_DIR, $HOME, $UID)"
            )),
        }
    };
    let mut out = String::with_capacity(text.len());
    let rest = match text.strip_prefix("~/") {
        Some(rest) => {
            out.push_str(&lookup("HOME")?);
            out.push('/');
            rest
        }
        None => text,
    };
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let tail = &rest[i + 1..];
        let (var, used) = if let Some(inner) = tail.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text}"))?;
            (&inner[..end], end + 2)
        } else {
            let end = tail
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(tail.len());
            (&tail[..end], end)
        };
        if var.is_empty() {
            return Err(format!("a lone $ in {text}"));
        }
        out.push_str(&lookup(var)?);
        for _ in 0..used {
            chars.next();
        }
    }
    Ok(PathBuf::from(out))
}

fn absolutize_cwd(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// A TOML error as "line L, column C: message", without the source line the parser quotes:
/// that line may hold a `client_secret`.
fn toml_error_without_source(text: &str, e: &toml::de::Error) -> String {
    paths::config_error_at(text, e.span().map(|span| span.start), e.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_syntax_error_next_to_a_client_secret_does_not_print_it() {
        let text = "[providers.corp]\ntoken_endpoint = \"http://127.0.0.1:9/t\"\nclient_secret = \"s3cr3t-probe\" x\n";
        let err = Config::parse(text, Path::new("/cfg/config.toml"))
            .expect_err("bad TOML")
            .to_string();
        assert!(!err.contains("s3cr3t-probe"), "{err}");
        assert!(err.contains("line 3, column 32"), "{err}");
        assert!(err.contains("/cfg/config.toml"), "{err}");
    }

    #[test]
    fn sink_paths_expand_the_wlcg_variables() {
        let env = env_of(&[("XDG_RUNTIME_DIR", "/run/user/7"), ("HOME", "/home/u")]);
        let uid = current_uid();
        let expanded = expand_path(Path::new("$XDG_RUNTIME_DIR/bt_u$UID"), &env);
        assert_eq!(
            expanded,
            Ok(PathBuf::from(format!("/run/user/7/bt_u{uid}")))
        );
        let braced = expand_path(Path::new("${HOME}/t-${UID}.txt"), &env);
        assert_eq!(braced, Ok(PathBuf::from(format!("/home/u/t-{uid}.txt"))));
        assert_eq!(
            expand_path(Path::new("~/tok"), &env),
            Ok(PathBuf::from("/home/u/tok"))
        );
        let unknown = expand_path(Path::new("$NOPE/x"), &env).expect_err("unknown");
        assert!(unknown.contains("$NOPE"), "{unknown}");
        let unset = expand_path(Path::new("$XDG_RUNTIME_DIR/x"), &env_of(&[]));
        assert!(unset.expect_err("unset").contains("not set"));
        assert!(expand_path(Path::new("${HOME"), &env).is_err());
    }

    #[test]
    fn a_relative_client_secret_file_is_relative_to_the_config_file() {
        let text = "[providers.g]\ntoken_endpoint = \"https://x/t\"\nclient_secret_file = \"secrets/g.txt\"\n";
        let file = Config::parse(text, Path::new("/cfg/tokd/config.toml")).expect("parses");
        let env = env_of(&[("HOME", "/home/u")]);
        let c = Config::resolve(
            file,
            Some(PathBuf::from("/cfg/tokd/config.toml")),
            &Overrides::default(),
            &env,
            Some(PathBuf::from("/home/u/.config")),
        )
        .expect("resolves");
        assert_eq!(
            c.providers["g"].client_secret_file.as_deref(),
            Some(Path::new("/cfg/tokd/secrets/g.txt"))
        );
    }

    #[test]
    fn two_sessions_cannot_share_a_token_file() {
        let text = "[sessions.a]\nfile = \"/run/x\"\n[sessions.b]\nfile = \"/run/x\"\n";
        let file = Config::parse(text, Path::new("c.toml")).expect("parses");
        let env = env_of(&[("HOME", "/home/u")]);
        let home = Some(PathBuf::from("/home/u/.config"));
        let err =
            Config::resolve(file, None, &Overrides::default(), &env, home).expect_err("refused");
        assert!(err.to_string().contains("same token file"), "{err}");
    }

    #[test]
    fn defaults_need_no_file() {
        let env = env_of(&[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/7")]);
        let c = Config::load_with(&Overrides::default(), &env).expect("loads");
        assert_eq!(c.state_dir, Path::new("/home/u/.local/state/tokd"));
        assert_eq!(c.key_file, Path::new("/home/u/.config/tokd/key"));
        assert_eq!(c.socket.path, Path::new("/run/user/7/tokd/tokd.sock"));
        assert!(c.config_file.is_none());
        assert_eq!(c.refresh_ahead, Duration::from_secs(300));
    }

    #[test]
    fn extra_params_may_not_repeat_what_tokd_sends() {
        for key in ["grant_type", "client_id", "state", "refresh_token"] {
            let text = format!(
                "[providers.corp]\ntoken_endpoint = \"http://127.0.0.1:9/t\"\nextra_params = {{ {key} = \"x\" }}\n"
            );
            let file = Config::parse(&text, Path::new("c.toml")).expect("parses");
            let env = env_of(&[("HOME", "/home/u")]);
            let home = Some(PathBuf::from("/home/u/.config"));
            let err = Config::resolve(file, None, &Overrides::default(), &env, home)
                .expect_err("refused");
            assert!(
                err.to_string().contains(&format!("may not set {key:?}")),
                "{key}: {err}"
            );
        }
        let resolve = |extra: &str| {
            let text =
                format!("[providers.corp]\ntoken_endpoint = \"http://127.0.0.1:9/t\"\n{extra}\n");
            let file = Config::parse(&text, Path::new("c.toml")).expect("parses");
            let env = env_of(&[("HOME", "/home/u")]);
            let home = Some(PathBuf::from("/home/u/.config"));
            Config::resolve(file, None, &Overrides::default(), &env, home)
        };
        resolve("extra_params = { prompt = \"login\", tenant = \"acme\" }").expect("other keys");
        // scope and audience come from one place or the other, not both.
        resolve("extra_params = { audience = \"api\" }").expect("audience only as an extra");
        let err = resolve("scope = \"openid\"\nextra_params = { scope = \"x\" }")
            .expect_err("scope twice");
        assert!(err.to_string().contains("scope is set twice"), "{err}");
        // Several RFC 8707 resources: one field, one extra.
        resolve("resource = \"https://a\"\nextra_params = { resource = \"https://b\" }")
            .expect("two resources");
    }

    #[test]
    fn systemd_state_directory_wins_over_xdg_when_absolute() {
        let env = env_of(&[
            ("HOME", "/home/u"),
            (
                "STATE_DIRECTORY",
                "/home/u/.local/state/svc:/home/u/.local/state/other",
            ),
        ]);
        let c = Config::load_with(&Overrides::default(), &env).expect("loads");
        assert_eq!(c.state_dir, Path::new("/home/u/.local/state/svc"));
        let env = env_of(&[("HOME", "/home/u"), ("STATE_DIRECTORY", "relative/dir")]);
        let c = Config::load_with(&Overrides::default(), &env).expect("loads");
        assert_eq!(c.state_dir, Path::new("/home/u/.local/state/tokd"));
    }

    #[test]
    fn the_design_example_parses() {
        let text = r#"
[daemon]
refresh_ahead = "5m"
max_concurrent_refreshes = 16

[providers.corp]
issuer = "https://id.example.com"
grant = "refresh_token"
client_id = "tokd"
client_secret_file = "/path/to/secret"
auth_method = "client_secret_basic"
scope = "openid offline_access"
refresh_ahead = "2m"

[providers.chat]
kind = "json"
refresh_url = "https://chat.example.com/api/admin/oauth/refresh"
headers = { "X-Tenant-Id" = "acme" }
request = { refreshToken = "{refresh_token}", user_id = "{attr.user_id}" }
response = { access_token = "token", refresh_token = "refreshToken", expires_at = "expiresAt" }
expires_at_unit = "ms"

[sessions.work]
headers = { "X-Tenant-Id" = "other" }
file = "/run/user/1000/bt_u1000"
allow_exe = ["/usr/bin/git"]
"#;
        let file = Config::parse(text, Path::new("/etc/x.toml")).expect("parses");
        assert_eq!(file.providers.len(), 2);
        assert_eq!(file.providers["chat"].kind, ProviderKind::Json);
        assert_eq!(
            file.providers["corp"].refresh_ahead,
            Some(HumanDuration(Duration::from_secs(120)))
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let err = Config::parse("[daemon]\nrefresh_ahed = \"5m\"\n", Path::new("/c.toml"))
            .expect_err("typo");
        let msg = err.to_string();
        assert!(
            msg.contains("/c.toml") && msg.contains("refresh_ahed"),
            "{msg}"
        );
        let err = Config::parse("[daemon]\nrefresh_ahead = \"soon\"\n", Path::new("/c.toml"))
            .expect_err("bad duration");
        assert!(err.to_string().contains("soon"), "{err}");
    }

    #[test]
    fn a_provider_without_endpoint_is_refused() {
        let file = Config::parse("[providers.x]\nclient_id = \"a\"\n", Path::new("/c.toml"))
            .expect("parses");
        let env = env_of(&[("HOME", "/h")]);
        let err = Config::resolve(
            file,
            Some("/c.toml".into()),
            &Overrides::default(),
            &env,
            Some("/h/.config".into()),
        )
        .expect_err("invalid");
        assert!(err.to_string().contains("token_endpoint"), "{err}");
    }
}
