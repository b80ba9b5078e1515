//! `Response`: every message the daemon sends after the hello answer.

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorReply;
use crate::v0;
use crate::verbs::{add, get, list, login, logout, ping, refresh, remove, status, watch};

/// One answer frame. Most verbs answer exactly one; `watch` answers `Watching` then `Event`s,
/// `login` answers `LoginPrompt`s then `LoggedIn` (or `Error`). Variants are only ever
/// appended.
///
/// Protocol 1.1 appended the grown forms `Token2`, `Status2`, `Added2`, `Refreshed2`,
/// `LoggedIn2` and `LoggedOut2`; the 1.0 layouts live in [`crate::v0`]. A daemon builds the
/// current forms and sends each client what its minor version reads
/// ([`Response::for_minor`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The request failed.
    Error(ErrorReply),
    /// Answer to `get` (protocol 1.0 layout).
    Token(v0::TokenReply),
    /// Answer to `status` (protocol 1.0 layout).
    Status(v0::StatusReply),
    /// Answer to `list`.
    List(list::ListReply),
    /// Answer to `add` (protocol 1.0 layout).
    Added(v0::AddReply),
    /// Answer to `remove`.
    Removed(remove::RemoveReply),
    /// Answer to `refresh` (protocol 1.0 layout).
    Refreshed(v0::RefreshReply),
    /// A step of `login`: show this to the user.
    LoginPrompt(login::LoginPrompt),
    /// The end of a successful `login` (protocol 1.0 layout).
    LoggedIn(v0::LoginReply),
    /// Answer to `logout` (protocol 1.0 layout).
    LoggedOut(v0::LogoutReply),
    /// First answer to `watch`.
    Watching(watch::WatchReply),
    /// One event of a `watch` stream.
    Event(watch::WatchEvent),
    /// Answer to `ping`.
    Pong(ping::PongReply),
    /// Answer to `get` (protocol 1.1).
    Token2(get::TokenReply),
    /// Answer to `status` (protocol 1.1).
    Status2(status::StatusReply),
    /// Answer to `add` (protocol 1.1).
    Added2(add::AddReply),
    /// Answer to `refresh` (protocol 1.1).
    Refreshed2(refresh::RefreshReply),
    /// The end of a successful `login` (protocol 1.1).
    LoggedIn2(login::LoginReply),
    /// Answer to `logout` (protocol 1.1).
    LoggedOut2(logout::LogoutReply),
}

impl Response {
    /// This answer as a client speaking protocol minor `minor` reads it: the 1.0 layout for
    /// a 1.0 client, with what 1.0 cannot say left out. `None`: a 1.0 client cannot read
    /// this frame at all (an event or prompt kind it does not know) and it is not sent.
    pub fn for_minor(self, minor: u16) -> Option<Response> {
        if minor >= 1 {
            return Some(self);
        }
        Some(match self {
            Response::Token2(t) => Response::Token(t.into()),
            Response::Status2(s) => Response::Status(s.into()),
            Response::Added2(a) => Response::Added(a.into()),
            Response::Refreshed2(r) => Response::Refreshed(r.into()),
            Response::LoggedIn2(l) => Response::LoggedIn(l.into()),
            Response::LoggedOut2(l) => Response::LoggedOut(l.into()),
            Response::LoginPrompt(prompt) if !prompt.known_to_1_0() => return None,
            Response::Event(event) if !event.kind.known_to_1_0() => return None,
            other => other,
        })
    }
}
