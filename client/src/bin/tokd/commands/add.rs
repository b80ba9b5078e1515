//! `tokd add NAME --provider P < token-response.json`.

use std::io::{IsTerminal, Read};

use tokd::Client;
use tokd_protocol::Secret;
use tokd_protocol::verbs::add::AddRequest;

use crate::cli::AddArgs;
use crate::output::{now_ms, relative};
use crate::{CmdResult, Outcome};

/// The largest token response read from stdin.
const MAX_INPUT: u64 = 192 * 1024;

/// Runs `tokd add`.
pub async fn run(mut client: Client, args: AddArgs) -> CmdResult {
    let token_response = match read_stdin() {
        Ok(input) => input,
        Err(message) => {
            crate::errln!("tokd: {message}");
            return Ok(Outcome::Exit(2));
        }
    };
    let reply = client
        .add(AddRequest {
            name: args.name.clone(),
            provider: args.provider.clone(),
            attrs: args.attrs,
            replace: args.replace,
            token_response,
        })
        .await?;
    let s = &reply.session;
    outln!(
        "{} session {} (provider {}): token expires {}{}",
        if reply.replaced { "replaced" } else { "added" },
        s.name,
        s.provider,
        relative(s.expires_at_ms, now_ms()),
        if s.has_refresh_token || s.client_credentials {
            ""
        } else {
            ", no refresh token"
        }
    )?;
    crate::output::warn_if_no_refresh_token(s);
    Ok(Outcome::Exit(0))
}

/// The token response on stdin; `None` when stdin is a terminal or empty (client
/// credentials need no input).
fn read_stdin() -> Result<Option<Secret>, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut text = String::new();
    stdin
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the token response from stdin: {e}"))?;
    let text = Secret::new(text);
    if text.len() as u64 > MAX_INPUT {
        return Err(format!(
            "the token response on stdin is larger than {MAX_INPUT} bytes"
        ));
    }
    if text.expose().trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(text))
}
