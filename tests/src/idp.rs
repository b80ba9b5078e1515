//! A real OpenID provider for the end-to-end tests: panva's `oidc-provider` (pinned in
//! `tests/idp/package.json`) run by `node tests/idp/idp.mjs` on an ephemeral `127.0.0.1`
//! port over plain http, with in-memory storage, rotating refresh tokens (reuse of a
//! rotated one revokes the whole grant) and test-only control routes under `/test/`.
//!
//! Needs Node.js ≥ 20 and npm on `PATH`; the first [`TestIdp::start`] of a test process runs
//! `npm ci` in `tests/idp` when `node_modules` is missing or older than the lock file.

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
    token_endpoint: String,
    agent: ureq::Agent,
    dir: tempfile::TempDir,
}

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

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
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
            token_endpoint: String::new(),
            agent: agent(),
            dir,
        };
        idp.issuer = idp.wait_ready(stdout)?;
        idp.token_endpoint = idp.discover_token_endpoint()?;
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

    /// The RFC 8414 metadata (always served, unlike the OpenID discovery document).
    fn discover_token_endpoint(&self) -> Result<String> {
        let url = format!("{}/.well-known/oauth-authorization-server", self.issuer);
        let resp = self.agent.get(&url).call().context("fetching discovery")?;
        let (status, meta) = json_body(resp, "discovery")?;
        meta["token_endpoint"]
            .as_str()
            .filter(|_| status == 200)
            .map(str::to_owned)
            .with_context(|| format!("discovery ({status}) has no token_endpoint: {meta}"))
    }

    /// The issuer, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token endpoint from discovery (`{issuer}/token`).
    pub fn token_endpoint(&self) -> String {
        self.token_endpoint.clone()
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
        let mut req = self.agent.post(&self.token_endpoint);
        if let Some((id, secret)) = basic {
            req = req.header("Authorization", basic_auth(id, secret));
        }
        let resp = req
            .send_form(form.iter().copied())
            .context("POST to the token endpoint")?;
        json_body(resp, "token endpoint")
    }

    /// The provider's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idp.log")).unwrap_or_default()
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
