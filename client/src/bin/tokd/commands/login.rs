//! `tokd login`: shows the daemon's prompts until the login finishes. The daemon does the
//! work; Ctrl-C ends this process, which closes the connection and cancels the login.

use std::io::IsTerminal;

use tokd::Client;
use tokd_protocol::Response;
use tokd_protocol::verbs::login::{LoginMethod, LoginPrompt, LoginRequest};

use crate::cli::LoginArgs;
use crate::output::{now_ms, relative};
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
            provider: Some(args.provider),
            method,
            attrs: args.attrs,
            replace: true,
            timeout_ms: None,
            resource: None,
            issuer: None,
            scope_add: Vec::new(),
        })
        .await?;
    while let Some(frame) = stream.next().await? {
        match frame {
            Response::LoginPrompt(LoginPrompt::Device {
                verification_uri,
                user_code,
                verification_uri_complete,
                expires_in_s,
            }) => show_device_prompt(
                &verification_uri,
                &user_code,
                verification_uri_complete.as_deref(),
                expires_in_s,
            ),
            Response::LoginPrompt(LoginPrompt::Browser { url, open }) => {
                if open && open_browser(&url) {
                    crate::errln!(
                        "Opened your browser to log in. If nothing happened, open:\n\n  {url}\n"
                    );
                } else {
                    crate::errln!("To log in, open this address in a browser:\n\n  {url}\n");
                }
                crate::errln!("Waiting for the login to finish (Ctrl-C cancels)…");
            }
            Response::LoginPrompt(LoginPrompt::Notice { message }) => crate::errln!("{message}"),
            Response::LoggedIn(old) => return logged_in(&old.into()),
            Response::LoggedIn2(reply) => return logged_in(&reply),
            _ => return Err(tokd::ClientError::Unexpected("a login prompt or result").into()),
        }
    }
    Err(tokd::ClientError::Closed.into())
}

/// Says the login is done.
fn logged_in(reply: &tokd_protocol::verbs::login::LoginReply) -> CmdResult {
    let s = &reply.session;
    outln!(
        "logged in: session {} (provider {}) is ready; token expires {}",
        s.name,
        s.provider,
        relative(s.expires_at_ms, now_ms())
    )?;
    Ok(Outcome::Exit(0))
}

fn show_device_prompt(uri: &str, code: &str, complete: Option<&str>, expires_in_s: u64) {
    crate::errln!("To log in, open {uri}\nand enter the code:  {code}\n");
    if let Some(complete) = complete {
        if std::io::stderr().is_terminal()
            && let Ok(qr) = qrcode::QrCode::new(complete.as_bytes())
        {
            let art = qr
                .render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build();
            crate::errln!("Or scan this code with a phone:\n{art}");
        }
        crate::errln!("(or open {complete})\n");
    }
    crate::errln!(
        "The code expires in {}. Waiting for the approval (Ctrl-C cancels)…",
        crate::output::compact(i64::try_from(expires_in_s).unwrap_or(0) * 1000)
    );
}

/// Opens `url` with the desktop's browser (`xdg-open`, or `$BROWSER`); false if it could
/// not be started.
fn open_browser(url: &str) -> bool {
    let program = std::env::var("BROWSER").unwrap_or_else(|_| "xdg-open".to_owned());
    std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}
