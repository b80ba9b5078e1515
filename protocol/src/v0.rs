//! The messages of protocol 1.0, exactly as they travel to and from 1.0 peers.
//!
//! Protocol 1.1 grew several messages (a session's status, a token's answer, a login
//! request). bincode is not self-describing, so a grown message is a new variant
//! ([`crate::Request::Get2`], [`crate::Response::Status2`], …) and the 1.0 layouts live on
//! here, frozen. Each converts to and from its current form:
//!
//! - a daemon turns a 1.0 request into the current one ([`From`]) and answers a 1.0 client
//!   with [`crate::Response::for_minor`], which drops what 1.0 cannot carry;
//! - a client turns a 1.0 daemon's answer into the current form, filling what 1.0 did not
//!   say with the value a 1.0 daemon implies.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::types::{self, EpochMs, SessionState, TokenTarget};
use crate::verbs::{add, get, login, logout, refresh, status};

/// A session's status in protocol 1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// See [`types::SessionStatus::name`].
    pub name: String,
    /// See [`types::SessionStatus::provider`].
    pub provider: String,
    /// See [`types::SessionStatus::state`].
    pub state: SessionState,
    /// See [`types::SessionStatus::token_valid`].
    pub token_valid: bool,
    /// See [`types::SessionStatus::expires_at_ms`].
    pub expires_at_ms: Option<EpochMs>,
    /// See [`types::SessionStatus::refresh_expires_at_ms`].
    pub refresh_expires_at_ms: Option<EpochMs>,
    /// See [`types::SessionStatus::next_refresh_at_ms`].
    pub next_refresh_at_ms: Option<EpochMs>,
    /// See [`types::SessionStatus::last_refresh_at_ms`].
    pub last_refresh_at_ms: Option<EpochMs>,
    /// See [`types::SessionStatus::refresh_count`].
    pub refresh_count: u64,
    /// See [`types::SessionStatus::consecutive_failures`].
    pub consecutive_failures: u32,
    /// See [`types::SessionStatus::last_error`].
    pub last_error: Option<String>,
    /// See [`types::SessionStatus::has_refresh_token`].
    pub has_refresh_token: bool,
    /// See [`types::SessionStatus::has_id_token`].
    pub has_id_token: bool,
    /// See [`types::SessionStatus::scope`].
    pub scope: Option<String>,
    /// See [`types::SessionStatus::attrs`].
    pub attrs: Vec<(String, String)>,
}

impl From<types::SessionStatus> for SessionStatus {
    fn from(s: types::SessionStatus) -> Self {
        SessionStatus {
            name: s.name,
            provider: s.provider,
            state: s.state,
            token_valid: s.token_valid,
            expires_at_ms: s.expires_at_ms,
            refresh_expires_at_ms: s.refresh_expires_at_ms,
            next_refresh_at_ms: s.next_refresh_at_ms,
            last_refresh_at_ms: s.last_refresh_at_ms,
            refresh_count: s.refresh_count,
            consecutive_failures: s.consecutive_failures,
            last_error: s.last_error,
            has_refresh_token: s.has_refresh_token,
            has_id_token: s.has_id_token,
            scope: s.scope,
            attrs: s.attrs,
        }
    }
}

impl From<SessionStatus> for types::SessionStatus {
    fn from(s: SessionStatus) -> Self {
        types::SessionStatus {
            name: s.name,
            provider: s.provider,
            state: s.state,
            token_valid: s.token_valid,
            expires_at_ms: s.expires_at_ms,
            refresh_expires_at_ms: s.refresh_expires_at_ms,
            next_refresh_at_ms: s.next_refresh_at_ms,
            last_refresh_at_ms: s.last_refresh_at_ms,
            refresh_count: s.refresh_count,
            consecutive_failures: s.consecutive_failures,
            last_error: s.last_error,
            has_refresh_token: s.has_refresh_token,
            has_id_token: s.has_id_token,
            scope: s.scope,
            attrs: s.attrs,
            client_credentials: false,
            refresh_origin: None,
            resource: None,
            registered_client: false,
            derived: Vec::new(),
            refresh_allowed_at_ms: None,
        }
    }
}

/// The daemon half of `status` in protocol 1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// See [`types::DaemonInfo::version`].
    pub version: String,
    /// See [`types::DaemonInfo::protocol_major`].
    pub protocol_major: u16,
    /// See [`types::DaemonInfo::protocol_minor`].
    pub protocol_minor: u16,
    /// See [`types::DaemonInfo::pid`].
    pub pid: u32,
    /// See [`types::DaemonInfo::uptime_ms`].
    pub uptime_ms: u64,
    /// See [`types::DaemonInfo::socket`].
    pub socket: String,
    /// See [`types::DaemonInfo::state_dir`].
    pub state_dir: String,
    /// See [`types::DaemonInfo::key_source`].
    pub key_source: String,
    /// See [`types::DaemonInfo::config_file`].
    pub config_file: Option<String>,
    /// See [`types::DaemonInfo::session_count`].
    pub session_count: u64,
}

impl From<types::DaemonInfo> for DaemonInfo {
    fn from(d: types::DaemonInfo) -> Self {
        DaemonInfo {
            version: d.version,
            protocol_major: d.protocol_major,
            protocol_minor: d.protocol_minor,
            pid: d.pid,
            uptime_ms: d.uptime_ms,
            socket: d.socket,
            state_dir: d.state_dir,
            key_source: d.key_source,
            config_file: d.config_file,
            session_count: d.session_count,
        }
    }
}

impl From<DaemonInfo> for types::DaemonInfo {
    fn from(d: DaemonInfo) -> Self {
        types::DaemonInfo {
            version: d.version,
            protocol_major: d.protocol_major,
            protocol_minor: d.protocol_minor,
            pid: d.pid,
            uptime_ms: d.uptime_ms,
            socket: d.socket,
            state_dir: d.state_dir,
            key_source: d.key_source,
            config_file: d.config_file,
            session_count: d.session_count,
            proxy: None,
            last_rejected_reload: None,
            providers: Vec::new(),
        }
    }
}

/// `get` in protocol 1.0: always the session's own token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// See [`get::GetRequest::name`].
    pub name: String,
    /// See [`get::GetRequest::min_valid_ms`].
    pub min_valid_ms: u64,
    /// See [`get::GetRequest::wait_ms`].
    pub wait_ms: u64,
    /// See [`get::GetRequest::include_id_token`].
    pub include_id_token: bool,
}

impl From<GetRequest> for get::GetRequest {
    fn from(r: GetRequest) -> Self {
        get::GetRequest {
            name: r.name,
            min_valid_ms: r.min_valid_ms,
            wait_ms: r.wait_ms,
            include_id_token: r.include_id_token,
            target: TokenTarget::default(),
        }
    }
}

/// The answer to `get` in protocol 1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenReply {
    /// See [`get::TokenReply::access_token`].
    pub access_token: Secret,
    /// See [`get::TokenReply::token_type`].
    pub token_type: String,
    /// See [`get::TokenReply::expires_at_ms`].
    pub expires_at_ms: EpochMs,
    /// See [`get::TokenReply::id_token`].
    pub id_token: Option<Secret>,
    /// See [`get::TokenReply::meets_min_valid`].
    pub meets_min_valid: bool,
}

impl From<get::TokenReply> for TokenReply {
    fn from(t: get::TokenReply) -> Self {
        TokenReply {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_at_ms: t.expires_at_ms,
            id_token: t.id_token,
            meets_min_valid: t.meets_min_valid,
        }
    }
}

impl From<TokenReply> for get::TokenReply {
    /// A 1.0 daemon said nothing about the state: it answers only tokens it serves, so
    /// the answer stands as `valid`.
    fn from(t: TokenReply) -> Self {
        get::TokenReply {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_at_ms: t.expires_at_ms,
            id_token: t.id_token,
            meets_min_valid: t.meets_min_valid,
            state: SessionState::Valid,
            notice: None,
        }
    }
}

/// The answer to `status` in protocol 1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// See [`status::StatusReply::daemon`].
    pub daemon: DaemonInfo,
    /// See [`status::StatusReply::sessions`].
    pub sessions: Vec<SessionStatus>,
}

impl From<status::StatusReply> for StatusReply {
    fn from(s: status::StatusReply) -> Self {
        StatusReply {
            daemon: s.daemon.into(),
            sessions: s.sessions.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<StatusReply> for status::StatusReply {
    fn from(s: StatusReply) -> Self {
        status::StatusReply {
            daemon: s.daemon.into(),
            sessions: s.sessions.into_iter().map(Into::into).collect(),
        }
    }
}

/// The answer to `add` in protocol 1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddReply {
    /// See [`add::AddReply::session`].
    pub session: SessionStatus,
    /// See [`add::AddReply::replaced`].
    pub replaced: bool,
}

impl From<add::AddReply> for AddReply {
    fn from(a: add::AddReply) -> Self {
        AddReply {
            session: a.session.into(),
            replaced: a.replaced,
        }
    }
}

impl From<AddReply> for add::AddReply {
    fn from(a: AddReply) -> Self {
        add::AddReply {
            session: a.session.into(),
            replaced: a.replaced,
        }
    }
}

/// The answer to `refresh` in protocol 1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshReply {
    /// See [`refresh::RefreshReply::session`].
    pub session: SessionStatus,
}

impl From<refresh::RefreshReply> for RefreshReply {
    fn from(r: refresh::RefreshReply) -> Self {
        RefreshReply {
            session: r.session.into(),
        }
    }
}

impl From<RefreshReply> for refresh::RefreshReply {
    fn from(r: RefreshReply) -> Self {
        refresh::RefreshReply {
            session: r.session.into(),
        }
    }
}

/// `login` in protocol 1.0: always with a provider, always replacing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// See [`login::LoginRequest::name`].
    pub name: String,
    /// The provider to log in with.
    pub provider: String,
    /// See [`login::LoginRequest::method`].
    pub method: login::LoginMethod,
    /// See [`login::LoginRequest::attrs`].
    pub attrs: Vec<(String, String)>,
}

impl From<LoginRequest> for login::LoginRequest {
    /// A 1.0 login always replaced the session of its name: it still does.
    fn from(r: LoginRequest) -> Self {
        login::LoginRequest {
            name: r.name,
            provider: Some(r.provider),
            method: r.method,
            attrs: r.attrs,
            replace: true,
            timeout_ms: None,
            resource: None,
            issuer: None,
            scope_add: Vec::new(),
        }
    }
}

/// The end of a successful login in protocol 1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginReply {
    /// See [`login::LoginReply::session`].
    pub session: SessionStatus,
}

impl From<login::LoginReply> for LoginReply {
    fn from(r: login::LoginReply) -> Self {
        LoginReply {
            session: r.session.into(),
        }
    }
}

impl From<LoginReply> for login::LoginReply {
    fn from(r: LoginReply) -> Self {
        login::LoginReply {
            session: r.session.into(),
        }
    }
}

/// The answer to `logout` in protocol 1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutReply {
    /// See [`logout::LogoutReply::name`].
    pub name: String,
    /// See [`logout::LogoutReply::revoked`].
    pub revoked: bool,
}

impl From<logout::LogoutReply> for LogoutReply {
    fn from(r: logout::LogoutReply) -> Self {
        LogoutReply {
            name: r.name,
            revoked: r.revoked,
        }
    }
}

impl From<LogoutReply> for logout::LogoutReply {
    fn from(r: LogoutReply) -> Self {
        logout::LogoutReply {
            name: r.name,
            revoked: r.revoked,
            newer_kept: false,
        }
    }
}
