//! Client library for the tokd token daemon.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokd::ClientError> {
//! let mut client = tokd::Client::connect().await?;
//! let token = client.get("work", std::time::Duration::from_secs(30)).await?;
//! let header = format!("Bearer {}", token.access_token.expose());
//! # let _ = header; Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`] (`connection`): one greeted connection with a method per verb.
//! - [`blocking`]: a one-shot `get` for programs without an async runtime.
//! - [`ClientError`]: not running, version mismatch, daemon errors with their codes.
//!
//! The wire types are re-exported as [`protocol`].

pub mod blocking;
mod connection;
mod error;

pub use connection::{Client, Stream};
pub use error::ClientError;
pub use tokd_protocol as protocol;
