//! `tokd list`: session names, one per line.

use tokd::Client;

use crate::{CmdResult, Outcome};

/// Runs `tokd list`.
pub async fn run(mut client: Client) -> CmdResult {
    for entry in client.list().await? {
        println!("{}", entry.name);
    }
    Ok(Outcome::Exit(0))
}
