//! `tokd login`: shows the daemon's prompts until the login finishes.

use tokd::Client;
use tokd_protocol::Response;
use tokd_protocol::verbs::login::{LoginMethod, LoginPrompt, LoginRequest};

use crate::cli::LoginArgs;
use crate::{CmdResult, Outcome};

/// Runs `tokd login`.
pub async fn run(client: Client, args: LoginArgs) -> CmdResult {
    let method = if args.browser {
        LoginMethod::Browser {
            open_browser: !args.no_browser,
        }
    } else {
        LoginMethod::Device
    };
    let mut stream = client
        .login(LoginRequest {
            name: args.name.clone(),
            provider: args.provider,
            method,
            attrs: args.attrs,
        })
        .await?;
    while let Some(frame) = stream.next().await? {
        match frame {
            Response::LoginPrompt(LoginPrompt::Device {
                verification_uri,
                user_code,
                verification_uri_complete,
                ..
            }) => {
                eprintln!("To log in, open {verification_uri} and enter the code {user_code}");
                if let Some(uri) = verification_uri_complete {
                    eprintln!("(or open {uri})");
                }
            }
            Response::LoginPrompt(LoginPrompt::Browser { url, .. }) => {
                eprintln!("To log in, open {url}");
            }
            Response::LoggedIn(reply) => {
                println!("logged in: session {} is ready", reply.session.name);
                return Ok(Outcome::Exit(0));
            }
            _ => return Err(tokd::ClientError::Unexpected("a login prompt or result")),
        }
    }
    Err(tokd::ClientError::Closed)
}
