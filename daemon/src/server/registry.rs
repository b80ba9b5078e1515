//! The connection table behind the connection cap: who holds a slot, and in what phase.
//!
//! At the cap a newcomer does not simply bounce: the connection that costs least to lose
//! makes room — first the oldest that has not said hello yet (a flood or a half-open
//! socket), then the one idle the longest. Connections working on a request or carrying
//! a stream (`watch`, `login`) are never evicted; when every slot is such a one, the
//! newcomer gets `busy`.
//!
//! Guests (uids admitted only by a session's `allow_uids`) may hold at most half the slots
//! ([`Registry::guest_cap`]), so they can never keep the owner out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// What a connection is doing, as far as eviction cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Accepted, no hello yet.
    Greeting = 0,
    /// Greeted and waiting for the next request.
    Idle = 1,
    /// Handling a request.
    Working = 2,
    /// Carrying a `watch` or `login` stream.
    Streaming = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Greeting,
            1 => Phase::Idle,
            2 => Phase::Working,
            _ => Phase::Streaming,
        }
    }
}

/// Every live connection, bounded by the cap.
#[derive(Debug)]
pub struct Registry {
    max: usize,
    /// Reference point for the per-connection "since" stamps (monotonic).
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    live: HashMap<u64, Arc<Entry>>,
    /// How many of `live` are guests.
    guests: usize,
}

impl Inner {
    /// Takes `id` out of the table; false when it was not there (evicted already).
    fn remove(&mut self, id: u64) -> Option<Arc<Entry>> {
        let entry = self.live.remove(&id)?;
        if entry.guest.load(Ordering::Relaxed) {
            self.guests -= 1;
        }
        Some(entry)
    }
}

#[derive(Debug)]
struct Entry {
    phase: AtomicU8,
    /// Microseconds since the registry's epoch when the phase last changed.
    since_us: AtomicU64,
    evict: CancellationToken,
    /// Set once by [`Slot::claim_guest`]; counted in [`Inner::guests`] while live.
    guest: AtomicBool,
}

/// A connection's slot; frees it on drop.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    entry: Arc<Entry>,
    registry: Arc<Registry>,
}

/// Why a newcomer was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A free slot.
    Free,
    /// A slot freed by evicting a connection in this phase.
    Evicted(Phase),
}

impl Registry {
    /// A table of at most `max` connections.
    pub fn new(max: usize) -> Arc<Registry> {
        Arc::new(Registry {
            max,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Admits a new connection, evicting one if the table is full; `None`: every slot is
    /// working or streaming, answer `busy`.
    pub fn admit(self: &Arc<Self>) -> Option<(Slot, Admission)> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut admission = Admission::Free;
        if inner.live.len() >= self.max {
            let victim = inner
                .live
                .iter()
                .filter_map(|(id, e)| {
                    let phase = Phase::from_u8(e.phase.load(Ordering::Relaxed));
                    matches!(phase, Phase::Greeting | Phase::Idle)
                        .then(|| ((phase as u8, e.since_us.load(Ordering::Relaxed)), *id))
                })
                .min()
                .map(|(_, id)| id)?;
            if let Some(entry) = inner.remove(victim) {
                admission = Admission::Evicted(Phase::from_u8(entry.phase.load(Ordering::Relaxed)));
                entry.evict.cancel();
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let entry = Arc::new(Entry {
            phase: AtomicU8::new(Phase::Greeting as u8),
            since_us: AtomicU64::new(self.now_us()),
            evict: CancellationToken::new(),
            guest: AtomicBool::new(false),
        });
        inner.live.insert(id, entry.clone());
        Some((
            Slot {
                id,
                entry,
                registry: self.clone(),
            },
            admission,
        ))
    }

    /// How many slots guests may hold at once: half of them, rounded down, so the other
    /// half stays the owner's whatever guests do.
    pub fn guest_cap(&self) -> usize {
        self.max / 2
    }

    /// How many connections hold a slot.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .live
            .len()
    }

    /// Whether no connection holds a slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Slot {
    /// Records what the connection is doing now (two relaxed stores; no lock).
    pub fn set(&self, phase: Phase) {
        self.entry.phase.store(phase as u8, Ordering::Relaxed);
        self.entry
            .since_us
            .store(self.registry.now_us(), Ordering::Relaxed);
    }

    /// Marks this connection as a guest's, if guests hold fewer than their share of the
    /// slots; otherwise `Err(cap)` and the connection must be refused as busy.
    ///
    /// # Errors
    /// The guests' share is full; carries the share.
    pub fn claim_guest(&self) -> Result<(), usize> {
        let cap = self.registry.guest_cap();
        let mut inner = self
            .registry
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !inner.live.contains_key(&self.id) {
            // Evicted meanwhile: it is about to go anyway.
            return Ok(());
        }
        if inner.guests >= cap {
            return Err(cap);
        }
        if !self.entry.guest.swap(true, Ordering::Relaxed) {
            inner.guests += 1;
        }
        Ok(())
    }

    /// Cancelled when the connection is evicted to make room for another.
    pub fn evicted(&self) -> &CancellationToken {
        &self.entry.evict
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self
            .registry
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // An evicted slot was removed already (and its id is never reused).
        inner.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_ungreeted_connection_goes_first_then_the_longest_idle() {
        let reg = Registry::new(3);
        let (idle, _) = reg.admit().expect("slot");
        idle.set(Phase::Idle);
        let (greeting_old, _) = reg.admit().expect("slot");
        let (greeting_new, _) = reg.admit().expect("slot");
        greeting_new.set(Phase::Greeting);

        let (_a, how) = reg.admit().expect("evicts");
        assert_eq!(how, Admission::Evicted(Phase::Greeting));
        assert!(greeting_old.evicted().is_cancelled());
        assert!(!greeting_new.evicted().is_cancelled());
        assert!(!idle.evicted().is_cancelled());
        assert_eq!(reg.len(), 3);
        drop(greeting_old);
        assert_eq!(reg.len(), 3, "dropping an evicted slot frees nothing twice");
    }

    #[test]
    fn working_and_streaming_connections_are_never_evicted() {
        let reg = Registry::new(2);
        let (working, _) = reg.admit().expect("slot");
        working.set(Phase::Working);
        let (streaming, _) = reg.admit().expect("slot");
        streaming.set(Phase::Streaming);
        assert!(reg.admit().is_none(), "busy");
        working.set(Phase::Idle);
        let (_n, how) = reg.admit().expect("evicts the idle one");
        assert_eq!(how, Admission::Evicted(Phase::Idle));
        assert!(working.evicted().is_cancelled());
        assert!(!streaming.evicted().is_cancelled());
    }

    #[test]
    fn guests_hold_at_most_half_the_slots_and_give_them_back() {
        let reg = Registry::new(4);
        let (g1, _) = reg.admit().expect("slot");
        let (g2, _) = reg.admit().expect("slot");
        let (g3, _) = reg.admit().expect("slot");
        assert_eq!(g1.claim_guest(), Ok(()));
        assert_eq!(g2.claim_guest(), Ok(()));
        assert_eq!(g3.claim_guest(), Err(2), "the guests' half is full");
        drop(g3);
        g1.set(Phase::Working);
        g2.set(Phase::Working);
        let (owner, _) = reg.admit().expect("the owner's half is free");
        drop(owner);
        drop(g1);
        let (g4, _) = reg.admit().expect("slot");
        assert_eq!(
            g4.claim_guest(),
            Ok(()),
            "a guest that left gave its share back"
        );
        // An evicted guest gives its share back too.
        g4.set(Phase::Idle);
        let (a, _) = reg.admit().expect("slot");
        a.set(Phase::Working);
        let (b, _) = reg.admit().expect("slot");
        b.set(Phase::Working);
        let (g5, how) = reg.admit().expect("evicts the idle guest");
        assert_eq!(how, Admission::Evicted(Phase::Idle));
        assert!(g4.evicted().is_cancelled());
        assert_eq!(g5.claim_guest(), Ok(()));
    }

    #[test]
    fn a_dropped_slot_is_free_again() {
        let reg = Registry::new(1);
        let (slot, _) = reg.admit().expect("slot");
        drop(slot);
        assert!(reg.is_empty());
        assert_eq!(reg.admit().map(|(_, a)| a), Some(Admission::Free));
    }
}
