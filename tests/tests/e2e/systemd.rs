//! Running under systemd: the units verify, the test plays systemd's notify socket and
//! socket activation, and signals do what the unit file promises.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;
use tokd_e2e::{
    Launch, TestDaemon, binaries, hello_answer, stderr, stdout, token_response, wait_for,
};

/// `systemd-analyze`, installed through apt when missing and we may (CI runs as root).
fn systemd_analyze() -> Option<&'static str> {
    let found = |tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found("systemd-analyze") {
        return Some("systemd-analyze");
    }
    if rustix::process::geteuid().is_root() {
        let _ = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && apt-get install -y -qq systemd >/dev/null",
            ])
            .status();
        if found("systemd-analyze") {
            return Some("systemd-analyze");
        }
    }
    None
}

#[test]
fn both_units_verify() {
    let Some(tool) = systemd_analyze() else {
        panic!("systemd-analyze is not installed and cannot be installed here");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("run dir");
    for unit in ["service", "socket"] {
        let out = Command::new(&binaries().daemon)
            .args(["--print-unit", unit])
            .output()
            .expect("print-unit");
        assert!(out.status.success());
        std::fs::write(dir.path().join(format!("tokd.{unit}")), &out.stdout).expect("write");
    }
    let service = std::fs::read_to_string(dir.path().join("tokd.service")).expect("unit");
    assert!(
        service.contains(&format!("ExecStart={}", binaries().daemon.display())),
        "--print-unit fills in this binary's path"
    );
    for key in [
        "Type=notify",
        "ExecReload=",
        "WatchdogSec=",
        "ProtectSystem=strict",
        "UMask=0077",
        "StateDirectory=tokd",
    ] {
        assert!(service.contains(key), "{key}");
    }
    let out = Command::new(tool)
        .args(["--user", "verify", "tokd.service", "tokd.socket"])
        .current_dir(dir.path())
        .env("XDG_RUNTIME_DIR", &run)
        .env("HOME", dir.path())
        .output()
        .expect("systemd-analyze runs");
    let diagnostics = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{diagnostics}");
    // verify exits 0 on unknown keys too; any line naming our files is a finding.
    assert!(!diagnostics.contains("tokd."), "{diagnostics}");
}

fn notify_socket(dir: &Path) -> UnixDatagram {
    let sock = UnixDatagram::bind(dir.join("notify.sock")).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    sock
}

/// Reads notifications until one contains `what`; returns everything read.
fn read_until(sock: &UnixDatagram, what: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {what:?} notification ({e}); saw {seen:?}"));
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = msg.lines().any(|l| l == what);
        seen.push(msg);
        if done {
            return seen;
        }
    }
}

#[test]
fn notify_ready_watchdog_status_and_stopping() {
    // The test plays systemd: a datagram socket the daemon notifies.
    let manager = tempfile::tempdir().expect("tempdir");
    let sock = notify_socket(manager.path());
    let mut d = TestDaemon::launch(
        tokd_e2e::DEFAULT_PROVIDERS,
        Launch {
            env: vec![
                (
                    "NOTIFY_SOCKET".into(),
                    manager.path().join("notify.sock").into(),
                ),
                ("WATCHDOG_USEC".into(), "400000".into()),
            ],
            no_wait: true,
            ..Launch::default()
        },
        |_| Ok(()),
    )
    .expect("launches");
    let seen = read_until(&sock, "READY=1");
    // READY=1 only once the socket serves.
    let ack = hello_answer(&d.socket()).expect("the socket serves at READY=1");
    assert!(ack.outcome.is_ok());
    let ready = seen.last().expect("ready");
    assert!(ready.contains("STATUS=0 sessions"), "{ready}");

    // The watchdog is pinged (every 200 ms here), twice at least.
    read_until(&sock, "WATCHDOG=1");
    read_until(&sock, "WATCHDOG=1");

    // STATUS follows the sessions.
    d.add("work", &token_response("at-notify", "rt-notify", 3600));
    let seen = read_until(&sock, "STATUS=1 session, 1 healthy, 0 need a login");
    assert!(!seen.iter().any(|m| m.contains("at-notify")));

    // A reload is bracketed: RELOADING=1 (with the monotonic time) when it begins, READY=1
    // when it is over, for a config that is taken and for one that is rejected.
    for broken in [false, true] {
        if broken {
            std::fs::write(d.config_path(), "[daemon\nnot toml").expect("break the config");
        }
        d.signal(Signal::HUP);
        let seen = read_until(&sock, "RELOADING=1");
        let reloading = seen.last().expect("reloading");
        assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
        let seen = read_until(&sock, "READY=1");
        let ready = seen.last().expect("ready after the reload");
        assert!(
            ready.contains("STATUS=1 session, 1 healthy, 0 need a login"),
            "broken config {broken}: {ready}"
        );
    }
    assert_eq!(d.get("work", &[]), Ok("at-notify".to_owned()));

    d.signal(Signal::TERM);
    read_until(&sock, "STOPPING=1");
    let status = d.wait_exit().expect("exits");
    assert!(status.success(), "{status}");
}

#[test]
fn a_socket_passed_by_systemd_is_served_and_never_unlinked() {
    let mut d = TestDaemon::launch(
        tokd_e2e::DEFAULT_PROVIDERS,
        Launch {
            wrapper: ["systemd-socket-activate", "-l", "{socket}"]
                .map(Into::into)
                .to_vec(),
            ..Launch::default()
        },
        |_| Ok(()),
    )
    .expect("activated daemon serves");
    d.add(
        "work",
        &token_response("at-activated", "rt-activated", 3600),
    );
    assert_eq!(d.get("work", &[]), Ok("at-activated".to_owned()));
    assert!(
        d.log().contains("using the socket passed by systemd"),
        "{}",
        d.log()
    );
    let status = d.stop().expect("stops");
    assert!(status.success());
    assert!(
        d.socket().exists(),
        "the daemon unlinked a socket it did not bind"
    );
}

#[test]
fn sighup_applies_a_changed_config_and_keeps_the_old_one_when_broken() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.add("work", &token_response("at-hup", "rt-hup", 3600));
    let add_new = |d: &TestDaemon| {
        d.tokd_with_stdin(
            &["add", "other", "--provider", "newco"],
            Some(&token_response("at-new", "rt-new", 3600)),
        )
    };
    let out = add_new(&d);
    assert_eq!(out.status.code(), Some(2), "no such provider yet");

    d.set_extra_config(&format!(
        "{}\n[providers.newco]\ntoken_endpoint = \"http://127.0.0.1:9/t\"\n",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("config");
    d.signal(Signal::HUP);
    wait_for(Duration::from_secs(10), "the reload", || {
        d.log().contains("config reloaded").then_some(())
    });
    let out = add_new(&d);
    assert!(out.status.success(), "{}", stderr(&out));

    // A broken file is rejected; the config in force stays, sessions stay.
    std::fs::write(d.config_path(), "[daemon\nthis is not toml").expect("break it");
    d.signal(Signal::HUP);
    wait_for(Duration::from_secs(10), "the rejection", || {
        d.log().contains("config reload rejected").then_some(())
    });
    assert!(d.log().contains("config.toml"), "the error names the file");
    assert_eq!(stdout(&d.tokd(&["list"])), "other\nwork\n");
    let out = d.tokd_with_stdin(
        &["add", "third", "--provider", "newco"],
        Some(&token_response("at-3", "rt-3", 3600)),
    );
    assert!(
        out.status.success(),
        "the reloaded providers stay: {}",
        stderr(&out)
    );
    assert!(d.tokd(&["status"]).status.success());
}

#[test]
fn under_journald_log_lines_carry_no_timestamp_or_colour() {
    let d = TestDaemon::launch(
        tokd_e2e::DEFAULT_PROVIDERS,
        Launch {
            env: vec![("JOURNAL_STREAM".into(), "8:12345".into())],
            ..Launch::default()
        },
        |_| Ok(()),
    )
    .expect("daemon starts");
    let log = d.log();
    let first = log.lines().next().expect("a log line");
    assert!(
        first.starts_with(" INFO") || first.starts_with("INFO"),
        "{first}"
    );
    assert!(!log.contains('\u{1b}'), "no ANSI escapes");
    let plain = TestDaemon::start().expect("daemon starts");
    let first = plain
        .log()
        .lines()
        .next()
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        first.starts_with("20"),
        "a timestamp without journald: {first}"
    );
}
