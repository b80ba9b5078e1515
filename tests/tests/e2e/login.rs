//! Logging in with the real binaries against the real provider: the device flow (the test
//! approves the code as the user would) and the browser flow (the test plays the browser).

use std::io::{BufRead, BufReader};
use std::process::Child;

use tokd_e2e::idp::TestIdp;
use tokd_e2e::{TestDaemon, idp_provider, refresh_token_of, stderr, stdout};

fn idp() -> TestIdp {
    let idp = TestIdp::start().expect("the test provider starts");
    idp.set_access_ttl(600).expect("ttl");
    idp
}

fn daemon(idp: &TestIdp) -> TestDaemon {
    TestDaemon::start_with(&idp_provider("idp", idp.issuer(), "")).expect("daemon starts")
}

/// Reads the child's stderr until a line satisfies `pick`; returns what it picked.
fn read_prompt(child: &mut Child, pick: impl Fn(&str) -> Option<String>) -> String {
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("no prompt; stderr was: {seen:?}"))
            .expect("utf-8");
        if let Some(found) = pick(&line) {
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return found;
        }
        seen.push(line);
    }
}

fn user_code(line: &str) -> Option<String> {
    line.strip_prefix("and enter the code:")
        .map(|c| c.trim().to_owned())
}

fn login_url(line: &str) -> Option<String> {
    line.trim()
        .starts_with("http")
        .then(|| line.trim().to_owned())
}

fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("tokd exits");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn device_flow_logs_in_and_the_session_refreshes() {
    let idp = idp();
    let d = daemon(&idp);
    let mut login =
        d.spawn_tokd_piped(&["login", "work", "--provider", "idp", "--attr", "team=core"]);
    let code = read_prompt(&mut login, user_code);
    idp.approve_device(&code).expect("approve");
    let (status, out) = finish(login);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("logged in: session work"), "{out}");

    let token = d.get("work", &[]).expect("a token after login");
    assert!(idp.is_active(&token).expect("introspect"));
    let s = d.session_json("work");
    assert_eq!(s["state"], "valid");
    assert_eq!(s["has_refresh_token"], true);
    assert_eq!(s["attrs"]["team"], "core");
    // The refresh token works.
    let out = d.tokd(&["refresh", "work"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d.log().contains("event=\"logged_in\""));
    assert!(!d.log().contains(&token), "no token in the log");
}

#[test]
fn a_denied_device_login_is_a_clear_error() {
    let idp = idp();
    let d = daemon(&idp);
    let mut login = d.spawn_tokd_piped(&["login", "work", "--provider", "idp"]);
    let code = read_prompt(&mut login, user_code);
    idp.deny_device(&code).expect("deny");
    let out = login.wait_with_output().expect("exits");
    assert_eq!(out.status.code(), Some(1));
    // (stderr went to the prompt reader; the audit line carries the same message)
    assert!(
        d.log().contains("event=\"login_failed\"") && d.log().contains("denied"),
        "{}",
        d.log()
    );
    assert_eq!(
        d.tokd(&["get", "work"]).status.code(),
        Some(4),
        "nothing stored"
    );
}

#[test]
fn browser_flow_with_pkce_logs_in() {
    let idp = idp();
    let d = daemon(&idp);
    let mut login = d.spawn_tokd_piped(&[
        "login",
        "web",
        "--provider",
        "idp",
        "--browser",
        "--no-browser",
    ]);
    let url = read_prompt(&mut login, login_url);
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(
        url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{url}"
    );
    let page = idp.play_browser(&url).expect("the browser gets through");
    assert!(page.contains("You can close this tab"), "{page}");
    let (status, out) = finish(login);
    assert_eq!(status, Some(0), "{out}");
    let token = d.get("web", &[]).expect("token");
    assert!(idp.is_active(&token).expect("introspect"));
    assert_eq!(d.session_json("web")["has_refresh_token"], true);
}

#[test]
fn a_session_that_needs_login_is_healthy_again_after_one() {
    let idp = idp();
    let d = daemon(&idp);
    let minted = idp
        .mint("tokd-test", "openid offline_access api")
        .expect("mint");
    let out = d.tokd_with_stdin(
        &["add", "work", "--provider", "idp", "--attr", "user_id=7"],
        Some(&minted),
    );
    assert!(out.status.success());
    idp.revoke_grant(&refresh_token_of(&minted))
        .expect("revoke");
    assert_eq!(d.tokd(&["refresh", "work"]).status.code(), Some(1));
    assert_eq!(d.session_json("work")["state"], "needs_login");
    assert_eq!(d.tokd(&["status"]).status.code(), Some(1), "status says so");

    let mut login = d.spawn_tokd_piped(&["login", "work", "--provider", "idp"]);
    let code = read_prompt(&mut login, user_code);
    idp.approve_device(&code).expect("approve");
    assert_eq!(finish(login).0, Some(0));
    let s = d.session_json("work");
    assert_eq!(s["state"], "valid");
    assert_eq!(s["attrs"]["user_id"], "7", "name and settings kept");
    assert_eq!(d.tokd(&["status"]).status.code(), Some(0));
}

#[test]
fn logout_revokes_at_the_provider_then_removes() {
    let idp = idp();
    let d = daemon(&idp);
    d.add_as(
        "work",
        "idp",
        &idp.mint("tokd-test", "openid offline_access api")
            .expect("mint"),
    );
    let token = d.get("work", &[]).expect("token");
    let out = d.tokd(&["logout", "work"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("revoked"), "{}", stdout(&out));
    assert!(
        !idp.is_active(&token).expect("introspect"),
        "the grant is revoked"
    );
    assert_eq!(d.tokd(&["get", "work"]).status.code(), Some(4));
}

#[test]
fn watch_json_shows_a_refresh() {
    let idp = idp();
    let d = daemon(&idp);
    d.add_as(
        "work",
        "idp",
        &idp.mint("tokd-test", "openid offline_access api")
            .expect("mint"),
    );
    let mut watch = d.spawn_tokd_piped(&["watch", "--json"]);
    read_prompt(&mut watch, |l| l.contains("watching").then(String::new));
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    assert!(d.tokd(&["refresh", "work"]).status.success());
    let event: serde_json::Value =
        serde_json::from_str(&lines.next().expect("event").expect("utf-8")).expect("json");
    assert_eq!(event["event"], "refreshed");
    assert_eq!(event["session"], "work");
    assert!(event["expires_at"].as_i64().is_some());
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn ctrl_c_cancels_a_login_cleanly() {
    let idp = idp();
    let d = daemon(&idp);
    let mut login = d.spawn_tokd_piped(&["login", "work", "--provider", "idp"]);
    let code = read_prompt(&mut login, user_code);
    let pid = rustix::process::Pid::from_raw(i32::try_from(login.id()).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let _ = login.wait();
    tokd_e2e::wait_for(
        std::time::Duration::from_secs(20),
        "the daemon to notice",
        || {
            d.log()
                .contains("login cancelled by the client")
                .then_some(())
        },
    );
    // Approving now changes nothing: the daemon stopped polling and stored nothing. A second
    // login, polling at the same interval, is the clock: once the provider has counted four
    // more polls, at least two of them that login's, a poller of the cancelled login would
    // have polled (and got the tokens) at least once after the approval.
    let mut probe = d.spawn_tokd_piped(&["login", "probe", "--provider", "idp"]);
    let probe_code = read_prompt(&mut probe, user_code);
    idp.approve_device(&code)
        .expect("the cancelled login's code is still pending");
    let approved_at = idp.stats().expect("stats").device_code_requests;
    tokd_e2e::wait_for(
        std::time::Duration::from_secs(30),
        "polls of the other login after the approval",
        || (idp.stats().expect("stats").device_code_requests >= approved_at + 4).then_some(()),
    );
    assert_eq!(
        d.tokd(&["get", "work"]).status.code(),
        Some(4),
        "the cancelled login stored a session"
    );
    let logged_in = |name: &str| {
        d.log()
            .lines()
            .any(|l| l.contains("event=\"logged_in\"") && l.contains(&format!("session={name} ")))
    };
    assert!(!logged_in("work"), "{}", d.log());
    // The other login was polled all along and completes.
    idp.approve_device(&probe_code).expect("approve");
    assert_eq!(finish(probe).0, Some(0));
    assert!(d.get("probe", &[]).is_ok());
    assert!(logged_in("probe"), "{}", d.log());
    assert_eq!(d.tokd(&["get", "work"]).status.code(), Some(4));
}

#[test]
fn the_device_flow_honours_slow_down() {
    let idp = idp();
    idp.set_device_slow_down(1).expect("slow_down once");
    let d = daemon(&idp);
    let mut login = d.spawn_tokd_piped(&["login", "work", "--provider", "idp"]);
    let code = read_prompt(&mut login, user_code);
    idp.approve_device(&code).expect("approve");
    assert_eq!(finish(login).0, Some(0));
    // One poll answered slow_down; the next, 5 s later, got the tokens: no poll in between.
    assert_eq!(idp.stats().expect("stats").device_code_requests, 2);
}

#[test]
fn a_login_cancelled_during_its_token_request_still_stores_what_the_provider_issued() {
    let idp = idp();
    let d = daemon(&idp);
    let mut login = d.spawn_tokd_piped(&["login", "work", "--provider", "idp"]);
    let code = read_prompt(&mut login, user_code);
    // Every poll now takes 3 s at the provider, which answers it after looking at the code:
    // once approved, the poll at the provider carries the tokens.
    idp.set_token_delay(3_000).expect("delay");
    idp.approve_device(&code).expect("approve");
    tokd_e2e::wait_for(
        std::time::Duration::from_secs(20),
        "a poll at the provider",
        || (idp.stats().expect("stats").in_flight == 1).then_some(()),
    );
    // Ctrl-C while the provider is issuing the tokens.
    let pid = rustix::process::Pid::from_raw(i32::try_from(login.id()).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let _ = login.wait();
    tokd_e2e::wait_for(
        std::time::Duration::from_secs(20),
        "the login to be stored anyway",
        || (d.tokd(&["status", "work"]).status.code() == Some(0)).then_some(()),
    );
    let token = d.get("work", &[]).expect("the issued token is served");
    assert!(idp.is_active(&token).expect("introspect"));
    assert_eq!(d.session_json("work")["has_refresh_token"], true);
}

#[test]
fn a_flood_of_silent_connections_cannot_keep_the_browser_redirect_out() {
    let idp = idp();
    let d = daemon(&idp);
    let mut login = d.spawn_tokd_piped(&[
        "login",
        "web",
        "--provider",
        "idp",
        "--browser",
        "--no-browser",
    ]);
    let url = read_prompt(&mut login, login_url);
    let redirect = url::Url::parse(&url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("a redirect_uri");
    let port = url::Url::parse(&redirect)
        .expect("redirect uri")
        .port()
        .expect("a port");
    // Another local user opens more silent connections than the listener reads at once.
    let flood: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects"))
        .collect();
    let page = idp
        .play_browser(&url)
        .expect("the browser's redirect gets through");
    assert!(page.contains("You can close this tab"), "{page}");
    let (status, out) = finish(login);
    assert_eq!(status, Some(0), "{out}");
    drop(flood);
}
