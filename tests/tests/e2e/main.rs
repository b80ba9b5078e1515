//! End-to-end tests: the real `tokd-daemon` and `tokd` binaries in temp dirs.

mod cli;
mod idp_smoke;
mod server;
mod sessions;
mod storage;
