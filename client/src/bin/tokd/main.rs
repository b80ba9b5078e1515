//! `tokd`: the command line of the tokd token daemon.
//!
//! Exit status: 0 success; 1 the answer is negative (unhealthy session, no valid token) or
//! the socket is not safe to talk to; 2 usage or invalid input; 3 the daemon is not running;
//! 4 no such session; 5 version mismatch; 141 stdout was closed before everything was
//! written (`tokd list | head -1`).

/// `println!` that returns the write's error (a [`CmdError::Stdout`]) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

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
    pub mod stdout;
    pub mod target;
}
use helpers::stdout::errln;

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
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
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
                    errln!("tokd: cannot start: {e}");
                    return ExitCode::from(1);
                }
            };
            runtime.block_on(commands::run_async(&socket, other))
        }
    };
    exit(result)
}

/// What clap has to say instead of a command: usage errors on stderr (its own way), `--help`
/// and `--version` on stdout, which may be a closed pipe.
fn clap_exit(e: &clap::Error) -> ExitCode {
    use std::io::IsTerminal;
    if e.use_stderr() || std::io::stdout().is_terminal() {
        e.exit();
    }
    let text = e.render().to_string();
    exit(output::out(&text).map(|()| Outcome::Exit(0)))
}

fn exit(result: CmdResult) -> ExitCode {
    match result {
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Err(CmdError::Client(e)) => {
            errln!("tokd: {e}");
            ExitCode::from(e.exit_code())
        }
        // The reader went away (`tokd status | head -1`): end quietly, as Unix tools do.
        Err(CmdError::Stdout(e)) if helpers::stdout::is_broken_pipe(&e) => {
            ExitCode::from(helpers::stdout::BROKEN_PIPE_EXIT)
        }
        Err(CmdError::Stdout(e)) => {
            errln!("tokd: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

/// Why a command failed: the daemon could not be asked, or its answer could not be printed.
#[derive(Debug)]
pub enum CmdError {
    /// Talking to the daemon failed.
    Client(ClientError),
    /// Writing to stdout failed (a closed pipe, a full disk).
    Stdout(std::io::Error),
}

impl From<ClientError> for CmdError {
    fn from(e: ClientError) -> Self {
        CmdError::Client(e)
    }
}

/// The result of every command.
pub type CmdResult = Result<Outcome, CmdError>;
