//! Session events as they happen, across daemon restarts: after a reconnection the stream
//! yields `resync`, the cue to re-read the state, then live events again.
//!
//! ```sh
//! cargo run -p tokd --example watch
//! ```

use tokd::protocol::verbs::watch::WatchEventKind;
use tokd::{Agent, ClientError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ClientError> {
    let mut agent = Agent::new();
    // Returns once subscribed: no event from here on is missed.
    let mut events = agent.watch().await?;
    print_state(&mut agent).await?;

    // It never ends by itself; an error means the daemon stayed away longer than the retry
    // budget (10 s by default). `Watch` is also a `futures_util::Stream`.
    loop {
        let event = events.next().await?;
        match event.kind {
            // Events may have been missed (a reconnection, or this program fell behind).
            WatchEventKind::Resync => {
                eprintln!("-- resync: reading the state again");
                print_state(&mut agent).await?;
            }
            kind => println!(
                "{}  {}",
                event.session.as_deref().unwrap_or("-"),
                kind.as_str()
            ),
        }
    }
}

/// Every session and its state, from the same agent (its own connection).
async fn print_state(agent: &mut Agent) -> Result<(), ClientError> {
    for session in agent.list().await? {
        println!("{}  {}", session.name, session.state);
    }
    Ok(())
}
