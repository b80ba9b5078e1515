//! Living under systemd: the socket it passes (`LISTEN_FDS`), and the notifications it
//! expects (`READY=1`, `STATUS=`, `WATCHDOG=1`, `STOPPING=1`). Every notification is a no-op
//! without `NOTIFY_SOCKET`, so the daemon behaves the same when started by hand.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::config_cell::ConfigCell;
use crate::server::socket::SocketError;
use crate::sessions::Sessions;

/// The listening socket systemd passed (socket activation), if any. It clears `LISTEN_FDS`,
/// `LISTEN_PID` and `LISTEN_FDNAMES` so that children do not inherit them.
///
/// # Safety
/// Call it before any other thread exists (it modifies the environment), and at most once
/// (it takes ownership of the passed descriptor).
///
/// # Errors
/// [`SocketError::Io`] when the passed descriptor is not a listening Unix stream socket.
#[allow(unsafe_code)]
pub unsafe fn take_activated_listener()
-> Result<Option<std::os::unix::net::UnixListener>, SocketError> {
    let fds: Vec<i32> = sd_notify::listen_fds()
        .map(Iterator::collect)
        .unwrap_or_default();
    // SAFETY: the caller guarantees no other thread exists, so nothing reads the
    // environment concurrently.
    unsafe {
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let Some(&fd) = fds.first() else {
        return Ok(None);
    };
    if fds.len() > 1 {
        tracing::warn!(
            count = fds.len(),
            "systemd passed several sockets; using the first"
        );
    }
    // SAFETY: systemd hands this descriptor to the process (LISTEN_PID matched our pid), and
    // the caller guarantees it is taken once, here; nothing else in the process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let bad = |what: &str| SocketError::Io {
        path: format!("<systemd socket fd {fd}>").into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned()),
    };
    let kind = rustix::net::sockopt::socket_type(&owned).map_err(|_| bad("not a socket"))?;
    if kind != rustix::net::SocketType::STREAM {
        return Err(bad("not a stream socket (use ListenStream=)"));
    }
    match rustix::net::getsockname(&owned) {
        Ok(addr) if addr.address_family() == rustix::net::AddressFamily::UNIX => {}
        _ => return Err(bad("not a Unix socket")),
    }
    if !rustix::net::sockopt::socket_acceptconn(&owned).unwrap_or(false) {
        return Err(bad("not listening"));
    }
    let listener = std::os::unix::net::UnixListener::from(owned);
    listener
        .set_nonblocking(true)
        .map_err(|e| SocketError::Io {
            path: format!("<systemd socket fd {fd}>").into(),
            source: e,
        })?;
    Ok(Some(listener))
}

/// Tells systemd the daemon serves: after start, and after each reload.
pub fn notify_ready(summary: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(summary)]);
}

/// Tells systemd the daemon is stopping.
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Tells systemd a config reload has begun (`RELOADING=1` with the monotonic time, as
/// `Type=notify-reload` expects); [`notify_ready`] afterwards says it is over, whether the
/// new config was taken or rejected.
pub fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Whether a service manager listens for notifications.
pub fn notifying() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Sends `WATCHDOG=1` (the liveness probes decide when).
pub fn notify_watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// The one-line summary for `STATUS=`.
pub fn summary(sessions: &Sessions, settings: &ConfigCell) -> String {
    let (total, healthy, needs_login) = sessions.health_counts(&settings.current().config);
    format!(
        "{total} session{}, {healthy} healthy, {needs_login} need{} a login",
        if total == 1 { "" } else { "s" },
        if needs_login == 1 { "s" } else { "" }
    )
}

/// Keeps `STATUS=` current: recomputed after session events (at most once a second, since
/// a count walks every session) and at least every minute (expiries raise no event), sent
/// when it changed.
pub async fn status_updates(
    sessions: std::sync::Arc<Sessions>,
    settings: std::sync::Arc<ConfigCell>,
    shutdown: CancellationToken,
) {
    let mut events = sessions.events().subscribe();
    let mut last = summary(&sessions, &settings);
    loop {
        tokio::select! {
            _ = events.recv() => {
                // Let a burst of events (a refresh storm) settle into one recount.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return,
                }
                events = events.resubscribe();
            }
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            () = shutdown.cancelled() => return,
        }
        let now = summary(&sessions, &settings);
        if now != last {
            notify(&[NotifyState::Status(&now)]);
            last = now;
        }
    }
}
