//! Wall-clock time. Expiry is wall-clock time (tokio's timers are monotonic and stop during
//! suspend), so every expiry decision reads a [`WallClock`]; the daemon uses the system
//! clock, tests substitute one that jumps (as after a suspend) while monotonic time stands
//! still.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokd_protocol::EpochMs;

/// A source of wall-clock time in epoch milliseconds.
pub trait WallClock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch now.
    fn now_ms(&self) -> EpochMs;
}

/// The system's realtime clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> EpochMs {
        now_ms()
    }
}

/// The system clock plus an adjustable offset: a clock that can jump, for tests.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicI64,
}

impl OffsetClock {
    /// A clock equal to the system clock until [`OffsetClock::jump`] is called.
    pub fn new() -> Arc<Self> {
        Arc::new(OffsetClock::default())
    }

    /// Moves this clock forward (or back) by `ms`.
    pub fn jump(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl WallClock for OffsetClock {
    fn now_ms(&self) -> EpochMs {
        now_ms().saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// Milliseconds since the Unix epoch now, by the system clock.
pub fn now_ms() -> EpochMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
