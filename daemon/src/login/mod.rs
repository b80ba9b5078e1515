//! Logging in, performed by the daemon so that client secrets and tokens never pass through
//! the CLI's arguments or environment. The answer is a stream: prompts for the user, then
//! the stored session (or an error). The flow runs in its own task and stops as soon as the
//! client hangs up (Ctrl-C).

mod browser;
mod device;

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream;
use tokd_protocol::verbs::login::{LoginMethod, LoginReply, LoginRequest};
use tokd_protocol::verbs::watch::WatchEventKind;
use tokd_protocol::{ErrorCode, ErrorReply, Response};
use tokio::sync::mpsc;

use crate::config::ProviderKind;
use crate::engine;
use crate::handlers::ResponseStream;
use crate::providers::{Provider, ProviderError};
use crate::sessions::import::TokenSet;
use crate::sessions::{NewSession, Slot};
use crate::state::DaemonState;

/// The longest a login waits for the user.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Where a flow sends its prompts; closed when the client went away.
pub type Prompts = mpsc::Sender<Response>;

/// Starts a login and returns its answer stream.
pub fn start(state: Arc<DaemonState>, req: LoginRequest) -> ResponseStream {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        // Only the waits for the user race the client (see `unless_cancelled`): once a
        // token request is sent, its answer is awaited and stored even if the client has
        // gone, since the provider has issued a grant by then.
        let outcome = match obtain(&state, &req, &tx).await {
            Ok((provider, tokens, origin)) => {
                store(&state, &req, &provider.name, tokens, origin).await
            }
            Err(e) => Err(e),
        };
        let last = match outcome {
            Ok(reply) => Response::LoggedIn2(reply),
            Err(e) if tx.is_closed() => {
                tracing::info!(session = %req.name, reason = %e.message, "login cancelled by the client");
                return;
            }
            Err(e) => {
                tracing::warn!(target: "tokd::audit", event = "login_failed", session = %req.name, provider = req.provider.as_deref().unwrap_or_default(), error = %e.message, "login failed");
                Response::Error(e)
            }
        };
        let _ = tx.send(last).await;
    });
    Box::pin(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    }))
}

/// Awaits `interactive` (a wait for the user) unless the client hangs up first. Only waits
/// for the user go through here, never a token request: a request that was sent is seen
/// through.
pub(super) async fn unless_cancelled<T>(
    prompts: &Prompts,
    interactive: impl std::future::Future<Output = Result<T, ErrorReply>>,
) -> Result<T, ErrorReply> {
    tokio::select! {
        r = interactive => r,
        () = prompts.closed() => Err(ErrorReply::new(ErrorCode::Invalid, "the client went away")),
    }
}

async fn obtain(
    state: &Arc<DaemonState>,
    req: &LoginRequest,
    prompts: &Prompts,
) -> Result<(Arc<Provider>, TokenSet, String), ErrorReply> {
    tokd_protocol::name::validate_session_name(&req.name)
        .map_err(|m| ErrorReply::new(ErrorCode::Invalid, m))?;
    let provider = provider_for(state, req)?;
    if provider.config.kind == ProviderKind::Json {
        return Err(ErrorReply::new(
            ErrorCode::Invalid,
            format!(
                "provider {:?} is a json refresh endpoint: log in through its backend and import \
                 the answer with `tokd add {} --provider {}`",
                provider.name, req.name, provider.name
            ),
        ));
    }
    let (tokens, origin) = match &req.method {
        LoginMethod::Device => device::run(state, &provider, prompts).await,
        LoginMethod::Browser { open_browser } => {
            browser::run(state, &provider, *open_browser, prompts).await
        }
    }?;
    Ok((provider, tokens, origin))
}

/// The provider a login uses: the one named, else the existing session's.
fn provider_for(state: &DaemonState, req: &LoginRequest) -> Result<Arc<Provider>, ErrorReply> {
    let existing = || {
        state
            .sessions
            .find(&req.name)
            .and_then(|s| match &*s.lock() {
                Slot::Live { record, .. } => Some(record.provider.clone()),
                Slot::Corrupt { .. } => None,
            })
    };
    let Some(name) = req.provider.clone().or_else(existing) else {
        return Err(ErrorReply::new(
            ErrorCode::Invalid,
            format!(
                "there is no session named {:?} to log in again: name a provider with \
                 `tokd login {} --provider PROVIDER`",
                req.name, req.name
            ),
        ));
    };
    state.providers().get(&name).ok_or_else(|| {
        ErrorReply::new(
            ErrorCode::Invalid,
            format!("no provider named {name:?} in the config"),
        )
    })
}

/// Stores the logged-in session: a new generation of the name, keeping the attributes of
/// the session it replaces unless the login gave some.
async fn store(
    state: &Arc<DaemonState>,
    req: &LoginRequest,
    provider: &str,
    tokens: TokenSet,
    origin: String,
) -> Result<LoginReply, ErrorReply> {
    let attrs = if req.attrs.is_empty() {
        state
            .sessions
            .find(&req.name)
            .and_then(|s| match &*s.lock() {
                Slot::Live { record, .. } => Some(record.attrs.clone()),
                Slot::Corrupt { .. } => None,
            })
            .unwrap_or_default()
    } else {
        req.attrs.clone()
    };
    let config = state.config();
    let (session, reply) = state
        .sessions
        .add(
            NewSession {
                name: req.name.clone(),
                provider: provider.to_owned(),
                attrs,
                replace: true,
                tokens,
                origin: Some(origin),
            },
            &config,
        )
        .await
        .map_err(ErrorReply::from)?;
    engine::on_added(state, &session);
    tracing::info!(target: "tokd::audit", event = "logged_in", session = %req.name, provider = %provider, "login completed");
    state
        .sessions
        .events()
        .emit(&req.name, WatchEventKind::LoggedIn);
    Ok(LoginReply {
        session: reply.session,
    })
}

/// A provider failure during a login, as the client sees it.
fn provider_failed(what: &str, e: ProviderError) -> ErrorReply {
    let code = match e {
        ProviderError::Retryable { .. } => ErrorCode::RefreshFailed,
        ProviderError::NeedsConfig(_) => ErrorCode::NeedsConfig,
        ProviderError::NeedsLogin(_) => ErrorCode::NeedsLogin,
    };
    ErrorReply::new(code, format!("{what}: {e}"))
}

/// Sends a prompt; `false` when the client is gone.
async fn prompt(prompts: &Prompts, response: Response) -> bool {
    prompts.send(response).await.is_ok()
}

/// What both flows need first: the HTTP client, the provider's endpoints (discovered if
/// need be) and its token endpoint.
async fn resolve(
    state: &DaemonState,
    provider: &Provider,
) -> Result<(reqwest::Client, crate::providers::Endpoints, url::Url), ErrorReply> {
    let client = state.providers().client.clone();
    let endpoints = provider
        .endpoints(&client)
        .await
        .map_err(|e| provider_failed("discovery", e))?;
    let token_url = provider
        .target(&client)
        .await
        .map_err(|e| provider_failed("token endpoint", e))?;
    Ok((client, endpoints, token_url))
}

fn required_endpoint(
    provider: &Provider,
    url: Option<url::Url>,
    key: &str,
) -> Result<url::Url, ErrorReply> {
    url.ok_or_else(|| {
        ErrorReply::new(
            ErrorCode::NeedsConfig,
            format!(
                "provider {:?} has no {key}: set it in the config, or an issuer whose discovery \
                 document names one",
                provider.name
            ),
        )
    })
}
