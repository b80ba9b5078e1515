//! Group commit: one thread flushes sled for every writer waiting at that moment.
//!
//! sled 0.34.7's `flush_async` can deadlock when several flushes run at once (upstream
//! spacejam/sled#1308, fixed but never released); a refresh storm runs many. Here only one
//! thread ever flushes, with the synchronous `flush`, and each flush acknowledges every write
//! that was waiting when it started — concurrent refreshes share one fsync instead of queueing
//! for one each.

use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

/// The flushing thread and the queue of writers waiting for it.
pub struct Flusher {
    queue: Option<mpsc::Sender<Waiter>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the flushing thread for `db`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(db: sled::Db) -> std::io::Result<Flusher> {
        let (queue, waiting) = mpsc::channel::<Waiter>();
        let thread = std::thread::Builder::new()
            .name("tokd-flush".into())
            .spawn(move || {
                while let Ok(first) = waiting.recv() {
                    let mut batch = vec![first];
                    batch.extend(waiting.try_iter());
                    let result = db.flush().map(drop).map_err(|e| e.to_string());
                    for waiter in batch {
                        let _ = waiter.send(result.clone());
                    }
                }
            })?;
        Ok(Flusher {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Waits until everything written before this call is on disk.
    ///
    /// # Errors
    /// sled's error text when the flush failed, or that the flusher is gone.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .as_ref()
            .ok_or("the store is closing")?
            .send(tx)
            .map_err(|_| "the flushing thread stopped".to_owned())?;
        rx.await
            .map_err(|_| "the flushing thread stopped".to_owned())?
    }
}

impl Drop for Flusher {
    /// Lets the thread finish the flushes already asked for, then waits for it, so sled is
    /// closed before the store's directory lock is released.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flusher")
    }
}
