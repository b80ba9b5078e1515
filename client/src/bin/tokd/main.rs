//! `tokd`: the command line of the tokd token daemon.
//!
//! Exit status: 0 success; 1 the answer is negative (unhealthy session, no valid token);
//! 2 usage or invalid input; 3 the daemon is not running; 4 no such session; 5 version
//! mismatch.

mod cli;
mod commands;
mod fast;
mod output;

/// The credential-helper code shared with `docker-credential-tokd` (`client/src/helpers/`).
#[path = "../../helpers"]
mod helpers {
    pub mod config;
    pub mod git;
    pub mod session;
    pub mod target;
}

use std::process::ExitCode;

use clap::Parser;
use tokd::ClientError;
use tokd_protocol::paths::resolve_socket_path;

use cli::{Cli, Command};

/// What a command reports back to `main`.
pub enum Outcome {
    /// Done; exit with this status.
    Exit(u8),
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some((socket, get)) = fast::parse_get(&args) {
        let socket = resolve_socket_path(socket.as_deref());
        return exit(commands::get::run(&socket, &get));
    }
    let cli = Cli::parse_from(args);
    let socket = resolve_socket_path(cli.socket.as_deref());
    let result = match cli.command {
        // The hot path: no async runtime, one write, one read.
        Command::Get(args) => commands::get::run(&socket, &args),
        Command::Exec(args) => commands::exec::run(&socket, args),
        Command::GitCredential(args) => commands::git_credential::run(&socket, &args),
        Command::Kubectl(args) => commands::kubectl::run(&socket, &args),
        Command::Completions(args) => commands::docs::completions(args.shell),
        Command::Man => commands::docs::man(),
        other => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("tokd: cannot start: {e}");
                    return ExitCode::from(1);
                }
            };
            runtime.block_on(commands::run_async(&socket, other))
        }
    };
    exit(result)
}

fn exit(result: CmdResult) -> ExitCode {
    match result {
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tokd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The error type of every command.
pub type CmdResult = Result<Outcome, ClientError>;
