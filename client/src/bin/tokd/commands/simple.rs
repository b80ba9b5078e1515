//! `tokd rm`, `tokd refresh`, `tokd logout`: one request, one line of output.

use tokd::Client;

use crate::output::{now_ms, relative};
use crate::{CmdResult, Outcome};

/// Runs `tokd rm NAME`.
pub async fn rm(mut client: Client, name: &str) -> CmdResult {
    client.remove(name).await?;
    outln!("removed session {name}")?;
    Ok(Outcome::Exit(0))
}

/// Runs `tokd refresh NAME`.
pub async fn refresh(mut client: Client, name: &str) -> CmdResult {
    let reply = client.refresh(name).await?;
    outln!(
        "refreshed session {name}: token expires {}",
        relative(reply.session.expires_at_ms, now_ms())
    )?;
    Ok(Outcome::Exit(0))
}

/// Runs `tokd logout NAME`.
pub async fn logout(mut client: Client, name: &str) -> CmdResult {
    let reply = client.logout(name).await?;
    if reply.revoked {
        outln!("revoked and removed session {name}")?;
    } else {
        outln!("removed session {name} (the provider offers no revocation)")?;
    }
    Ok(Outcome::Exit(0))
}
