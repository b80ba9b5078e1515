//! The tokd socket protocol: the contract between `tokd-daemon` and every client.
//!
//! # Wire format
//!
//! A connection carries frames: a 4-byte big-endian payload length, then the payload. A frame
//! larger than the limit ([`frame::DEFAULT_MAX_FRAME`], 256 KiB) is an error and the
//! connection is closed; the limit is checked on the header, before any allocation.
//!
//! 1. **Hello.** The client's first frame is a [`hello::Hello`] in a fixed layout that never
//!    changes (magic `TOKD`, protocol major and minor, client name). The daemon answers a
//!    [`hello::HelloAck`] (same magic, its versions, a status and a text). A major mismatch
//!    is refused with `version_mismatch`; a peer of another uid gets `peer_rejected`, in the
//!    same fixed layout, so any client of any version can read the refusal.
//! 2. **Requests.** Every later client frame is one [`Request`], every daemon frame one
//!    [`Response`], encoded with bincode 2 (standard config, trailing bytes rejected).
//!    Answers come in request order, so a client may send its hello and first request in
//!    one write and read both answers: a one-shot `tokd get` costs one round trip.
//! 3. **Streams.** `watch` answers `Watching`, then one `Event` per event; `login` answers
//!    `LoginPrompt`s, then `LoggedIn` or `Error`.
//!
//! # Versioning
//!
//! bincode is not self-describing: enum variants are only ever appended, a changed message
//! is a new variant, and serde attributes that need a self-describing format (`default`,
//! `skip_serializing_if`, `flatten`, `untagged`) are never used on wire types. Appending a
//! variant bumps [`hello::PROTOCOL_MINOR`]; anything else bumps [`hello::PROTOCOL_MAJOR`].
//!
//! A daemon serves every older minor of its major: it knows the client's minor from the
//! hello and answers each client in the layouts that minor reads
//! ([`Response::for_minor`]); the frozen 1.0 layouts of grown messages are in [`v0`].
//!
//! # Layout
//!
//! - [`hello`]: the fixed-layout hello and its answer, version constants and the rule.
//! - [`frame`]: the one framing implementation (pure functions).
//! - `codec`: the tokio codec over those functions (feature `tokio`).
//! - [`request`], [`response`], [`verbs`]: the messages, one module per verb.
//! - [`error_code`]: the stable error codes.
//! - [`types`]: session states and status records.
//! - [`v0`]: the 1.0 layouts of the messages protocol 1.1 grew, and their conversions.
//! - [`secret`]: the redacting, zeroizing string for tokens.
//! - [`paths`]: where the socket lives; [`name`]: the session-name rule.

#[cfg(feature = "tokio")]
pub mod codec;
pub mod error;
pub mod error_code;
pub mod frame;
pub mod hello;
pub mod name;
pub mod paths;
pub mod request;
pub mod response;
pub mod secret;
pub mod types;
pub mod v0;
pub mod verbs;

pub use error::ProtocolError;
pub use error_code::{ErrorCode, ErrorReply};
pub use hello::{Hello, HelloAck, PROTOCOL_MAJOR, PROTOCOL_MINOR};
pub use request::Request;
pub use response::Response;
pub use secret::Secret;
pub use types::{
    DaemonInfo, DerivedStatus, EpochMs, ProviderInfo, ProviderSource, RejectedReload, SessionState,
    SessionStatus, TokenTarget,
};
