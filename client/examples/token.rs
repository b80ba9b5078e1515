//! A long-running program's view of a session: one `Agent`, one connection, a fresh bearer
//! whenever it is needed. Restart the daemon while it runs: the agent reconnects by itself.
//!
//! ```sh
//! cargo run -p tokd --example token -- NAME            # print the bearer once
//! cargo run -p tokd --example token -- NAME --follow   # and again whenever it changes
//! ```

use std::time::Duration;

use tokd::{Agent, ClientError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let Some(name) = args.next() else {
        eprintln!("usage: token NAME [--follow]");
        std::process::exit(2);
    };
    let follow = args.next().as_deref() == Some("--follow");

    // The default socket (TOKD_SOCKET, then $XDG_RUNTIME_DIR/tokd/tokd.sock, …). Nothing
    // connects yet: the first call does, and every later call reuses the connection.
    let mut agent = Agent::new();
    let mut last = None;
    loop {
        // Valid for at least 60 s more, or the daemon refreshes first. Daemon answers such
        // as `not_found` or `needs_login` end the program with their message.
        let token = agent.token(&name, Duration::from_secs(60)).await?;
        if last.as_ref() != Some(&token.access_token) {
            // The bearer goes to stdout, like `tokd get`; the rest to stderr.
            println!("{}", token.access_token.expose());
            eprintln!("expires at {} (epoch ms)", token.expires_at_ms);
            last = Some(token.access_token);
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
