//! `Request`: every message a client sends after the hello.

use serde::{Deserialize, Serialize};

use crate::verbs::{add, get, list, login, logout, ping, refresh, remove, status, watch};

/// One request. Variants are only ever appended: bincode encodes the variant index, and an
/// older daemon answers a variant it does not know with `invalid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The current bearer of a session.
    Get(get::GetRequest),
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
    /// Log in interactively (streamed answer).
    Login(login::LoginRequest),
    /// Revoke and remove a session.
    Logout(logout::LogoutRequest),
    /// Subscribe to events (streamed answer).
    Watch(watch::WatchRequest),
    /// Liveness probe.
    Ping(ping::PingRequest),
}

impl Request {
    /// The verb's name, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Get(_) => "get",
            Request::Status(_) => "status",
            Request::List(_) => "list",
            Request::Add(_) => "add",
            Request::Remove(_) => "remove",
            Request::Refresh(_) => "refresh",
            Request::Login(_) => "login",
            Request::Logout(_) => "logout",
            Request::Watch(_) => "watch",
            Request::Ping(_) => "ping",
        }
    }
}
