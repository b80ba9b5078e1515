//! `tokd get`: the bearer alone on stdout.

use tokd_protocol::paths::SocketPath;

use crate::cli::GetArgs;
use crate::helpers::session::fetch_waiting;
use crate::{CmdResult, Outcome};

/// Runs `tokd get`.
pub fn run(socket: &SocketPath, args: &GetArgs) -> CmdResult {
    let token = fetch_waiting(socket, &args.name, args.min_valid, args.wait, args.id_token)?;
    let text = if args.id_token {
        match &token.id_token {
            Some(id) => format!("{}\n", id.expose()),
            None => {
                crate::errln!("tokd: session {:?} has no id_token", args.name);
                return Ok(Outcome::Exit(1));
            }
        }
    } else if args.header {
        format!("Authorization: Bearer {}\n", token.access_token.expose())
    } else if args.json {
        let now = crate::output::now_ms();
        let json = serde_json::json!({
            "access_token": token.access_token.expose(),
            "token_type": token.token_type,
            "expires_at": token.expires_at_ms,
            "expires_in": token.expires_at_ms.saturating_sub(now).max(0) / 1000,
            "meets_min_valid": token.meets_min_valid,
            "state": token.state.as_str(),
        });
        format!("{json}\n")
    } else {
        format!("{}\n", token.access_token.expose())
    };
    // A session that needs a login still answers its token while it is valid; say so,
    // whatever the output form (stderr never mixes with the token).
    if let Some(notice) = &token.notice {
        crate::errln!("tokd: warning: {notice}");
    }
    if !token.meets_min_valid && !args.json && token.notice.is_none() {
        crate::errln!(
            "tokd: warning: the token of {:?} has less than the requested --min-valid left",
            args.name
        );
    }
    crate::output::out(&text)?;
    Ok(Outcome::Exit(0))
}
