//! When and how the reconnecting clients retry: the policy, the backoff, and the rules for
//! which failures and which requests may be retried.

use std::time::{Duration, Instant};

use tokd_protocol::{ErrorCode, Request};

use crate::error::ClientError;

/// How long the reconnecting clients ([`crate::Agent`], [`crate::blocking::Agent`],
/// [`crate::Watch`]) keep trying to reach the daemon after a transport failure.
///
/// After the first failure of a call, one new connection is tried at once (the daemon may
/// simply have restarted); after that, attempts are spaced by a backoff that starts at
/// `initial_backoff` and doubles up to `max_backoff`, until `budget` has passed since the
/// first failure. Then the last error is returned (typically
/// [`ClientError::NotRunning`]). Each call starts with a fresh budget.
///
/// ```
/// use std::time::Duration;
/// let quick = tokd::RetryPolicy::default().with_budget(Duration::from_millis(500));
/// assert_eq!(quick.budget, Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long to keep retrying after the first failure (default 10 s). Zero still allows
    /// the one immediate reconnect.
    pub budget: Duration,
    /// The wait before the second retry (default 50 ms).
    pub initial_backoff: Duration,
    /// The longest wait between two retries (default 1 s).
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The default: retry for up to 10 s, waiting 50 ms, 100 ms, … up to 1 s in between.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        budget: Duration::from_secs(10),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
    };

    /// No waiting at all: one immediate reconnect after a broken connection, then the error.
    pub const NO_WAIT: RetryPolicy = RetryPolicy {
        budget: Duration::ZERO,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
    };

    /// This policy with another total budget.
    #[must_use]
    pub fn with_budget(mut self, budget: Duration) -> RetryPolicy {
        self.budget = budget;
        self
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}

/// The state of one call's retries.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: RetryPolicy,
    deadline: Option<Instant>,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(policy: RetryPolicy) -> Backoff {
        Backoff {
            policy,
            deadline: None,
            next: policy.initial_backoff,
        }
    }

    /// After a retryable failure: how long to wait before the next attempt, or `None` when
    /// the budget is spent. The first answer is always zero (one immediate reconnect).
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let Some(deadline) = self.deadline else {
            self.deadline = Some(now + self.policy.budget);
            return Some(Duration::ZERO);
        };
        let left = deadline.checked_duration_since(now)?;
        if left.is_zero() {
            return None;
        }
        let delay = self.next.min(left);
        self.next = self
            .next
            .saturating_mul(2)
            .min(self.policy.max_backoff.max(self.policy.initial_backoff));
        Some(delay)
    }
}

/// Whether a request may be sent again when its answer was lost: reading it twice does no
/// harm (`get`, `status`, `list`, `ping`, `watch`); changing something twice might.
pub(crate) fn is_idempotent(request: &Request) -> bool {
    matches!(
        request,
        Request::Get(_)
            | Request::Get2(_)
            | Request::Status(_)
            | Request::List(_)
            | Request::Ping(_)
            | Request::Watch(_)
    )
}

/// Whether a failed connection attempt (connect and hello) is worth another try.
pub(crate) fn connect_retryable(e: &ClientError) -> bool {
    e.is_transport()
        || matches!(e, ClientError::Refused(r) if matches!(r.code, ErrorCode::Busy | ErrorCode::ShuttingDown))
}

/// Whether the failure of a request whose answer was lost (or that the daemon refused
/// because it is stopping) is worth another try, for a request that is safe to repeat.
pub(crate) fn answer_retryable(e: &ClientError) -> bool {
    e.is_transport() || matches!(e, ClientError::Daemon(r) if r.code == ErrorCode::ShuttingDown)
}

/// What a reconnecting call does after an attempt failed: the one decision
/// [`crate::Agent`] and [`crate::blocking::Agent`] share. How each keeps its connection (and
/// the async one's in-flight flag) stays with the caller.
#[derive(Debug)]
pub(crate) enum Next {
    /// The daemon answered with this error: the connection is in step, keep it, and return
    /// the error.
    Answered(ClientError),
    /// The connection is done; return this error.
    GiveUp(ClientError),
    /// The connection is done; connect again after this delay and repeat the request.
    Retry(Duration),
}

/// After the request could not be sent whole: it cannot have been carried out, so any
/// transport failure is retried while `backoff` allows.
pub(crate) fn after_send_failure(error: ClientError, backoff: &mut Backoff) -> Next {
    if error.is_transport()
        && let Some(delay) = backoff.next_delay()
    {
        return Next::Retry(delay);
    }
    Next::GiveUp(error)
}

/// After `request` was sent and no usable answer came back (`error`): the daemon's own
/// answers are returned (except `shutting_down` to a request safe to repeat); transport
/// failures are retried for requests safe to repeat while `backoff` allows, and reported as
/// [`ClientError::Interrupted`] for the others.
pub(crate) fn after_answer_failure(
    request: &Request,
    error: ClientError,
    backoff: &mut Backoff,
) -> Next {
    let idempotent = is_idempotent(request);
    if let ClientError::Daemon(_) = &error
        && !(idempotent && answer_retryable(&error))
    {
        return Next::Answered(error);
    }
    if !answer_retryable(&error) {
        return Next::GiveUp(error);
    }
    if !idempotent {
        return Next::GiveUp(ClientError::Interrupted {
            verb: request.verb(),
            source: Box::new(error),
        });
    }
    match backoff.next_delay() {
        Some(delay) => Next::Retry(delay),
        None => Next::GiveUp(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_retry_is_immediate_even_with_no_budget() {
        let mut b = Backoff::new(RetryPolicy::NO_WAIT);
        assert_eq!(b.next_delay(), Some(Duration::ZERO));
        assert_eq!(b.next_delay(), None);
    }

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let policy = RetryPolicy {
            budget: Duration::from_secs(3600),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        };
        let mut b = Backoff::new(policy);
        let delays: Vec<_> = (0..6).filter_map(|_| b.next_delay()).collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 10, 20, 40, 40, 40]);
    }

    #[test]
    fn only_reads_are_idempotent() {
        use tokd_protocol::verbs::{get, ping, refresh, remove};
        assert!(is_idempotent(&Request::Ping(ping::PingRequest {})));
        assert!(is_idempotent(&Request::Get(
            tokd_protocol::v0::GetRequest {
                name: "s".into(),
                min_valid_ms: 0,
                wait_ms: 0,
                include_id_token: false,
            }
        )));
        assert!(is_idempotent(&Request::Get2(get::GetRequest {
            name: "s".into(),
            min_valid_ms: 0,
            wait_ms: 0,
            include_id_token: false,
            target: tokd_protocol::TokenTarget::default(),
        })));
        assert!(!is_idempotent(&Request::Refresh(refresh::RefreshRequest {
            name: "s".into(),
            wait_ms: 0,
        })));
        assert!(!is_idempotent(&Request::Remove(remove::RemoveRequest {
            name: "s".into(),
        })));
    }

    #[test]
    fn daemon_answers_are_not_transport_failures() {
        use tokd_protocol::ErrorReply;
        let not_found = ClientError::Daemon(ErrorReply::new(ErrorCode::NotFound, "no"));
        assert!(!answer_retryable(&not_found));
        assert!(!connect_retryable(&not_found));
        let stopping = ClientError::Daemon(ErrorReply::new(ErrorCode::ShuttingDown, "bye"));
        assert!(answer_retryable(&stopping));
        assert!(answer_retryable(&ClientError::Closed));
        let busy = ClientError::Refused(ErrorReply::new(ErrorCode::Busy, "busy"));
        assert!(connect_retryable(&busy));
        let rejected = ClientError::Refused(ErrorReply::new(ErrorCode::PeerRejected, "no"));
        assert!(!connect_retryable(&rejected));
    }

    #[test]
    fn after_a_lost_answer_only_safe_requests_are_repeated() {
        use tokd_protocol::ErrorReply;
        use tokd_protocol::verbs::{ping, refresh};
        let ping = Request::Ping(ping::PingRequest {});
        let refresh = Request::Refresh(refresh::RefreshRequest {
            name: "s".into(),
            wait_ms: 0,
        });
        let daemon = |code| ClientError::Daemon(ErrorReply::new(code, "said so"));
        let decide = |request: &Request, error| {
            after_answer_failure(request, error, &mut Backoff::new(RetryPolicy::NO_WAIT))
        };

        // The daemon's answers come back as they are, on a connection that stays.
        assert!(matches!(
            decide(&ping, daemon(ErrorCode::NotFound)),
            Next::Answered(ClientError::Daemon(r)) if r.code == ErrorCode::NotFound
        ));
        assert!(matches!(
            decide(&refresh, daemon(ErrorCode::ShuttingDown)),
            Next::Answered(ClientError::Daemon(r)) if r.code == ErrorCode::ShuttingDown
        ));
        // A stopping daemon or a lost connection: a read is repeated at once…
        assert!(matches!(
            decide(&ping, daemon(ErrorCode::ShuttingDown)),
            Next::Retry(d) if d.is_zero()
        ));
        assert!(matches!(decide(&ping, ClientError::Closed), Next::Retry(d) if d.is_zero()));
        // … a change is not: it may have taken effect.
        assert!(matches!(
            decide(&refresh, ClientError::Closed),
            Next::GiveUp(ClientError::Interrupted { verb: "refresh", source })
                if matches!(*source, ClientError::Closed)
        ));
        // A timeout is not a transport failure: nothing is repeated.
        let timeout = ClientError::Timeout(Duration::from_secs(1));
        assert!(matches!(
            decide(&ping, timeout),
            Next::GiveUp(ClientError::Timeout(_))
        ));
        // Once the budget is spent, the last error is returned.
        let mut backoff = Backoff::new(RetryPolicy::NO_WAIT);
        assert!(matches!(
            after_answer_failure(&ping, ClientError::Closed, &mut backoff),
            Next::Retry(_)
        ));
        assert!(matches!(
            after_answer_failure(&ping, ClientError::Closed, &mut backoff),
            Next::GiveUp(ClientError::Closed)
        ));
    }

    #[test]
    fn a_request_that_was_not_sent_whole_is_repeated_while_the_budget_lasts() {
        let mut backoff = Backoff::new(RetryPolicy::NO_WAIT);
        assert!(matches!(
            after_send_failure(ClientError::Closed, &mut backoff),
            Next::Retry(d) if d.is_zero()
        ));
        assert!(matches!(
            after_send_failure(ClientError::Closed, &mut backoff),
            Next::GiveUp(ClientError::Closed)
        ));
        // Not a transport failure (the frame was too large, say): not repeated.
        let mut backoff = Backoff::new(RetryPolicy::DEFAULT);
        assert!(matches!(
            after_send_failure(ClientError::Unexpected("x"), &mut backoff),
            Next::GiveUp(ClientError::Unexpected("x"))
        ));
    }
}
