//! A real OpenID provider for the end-to-end tests: panva's `oidc-provider` (pinned in
//! `tests/idp/package.json`) run by `node tests/idp/idp.mjs` on an ephemeral `127.0.0.1`
//! port over plain http, with in-memory storage, rotating refresh tokens (reuse of a
//! rotated one revokes the whole grant) and test-only control routes under `/test/`.
//!
//! Needs Node.js ≥ 20 and npm on `PATH`; the first [`TestIdp::start`] of a test process runs
//! `npm ci` in `tests/idp` when `node_modules` is missing or older than the lock file.
//!
//! Login flows complete without a human:
//! - Authorization code with PKCE: every client is native (RFC 8252), so its registered
//!   `http://127.0.0.1/callback` accepts `http://127.0.0.1:<any port>/callback`, and the
//!   provider finishes every interaction itself, logging in `alice` and consenting to all
//!   requested scopes. [`TestIdp::play_browser`] follows the redirects, cookies included,
//!   into the client's redirect URI. Mind OpenID Connect Core §11, which oidc-provider
//!   enforces: `offline_access` (hence a refresh token) is granted only with `prompt=consent`
//!   (see [`TestIdp::set_offline_access_needs_consent_prompt`]).
//! - Device authorization grant: [`TestIdp::approve_device`] and [`TestIdp::deny_device`]
//!   act as the user entering the user code; the device authorization response carries
//!   `interval: 1` (see [`TestIdp::set_device_interval`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::{Value, json};

/// How long [`TestIdp::start`] waits for the readiness line.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What is needed to run the provider, for error messages.
const NEEDS_NODE: &str = "Node.js >= 20 and npm are needed for the end-to-end tests \
     (they run a real OpenID provider, tests/idp/idp.mjs)";

/// Counters of the provider's token endpoint (`/token`), all grant types.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdpStats {
    /// Every POST to the token endpoint.
    pub token_requests: u64,
    /// Requests with `grant_type=refresh_token`, successful or not.
    pub refresh_requests: u64,
    /// Requests with `grant_type=client_credentials`, successful or not.
    pub client_credentials_requests: u64,
    /// Requests with `grant_type=urn:ietf:params:oauth:grant-type:device_code` (polls),
    /// successful or not, including those answered `slow_down` by
    /// [`TestIdp::set_device_slow_down`].
    pub device_code_requests: u64,
    /// Requests answered with a 4xx/5xx status.
    pub failed_requests: u64,
    /// Requests being handled right now (including the artificial delay).
    pub in_flight: u64,
    /// The highest `in_flight` seen since start or the last reset.
    pub max_in_flight: u64,
}

/// A running test provider; stopped (SIGTERM, then SIGKILL after 5 s) on drop.
#[derive(Debug)]
pub struct TestIdp {
    child: Option<Child>,
    /// Kept open: the provider exits when its stdin closes, so it never outlives the tests.
    stdin: Option<ChildStdin>,
    issuer: String,
    endpoints: Endpoints,
    agent: ureq::Agent,
    dir: tempfile::TempDir,
}

/// Endpoints from the provider's discovery document.
#[derive(Debug, Default)]
struct Endpoints {
    token: String,
    authorization: String,
    device_authorization: String,
    revocation: String,
}

/// What [`TestIdp::browse`] ended at: the first answer that is not a redirect.
#[derive(Debug, Clone)]
pub struct BrowserVisit {
    /// The URL of that answer (the client's redirect URI when the provider let the user
    /// through).
    pub url: String,
    /// Its status.
    pub status: u16,
    /// Its body.
    pub body: String,
    /// The URLs that answered with a redirect before it, in order.
    pub redirects: Vec<String>,
}

/// How many redirects [`TestIdp::browse`] follows.
const MAX_BROWSER_REDIRECTS: usize = 20;

/// The directory holding `idp.mjs` and its `package.json`.
pub fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("idp")
}

/// An HTTP agent for talking to the provider: plain http, 4xx/5xx answers returned as
/// responses (not errors), 30 s timeout per request.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// The `Authorization` header value for HTTP Basic client authentication (RFC 6749 §2.3.1;
/// the id and secret are used as given, as the test clients' ones need no form-encoding).
pub fn basic_auth(client_id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64(format!("{client_id}:{secret}").as_bytes())
    )
}

/// Base64url without padding (RFC 4648 §5, as RFC 7636 and JWTs use it).
pub fn base64url(input: &[u8]) -> String {
    base64_with(
        input,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        false,
    )
}

fn base64(input: &[u8]) -> String {
    base64_with(
        input,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    )
}

fn base64_with(input: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> shift) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Runs `npm ci` in `tests/idp` once per test process, when needed.
fn ensure_installed() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| install().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn install() -> Result<()> {
    check_tool("node")?;
    let dir = idp_dir();
    let lock = dir.join("package-lock.json");
    // npm writes node_modules/.package-lock.json on every install.
    let installed = mtime(&dir.join("node_modules/.package-lock.json"))
        .or_else(|| mtime(&dir.join("node_modules/oidc-provider/package.json")));
    let fresh = match (installed, mtime(&lock)) {
        (Some(installed), Some(lock)) => installed >= lock,
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    check_tool("npm")?;
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running npm ci in {}; {NEEDS_NODE}", dir.display()))?;
    if !out.status.success() {
        bail!(
            "npm ci in {} failed ({}):\n{}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Fails with a clear message when `tool --version` cannot run.
fn check_tool(tool: &str) -> Result<()> {
    match Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => bail!("`{tool} --version` failed ({}); {NEEDS_NODE}", out.status),
        Err(e) => bail!("cannot run `{tool}` ({e}); {NEEDS_NODE}"),
    }
}

/// Reads a response body as JSON, with the status and text in the error.
fn json_body(mut resp: ureq::http::Response<ureq::Body>, what: &str) -> Result<(u16, Value)> {
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("{what}: reading the body"))?;
    let value = serde_json::from_str(&text)
        .with_context(|| format!("{what}: answer ({status}) is not JSON: {text}"))?;
    Ok((status, value))
}

impl TestIdp {
    /// Starts a provider (after `npm ci` when needed) and waits for its readiness line.
    ///
    /// # Errors
    /// When Node.js or npm is missing, `npm ci` fails, or the provider does not report ready
    /// within 90 s; the error holds the provider's log.
    pub fn start() -> Result<TestIdp> {
        ensure_installed()?;
        let dir = tempfile::Builder::new().prefix("tokd-idp-").tempdir()?;
        let log_path = dir.path().join("idp.log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new("node")
            .arg("idp.mjs")
            .current_dir(idp_dir())
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning node idp.mjs; {NEEDS_NODE}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the provider's stdout")?;
        let mut idp = TestIdp {
            child: Some(child),
            stdin,
            issuer: String::new(),
            endpoints: Endpoints::default(),
            agent: agent(),
            dir,
        };
        idp.issuer = idp.wait_ready(stdout)?;
        idp.endpoints = idp.discover()?;
        Ok(idp)
    }

    /// Reads stdout (in a thread, which keeps draining it) until the readiness line.
    fn wait_ready(&mut self, stdout: std::process::ChildStdout) -> Result<String> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Once nobody listens, keep draining so the child never blocks on stdout.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["ready"] == true
                        && let Some(issuer) = v["issuer"].as_str()
                    {
                        return Ok(issuer.to_owned());
                    }
                    bail!(
                        "unexpected line on the provider's stdout: {line}\n{}",
                        self.log()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().map(Child::wait).transpose()?;
                    bail!(
                        "the provider exited ({status:?}) before it was ready:\n{}",
                        self.log()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(child) = self.child.as_mut()
                        && let Some(status) = child.try_wait()?
                    {
                        bail!(
                            "the provider exited ({status}) before it was ready:\n{}",
                            self.log()
                        );
                    }
                    if Instant::now() >= deadline {
                        bail!(
                            "the provider was not ready within {} s:\n{}",
                            READY_TIMEOUT.as_secs(),
                            self.log()
                        );
                    }
                }
            }
        }
    }

    /// The endpoints from the RFC 8414 metadata (always served, unlike the OpenID discovery
    /// document).
    fn discover(&self) -> Result<Endpoints> {
        let url = format!("{}/.well-known/oauth-authorization-server", self.issuer);
        let resp = self.agent.get(&url).call().context("fetching discovery")?;
        let (status, meta) = json_body(resp, "discovery")?;
        if status != 200 {
            bail!("discovery answered {status}: {meta}");
        }
        let endpoint = |key: &str| {
            meta[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("discovery has no {key}: {meta}"))
        };
        Ok(Endpoints {
            token: endpoint("token_endpoint")?,
            authorization: endpoint("authorization_endpoint")?,
            device_authorization: endpoint("device_authorization_endpoint")?,
            revocation: endpoint("revocation_endpoint")?,
        })
    }

    /// The issuer, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token endpoint from discovery (`{issuer}/token`).
    pub fn token_endpoint(&self) -> String {
        self.endpoints.token.clone()
    }

    /// The authorization endpoint from discovery (`{issuer}/auth`).
    pub fn authorization_endpoint(&self) -> String {
        self.endpoints.authorization.clone()
    }

    /// The RFC 8628 device authorization endpoint from discovery (`{issuer}/device/auth`).
    pub fn device_authorization_endpoint(&self) -> String {
        self.endpoints.device_authorization.clone()
    }

    /// The RFC 7009 revocation endpoint from discovery (`{issuer}/token/revocation`).
    pub fn revocation_endpoint(&self) -> String {
        self.endpoints.revocation.clone()
    }

    /// POSTs a JSON body to a `/test/` control route and returns the JSON answer.
    fn control(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/test/{path}", self.issuer);
        let resp = self
            .agent
            .post(&url)
            .send_json(body)
            .with_context(|| format!("POST /test/{path}"))?;
        let (status, value) = json_body(resp, path)?;
        if status != 200 {
            bail!("POST /test/{path} answered {status}: {value}");
        }
        Ok(value)
    }

    /// Creates a grant for `sub` "alice" directly (no login) and returns the RFC 6749 token
    /// response JSON: `access_token`, `token_type`, `expires_in`, `scope`, plus
    /// `refresh_token` when `scope` holds `offline_access` and `id_token` when it holds
    /// `openid`. The refresh token works at the real token endpoint with the client's auth.
    ///
    /// # Errors
    /// Transport errors and refusals (unknown client or scope).
    pub fn mint(&self, client_id: &str, scope: &str) -> Result<String> {
        let value = self.control(
            "grant",
            &json!({"client_id": client_id, "scope": scope, "sub": "alice"}),
        )?;
        Ok(value.to_string())
    }

    /// The token endpoint's counters.
    ///
    /// # Errors
    /// Transport errors.
    pub fn stats(&self) -> Result<IdpStats> {
        let url = format!("{}/test/stats", self.issuer);
        let resp = self.agent.get(&url).call().context("GET /test/stats")?;
        let (status, value) = json_body(resp, "stats")?;
        if status != 200 {
            bail!("GET /test/stats answered {status}: {value}");
        }
        Ok(serde_json::from_value(value)?)
    }

    /// Every credential the provider has handed out since it started: access, refresh,
    /// client-credentials and ID tokens, device and authorization codes, rotated and revoked
    /// ones included.
    ///
    /// # Errors
    /// Transport errors.
    pub fn issued(&self) -> Result<Vec<String>> {
        let url = format!("{}/test/issued", self.issuer);
        let resp = self.agent.get(&url).call().context("GET /test/issued")?;
        let (status, value) = json_body(resp, "issued")?;
        if status != 200 {
            bail!("GET /test/issued answered {status}: {value}");
        }
        Ok(serde_json::from_value(value["tokens"].clone())?)
    }

    /// Zeroes the counters (requests still running stay counted in `in_flight`).
    ///
    /// # Errors
    /// Transport errors.
    pub fn reset_stats(&self) -> Result<()> {
        self.control("stats/reset", &json!({})).map(drop)
    }

    /// Sets the lifetime of access tokens (both kinds) issued from now on; at least 1 s.
    ///
    /// # Errors
    /// Transport errors and a zero `secs`.
    pub fn set_access_ttl(&self, secs: u64) -> Result<()> {
        self.control("config", &json!({"access_ttl": secs}))
            .map(drop)
    }

    /// Delays every token-endpoint request by `ms` before it is handled (0: no delay).
    ///
    /// # Errors
    /// Transport errors.
    pub fn set_token_delay(&self, ms: u64) -> Result<()> {
        self.control("config", &json!({"token_delay_ms": ms}))
            .map(drop)
    }

    /// Whether `/.well-known/openid-configuration` answers (404 when disabled);
    /// `/.well-known/oauth-authorization-server` always does.
    ///
    /// # Errors
    /// Transport errors.
    pub fn set_openid_configuration(&self, enabled: bool) -> Result<()> {
        self.control("config", &json!({"openid_configuration": enabled}))
            .map(drop)
    }

    /// The `interval` of device authorization responses from now on (default 1 s; 0 leaves it
    /// out, which RFC 8628 says means 5 s). oidc-provider itself never sends one.
    ///
    /// # Errors
    /// Transport errors.
    pub fn set_device_interval(&self, secs: u64) -> Result<()> {
        self.control("config", &json!({"device_interval": secs}))
            .map(drop)
    }

    /// The next `polls` device_code token requests (any device code, any client, after client
    /// authentication) answer `400 {"error": "slow_down"}`; 0 ends that early.
    ///
    /// # Errors
    /// Transport errors.
    pub fn set_device_slow_down(&self, polls: u64) -> Result<()> {
        self.control("config", &json!({"device_slow_down": polls}))
            .map(drop)
    }

    /// Whether the automatic interaction refuses (the client's redirect URI then receives
    /// `error=access_denied`) instead of logging in `alice` and consenting (the default).
    ///
    /// # Errors
    /// Transport errors.
    pub fn set_interaction_denied(&self, denied: bool) -> Result<()> {
        let interaction = if denied { "deny" } else { "approve" };
        self.control("config", &json!({"interaction": interaction}))
            .map(drop)
    }

    /// `true` (the default, OpenID Connect Core §11 as oidc-provider enforces it): an
    /// authorization request's `offline_access` scope is dropped, so no refresh token is
    /// issued, unless the request carries `prompt=consent`. `false`: a request with
    /// `offline_access` and no `prompt` is handled as if it carried `prompt=consent`, as
    /// providers that do not enforce that rule behave.
    ///
    /// # Errors
    /// Transport errors.
    pub fn set_offline_access_needs_consent_prompt(&self, needed: bool) -> Result<()> {
        self.control(
            "config",
            &json!({"offline_access_needs_consent_prompt": needed}),
        )
        .map(drop)
    }

    /// Approves the pending device code with this `user_code` (as shown to the user; case and
    /// separators do not matter) as `alice` would at the verification URI: logged in, all
    /// requested scopes granted. The next poll answers tokens (with a refresh token when
    /// `offline_access` was requested).
    ///
    /// # Errors
    /// Transport errors; an unknown, expired, used, approved or denied code.
    pub fn approve_device(&self, user_code: &str) -> Result<()> {
        self.control(
            "approve-device",
            &json!({"user_code": user_code, "sub": "alice"}),
        )
        .map(drop)
    }

    /// Denies the pending device code with this `user_code`: the next poll answers
    /// `access_denied`.
    ///
    /// # Errors
    /// Transport errors; an unknown, expired, used, approved or denied code.
    pub fn deny_device(&self, user_code: &str) -> Result<()> {
        self.control("deny-device", &json!({"user_code": user_code}))
            .map(drop)
    }

    /// Plays the user's browser: GETs `authorization_url` and follows redirects (at most 20),
    /// keeping cookies per origin, through the provider's automatic interaction to the
    /// client's redirect URI, which is requested too. Returns that last answer's body.
    ///
    /// # Errors
    /// Transport errors (the redirect URI not answering included), too many redirects, and a
    /// last answer that is not 2xx (e.g. the provider's error page for an unregistered
    /// `redirect_uri`); the error holds that answer.
    pub fn play_browser(&self, authorization_url: &str) -> Result<String> {
        let visit = self.browse(authorization_url)?;
        if !(200..300).contains(&visit.status) {
            bail!(
                "the browser ended at {} with {}:\n{}\nafter {:?}",
                visit.url,
                visit.status,
                visit.body,
                visit.redirects
            );
        }
        Ok(visit.body)
    }

    /// Plays a browser on another machine: follows the authorization like
    /// [`TestIdp::play_browser`] but stops at the redirect to the client's `redirect_uri`
    /// (which that machine could not load) and returns that address, for pasting.
    ///
    /// # Errors
    /// Transport errors, no `redirect_uri` in the URL, or a flow that never redirects there.
    pub fn browse_to_redirect(&self, authorization_url: &str) -> Result<String> {
        let parsed = url::Url::parse(authorization_url).context("authorization URL")?;
        let redirect_uri = parsed
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned())
            .context("no redirect_uri in the authorization URL")?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        let mut jar = CookieJar::default();
        let mut url = authorization_url.to_owned();
        for _ in 0..=MAX_BROWSER_REDIRECTS {
            if url.starts_with(&redirect_uri) {
                return Ok(url);
            }
            let mut req = agent.get(&url);
            if let Some(cookies) = jar.header_for(&url) {
                req = req.header("Cookie", cookies);
            }
            let resp = req.call().with_context(|| format!("browser: GET {url}"))?;
            for value in resp.headers().get_all("set-cookie") {
                if let Ok(value) = value.to_str() {
                    jar.store(&url, value);
                }
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .with_context(|| format!("browser: no redirect from {url}"))?;
            url = resolve_url(&url, location)
                .with_context(|| format!("browser: unusable Location {location}"))?;
        }
        bail!("browser: never redirected to {redirect_uri}")
    }

    /// Like [`TestIdp::play_browser`], but returns whatever the browser ended at, whatever
    /// its status.
    ///
    /// # Errors
    /// Transport errors, a redirect without a usable `Location`, and too many redirects.
    pub fn browse(&self, url: &str) -> Result<BrowserVisit> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        let mut jar = CookieJar::default();
        let mut url = url.to_owned();
        let mut redirects = Vec::new();
        loop {
            let mut req = agent.get(&url);
            if let Some(cookies) = jar.header_for(&url) {
                req = req.header("Cookie", cookies);
            }
            let mut resp = req.call().with_context(|| format!("browser: GET {url}"))?;
            for value in resp.headers().get_all("set-cookie") {
                if let Ok(value) = value.to_str() {
                    jar.store(&url, value);
                }
            }
            let status = resp.status().as_u16();
            if !resp.status().is_redirection() {
                let body = resp
                    .body_mut()
                    .read_to_string()
                    .with_context(|| format!("browser: reading the answer of {url}"))?;
                return Ok(BrowserVisit {
                    url,
                    status,
                    body,
                    redirects,
                });
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .with_context(|| format!("browser: {status} without Location from {url}"))?;
            let next = resolve_url(&url, location)
                .with_context(|| format!("browser: unusable Location {location} from {url}"))?;
            redirects.push(std::mem::replace(&mut url, next));
            if redirects.len() > MAX_BROWSER_REDIRECTS {
                bail!("browser: more than {MAX_BROWSER_REDIRECTS} redirects: {redirects:?}");
            }
        }
    }

    /// POSTs `form` to the device authorization endpoint, with HTTP Basic client
    /// authentication when `basic` is given, and returns the status and the JSON answer.
    ///
    /// # Errors
    /// Transport errors and non-JSON answers.
    pub fn device_authorization_request(
        &self,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value)> {
        let resp = self.form_post(&self.endpoints.device_authorization, basic, form)?;
        json_body(resp, "device authorization endpoint")
    }

    /// POSTs `form` (`token`, `token_type_hint`, client authentication) to the revocation
    /// endpoint, with HTTP Basic client authentication when `basic` is given, and returns the
    /// status and the body (empty on success).
    ///
    /// # Errors
    /// Transport errors.
    pub fn revocation_request(
        &self,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<(u16, String)> {
        let mut resp = self.form_post(&self.endpoints.revocation, basic, form)?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .context("revocation endpoint: reading the body")?;
        Ok((status, body))
    }

    fn form_post(
        &self,
        url: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut req = self.agent.post(url);
        if let Some((id, secret)) = basic {
            req = req.header("Authorization", basic_auth(id, secret));
        }
        req.send_form(form.iter().copied())
            .with_context(|| format!("POST to {url}"))
    }

    /// Whether the provider considers `token` (access, refresh or client-credentials token)
    /// active: known, unexpired, not rotated away, and its grant alive.
    ///
    /// # Errors
    /// Transport errors.
    pub fn is_active(&self, token: &str) -> Result<bool> {
        let value = self.control("introspect", &json!({"token": token}))?;
        value["active"]
            .as_bool()
            .with_context(|| format!("introspection answer without active: {value}"))
    }

    /// Revokes the grant behind `refresh_token`: it and every token of the grant die.
    ///
    /// # Errors
    /// Transport errors, and an unknown (or already revoked) refresh token.
    pub fn revoke_grant(&self, refresh_token: &str) -> Result<()> {
        self.control("revoke-grant", &json!({"refresh_token": refresh_token}))
            .map(drop)
    }

    /// POSTs `form` to the token endpoint, with HTTP Basic client authentication when `basic`
    /// is given, and returns the status and the JSON answer.
    ///
    /// # Errors
    /// Transport errors and non-JSON answers.
    pub fn token_request(
        &self,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value)> {
        let resp = self.form_post(&self.endpoints.token, basic, form)?;
        json_body(resp, "token endpoint")
    }

    /// The provider's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idp.log")).unwrap_or_default()
    }
}

/// `(origin, path)` of an absolute http(s) URL: `http://host:port` and the path without
/// query or fragment (`/` when empty).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let scheme_end = url.find("://")?;
    if !matches!(&url[..scheme_end], "http" | "https") {
        return None;
    }
    let rest = &url[scheme_end + 3..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if authority_len == 0 {
        return None;
    }
    let origin = &url[..scheme_end + 3 + authority_len];
    let after = &rest[authority_len..];
    let path = &after[..after.find(['?', '#']).unwrap_or(after.len())];
    Some((origin, if path.is_empty() { "/" } else { path }))
}

/// Resolves a `Location` header value against the URL that sent it (absolute URLs,
/// network-path, absolute-path and relative references).
fn resolve_url(base: &str, location: &str) -> Option<String> {
    if split_url(location).is_some() {
        return Some(location.to_owned());
    }
    let (origin, path) = split_url(base)?;
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = &origin[..origin.find("://")?];
        return Some(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let dir = &path[..=path.rfind('/')?];
    Some(format!("{origin}{dir}{location}"))
}

/// A minimal cookie jar for [`TestIdp::browse`]: cookies are kept per origin (RFC 6265
/// ignores the port; the test provider and a client's loopback redirect URI differ only in
/// port, so per origin keeps the provider's cookies away from the client) and path. A
/// cookie set empty, with `Max-Age` ≤ 0 or expiring in 1970 (how oidc-provider clears
/// them) is removed.
#[derive(Debug, Default)]
struct CookieJar {
    /// (origin, path, name) → value
    cookies: std::collections::BTreeMap<(String, String, String), String>,
}

impl CookieJar {
    fn store(&mut self, url: &str, set_cookie: &str) {
        let Some((origin, request_path)) = split_url(url) else {
            return;
        };
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        // RFC 6265 §5.1.4: the default path is the request path's directory.
        let mut path = match request_path.rfind('/') {
            Some(0) | None => "/".to_owned(),
            Some(i) => request_path[..i].to_owned(),
        };
        let mut expired = value.is_empty();
        for attr in parts {
            let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
            let (key, val) = (key.trim().to_ascii_lowercase(), val.trim());
            match key.as_str() {
                "path" if val.starts_with('/') => path = val.to_owned(),
                "max-age" => expired |= val.parse::<i64>().is_ok_and(|age| age <= 0),
                "expires" => expired |= val.contains("1970"),
                _ => {}
            }
        }
        let key = (origin.to_owned(), path, name.to_owned());
        if expired {
            self.cookies.remove(&key);
        } else {
            self.cookies.insert(key, value.to_owned());
        }
    }

    /// The `Cookie` header value for a request to `url`, if any cookie applies.
    fn header_for(&self, url: &str) -> Option<String> {
        let (origin, request_path) = split_url(url)?;
        let path_matches = |cookie_path: &str| {
            request_path == cookie_path
                || request_path
                    .strip_prefix(cookie_path)
                    .is_some_and(|rest| cookie_path.ends_with('/') || rest.starts_with('/'))
        };
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|((o, p, _), _)| o == origin && path_matches(p))
            .map(|((_, _, name), value)| format!("{name}={value}"))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}
