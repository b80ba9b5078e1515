//! `tokd list`: session names, one per line.

use tokd::Client;

use crate::{CmdResult, Outcome};

/// Runs `tokd list`.
pub async fn run(mut client: Client) -> CmdResult {
    let names: String = client
        .list()
        .await?
        .iter()
        .map(|entry| format!("{}\n", entry.name))
        .collect();
    crate::output::out(&names)?;
    Ok(Outcome::Exit(0))
}
