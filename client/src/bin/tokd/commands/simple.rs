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
    // No silent wait: inside the minimum interval the daemon holds the refresh until it is
    // allowed; say when that is.
    if let Ok(status) = client.status(Some(name)).await
        && let Some(allowed_at) = status
            .sessions
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.refresh_allowed_at_ms)
        && allowed_at > now_ms()
    {
        crate::errln!(
            "tokd: the minimum interval allows the next refresh of {name:?} {}; waiting for it",
            relative(Some(allowed_at), now_ms())
        );
    }
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
    match (reply.revoked, reply.newer_kept) {
        (true, false) => outln!("revoked and removed session {name}")?,
        (false, false) => outln!("removed session {name} (the provider offers no revocation)")?,
        (revoked, true) => outln!(
            "{} the grant that was logged out; session {name} was replaced meanwhile (a newer \
             login or import) and is kept",
            if revoked { "revoked" } else { "removed" }
        )?,
    }
    Ok(Outcome::Exit(0))
}
