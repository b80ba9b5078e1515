//! `reqwest` requests that carry a session's bearer; a `401` makes tokd refresh the session
//! and the request is sent once more with the new token.
//!
//! ```sh
//! cargo run -p tokd --example reqwest --features reqwest -- NAME URL
//! ```

use tokd::Agent;
use tokd::reqwest::{BearerClient, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(url)) = (args.next(), args.next()) else {
        eprintln!("usage: reqwest NAME URL");
        std::process::exit(2);
    };
    // tokd's reqwest comes without a TLS crypto provider: pick one before building a client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = BearerClient::new(reqwest::Client::new(), Agent::new(), name);

    // The body must be cloneable for the retry (any non-streaming body is).
    let response = api.send(api.get(&url)).await?;
    println!("{} {}", response.status(), url);
    println!("{}", response.text().await?);
    Ok(())
}
