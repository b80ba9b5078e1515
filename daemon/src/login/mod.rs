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
use tokd_protocol::{ErrorCode, ErrorReply, Request, Response};
use tokio::sync::mpsc;

use crate::config::ProviderKind;
use crate::config_cell::Snapshot;
use crate::engine::Engine;
use crate::providers::{Provider, ProviderError};
use crate::reply::ResponseStream;
use crate::sessions::import::TokenSet;
use crate::sessions::{NewSession, Session, audit, status_of};

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

/// Starts a login and returns its answer stream, and where the client's frames during the
/// login go (a pasted redirect address, `Request::LoginRedirect`).
pub fn start(ctx: Login, req: LoginRequest) -> (ResponseStream, mpsc::Sender<Request>) {
    let (tx, rx) = mpsc::channel(4);
    let (input, mut frames) = mpsc::channel::<Request>(4);
    let (paste, pasted) = mpsc::channel(4);
    // The client's frames during a login: only pasted redirect addresses mean anything.
    tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if let Request::LoginRedirect(redirect) = frame
                && paste.send(redirect.url).await.is_err()
            {
                return;
            }
        }
    });
    let state = ctx;
    tokio::spawn(async move {
        // Only the waits for the user race the client (see `unless_cancelled`): once a
        // token request is sent, its answer is awaited and stored even if the client has
        // gone, since the provider has issued a grant by then.
        let outcome = match obtain(&state, &req, &tx, pasted).await {
            Ok((provider, tokens, origin)) => {
                match refuse_losing_a_refresh_token(&state, &req, &tokens) {
                    Ok(()) => store(&state, &req, &provider.name, tokens, origin).await,
                    Err(e) => Err(e),
                }
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
    let stream = Box::pin(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    }));
    (stream, input)
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
    pasted: mpsc::Receiver<tokd_protocol::Secret>,
) -> Result<(Arc<Provider>, TokenSet, String), ErrorReply> {
    tokd_protocol::name::validate_session_name(&req.name)
        .map_err(|m| ErrorReply::new(ErrorCode::Invalid, m))?;
    let provider = provider_for(state, req)?;
    refuse_losing_a_provider(state, req, &provider.name)?;
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
    let timeout = req
        .timeout_ms
        .map_or(state.snapshot.config.login_timeout, |ms| {
            Duration::from_millis(ms)
                .clamp(Duration::from_secs(1), crate::config::MAX_LOGIN_TIMEOUT)
        });
    let flow = async {
        match &req.method {
            LoginMethod::Device => device::run(state, &provider, prompts, timeout).await,
            LoginMethod::Browser { open_browser } => {
                browser::run(
                    state,
                    &provider,
                    *open_browser,
                    prompts,
                    timeout,
                    Some(pasted),
                )
                .await
            }
        }
    };
    let (tokens, origin) = flow.await?;
    Ok((provider, tokens, origin))
}

/// A login over a session of another provider replaces that session's grant: refused
/// unless the request says `replace`.
fn refuse_losing_a_provider(
    state: &Login,
    req: &LoginRequest,
    provider: &str,
) -> Result<(), ErrorReply> {
    let current = state
        .existing(&req.name)
        .and_then(|s| s.with_live(|live| live.record.provider.clone()));
    match current {
        Some(current) if current != provider && !req.replace => Err(ErrorReply::new(
            ErrorCode::AlreadyExists,
            format!(
                "session {:?} belongs to provider {current:?}: logging in with {provider:?} \
                 would replace it and its grant (use --replace to do so, or log in again with \
                 `tokd login {}`)",
                req.name, req.name
            ),
        )),
        _ => Ok(()),
    }
}

/// A login that brought no refresh token over a healthy session that has one would lose the
/// refresh token: refused unless the request says `replace`.
fn refuse_losing_a_refresh_token(
    state: &Login,
    req: &LoginRequest,
    tokens: &TokenSet,
) -> Result<(), ErrorReply> {
    if req.replace || tokens.refresh_token.is_some() {
        return Ok(());
    }
    let now = state.now();
    let config = &state.snapshot.config;
    let healthy_with_rt = state
        .existing(&req.name)
        .and_then(|s| {
            s.with_live(|live| {
                let (st, _) = live.standing(config.grant_of(&live.record.provider), now);
                live.record.refresh_token.is_some()
                    && st.is_healthy()
                    && live.record.expires_at_ms > now
            })
        })
        .unwrap_or(false);
    if !healthy_with_rt {
        return Ok(());
    }
    Err(ErrorReply::new(
        ErrorCode::AlreadyExists,
        format!(
            "the provider issued no refresh token, and session {:?} is healthy and has one: \
             storing this login would lose it, and the session would need a login at expiry \
             (use --replace to store it anyway; to get a refresh token, ask for \
             `offline_access` in the provider's scope)",
            req.name
        ),
    ))
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
    let message = e.to_string();
    // Messages of the HTTP layer already name what they were about.
    if message.starts_with(&format!("{what}:")) {
        return ErrorReply::new(e.code(), message);
    }
    ErrorReply::new(e.code(), format!("{what}: {message}"))
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
