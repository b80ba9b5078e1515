//! Client library for the tokd token daemon.
//!
//! Long-running programs should not shell out to `tokd get`: they link this library, keep
//! one connection open, and are told about changes as they happen.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokd::ClientError> {
//! use std::time::Duration;
//! use tokd::protocol::verbs::watch::WatchEventKind;
//!
//! // One connection, re-established by itself when the daemon restarts.
//! let mut agent = tokd::Agent::new();
//! let token = agent.token("work", Duration::from_secs(60)).await?;
//! let header = format!("Bearer {}", token.access_token.expose());
//!
//! // Session events; after a reconnection a `Resync` says "re-read the state".
//! let mut events = agent.watch().await?;
//! while let Ok(event) = events.next().await {
//!     if event.kind == WatchEventKind::Resync {
//!         let _status = agent.status(None).await?;
//!     }
//! }
//! # let _ = header; Ok(()) }
//! ```
//!
//! # Layout
//! - [`Agent`]: the client for long-running programs: `token`, `status`, `refresh`, … over
//!   one connection that reconnects transparently (bounded retry with backoff, see
//!   [`RetryPolicy`]), and [`Agent::watch`], a [`Watch`] stream of session events that
//!   resumes after a reconnection with a `Resync` event.
//! - [`Client`]: one greeted connection with a method per verb, no reconnection (what the
//!   `tokd` command uses); [`Stream`] for its streamed answers (`watch`, `login`).
//! - [`blocking`]: the same without an async runtime: [`blocking::Agent`] (persistent,
//!   reconnecting) and the one-shot [`blocking::get`].
//! - `reqwest` (feature `reqwest`, off by default): `BearerClient`, which puts the bearer
//!   on `reqwest` requests and, on a `401`, has tokd refresh the session and retries once.
//! - [`ClientError`]: not running, version mismatch, daemon errors with their codes,
//!   interrupted requests.
//!
//! # What is retried
//! Only transport failures: nothing listens on the socket, or the connection closed or
//! broke ([`ClientError::is_transport`]). The daemon's answers (`not_found`, `needs_login`,
//! …) are returned as they are. A request whose answer was lost is sent again only if
//! repeating it is harmless (`get`, `status`, `list`, `ping`); otherwise (`refresh`, `add`,
//! `remove`, `logout`) the call fails with [`ClientError::Interrupted`].
//!
//! # Which daemon
//! Every connection first checks who listens on the socket (SO_PEERCRED), before anything
//! is sent: this user's daemon and root's are talked to, another user's only when
//! `TOKD_DAEMON_UID` ([`DAEMON_UID_ENV`]) names its uid (a guest admitted by that user's
//! `allow_uids`); otherwise [`ClientError::UntrustedDaemon`]. Without `XDG_RUNTIME_DIR`,
//! the default socket is looked for in `/run/user/$UID` and then in the temp dir.
//!
//! The wire types are re-exported as [`protocol`].

mod agent;
pub mod blocking;
mod calls;
mod connection;
mod dial;
mod error;
#[cfg(feature = "reqwest")]
pub mod reqwest;
mod retry;
mod trust;

pub use agent::{Agent, Watch};
pub use calls::GET_WAIT;
pub use connection::{Client, Stream};
pub use error::ClientError;
pub use retry::RetryPolicy;
pub use tokd_protocol as protocol;
pub use trust::DAEMON_UID_ENV;
