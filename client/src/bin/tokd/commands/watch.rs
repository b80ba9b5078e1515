//! `tokd watch`: session events as they happen.

use tokd::Client;
use tokd_protocol::Response;
use tokd_protocol::verbs::watch::{WatchEvent, WatchEventKind};

use tokd_protocol::paths::SocketPath;

use crate::cli::WatchArgs;
use crate::{CmdError, CmdResult, Outcome};

/// Runs `tokd watch` until the daemon goes away (exit 1, with a message), or, with
/// `--reconnect`, until interrupted.
pub async fn run(client: Client, socket: &SocketPath, args: &WatchArgs) -> CmdResult {
    let mut client = client;
    let mut announce = true;
    loop {
        let why = match watch_once(client, args, announce).await {
            Ok(()) => "the daemon closed the connection".to_owned(),
            Err(CmdError::Client(e)) => e.to_string(),
            // stdout is gone: nothing more to watch for.
            Err(stdout) => return Err(stdout),
        };
        if !args.reconnect {
            crate::errln!("tokd: watch ended: {why}");
            return Ok(Outcome::Exit(1));
        }
        crate::errln!("tokd: the daemon went away ({why}); reconnecting…");
        client = reconnect(socket).await;
        crate::errln!("tokd: reconnected; events while the daemon was away were missed");
        announce = false;
        // The same resync a lagging watcher gets: re-read what you track.
        let resync = WatchEvent {
            at_ms: crate::output::now_ms(),
            session: None,
            kind: WatchEventKind::Resync,
        };
        outln!("{}", line_of(&resync, args))?;
    }
}

fn line_of(event: &WatchEvent, args: &WatchArgs) -> String {
    if args.json {
        json_line(event)
    } else {
        human_line(event)
    }
}

/// Watches on one connection until it ends.
async fn watch_once(client: Client, args: &WatchArgs, announce: bool) -> Result<(), CmdError> {
    let mut stream = client.watch().await?;
    if announce {
        // Subscribed from here on; scripts (and tests) may wait for this line.
        crate::errln!("tokd: watching session events (Ctrl-C to stop)");
    }
    while let Some(frame) = stream.next().await? {
        let Response::Event(event) = frame else {
            continue;
        };
        outln!("{}", line_of(&event, args))?;
    }
    Ok(())
}

/// Connects again, trying once a second until the daemon is back.
async fn reconnect(socket: &SocketPath) -> Client {
    loop {
        if let Ok(client) = super::connect(socket).await {
            return client;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn json_line(e: &WatchEvent) -> String {
    let mut obj = serde_json::json!({
        "at": e.at_ms,
        "session": e.session,
        "event": e.kind.as_str(),
    });
    let extra = match &e.kind {
        WatchEventKind::Refreshed { expires_at_ms } => {
            serde_json::json!({ "expires_at": expires_at_ms })
        }
        WatchEventKind::RefreshFailed { error, retry_at_ms } => {
            serde_json::json!({ "error": error, "retry_at": retry_at_ms })
        }
        WatchEventKind::NeedsLogin { reason } | WatchEventKind::NeedsConfig { reason } => {
            serde_json::json!({ "reason": reason })
        }
        _ => serde_json::json!({}),
    };
    if let (Some(o), serde_json::Value::Object(x)) = (obj.as_object_mut(), extra) {
        o.extend(x);
    }
    obj.to_string()
}

fn human_line(e: &WatchEvent) -> String {
    let session = e.session.as_deref().unwrap_or("-");
    let detail = match &e.kind {
        WatchEventKind::Refreshed { expires_at_ms } => format!(
            " (expires {})",
            crate::output::relative(Some(*expires_at_ms), e.at_ms)
        ),
        WatchEventKind::RefreshFailed { error, .. } => format!(": {error}"),
        WatchEventKind::NeedsLogin { reason } | WatchEventKind::NeedsConfig { reason } => {
            format!(": {reason}")
        }
        _ => String::new(),
    };
    format!("{session}  {}{detail}", e.kind.as_str())
}
