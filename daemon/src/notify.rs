//! Being told when something needs you: a configured command (`[daemon] notify_command`) runs
//! when a session enters `needs_login` or `needs_config`, when its refresh keeps failing
//! (`notify_after_failures` in a row), and, optionally, a set time before its refresh token
//! expires (`notify_before_refresh_expiry`).
//!
//! The command is run by `/bin/sh -c` with the session, provider, event and reason in the
//! environment (`TOKD_SESSION`, `TOKD_PROVIDER`, `TOKD_EVENT`, `TOKD_REASON`; never a
//! secret), stdin and stdout closed, within `notify_timeout` (killed after it). It runs once
//! per state: a session that stays in `needs_login` is not announced again until it has been
//! healthy in between. A command that fails is logged, never fatal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokd_protocol::EpochMs;
use tokd_protocol::verbs::watch::{WatchEvent, WatchEventKind};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::NotifySettings;
use crate::config_cell::ConfigCell;
use crate::sessions::{Contents, Sessions};

/// How often the refresh tokens' expiries are looked at.
const EXPIRY_CHECK: Duration = Duration::from_secs(60);

/// Why a notification is sent (`TOKD_EVENT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Why {
    NeedsLogin,
    NeedsConfig,
    RefreshFailing,
    RefreshTokenExpiring,
}

impl Why {
    fn as_str(&self) -> &'static str {
        match self {
            Why::NeedsLogin => "needs_login",
            Why::NeedsConfig => "needs_config",
            Why::RefreshFailing => "refresh_failing",
            Why::RefreshTokenExpiring => "refresh_token_expiring",
        }
    }
}

/// What the notifier remembers of one session: its failures in a row, and what it was last
/// told about (so a state is announced once).
#[derive(Debug, Default)]
struct Seen {
    failures: u32,
    told: Option<Why>,
    /// The refresh-token expiry already announced.
    expiry_told: Option<EpochMs>,
}

/// The notifier task.
pub(crate) struct Notifier {
    sessions: Arc<Sessions>,
    settings: Arc<ConfigCell>,
    seen: HashMap<String, Seen>,
}

impl Notifier {
    /// Starts the notifier; it ends when `stop` is cancelled.
    pub(crate) fn spawn(
        sessions: Arc<Sessions>,
        settings: Arc<ConfigCell>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let notifier = Notifier {
            sessions,
            settings,
            seen: HashMap::new(),
        };
        tokio::spawn(notifier.run(stop))
    }

    async fn run(mut self, stop: CancellationToken) {
        let mut events = self.sessions.events().subscribe();
        let mut ticker = tokio::time::interval(EXPIRY_CHECK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => self.check_expiries(),
                event = events.recv() => match event {
                    Ok(event) => self.on_event(event),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    fn on_event(&mut self, event: WatchEvent) {
        let Some(name) = event.session else { return };
        let settings = self.settings.current().config.notify.clone();
        let seen = self.seen.entry(name.clone()).or_default();
        let (why, reason) = match event.kind {
            WatchEventKind::NeedsLogin { reason } => (Why::NeedsLogin, reason),
            WatchEventKind::NeedsConfig { reason } => (Why::NeedsConfig, reason),
            WatchEventKind::RefreshFailed { error, .. } => {
                seen.failures = seen.failures.saturating_add(1);
                if seen.failures < settings.after_failures {
                    return;
                }
                (
                    Why::RefreshFailing,
                    format!(
                        "{} refreshes in a row failed; the last: {error}",
                        seen.failures
                    ),
                )
            }
            WatchEventKind::Refreshed { .. } | WatchEventKind::Added | WatchEventKind::LoggedIn => {
                // Healthy again: the next trouble is news. A new refresh token may expire
                // soon, too.
                seen.failures = 0;
                seen.told = None;
                self.check_expiries();
                return;
            }
            WatchEventKind::Removed => {
                self.seen.remove(&name);
                return;
            }
            _ => return,
        };
        if seen.told.as_ref() == Some(&why) {
            return;
        }
        seen.told = Some(why.clone());
        self.tell(&name, &why, &reason, &settings);
    }

    /// Announces refresh tokens that expire within the configured time, once each.
    fn check_expiries(&mut self) {
        let settings = self.settings.current().config.notify.clone();
        let Some(before) = settings.before_refresh_expiry else {
            return;
        };
        let before_ms = i64::try_from(before.as_millis()).unwrap_or(i64::MAX);
        let now = self.sessions.now();
        for session in self.sessions.all() {
            let expiring = match &*session.lock() {
                Contents::Live(live) if live.record.refresh_token.is_some() => live
                    .record
                    .refresh_expires_at_ms
                    .filter(|at| *at > now && *at - now <= before_ms)
                    .map(|at| (at, live.record.provider.clone())),
                _ => None,
            };
            let Some((at, _)) = expiring else { continue };
            let seen = self.seen.entry(session.name.clone()).or_default();
            if seen.expiry_told == Some(at) {
                continue;
            }
            seen.expiry_told = Some(at);
            let reason = format!(
                "the refresh token expires in {}; log in again before then",
                crate::sessions::human_ms(at - now)
            );
            self.tell(
                &session.name,
                &Why::RefreshTokenExpiring,
                &reason,
                &settings,
            );
        }
    }

    /// Runs the command for one notification, in the background.
    fn tell(&self, name: &str, why: &Why, reason: &str, settings: &NotifySettings) {
        let Some(command) = settings.command.clone() else {
            return;
        };
        let provider = self
            .sessions
            .find(name)
            .and_then(|s| s.with_live(|live| live.record.provider.clone()))
            .unwrap_or_default();
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&command)
            .env("TOKD_SESSION", name)
            .env("TOKD_PROVIDER", &provider)
            .env("TOKD_EVENT", why.as_str())
            .env("TOKD_REASON", reason)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let (session, event, timeout) = (name.to_owned(), why.as_str(), settings.timeout);
        tokio::spawn(async move {
            let ran = async {
                let child = cmd.spawn()?;
                child.wait_with_output().await
            };
            match tokio::time::timeout(timeout, ran).await {
                Ok(Ok(out)) if out.status.success() => {
                    tracing::info!(session = %session, event, "notified");
                }
                Ok(Ok(out)) => {
                    let said: String = String::from_utf8_lossy(&out.stderr)
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(200)
                        .collect();
                    tracing::warn!(session = %session, event, status = %out.status, stderr = %said, "the notify command failed");
                }
                Ok(Err(e)) => {
                    tracing::warn!(session = %session, event, error = %e, "cannot run the notify command");
                }
                Err(_) => {
                    tracing::warn!(session = %session, event, timeout_s = timeout.as_secs(), "the notify command did not finish in time and was killed");
                }
            }
        });
    }
}
