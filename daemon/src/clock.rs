//! Wall-clock time. Expiry is wall-clock time (tokio's timers are monotonic and stop during
//! suspend), so every expiry decision reads this clock.

use std::time::{SystemTime, UNIX_EPOCH};

use tokd_protocol::EpochMs;

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> EpochMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
