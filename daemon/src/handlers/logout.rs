//! `logout`: revoke at the provider (RFC 7009) when it offers revocation, then remove.
//! A revocation that fails keeps the session, so nothing is silently left valid.
//!
//! While the revocation is out, no refresh of the session starts (a refresh would spend the
//! very refresh token being revoked), and afterwards only the generation that was revoked is
//! removed: a session that replaced it meanwhile (`login`, `add --replace`) holds another
//! grant and survives.

use tokd_protocol::verbs::logout::{LogoutReply, LogoutRequest};
use tokd_protocol::{ErrorReply, Response, Secret};

use crate::config::ProviderKind;
use crate::providers::oauth2;
use crate::sessions::{Contents, Removal, Session, SessionError, audit};
use crate::state::DaemonState;

pub(super) async fn handle(req: LogoutRequest, state: &DaemonState) -> Response {
    match logout(&req.name, state).await {
        Ok(reply) => Response::LoggedOut2(reply),
        Err(e) => Response::Error(e),
    }
}

/// The credential to revoke: the refresh token if there is one (revoking it ends the grant),
/// else the access token, with the origin the session's tokens are bound to.
struct Revocable {
    provider: String,
    token: Option<Secret>,
    hint: &'static str,
    bound_origin: Option<String>,
}

fn revocable(session: &Session) -> Revocable {
    match &*session.lock() {
        Contents::Live(live) => Revocable {
            provider: live.record.provider.clone(),
            token: Some(
                live.record
                    .refresh_token
                    .clone()
                    .unwrap_or_else(|| live.record.access_token.clone()),
            ),
            hint: if live.record.refresh_token.is_some() {
                "refresh_token"
            } else {
                "access_token"
            },
            bound_origin: live.record.refresh_origin.clone(),
        },
        Contents::Corrupt { .. } => Revocable {
            provider: String::new(),
            token: None,
            hint: "",
            bound_origin: None,
        },
    }
}

async fn logout(name: &str, state: &DaemonState) -> Result<LogoutReply, ErrorReply> {
    let session = state
        .sessions()
        .find(name)
        .ok_or_else(|| ErrorReply::from(SessionError::NotFound(name.to_owned())))?;
    // Waits for a refresh in flight (its rotated token is the one to revoke) and keeps new
    // ones from starting until the revocation is answered.
    let hold = state.engine().hold_refreshes(&session).await;
    let what = revocable(&session);
    let snapshot = state.settings();
    let provider = snapshot
        .providers
        .get(&what.provider)
        .filter(|p| p.config.kind == ProviderKind::Oauth2);
    let revoked = match (provider, &what.token) {
        (Some(provider), Some(token)) => oauth2::revoke(
            &provider,
            &snapshot.providers.client,
            token,
            what.hint,
            what.bound_origin.as_deref(),
        )
        .await
        .map_err(|e| {
            ErrorReply::new(
                e.code(),
                format!(
                    "revocation failed, so the session is kept: {e} (`tokd rm {name}` \
                         removes it without revoking)"
                ),
            )
        })?,
        _ => false,
    };
    let removal = state.engine().remove(name, Some(session.generation)).await;
    drop(hold);
    let newer_kept = match removal {
        Ok(Removal::Removed) => false,
        Ok(Removal::NewerKept) => true,
        // Removed meanwhile (`tokd rm`): what was revoked is gone either way.
        Err(SessionError::NotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    audit::logged_out(name, revoked, newer_kept);
    Ok(LogoutReply {
        name: name.to_owned(),
        revoked,
        newer_kept,
    })
}
