//! Providers: how a token is obtained. Built from the config; the only code that talks
//! HTTP to identity providers (see [`http`]).
//!
//! A provider answers every request with tokens or a [`ProviderError`] that already says
//! what the engine must do: retry with backoff, stop until a login, or stop until a config
//! fix.

pub mod http;
pub mod json;
pub mod oauth2;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokd_protocol::{EpochMs, Secret};
use tokio::sync::Semaphore;
use url::Url;

use crate::config::{AuthMethod, Config, ConfigError, Grant, ProviderConfig, ProviderKind};
use crate::sessions::import::{TokenSet, parse_token_response};

/// Default cap on one provider's refreshes in flight.
pub const DEFAULT_PER_PROVIDER_CONCURRENCY: usize = 4;

/// What a failed token request means for the session.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ProviderError {
    /// Worth retrying with backoff: connect errors, timeouts, 5xx, 429, malformed answers.
    #[error("{message}")]
    Retryable {
        /// What happened (never a secret).
        message: String,
        /// The provider's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// The request left but no answer came: the provider may have rotated already.
        sent_no_answer: bool,
    },
    /// Refreshing can never succeed (`invalid_grant`, …): the refresh token must be dropped.
    #[error("{0}")]
    NeedsLogin(String),
    /// The provider rejects the client or the config is wrong; fixing the config revives it.
    #[error("{0}")]
    NeedsConfig(String),
}

impl ProviderError {
    /// A retryable failure without `Retry-After`.
    pub fn retryable(message: impl Into<String>) -> Self {
        ProviderError::Retryable {
            message: message.into(),
            retry_after: None,
            sent_no_answer: false,
        }
    }

    /// A successful status whose body is unusable: the provider acted on the request (and may
    /// have rotated the refresh token), so the outcome is as unknown as with no answer.
    pub fn unusable_answer(message: impl Into<String>) -> Self {
        ProviderError::Retryable {
            message: format!(
                "{}; the provider may have acted on the request",
                message.into()
            ),
            retry_after: None,
            sent_no_answer: true,
        }
    }

    /// The same error, known not to have reached a token endpoint.
    pub fn nothing_sent(self) -> Self {
        match self {
            ProviderError::Retryable {
                message,
                retry_after,
                ..
            } => ProviderError::Retryable {
                message,
                retry_after,
                sent_no_answer: false,
            },
            other => other,
        }
    }

    /// The stable code a client is told for this failure.
    pub fn code(&self) -> tokd_protocol::ErrorCode {
        use tokd_protocol::ErrorCode;
        match self {
            ProviderError::Retryable { .. } => ErrorCode::RefreshFailed,
            ProviderError::NeedsLogin(_) => ErrorCode::NeedsLogin,
            ProviderError::NeedsConfig(_) => ErrorCode::NeedsConfig,
        }
    }

    /// Whether the request may have been acted on without us learning the result.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ProviderError::Retryable {
                sent_no_answer: true,
                ..
            }
        )
    }
}

/// The values of headers that look like credentials (`Authorization`, `Cookie`, names with
/// `key`, `token`, `secret`, `auth`, `password` or `session`), to blank out of provider text
/// along with the tokens a request carried.
pub fn secret_header_values(headers: &std::collections::BTreeMap<String, String>) -> Vec<&str> {
    const HINTS: [&str; 7] = [
        "auth", "cookie", "key", "token", "secret", "password", "session",
    ];
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            HINTS.iter().any(|h| name.contains(h))
        })
        .map(|(_, value)| value.as_str())
        .collect()
}

/// What to ask the token endpoint for.
#[derive(Debug)]
pub enum TokenGrant<'a> {
    /// RFC 6749 §6: exchange a refresh token.
    Refresh {
        /// The refresh token.
        refresh_token: &'a Secret,
    },
    /// RFC 6749 §4.4: a fresh grant for the client itself.
    ClientCredentials,
    /// RFC 8628 §3.4: poll for the tokens of an approved device code.
    DeviceCode {
        /// The device code.
        device_code: &'a Secret,
    },
    /// RFC 6749 §4.1.3 with RFC 7636: exchange an authorization code.
    AuthorizationCode {
        /// The code from the redirect.
        code: &'a Secret,
        /// The redirect URI the code was issued for.
        redirect_uri: &'a str,
        /// The PKCE verifier.
        code_verifier: &'a Secret,
    },
}

/// Everything a token request needs besides the provider.
#[derive(Debug)]
pub struct TokenRequest<'a> {
    /// What to ask for.
    pub grant: TokenGrant<'a>,
    /// The session's attributes (for JSON request templates).
    pub attrs: &'a [(String, String)],
    /// The session's extra headers.
    pub session_headers: &'a std::collections::BTreeMap<String, String>,
    /// The origin the refresh token is bound to, if known.
    pub bound_origin: Option<&'a str>,
    /// Wall-clock time the request is sent; `expires_in` counts from it.
    pub sent_at: EpochMs,
}

/// Tokens from a successful request, and where they came from.
#[derive(Debug)]
pub struct Obtained {
    /// The tokens; expiry counted from when the request was sent.
    pub tokens: TokenSet,
    /// Origin of the token endpoint, to bind the refresh token to.
    pub origin: String,
}

/// Endpoints of a provider, configured or discovered.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// The token endpoint.
    pub token: Option<Url>,
    /// RFC 8628 device authorization endpoint.
    pub device_authorization: Option<Url>,
    /// Authorization endpoint (browser login).
    pub authorization: Option<Url>,
    /// RFC 7009 revocation endpoint.
    pub revocation: Option<Url>,
}

/// One configured provider with its runtime state.
#[derive(Debug)]
pub struct Provider {
    /// Its name in the config.
    pub name: String,
    /// Its configuration.
    pub config: ProviderConfig,
    /// The client secret, inline or read from its file at load.
    pub client_secret: Option<Secret>,
    /// How long before expiry its sessions are refreshed.
    pub refresh_ahead: Duration,
    /// Cap on this provider's refreshes in flight.
    pub semaphore: Arc<Semaphore>,
    /// Discovered endpoints, fetched once (again later when a document was unreadable).
    discovered: tokio::sync::Mutex<Option<CachedDiscovery>>,
}

/// How long endpoints from an incomplete discovery (one document unreadable for a passing
/// reason) are used before discovery is tried again.
const REDISCOVER_AFTER: Duration = Duration::from_secs(300);

/// Endpoints found by discovery.
#[derive(Debug)]
struct CachedDiscovery {
    endpoints: Endpoints,
    /// When to discover again; `None` once both documents were read (or found absent).
    ask_again_at: Option<std::time::Instant>,
}

impl Provider {
    /// The grant this provider refreshes with.
    pub fn grant(&self) -> Grant {
        self.config.grant
    }

    /// The client authentication method (basic, unless no secret is set: then none).
    pub fn auth_method(&self) -> AuthMethod {
        self.config
            .auth_method
            .unwrap_or(if self.client_secret.is_some() {
                AuthMethod::ClientSecretBasic
            } else {
                AuthMethod::None
            })
    }

    /// The lifetime assumed when an answer says nothing about expiry.
    pub fn default_lifetime(&self) -> Option<Duration> {
        self.config.default_lifetime.map(|d| d.0)
    }

    /// Total time one token request may take.
    pub fn request_timeout(&self) -> Duration {
        self.config
            .request_timeout
            .map_or(http::REQUEST_TIMEOUT, |d| d.0)
    }

    /// The origin a refresh token imported for this provider is bound to, when it is known
    /// without network access (a configured token endpoint or refresh URL).
    pub fn static_origin(&self) -> Option<String> {
        let url = match self.config.kind {
            ProviderKind::Oauth2 => self.config.token_endpoint.as_deref(),
            ProviderKind::Json => self.config.refresh_url.as_deref(),
        };
        url.and_then(|u| Url::parse(u).ok())
            .map(|u| http::origin(&u))
    }

    /// Reads a token response given to `tokd add`, in this provider's answer format.
    ///
    /// # Errors
    /// A message saying what is missing or malformed (never quoting the input).
    pub fn parse_import(&self, text: &str, now: EpochMs) -> Result<TokenSet, String> {
        match self.config.kind {
            ProviderKind::Oauth2 => {
                parse_token_response(text, now, self.default_lifetime()).map_err(|e| e.to_string())
            }
            // The backend's own shape first; the generic RFC 6749 shape as a fallback.
            ProviderKind::Json => json::ResponseMap::of(&self.config)
                .parse(text.as_bytes(), now, self.default_lifetime())
                .or_else(|_| parse_token_response(text, now, self.default_lifetime()))
                .map_err(|e| e.to_string()),
        }
    }

    /// Where token requests go: the configured token endpoint or refresh URL, else the
    /// discovered token endpoint. Resolved before a refresh is marked in flight, so a slow
    /// discovery never sits between the mark and the request.
    ///
    /// # Errors
    /// NeedsConfig for a missing or unusable URL; Retryable when discovery is unreachable.
    pub async fn target(&self, client: &reqwest::Client) -> Result<Url, ProviderError> {
        let (field, configured) = match self.config.kind {
            ProviderKind::Oauth2 => ("token_endpoint", self.config.token_endpoint.as_deref()),
            ProviderKind::Json => ("refresh_url", self.config.refresh_url.as_deref()),
        };
        if let Some(url) = self.configured_url(field, configured)? {
            return Ok(url);
        }
        self.endpoints(client).await?.token.ok_or_else(|| {
            ProviderError::NeedsConfig(format!(
                "provider {:?} has no token endpoint (set token_endpoint, or an issuer whose \
                 discovery document names one)",
                self.name
            ))
        })
    }

    /// Refuses to send a refresh token to any origin but the one it is bound to.
    ///
    /// # Errors
    /// NeedsConfig when `url` is on another origin.
    pub fn check_binding(
        &self,
        url: &Url,
        bound_origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        let origin = http::origin(url);
        match bound_origin {
            Some(bound) if bound != origin => Err(ProviderError::NeedsConfig(format!(
                "the refresh token was issued for {bound} but provider {:?} now points to \
                 {origin}; it is never sent elsewhere (restore the endpoint, or log in again)",
                self.name
            ))),
            _ => Ok(()),
        }
    }

    /// Resolves the target and sends one token request ([`Provider::target`] +
    /// [`Provider::send`]).
    ///
    /// # Errors
    /// A classified [`ProviderError`].
    pub async fn request_token(
        &self,
        client: &reqwest::Client,
        req: TokenRequest<'_>,
    ) -> Result<Obtained, ProviderError> {
        let url = self.target(client).await?;
        if matches!(req.grant, TokenGrant::Refresh { .. }) {
            self.check_binding(&url, req.bound_origin)?;
        }
        self.send(client, &url, req).await
    }

    /// Sends one token request to `url` (already resolved and checked).
    ///
    /// # Errors
    /// A classified [`ProviderError`].
    pub async fn send(
        &self,
        client: &reqwest::Client,
        url: &Url,
        req: TokenRequest<'_>,
    ) -> Result<Obtained, ProviderError> {
        let headers = self.headers_for(req.session_headers);
        let tokens = match (self.config.kind, &req.grant) {
            (ProviderKind::Json, TokenGrant::Refresh { refresh_token }) => {
                json::refresh(
                    self,
                    client,
                    url,
                    refresh_token,
                    req.attrs,
                    &headers,
                    req.sent_at,
                )
                .await?
            }
            (ProviderKind::Json, _) => {
                return Err(ProviderError::NeedsConfig(format!(
                    "provider {:?} is a json refresh endpoint; it can only refresh (log in \
                     through the backend and import the answer with `tokd add`)",
                    self.name
                )));
            }
            (ProviderKind::Oauth2, grant) => {
                oauth2::token_request(self, client, url, grant, &headers, req.sent_at).await?
            }
        };
        Ok(Obtained {
            tokens,
            origin: http::origin(url),
        })
    }

    /// The provider's headers with the session's on top (the session wins on a clash).
    fn headers_for(
        &self,
        session_headers: &std::collections::BTreeMap<String, String>,
    ) -> std::collections::BTreeMap<String, String> {
        let mut headers = self.config.headers.clone();
        headers.extend(session_headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        headers
    }

    /// The provider's endpoints: configured ones, completed by discovery (fetched once and
    /// cached; a failed discovery is retried next time).
    ///
    /// # Errors
    /// Retryable when discovery could not be reached, NeedsConfig when it answers nonsense.
    pub async fn endpoints(&self, client: &reqwest::Client) -> Result<Endpoints, ProviderError> {
        let configured = self.configured_endpoints()?;
        let Some(issuer) = self.config.issuer.as_deref() else {
            return Ok(configured);
        };
        if configured.token.is_some()
            && configured.revocation.is_some()
            && configured.device_authorization.is_some()
            && configured.authorization.is_some()
        {
            return Ok(configured);
        }
        let discovered = self.discovered(client, issuer).await?;
        Ok(Endpoints {
            token: configured.token.or(discovered.token),
            device_authorization: configured
                .device_authorization
                .or(discovered.device_authorization),
            authorization: configured.authorization.or(discovered.authorization),
            revocation: configured.revocation.or(discovered.revocation),
        })
    }

    /// A configured URL, checked (https, or http to loopback).
    fn configured_url(
        &self,
        field: &str,
        value: Option<&str>,
    ) -> Result<Option<Url>, ProviderError> {
        value
            .map(|u| {
                let url = Url::parse(u).map_err(|e| {
                    ProviderError::NeedsConfig(format!(
                        "provider {:?}: {field} {u:?} is not a URL: {e}",
                        self.name
                    ))
                })?;
                http::check_secure(&url).map_err(|e| {
                    ProviderError::NeedsConfig(format!("provider {:?}: {e}", self.name))
                })?;
                Ok(url)
            })
            .transpose()
    }

    fn configured_endpoints(&self) -> Result<Endpoints, ProviderError> {
        let c = &self.config;
        Ok(Endpoints {
            token: self.configured_url("token_endpoint", c.token_endpoint.as_deref())?,
            device_authorization: self.configured_url(
                "device_authorization_endpoint",
                c.device_authorization_endpoint.as_deref(),
            )?,
            authorization: self.configured_url(
                "authorization_endpoint",
                c.authorization_endpoint.as_deref(),
            )?,
            revocation: self
                .configured_url("revocation_endpoint", c.revocation_endpoint.as_deref())?,
        })
    }

    /// The discovered endpoints: fetched once and cached (again after a while when the
    /// last discovery was not complete); what an earlier discovery found serves until a new
    /// one succeeds.
    async fn discovered(
        &self,
        client: &reqwest::Client,
        issuer: &str,
    ) -> Result<Endpoints, ProviderError> {
        let mut cache = self.discovered.lock().await;
        let stale = cache.as_ref().is_none_or(|c| {
            c.ask_again_at
                .is_some_and(|at| at <= std::time::Instant::now())
        });
        if stale {
            let url = self
                .configured_url("issuer", Some(issuer))?
                .ok_or_else(|| ProviderError::NeedsConfig("issuer missing".into()))?;
            // A discovery request carries no secret and rotates nothing.
            match oauth2::discover(client, &url, issuer, &self.name).await {
                Ok(found) => {
                    *cache = Some(CachedDiscovery {
                        ask_again_at: (!found.settled)
                            .then(|| std::time::Instant::now() + REDISCOVER_AFTER),
                        endpoints: found.endpoints,
                    });
                }
                Err(e) if cache.is_none() => return Err(e.nothing_sent()),
                Err(e) => {
                    tracing::debug!(provider = %self.name, error = %e, "discovery again failed; keeping the endpoints found before");
                    if let Some(c) = cache.as_mut() {
                        c.ask_again_at = Some(std::time::Instant::now() + REDISCOVER_AFTER);
                    }
                }
            }
        }
        Ok(cache
            .as_ref()
            .map(|c| c.endpoints.clone())
            .unwrap_or_default())
    }
}

/// Every configured provider, by name, and the HTTP client they share.
#[derive(Debug)]
pub struct Providers {
    /// The shared HTTP client.
    pub client: reqwest::Client,
    by_name: HashMap<String, Arc<Provider>>,
}

impl Providers {
    /// Builds providers from the config; client secrets in files are read now.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when a secret file cannot be read or the HTTP client cannot
    /// be built.
    pub fn from_config(config: &Config) -> Result<Providers, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: config.config_file.clone(),
            message,
        };
        let client = http::client().map_err(invalid)?;
        let mut by_name = HashMap::new();
        for (name, p) in &config.providers {
            let client_secret = match (&p.client_secret, &p.client_secret_file) {
                (Some(s), _) => Some(s.clone()),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        invalid(format!(
                            "[providers.{name}]: cannot read client_secret_file {}: {e}",
                            path.display()
                        ))
                    })?;
                    Some(Secret::new(text.trim_end_matches(['\n', '\r']).to_owned()))
                }
                (None, None) => None,
            };
            let provider = Provider {
                name: name.clone(),
                config: p.clone(),
                client_secret,
                refresh_ahead: p.refresh_ahead.map_or(config.refresh_ahead, |d| d.0),
                semaphore: Arc::new(Semaphore::new(
                    p.max_concurrent_refreshes
                        .unwrap_or(DEFAULT_PER_PROVIDER_CONCURRENCY)
                        .max(1),
                )),
                discovered: tokio::sync::Mutex::new(None),
            };
            by_name.insert(name.clone(), Arc::new(provider));
        }
        Ok(Providers { client, by_name })
    }

    /// The longest `request_timeout` of any provider: how long shutdown may have to wait
    /// for a request that was sent.
    pub fn longest_request_timeout(&self) -> Duration {
        self.by_name
            .values()
            .map(|p| p.request_timeout())
            .max()
            .unwrap_or(http::REQUEST_TIMEOUT)
    }

    /// A printable, credential-free description of the proxy identity providers are
    /// reached through (`https via http://proxy.corp:3128 (no_proxy: …)`), `None` when
    /// they are reached directly: for `tokd status` (see [`http::proxy_description`]).
    pub fn proxy_description(&self) -> Option<String> {
        http::proxy_description()
    }

    /// The provider of that name.
    pub fn get(&self, name: &str) -> Option<Arc<Provider>> {
        self.by_name.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_like_headers_are_secrets() {
        let headers: std::collections::BTreeMap<String, String> = [
            ("Authorization", "Bearer abc"),
            ("X-Api-Key", "k1"),
            ("X-Session-Id", "s1"),
            ("Cookie", "c=1"),
            ("X-Tenant-Id", "acme"),
            ("Accept-Language", "en"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut got = secret_header_values(&headers);
        got.sort_unstable();
        assert_eq!(got, ["Bearer abc", "c=1", "k1", "s1"]);
    }
}
