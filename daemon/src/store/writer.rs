//! The one thread that writes sled: inserts, removals and flushes, with group commit.
//!
//! Two reasons for a thread of its own:
//! - sled's writes can block (a full log buffer waits for its write-out; a page evicted from
//!   the cache is read back first). On a runtime worker that stalls every connection queued
//!   behind it, so the async side only seals records and hands them over.
//! - sled 0.34.7's `flush_async` can deadlock when several flushes run at once (upstream
//!   spacejam/sled#1308, fixed but never released); a refresh storm runs many. Here only one
//!   thread ever flushes, with the synchronous `flush`.
//!
//! The thread takes every operation waiting when it wakes, applies them in the order they
//! were sent, flushes once, and then answers each: concurrent refreshes share one fsync
//! instead of queueing for one each, and an answer means the write is on disk.

use std::sync::mpsc;
use std::thread::JoinHandle;

use sled::IVec;
use tokio::sync::oneshot;

/// What the writer thread can be asked to do; each answers once it is durable.
enum Op {
    /// Insert `value` under `key` in the sessions tree; answers whether the key was new.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        done: oneshot::Sender<Result<bool, String>>,
    },
    /// Remove `key` from the sessions tree; answers whether it existed.
    Remove {
        key: Vec<u8>,
        done: oneshot::Sender<Result<bool, String>>,
    },
    /// Flush what was written before (by any means).
    Flush {
        done: oneshot::Sender<Result<bool, String>>,
    },
}

/// The writer thread and the queue of operations waiting for it.
pub struct Writer {
    queue: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
    /// Tests: the next operation fails as a sled error would, without reaching sled.
    #[cfg(test)]
    pub(crate) fail_next: std::sync::atomic::AtomicBool,
}

impl Writer {
    /// Starts the writer thread for `db`, writing session records to `sessions`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(db: sled::Db, sessions: sled::Tree) -> std::io::Result<Writer> {
        let (queue, waiting) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("tokd-store".into())
            .spawn(move || {
                while let Ok(first) = waiting.recv() {
                    let batch: Vec<Op> = std::iter::once(first).chain(waiting.try_iter()).collect();
                    let applied: Vec<_> =
                        batch.into_iter().map(|op| apply(&sessions, op)).collect();
                    let flushed = db.flush().map(drop).map_err(|e| e.to_string());
                    for (done, result) in applied {
                        let answer = match (&flushed, result) {
                            (Ok(()), result) => result,
                            (Err(e), _) => Err(e.clone()),
                        };
                        let _ = done.send(answer);
                    }
                }
            })?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            #[cfg(test)]
            fail_next: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Stores `value` under `key`; true if the key was new. Returns once it is on disk.
    ///
    /// # Errors
    /// sled's error text, or that the writer is gone.
    pub async fn put(&self, key: &[u8], value: Vec<u8>) -> Result<bool, String> {
        self.ask(|done| Op::Put {
            key: key.to_vec(),
            value,
            done,
        })
        .await
    }

    /// Removes `key`; true if it existed. Returns once the removal is on disk.
    ///
    /// # Errors
    /// sled's error text, or that the writer is gone.
    pub async fn remove(&self, key: &[u8]) -> Result<bool, String> {
        self.ask(|done| Op::Remove {
            key: key.to_vec(),
            done,
        })
        .await
    }

    /// Waits until everything written before this call is on disk.
    ///
    /// # Errors
    /// sled's error text when the flush failed, or that the writer is gone.
    pub async fn flush(&self) -> Result<(), String> {
        self.ask(|done| Op::Flush { done }).await.map(drop)
    }

    async fn ask(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<bool, String>>) -> Op,
    ) -> Result<bool, String> {
        #[cfg(test)]
        if self
            .fail_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err("injected write failure".to_owned());
        }
        let (done, answer) = oneshot::channel();
        self.queue
            .as_ref()
            .ok_or("the store is closing")?
            .send(op(done))
            .map_err(|_| "the store's writer thread stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the store's writer thread stopped".to_owned())?
    }
}

type Answer = (oneshot::Sender<Result<bool, String>>, Result<bool, String>);

/// Applies one operation (not yet flushed) and pairs the result with whom to tell.
fn apply(sessions: &sled::Tree, op: Op) -> Answer {
    match op {
        Op::Put { key, value, done } => {
            let result = sessions
                .insert(key, IVec::from(value))
                .map(|previous| previous.is_none())
                .map_err(|e| e.to_string());
            (done, result)
        }
        Op::Remove { key, done } => {
            let result = sessions
                .remove(key)
                .map(|previous| previous.is_some())
                .map_err(|e| e.to_string());
            (done, result)
        }
        Op::Flush { done } => (done, Ok(true)),
    }
}

impl Drop for Writer {
    /// Lets the thread finish the operations already asked for, then waits for it, so sled
    /// is closed before the store's directory lock is released.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}
