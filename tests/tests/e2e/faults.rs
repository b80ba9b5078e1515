//! The provider fault matrix: every misbehaviour gets its designed state, a bounded number of
//! attempts, and the current token keeps being served while it is valid. A mock server
//! (wiremock) injects the faults; each row runs against an `oauth2` and a `json` provider at
//! once.

use std::time::{Duration, Instant};

use tokd_e2e::{TestDaemon, stderr, wait_for};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OAUTH: &str = "/oauth/token";
const JSON: &str = "/json/refresh";
/// Imported tokens live 20 s: the minimum interval between attempts is then 2 s.
const LIFETIME_S: i64 = 20;
/// How long each row watches the server after forcing a first attempt.
const WINDOW: Duration = Duration::from_secs(3);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Rig {
    runtime: tokio::runtime::Runtime,
    server: MockServer,
    d: TestDaemon,
}

impl Rig {
    /// A mock server answering both endpoints with `respond`, and a daemon with one session
    /// per provider kind (`o` for oauth2, `j` for json).
    fn new(respond: ResponseTemplate) -> Rig {
        Self::with(|server, runtime| {
            for p in [OAUTH, JSON] {
                runtime.block_on(
                    Mock::given(method("POST"))
                        .and(path(p))
                        .respond_with(respond.clone())
                        .mount(server),
                );
            }
        })
    }

    fn with(mount: impl FnOnce(&MockServer, &tokio::runtime::Runtime)) -> Rig {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime.block_on(MockServer::start());
        mount(&server, &runtime);
        let base = server.uri();
        let d = TestDaemon::start_with(&providers(&base, &base)).expect("daemon starts");
        let rig = Rig { runtime, server, d };
        rig.d.add_as("o", "o", &oauth_import("at-o", "rt-o"));
        let out = rig.d.tokd_with_stdin(
            &["add", "j", "--provider", "j", "--attr", "user_id=42"],
            Some(&json_import("at-j", Some("rt-j"), LIFETIME_S * 1000)),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        rig
    }

    /// Forces a first attempt of both sessions, then watches the server for [`WINDOW`].
    fn force_and_watch(&self) -> (usize, usize) {
        self.watch(&["o", "j"])
    }

    /// Forces a first attempt of one session, then watches the server for [`WINDOW`].
    fn force_and_watch_one(&self, name: &str) -> (usize, usize) {
        self.watch(&[name])
    }

    fn watch(&self, names: &[&str]) -> (usize, usize) {
        let started = Instant::now();
        std::thread::scope(|scope| {
            for name in names {
                scope.spawn(move || {
                    let _ = self.d.tokd(&["refresh", name]);
                });
            }
        });
        // The window is an observation period, not a synchronisation: the server's count
        // over it is what is asserted. The current token is served all along.
        while started.elapsed() < WINDOW {
            for name in names {
                assert_eq!(
                    self.d.get(name, &["--min-valid", "0s", "--wait", "0s"]),
                    Ok(format!("at-{name}")),
                    "the current token is served while valid"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (self.requests(OAUTH), self.requests(JSON))
    }

    fn requests(&self, p: &str) -> usize {
        self.runtime
            .block_on(self.server.received_requests())
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == p)
            .count()
    }

    fn bodies(&self, p: &str) -> Vec<String> {
        self.runtime
            .block_on(self.server.received_requests())
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == p)
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }

    fn state(&self, name: &str) -> (String, String) {
        let s = self.d.session_json(name);
        (
            s["state"].as_str().unwrap_or_default().to_owned(),
            s["last_error"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

fn providers(oauth_base: &str, json_base: &str) -> String {
    format!(
        "[providers.o]\ntoken_endpoint = \"{oauth_base}{OAUTH}\"\nclient_id = \"c\"\n\
         client_secret = \"s3cret-client\"\nrequest_timeout = \"1s\"\n\n\
         [providers.j]\nkind = \"json\"\nrefresh_url = \"{json_base}{JSON}\"\nrequest_timeout = \"1s\"\n\
         headers = {{ \"X-Tenant-Id\" = \"acme\" }}\n\
         request = {{ refreshToken = \"{{refresh_token}}\", user_id = \"{{attr.user_id}}\" }}\n"
    )
}

fn oauth_import(at: &str, rt: &str) -> String {
    format!(
        r#"{{"access_token":"{at}","token_type":"Bearer","expires_in":{LIFETIME_S},"refresh_token":"{rt}"}}"#
    )
}

fn json_import(at: &str, rt: Option<&str>, valid_ms: i64) -> String {
    let rt = rt.map_or_else(String::new, |rt| format!(r#","refreshToken":"{rt}""#));
    format!(
        r#"{{"token":"{at}"{rt},"user":{{"id":42}},"expiresAt":{}}}"#,
        now_ms() + valid_ms
    )
}

/// Asserts a retryable fault: `backoff` (or a retry being sent right now), the failure
/// recorded, a few attempts (not one, not a storm), the message.
fn assert_backoff(rig: &Rig, counts: (usize, usize), message: &str) {
    for (name, count) in [("o", counts.0), ("j", counts.1)] {
        let s = rig.d.session_json(name);
        let state = s["state"].as_str().unwrap_or_default();
        let error = s["last_error"].as_str().unwrap_or_default();
        assert!(state == "backoff" || state == "refreshing", "{name}: {s}");
        assert!(s["consecutive_failures"].as_u64() >= Some(1), "{name}: {s}");
        assert!(
            error.contains(message),
            "{name}: {error:?} lacks {message:?}"
        );
        assert!(
            (1..=3).contains(&count),
            "{name}: {count} requests in {WINDOW:?}"
        );
    }
}

fn assert_terminal(rig: &Rig, name: &str, count: usize, state: &str, has_rt: bool) {
    let s = rig.d.session_json(name);
    assert_eq!(s["state"], state, "{s}");
    assert_eq!(s["has_refresh_token"], has_rt, "{s}");
    assert_eq!(count, 1, "{name}: a terminal answer is not retried");
}

#[test]
fn status_500_backs_off() {
    let rig = Rig::new(ResponseTemplate::new(500));
    let counts = rig.force_and_watch();
    assert_backoff(&rig, counts, "500");
}

#[test]
fn status_502_and_503_without_retry_after_back_off() {
    for status in [502, 503] {
        let rig = Rig::new(ResponseTemplate::new(status));
        let counts = rig.force_and_watch();
        assert_backoff(&rig, counts, &status.to_string());
    }
}

#[test]
fn retry_after_in_seconds_and_as_a_date_is_honoured() {
    let in_a_minute =
        || httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
    for (status, retry_after) in [(503, None), (502, Some(())), (429, None)] {
        let retry_after = retry_after.map_or_else(|| "60".to_owned(), |()| in_a_minute());
        let rig = Rig::new(
            ResponseTemplate::new(status).insert_header("Retry-After", retry_after.as_str()),
        );
        let (o, j) = rig.force_and_watch();
        assert_eq!(
            (o, j),
            (1, 1),
            "{status} Retry-After {retry_after}: no retry before it"
        );
        for name in ["o", "j"] {
            let s = rig.d.session_json(name);
            assert_eq!(s["state"], "backoff");
            let next = s["next_refresh_at"].as_i64().expect("retry planned");
            assert!(
                next >= now_ms() + 50_000,
                "{status}: retry planned too early: {s}"
            );
        }
    }
}

#[test]
fn connection_refused_backs_off() {
    // A port that was free a moment ago: nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let d = TestDaemon::start_with(&providers(&base, &base)).expect("daemon starts");
    d.add_as("o", "o", &oauth_import("at-o", "rt-o"));
    let out = d.tokd_with_stdin(
        &["add", "j", "--provider", "j", "--attr", "user_id=1"],
        Some(&json_import("at-j", Some("rt-j"), LIFETIME_S * 1000)),
    );
    assert!(out.status.success());
    for name in ["o", "j"] {
        let out = d.tokd(&["refresh", name]);
        assert_eq!(out.status.code(), Some(1));
        let s = d.session_json(name);
        assert_eq!(s["state"], "backoff", "{s}");
        assert!(
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot connect")),
            "{s}"
        );
        assert_eq!(
            d.get(name, &["--min-valid", "0s"]),
            Ok(format!("at-{name}"))
        );
    }
}

#[test]
fn a_server_that_never_answers_is_a_timeout_logged_as_sent_without_answer() {
    let rig = Rig::new(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)));
    let counts = rig.force_and_watch();
    assert_backoff(&rig, counts, "no answer");
    assert!(
        rig.d.log().contains("sent_no_answer=true"),
        "{}",
        rig.d.log()
    );
}

#[test]
fn an_html_page_with_200_backs_off() {
    let rig = Rig::new(
        ResponseTemplate::new(200)
            .insert_header("Content-Type", "text/html")
            .set_body_string("<html><body>Maintenance</body></html>"),
    );
    let counts = rig.force_and_watch();
    assert_backoff(&rig, counts, "not");
}

#[test]
fn truncated_json_backs_off() {
    let rig =
        Rig::new(ResponseTemplate::new(200).set_body_string(r#"{"access_token":"at-x","expi"#));
    let counts = rig.force_and_watch();
    assert_backoff(&rig, counts, "");
    for name in ["o", "j"] {
        assert!(
            !rig.state(name).1.contains("at-x"),
            "no token text in errors"
        );
    }
}

#[test]
fn json_without_an_access_token_backs_off() {
    let rig = Rig::new(
        ResponseTemplate::new(200)
            .set_body_string(r#"{"refresh_token":"rt-x","refreshToken":"rt-x","expires_in":60}"#),
    );
    let counts = rig.force_and_watch();
    assert_backoff(&rig, counts, "");
}

#[test]
fn a_redirect_is_not_followed() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let elsewhere = runtime.block_on(MockServer::start());
    let target = format!(
        "{}/steal",
        elsewhere.uri().replace("127.0.0.1", "localhost")
    );
    let rig = Rig::new(ResponseTemplate::new(302).insert_header("Location", target.as_str()));
    let counts = rig.force_and_watch();
    assert_backoff(&rig, counts, "redirect");
    let stolen = runtime
        .block_on(elsewhere.received_requests())
        .unwrap_or_default();
    assert!(stolen.is_empty(), "the refresh token left for another host");
}

#[test]
fn a_body_over_one_mib_is_refused() {
    let big = format!(
        r#"{{"access_token":"at-big","expires_in":60,"pad":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    let rig = Rig::new(ResponseTemplate::new(200).set_body_string(big));
    let counts = rig.force_and_watch();
    assert_backoff(&rig, counts, "1 MiB");
}

#[test]
fn tokens_that_arrive_expired_keep_the_old_token_and_the_new_refresh_token() {
    for expires_in in [0, -30] {
        let mut rig = Rig::with(|server, runtime| {
            runtime.block_on(
                Mock::given(method("POST")).and(path(OAUTH))
                    .respond_with(ResponseTemplate::new(200).set_body_string(format!(
                        r#"{{"access_token":"at-dead","expires_in":{expires_in},"refresh_token":"rt-new-o"}}"#
                    )))
                    .mount(server),
            );
            runtime.block_on(
                Mock::given(method("POST"))
                    .and(path(JSON))
                    .respond_with(ResponseTemplate::new(200).set_body_string(format!(
                        r#"{{"token":"at-dead","refreshToken":"rt-new-j","expiresAt":{}}}"#,
                        now_ms() - 60_000
                    )))
                    .mount(server),
            );
        });
        let counts = rig.force_and_watch();
        assert_backoff(&rig, counts, "already expired");
        rig.d.restart().expect("restarts");
        // The rotated refresh token was persisted and is what the next attempt sends.
        for name in ["o", "j"] {
            let _ = rig.d.tokd(&["refresh", name]);
        }
        assert!(
            rig.bodies(OAUTH)
                .last()
                .is_some_and(|b| b.contains("rt-new-o")),
            "{:?}",
            rig.bodies(OAUTH)
        );
        assert!(
            rig.bodies(JSON)
                .last()
                .is_some_and(|b| b.contains("rt-new-j")),
            "{:?}",
            rig.bodies(JSON)
        );
    }
}

#[test]
fn expires_in_one_second_refreshes_at_most_once_per_minimum_interval() {
    let rig = Rig::with(|server, runtime| {
        runtime.block_on(
            Mock::given(method("POST"))
                .and(path(OAUTH))
                .respond_with(ResponseTemplate::new(200).set_body_string(
                    r#"{"access_token":"at-short","expires_in":1,"refresh_token":"rt-o"}"#,
                ))
                .mount(server),
        );
    });
    let started = Instant::now();
    let _ = rig.d.tokd(&["refresh", "o"]);
    while started.elapsed() < Duration::from_secs(4) {
        let _ = rig.d.get("o", &["--min-valid", "5s", "--wait", "0s"]);
    }
    let n = rig.requests(OAUTH) as f64;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(n <= elapsed + 1.0, "{n} refreshes in {elapsed:.1} s");
    assert!(n >= 2.0, "it keeps refreshing: {n}");
    let state = rig.state("o").0;
    assert!(state == "valid" || state == "refreshing", "{state}");
}

#[test]
fn rfc6749_errors_map_to_their_states() {
    for (error, state, has_rt) in [
        ("invalid_grant", "needs_login", false),
        ("invalid_client", "needs_config", true),
        ("unauthorized_client", "needs_config", true),
        ("invalid_scope", "needs_config", true),
    ] {
        let status = if error == "invalid_client" { 401 } else { 400 };
        let rig = Rig::new(ResponseTemplate::new(status).set_body_string(format!(
            r#"{{"error":"{error}","error_description":"nope"}}"#
        )));
        let (o, _) = rig.force_and_watch_one("o");
        assert_terminal(&rig, "o", o, state, has_rt);
        assert!(
            rig.state("o").1.contains(error),
            "{error}: {:?}",
            rig.state("o")
        );
    }
}

#[test]
fn json_endpoint_answers_map_to_their_states() {
    for (status, body, state, has_rt) in [
        (
            403,
            r#"{"code":"TOKEN_REUSE_DISABLED","message":"reuse"}"#,
            "needs_login",
            false,
        ),
        (
            400,
            r#"{"error":"TOKEN_REUSE_DISABLED"}"#,
            "needs_login",
            false,
        ),
        (401, "", "needs_login", false),
        (403, "<html>forbidden</html>", "needs_login", false),
        (404, "", "needs_config", true),
    ] {
        let rig = Rig::new(ResponseTemplate::new(status).set_body_string(body));
        let (_, j) = rig.force_and_watch_one("j");
        assert_terminal(&rig, "j", j, state, has_rt);
        // A refresh token that was dropped is never sent again.
        let before = rig.requests(JSON);
        let _ = rig.d.tokd(&["refresh", "j"]);
        assert_eq!(rig.requests(JSON), before, "{status} {body}");
    }
}

#[test]
fn after_a_run_of_5xx_the_session_recovers_without_a_restart() {
    let rig = Rig::with(|server, runtime| {
        for (p, ok) in [
            (
                OAUTH,
                r#"{"access_token":"at-back-o","expires_in":600,"refresh_token":"rt-o2"}"#
                    .to_owned(),
            ),
            (
                JSON,
                format!(
                    r#"{{"token":"at-back-j","refreshToken":"rt-j2","expiresAt":{}}}"#,
                    now_ms() + 600_000
                ),
            ),
        ] {
            runtime.block_on(
                Mock::given(method("POST"))
                    .and(path(p))
                    .respond_with(ResponseTemplate::new(503))
                    .up_to_n_times(2)
                    .with_priority(1)
                    .mount(server),
            );
            runtime.block_on(
                Mock::given(method("POST"))
                    .and(path(p))
                    .respond_with(ResponseTemplate::new(200).set_body_string(ok))
                    .with_priority(2)
                    .mount(server),
            );
        }
    });
    for name in ["o", "j"] {
        let out = rig.d.tokd(&["refresh", name]);
        assert_eq!(out.status.code(), Some(1), "first attempt fails");
    }
    for name in ["o", "j"] {
        wait_for(Duration::from_secs(30), "recovery", || {
            (rig.state(name).0 == "valid").then_some(())
        });
        assert_eq!(
            rig.d.get(name, &["--min-valid", "0s"]),
            Ok(format!("at-back-{name}"))
        );
        assert_eq!(rig.d.session_json(name)["consecutive_failures"], 0);
    }
}

#[test]
fn json_rotation_and_sessions_that_differ_by_user_or_tenant() {
    let rig = Rig::with(|server, runtime| {
        runtime.block_on(
            Mock::given(method("POST"))
                .and(path(JSON))
                .respond_with(ResponseTemplate::new(200).set_body_string(format!(
                    r#"{{"token":"at-new","refreshToken":"rt-rotated","expiresAt":{}}}"#,
                    now_ms() + 600_000
                )))
                .up_to_n_times(1)
                .with_priority(1)
                .mount(server),
        );
        // Later answers carry no refresh token: the rotated one must be kept.
        runtime.block_on(
            Mock::given(method("POST"))
                .and(path(JSON))
                .respond_with(ResponseTemplate::new(200).set_body_string(format!(
                    r#"{{"token":"at-newer","expiresAt":{}}}"#,
                    now_ms() + 600_000
                )))
                .with_priority(2)
                .mount(server),
        );
    });
    assert!(rig.d.tokd(&["refresh", "j"]).status.success());
    assert_eq!(rig.d.get("j", &[]), Ok("at-new".to_owned()));
    assert!(rig.d.tokd(&["refresh", "j"]).status.success());
    let bodies = rig.bodies(JSON);
    assert!(
        bodies[0].contains("\"rt-j\"") && bodies[0].contains("\"42\""),
        "{bodies:?}"
    );
    assert!(
        bodies[1].contains("\"rt-rotated\""),
        "rotation persisted: {bodies:?}"
    );
    assert!(rig.d.tokd(&["refresh", "j"]).status.success());
    assert!(
        rig.bodies(JSON)[2].contains("\"rt-rotated\""),
        "kept when none returned"
    );

    // A second user of the same provider, with another tenant header: its own request.
    let mut d = rig.d;
    let extra = format!(
        "{}\n[sessions.j2]\nheaders = {{ \"X-Tenant-Id\" = \"other\" }}\n",
        providers(&rig.server.uri(), &rig.server.uri())
    );
    d.set_extra_config(&extra).expect("config");
    d.restart().expect("restart");
    let out = d.tokd_with_stdin(
        &["add", "j2", "--provider", "j", "--attr", "user_id=7"],
        Some(&json_import("at-j2", Some("rt-j2"), LIFETIME_S * 1000)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d.tokd(&["refresh", "j2"]).status.success());
    let requests = rig
        .runtime
        .block_on(rig.server.received_requests())
        .unwrap_or_default();
    let last = requests.last().expect("a request");
    let body = String::from_utf8_lossy(&last.body);
    assert!(
        body.contains("\"rt-j2\"") && body.contains("\"7\""),
        "{body}"
    );
    assert_eq!(
        last.headers
            .get("x-tenant-id")
            .and_then(|v| v.to_str().ok()),
        Some("other")
    );
    let first_tenant = requests[0]
        .headers
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(first_tenant.as_deref(), Some("acme"));
}

#[test]
fn an_import_without_refresh_token_is_served_until_expiry_and_never_refreshed() {
    let rig = Rig::new(ResponseTemplate::new(500));
    let out = rig.d.tokd_with_stdin(
        &["add", "once", "--provider", "j"],
        Some(&json_import("at-once", None, 1500)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        rig.d.get("once", &["--min-valid", "0s"]),
        Ok("at-once".to_owned())
    );
    wait_for(Duration::from_secs(10), "expiry", || {
        (rig.state("once").0 == "needs_login").then_some(())
    });
    assert!(rig.d.get("once", &["--min-valid", "0s"]).is_err());
    let _ = rig.d.tokd(&["refresh", "once"]);
    assert_eq!(
        rig.requests(JSON),
        0,
        "no refresh is ever attempted without a refresh token"
    );
}
