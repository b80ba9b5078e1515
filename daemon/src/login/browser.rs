//! Authorization code with PKCE (RFC 7636, S256) and a loopback redirect on 127.0.0.1 with an
//! ephemeral port (RFC 8252): the user's browser does the login, the daemon receives the code.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use tokd_protocol::verbs::login::LoginPrompt;
use tokd_protocol::{ErrorCode, ErrorReply, Response, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use url::Url;

use super::{Login, Prompts, prompt, provider_failed, required_endpoint, unless_cancelled};
use crate::providers::oauth2;
use crate::providers::{Provider, TokenGrant, http};
use crate::sessions::import::TokenSet;

/// The most a browser's request to the loopback listener may be.
const MAX_REQUEST: usize = 16 * 1024;
/// How long one browser connection may take to send its request: a browser sends it as soon
/// as it has connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the browser flow to its end: the redirect reaches the loopback listener, or the user
/// pastes the address the browser was sent to (`pasted`, when the browser runs on another
/// machine), whichever comes first within `timeout`.
///
/// # Errors
/// The provider refused, the user denied, the state did not match, or the time ran out.
pub async fn run(
    ctx: &Login,
    provider: &Arc<Provider>,
    open_browser: bool,
    prompts: &Prompts,
    timeout: Duration,
    pasted: Option<mpsc::Receiver<Secret>>,
) -> Result<(TokenSet, String), ErrorReply> {
    let (client, endpoints, token_url) = super::resolve(ctx, provider).await?;
    let authorize = required_endpoint(provider, endpoints.authorization, "authorization_endpoint")?;
    let listener = bind(provider.config.redirect_port).await?;
    let port = listener
        .local_addr()
        .map_err(|e| ErrorReply::new(ErrorCode::Internal, e.to_string()))?
        .port();
    let request = AuthorizationRequest::new(&authorize, provider, port);
    let shown = prompt(
        prompts,
        Response::LoginPrompt(LoginPrompt::Browser {
            url: request.url.to_string(),
            open: open_browser,
        }),
    )
    .await;
    if !shown {
        return Err(ErrorReply::new(ErrorCode::Invalid, "the client went away"));
    }
    let waiting = async {
        let code = wait_for_code(&listener, &request.state, pasted);
        tokio::time::timeout(timeout, code).await.map_err(|_| {
            ErrorReply::new(
                ErrorCode::Timeout,
                format!(
                    "the login was not completed within {} (no answer from the browser); run \
                     `tokd login` again",
                    crate::sessions::human_ms(i64::try_from(timeout.as_millis()).unwrap_or(0))
                ),
            )
        })?
    };
    // From here on the code is spent at the provider: the exchange is seen through.
    let code = unless_cancelled(prompts, waiting).await?;
    drop(listener);
    let tokens = oauth2::token_request(
        provider,
        &client,
        &token_url,
        &TokenGrant::AuthorizationCode {
            code: &code,
            redirect_uri: &request.redirect_uri,
            code_verifier: &request.verifier,
        },
        &provider.config.headers,
        ctx.now(),
    )
    .await
    .map_err(|e| provider_failed("code exchange", e))?;
    Ok((tokens, http::origin(&token_url)))
}

/// The loopback listener of the redirect: 127.0.0.1 on `port`, or any free port.
async fn bind(port: Option<u16>) -> Result<TcpListener, ErrorReply> {
    TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
        .await
        .map_err(|e| {
            ErrorReply::new(
                ErrorCode::Internal,
                match port {
                    Some(port) => format!(
                        "cannot listen on 127.0.0.1:{port} for the redirect ({e}); is another \
                         login running, or does another program use the port?"
                    ),
                    None => format!("cannot listen on 127.0.0.1: {e}"),
                },
            )
        })
}

/// One authorization request (RFC 6749 §4.1.1 with RFC 7636's S256 challenge): its URL and
/// what the answer is checked and exchanged with.
struct AuthorizationRequest {
    url: Url,
    redirect_uri: String,
    state: String,
    verifier: Secret,
}

impl AuthorizationRequest {
    fn new(authorize: &Url, provider: &Provider, port: u16) -> AuthorizationRequest {
        let redirect_uri = format!("http://127.0.0.1:{port}/callback");
        let verifier = Secret::new(random_b64(32));
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()));
        let state = random_b64(16);
        let mut url = authorize.clone();
        {
            let cfg = &provider.config;
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", cfg.client_id.as_deref().unwrap_or_default())
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("state", &state)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            // Scope, audience, resource and the extra parameters, as on every token request
            // (config validation keeps the extra ones from naming a parameter set here).
            let mut extras = Vec::new();
            oauth2::push_scope_and_extras(cfg, &mut extras);
            for (k, v) in &extras {
                q.append_pair(k, v);
            }
            // OpenID Connect Core §11: offline_access needs prompt=consent, or providers drop
            // it and issue no refresh token. A configured prompt wins.
            if cfg
                .scope
                .as_deref()
                .is_some_and(|scope| scope.split(' ').any(|s| s == "offline_access"))
                && !cfg.extra_params.contains_key("prompt")
            {
                q.append_pair("prompt", "consent");
            }
        }
        AuthorizationRequest {
            url,
            redirect_uri,
            state,
            verifier,
        }
    }
}

/// The code, from the browser's redirect to the listener or from an address the user
/// pasted, whichever carries this login's `state` first.
async fn wait_for_code(
    listener: &TcpListener,
    expected_state: &str,
    mut pasted: Option<mpsc::Receiver<Secret>>,
) -> Result<Secret, ErrorReply> {
    let redirect = receive_code(listener, expected_state);
    tokio::pin!(redirect);
    loop {
        let next_paste = async {
            match pasted.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            code = &mut redirect => return code,
            url = next_paste => match url {
                Some(url) => {
                    if let Some(answer) = answer_of(url.expose(), expected_state) {
                        return answer;
                    }
                    tracing::info!("a pasted address was not this login's redirect; waiting on");
                }
                // The client stopped sending (it pasted nothing): the listener may still hear.
                None => pasted = None,
            },
        }
    }
}

/// What a redirect's address says, if it carries this login's `state`: its code, or the
/// error the provider put there (RFC 6749 §4.1.2.1).
fn answer_of(address: &str, expected_state: &str) -> Option<Result<Secret, ErrorReply>> {
    let url = Url::parse(address.trim())
        .or_else(|_| Url::parse(&format!("http://127.0.0.1{}", address.trim())))
        .ok()?;
    let param = |key: &str| {
        url.query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    if param("state").as_deref() != Some(expected_state) {
        return None;
    }
    if let Some(error) = param("error") {
        let description = param("error_description").unwrap_or_default();
        let clean: String = format!("{error} {description}")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        return Some(Err(ErrorReply::new(
            ErrorCode::NeedsLogin,
            format!("the provider refused the login: {}", clean.trim()),
        )));
    }
    Some(
        param("code")
            .map(Secret::new)
            .ok_or_else(|| ErrorReply::new(ErrorCode::Invalid, "the redirect carries no code")),
    )
}

/// Most browser connections being read at once.
const MAX_PENDING: usize = 16;

/// Waits for the browser's redirect to `/callback` carrying this login's `state`, answers it,
/// and returns the code. Connections are read concurrently (a silent one cannot hold up the
/// real redirect), and anything without the right `state` is answered and ignored: another
/// local process cannot end or steer the login. A connection gets [`REQUEST_TIMEOUT`] to
/// send its request, and at the cap the oldest one waiting makes room for a newcomer: a
/// browser sends its request as soon as it connects, so a flood of silent connections can
/// never keep the redirect out.
async fn receive_code(listener: &TcpListener, expected_state: &str) -> Result<Secret, ErrorReply> {
    let mut pending = tokio::task::JoinSet::new();
    let mut oldest_first = std::collections::VecDeque::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if pending.len() >= MAX_PENDING
                        && let Some(oldest) = oldest_first.pop_front()
                    {
                        tokio::task::AbortHandle::abort(&oldest);
                    }
                    let expected = expected_state.to_owned();
                    oldest_first.push_back(pending.spawn(async move { handle(stream, &expected).await }));
                    oldest_first.retain(|task: &tokio::task::AbortHandle| !task.is_finished());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "loopback accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = pending.join_next(), if !pending.is_empty() => {
                if let Ok(Some(result)) = done {
                    return result;
                }
            }
        }
    }
}

/// One connection to the loopback listener: `Some` when it carried this login's answer.
async fn handle(stream: TcpStream, expected_state: &str) -> Option<Result<Secret, ErrorReply>> {
    let (target, mut stream) = read_target(stream).await?;
    let path = target.split('?').next().unwrap_or_default();
    if path != "/callback" {
        respond(&mut stream, 404, "Not found").await;
        return None;
    }
    let answer = answer_of(&target, expected_state);
    let (status, page) = match &answer {
        None => (400, "This is not the login tokd is waiting for."),
        Some(Err(e)) if e.code == ErrorCode::Invalid => (400, "The redirect carries no code."),
        Some(Err(_)) => (200, "The login failed. You can close this tab."),
        Some(Ok(_)) => (
            200,
            "tokd received the login and is finishing it. You can close this tab; the \
             terminal says when the session is ready.",
        ),
    };
    respond(&mut stream, status, page).await;
    match answer {
        // A redirect without a code is not an answer: the real one may still come.
        Some(Err(e)) if e.code == ErrorCode::Invalid => None,
        other => other,
    }
}

/// Reads a request head and returns its target (`/callback?code=…`).
async fn read_target(mut stream: TcpStream) -> Option<(String, TcpStream)> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 2048];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read).await.ok()??;
    let head = String::from_utf8_lossy(&buf);
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET").then(|| (target.to_owned(), stream))
}

async fn respond(stream: &mut TcpStream, status: u16, message: &str) {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tokd</title></head>\
         <body style=\"font-family: sans-serif; margin: 4em\"><p>{message}</p></body></html>"
    );
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // getrandom failing means the OS cannot give randomness at all; fall back to rand's.
    if getrandom::fill(&mut buf).is_err() {
        buf.iter_mut().for_each(|b| *b = rand::random());
    }
    URL_SAFE_NO_PAD.encode(buf)
}
