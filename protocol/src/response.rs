//! `Response`: every message the daemon sends after the hello answer.

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorReply;
use crate::verbs::{add, get, list, login, logout, ping, refresh, remove, status, watch};

/// One answer frame. Most verbs answer exactly one; `watch` answers `Watching` then `Event`s,
/// `login` answers `LoginPrompt`s then `LoggedIn` (or `Error`). Variants are only ever
/// appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The request failed.
    Error(ErrorReply),
    /// Answer to `get`.
    Token(get::TokenReply),
    /// Answer to `status`.
    Status(status::StatusReply),
    /// Answer to `list`.
    List(list::ListReply),
    /// Answer to `add`.
    Added(add::AddReply),
    /// Answer to `remove`.
    Removed(remove::RemoveReply),
    /// Answer to `refresh`.
    Refreshed(refresh::RefreshReply),
    /// A step of `login`: show this to the user.
    LoginPrompt(login::LoginPrompt),
    /// The end of a successful `login`.
    LoggedIn(login::LoginReply),
    /// Answer to `logout`.
    LoggedOut(logout::LogoutReply),
    /// First answer to `watch`.
    Watching(watch::WatchReply),
    /// One event of a `watch` stream.
    Event(watch::WatchEvent),
    /// Answer to `ping`.
    Pong(ping::PongReply),
}
