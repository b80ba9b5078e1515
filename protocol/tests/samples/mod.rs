//! One sample of every message, shared by the round-trip and golden tests.

use tokd_protocol::verbs::{add, get, list, login, logout, ping, refresh, remove, status, watch};
use tokd_protocol::*;

pub fn session_status() -> v0::SessionStatus {
    v0::SessionStatus {
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
            Request::Get(v0::GetRequest {
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
            Request::Login(v0::LoginRequest {
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
        (
            "request-get2",
            Request::Get2(get::GetRequest {
                name: "work".into(),
                min_valid_ms: 10_000,
                wait_ms: 10_000,
                include_id_token: false,
                target: target(),
            }),
        ),
        (
            "request-login2",
            Request::Login2(login::LoginRequest {
                name: "notes".into(),
                provider: None,
                method: login::LoginMethod::Browser {
                    open_browser: false,
                },
                attrs: vec![],
                replace: false,
                timeout_ms: Some(300_000),
                resource: Some("https://mcp.example.com/mcp".into()),
                issuer: Some("https://id.example.com".into()),
                scope_add: vec!["notes.write".into()],
            }),
        ),
        (
            "request-login-redirect",
            Request::LoginRedirect(login::LoginRedirect {
                url: Secret::new("http://127.0.0.1:4711/callback?code=c&state=s"),
            }),
        ),
    ]
}

/// A derived token's target.
pub fn target() -> TokenTarget {
    TokenTarget {
        audience: Some("https://storage.example.org".into()),
        resources: vec!["https://api.example.com/".into()],
        scope: Some("storage.read:/data".into()),
    }
}

/// A 1.1 session status, with everything 1.1 added.
pub fn session_status2() -> SessionStatus {
    let mut s: SessionStatus = session_status().into();
    s.client_credentials = false;
    s.refresh_origin = Some("https://id.example.com".into());
    s.resource = Some("https://mcp.example.com/mcp".into());
    s.registered_client = true;
    s.refresh_allowed_at_ms = Some(1_799_999_010_000);
    s.derived = vec![DerivedStatus {
        target: target(),
        state: SessionState::Valid,
        token_valid: true,
        expires_at_ms: Some(1_800_000_000_000),
        next_refresh_at_ms: Some(1_799_999_700_000),
        last_used_at_ms: 1_799_999_000_000,
        refresh_count: 3,
        last_error: None,
    }];
    s
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
            Response::Token(v0::TokenReply {
                access_token: Secret::new("eyJ.a.b"),
                token_type: "Bearer".into(),
                expires_at_ms: 1_800_000_000_000,
                id_token: Some(Secret::new("eyJ.i.d")),
                meets_min_valid: true,
            }),
        ),
        (
            "response-status",
            Response::Status(v0::StatusReply {
                daemon: v0::DaemonInfo {
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
            Response::Added(v0::AddReply {
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
            Response::Refreshed(v0::RefreshReply {
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
            Response::LoggedIn(v0::LoginReply {
                session: session_status(),
            }),
        ),
        (
            "response-logged-out",
            Response::LoggedOut(v0::LogoutReply {
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
        (
            "response-token2",
            Response::Token2(get::TokenReply {
                access_token: Secret::new("eyJ.a.b"),
                token_type: "Bearer".into(),
                expires_at_ms: 1_800_000_000_000,
                id_token: None,
                meets_min_valid: true,
                state: SessionState::NeedsLogin,
                notice: Some("session \"work\" needs a login".into()),
            }),
        ),
        (
            "response-status2",
            Response::Status2(status::StatusReply {
                daemon: DaemonInfo {
                    version: "0.2.0".into(),
                    protocol_major: 1,
                    protocol_minor: 1,
                    pid: 4242,
                    uptime_ms: 5000,
                    socket: "/run/user/1000/tokd/tokd.sock".into(),
                    state_dir: "/home/u/.local/state/tokd".into(),
                    key_source: "key file /home/u/.config/tokd/key".into(),
                    config_file: Some("/home/u/.config/tokd/config.toml".into()),
                    session_count: 1,
                    proxy: Some("https via http://proxy.example:3128".into()),
                    last_rejected_reload: Some(RejectedReload {
                        at_ms: 1_799_999_000_000,
                        error: "line 3, column 1: unknown field".into(),
                    }),
                    providers: vec![
                        ProviderInfo {
                            name: "corp".into(),
                            source: ProviderSource::Config,
                            issuer: Some("https://id.example.com".into()),
                            registered_client: false,
                        },
                        ProviderInfo {
                            name: "mcp.example.com".into(),
                            source: ProviderSource::Discovered {
                                resource: "https://mcp.example.com/mcp".into(),
                            },
                            issuer: Some("https://auth.example.com".into()),
                            registered_client: true,
                        },
                    ],
                },
                sessions: vec![session_status2()],
            }),
        ),
        (
            "response-added2",
            Response::Added2(add::AddReply {
                session: session_status2(),
                replaced: true,
            }),
        ),
        (
            "response-refreshed2",
            Response::Refreshed2(refresh::RefreshReply {
                session: session_status2(),
            }),
        ),
        (
            "response-logged-in2",
            Response::LoggedIn2(login::LoginReply {
                session: session_status2(),
            }),
        ),
        (
            "response-logged-out2",
            Response::LoggedOut2(logout::LogoutReply {
                name: "work".into(),
                revoked: true,
                newer_kept: true,
            }),
        ),
        (
            "response-login-notice",
            Response::LoginPrompt(login::LoginPrompt::Notice {
                message: "registered a client at https://auth.example.com".into(),
            }),
        ),
    ]
}
