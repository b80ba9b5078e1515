//! `tokd git-credential [--session NAME] [--username U] [--config FILE] <get|store|erase>`:
//! git's credential helper.
//!
//! - `get`: for a remote mapped in `[helpers.git]` (or any https remote with `--session`),
//!   answer `username`, `password` (the session's bearer) and `password_expiry_utc`. For a
//!   remote that is not mapped, answer nothing and exit 0, so git asks its next helper.
//!   Plain http is mapped only by a key that says `http://`: a bearer sent in the clear can
//!   be read on the way.
//! - `store`: nothing to keep; tokd owns the token.
//! - `erase`: git drops a credential the server refused. When it is the token tokd gave, the
//!   session is refreshed now, so the next `get` has a fresh one.

use std::io::Read;
use std::time::Duration;

use tokd_protocol::paths::SocketPath;

use crate::cli::GitCredentialArgs;
use crate::helpers::config::{ConfigError, HelperConfig, Kind, Rule};
use crate::helpers::git::{GitRequest, MAX_INPUT, answer, same_secret};
use crate::helpers::session::{HELPER_MIN_VALID, explain, fetch, force_refresh};
use crate::helpers::target::Target;
use crate::{CmdResult, Outcome};

/// The prefix of every message, so the user knows which helper spoke among git's output.
const ME: &str = "tokd git-credential";

/// Runs `tokd git-credential OPERATION`.
pub fn run(socket: &SocketPath, args: &GitCredentialArgs) -> CmdResult {
    let request = match read_request() {
        Ok(request) => request,
        Err(message) => {
            crate::errln!("{ME}: {message}");
            return Ok(Outcome::Exit(2));
        }
    };
    match args.operation.as_str() {
        "get" => get(socket, args, &request),
        "erase" => erase(socket, args, &request),
        // `store`: tokd owns the token and git's copy is not worth keeping. Anything else:
        // git asks helpers to ignore operations they do not know.
        _ => Ok(Outcome::Exit(0)),
    }
}

fn get(socket: &SocketPath, args: &GitCredentialArgs, request: &GitRequest) -> CmdResult {
    let (target, rule) = match mapping(args, request) {
        Ok(Some(found)) => found,
        Ok(None) => {
            note_plain_http(args, request);
            return Ok(Outcome::Exit(0));
        }
        Err(e) => {
            crate::errln!("{ME}: {e}");
            return Ok(Outcome::Exit(2));
        }
    };
    let token = match fetch(socket, &rule.session, HELPER_MIN_VALID, false) {
        Ok(token) => token,
        Err(e) => {
            crate::errln!(
                "{ME}: no token for {} ({}): {}",
                describe(&target),
                rule.origin,
                explain(&e, &rule.session)
            );
            return Ok(Outcome::Exit(e.exit_code()));
        }
    };
    if !token.meets_min_valid {
        crate::errln!(
            "{ME}: warning: the token of session {:?} expires in less than {}s",
            rule.session,
            HELPER_MIN_VALID.as_secs()
        );
    }
    let expiry = token.expires_at_ms.div_euclid(1000);
    let Some(text) = answer(&rule.username, token.access_token.expose(), expiry) else {
        crate::errln!(
            "{ME}: the token or username of session {:?} contains a line break and cannot be \
             passed to git",
            rule.session
        );
        return Ok(Outcome::Exit(1));
    };
    crate::output::out(&text)?;
    Ok(Outcome::Exit(0))
}

fn erase(socket: &SocketPath, args: &GitCredentialArgs, request: &GitRequest) -> CmdResult {
    let (target, rule) = match mapping(args, request) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(Outcome::Exit(0)),
        Err(e) => {
            crate::errln!("{ME}: {e}");
            return Ok(Outcome::Exit(2));
        }
    };
    // Only the token tokd gave: git also erases what other helpers or the user supplied.
    let Some(refused) = &request.password else {
        return Ok(Outcome::Exit(0));
    };
    match fetch(socket, &rule.session, Duration::ZERO, false) {
        Ok(current) if same_secret(current.access_token.expose(), refused.expose()) => {}
        // The session has moved on already (or never gave this password): nothing to do.
        Ok(_) => return Ok(Outcome::Exit(0)),
        Err(e) => {
            crate::errln!(
                "{ME}: {} refused the token: {}",
                describe(&target),
                explain(&e, &rule.session)
            );
            return Ok(Outcome::Exit(e.exit_code()));
        }
    }
    let client = concat!("tokd-git-credential/", env!("CARGO_PKG_VERSION"));
    match force_refresh(socket, &rule.session, client) {
        Ok(()) => Ok(Outcome::Exit(0)),
        Err(e) => {
            crate::errln!(
                "{ME}: {} refused the token of session {:?}, and refreshing it failed: {}",
                describe(&target),
                rule.session,
                explain(&e, &rule.session)
            );
            Ok(Outcome::Exit(e.exit_code()))
        }
    }
}

/// The remote and the rule that answers for it: `--session` for every remote, else the
/// `[helpers.git]` entry with the longest matching prefix; `None` when nothing does.
fn mapping(
    args: &GitCredentialArgs,
    request: &GitRequest,
) -> Result<Option<(Target, Rule)>, ConfigError> {
    let Some(target) = request.target() else {
        return Ok(None);
    };
    let rule = match &args.session {
        // `--session` is for every https remote; plain http needs an `http://` key.
        Some(_) if target.scheme.as_deref() != Some("https") => None,
        Some(session) => Some(Rule {
            kind: Kind::Git,
            origin: "--session".to_owned(),
            pattern: target.clone(),
            session: session.clone(),
            username: Kind::Git.default_username(&target).to_owned(),
        }),
        None => HelperConfig::load(args.config.as_deref())?
            .find(Kind::Git, &target)
            .cloned(),
    };
    Ok(rule.map(|mut rule| {
        if let Some(username) = &args.username {
            username.clone_into(&mut rule.username);
        }
        (target, rule)
    }))
}

/// When a plain-http remote got nothing only because it is plain http, says so on stderr
/// (git shows it), naming the entry that would have answered over https.
fn note_plain_http(args: &GitCredentialArgs, request: &GitRequest) {
    let Some(target) = request.target().filter(|t| t.as_https().is_some()) else {
        return;
    };
    let https_rule = match &args.session {
        Some(_) => Some("--session".to_owned()),
        None => HelperConfig::load(args.config.as_deref())
            .ok()
            .and_then(|c| c.https_only(Kind::Git, &target).map(|r| r.origin.clone())),
    };
    if let Some(origin) = https_rule {
        crate::errln!(
            "{ME}: no token for {} over plain http: {origin} is for https only; a \
             [helpers.git] key that starts with http:// allows plain http",
            describe(&target)
        );
    }
}

/// `https://host/path` for messages.
fn describe(target: &Target) -> String {
    let scheme = target.scheme.as_deref().unwrap_or("https");
    match target.path.as_str() {
        "" => format!("{scheme}://{}", target.host),
        path => format!("{scheme}://{}/{path}", target.host),
    }
}

/// git's input, all of it (bounded).
fn read_request() -> Result<GitRequest, String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read git's input: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(format!("git's input is larger than {MAX_INPUT} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|_| "git's input is not UTF-8".to_owned())?;
    GitRequest::parse(&text).map_err(|e| e.to_string())
}
