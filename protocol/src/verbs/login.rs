//! `login`: the daemon performs an interactive login; the answer is a stream
//! (one or more [`LoginPrompt`]s, then [`LoginReply`] or an error).

use serde::{Deserialize, Serialize};

use crate::types::SessionStatus;

/// How to log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginMethod {
    /// OAuth 2.0 Device Authorization Grant (RFC 8628).
    Device,
    /// Authorization code with PKCE and a loopback redirect (RFC 7636, RFC 8252).
    Browser {
        /// Whether the daemon may ask the client to open a browser (`--no-browser` clears it).
        open_browser: bool,
    },
}

/// Starts a login for a (new or existing) session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The session's name.
    pub name: String,
    /// The provider to log in with; `None` logs in again with the existing session's
    /// provider (or discovers one from `resource`).
    pub provider: Option<String>,
    /// How.
    pub method: LoginMethod,
    /// Attributes to store with the session (empty: keep the existing session's).
    pub attrs: Vec<(String, String)>,
    /// Replace an existing session even when the login would lose something (another
    /// provider, or no refresh token where there was one).
    pub replace: bool,
    /// How long the login may wait for the user (ms); `None`: the daemon's default.
    pub timeout_ms: Option<u64>,
    /// Log in to this OAuth-protected resource (RFC 9728 discovery, RFC 8707 binding).
    pub resource: Option<String>,
    /// The authorization server to use when the resource names several.
    pub issuer: Option<String>,
    /// Scopes to ask for in addition to the session's (step-up).
    pub scope_add: Vec<String>,
}

/// What to show the user while a login waits for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginPrompt {
    /// Device flow: visit a URI and enter a code.
    Device {
        /// The verification URI.
        verification_uri: String,
        /// The code to type there.
        user_code: String,
        /// A URI with the code filled in (show as a QR code), if the provider gave one.
        verification_uri_complete: Option<String>,
        /// Seconds until the code expires.
        expires_in_s: u64,
    },
    /// Browser flow: open this URL.
    Browser {
        /// The authorization URL.
        url: String,
        /// Whether the client should open it with the desktop's browser.
        open: bool,
    },
    /// Something to tell the user on the way (protocol 1.1; not sent to 1.0 clients).
    Notice {
        /// The text; never a secret.
        message: String,
    },
}

impl LoginPrompt {
    /// Whether a protocol 1.0 client can decode this prompt.
    pub fn known_to_1_0(&self) -> bool {
        matches!(
            self,
            LoginPrompt::Device { .. } | LoginPrompt::Browser { .. }
        )
    }
}

/// The address the browser was redirected to, pasted by the user when the browser runs on
/// another machine and the loopback redirect cannot reach the daemon (sent during a login
/// stream; protocol 1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRedirect {
    /// The full URL, with its `code` and `state`.
    pub url: crate::secret::Secret,
}

/// The final answer of a successful login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginReply {
    /// The session after the login.
    pub session: SessionStatus,
}
