//! `docker-credential-tokd`: docker's credential helper, answering with tokd sessions.
//!
//! `~/.docker/config.json` names it per registry (`"credHelpers": {"registry.example.com":
//! "tokd"}`); the `[helpers.docker."HOST"]` table of the tokd config file maps the registry
//! to a session. Verbs, as docker runs them:
//! - `get` (server URL on stdin): `{"ServerURL", "Username", "Secret"}` with the session's
//!   token; an unmapped registry is docker's "credentials not found in native keychain".
//!   A registry asked for with `http://` is mapped only by a key that says `http://` (docker
//!   usually names registries without a scheme; those match keys with and without one).
//! - `store` (credential JSON on stdin): tokd owns the token, so a mapped registry's `docker
//!   login` is accepted and nothing is kept; an unmapped one is refused, so no password is
//!   silently lost.
//! - `erase` (server URL on stdin): refresh the session now; nothing for unmapped ones.
//! - `list`: every mapped registry and its username.
//!
//! `--socket PATH` and `--config FILE` may precede the verb; otherwise `$TOKD_SOCKET` and
//! `$TOKD_CONFIG` apply, then the defaults. Errors go to stdout, where docker looks for them.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use tokd_protocol::paths::{SocketPath, resolve_socket_path};

/// The credential-helper code shared with `tokd` (`client/src/helpers/`).
#[path = "../../helpers"]
mod helpers {
    pub mod config;
    pub mod docker;
    pub mod session;
    pub mod stdout;
    pub mod target;
}
use helpers::stdout::errln;

use helpers::config::{HelperConfig, Kind, Rule};
use helpers::docker::{MAX_INPUT, NOT_FOUND, credential_json, list_json, store_server_url};
use helpers::session::{HELPER_MIN_VALID, explain, fetch, force_refresh};
use helpers::target::Target;

const USAGE: &str = "usage: docker-credential-tokd [--socket PATH] [--config FILE] \
                     <get|store|erase|list|version>";

/// The command line: where the daemon and the config are, and docker's verb.
struct Args {
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
    verb: String,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let socket = resolve_socket_path(args.socket.as_deref());
    let result = match args.verb.as_str() {
        "get" => get(&socket, &args),
        "store" => store(&args),
        "erase" => erase(&socket, &args),
        "list" => list(&args),
        "version" => Ok(format!(
            "docker-credential-tokd (tokd) {}",
            env!("CARGO_PKG_VERSION")
        )),
        other => {
            errln!("docker-credential-tokd: unknown verb {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (text, code) = match result {
        Ok(text) => (text, 0),
        Err(message) => (message, 1),
    };
    if !text.is_empty() {
        return answer(&format!("{text}\n"), code);
    }
    ExitCode::from(code)
}

/// Writes the answer to stdout, where docker reads it, and exits with `code`; a closed
/// stdout ends the helper quietly.
fn answer(text: &str, code: u8) -> ExitCode {
    match helpers::stdout::write(text.as_bytes()) {
        Ok(()) => ExitCode::from(code),
        Err(e) if helpers::stdout::is_broken_pipe(&e) => {
            ExitCode::from(helpers::stdout::BROKEN_PIPE_EXIT)
        }
        Err(e) => {
            errln!("docker-credential-tokd: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse_args(args: Vec<OsString>) -> Result<Args, ExitCode> {
    let mut socket = None;
    let mut config = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let flag = arg.to_str().unwrap_or_default();
        match flag {
            "--socket" | "--config" => {
                let Some(value) = it.next() else {
                    errln!("docker-credential-tokd: {flag} needs a value\n{USAGE}");
                    return Err(ExitCode::from(2));
                };
                let slot = if flag == "--socket" {
                    &mut socket
                } else {
                    &mut config
                };
                *slot = Some(PathBuf::from(value));
            }
            "-h" | "--help" => return Err(answer(&format!("{USAGE}\n"), 0)),
            verb if !verb.starts_with('-') && it.len() == 0 => {
                return Ok(Args {
                    socket,
                    config,
                    verb: verb.to_owned(),
                });
            }
            _ => break,
        }
    }
    errln!("{USAGE}");
    Err(ExitCode::from(2))
}

/// `get`: the session's token for a mapped registry.
fn get(socket: &SocketPath, args: &Args) -> Result<String, String> {
    let server_url = read_stdin()?;
    let server_url = server_url.trim();
    let Some(rule) = mapping(args, server_url)? else {
        note_plain_http(args, server_url);
        return Err(NOT_FOUND.to_owned());
    };
    let token = fetch(socket, &rule.session, HELPER_MIN_VALID, false)
        .map_err(|e| format!("no token for {server_url}: {}", explain(&e, &rule.session)))?;
    Ok(credential_json(
        server_url,
        &rule.username,
        token.access_token.expose(),
    ))
}

/// `store`: accepted (and nothing kept) for a mapped registry, refused for others.
fn store(args: &Args) -> Result<String, String> {
    let server_url = store_server_url(&read_stdin()?)?;
    match mapping(args, &server_url)? {
        Some(_) => Ok(String::new()),
        None => Err(format!(
            "tokd keeps no passwords: {server_url} is not mapped in [helpers.docker] of the \
             tokd config file"
        )),
    }
}

/// `erase`: a fresh token for a mapped registry (docker logout, or a refused token).
fn erase(socket: &SocketPath, args: &Args) -> Result<String, String> {
    let server_url = read_stdin()?;
    let server_url = server_url.trim();
    let Some(rule) = mapping(args, server_url)? else {
        return Ok(String::new());
    };
    let client = concat!("docker-credential-tokd/", env!("CARGO_PKG_VERSION"));
    force_refresh(socket, &rule.session, client).map_err(|e| {
        format!(
            "refreshing session {:?} for {server_url} failed: {}",
            rule.session,
            explain(&e, &rule.session)
        )
    })?;
    Ok(String::new())
}

/// `list`: `{"server URL": "username", …}` for every mapped registry.
fn list(args: &Args) -> Result<String, String> {
    let config = HelperConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    Ok(list_json(config.rules(Kind::Docker)))
}

/// The `[helpers.docker]` rule for a server URL; `None` when it is not mapped (or no registry
/// address at all).
fn mapping(args: &Args, server_url: &str) -> Result<Option<Rule>, String> {
    let Ok((registry, _)) = Target::registry(server_url) else {
        return Ok(None);
    };
    let config = HelperConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    Ok(config.find(Kind::Docker, &registry).cloned())
}

/// When a registry asked for with `http://` got nothing only because of that, says so on
/// stderr (stdout is docker's), naming the entry that answers it without the scheme.
fn note_plain_http(args: &Args, server_url: &str) {
    let Ok((registry, _)) = Target::registry(server_url) else {
        return;
    };
    let Ok(config) = HelperConfig::load(args.config.as_deref()) else {
        return;
    };
    if let Some(rule) = config.https_only(Kind::Docker, &registry) {
        errln!(
            "docker-credential-tokd: no token for {server_url} over plain http: {} does not \
             allow it; a [helpers.docker] key that starts with http:// does",
            rule.origin
        );
    }
}

fn read_stdin() -> Result<String, String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(format!("stdin is larger than {MAX_INPUT} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "stdin is not UTF-8".to_owned())
}
