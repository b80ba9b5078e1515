//! End-to-end tests: the real `tokd-daemon` and `tokd` binaries in temp dirs.

mod access;
mod cli;
mod clock;
mod faults;
mod fuzzing;
mod hardening;
mod helpers;
mod idp_smoke;
mod library;
mod login;
mod people;
mod people_cli;
mod provider_trust;
mod proxy;
mod refresh;
mod review;
mod secrets;
mod server;
mod sessions;
mod socket_places;
mod storage;
mod systemd;
mod token_files;
mod trust;
