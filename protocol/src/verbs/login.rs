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
    /// The provider to log in with.
    pub provider: String,
    /// How.
    pub method: LoginMethod,
    /// Attributes to store with the session.
    pub attrs: Vec<(String, String)>,
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
}

/// The final answer of a successful login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginReply {
    /// The session after the login.
    pub session: SessionStatus,
}
