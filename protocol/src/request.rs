//! `Request`: every message a client sends after the hello.

use serde::{Deserialize, Serialize};

use crate::v0;
use crate::verbs::{add, get, list, login, logout, ping, refresh, remove, status, watch};

/// One request. Variants are only ever appended: bincode encodes the variant index, and an
/// older daemon answers a variant it does not know with `invalid`.
///
/// Protocol 1.1 appended [`Request::Get2`] and [`Request::Login2`], the grown forms of
/// `Get` and `Login` (whose 1.0 layouts live in [`crate::v0`]), and
/// [`Request::LoginRedirect`]. A client sends a grown form only to a daemon of minor ≥ 1,
/// or when it needs what only the grown form says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The current bearer of a session (protocol 1.0 layout).
    Get(v0::GetRequest),
    /// Daemon identity and session health.
    Status(status::StatusRequest),
    /// Session names.
    List(list::ListRequest),
    /// Import a session.
    Add(add::AddRequest),
    /// Forget a session.
    Remove(remove::RemoveRequest),
    /// Refresh a session now.
    Refresh(refresh::RefreshRequest),
    /// Log in interactively (streamed answer; protocol 1.0 layout).
    Login(v0::LoginRequest),
    /// Revoke and remove a session.
    Logout(logout::LogoutRequest),
    /// Subscribe to events (streamed answer).
    Watch(watch::WatchRequest),
    /// Liveness probe.
    Ping(ping::PingRequest),
    /// The current bearer of a session, or of a token derived from it (protocol 1.1).
    Get2(get::GetRequest),
    /// Log in interactively (protocol 1.1).
    Login2(login::LoginRequest),
    /// During a browser login: the address the browser was redirected to, pasted by the
    /// user (protocol 1.1).
    LoginRedirect(login::LoginRedirect),
}

impl Request {
    /// The verb's name, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Get(_) | Request::Get2(_) => "get",
            Request::Status(_) => "status",
            Request::List(_) => "list",
            Request::Add(_) => "add",
            Request::Remove(_) => "remove",
            Request::Refresh(_) => "refresh",
            Request::Login(_) | Request::Login2(_) => "login",
            Request::Logout(_) => "logout",
            Request::Watch(_) => "watch",
            Request::Ping(_) => "ping",
            Request::LoginRedirect(_) => "login_redirect",
        }
    }
}
