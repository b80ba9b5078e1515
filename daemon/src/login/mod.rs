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
use tokd_protocol::{ErrorCode, ErrorReply, Response};
use tokio::sync::mpsc;

use crate::config::ProviderKind;
use crate::config_cell::Snapshot;
use crate::engine::Engine;
use crate::providers::{Provider, ProviderError};
use crate::reply::ResponseStream;
use crate::sessions::import::TokenSet;
use crate::sessions::{NewSession, Session, audit, status_of};

/// The longest a login waits for the user.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Where a flow sends its prompts; closed when the client went away.
pub type Prompts = mpsc::Sender<Response>;

/// What a login works with: the engine (to store the session) and one settings snapshot,
/// taken when the login starts, for all of it.
#[derive(Debug, Clone)]
pub struct Login {
    /// The engine; a login stores its session through [`Engine::add`].
    pub engine: Engine,
    /// The settings the login runs with.
    pub snapshot: Arc<Snapshot>,
}

impl Login {
    fn now(&self) -> tokd_protocol::EpochMs {
        self.engine.sessions().now()
    }

    fn existing(&self, name: &str) -> Option<Arc<Session>> {
        self.engine.sessions().find(name)
    }
}

/// Starts a login and returns its answer stream.
pub fn start(ctx: Login, req: LoginRequest) -> ResponseStream {
    let (tx, rx) = mpsc::channel(4);
    let state = ctx;
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
    state: &Login,
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
fn provider_for(state: &Login, req: &LoginRequest) -> Result<Arc<Provider>, ErrorReply> {
    let existing = || {
        state
            .existing(&req.name)
            .and_then(|s| s.with_live(|live| live.record.provider.clone()))
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
    state
        .snapshot
        .providers
        .get(&name)
        .ok_or_else(|| state.snapshot.config.unknown_provider(&name))
}

/// Stores the logged-in session: a new generation of the name, keeping the attributes of
/// the session it replaces unless the login gave some.
async fn store(
    state: &Login,
    req: &LoginRequest,
    provider: &str,
    tokens: TokenSet,
    origin: String,
) -> Result<LoginReply, ErrorReply> {
    let attrs = if req.attrs.is_empty() {
        state
            .existing(&req.name)
            .and_then(|s| s.with_live(|live| live.record.attrs.clone()))
            .unwrap_or_default()
    } else {
        req.attrs.clone()
    };
    let (session, _) = state
        .engine
        .add(NewSession {
            name: req.name.clone(),
            provider: provider.to_owned(),
            attrs,
            replace: true,
            tokens,
            origin: Some(origin),
        })
        .await
        .map_err(ErrorReply::from)?;
    audit::logged_in(state.engine.sessions().events(), &req.name, provider);
    Ok(LoginReply {
        session: status_of(&session, &state.snapshot.config, state.now()),
    })
}

/// A provider failure during a login, as the client sees it.
fn provider_failed(what: &str, e: ProviderError) -> ErrorReply {
    ErrorReply::new(e.code(), format!("{what}: {e}"))
}

/// Sends a prompt; `false` when the client is gone.
async fn prompt(prompts: &Prompts, response: Response) -> bool {
    prompts.send(response).await.is_ok()
}

/// What both flows need first: the HTTP client, the provider's endpoints (discovered if
/// need be) and its token endpoint.
async fn resolve(
    state: &Login,
    provider: &Provider,
) -> Result<(reqwest::Client, crate::providers::Endpoints, url::Url), ErrorReply> {
    let client = state.snapshot.providers.client.clone();
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
