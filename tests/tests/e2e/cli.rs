//! The command line's interface contract: output shapes and exit codes.

use tokd_e2e::{TestDaemon, isolate_env, run_with_stdin, stderr, stdout, token_response};

#[test]
fn status_json_has_the_documented_fields() {
    let d = TestDaemon::start().expect("daemon starts");
    d.add("work", &token_response("at-status", "rt-status", 3600));
    let out = d.tokd(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let daemon = &json["daemon"];
    for key in [
        "version",
        "protocol",
        "pid",
        "uptime_s",
        "socket",
        "state_dir",
        "key_source",
    ] {
        assert!(!daemon[key].is_null(), "daemon.{key} missing: {daemon}");
    }
    assert_eq!(daemon["pid"], d.pid().expect("running"));
    assert_eq!(daemon["socket"], d.socket().display().to_string());
    let s = &json["sessions"][0];
    for key in [
        "name",
        "provider",
        "state",
        "token_valid",
        "expires_at",
        "refresh_expires_at",
        "next_refresh_at",
        "last_refresh_at",
        "refresh_count",
        "consecutive_failures",
        "last_error",
    ] {
        assert!(s.get(key).is_some(), "sessions[0].{key} missing: {s}");
    }
    assert_eq!(s["name"], "work");
    assert_eq!(s["provider"], "corp");
    assert_eq!(s["state"], "valid");
    assert_eq!(s["token_valid"], true);
    assert!(
        !out.stdout.windows(9).any(|w| w == b"at-status"),
        "no token in status"
    );

    // The human form: one line about the daemon, then a table with the session.
    let human = stdout(&d.tokd(&["status"]));
    let mut lines = human.lines();
    let first = lines.next().expect("daemon line");
    assert!(
        first.contains(&format!("pid {}", d.pid().expect("pid"))),
        "{first}"
    );
    assert!(first.contains("key from key file"), "{first}");
    assert!(lines.next().expect("header").starts_with("NAME"), "{human}");
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(&row[..4], ["work", "corp", "valid", "valid"], "{human}");
}

#[test]
fn get_json_and_exit_codes() {
    let d = TestDaemon::start().expect("daemon starts");
    d.add("work", &token_response("at-json", "rt-json", 3600));
    let out = d.tokd(&["get", "work", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["access_token"], "at-json");
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["expires_in"].as_i64().expect("number") > 3500);

    // Asking for more validity than is left: still served (best token), with a warning.
    let out = d.tokd(&["get", "work", "--min-valid", "2h"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "at-json\n");
    assert!(
        stderr(&out).contains("less than the requested"),
        "{}",
        stderr(&out)
    );

    assert_eq!(d.tokd(&["get", "missing"]).status.code(), Some(4));
    assert_eq!(
        d.tokd(&["get", "work", "--min-valid", "soon"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(d.tokd(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn exec_passes_the_token_and_the_exit_status() {
    let d = TestDaemon::start().expect("daemon starts");
    d.add("work", &token_response("at-exec", "rt-exec", 3600));
    let out = d.tokd(&[
        "exec",
        "work",
        "--",
        "sh",
        "-c",
        "printf %s \"$TOKD_TOKEN\"; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout(&out), "at-exec");
}

#[test]
fn every_command_says_when_the_daemon_is_not_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nobody-home.sock");
    for args in [
        vec!["get", "x"],
        vec!["status"],
        vec!["list"],
        vec!["rm", "x"],
        vec!["watch"],
    ] {
        let mut cmd = std::process::Command::new(&tokd_e2e::binaries().tokd);
        cmd.arg("--socket").arg(&socket).args(&args);
        isolate_env(&mut cmd, dir.path());
        let out = run_with_stdin(cmd, None);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not running") && stderr(&out).contains("tokd-daemon"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn watch_reports_added_and_removed() {
    use std::io::{BufRead, BufReader};
    let d = TestDaemon::start().expect("daemon starts");
    let mut watcher = d.spawn_tokd_piped(&["watch", "--json"]);
    let mut lines = BufReader::new(watcher.stdout.take().expect("stdout")).lines();
    // `tokd watch` says on stderr once the daemon has subscribed it: the readiness signal.
    let mut notice = String::new();
    BufReader::new(watcher.stderr.take().expect("stderr"))
        .read_line(&mut notice)
        .expect("notice");
    assert!(notice.contains("watching"), "{notice}");

    d.add("w1", &token_response("at-w1", "rt-w1", 60));
    let event: serde_json::Value =
        serde_json::from_str(&lines.next().expect("event").expect("utf-8")).expect("json");
    assert_eq!(event["event"], "added");
    assert_eq!(event["session"], "w1");
    assert!(d.tokd(&["rm", "w1"]).status.success());
    let next: serde_json::Value =
        serde_json::from_str(&lines.next().expect("event").expect("utf-8")).expect("json");
    assert_eq!(next["event"], "removed");
    assert_eq!(next["session"], "w1");
    let _ = watcher.kill();
    let _ = watcher.wait();
}
