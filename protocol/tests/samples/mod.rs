//! One sample of every message, shared by the round-trip and golden tests.

use tokd_protocol::verbs::{add, get, list, login, logout, ping, refresh, remove, status, watch};
use tokd_protocol::*;

pub fn session_status() -> SessionStatus {
    SessionStatus {
        name: "work".into(),
        provider: "corp".into(),
        state: SessionState::Backoff,
        token_valid: true,
        expires_at_ms: Some(1_800_000_000_000),
        refresh_expires_at_ms: None,
        next_refresh_at_ms: Some(1_799_999_700_000),
        last_refresh_at_ms: Some(1_799_996_400_000),
        refresh_count: 7,
        consecutive_failures: 2,
        last_error: Some("503 from token endpoint".into()),
        has_refresh_token: true,
        has_id_token: false,
        scope: Some("openid offline_access".into()),
        attrs: vec![("user_id".into(), "42".into())],
    }
}

/// Every request variant, named for its fixture file.
pub fn requests() -> Vec<(&'static str, Request)> {
    vec![
        (
            "request-get",
            Request::Get(get::GetRequest {
                name: "work".into(),
                min_valid_ms: 10_000,
                wait_ms: 10_000,
                include_id_token: false,
            }),
        ),
        (
            "request-status",
            Request::Status(status::StatusRequest {
                name: Some("work".into()),
            }),
        ),
        ("request-list", Request::List(list::ListRequest {})),
        (
            "request-add",
            Request::Add(add::AddRequest {
                name: "work".into(),
                provider: "corp".into(),
                attrs: vec![("user_id".into(), "42".into())],
                replace: true,
                token_response: Some(Secret::new(r#"{"access_token":"a","expires_in":60}"#)),
            }),
        ),
        (
            "request-remove",
            Request::Remove(remove::RemoveRequest {
                name: "work".into(),
            }),
        ),
        (
            "request-refresh",
            Request::Refresh(refresh::RefreshRequest {
                name: "work".into(),
                wait_ms: 30_000,
            }),
        ),
        (
            "request-login",
            Request::Login(login::LoginRequest {
                name: "work".into(),
                provider: "corp".into(),
                method: login::LoginMethod::Browser { open_browser: true },
                attrs: vec![],
            }),
        ),
        (
            "request-logout",
            Request::Logout(logout::LogoutRequest {
                name: "work".into(),
            }),
        ),
        ("request-watch", Request::Watch(watch::WatchRequest {})),
        ("request-ping", Request::Ping(ping::PingRequest {})),
    ]
}

/// Every response variant, named for its fixture file.
pub fn responses() -> Vec<(&'static str, Response)> {
    vec![
        (
            "response-error",
            Response::Error(ErrorReply::new(ErrorCode::NeedsLogin, "log in again")),
        ),
        (
            "response-token",
            Response::Token(get::TokenReply {
                access_token: Secret::new("eyJ.a.b"),
                token_type: "Bearer".into(),
                expires_at_ms: 1_800_000_000_000,
                id_token: Some(Secret::new("eyJ.i.d")),
                meets_min_valid: true,
            }),
        ),
        (
            "response-status",
            Response::Status(status::StatusReply {
                daemon: DaemonInfo {
                    version: "0.1.0".into(),
                    protocol_major: 1,
                    protocol_minor: 0,
                    pid: 4242,
                    uptime_ms: 5000,
                    socket: "/run/user/1000/tokd/tokd.sock".into(),
                    state_dir: "/home/u/.local/state/tokd".into(),
                    key_source: "key file /home/u/.config/tokd/key".into(),
                    config_file: None,
                    session_count: 1,
                },
                sessions: vec![session_status()],
            }),
        ),
        (
            "response-list",
            Response::List(list::ListReply {
                sessions: vec![list::ListEntry {
                    name: "work".into(),
                    provider: "corp".into(),
                    state: SessionState::Valid,
                }],
            }),
        ),
        (
            "response-added",
            Response::Added(add::AddReply {
                session: session_status(),
                replaced: false,
            }),
        ),
        (
            "response-removed",
            Response::Removed(remove::RemoveReply {
                name: "work".into(),
            }),
        ),
        (
            "response-refreshed",
            Response::Refreshed(refresh::RefreshReply {
                session: session_status(),
            }),
        ),
        (
            "response-login-prompt",
            Response::LoginPrompt(login::LoginPrompt::Device {
                verification_uri: "https://id.example/device".into(),
                user_code: "ABCD-EFGH".into(),
                verification_uri_complete: Some("https://id.example/device?u=ABCD".into()),
                expires_in_s: 600,
            }),
        ),
        (
            "response-logged-in",
            Response::LoggedIn(login::LoginReply {
                session: session_status(),
            }),
        ),
        (
            "response-logged-out",
            Response::LoggedOut(logout::LogoutReply {
                name: "work".into(),
                revoked: true,
            }),
        ),
        (
            "response-watching",
            Response::Watching(watch::WatchReply {}),
        ),
        (
            "response-event",
            Response::Event(watch::WatchEvent {
                at_ms: 1_800_000_000_000,
                session: Some("work".into()),
                kind: watch::WatchEventKind::RefreshFailed {
                    error: "timeout".into(),
                    retry_at_ms: Some(1_800_000_030_000),
                },
            }),
        ),
        (
            "response-pong",
            Response::Pong(ping::PongReply {
                daemon_version: "0.1.0".into(),
                pid: 1,
            }),
        ),
    ]
}
