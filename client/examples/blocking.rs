//! The blocking API, for programs without an async runtime: a persistent connection that
//! reconnects after a daemon restart, on std sockets only.
//!
//! ```sh
//! cargo run -p tokd --example blocking -- NAME
//! ```

use std::time::Duration;

use tokd::blocking::Agent;
use tokd::{ClientError, RetryPolicy};

fn main() -> Result<(), ClientError> {
    let Some(name) = std::env::args().nth(1) else {
        eprintln!("usage: blocking NAME");
        std::process::exit(2);
    };
    // Give a restarting daemon up to 30 s (the default is 10 s) before giving up.
    let mut agent =
        Agent::new().retry_policy(RetryPolicy::default().with_budget(Duration::from_secs(30)));

    // Who answers, and how the session stands.
    let status = agent.status(Some(&name))?;
    eprintln!(
        "daemon {} (pid {})",
        status.daemon.version, status.daemon.pid
    );
    for session in &status.sessions {
        eprintln!("{}: {}", session.name, session.state);
    }

    // The bearer, valid for at least 30 s; same connection as the status.
    let token = agent.token(&name, Duration::from_secs(30))?;
    println!("Authorization: Bearer {}", token.access_token.expose());
    Ok(())
}
