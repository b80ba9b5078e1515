//! `add`: import a session from a token response, or — for a client-credentials provider
//! with no input — fetch its first token. Persisted and flushed before the answer.

use std::sync::Arc;

use tokd_protocol::verbs::add::AddRequest;
use tokd_protocol::{ErrorCode, ErrorReply, Response};

use crate::config::Grant;
use crate::engine;
use crate::providers::{ProviderError, TokenGrant, TokenRequest};
use crate::sessions::NewSession;
use crate::state::DaemonState;

pub(super) async fn handle(req: AddRequest, state: &Arc<DaemonState>) -> Response {
    match add(req, state).await {
        Ok(reply) => Response::Added2(reply),
        Err(e) => Response::Error(e),
    }
}

async fn add(
    req: AddRequest,
    state: &Arc<DaemonState>,
) -> Result<tokd_protocol::verbs::add::AddReply, ErrorReply> {
    let invalid = |m: String| ErrorReply::new(ErrorCode::Invalid, m);
    tokd_protocol::name::validate_session_name(&req.name).map_err(invalid)?;
    let config = state.config();
    let providers = state.providers();
    let provider = providers.get(&req.provider).ok_or_else(|| {
        let known: Vec<&str> = config.providers.keys().map(String::as_str).collect();
        invalid(if known.is_empty() {
            format!(
                "no provider named {:?}: the config has no providers (add a [providers.{}] table to {})",
                req.provider,
                req.provider,
                config
                    .config_file
                    .as_ref()
                    .map_or_else(|| "the config file".to_owned(), |p| p.display().to_string())
            )
        } else {
            format!(
                "no provider named {:?} (configured: {})",
                req.provider,
                known.join(", ")
            )
        })
    })?;
    let now = state.clock.now_ms();
    let (tokens, origin) = match &req.token_response {
        Some(json) => {
            let tokens = provider.parse_import(json.expose(), now).map_err(invalid)?;
            (tokens, provider.static_origin())
        }
        None if provider.grant() == Grant::ClientCredentials => {
            let headers = config
                .sessions
                .get(&req.name)
                .map(|s| s.headers.clone())
                .unwrap_or_default();
            let obtained = provider
                .request_token(
                    &providers.client,
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
                    let code = match e {
                        ProviderError::Retryable { .. } => ErrorCode::RefreshFailed,
                        ProviderError::NeedsLogin(_) | ProviderError::NeedsConfig(_) => {
                            ErrorCode::NeedsConfig
                        }
                    };
                    ErrorReply::new(code, format!("client credentials grant failed: {e}"))
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
    let (session, reply) = state
        .sessions
        .add(
            NewSession {
                name: req.name,
                provider: req.provider,
                attrs: req.attrs,
                replace: req.replace,
                tokens,
                origin,
            },
            &config,
        )
        .await
        .map_err(ErrorReply::from)?;
    engine::on_added(state, &session);
    Ok(reply)
}
