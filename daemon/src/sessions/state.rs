//! A live session's refresh state: one enum whose variants carry exactly the data of that
//! state, so that no impossible combination (sending and in backoff, terminal and in
//! flight) can be written. The engine moves a session from one variant to the next; the
//! outcome of an attempt decides the next one in one pure function
//! (`engine::policy::settle`).
//!
//! The two persisted parts of the state — the terminal verdict and the crash-window mark —
//! are read from and written to the session record only through [`RefreshState::load`]
//! and [`RefreshState::terminal`] / [`RefreshState::mark`].

use tokd_protocol::{EpochMs, ErrorReply, SessionState};
use tokio::sync::watch;

use crate::store::Terminal;

/// How a refresh ended, as the requests waiting for it see it.
pub type RefreshResult = Result<(), ErrorReply>;

/// The receiving end of a refresh task: requests that need the refresh join it here (single
/// flight), and see its result once it is settled.
pub type Flight = watch::Receiver<Option<RefreshResult>>;

/// Failed attempts since the last success, and the last failure (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trouble {
    /// How many attempts in a row failed.
    pub failures: u32,
    /// What the last one said.
    pub error: String,
}

impl Trouble {
    /// One more failure on top of `before`.
    pub fn after(before: Option<&Trouble>, error: String) -> Trouble {
        Trouble {
            failures: before.map_or(0, |t| t.failures).saturating_add(1),
            error,
        }
    }
}

/// What an attempt started from: the failures before it, and the time of an earlier request
/// whose answer was lost (the provider may have rotated the refresh token then).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prior {
    /// Failures since the last success.
    pub trouble: Option<Trouble>,
    /// When a request was sent whose answer never came.
    pub lost: Option<EpochMs>,
}

/// Where a live session's refresh stands.
#[derive(Debug)]
pub enum RefreshState {
    /// Nothing pending. The next refresh is planned at `due_at`; `None` when there is
    /// nothing to refresh with (no refresh token, no such provider): only the expiry is
    /// looked at.
    Idle {
        /// When the next refresh is planned.
        due_at: Option<EpochMs>,
    },
    /// A refresh task waits for its turn (the minimum interval, a concurrency permit).
    Waiting {
        /// Where joiners wait.
        flight: Flight,
        /// What it started from.
        prior: Prior,
    },
    /// The refresh request is out.
    Sending {
        /// Where joiners wait.
        flight: Flight,
        /// When it left (also the crash-window mark in the store, for refresh tokens).
        since: EpochMs,
        /// What it started from.
        prior: Prior,
    },
    /// Retryable failures: the next attempt at `retry_at`.
    Backoff {
        /// The failures so far.
        trouble: Trouble,
        /// When to try again.
        retry_at: EpochMs,
    },
    /// A request was sent and its answer lost (the mark was found at start, or no answer
    /// came): the provider may have rotated the refresh token. It is retried at `retry_at`,
    /// and until that retry settles, `get` waits for it instead of handing out the token.
    Unsettled {
        /// When the lost request was sent.
        lost: EpochMs,
        /// When to try again.
        retry_at: EpochMs,
        /// The failures so far, if the retries failed too.
        trouble: Option<Trouble>,
    },
    /// Refreshing can never succeed: a login is needed.
    NeedsLogin {
        /// Why (never a secret).
        reason: String,
    },
    /// The provider rejects the client or the config is wrong: a config fix revives it.
    NeedsConfig {
        /// Why (never a secret).
        reason: String,
        /// An earlier lost request, kept across the verdict so a restart still knows.
        lost: Option<EpochMs>,
    },
    /// A logout is revoking the grant: no refresh starts until it is done.
    Revoking {
        /// Where the session stood before (restored when the revocation fails).
        resume: Box<RefreshState>,
    },
}

impl RefreshState {
    /// The state of a record as loaded: its terminal verdict, or a lost request (the mark
    /// a refresh left in the store before it was sent, found at start: retried at once).
    pub fn load(terminal: Option<Terminal>, mark: Option<EpochMs>, now: EpochMs) -> Self {
        match (terminal, mark) {
            (Some(Terminal::NeedsLogin { reason }), _) => RefreshState::NeedsLogin { reason },
            (Some(Terminal::NeedsConfig { reason }), lost) => {
                RefreshState::NeedsConfig { reason, lost }
            }
            (None, Some(lost)) => RefreshState::Unsettled {
                lost,
                retry_at: now,
                trouble: None,
            },
            (None, None) => RefreshState::Idle { due_at: None },
        }
    }

    /// The persisted verdict of this state, if it is terminal.
    pub fn terminal(&self) -> Option<Terminal> {
        match self {
            RefreshState::NeedsLogin { reason } => Some(Terminal::NeedsLogin {
                reason: reason.clone(),
            }),
            RefreshState::NeedsConfig { reason, .. } => Some(Terminal::NeedsConfig {
                reason: reason.clone(),
            }),
            RefreshState::Revoking { resume } => resume.terminal(),
            _ => None,
        }
    }

    /// The crash-window mark this state needs in the store: when a request was sent whose
    /// answer is not persisted (the one out now, or a lost one).
    pub fn mark(&self) -> Option<EpochMs> {
        match self {
            RefreshState::Sending { since, prior, .. } => prior.lost.or(Some(*since)),
            RefreshState::Waiting { prior, .. } => prior.lost,
            RefreshState::Unsettled { lost, .. } => Some(*lost),
            RefreshState::NeedsConfig { lost, .. } => *lost,
            RefreshState::Revoking { resume } => resume.mark(),
            RefreshState::Idle { .. }
            | RefreshState::Backoff { .. }
            | RefreshState::NeedsLogin { .. } => None,
        }
    }

    /// The refresh task this state has, to join.
    pub fn flight(&self) -> Option<&Flight> {
        match self {
            RefreshState::Waiting { flight, .. } | RefreshState::Sending { flight, .. } => {
                Some(flight)
            }
            _ => None,
        }
    }

    /// What a new attempt starts from.
    pub fn prior(&self) -> Prior {
        match self {
            RefreshState::Waiting { prior, .. } | RefreshState::Sending { prior, .. } => {
                prior.clone()
            }
            RefreshState::Backoff { trouble, .. } => Prior {
                trouble: Some(trouble.clone()),
                lost: None,
            },
            RefreshState::Unsettled { lost, trouble, .. } => Prior {
                trouble: trouble.clone(),
                lost: Some(*lost),
            },
            RefreshState::NeedsConfig { lost, .. } => Prior {
                trouble: None,
                lost: *lost,
            },
            RefreshState::Revoking { resume } => resume.prior(),
            RefreshState::Idle { .. } | RefreshState::NeedsLogin { .. } => Prior::default(),
        }
    }

    /// When the next attempt is planned; `None` while one runs or none can.
    pub fn planned_at(&self) -> Option<EpochMs> {
        match self {
            RefreshState::Idle { due_at } => *due_at,
            RefreshState::Backoff { retry_at, .. } | RefreshState::Unsettled { retry_at, .. } => {
                Some(*retry_at)
            }
            _ => None,
        }
    }

    /// A planned retry time an on-demand `get` must respect (backoff, `Retry-After`).
    pub fn retry_at(&self) -> Option<EpochMs> {
        match self {
            RefreshState::Backoff { retry_at, .. } | RefreshState::Unsettled { retry_at, .. } => {
                Some(*retry_at)
            }
            _ => None,
        }
    }

    /// Whether a request whose answer was lost has not been settled yet: the stored token
    /// may be revoked by the provider's reuse detection once the retry arrives.
    pub fn unsettled(&self) -> bool {
        match self {
            RefreshState::Unsettled { .. } => true,
            RefreshState::Waiting { prior, .. } | RefreshState::Sending { prior, .. } => {
                prior.lost.is_some()
            }
            _ => false,
        }
    }

    /// Whether a logout holds the session.
    pub fn revoking(&self) -> bool {
        matches!(self, RefreshState::Revoking { .. })
    }

    /// The failures since the last success.
    pub fn trouble(&self) -> Option<&Trouble> {
        match self {
            RefreshState::Backoff { trouble, .. } => Some(trouble),
            RefreshState::Unsettled { trouble, .. } => trouble.as_ref(),
            RefreshState::Waiting { prior, .. } | RefreshState::Sending { prior, .. } => {
                prior.trouble.as_ref()
            }
            RefreshState::Revoking { resume } => resume.trouble(),
            _ => None,
        }
    }

    /// The state as `tokd status` names it, with its reason or last error.
    pub fn public(&self) -> (SessionState, Option<String>) {
        let last_error = || self.trouble().map(|t| t.error.clone());
        match self {
            RefreshState::NeedsLogin { reason } => (SessionState::NeedsLogin, Some(reason.clone())),
            RefreshState::NeedsConfig { reason, .. } => {
                (SessionState::NeedsConfig, Some(reason.clone()))
            }
            RefreshState::Revoking { resume } => resume.public(),
            RefreshState::Sending { .. } => (SessionState::Refreshing, last_error()),
            RefreshState::Backoff { .. } => (SessionState::Backoff, last_error()),
            RefreshState::Waiting { prior, .. } => match (&prior.trouble, prior.lost) {
                (Some(_), _) => (SessionState::Backoff, last_error()),
                (None, Some(_)) => (SessionState::Refreshing, None),
                (None, None) => (SessionState::Valid, None),
            },
            RefreshState::Unsettled { trouble, .. } => match trouble {
                Some(_) => (SessionState::Backoff, last_error()),
                None => (SessionState::Refreshing, None),
            },
            RefreshState::Idle { .. } => (SessionState::Valid, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_record_resumes_its_verdict_or_its_lost_request() {
        let lost = RefreshState::load(None, Some(5), 9);
        assert!(matches!(
            lost,
            RefreshState::Unsettled {
                lost: 5,
                retry_at: 9,
                trouble: None
            }
        ));
        assert_eq!(lost.public().0, SessionState::Refreshing);
        assert_eq!(lost.mark(), Some(5));
        let config = RefreshState::load(
            Some(Terminal::NeedsConfig { reason: "r".into() }),
            Some(5),
            9,
        );
        assert_eq!(config.mark(), Some(5), "the evidence survives the verdict");
        assert_eq!(config.public().0, SessionState::NeedsConfig);
        assert!(config.terminal().is_some());
        let idle = RefreshState::load(None, None, 9);
        assert_eq!(idle.public(), (SessionState::Valid, None));
        assert_eq!(idle.mark(), None);
    }

    #[test]
    fn a_logout_keeps_what_it_holds() {
        let held = RefreshState::Revoking {
            resume: Box::new(RefreshState::Backoff {
                trouble: Trouble {
                    failures: 2,
                    error: "503".into(),
                },
                retry_at: 7,
            }),
        };
        assert_eq!(held.public(), (SessionState::Backoff, Some("503".into())));
        assert!(held.revoking());
        assert_eq!(
            held.planned_at(),
            None,
            "nothing is planned while it is held"
        );
    }
}
