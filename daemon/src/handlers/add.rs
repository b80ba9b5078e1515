//! `add`: import a session from a token response, or — for a client-credentials provider
//! with no input — fetch its first token. Persisted and flushed before the answer.

use tokd_protocol::verbs::add::{AddReply, AddRequest};
use tokd_protocol::{ErrorCode, ErrorReply, Response};

use crate::config::Grant;
use crate::providers::{TokenGrant, TokenRequest};
use crate::sessions::{NewSession, status_of};
use crate::state::DaemonState;

pub(super) async fn handle(req: AddRequest, state: &DaemonState) -> Response {
    match add(req, state).await {
        Ok(reply) => Response::Added2(reply),
        Err(e) => Response::Error(e),
    }
}

async fn add(req: AddRequest, state: &DaemonState) -> Result<AddReply, ErrorReply> {
    let invalid = |m: String| ErrorReply::new(ErrorCode::Invalid, m);
    tokd_protocol::name::validate_session_name(&req.name).map_err(invalid)?;
    let snapshot = state.settings();
    let provider = snapshot
        .providers
        .get(&req.provider)
        .ok_or_else(|| snapshot.config.unknown_provider(&req.provider))?;
    let now = state.clock().now_ms();
    let (tokens, origin) = match &req.token_response {
        Some(json) => {
            let tokens = provider.parse_import(json.expose(), now).map_err(invalid)?;
            (tokens, provider.static_origin())
        }
        None if provider.grant() == Grant::ClientCredentials => {
            let headers = snapshot.config.session_headers(&req.name);
            let obtained = provider
                .request_token(
                    &snapshot.providers.client,
                    TokenRequest {
                        grant: TokenGrant::ClientCredentials,
                        attrs: &req.attrs,
                        session_headers: &headers,
                        bound_origin: None,
                        sent_at: now,
                    },
                )
                .await
                .map_err(|e| {
                    ErrorReply::new(e.code(), format!("client credentials grant failed: {e}"))
                })?;
            (obtained.tokens, Some(obtained.origin))
        }
        None => {
            return Err(invalid(format!(
                "no token response given: pipe a token response (JSON) into `tokd add`, or log \
                 in with `tokd login {} --provider {}`",
                req.name, req.provider
            )));
        }
    };
    let (session, replaced) = state
        .engine()
        .add(NewSession {
            name: req.name,
            provider: req.provider,
            attrs: req.attrs,
            replace: req.replace,
            tokens,
            origin,
        })
        .await
        .map_err(ErrorReply::from)?;
    Ok(AddReply {
        session: status_of(&session, &snapshot.config, state.clock().now_ms()),
        replaced,
    })
}
