//! The engine's own thread, running a single-threaded tokio runtime.
//!
//! Refresh work (building and sending the HTTP request, parsing the answer, sealing the new
//! record) runs here rather than on the workers that serve connections. A `get` that
//! arrives during a refresh storm then finds a worker waiting in `epoll`, instead of queueing
//! behind refresh tasks on a cooperative scheduler; the kernel shares the CPUs between the
//! two sides by preemption.

use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// A running engine thread: where to spawn, and how to stop it.
#[derive(Debug)]
pub struct EngineThread {
    handle: Handle,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl EngineThread {
    /// Starts the thread and its runtime (timers and I/O enabled, for HTTP).
    ///
    /// # Errors
    /// When the thread or the runtime cannot be created.
    pub fn start() -> std::io::Result<EngineThread> {
        let (ready, handle) = std::sync::mpsc::channel();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tokd-engine".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(runtime.handle().clone()));
                // Tasks still here when this returns (only after shutdown's bounded wait)
                // are dropped with the runtime.
                runtime.block_on(stopped.cancelled());
            })?;
        let handle = handle
            .recv()
            .map_err(|_| std::io::Error::other("the engine thread ended before it started"))??;
        Ok(EngineThread {
            handle,
            stop,
            thread: Some(thread),
        })
    }

    /// The runtime refresh tasks are spawned on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Lets the thread end (after shutdown has waited for the refreshes in flight).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}
