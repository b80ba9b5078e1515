//! Defects a security review found in logout, the crash window, expiry, reload and the
//! config's paths, each proved fixed against the real binaries.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokd_e2e::httpd::{Response, Server};
use tokd_e2e::idp::TestIdp;
use tokd_e2e::{TestDaemon, stderr, stdout, token_response, wait_for};

const IN_FLIGHT: &str = "a refresh was in flight when the daemon stopped; retrying it";

/// A gate the mock's handler waits at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
    arrived: Mutex<usize>,
}

impl Gate {
    fn wait(&self) {
        *self.arrived.lock().expect("gate") += 1;
        let mut open = self.open.lock().expect("gate");
        while !*open {
            open = self.changed.wait(open).expect("gate");
        }
    }

    fn arrived(&self) -> usize {
        *self.arrived.lock().expect("gate")
    }

    fn open(&self) {
        *self.open.lock().expect("gate") = true;
        self.changed.notify_all();
    }
}

/// A provider on a mock: a token endpoint and a revocation endpoint that waits at `gate`.
fn mock_provider(gate: Arc<Gate>) -> Server {
    Server::start(move |req| match req.path.as_str() {
        "/revoke" => {
            gate.wait();
            Response::new(200, "")
        }
        "/token" => Response::new(200, token_response("at-refreshed", "rt-refreshed", 3600))
            .header("Content-Type", "application/json"),
        _ => Response::new(404, ""),
    })
    .expect("mock starts")
}

fn mock_config(server: &Server) -> String {
    let base = format!("http://127.0.0.1:{}", server.port());
    format!(
        "[providers.m]\ntoken_endpoint = \"{base}/token\"\nrevocation_endpoint = \"{base}/revoke\"\n\
         client_id = \"c\"\n"
    )
}

#[test]
fn logout_removes_only_the_grant_it_revoked_and_holds_refreshes_meanwhile() {
    let gate = Arc::new(Gate::default());
    let server = mock_provider(gate.clone());
    let d = TestDaemon::start_with(&mock_config(&server)).expect("daemon starts");
    d.add_as("s", "m", &token_response("at-old", "rt-old", 3600));
    let logout = d.spawn_tokd_piped(&["logout", "s"]);
    wait_for(Duration::from_secs(10), "the revocation to arrive", || {
        (gate.arrived() == 1).then_some(())
    });
    // While the revocation is out, no refresh of the session starts.
    let refresh = d.tokd(&["refresh", "s"]);
    assert!(!refresh.status.success(), "{}", stdout(&refresh));
    assert!(
        stderr(&refresh).contains("being logged out"),
        "{}",
        stderr(&refresh)
    );
    assert!(
        !server.seen().iter().any(|s| s.path == "/token"),
        "a refresh was sent during the revocation"
    );
    // A new login of that name (here: an import) lands during the revocation.
    let out = d.tokd_with_stdin(
        &["add", "s", "--provider", "m", "--replace"],
        Some(&token_response("at-new", "rt-new", 3600)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    gate.open();
    let out = logout.wait_with_output().expect("logout ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("newer"),
        "the answer says a newer one survives: {said}"
    );
    assert_eq!(
        d.get("s", &[]).expect("the newer session survives"),
        "at-new"
    );
}

#[test]
fn logout_never_sends_a_refresh_token_to_another_origin() {
    let idp = TestIdp::start().expect("idp");
    let revocations = Arc::new(Mutex::new(Vec::new()));
    let seen = revocations.clone();
    let elsewhere = Server::start(move |req| {
        seen.lock()
            .expect("seen")
            .push(String::from_utf8_lossy(&req.body).into_owned());
        Response::new(200, "")
    })
    .expect("mock starts");
    let provider = |revocation: &str| {
        format!(
            "[providers.p]\ntoken_endpoint = \"{}\"\nrevocation_endpoint = \"{revocation}\"\n\
             client_id = \"tokd-test\"\nclient_secret = \"tokd-test-secret\"\n",
            idp.token_endpoint()
        )
    };
    let mut d = TestDaemon::start_with(&provider(&idp.revocation_endpoint())).expect("daemon");
    let minted = idp
        .mint("tokd-test", "openid offline_access api")
        .expect("mint");
    d.add_as("s", "p", &minted);
    let rt = tokd_e2e::refresh_token_of(&minted);
    // The provider's revocation endpoint moves to another origin.
    d.set_extra_config(&provider(&format!(
        "http://127.0.0.1:{}/revoke",
        elsewhere.port()
    )))
    .expect("config");
    d.signal(rustix::process::Signal::HUP);
    wait_for(Duration::from_secs(10), "the reload", || {
        d.log().contains("config reloaded").then_some(())
    });
    let out = d.tokd(&["logout", "s"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("never sent elsewhere"),
        "{}",
        stderr(&out)
    );
    assert!(
        revocations.lock().expect("seen").is_empty(),
        "the other origin received a revocation"
    );
    assert!(idp.is_active(&rt).expect("introspect"), "grant untouched");
    assert!(d.get("s", &[]).is_ok(), "the session is kept");
}

#[test]
fn needs_config_after_an_interrupted_refresh_keeps_the_crash_evidence() {
    let idp = TestIdp::start().expect("idp");
    idp.set_access_ttl(600).expect("ttl");
    let port = idp.issuer().rsplit(':').next().expect("port").to_owned();
    let provider = |host: &str| {
        format!(
            "[providers.p]\ntoken_endpoint = \"http://{host}:{port}/token\"\n\
             client_id = \"tokd-test\"\nclient_secret = \"tokd-test-secret\"\n"
        )
    };
    let mut d = TestDaemon::start_with(&provider("127.0.0.1")).expect("daemon");
    d.add_as(
        "s",
        "p",
        &idp.mint("tokd-test", "openid offline_access api")
            .expect("mint"),
    );
    // A refresh is sent and the daemon dies before the answer (the provider rotates).
    idp.set_token_delay(2_000).expect("delay");
    let refresh = d.spawn_tokd(&["refresh", "s"]);
    wait_for(
        Duration::from_secs(10),
        "the refresh to reach the provider",
        || (idp.stats().expect("stats").in_flight == 1).then_some(()),
    );
    d.kill();
    let _ = { refresh }.wait();
    wait_for(Duration::from_secs(10), "the provider to answer", || {
        (idp.stats().expect("stats").in_flight == 0).then_some(())
    });
    idp.set_token_delay(0).expect("delay");
    // Restarted with the endpoint on another origin: the retry is refused before it is sent.
    d.set_extra_config(&provider("localhost")).expect("config");
    d.start_again().expect("restarts");
    wait_for(Duration::from_secs(10), "needs_config", || {
        (d.session_json("s")["state"] == "needs_config").then_some(())
    });
    // Restored: the evidence of the lost answer is still there, so the provider's refusal
    // of the stored (rotated) refresh token reads as what it is.
    d.stop().expect("stops");
    d.set_extra_config(&provider("127.0.0.1")).expect("config");
    let log_before = d.log().len();
    d.start_again().expect("restarts");
    assert!(d.log()[log_before..].contains(IN_FLIGHT), "{}", d.log());
    let status = wait_for(Duration::from_secs(10), "the retry's verdict", || {
        let s = d.session_json("s");
        (s["state"] == "needs_login").then_some(s)
    });
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refresh interrupted")),
        "{status}"
    );
}

#[test]
fn a_token_that_expires_during_backoff_leaves_its_file_and_is_reported() {
    let server = Server::start(|_| {
        Response::new(503, r#"{"error":"temporarily_unavailable"}"#)
            .header("Retry-After", "3600")
            .header("Content-Type", "application/json")
    })
    .expect("mock starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bt");
    let d = TestDaemon::start_with(&format!(
        "[providers.m]\ntoken_endpoint = \"http://127.0.0.1:{}/token\"\nclient_id = \"c\"\n\
         [sessions.s]\nfile = \"{}\"\n",
        server.port(),
        file.display()
    ))
    .expect("daemon");
    d.add_as("s", "m", &token_response("at-short", "rt-short", 4));
    wait_for(Duration::from_secs(10), "the token file", || {
        file.exists().then_some(())
    });
    wait_for(Duration::from_secs(10), "backoff", || {
        (d.session_json("s")["state"] == "backoff").then_some(())
    });
    // The retry is an hour away; the token expires in seconds.
    wait_for(Duration::from_secs(15), "the file to go at expiry", || {
        (!file.exists()).then_some(())
    });
    assert!(
        d.log().contains("event=\"expired\"") && d.log().contains("session=s"),
        "{}",
        d.log()
    );
}

#[test]
fn a_reload_says_what_applies_and_status_shows_a_rejected_one() {
    let mut d = TestDaemon::start().expect("daemon");
    d.set_extra_config(&format!(
        "handshake_timeout = \"3s\"\nidle_timeout = \"1m\"\nmax_frame_bytes = 65536\n{}",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("config");
    d.signal(rustix::process::Signal::HUP);
    wait_for(Duration::from_secs(10), "the reload", || {
        d.log().contains("config reloaded").then_some(())
    });
    for setting in ["handshake_timeout", "idle_timeout", "max_frame_bytes"] {
        assert!(
            d.log()
                .lines()
                .any(|l| l.contains(&format!("setting=\"{setting}\""))),
            "{setting} not mentioned: {}",
            d.log()
        );
    }
    // A broken file is rejected; status says so without the log.
    d.set_extra_config("[providers.broken]\nnot_a_key = 1\n")
        .expect("config");
    d.signal(rustix::process::Signal::HUP);
    wait_for(Duration::from_secs(10), "the rejection", || {
        d.log().contains("config reload rejected").then_some(())
    });
    let status = d.tokd(&["status"]);
    assert!(
        stdout(&status).contains("the last config reload was rejected"),
        "{}",
        stdout(&status)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&d.tokd(&["status", "--json"]).stdout).expect("json");
    let rejected = &json["daemon"]["last_rejected_reload"];
    assert!(
        rejected["error"]
            .as_str()
            .is_some_and(|e| e.contains("not_a_key")),
        "{json}"
    );
    assert!(rejected["at"].as_i64().is_some(), "{json}");
}

#[test]
fn a_relative_client_secret_file_is_found_next_to_the_config_file() {
    let idp = TestIdp::start().expect("idp");
    // The daemon runs in another directory than the one holding the config file.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let d = TestDaemon::launch(
        &format!(
            "[providers.idp]\nissuer = \"{}\"\nclient_id = \"tokd-test\"\n\
             client_secret_file = \"secrets/idp.txt\"\n",
            idp.issuer()
        ),
        tokd_e2e::Launch {
            cwd: Some(elsewhere.path().to_path_buf()),
            ..tokd_e2e::Launch::default()
        },
        |dir| {
            std::fs::create_dir(dir.join("secrets"))?;
            std::fs::write(dir.join("secrets/idp.txt"), "tokd-test-secret\n")?;
            Ok(())
        },
    )
    .expect("the daemon starts with the secret file next to its config");
    d.add_as(
        "s",
        "idp",
        &idp.mint("tokd-test", "openid offline_access api")
            .expect("mint"),
    );
    let out = d.tokd(&["refresh", "s"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
