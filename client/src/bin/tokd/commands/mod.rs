//! One module per subcommand.

pub mod add;
pub mod docs;
pub mod exec;
pub mod get;
pub mod git_credential;
pub mod kubectl;
pub mod list;
pub mod login;
pub mod simple;
pub mod status;
pub mod watch;

use tokd::Client;
use tokd_protocol::paths::SocketPath;

use crate::cli::Command;
use crate::{CmdResult, Outcome};

/// Runs the subcommands that use the async client.
pub async fn run_async(socket: &SocketPath, command: Command) -> CmdResult {
    let client = connect(socket).await?;
    match command {
        Command::Status(args) => status::run(client, &args).await,
        Command::List => list::run(client).await,
        Command::Add(args) => add::run(client, args).await,
        Command::Rm(args) => simple::rm(client, &args.name).await,
        Command::Refresh(args) => simple::refresh(client, &args.name).await,
        Command::Logout(args) => simple::logout(client, &args.name).await,
        Command::Login(args) => login::run(client, args).await,
        Command::Watch(args) => watch::run(client, socket, &args).await,
        Command::Get(_)
        | Command::Exec(_)
        | Command::GitCredential(_)
        | Command::Kubectl(_)
        | Command::Completions(_)
        | Command::Man => Ok(Outcome::Exit(2)),
    }
}

pub(crate) async fn connect(socket: &SocketPath) -> Result<Client, tokd::ClientError> {
    Client::connect_named(socket, concat!("tokd/", env!("CARGO_PKG_VERSION"))).await
}
