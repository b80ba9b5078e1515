//! `tokd login`: shows the daemon's prompts until the login finishes. The daemon does the
//! work; Ctrl-C ends this process, which closes the connection and cancels the login.

use std::io::IsTerminal;

use tokd::Client;
use tokd_protocol::verbs::login::{LoginMethod, LoginPrompt, LoginRedirect, LoginRequest};
use tokd_protocol::{Request, Response, Secret};
use tokio::sync::mpsc;

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
    let paste = args.browser && args.no_browser;
    let mut stream = client
        .login(LoginRequest {
            name: args.name.clone(),
            provider: args.provider,
            method,
            attrs: args.attrs,
            replace: args.replace,
            timeout_ms: args
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            resource: None,
            issuer: None,
            scope_add: Vec::new(),
        })
        .await?;
    // With --no-browser the browser may run on another machine, whose redirect to this
    // machine's loopback address fails to load: the user pastes that address here.
    let mut pasted = paste.then(read_pasted_lines);
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame?,
            line = next_line(&mut pasted) => {
                match line {
                    Some(url) => {
                        let redirect = LoginRedirect { url: Secret::new(url) };
                        stream.send(&Request::LoginRedirect(redirect)).await?;
                    }
                    None => pasted = None,
                }
                continue;
            }
        };
        let Some(frame) = frame else { break };
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
                    if paste {
                        crate::errln!(
                            "If that browser runs on another machine, it ends on a page that \
                             fails to load: paste that page's address here and press Enter."
                        );
                    }
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

/// Lines typed on stdin that look like a redirected address (`…?code=…` or `…?error=…`),
/// read on a thread of their own; the channel closes at end of input.
fn read_pasted_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let url = line.trim();
                    if (url.contains("code=") || url.contains("error="))
                        && tx.blocking_send(url.to_owned()).is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    rx
}

async fn next_line(pasted: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match pasted {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Says the login is done, and once, plainly, when it brought no refresh token.
fn logged_in(reply: &tokd_protocol::verbs::login::LoginReply) -> CmdResult {
    let s = &reply.session;
    outln!(
        "logged in: session {} (provider {}) is ready; token expires {}",
        s.name,
        s.provider,
        relative(s.expires_at_ms, now_ms())
    )?;
    crate::output::warn_if_no_refresh_token(s);
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
