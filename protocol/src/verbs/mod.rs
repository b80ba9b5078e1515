//! One module per verb: its request and its reply types.

pub mod add;
pub mod get;
pub mod list;
pub mod login;
pub mod logout;
pub mod ping;
pub mod refresh;
pub mod remove;
pub mod status;
pub mod watch;
