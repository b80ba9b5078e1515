//! What a person meets around the core: being told when a session needs them, logins that
//! end clearly, status that says what is what.

use std::time::Duration;

use tokd_e2e::httpd::{Response, Server};
use tokd_e2e::idp::TestIdp;
use tokd_e2e::{
    Launch, TestDaemon, idp_provider, refresh_token_of, stderr, stdout, token_response, wait_for,
};

/// A `notify_command` that appends `EVENT SESSION PROVIDER REASON` to `file`.
fn notify_config(file: &std::path::Path, extra: &str) -> String {
    format!(
        "notify_command = \"printf '%s %s %s %s\\\\n' \\\"$TOKD_EVENT\\\" \\\"$TOKD_SESSION\\\" \
         \\\"$TOKD_PROVIDER\\\" \\\"$TOKD_REASON\\\" >> {}\"\n{extra}\n",
        file.display()
    )
}

fn lines(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_session_that_needs_a_login_is_announced_once_and_without_secrets() {
    let idp = TestIdp::start().expect("idp");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("notified");
    let d = TestDaemon::start_with(&format!(
        "{}{}",
        notify_config(&file, ""),
        idp_provider("idp", idp.issuer(), "")
    ))
    .expect("daemon");
    let minted = idp
        .mint("tokd-test", "openid offline_access api")
        .expect("mint");
    d.add_as("work", "idp", &minted);
    let token = d.get("work", &[]).expect("token");
    idp.revoke_grant(&refresh_token_of(&minted))
        .expect("revoke");
    assert!(!d.tokd(&["refresh", "work"]).status.success());
    let told = wait_for(Duration::from_secs(10), "the notification", || {
        let l = lines(&file);
        (!l.is_empty()).then_some(l)
    });
    assert!(told[0].starts_with("needs_login work idp "), "{told:?}");
    // Still in needs_login: nothing new to say.
    assert!(!d.tokd(&["refresh", "work"]).status.success());
    d.signal(rustix::process::Signal::HUP);
    wait_for(Duration::from_secs(10), "the reload", || {
        d.log().contains("config reloaded").then_some(())
    });
    assert_eq!(lines(&file).len(), 1, "{:?}", lines(&file));
    let all = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(!all.contains(&token) && !all.contains(&refresh_token_of(&minted)));
}

#[test]
fn refreshes_that_keep_failing_are_announced_after_the_threshold_once() {
    let server = Server::start(|_| Response::new(503, "")).expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("notified");
    let d = TestDaemon::start_with(&format!(
        "{}[providers.m]\ntoken_endpoint = \"http://127.0.0.1:{}/token\"\nclient_id = \"c\"\n",
        notify_config(&file, "notify_after_failures = 2"),
        server.port()
    ))
    .expect("daemon");
    // A short token: the refresh is due at once and retried quickly.
    d.add_as("s", "m", &token_response("at", "rt", 4));
    let told = wait_for(Duration::from_secs(30), "the notification", || {
        let l = lines(&file);
        (!l.is_empty()).then_some(l)
    });
    assert!(
        told[0].starts_with("refresh_failing s m 2 refreshes"),
        "{told:?}"
    );
    let failures = |d: &TestDaemon| d.session_json("s")["consecutive_failures"].as_u64();
    wait_for(Duration::from_secs(30), "more failures", || {
        (failures(&d) >= Some(4)).then_some(())
    });
    assert_eq!(lines(&file).len(), 1, "announced once: {:?}", lines(&file));
}

#[test]
fn a_refresh_token_about_to_expire_is_announced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("notified");
    let d = TestDaemon::start_with(&format!(
        "{}{}",
        notify_config(&file, "notify_before_refresh_expiry = \"1h\""),
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("daemon");
    let body =
        r#"{"access_token":"at","expires_in":3600,"refresh_token":"rt","refresh_expires_in":600}"#;
    d.add("s", body);
    let told = wait_for(Duration::from_secs(10), "the notification", || {
        let l = lines(&file);
        (!l.is_empty()).then_some(l)
    });
    assert!(
        told[0].starts_with("refresh_token_expiring s corp "),
        "{told:?}"
    );
}

#[test]
fn a_provider_removed_by_a_reload_puts_its_sessions_in_needs_config_with_an_event() {
    let mut d = TestDaemon::start_with(&format!(
        "{}\n[providers.gone]\ntoken_endpoint = \"http://127.0.0.1:9/t\"\n",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("daemon");
    d.add_as("s", "gone", &token_response("at", "rt", 3600));
    let mut watch = d.spawn_tokd_piped(&["watch", "--json"]);
    let out = watch.stdout.take().expect("stdout");
    let mut events = std::io::BufRead::lines(std::io::BufReader::new(out));
    // `tokd watch` says on stderr once the daemon has subscribed it: the readiness signal.
    let mut notice = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(watch.stderr.take().expect("stderr")),
        &mut notice,
    )
    .expect("notice");
    assert!(notice.contains("watching"), "{notice}");
    d.set_extra_config(tokd_e2e::DEFAULT_PROVIDERS)
        .expect("config");
    d.signal(rustix::process::Signal::HUP);
    let event: serde_json::Value = loop {
        let line = events.next().expect("an event").expect("utf-8");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        if v["event"] == "needs_config" {
            break v;
        }
    };
    assert_eq!(event["session"], "s");
    assert!(
        d.log().contains("event=\"needs_config\"") && d.log().contains("session=s"),
        "{}",
        d.log()
    );
    assert_eq!(d.session_json("s")["state"], "needs_config");
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn a_min_valid_no_token_can_meet_is_answered_at_once_without_a_refresh() {
    let idp = TestIdp::start().expect("idp");
    idp.set_access_ttl(600).expect("ttl");
    let d = TestDaemon::start_with(&idp_provider("idp", idp.issuer(), "")).expect("daemon");
    d.add_as(
        "s",
        "idp",
        &idp.mint("tokd-test", "openid offline_access api")
            .expect("mint"),
    );
    idp.reset_stats().expect("reset");
    for _ in 0..3 {
        let out = d.tokd(&["get", "s", "--min-valid", "2h", "--wait", "30s", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["meets_min_valid"], false);
    }
    assert_eq!(
        idp.stats().expect("stats").refresh_requests,
        1,
        "one refresh shows what the provider issues; after it no call waits for another"
    );
}

#[test]
fn the_browser_redirect_can_use_a_fixed_port() {
    let idp = TestIdp::start().expect("idp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let d = TestDaemon::start_with(&idp_provider(
        "idp",
        idp.issuer(),
        &format!("redirect_port = {port}"),
    ))
    .expect("daemon");
    let mut login = d.spawn_tokd_piped(&[
        "login",
        "web",
        "--provider",
        "idp",
        "--browser",
        "--no-browser",
    ]);
    let stderr_pipe = login.stderr.take().expect("stderr");
    let url = std::io::BufRead::lines(std::io::BufReader::new(stderr_pipe))
        .map_while(Result::ok)
        .find(|l| l.trim().starts_with("http"))
        .expect("the login URL");
    assert!(
        url.contains(&format!(
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2Fcallback"
        )),
        "{url}"
    );
    idp.play_browser(url.trim())
        .expect("the browser gets through");
    let out = login.wait_with_output().expect("login ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_login_that_is_not_completed_in_time_ends_with_a_clear_message() {
    let idp = TestIdp::start().expect("idp");
    let d = TestDaemon::start_with(&format!(
        "login_timeout = \"10s\"\n{}",
        idp_provider("idp", idp.issuer(), "")
    ))
    .expect("daemon");
    let out = d.tokd(&["login", "work", "--provider", "idp"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("not completed within 10s"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        d.tokd(&["get", "work"]).status.code(),
        Some(4),
        "nothing stored"
    );
}

#[test]
fn under_socket_activation_status_shows_the_socket_systemd_passed() {
    let sockets = tempfile::tempdir().expect("tempdir");
    let passed = sockets.path().join("activated.sock");
    let d = TestDaemon::launch(
        tokd_e2e::DEFAULT_PROVIDERS,
        Launch {
            wrapper: ["systemd-socket-activate", "-l", "{socket}"]
                .map(Into::into)
                .to_vec(),
            default_socket: Some(passed.clone()),
            ..Launch::default()
        },
        |_| Ok(()),
    )
    .expect("activated daemon serves");
    let json: serde_json::Value =
        serde_json::from_slice(&d.tokd(&["status", "--json"]).stdout).expect("json");
    assert_eq!(
        json["daemon"]["socket"].as_str(),
        Some(passed.display().to_string().as_str())
    );
}
