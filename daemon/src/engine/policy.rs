//! What the outcome of a refresh attempt means: one pure function from (the record, what
//! the attempt started from, what came back) to (the next state, what to persist first,
//! the audit line and event, the answer for the waiters). It is docs/refreshing.md's "what each
//! answer of a provider does" table and the crash-window rules, in code; the tests below
//! walk them row by row.

use tokd_protocol::{EpochMs, ErrorCode, ErrorReply};

use crate::providers::ProviderError;
use crate::sessions::import::TokenSet;
use crate::sessions::{Prior, RefreshResult, RefreshState, Trouble, human_ms};
use crate::store::SessionRecord;
use crate::timing;

/// What a refresh attempt brought back.
#[derive(Debug)]
pub enum Attempted {
    /// The provider answered with tokens.
    Tokens {
        /// The tokens (expiry counted from `sent_at`).
        tokens: TokenSet,
        /// The origin of the endpoint that issued them.
        origin: String,
        /// When the request left.
        sent_at: EpochMs,
    },
    /// The attempt failed.
    Failed {
        /// How, classified.
        error: ProviderError,
        /// When the request left; `None` when nothing was sent.
        sent_at: Option<EpochMs>,
    },
    /// Nothing was sent: the daemon is shutting down.
    Aborted,
    /// The session was removed or replaced meanwhile; nothing may be committed.
    Stale,
}

/// Everything [`settle`] looks at besides the outcome.
#[derive(Debug)]
pub struct Context<'a> {
    /// The session's name (for messages).
    pub name: &'a str,
    /// The record as the attempt found it.
    pub record: &'a SessionRecord,
    /// What the attempt started from.
    pub prior: &'a Prior,
    /// Whether the request spent the refresh token (the refresh_token grant); a client
    /// credentials request rotates nothing and leaves no crash-window mark.
    pub spends_refresh_token: bool,
    /// Wall-clock now.
    pub now: EpochMs,
    /// The backoff's random factor, in `[0.5, 1.0]`.
    pub backoff_jitter: f64,
}

/// The audit line and event an outcome is reported with.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// A refresh succeeded.
    Refreshed {
        /// The new token's expiry.
        expires_at_ms: EpochMs,
        /// Successful refreshes so far.
        refresh_count: u64,
    },
    /// A refresh failed and will be retried.
    RefreshFailed {
        /// Failures in a row.
        failures: u32,
        /// When the next attempt is planned.
        retry_at: EpochMs,
        /// The request left and no answer came.
        sent_no_answer: bool,
        /// What happened.
        error: String,
    },
    /// Refreshing can never succeed.
    NeedsLogin {
        /// Why.
        reason: String,
    },
    /// The provider rejects the client or the config is wrong.
    NeedsConfig {
        /// Why.
        reason: String,
    },
    /// Nothing to report.
    Nothing,
}

/// The decision for one outcome.
#[derive(Debug)]
pub struct Settled {
    /// The record to persist before anything acts on the outcome (with the state's verdict
    /// and mark); `None`: nothing changed that the store must know.
    pub record: Option<SessionRecord>,
    /// The next state (`Idle` is planned by the caller).
    pub refresh: RefreshState,
    /// Whether the access token changed (a new token gets a new jitter and expiry report).
    pub new_token: bool,
    /// The audit line and event.
    pub report: Report,
    /// The answer for the requests waiting on the refresh.
    pub reply: RefreshResult,
}

/// Decides what `outcome` means for the session (see the module docs).
pub fn settle(ctx: &Context<'_>, outcome: Attempted) -> Settled {
    match outcome {
        Attempted::Tokens {
            tokens,
            origin,
            sent_at,
        } => tokens_came(ctx, tokens, origin, sent_at),
        Attempted::Failed { error, sent_at } => failed(ctx, error, sent_at),
        Attempted::Aborted => Settled {
            record: None,
            refresh: resume(ctx.prior, ctx.now),
            new_token: false,
            report: Report::Nothing,
            reply: Err(shutting_down()),
        },
        Attempted::Stale => Settled {
            record: None,
            refresh: resume(ctx.prior, ctx.now),
            new_token: false,
            report: Report::Nothing,
            reply: Err(ErrorReply::new(
                ErrorCode::NotFound,
                format!(
                    "session {:?} was removed or replaced during the refresh",
                    ctx.name
                ),
            )),
        },
    }
}

/// The answer to a request the daemon will not carry out because it is stopping.
pub fn shutting_down() -> ErrorReply {
    ErrorReply::new(ErrorCode::ShuttingDown, "the daemon is shutting down")
}

/// Where an attempt that did not happen leaves the session: as it was.
fn resume(prior: &Prior, now: EpochMs) -> RefreshState {
    match (prior.lost, &prior.trouble) {
        (Some(lost), trouble) => RefreshState::Unsettled {
            lost,
            retry_at: now,
            trouble: trouble.clone(),
        },
        (None, Some(trouble)) => RefreshState::Backoff {
            trouble: trouble.clone(),
            retry_at: now,
        },
        (None, None) => RefreshState::Idle { due_at: None },
    }
}

fn tokens_came(ctx: &Context<'_>, t: TokenSet, origin: String, sent_at: EpochMs) -> Settled {
    let mut record = ctx.record.clone();
    let rotated = t.refresh_token.is_some();
    if let Some(rt) = t.refresh_token {
        record.refresh_token = Some(rt);
        record.refresh_expires_at_ms = t.refresh_expires_at_ms;
    } else if t.refresh_expires_at_ms.is_some() {
        record.refresh_expires_at_ms = t.refresh_expires_at_ms;
    }
    if ctx.spends_refresh_token {
        record.refresh_origin = Some(origin);
    }
    // An answer whose token is already expired (expires_in 0 or negative, an expiry in the
    // past) is a failure for the session, but its refresh token may be the only valid one
    // now: keep that, and keep serving the old access token.
    if t.expires_at_ms <= ctx.now {
        let error = format!(
            "the provider answered with a token that is already expired (expired {} before \
             the answer arrived)",
            human_ms(ctx.now.saturating_sub(t.expires_at_ms))
        );
        // A new refresh token settles an earlier lost request; without one, the stored
        // token is the same as before and the lost request stays unsettled.
        let prior = Prior {
            trouble: ctx.prior.trouble.clone(),
            lost: if rotated { None } else { ctx.prior.lost },
        };
        let mut settled = retry_later(ctx, &prior, error, None, false);
        settled.record = Some(record);
        return settled;
    }
    record.access_token = t.access_token;
    record.token_type = t.token_type;
    record.expires_at_ms = t.expires_at_ms;
    if t.id_token.is_some() {
        record.id_token = t.id_token;
    }
    if t.scope.is_some() {
        record.scope = t.scope;
    }
    record.last_refresh_at_ms = Some(sent_at);
    record.refresh_count += 1;
    let report = Report::Refreshed {
        expires_at_ms: record.expires_at_ms,
        refresh_count: record.refresh_count,
    };
    Settled {
        record: Some(record),
        refresh: RefreshState::Idle { due_at: None },
        new_token: true,
        report,
        reply: Ok(()),
    }
}

fn failed(ctx: &Context<'_>, error: ProviderError, sent_at: Option<EpochMs>) -> Settled {
    // A lost request is only the grant's concern when the grant rotates.
    let lost = ctx.prior.lost.filter(|_| ctx.spends_refresh_token);
    match error {
        ProviderError::NeedsLogin(reason) => needs_login(ctx, reason, lost, sent_at),
        ProviderError::NeedsConfig(reason) => {
            let mut settled = terminal(
                ctx,
                RefreshState::NeedsConfig {
                    reason: reason.clone(),
                    // The provider answered this request, but an earlier one whose answer
                    // was lost may still have rotated the refresh token: the evidence stays.
                    lost,
                },
            );
            settled.report = Report::NeedsConfig {
                reason: reason.clone(),
            };
            settled.reply = Err(ErrorReply::new(
                ErrorCode::NeedsConfig,
                format!("session {:?} needs a config fix: {reason}", ctx.name),
            ));
            settled
        }
        ProviderError::Retryable {
            message,
            retry_after,
            sent_no_answer,
        } => {
            let unknown = sent_no_answer && ctx.spends_refresh_token;
            let prior = Prior {
                trouble: ctx.prior.trouble.clone(),
                // While the outcome of this request (or an earlier one) is unknown, the
                // mark stays; an answer on the stored refresh token with no earlier loss
                // clears it.
                lost: lost.or(if unknown { sent_at } else { None }),
            };
            let mut settled = retry_later(ctx, &prior, message, retry_after, sent_no_answer);
            let mark_cleared =
                ctx.spends_refresh_token && sent_at.is_some() && prior.lost.is_none();
            if mark_cleared {
                settled.record = Some(ctx.record.clone());
            }
            settled
        }
    }
}

fn needs_login(
    ctx: &Context<'_>,
    reason: String,
    lost: Option<EpochMs>,
    sent_at: Option<EpochMs>,
) -> Settled {
    let reason = match lost {
        Some(_) => format!(
            "refresh interrupted: a refresh was sent but its answer was lost, and the \
             provider now refuses the stored refresh token ({reason})"
        ),
        None => reason,
    };
    let mut settled = terminal(
        ctx,
        RefreshState::NeedsLogin {
            reason: reason.clone(),
        },
    );
    if let Some(record) = &mut settled.record {
        if lost.is_some()
            && let Some(sent_at) = sent_at
        {
            // Refusing a refresh token that was already presented is how reuse detection
            // revokes a whole grant, its access tokens included: stop serving the old
            // access token too.
            record.expires_at_ms = record.expires_at_ms.min(sent_at);
        }
        record.refresh_token = None;
        record.refresh_expires_at_ms = None;
    }
    settled.report = Report::NeedsLogin {
        reason: reason.clone(),
    };
    settled.reply = Err(ErrorReply::new(
        ErrorCode::NeedsLogin,
        format!("session {:?} needs a login: {reason}", ctx.name),
    ));
    settled
}

/// A terminal verdict: persisted, nothing retried.
fn terminal(ctx: &Context<'_>, refresh: RefreshState) -> Settled {
    Settled {
        record: Some(ctx.record.clone()),
        refresh,
        new_token: false,
        report: Report::Nothing,
        reply: Ok(()),
    }
}

/// A retryable failure: back off (or stay unsettled while a lost request is unanswered).
fn retry_later(
    ctx: &Context<'_>,
    prior: &Prior,
    error: String,
    retry_after: Option<std::time::Duration>,
    sent_no_answer: bool,
) -> Settled {
    let trouble = Trouble::after(prior.trouble.as_ref(), error.clone());
    let delay = timing::backoff(trouble.failures, retry_after, ctx.backoff_jitter);
    let retry_at = ctx
        .now
        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2));
    let report = Report::RefreshFailed {
        failures: trouble.failures,
        retry_at,
        sent_no_answer,
        error: error.clone(),
    };
    let refresh = match prior.lost {
        Some(lost) => RefreshState::Unsettled {
            lost,
            retry_at,
            trouble: Some(trouble),
        },
        None => RefreshState::Backoff { trouble, retry_at },
    };
    Settled {
        record: None,
        refresh,
        new_token: false,
        report,
        reply: Err(ErrorReply::new(ErrorCode::RefreshFailed, error)),
    }
}

#[cfg(test)]
mod tests {
    //! One test per row of docs/refreshing.md's "what each answer of a provider does" table, and
    //! per crash-window rule.

    use std::time::Duration;

    use tokd_protocol::Secret;

    use super::*;
    use crate::providers::http::test_answer as answer;
    use crate::providers::oauth2::interpret;

    const NOW: EpochMs = 1_000_000;
    const SENT: EpochMs = 999_000;

    fn record() -> SessionRecord {
        SessionRecord {
            name: "s".into(),
            provider: "p".into(),
            attrs: vec![],
            access_token: Secret::new("at-old"),
            token_type: "Bearer".into(),
            expires_at_ms: NOW + 60_000,
            refresh_token: Some(Secret::new("rt-old")),
            refresh_expires_at_ms: None,
            id_token: None,
            scope: None,
            created_at_ms: 0,
            last_refresh_at_ms: None,
            refresh_count: 3,
            terminal: None,
            refresh_origin: Some("https://id.example".into()),
            in_flight_since_ms: None,
        }
    }

    fn run(prior: Prior, status: u16, body: &str) -> Settled {
        let record = record();
        let ctx = Context {
            name: "s",
            record: &record,
            prior: &prior,
            spends_refresh_token: true,
            now: NOW,
            backoff_jitter: 1.0,
        };
        let outcome = match interpret(&answer(status, body), SENT, None, &[]) {
            Ok(tokens) => Attempted::Tokens {
                tokens,
                origin: "https://id.example".into(),
                sent_at: SENT,
            },
            Err(error) => Attempted::Failed {
                error,
                sent_at: Some(SENT),
            },
        };
        settle(&ctx, outcome)
    }

    fn lost_before() -> Prior {
        Prior {
            trouble: None,
            lost: Some(SENT - 5_000),
        }
    }

    #[test]
    fn tokens_are_stored_the_refresh_token_rotated_and_the_mark_cleared() {
        let s = run(
            Prior::default(),
            200,
            r#"{"access_token":"at-new","expires_in":3600,"refresh_token":"rt-new"}"#,
        );
        let r = s.record.expect("persisted before it is served");
        assert_eq!(r.access_token.expose(), "at-new");
        assert_eq!(r.refresh_token.as_ref().map(Secret::expose), Some("rt-new"));
        assert_eq!(r.refresh_count, 4);
        assert_eq!(r.last_refresh_at_ms, Some(SENT));
        assert!(matches!(s.refresh, RefreshState::Idle { .. }));
        assert_eq!(s.refresh.mark(), None);
        assert!(s.new_token && s.reply.is_ok());
        assert!(matches!(
            s.report,
            Report::Refreshed {
                refresh_count: 4,
                ..
            }
        ));
    }

    #[test]
    fn no_refresh_token_in_the_answer_keeps_the_old_one() {
        let s = run(
            Prior::default(),
            200,
            r#"{"access_token":"at-new","expires_in":3600}"#,
        );
        let r = s.record.expect("persisted");
        assert_eq!(r.refresh_token.as_ref().map(Secret::expose), Some("rt-old"));
    }

    #[test]
    fn a_token_already_expired_on_arrival_is_a_failure_that_keeps_the_new_refresh_token() {
        let s = run(
            Prior::default(),
            200,
            r#"{"access_token":"at-new","expires_in":0,"refresh_token":"rt-new"}"#,
        );
        let r = s.record.expect("the rotated refresh token is persisted");
        assert_eq!(
            r.access_token.expose(),
            "at-old",
            "the old token is still served"
        );
        assert_eq!(r.refresh_token.as_ref().map(Secret::expose), Some("rt-new"));
        assert!(matches!(s.refresh, RefreshState::Backoff { .. }));
        assert!(!s.new_token);
    }

    #[test]
    fn invalid_grant_drops_the_refresh_token_and_needs_a_login() {
        let s = run(Prior::default(), 400, r#"{"error":"invalid_grant"}"#);
        let r = s.record.expect("persisted");
        assert!(r.refresh_token.is_none());
        assert_eq!(
            r.expires_at_ms,
            NOW + 60_000,
            "the current token is served on"
        );
        assert!(matches!(s.refresh, RefreshState::NeedsLogin { .. }));
        assert!(s.refresh.terminal().is_some() && s.refresh.mark().is_none());
        assert_eq!(
            s.reply.expect_err("waiters told").code,
            ErrorCode::NeedsLogin
        );
    }

    #[test]
    fn a_200_carrying_an_error_is_classified_as_that_error() {
        let s = run(Prior::default(), 200, r#"{"error":"invalid_grant"}"#);
        assert!(matches!(s.refresh, RefreshState::NeedsLogin { .. }));
    }

    #[test]
    fn client_errors_need_a_config_fix_and_keep_the_refresh_token() {
        for (status, body) in [
            (401, r#"{"error":"invalid_client"}"#),
            (400, r#"{"error":"unauthorized_client"}"#),
            (400, r#"{"error":"invalid_scope"}"#),
            (404, ""),
            (401, ""),
        ] {
            let s = run(Prior::default(), status, body);
            let r = s.record.expect("persisted");
            assert!(r.refresh_token.is_some(), "{status} {body}");
            assert!(
                matches!(s.refresh, RefreshState::NeedsConfig { lost: None, .. }),
                "{status} {body}: {:?}",
                s.refresh
            );
        }
    }

    #[test]
    fn server_errors_and_rate_limits_back_off_honouring_retry_after() {
        for (status, body) in [
            (500, ""),
            (503, ""),
            (429, ""),
            (400, r#"{"error":"server_error"}"#),
        ] {
            let s = run(Prior::default(), status, body);
            let RefreshState::Backoff { trouble, retry_at } = &s.refresh else {
                panic!("{status}: {:?}", s.refresh);
            };
            assert_eq!(trouble.failures, 1);
            assert_eq!(*retry_at, NOW + 1_000, "first step 1 s");
            assert!(s.record.is_some(), "{status}: the answer clears the mark");
        }
        let ra = {
            let record = record();
            let prior = Prior::default();
            let ctx = Context {
                name: "s",
                record: &record,
                prior: &prior,
                spends_refresh_token: true,
                now: NOW,
                backoff_jitter: 1.0,
            };
            settle(
                &ctx,
                Attempted::Failed {
                    error: ProviderError::Retryable {
                        message: "429".into(),
                        retry_after: Some(Duration::from_secs(90)),
                        sent_no_answer: false,
                    },
                    sent_at: Some(SENT),
                },
            )
        };
        assert_eq!(ra.refresh.retry_at(), Some(NOW + 90_000));
    }

    #[test]
    fn failures_accumulate_and_back_off_further() {
        let prior = Prior {
            trouble: Some(Trouble {
                failures: 3,
                error: "503".into(),
            }),
            lost: None,
        };
        let s = run(prior, 503, "");
        assert_eq!(s.refresh.trouble().map(|t| t.failures), Some(4));
        assert_eq!(s.refresh.retry_at(), Some(NOW + 8_000));
    }

    #[test]
    fn gateway_errors_leave_the_outcome_unknown_and_the_mark_in_place() {
        for status in [502, 504] {
            let s = run(Prior::default(), status, "");
            assert!(s.record.is_none(), "{status}: the mark stays");
            assert!(
                matches!(s.refresh, RefreshState::Unsettled { lost: SENT, .. }),
                "{status}: {:?}",
                s.refresh
            );
        }
    }

    #[test]
    fn a_malformed_success_may_have_rotated_so_the_mark_stays() {
        let s = run(Prior::default(), 200, "<html>");
        assert!(s.record.is_none());
        assert!(s.refresh.unsettled());
    }

    #[test]
    fn crash_window_a_refused_retry_after_a_lost_answer_revokes_the_old_token_too() {
        let s = run(lost_before(), 400, r#"{"error":"invalid_grant"}"#);
        let RefreshState::NeedsLogin { reason } = &s.refresh else {
            panic!("{:?}", s.refresh);
        };
        assert!(reason.starts_with("refresh interrupted"), "{reason}");
        let r = s.record.expect("persisted");
        assert_eq!(
            r.expires_at_ms, SENT,
            "the old access token is no longer served"
        );
        assert!(r.refresh_token.is_none());
    }

    #[test]
    fn crash_window_a_retry_answered_with_tokens_settles_it() {
        let s = run(
            lost_before(),
            200,
            r#"{"access_token":"at-new","expires_in":3600,"refresh_token":"rt-new"}"#,
        );
        assert!(!s.refresh.unsettled());
        assert_eq!(s.refresh.mark(), None);
    }

    #[test]
    fn crash_window_a_retry_that_fails_retryably_stays_unsettled() {
        let s = run(lost_before(), 503, "");
        assert!(s.record.is_none(), "the earlier loss keeps the mark");
        assert!(matches!(
            s.refresh,
            RefreshState::Unsettled {
                lost,
                trouble: Some(_),
                ..
            } if lost == SENT - 5_000
        ));
    }

    #[test]
    fn crash_window_needs_config_on_the_retry_keeps_the_evidence() {
        let s = run(lost_before(), 401, r#"{"error":"invalid_client"}"#);
        assert_eq!(s.refresh.mark(), Some(SENT - 5_000));
        assert!(matches!(s.refresh, RefreshState::NeedsConfig { .. }));
    }

    #[test]
    fn crash_window_an_expired_answer_without_a_new_refresh_token_stays_unsettled() {
        let s = run(
            lost_before(),
            200,
            r#"{"access_token":"at-new","expires_in":0}"#,
        );
        assert!(s.refresh.unsettled());
    }

    #[test]
    fn client_credentials_leave_no_crash_evidence() {
        let record = record();
        let prior = Prior::default();
        let ctx = Context {
            name: "s",
            record: &record,
            prior: &prior,
            spends_refresh_token: false,
            now: NOW,
            backoff_jitter: 1.0,
        };
        let s = settle(
            &ctx,
            Attempted::Failed {
                error: ProviderError::Retryable {
                    message: "timeout".into(),
                    retry_after: None,
                    sent_no_answer: true,
                },
                sent_at: Some(SENT),
            },
        );
        assert!(matches!(s.refresh, RefreshState::Backoff { .. }));
        assert!(s.record.is_none());
    }

    #[test]
    fn nothing_sent_changes_nothing_but_the_backoff() {
        let record = record();
        let prior = Prior::default();
        let ctx = Context {
            name: "s",
            record: &record,
            prior: &prior,
            spends_refresh_token: true,
            now: NOW,
            backoff_jitter: 1.0,
        };
        let s = settle(
            &ctx,
            Attempted::Failed {
                error: ProviderError::retryable("discovery: cannot connect"),
                sent_at: None,
            },
        );
        assert!(s.record.is_none(), "no mark was written, none to clear");
        assert!(matches!(s.refresh, RefreshState::Backoff { .. }));
        let stale = settle(&ctx, Attempted::Stale);
        assert!(stale.record.is_none() && stale.reply.is_err());
        let aborted = settle(&ctx, Attempted::Aborted);
        assert_eq!(
            aborted.reply.expect_err("told").code,
            ErrorCode::ShuttingDown
        );
    }
}
