//! `tokd status [NAME] [--json]`: a line about the daemon, then one row per session.
//! Exit 0 when every session has a valid token and a healthy state, else 1.

use tokd::Client;
use tokd_protocol::SessionStatus;
use tokd_protocol::verbs::status::StatusReply;

use crate::cli::StatusArgs;
use crate::output::{compact, now_ms, out, relative, table};
use crate::{CmdResult, Outcome};

/// Runs `tokd status`.
pub async fn run(mut client: Client, args: &StatusArgs) -> CmdResult {
    let reply = client.status(args.name.as_deref()).await?;
    if args.json {
        outln!("{}", to_json(&reply))?;
    } else {
        out(&human(&reply))?;
    }
    let healthy = reply
        .sessions
        .iter()
        .all(|s| s.token_valid && s.state.is_healthy());
    Ok(Outcome::Exit(if healthy { 0 } else { 1 }))
}

/// The human form: a line about the daemon, then the table.
fn human(reply: &StatusReply) -> String {
    let d = &reply.daemon;
    let now = now_ms();
    let mut text = format!(
        "tokd-daemon {} (protocol {}.{}), pid {}, up {}; socket {}; state {}; key from {}; {} session{}\n",
        d.version,
        d.protocol_major,
        d.protocol_minor,
        d.pid,
        compact(i64::try_from(d.uptime_ms).unwrap_or(i64::MAX)),
        d.socket,
        d.state_dir,
        d.key_source,
        d.session_count,
        if d.session_count == 1 { "" } else { "s" }
    );
    if let Some(proxy) = &d.proxy {
        text.push_str(&format!("proxy: {proxy}\n"));
    }
    if let Some(rejected) = &d.last_rejected_reload {
        text.push_str(&format!(
            "the last config reload was rejected {} (the config before it stays in force): {}\n",
            relative(Some(rejected.at_ms), now),
            rejected.error
        ));
    }
    if reply.sessions.is_empty() {
        text.push_str(
            "no sessions: log in with `tokd login NAME --provider P` (or import a token \
             response with `tokd add NAME --provider P < token.json`)\n",
        );
        return text;
    }
    let mut rows = vec![
        [
            "NAME",
            "PROVIDER",
            "STATE",
            "TOKEN",
            "REFRESH TOKEN",
            "EXPIRES",
            "NEXT REFRESH",
            "LAST REFRESH",
            "REFRESHES",
            "FAILURES",
            "LAST ERROR",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for s in &reply.sessions {
        rows.push(vec![
            s.name.clone(),
            if s.provider.is_empty() {
                "-".into()
            } else {
                s.provider.clone()
            },
            s.state.as_str().to_owned(),
            if s.token_valid { "valid" } else { "expired" }.to_owned(),
            if s.has_refresh_token {
                "yes"
            } else if s.client_credentials {
                "not needed"
            } else {
                "none (login at expiry)"
            }
            .to_owned(),
            relative(s.expires_at_ms, now),
            // A planned time that has passed is a refresh waiting for its turn, not history.
            match s.next_refresh_at_ms {
                Some(at) if at <= now => "due now".to_owned(),
                other => relative(other, now),
            },
            relative(s.last_refresh_at_ms, now),
            s.refresh_count.to_string(),
            s.consecutive_failures.to_string(),
            s.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    text.push_str(&table(&rows, colour_state));
    text
}

/// Colours the STATE column on a terminal (green healthy, yellow retrying, red needs you).
fn colour_state(column: usize, cell: &str) -> Option<&'static str> {
    if column != 2 {
        return None;
    }
    match cell {
        "valid" => Some("32"),
        "refreshing" | "backoff" => Some("33"),
        "needs_login" | "needs_config" | "corrupt" => Some("31"),
        _ => None,
    }
}

fn to_json(reply: &StatusReply) -> serde_json::Value {
    let d = &reply.daemon;
    serde_json::json!({
        "daemon": {
            "version": d.version,
            "protocol": d.protocol_major,
            "protocol_minor": d.protocol_minor,
            "pid": d.pid,
            "uptime_s": d.uptime_ms / 1000,
            "socket": d.socket,
            "state_dir": d.state_dir,
            "key_source": d.key_source,
            "config_file": d.config_file,
            "session_count": d.session_count,
            "proxy": d.proxy,
            "last_rejected_reload": d.last_rejected_reload.as_ref().map(|r| serde_json::json!({
                "at": r.at_ms,
                "error": r.error,
            })),
            "providers": d.providers.iter().map(provider_json).collect::<Vec<_>>(),
        },
        "sessions": reply.sessions.iter().map(session_json).collect::<Vec<_>>(),
    })
}

fn session_json(s: &SessionStatus) -> serde_json::Value {
    let attrs: serde_json::Map<String, serde_json::Value> = s
        .attrs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "name": s.name,
        "provider": s.provider,
        "state": s.state.as_str(),
        "token_valid": s.token_valid,
        "expires_at": s.expires_at_ms,
        "refresh_expires_at": s.refresh_expires_at_ms,
        "next_refresh_at": s.next_refresh_at_ms,
        "last_refresh_at": s.last_refresh_at_ms,
        "refresh_count": s.refresh_count,
        "consecutive_failures": s.consecutive_failures,
        "last_error": s.last_error,
        "has_refresh_token": s.has_refresh_token,
        "has_id_token": s.has_id_token,
        "scope": s.scope,
        "attrs": attrs,
        "client_credentials": s.client_credentials,
        "refresh_origin": s.refresh_origin,
        "resource": s.resource,
        "registered_client": s.registered_client,
    })
}

fn provider_json(p: &tokd_protocol::ProviderInfo) -> serde_json::Value {
    let (source, resource) = match &p.source {
        tokd_protocol::ProviderSource::Config => ("config", None),
        tokd_protocol::ProviderSource::Discovered { resource } => ("discovered", Some(resource)),
    };
    serde_json::json!({
        "name": p.name,
        "source": source,
        "resource": resource,
        "issuer": p.issuer,
        "registered_client": p.registered_client,
    })
}
