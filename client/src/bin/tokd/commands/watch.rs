//! `tokd watch`: session events as they happen.

use tokd::Client;
use tokd_protocol::Response;
use tokd_protocol::verbs::watch::{WatchEvent, WatchEventKind};

use crate::cli::WatchArgs;
use crate::{CmdResult, Outcome};

/// Runs `tokd watch` until the daemon goes away.
pub async fn run(client: Client, args: &WatchArgs) -> CmdResult {
    let mut stream = client.watch().await?;
    // Subscribed from here on; scripts (and tests) may wait for this line.
    crate::errln!("tokd: watching session events (Ctrl-C to stop)");
    while let Some(frame) = stream.next().await? {
        let Response::Event(event) = frame else {
            continue;
        };
        let line = if args.json {
            json_line(&event)
        } else {
            human_line(&event)
        };
        outln!("{line}")?;
    }
    Ok(Outcome::Exit(0))
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
