//! The `tokd` command line, as clap definitions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Talk to the tokd daemon: fetch bearer tokens, import and inspect sessions.
#[derive(Debug, Parser)]
#[command(
    name = "tokd",
    version,
    about = "Get OAuth2 / OpenID Connect bearer tokens from the tokd daemon, and manage its sessions",
    propagate_version = true
)]
pub struct Cli {
    /// Socket of the daemon (default: $TOKD_SOCKET, $XDG_RUNTIME_DIR/tokd/tokd.sock; without
    /// XDG_RUNTIME_DIR, /run/user/$UID/tokd/tokd.sock when that directory is yours, then
    /// ${TMPDIR:-/tmp}/tokd-$UID/tokd.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a session's bearer token (and nothing else) on stdout.
    Get(GetArgs),
    /// Show the daemon and the health of every session; exit 1 if any is unhealthy.
    Status(StatusArgs),
    /// List session names, one per line.
    List,
    /// Import a session from a token response (JSON) on stdin.
    Add(AddArgs),
    /// Remove a session and its stored secrets.
    #[command(alias = "remove")]
    Rm(NameArg),
    /// Refresh a session now.
    Refresh(NameArg),
    /// Log in to a provider and store the session.
    Login(LoginArgs),
    /// Revoke a session at its provider (when possible) and remove it.
    Logout(NameArg),
    /// Print session events as they happen.
    Watch(WatchArgs),
    /// Run a command with a session's token in its environment.
    Exec(ExecArgs),
    /// git credential helper: answer git with the token of the session mapped to the remote.
    #[command(name = "git-credential")]
    GitCredential(GitCredentialArgs),
    /// kubectl exec credential plugin: print an ExecCredential with a session's token.
    Kubectl(KubectlArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `tokd man | man -l -`.
    Man,
}

/// `tokd completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `tokd get`.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct GetArgs {
    /// The session.
    pub name: String,
    /// The token must stay valid at least this long (e.g. 30s, 5m); a token with less left
    /// is refreshed first when possible.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub min_valid: Duration,
    /// How long to wait for such a refresh.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub wait: Duration,
    /// Print `Authorization: Bearer <token>`.
    #[arg(long, conflicts_with_all = ["json", "id_token"])]
    pub header: bool,
    /// Print token, type and expiry as JSON.
    #[arg(long, conflicts_with = "id_token")]
    pub json: bool,
    /// Print the stored id_token instead of the access token.
    #[arg(long)]
    pub id_token: bool,
}

/// `tokd status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this session.
    pub name: Option<String>,
    /// One JSON object: `{"daemon": {...}, "sessions": [...]}`.
    #[arg(long)]
    pub json: bool,
}

/// `tokd add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The new session's name (letters, digits, '.', '_', '-'; at most 64).
    pub name: String,
    /// The provider (from the config file) that refreshes it.
    #[arg(long, short)]
    pub provider: String,
    /// An attribute used by the provider, e.g. `--attr user_id=42` (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_attr)]
    pub attrs: Vec<(String, String)>,
    /// Replace an existing session of the same name.
    #[arg(long)]
    pub replace: bool,
}

/// A command taking only a session name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// The session.
    pub name: String,
}

/// `tokd login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The session to create or renew.
    pub name: String,
    /// The provider to log in with; needed only for a new session (a login again keeps the
    /// session's provider).
    #[arg(long, short)]
    pub provider: Option<String>,
    /// Use the browser (authorization code + PKCE) instead of the device flow.
    #[arg(long)]
    pub browser: bool,
    /// With --browser: print the URL instead of opening a browser; when the browser runs on
    /// another machine, paste the address it was sent to (the page that failed to load).
    #[arg(long, requires = "browser")]
    pub no_browser: bool,
    /// Replace a session of another provider, or a healthy one the new login would leave
    /// without a refresh token.
    #[arg(long)]
    pub replace: bool,
    /// Give up on a login not completed within this time (default: the daemon's
    /// `login_timeout`, 5 minutes).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// An attribute to store with the session (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_attr)]
    pub attrs: Vec<(String, String)>,
}

/// `tokd watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Keep watching across daemon restarts: reconnect, and print a `resync` event (events
    /// while it was away are missed; re-read what you track).
    #[arg(long)]
    pub reconnect: bool,
}

/// `tokd exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The session.
    pub name: String,
    /// The environment variable that receives the token.
    #[arg(long, default_value = "TOKD_TOKEN", value_name = "VAR")]
    pub env: String,
    /// The token must stay valid at least this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub min_valid: Duration,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// `tokd git-credential`.
#[derive(Debug, Args)]
pub struct GitCredentialArgs {
    /// Answer for every remote with this session (default: the session mapped to the remote
    /// in the config file's [helpers.git] table).
    #[arg(long, value_name = "NAME")]
    pub session: Option<String>,
    /// The username to answer with (default: the mapping's, else x-access-token for
    /// github.com, x-token-auth for bitbucket.org, oauth2 for others).
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// The config file holding [helpers.git] (default: $TOKD_CONFIG, else
    /// $XDG_CONFIG_HOME/tokd/config.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What git asks: get, store or erase (other operations are ignored, as git wants).
    pub operation: String,
}

/// `tokd kubectl`.
#[derive(Debug, Args)]
pub struct KubectlArgs {
    /// The session.
    pub name: String,
    /// Send the session's id_token instead of the access token.
    #[arg(long)]
    pub id_token: bool,
    /// The token must stay valid at least this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub min_valid: Duration,
}

/// Parses `30s`, `5m`, `1h30m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (try e.g. 30s, 5m, 1h30m)"))
}

fn parse_attr(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}
