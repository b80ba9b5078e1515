//! [`BearerClient`]: `reqwest` requests with a session's bearer, retried once after a `401`
//! with a token tokd has just refreshed (feature `reqwest`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokd::reqwest::Error> {
//! // reqwest is built with `rustls-no-provider`: install a crypto provider for https first,
//! // e.g. `rustls::crypto::ring::default_provider().install_default()`.
//! let http = reqwest::Client::new();
//! let api = tokd::reqwest::BearerClient::new(http, tokd::Agent::new(), "work");
//! let response = api.send(api.get("https://api.example.com/v1/me")).await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```
//!
//! # The retry rule
//! A request is sent at most twice. When the first answer is `401 Unauthorized`, the
//! session is refreshed by force (the daemon's `refresh`, unless another request already
//! got a newer token meanwhile) and the request goes out once more with the new token;
//! whatever that second answer is, a `401` included, it is returned as it is. There is no
//! second retry, so a server that refuses every token costs two requests, not a loop.
//!
//! The request is repeated only when it can be: [`reqwest::RequestBuilder::try_clone`]
//! must succeed, which it does unless the body is a stream. A request that cannot be
//! cloned is sent once and its `401` returned. The refresh is also skipped (and the `401`
//! returned) when it yields the same token that was refused.

use std::sync::Arc;
use std::time::Duration;

use ::reqwest::{Client as HttpClient, IntoUrl, Method, RequestBuilder, Response, StatusCode};
use thiserror::Error;
use tokd_protocol::Secret;
use tokio::sync::Mutex;

use crate::{Agent, ClientError};

/// The validity a [`BearerClient`] asks for by default (`min_valid` of its `get`s).
pub const DEFAULT_MIN_VALID: Duration = Duration::from_secs(30);

/// Why [`BearerClient::send`] failed.
#[derive(Debug, Error)]
pub enum Error {
    /// No token could be had from tokd (not running, `needs_login`, a failed refresh, …).
    #[error("cannot get a token from tokd: {0}")]
    Tokd(#[from] ClientError),
    /// The HTTP request failed (connection, timeout, an invalid request, …).
    #[error("HTTP request failed: {0}")]
    Http(#[from] ::reqwest::Error),
}

/// A `reqwest::Client` that authenticates every request with the bearer of one tokd
/// session, and on `401 Unauthorized` retries exactly once with a refreshed token (see the
/// [module docs](self) for the rule).
///
/// Cloning is cheap and clones share the HTTP client and the [`Agent`] (one connection to
/// tokd). Several `BearerClient`s for different sessions may share one agent through
/// [`BearerClient::with_shared_agent`].
#[derive(Debug, Clone)]
pub struct BearerClient {
    http: HttpClient,
    agent: Arc<Mutex<Agent>>,
    session: String,
    min_valid: Duration,
}

impl BearerClient {
    /// Authenticates requests made with `http` as session `session`, asking `agent` for the
    /// tokens.
    pub fn new(http: HttpClient, agent: Agent, session: impl Into<String>) -> BearerClient {
        BearerClient::with_shared_agent(http, Arc::new(Mutex::new(agent)), session)
    }

    /// [`BearerClient::new`] with an agent shared with other users.
    pub fn with_shared_agent(
        http: HttpClient,
        agent: Arc<Mutex<Agent>>,
        session: impl Into<String>,
    ) -> BearerClient {
        BearerClient {
            http,
            agent,
            session: session.into(),
            min_valid: DEFAULT_MIN_VALID,
        }
    }

    /// This client asking for tokens valid for at least `min_valid` (default 30 s): long
    /// requests or uploads may want more.
    #[must_use]
    pub fn min_valid(mut self, min_valid: Duration) -> BearerClient {
        self.min_valid = min_valid;
        self
    }

    /// The HTTP client underneath.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The agent that supplies the tokens.
    pub fn agent(&self) -> &Arc<Mutex<Agent>> {
        &self.agent
    }

    /// The session whose bearer is used.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Starts a request on the underlying client (pass it to [`BearerClient::send`]).
    pub fn request<U: IntoUrl>(&self, method: Method, url: U) -> RequestBuilder {
        self.http.request(method, url)
    }

    /// Starts a `GET` request (pass it to [`BearerClient::send`]).
    pub fn get<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.http.get(url)
    }

    /// Starts a `POST` request (pass it to [`BearerClient::send`]).
    pub fn post<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.http.post(url)
    }

    /// Sends `request` with `Authorization: Bearer <token>`; on a `401`, refreshes the
    /// session and sends it once more if it can be cloned. Do not set `Authorization` on
    /// the request yourself.
    ///
    /// # Errors
    /// [`Error::Tokd`] when tokd has no token (or the forced refresh fails, e.g. the
    /// session needs a login); [`Error::Http`] when a request fails. HTTP error statuses
    /// are answers, not errors: they come back as `Ok`.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, Error> {
        let again = request.try_clone();
        let refused = self.token().await?;
        let response = request.bearer_auth(refused.expose()).send().await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(again) = again else {
            return Ok(response);
        };
        let Some(fresh) = self.replacement_for(&refused).await? else {
            return Ok(response);
        };
        drop(response);
        Ok(again.bearer_auth(fresh.expose()).send().await?)
    }

    async fn token(&self) -> Result<Secret, ClientError> {
        let mut agent = self.agent.lock().await;
        Ok(agent
            .token(&self.session, self.min_valid)
            .await?
            .access_token)
    }

    /// A token other than `refused`: the current one if someone already replaced it, else
    /// one from a forced refresh; `None` if even that gives `refused` back.
    async fn replacement_for(&self, refused: &Secret) -> Result<Option<Secret>, ClientError> {
        // Holding the lock, concurrent 401s wait here and then find the new token, instead
        // of forcing one refresh each.
        let mut agent = self.agent.lock().await;
        let current = agent.token(&self.session, self.min_valid).await?;
        if current.access_token != *refused {
            return Ok(Some(current.access_token));
        }
        agent.refresh(&self.session).await?;
        let fresh = agent.token(&self.session, self.min_valid).await?;
        Ok((fresh.access_token != *refused).then_some(fresh.access_token))
    }
}
