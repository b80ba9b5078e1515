//! The refresh policy's arithmetic, as pure functions: when to refresh, how long to wait
//! between attempts, how far to back off.

use std::time::Duration;

use tokd_protocol::EpochMs;

/// Longest backoff between retries.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// First backoff step.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest `Retry-After` honoured.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// The largest jitter for a token of this lifetime: `min(lifetime / 10, 30 s)`.
pub fn max_jitter_ms(lifetime: i64) -> i64 {
    (lifetime / 10).clamp(0, 30_000)
}

/// When to refresh: `expires_at − min(refresh_ahead, lifetime / 2) − jitter`.
pub fn due_ms(expires_at: EpochMs, lifetime: i64, refresh_ahead: Duration, jitter: i64) -> EpochMs {
    let ahead = i64::try_from(refresh_ahead.as_millis())
        .unwrap_or(i64::MAX)
        .min(lifetime / 2);
    expires_at
        .saturating_sub(ahead)
        .saturating_sub(jitter.clamp(0, max_jitter_ms(lifetime)))
}

/// The least time between two refreshes of one session: `min(10 s, lifetime / 10)`, never
/// below 1 s, with sub-second precision.
pub fn min_interval(lifetime: i64) -> Duration {
    let ms = (lifetime / 10).clamp(1_000, 10_000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(1_000))
}

/// Backoff after `failures` consecutive failures (1 = the first): exponential from 1 s,
/// capped at 5 min, scaled by `jitter` in `[0.5, 1.0]`, and never shorter than the
/// provider's `Retry-After` (itself capped at an hour).
pub fn backoff(failures: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let raw = BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP);
    let jittered = raw.mul_f64(jitter.clamp(0.5, 1.0));
    match retry_after {
        Some(ra) => jittered.max(ra.min(RETRY_AFTER_CAP)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_time_is_always_earlier_never_later() {
        // 1 h token, default 5 min ahead, up to 30 s jitter.
        let exp = 10_000_000;
        let life = 3_600_000;
        assert_eq!(
            due_ms(exp, life, Duration::from_secs(300), 0),
            exp - 300_000
        );
        assert_eq!(
            due_ms(exp, life, Duration::from_secs(300), 30_000),
            exp - 330_000
        );
        // Jitter beyond its bound is clamped.
        assert_eq!(
            due_ms(exp, life, Duration::from_secs(300), 99_000),
            exp - 330_000
        );
        // Short tokens: ahead is at most half the lifetime, jitter a tenth.
        assert_eq!(
            due_ms(exp, 10_000, Duration::from_secs(300), 1_000),
            exp - 6_000
        );
        assert_eq!(max_jitter_ms(10_000), 1_000);
    }

    #[test]
    fn min_interval_bounds() {
        assert_eq!(min_interval(3_600_000), Duration::from_secs(10));
        assert_eq!(min_interval(15_000), Duration::from_millis(1_500));
        assert_eq!(min_interval(1_000), Duration::from_secs(1));
        assert_eq!(min_interval(0), Duration::from_secs(1));
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        assert_eq!(backoff(1, None, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(4, None, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(4, None, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(30, None, 1.0), BACKOFF_CAP);
        assert_eq!(
            backoff(1, Some(Duration::from_secs(90)), 1.0),
            Duration::from_secs(90)
        );
        assert_eq!(
            backoff(1, Some(Duration::from_secs(99_999)), 1.0),
            RETRY_AFTER_CAP
        );
    }
}
