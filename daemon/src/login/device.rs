//! OAuth 2.0 Device Authorization Grant (RFC 8628): show a code, poll until the user
//! approved it somewhere else.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokd_protocol::verbs::login::LoginPrompt;
use tokd_protocol::{ErrorCode, ErrorReply, Response, Secret};

use super::{Login, Prompts, prompt, provider_failed, required_endpoint, unless_cancelled};
use crate::providers::oauth2::{self, error_code, interpret, push_scope_and_extras, secrets_of};
use crate::providers::{Provider, TokenGrant, http};
use crate::sessions::import::TokenSet;

/// RFC 8628 §3.5: without an `interval`, clients poll every 5 s.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// `slow_down` adds this much to the interval.
const SLOW_DOWN: Duration = Duration::from_secs(5);
/// The longest interval honoured between two polls.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: Secret,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: Option<u64>,
    interval: Option<u64>,
}

/// Runs the device flow to its end.
///
/// # Errors
/// The provider refused, the user denied, or the code expired.
pub async fn run(
    ctx: &Login,
    provider: &Arc<Provider>,
    prompts: &Prompts,
    timeout: Duration,
) -> Result<(TokenSet, String), ErrorReply> {
    let (client, endpoints, token_url) = super::resolve(ctx, provider).await?;
    let device_url = required_endpoint(
        provider,
        endpoints.device_authorization,
        "device_authorization_endpoint",
    )?;
    let auth = authorize(provider, &client, &device_url).await?;
    let code_lifetime = Duration::from_secs(auth.expires_in.unwrap_or(600));
    let expires_in = code_lifetime.min(timeout);
    let shown = prompt(
        prompts,
        Response::LoginPrompt(LoginPrompt::Device {
            verification_uri: auth.verification_uri.clone(),
            user_code: auth.user_code.clone(),
            verification_uri_complete: auth.verification_uri_complete.clone(),
            expires_in_s: expires_in.as_secs(),
        }),
    )
    .await;
    if !shown {
        return Err(ErrorReply::new(ErrorCode::Invalid, "the client went away"));
    }
    let poller = Poller {
        ctx,
        provider,
        client: &client,
        token_url: &token_url,
        grant: TokenGrant::DeviceCode {
            device_code: &auth.device_code,
        },
    };
    let interval = auth
        .interval
        .map_or(DEFAULT_INTERVAL, Duration::from_secs)
        .clamp(Duration::from_secs(1), MAX_INTERVAL);
    let ends = if timeout < code_lifetime {
        timed_out(timeout)
    } else {
        expired()
    };
    let tokens = poller
        .until_approved(
            prompts,
            interval,
            tokio::time::Instant::now() + expires_in,
            ends,
        )
        .await?;
    Ok((tokens, http::origin(&token_url)))
}

/// The device authorization request (RFC 8628 §3.1).
async fn authorize(
    provider: &Provider,
    client: &reqwest::Client,
    device_url: &url::Url,
) -> Result<DeviceAuthorization, ErrorReply> {
    let mut form = Vec::new();
    push_scope_and_extras(&provider.config, &mut form);
    let answer = oauth2::post_form(
        provider,
        client,
        device_url,
        form,
        &provider.config.headers,
        "device authorization",
    )
    .await
    .map_err(|e| provider_failed("device authorization", e))?;
    if !answer.status.is_success() {
        let why = error_code(&answer).unwrap_or_else(|| answer.status.to_string());
        return Err(ErrorReply::new(
            ErrorCode::NeedsConfig,
            format!("the provider refused the device authorization request ({why})"),
        ));
    }
    serde_json::from_slice(&answer.body).map_err(|e| {
        ErrorReply::new(
            ErrorCode::RefreshFailed,
            format!(
                "malformed device authorization answer (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// What one poll of the token endpoint said.
enum Poll {
    /// Not approved yet: poll again after `interval`.
    Again {
        /// The interval from now on.
        interval: Duration,
    },
    /// Approved: the tokens.
    Done(TokenSet),
}

/// Polls the token endpoint for an approved device code (RFC 8628 §3.4, §3.5).
struct Poller<'a> {
    ctx: &'a Login,
    provider: &'a Provider,
    client: &'a reqwest::Client,
    token_url: &'a url::Url,
    grant: TokenGrant<'a>,
}

impl Poller<'_> {
    async fn until_approved(
        &self,
        prompts: &Prompts,
        mut interval: Duration,
        deadline: tokio::time::Instant,
        at_deadline: ErrorReply,
    ) -> Result<TokenSet, ErrorReply> {
        loop {
            // The wait for the user races the client; a poll, once sent, is seen through:
            // its answer may carry the tokens of the approved code.
            let pause = async {
                tokio::time::sleep_until((tokio::time::Instant::now() + interval).min(deadline))
                    .await;
                Ok(())
            };
            unless_cancelled(prompts, pause).await?;
            if tokio::time::Instant::now() >= deadline {
                return Err(at_deadline);
            }
            match self.poll(interval).await? {
                Poll::Again { interval: next } => interval = next,
                Poll::Done(tokens) => return Ok(tokens),
            }
        }
    }

    async fn poll(&self, interval: Duration) -> Result<Poll, ErrorReply> {
        let sent_at = self.ctx.now();
        let answer = match oauth2::send_token_form(
            self.provider,
            self.client,
            self.token_url,
            &self.grant,
            &self.provider.config.headers,
        )
        .await
        {
            Ok(answer) => answer,
            // The network may come and go while the user is busy approving: keep polling.
            Err(e) => {
                tracing::debug!(error = %e, "device flow poll failed; polling on");
                return Ok(Poll::Again { interval });
            }
        };
        match error_code(&answer).as_deref() {
            Some("authorization_pending") => return Ok(Poll::Again { interval }),
            Some("slow_down") => {
                return Ok(Poll::Again {
                    interval: (interval + SLOW_DOWN).min(MAX_INTERVAL),
                });
            }
            Some("access_denied") => {
                return Err(ErrorReply::new(
                    ErrorCode::NeedsLogin,
                    "the login was denied at the provider",
                ));
            }
            Some("expired_token") => return Err(expired()),
            _ => {}
        }
        let secrets = secrets_of(self.provider, &self.grant);
        match interpret(&answer, sent_at, self.provider.default_lifetime(), &secrets) {
            Ok(tokens) => Ok(Poll::Done(tokens)),
            // A 5xx or 429 while the user is approving: poll on, a little slower (§3.5).
            Err(crate::providers::ProviderError::Retryable { message, .. }) => {
                tracing::debug!(error = %message, "device flow poll failed; polling on");
                Ok(Poll::Again {
                    interval: (interval + Duration::from_secs(1)).min(MAX_INTERVAL),
                })
            }
            Err(e) => Err(provider_failed("token endpoint", e)),
        }
    }
}

fn timed_out(timeout: Duration) -> ErrorReply {
    ErrorReply::new(
        ErrorCode::Timeout,
        format!(
            "the login was not completed within {}; run `tokd login` again",
            crate::sessions::human_ms(i64::try_from(timeout.as_millis()).unwrap_or(0))
        ),
    )
}

fn expired() -> ErrorReply {
    ErrorReply::new(
        ErrorCode::Timeout,
        "the code expired before it was approved; run `tokd login` again",
    )
}
