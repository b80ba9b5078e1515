//! Who is on the other end: SO_PEERCRED, checked on every accepted connection.

use tokio::net::UnixStream;

/// The verdict on a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCheck {
    /// Same uid (or root when allowed), or a uid a session's `allow_uids` names: serve it.
    Allowed {
        /// The peer's uid.
        uid: u32,
        /// The peer's pid, when the kernel says.
        pid: Option<i32>,
        /// True for the daemon's own uid (and allowed root); false for a listed other uid,
        /// which may only get the tokens of the sessions that list it.
        owner: bool,
    },
    /// Another user: answer `peer_rejected` and hang up.
    Rejected {
        /// The peer's uid, if known.
        uid: Option<u32>,
        /// Why, for the refusal frame and the log.
        message: String,
    },
}

/// Checks the peer of `stream` against the daemon's uid and the uids sessions list in
/// `allow_uids` (`listed`).
pub fn check(
    stream: &UnixStream,
    own_uid: u32,
    allow_root: bool,
    listed: impl Fn(u32) -> bool,
) -> PeerCheck {
    match stream.peer_cred() {
        Ok(cred) => {
            let uid = cred.uid();
            let owner = uid == own_uid || (allow_root && uid == 0);
            if owner || listed(uid) {
                PeerCheck::Allowed {
                    uid,
                    pid: cred.pid(),
                    owner,
                }
            } else {
                PeerCheck::Rejected {
                    uid: Some(uid),
                    message: format!(
                        "this tokd daemon serves only uid {own_uid}; uid {uid} is not allowed"
                    ),
                }
            }
        }
        Err(e) => PeerCheck::Rejected {
            uid: None,
            message: format!("cannot identify the peer: {e}"),
        },
    }
}
