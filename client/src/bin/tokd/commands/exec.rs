//! `tokd exec NAME -- CMD…`: run a command with the bearer in its environment.

use std::os::unix::process::CommandExt;

use tokd_protocol::paths::SocketPath;

use crate::cli::ExecArgs;
use crate::helpers::session::fetch;
use crate::{CmdResult, Outcome};

/// Replaces this process with the command, the token in `--env` (default `TOKD_TOKEN`).
pub fn run(socket: &SocketPath, args: ExecArgs) -> CmdResult {
    let token = fetch(socket, &args.name, args.min_valid, false)?;
    let Some((program, rest)) = args.command.split_first() else {
        crate::errln!("tokd: exec needs a command after --");
        return Ok(Outcome::Exit(2));
    };
    let err = std::process::Command::new(program)
        .args(rest)
        .env(&args.env, token.access_token.expose())
        .exec();
    crate::errln!("tokd: cannot run {}: {err}", program.to_string_lossy());
    Ok(Outcome::Exit(
        if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    ))
}
