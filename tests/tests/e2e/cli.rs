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

/// A stdout whose reader is gone: the write end of a pipe whose read end is closed.
fn closed_pipe() -> std::process::Stdio {
    let (read, write) = rustix::pipe::pipe().expect("pipe");
    drop(read);
    std::process::Stdio::from(write)
}

/// Runs `cmd` with stdout a closed pipe (and stderr too when `close_stderr`); its exit code
/// and stderr.
fn with_closed_stdout(
    mut cmd: std::process::Command,
    stdin: Option<&str>,
    close_stderr: bool,
) -> (Option<i32>, String) {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    })
    .stdout(closed_pipe())
    .stderr(if close_stderr {
        closed_pipe()
    } else {
        std::process::Stdio::piped()
    });
    let mut child = cmd.spawn().expect("spawn");
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        // Verbs that read no input (`version`, `--help`) may be gone already.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("wait");
    (out.status.code(), stderr(&out))
}

/// The exit status after a closed stdout: 128 + SIGPIPE, as a shell reports for `cat`.
const BROKEN_PIPE: Option<i32> = Some(141);

fn assert_quiet(what: &str, (code, err): (Option<i32>, String)) {
    assert_ne!(code, Some(101), "{what} panicked: {err}");
    assert!(
        !err.contains("panicked")
            && !err.contains("failed printing")
            && !err.contains("RUST_BACKTRACE"),
        "{what}: {err}"
    );
    assert_eq!(code, BROKEN_PIPE, "{what}: {err}");
    assert_eq!(err, "", "{what}: a closed pipe is not worth a message");
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let d = TestDaemon::start_with(&format!(
        "{}[helpers.git.\"git.example.com\"]\nsession = \"work\"\n\
         [helpers.docker.\"registry.example.com\"]\nsession = \"work\"\n",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("daemon starts");
    d.add("work", &token_response("at-pipe", "rt-pipe", 3600));
    let config = d.config_path().display().to_string();
    let tokd = |args: &[&str]| {
        let mut cmd = std::process::Command::new(&tokd_e2e::binaries().tokd);
        cmd.arg("--socket").arg(d.socket()).args(args);
        isolate_env(&mut cmd, d.dir.path());
        cmd
    };
    let git_input = "protocol=https\nhost=git.example.com\n\n";
    let git_args = ["git-credential", "--config", &config, "get"];
    let cases: Vec<(&[&str], Option<&str>)> = vec![
        (&["status"], None),
        (&["status", "--json"], None),
        (&["status", "work"], None),
        (&["list"], None),
        (&["get", "work"], None),
        (&["get", "work", "--json"], None),
        (&["kubectl", "work"], None),
        (&git_args, Some(git_input)),
        (&["completions", "bash"], None),
        (&["completions", "zsh"], None),
        (&["man"], None),
        (&["--help"], None),
        (&["--version"], None),
    ];
    for (args, stdin) in &cases {
        assert_quiet(
            &format!("{args:?}"),
            with_closed_stdout(tokd(args), *stdin, false),
        );
    }
    // Commands that change something still do it, then end quietly.
    let (code, err) = with_closed_stdout(
        tokd(&["add", "second", "--provider", "corp"]),
        Some(&token_response("at-second", "rt-second", 3600)),
        false,
    );
    assert_quiet("add", (code, err));
    assert_eq!(d.get("second", &[]).as_deref(), Ok("at-second"));
    assert_quiet(
        "rm",
        with_closed_stdout(tokd(&["rm", "second"]), None, false),
    );
    assert!(d.get("second", &[]).is_err(), "removed");

    // An error with stderr closed as well: its exit code, no panic.
    let (code, _) = with_closed_stdout(tokd(&["get", "missing"]), None, true);
    assert_eq!(code, Some(4));
    let (code, _) = with_closed_stdout(tokd(&["status"]), None, true);
    assert_eq!(code, BROKEN_PIPE);

    // docker's helper.
    let docker = |verb: &str| {
        let mut cmd = std::process::Command::new(&tokd_e2e::binaries().docker_credential);
        isolate_env(&mut cmd, d.dir.path());
        cmd.env("TOKD_SOCKET", d.socket())
            .env("TOKD_CONFIG", d.config_path())
            .arg(verb);
        cmd
    };
    for verb in ["get", "list", "version", "--help"] {
        assert_quiet(
            &format!("docker-credential-tokd {verb}"),
            with_closed_stdout(docker(verb), Some("registry.example.com\n"), false),
        );
    }

    // `watch`: the first event it cannot print ends it.
    let mut cmd = tokd(&["watch"]);
    let mut watcher = cmd
        .stdin(std::process::Stdio::null())
        .stdout(closed_pipe())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    let mut err = std::io::BufReader::new(watcher.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).expect("watch speaks");
    assert!(line.contains("watching"), "{line}");
    d.add("third", &token_response("at-third", "rt-third", 3600));
    let status = tokd_e2e::wait_for(std::time::Duration::from_secs(10), "watch to end", || {
        watcher.try_wait().expect("try_wait")
    });
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("stderr");
    assert_quiet("watch", (status.code(), rest));
}
