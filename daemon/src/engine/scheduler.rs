//! The deadline queue: which session to look at next, by the wall clock.
//!
//! A `BTreeSet<(due, name)>` plus a `Notify` that fires when an earlier deadline appears
//! (the mini-redis pattern). The loop sleeps until the next deadline but never longer than
//! the clock-check interval, because tokio's timers are monotonic and stop during suspend:
//! after a resume the wall clock is re-read within that interval.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokd_protocol::EpochMs;
use tokio::sync::Notify;

/// Deadlines by session name.
#[derive(Debug, Default)]
pub struct Scheduler {
    queue: Mutex<Queue>,
    /// Woken when a deadline earlier than the one slept on appears.
    pub notify: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    by_time: BTreeSet<(EpochMs, String)>,
    by_name: HashMap<String, EpochMs>,
}

impl Scheduler {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets (or moves) the deadline of `name`.
    pub fn schedule(&self, name: &str, at: EpochMs) {
        let earliest = {
            let mut q = self.queue();
            if let Some(old) = q.by_name.insert(name.to_owned(), at) {
                q.by_time.remove(&(old, name.to_owned()));
            }
            q.by_time.insert((at, name.to_owned()));
            q.by_time
                .first()
                .is_some_and(|(t, n)| *t == at && n == name)
        };
        if earliest {
            self.notify.notify_one();
        }
    }

    /// Forgets the deadline of `name`.
    pub fn cancel(&self, name: &str) {
        let mut q = self.queue();
        if let Some(old) = q.by_name.remove(name) {
            q.by_time.remove(&(old, name.to_owned()));
        }
    }

    /// Removes and returns every session due at or before `now`.
    pub fn pop_due(&self, now: EpochMs) -> Vec<String> {
        let mut q = self.queue();
        let mut due = Vec::new();
        while let Some((t, _)) = q.by_time.first() {
            if *t > now {
                break;
            }
            if let Some((_, name)) = q.by_time.pop_first() {
                q.by_name.remove(&name);
                due.push(name);
            }
        }
        due
    }

    /// The earliest deadline.
    pub fn next_due(&self) -> Option<EpochMs> {
        self.queue().by_time.first().map(|(t, _)| *t)
    }

    /// The deadline of `name`, if scheduled.
    pub fn due_of(&self, name: &str) -> Option<EpochMs> {
        self.queue().by_name.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::Scheduler;

    #[test]
    fn deadlines_pop_in_order_and_move() {
        let s = Scheduler::default();
        s.schedule("b", 20);
        s.schedule("a", 10);
        s.schedule("c", 30);
        s.schedule("c", 5); // moved earlier
        assert_eq!(s.next_due(), Some(5));
        assert_eq!(s.pop_due(15), vec!["c".to_owned(), "a".to_owned()]);
        s.cancel("b");
        assert_eq!(s.next_due(), None);
        assert!(s.pop_due(100).is_empty());
    }
}
