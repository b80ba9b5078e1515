//! `logout`: revoke at the provider (RFC 7009) when it offers revocation, then remove.
//! A revocation that fails keeps the session, so nothing is silently left valid.

use std::sync::Arc;

use tokd_protocol::verbs::logout::{LogoutReply, LogoutRequest};
use tokd_protocol::{ErrorCode, ErrorReply, Response};

use crate::config::ProviderKind;
use crate::providers::oauth2;
use crate::sessions::Slot;
use crate::state::DaemonState;

pub(super) async fn handle(req: LogoutRequest, state: &Arc<DaemonState>) -> Response {
    match logout(&req.name, state).await {
        Ok(revoked) => Response::LoggedOut(LogoutReply {
            name: req.name,
            revoked,
        }),
        Err(e) => Response::Error(e),
    }
}

async fn logout(name: &str, state: &Arc<DaemonState>) -> Result<bool, ErrorReply> {
    let session = state.sessions.find(name).ok_or_else(|| {
        ErrorReply::new(
            ErrorCode::NotFound,
            format!("no session named {name:?} (see `tokd list`)"),
        )
    })?;
    // The refresh token if there is one (revoking it ends the grant), else the access token.
    let (provider_name, token, hint) = match &*session.lock() {
        Slot::Live { record, .. } => match &record.refresh_token {
            Some(rt) => (record.provider.clone(), Some(rt.clone()), "refresh_token"),
            None => (
                record.provider.clone(),
                Some(record.access_token.clone()),
                "access_token",
            ),
        },
        Slot::Corrupt { .. } => (String::new(), None, ""),
    };
    let provider = state
        .providers()
        .get(&provider_name)
        .filter(|p| p.config.kind == ProviderKind::Oauth2);
    let revoked = match (provider, token) {
        (Some(provider), Some(token)) => {
            let client = state.providers().client.clone();
            oauth2::revoke(&provider, &client, &token, hint)
                .await
                .map_err(|e| {
                    ErrorReply::new(
                        ErrorCode::RefreshFailed,
                        format!(
                            "revocation failed, so the session is kept: {e} (`tokd rm {name}` \
                             removes it without revoking)"
                        ),
                    )
                })?
        }
        _ => false,
    };
    state
        .sessions
        .remove(name)
        .await
        .map_err(ErrorReply::from)?;
    crate::engine::on_removed(state, name);
    tracing::info!(target: "tokd::audit", event = "logged_out", session = %name, revoked, "session logged out");
    Ok(revoked)
}
