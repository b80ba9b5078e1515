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
    let mut secrets = secrets_of(provider, grant);
    secrets.extend(super::secret_header_values(headers));
    interpret(&answer, sent_at, provider.default_lifetime(), &secrets)
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
    error_body(answer).map(|e| {
        e.error
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect()
    })
}

/// Classifies a token endpoint's answer. `secrets` (the refresh token and client secret
/// that were sent) are scrubbed from any provider text that ends up in messages.
///
/// An RFC 6749 `error` is classified before any token is looked for, whatever the status:
/// some providers answer `200 {"error": "invalid_grant"}`.
///
/// # Errors
/// See the module docs and the table in docs/refreshing.md.
pub fn interpret(
    answer: &Answer,
    sent_at: EpochMs,
    default_lifetime: Option<std::time::Duration>,
    secrets: &[&str],
) -> Result<TokenSet, ProviderError> {
    let status = answer.status;
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
    let oauth_error = error_body(answer);
    if let Some(err) = &oauth_error
        && let Some(verdict) = classify_error(err, status, &answer.headers, secrets)
    {
        return Err(verdict);
    }
    let detail = oauth_error.map_or_else(String::new, |e| format!(" ({})", e.describe(secrets)));
    if status.is_success() {
        if !detail.is_empty() {
            // An error the provider names, not tokens: it did not act on the request.
            return Err(ProviderError::retryable(format!(
                "token endpoint answered {status} with an error{detail}"
            )));
        }
        let text = std::str::from_utf8(&answer.body).map_err(|_| {
            ProviderError::unusable_answer("token endpoint: the answer is not UTF-8")
        })?;
        return parse_token_response(text, sent_at, default_lifetime).map_err(|e| match e {
            // Retrying cannot fix an answer that never says when its token expires.
            ImportError::NoExpiry => ProviderError::NeedsConfig(format!("token endpoint: {e}")),
            _ => ProviderError::unusable_answer(format!("token endpoint: malformed answer: {e}")),
        });
    }
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
            sent_no_answer: http::from_gateway(status),
        }),
    }
}

/// The RFC 6749 §5.2 error of an answer: a non-empty `error` string, in an answer that
/// carries no `access_token` (a success body with `"error": ""` or `null` is not one).
fn error_body(answer: &Answer) -> Option<OAuthError> {
    #[derive(Deserialize)]
    struct Probe {
        error: Option<String>,
        error_description: Option<serde_json::Value>,
        access_token: Option<serde_json::Value>,
    }
    let probe = serde_json::from_slice::<Probe>(&answer.body).ok()?;
    if answer.status.is_success() && probe.access_token.is_some() {
        return None;
    }
    let error = probe.error.filter(|e| !e.is_empty())?;
    let error_description = match probe.error_description {
        Some(serde_json::Value::String(d)) => Some(d),
        _ => None,
    };
    Some(OAuthError {
        error,
        error_description,
    })
}

/// The verdict of a known RFC 6749 error code; `None` for codes that leave it to the status.
fn classify_error(
    err: &OAuthError,
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    secrets: &[&str],
) -> Option<ProviderError> {
    let described = err.describe(secrets);
    match err.error.as_str() {
        "invalid_grant" => Some(ProviderError::NeedsLogin(format!(
            "the provider refused the refresh token ({described})"
        ))),
        "invalid_client"
        | "unauthorized_client"
        | "unsupported_grant_type"
        | "invalid_scope"
        | "invalid_request"
        | "invalid_target" => Some(ProviderError::NeedsConfig(format!(
            "the provider rejected the request ({described})"
        ))),
        "temporarily_unavailable" | "server_error" | "slow_down" => {
            Some(ProviderError::Retryable {
                message: format!("token endpoint answered {status} ({described})"),
                retry_after: http::retry_after(headers),
                // A gateway's status says the request may have been forwarded, whatever the
                // body says.
                sent_no_answer: http::from_gateway(status),
            })
        }
        _ => None,
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
    issuer: Option<String>,
    token_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The endpoints, from the OpenID document completed by the RFC 8414 one.
    pub endpoints: Endpoints,
    /// False when a document that might have named more endpoints could not be read for a
    /// passing reason (a 5xx, no answer): worth asking again later.
    pub settled: bool,
}

/// Fetches the provider's metadata: OpenID Connect Discovery first, then RFC 8414, whose
/// document also supplies endpoints the OpenID one lacks (some providers name revocation
/// or device authorization only there). Each document must name exactly the configured
/// `issuer` (OpenID Connect Discovery §4.3, RFC 8414 §3.3: the mix-up defence); a
/// trailing `/` on either side is the only difference allowed.
///
/// # Errors
/// Retryable when unreachable; NeedsConfig when neither document exists, one is unusable
/// or names another issuer.
pub async fn discover(
    client: &reqwest::Client,
    issuer: &Url,
    configured: &str,
    name: &str,
) -> Result<Discovered, ProviderError> {
    let mut misses = Vec::new();
    let mut found: Option<Endpoints> = None;
    let mut settled = true;
    for candidate in discovery_urls(issuer) {
        if found.as_ref().is_some_and(is_complete) {
            break;
        }
        let url = Url::parse(&candidate).map_err(|e| {
            ProviderError::NeedsConfig(format!("provider {name:?}: bad discovery URL: {e}"))
        })?;
        let endpoints = match fetch_metadata(client, &url, configured, name).await {
            Ok(Ok(endpoints)) => endpoints,
            Ok(Err(miss)) => {
                misses.push(miss);
                continue;
            }
            // The OpenID document is in hand; the other one only completes it.
            Err(e @ ProviderError::Retryable { .. }) if found.is_some() => {
                tracing::warn!(provider = %name, error = %e, "discovery: cannot read the RFC 8414 metadata; using the OpenID document alone for now");
                settled = false;
                continue;
            }
            Err(e) => return Err(e),
        };
        found = Some(match found {
            None => endpoints,
            Some(first) => Endpoints {
                token: first.token.or(endpoints.token),
                device_authorization: first
                    .device_authorization
                    .or(endpoints.device_authorization),
                authorization: first.authorization.or(endpoints.authorization),
                revocation: first.revocation.or(endpoints.revocation),
            },
        });
    }
    match found {
        Some(endpoints) => Ok(Discovered { endpoints, settled }),
        None => Err(ProviderError::NeedsConfig(format!(
            "provider {name:?}: no discovery document ({})",
            misses.join("; ")
        ))),
    }
}

/// The OpenID Connect Discovery URL, then the RFC 8414 one (§3: the well-known segment
/// goes between host and the issuer's path).
fn discovery_urls(issuer: &Url) -> [String; 2] {
    let base = issuer.as_str().trim_end_matches('/');
    let path = issuer.path().trim_end_matches('/');
    let mut origin = issuer.clone();
    origin.set_path("");
    let origin = origin.as_str().trim_end_matches('/').to_owned();
    [
        format!("{base}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ]
}

fn is_complete(e: &Endpoints) -> bool {
    e.token.is_some()
        && e.device_authorization.is_some()
        && e.authorization.is_some()
        && e.revocation.is_some()
}

/// Fetches one metadata document. `Ok(Err(miss))` when there is none at `url` (4xx).
///
/// # Errors
/// Retryable when unreachable or answering 5xx/429 or malformed JSON; NeedsConfig for
/// another issuer or an unusable endpoint URL.
async fn fetch_metadata(
    client: &reqwest::Client,
    url: &Url,
    configured: &str,
    name: &str,
) -> Result<Result<Endpoints, String>, ProviderError> {
    let answer = http::send(
        client.get(url.clone()).header("Accept", "application/json"),
        "discovery",
    )
    .await?;
    if answer.status.is_server_error() || answer.status == StatusCode::TOO_MANY_REQUESTS {
        return Err(ProviderError::Retryable {
            message: format!(
                "discovery at {} answered {}",
                http::safe_url(url),
                answer.status
            ),
            retry_after: http::retry_after(&answer.headers),
            sent_no_answer: false,
        });
    }
    if !answer.status.is_success() {
        return Ok(Err(format!(
            "{} answered {}",
            http::safe_url(url),
            answer.status
        )));
    }
    let meta: Metadata = serde_json::from_slice(&answer.body).map_err(|e| {
        ProviderError::retryable(format!(
            "discovery at {}: malformed metadata (line {}, column {})",
            http::safe_url(url),
            e.line(),
            e.column()
        ))
    })?;
    check_issuer(meta.issuer.as_deref(), configured, url, name)?;
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
    tracing::info!(provider = %name, metadata = %http::safe_url(url), "discovered provider endpoints");
    Ok(Ok(Endpoints {
        token: url_of(meta.token_endpoint)?,
        device_authorization: url_of(meta.device_authorization_endpoint)?,
        authorization: url_of(meta.authorization_endpoint)?,
        revocation: url_of(meta.revocation_endpoint)?,
    }))
}

/// The metadata's `issuer` must be the configured one, compared as strings; one trailing
/// `/` is ignored (`https://id.example.com` and `https://id.example.com/` are one URL, and
/// tokd builds the same discovery URLs from both).
///
/// # Errors
/// NeedsConfig naming both values.
fn check_issuer(
    found: Option<&str>,
    configured: &str,
    url: &Url,
    name: &str,
) -> Result<(), ProviderError> {
    let trim = |s: &str| s.strip_suffix('/').unwrap_or(s).to_owned();
    let shown = |s: &str| s.chars().take(200).collect::<String>();
    match found {
        Some(found) if trim(found) == trim(configured) => Ok(()),
        Some(found) => Err(ProviderError::NeedsConfig(format!(
            "provider {name:?}: the metadata at {} names issuer {:?}, but the configured \
             issuer is {configured:?}; they must be identical, so none of its endpoints is \
             used (set issuer to the provider's own value if that is the right provider)",
            http::safe_url(url),
            shown(found),
        ))),
        None => Err(ProviderError::NeedsConfig(format!(
            "provider {name:?}: the metadata at {} names no issuer (the configured issuer is \
             {configured:?}); it must, so none of its endpoints is used",
            http::safe_url(url),
        ))),
    }
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

    fn verdict(status: u16, body: &str) -> (&'static str, bool) {
        match interpret(&answer(status, body), 0, None, &[]) {
            Ok(_) => ("ok", false),
            Err(ProviderError::NeedsLogin(_)) => ("login", false),
            Err(ProviderError::NeedsConfig(_)) => ("config", false),
            Err(ProviderError::Retryable { sent_no_answer, .. }) => ("retry", sent_no_answer),
        }
    }

    #[test]
    fn an_error_is_classified_whatever_the_status() {
        assert_eq!(
            verdict(200, r#"{"error":"invalid_grant"}"#),
            ("login", false)
        );
        assert_eq!(
            verdict(200, r#"{"error":"invalid_client"}"#),
            ("config", false)
        );
        // An unknown code: the provider named an error, so it issued nothing.
        assert_eq!(verdict(200, r#"{"error":"weird"}"#), ("retry", false));
        let ok = r#"{"access_token":"a","expires_in":60,"error":null}"#;
        assert_eq!(verdict(200, ok), ("ok", false));
        let empty = r#"{"access_token":"a","expires_in":60,"error":""}"#;
        assert_eq!(verdict(200, empty), ("ok", false));
        assert_eq!(verdict(200, r#"{"error":""}"#), ("retry", true));
    }

    #[test]
    fn gateway_errors_may_have_been_forwarded() {
        assert_eq!(verdict(502, ""), ("retry", true));
        assert_eq!(verdict(504, "<html>timeout</html>"), ("retry", true));
        assert_eq!(verdict(502, r#"{"error":"server_error"}"#), ("retry", true));
        assert_eq!(verdict(503, ""), ("retry", false));
        assert_eq!(
            verdict(500, r#"{"error":"server_error"}"#),
            ("retry", false)
        );
    }

    #[test]
    fn the_issuer_must_be_the_configured_one() {
        let url =
            Url::parse("https://id.example.com/.well-known/openid-configuration").expect("url");
        let check =
            |found: Option<&str>, configured: &str| check_issuer(found, configured, &url, "p");
        assert!(check(Some("https://id.example.com"), "https://id.example.com").is_ok());
        assert!(check(Some("https://id.example.com/"), "https://id.example.com").is_ok());
        assert!(
            check(
                Some("https://id.example.com/t/a"),
                "https://id.example.com/t/a/"
            )
            .is_ok()
        );
        for (found, configured) in [
            (Some("https://evil.example.com"), "https://id.example.com"),
            (Some("https://ID.example.com"), "https://id.example.com"),
            (
                Some("https://id.example.com/t/b"),
                "https://id.example.com/t/a",
            ),
            (Some("https://id.example.com//"), "https://id.example.com"),
            (None, "https://id.example.com"),
        ] {
            match check(found, configured) {
                Err(ProviderError::NeedsConfig(m)) => {
                    assert!(m.contains(configured), "{m}");
                    if let Some(found) = found {
                        assert!(m.contains(found), "{m}");
                    }
                }
                other => panic!("{found:?} vs {configured}: {other:?}"),
            }
        }
    }

    #[test]
    fn discovery_urls_insert_the_well_known_segment() {
        let urls = discovery_urls(&Url::parse("https://id.example.com/tenant/").expect("url"));
        assert_eq!(
            urls,
            [
                "https://id.example.com/tenant/.well-known/openid-configuration",
                "https://id.example.com/.well-known/oauth-authorization-server/tenant",
            ]
        );
    }

    #[test]
    fn basic_auth_parts_are_form_encoded() {
        assert_eq!(form_urlencode("a b:c"), "a+b%3Ac");
    }
}
