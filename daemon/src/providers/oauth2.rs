//! RFC 6749 token requests (refresh_token §6, client_credentials §4.4, authorization_code
//! §4.1 with PKCE, and RFC 8628's device_code), client
//! authentication (§2.3.1), error classification (§5.2), and discovery (OpenID Connect
//! Discovery, then RFC 8414).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde::Deserialize;
use tokd_protocol::EpochMs;
use url::Url;

use super::http::{self, Answer};
use super::{Endpoints, Provider, ProviderError, TokenGrant};
use crate::config::AuthMethod;
use crate::sessions::import::{ImportError, TokenSet, parse_token_response};

/// Sends one token request and turns the answer into tokens or a classified error.
///
/// # Errors
/// A classified [`ProviderError`].
pub async fn token_request(
    provider: &Provider,
    client: &reqwest::Client,
    url: &Url,
    grant: &TokenGrant<'_>,
    headers: &BTreeMap<String, String>,
    sent_at: EpochMs,
) -> Result<TokenSet, ProviderError> {
    let answer = send_token_form(provider, client, url, grant, headers).await?;
    interpret(
        &answer,
        sent_at,
        provider.default_lifetime(),
        &secrets_of(provider, grant),
    )
}

/// Sends the form of one token request (grant fields, scope, audience, resource, extra
/// parameters) with client authentication, and returns the raw answer.
///
/// # Errors
/// Transport failures, classified.
pub async fn send_token_form(
    provider: &Provider,
    client: &reqwest::Client,
    url: &Url,
    grant: &TokenGrant<'_>,
    headers: &BTreeMap<String, String>,
) -> Result<Answer, ProviderError> {
    let cfg = &provider.config;
    let mut form: Vec<(&str, String)> = Vec::new();
    match grant {
        TokenGrant::Refresh { refresh_token } => {
            form.push(("grant_type", "refresh_token".into()));
            form.push(("refresh_token", refresh_token.expose().to_owned()));
        }
        TokenGrant::ClientCredentials => {
            form.push(("grant_type", "client_credentials".into()));
        }
        TokenGrant::DeviceCode { device_code } => {
            form.push((
                "grant_type",
                "urn:ietf:params:oauth:grant-type:device_code".into(),
            ));
            form.push(("device_code", device_code.expose().to_owned()));
        }
        TokenGrant::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => {
            form.push(("grant_type", "authorization_code".into()));
            form.push(("code", code.expose().to_owned()));
            form.push(("redirect_uri", (*redirect_uri).to_owned()));
            form.push(("code_verifier", code_verifier.expose().to_owned()));
        }
    }
    // The authorization request already carried the scope of a code exchange.
    if !matches!(grant, TokenGrant::AuthorizationCode { .. }) {
        push_scope_and_extras(cfg, &mut form);
    }
    post_form(provider, client, url, form, headers, "token endpoint").await
}

/// The configured scope, audience, resource and extra parameters, appended to a form.
pub fn push_scope_and_extras<'a>(
    cfg: &'a crate::config::ProviderConfig,
    form: &mut Vec<(&'a str, String)>,
) {
    if let Some(scope) = &cfg.scope {
        // A refresh may narrow the scope but not widen it; most providers accept the same.
        form.push(("scope", scope.clone()));
    }
    if let Some(audience) = &cfg.audience {
        form.push(("audience", audience.clone()));
    }
    if let Some(resource) = &cfg.resource {
        form.push(("resource", resource.clone()));
    }
    for (k, v) in &cfg.extra_params {
        form.push((k.as_str(), v.clone()));
    }
}

/// POSTs a form with the provider's client authentication (RFC 6749 §2.3.1) and headers:
/// the one way tokd talks to token, device authorization and revocation endpoints.
///
/// # Errors
/// Transport failures, classified.
pub async fn post_form(
    provider: &Provider,
    client: &reqwest::Client,
    url: &Url,
    mut form: Vec<(&str, String)>,
    headers: &BTreeMap<String, String>,
    what: &str,
) -> Result<Answer, ProviderError> {
    let client_id = provider.config.client_id.clone().unwrap_or_default();
    let mut request = client
        .post(url.clone())
        .header("Accept", "application/json")
        .timeout(provider.request_timeout());
    match provider.auth_method() {
        AuthMethod::ClientSecretBasic => {
            let secret = provider.client_secret.as_ref().map_or("", |s| s.expose());
            // Both parts are form-urlencoded before base64.
            let pair = format!("{}:{}", form_urlencode(&client_id), form_urlencode(secret));
            request = request.header(
                "Authorization",
                format!("Basic {}", STANDARD.encode(pair.as_bytes())),
            );
        }
        AuthMethod::ClientSecretPost => {
            form.push(("client_id", client_id));
            if let Some(secret) = &provider.client_secret {
                form.push(("client_secret", secret.expose().to_owned()));
            }
        }
        AuthMethod::None => {
            form.push(("client_id", client_id));
        }
    }
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let body = zeroize::Zeroizing::new(encode_form(&form));
    for (_, v) in &mut form {
        zeroize::Zeroize::zeroize(v);
    }
    http::send(
        request
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.as_bytes().to_vec()),
        what,
    )
    .await
}

/// The secrets a request carried, to scrub from the provider's error text.
pub fn secrets_of<'a>(provider: &'a Provider, grant: &'a TokenGrant<'_>) -> Vec<&'a str> {
    let mut secrets: Vec<&str> = Vec::new();
    match grant {
        TokenGrant::Refresh { refresh_token } => secrets.push(refresh_token.expose()),
        TokenGrant::DeviceCode { device_code } => secrets.push(device_code.expose()),
        TokenGrant::AuthorizationCode {
            code,
            code_verifier,
            ..
        } => {
            secrets.push(code.expose());
            secrets.push(code_verifier.expose());
        }
        TokenGrant::ClientCredentials => {}
    }
    if let Some(secret) = &provider.client_secret {
        secrets.push(secret.expose());
    }
    secrets
}

/// Revokes `token` at the provider's revocation endpoint (RFC 7009). `Ok(false)` when the
/// provider offers none. Like a refresh, a revocation sends the token only to the origin it
/// is bound to (`bound_origin`, when known).
///
/// # Errors
/// NeedsConfig when the revocation endpoint is on another origin (nothing is sent); a
/// classified [`ProviderError`] when the endpoint does not confirm.
pub async fn revoke(
    provider: &Provider,
    client: &reqwest::Client,
    token: &tokd_protocol::Secret,
    hint: &str,
    bound_origin: Option<&str>,
) -> Result<bool, ProviderError> {
    let Some(url) = provider.endpoints(client).await?.revocation else {
        return Ok(false);
    };
    let origin = http::origin(&url);
    if let Some(bound) = bound_origin
        && bound != origin
    {
        return Err(ProviderError::NeedsConfig(format!(
            "the session's tokens were issued for {bound} but provider {:?} now revokes at \
             {origin}; they are never sent elsewhere (restore the endpoint)",
            provider.name
        )));
    }
    let form = vec![
        ("token", token.expose().to_owned()),
        ("token_type_hint", hint.to_owned()),
    ];
    let answer = post_form(
        provider,
        client,
        &url,
        form,
        &provider.config.headers,
        "revocation endpoint",
    )
    .await?;
    if answer.status.is_success() {
        return Ok(true);
    }
    let secrets = [token.expose()];
    let detail = serde_json::from_slice::<OAuthError>(&answer.body).map_or_else(
        |_| String::new(),
        |e| format!(" ({})", e.describe(&secrets)),
    );
    Err(ProviderError::Retryable {
        message: format!("the revocation endpoint answered {}{detail}", answer.status),
        retry_after: http::retry_after(&answer.headers),
        sent_no_answer: false,
    })
}

/// The `error` code of an RFC 6749 §5.2 error body, if the answer is one.
pub fn error_code(answer: &Answer) -> Option<String> {
    serde_json::from_slice::<OAuthError>(&answer.body)
        .ok()
        .map(|e| e.error)
}

/// Classifies a token endpoint's answer. `secrets` (the refresh token and client secret
/// that were sent) are scrubbed from any provider text that ends up in messages.
///
/// # Errors
/// See the module docs and the README's table.
pub fn interpret(
    answer: &Answer,
    sent_at: EpochMs,
    default_lifetime: Option<std::time::Duration>,
    secrets: &[&str],
) -> Result<TokenSet, ProviderError> {
    let status = answer.status;
    if status.is_success() {
        let text = std::str::from_utf8(&answer.body).map_err(|_| {
            ProviderError::unusable_answer("token endpoint: the answer is not UTF-8")
        })?;
        return parse_token_response(text, sent_at, default_lifetime).map_err(|e| match e {
            // Retrying cannot fix an answer that never says when its token expires.
            ImportError::NoExpiry => ProviderError::NeedsConfig(format!("token endpoint: {e}")),
            _ => ProviderError::unusable_answer(format!("token endpoint: malformed answer: {e}")),
        });
    }
    if status.is_redirection() {
        let to = answer
            .headers
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| Url::parse(l).ok())
            .map_or_else(|| "elsewhere".to_owned(), |u| http::safe_url(&u));
        return Err(ProviderError::Retryable {
            message: format!(
                "token endpoint redirected ({status}) to {to}; redirects are not followed"
            ),
            retry_after: http::retry_after(&answer.headers),
            sent_no_answer: false,
        });
    }
    let oauth_error = serde_json::from_slice::<OAuthError>(&answer.body).ok();
    if let Some(err) = &oauth_error {
        let described = err.describe(secrets);
        match err.error.as_str() {
            "invalid_grant" => {
                return Err(ProviderError::NeedsLogin(format!(
                    "the provider refused the refresh token ({described})"
                )));
            }
            "invalid_client"
            | "unauthorized_client"
            | "unsupported_grant_type"
            | "invalid_scope"
            | "invalid_request"
            | "invalid_target" => {
                return Err(ProviderError::NeedsConfig(format!(
                    "the provider rejected the request ({described})"
                )));
            }
            "temporarily_unavailable" | "server_error" | "slow_down" => {
                return Err(ProviderError::Retryable {
                    message: format!("token endpoint answered {status} ({described})"),
                    retry_after: http::retry_after(&answer.headers),
                    sent_no_answer: false,
                });
            }
            _ => {}
        }
    }
    let detail = oauth_error.map_or_else(String::new, |e| format!(" ({})", e.describe(secrets)));
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(ProviderError::NeedsConfig(
            format!("token endpoint answered {status}{detail}: client authentication failed"),
        )),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::GONE => {
            Err(ProviderError::NeedsConfig(format!(
                "token endpoint answered {status}{detail}: check the provider's endpoint"
            )))
        }
        _ => Err(ProviderError::Retryable {
            message: format!("token endpoint answered {status}{detail}"),
            retry_after: http::retry_after(&answer.headers),
            sent_no_answer: false,
        }),
    }
}

/// An RFC 6749 §5.2 error body.
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

impl OAuthError {
    /// `code: description`, sanitised and bounded (descriptions are the provider's text,
    /// and some providers echo what they were sent: `secrets` are blanked out first).
    fn describe(&self, secrets: &[&str]) -> String {
        let clean = |s: &str, max: usize| -> String {
            let mut text = s.to_owned();
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                text = text.replace(secret, "<redacted>");
            }
            text.chars()
                .filter(|c| !c.is_control())
                .take(max)
                .collect::<String>()
        };
        match &self.error_description {
            Some(d) if !d.is_empty() => format!("{}: {}", clean(&self.error, 64), clean(d, 200)),
            _ => clean(&self.error, 64),
        }
    }
}

#[derive(Deserialize)]
struct Metadata {
    token_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

/// Fetches the provider's metadata: OpenID Connect Discovery first, then RFC 8414.
///
/// # Errors
/// Retryable when unreachable; NeedsConfig when neither document exists or it is unusable.
pub async fn discover(
    client: &reqwest::Client,
    issuer: &Url,
    name: &str,
) -> Result<Endpoints, ProviderError> {
    let base = issuer.as_str().trim_end_matches('/');
    // RFC 8414 §3: the well-known segment goes between host and the issuer's path.
    let path = issuer.path().trim_end_matches('/');
    let mut origin = issuer.clone();
    origin.set_path("");
    let origin = origin.as_str().trim_end_matches('/').to_owned();
    let candidates = [
        format!("{base}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ];
    let mut misses = Vec::new();
    for candidate in candidates {
        let url = Url::parse(&candidate).map_err(|e| {
            ProviderError::NeedsConfig(format!("provider {name:?}: bad discovery URL: {e}"))
        })?;
        let answer = http::send(
            client.get(url.clone()).header("Accept", "application/json"),
            "discovery",
        )
        .await?;
        if answer.status.is_server_error() || answer.status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::Retryable {
                message: format!(
                    "discovery at {} answered {}",
                    http::safe_url(&url),
                    answer.status
                ),
                retry_after: http::retry_after(&answer.headers),
                sent_no_answer: false,
            });
        }
        if !answer.status.is_success() {
            misses.push(format!(
                "{} answered {}",
                http::safe_url(&url),
                answer.status
            ));
            continue;
        }
        let meta: Metadata = serde_json::from_slice(&answer.body).map_err(|e| {
            ProviderError::retryable(format!(
                "discovery at {}: malformed metadata (line {}, column {})",
                http::safe_url(&url),
                e.line(),
                e.column()
            ))
        })?;
        let url_of = |v: Option<String>| -> Result<Option<Url>, ProviderError> {
            v.map(|u| {
                let parsed = Url::parse(&u).map_err(|e| {
                    ProviderError::NeedsConfig(format!("provider {name:?}: discovered {u:?}: {e}"))
                })?;
                http::check_secure(&parsed)
                    .map_err(|e| ProviderError::NeedsConfig(format!("provider {name:?}: {e}")))?;
                Ok(parsed)
            })
            .transpose()
        };
        tracing::info!(provider = %name, metadata = %http::safe_url(&url), "discovered provider endpoints");
        return Ok(Endpoints {
            token: url_of(meta.token_endpoint)?,
            device_authorization: url_of(meta.device_authorization_endpoint)?,
            authorization: url_of(meta.authorization_endpoint)?,
            revocation: url_of(meta.revocation_endpoint)?,
        });
    }
    Err(ProviderError::NeedsConfig(format!(
        "provider {name:?}: no discovery document ({})",
        misses.join("; ")
    )))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn encode_form(pairs: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::http::test_answer as answer;

    #[test]
    fn classification() {
        let ok = interpret(
            &answer(
                200,
                r#"{"access_token":"a","expires_in":60,"refresh_token":"r"}"#,
            ),
            1000,
            None,
            &[],
        )
        .expect("tokens");
        assert_eq!(ok.expires_at_ms, 61_000);
        let cases: [(u16, &str, &str); 9] = [
            (400, r#"{"error":"invalid_grant"}"#, "login"),
            (400, r#"{"error":"invalid_client"}"#, "config"),
            (401, r#"{"error":"unauthorized_client"}"#, "config"),
            (400, r#"{"error":"invalid_scope"}"#, "config"),
            (401, "", "config"),
            (404, "<html>", "config"),
            (503, "", "retry"),
            (429, "", "retry"),
            (200, "<html>oops</html>", "retry"),
        ];
        for (status, body, want) in cases {
            let got = interpret(&answer(status, body), 0, None, &[]).expect_err("error");
            let kind = match got {
                ProviderError::NeedsLogin(_) => "login",
                ProviderError::NeedsConfig(_) => "config",
                ProviderError::Retryable { .. } => "retry",
            };
            assert_eq!(kind, want, "{status} {body}");
        }
    }

    #[test]
    fn descriptions_are_bounded() {
        let long = "x".repeat(5000);
        let body = format!(r#"{{"error":"invalid_grant","error_description":"{long}\n"}}"#);
        let err = interpret(&answer(400, &body), 0, None, &[]).expect_err("error");
        assert!(err.to_string().len() < 400);
        let echo =
            r#"{"error":"invalid_grant","error_description":"token rt-SECRET-1 is unknown"}"#;
        let err = interpret(&answer(400, echo), 0, None, &["rt-SECRET-1"]).expect_err("error");
        assert!(!err.to_string().contains("rt-SECRET-1"), "{err}");
    }

    #[test]
    fn basic_auth_parts_are_form_encoded() {
        assert_eq!(form_urlencode("a b:c"), "a+b%3Ac");
    }
}
