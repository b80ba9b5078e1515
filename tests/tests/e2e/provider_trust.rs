//! What tokd believes of a provider's answers: discovery must name the configured issuer,
//! the RFC 8414 document completes the OpenID one, echoed refresh tokens never reach status
//! or the log, an RFC 6749 error is one whatever the status, and a gateway's 502/504 leaves
//! the refresh's outcome unknown.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokd_e2e::httpd::{Request, Response, Server};
use tokd_e2e::idp::TestIdp;
use tokd_e2e::{TestDaemon, idp_provider, stderr, stdout, token_response, wait_for};

const IN_FLIGHT: &str = "a refresh was in flight when the daemon stopped; retrying it";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How many requests `server` answered on `path`.
fn hits(server: &Server, path: &str) -> usize {
    server.seen().iter().filter(|s| s.path == path).count()
}

#[test]
fn a_discovery_document_naming_another_issuer_is_needs_config_and_sends_nothing() {
    let idp = TestIdp::start().expect("the test provider starts");
    // The same server under another name: its documents name 127.0.0.1.
    let configured = idp.issuer().replace("127.0.0.1", "localhost");
    assert_ne!(configured, idp.issuer());
    let d = TestDaemon::start_with(&idp_provider("idp", &configured, "")).expect("daemon");
    d.add_as(
        "s",
        "idp",
        &idp.mint("tokd-test", "openid offline_access api")
            .expect("mint"),
    );
    idp.reset_stats().expect("reset");
    let out = d.tokd(&["refresh", "s"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let s = d.session_json("s");
    assert_eq!(s["state"], "needs_config", "{s}");
    assert!(
        s["has_refresh_token"] == true,
        "kept for after the fix: {s}"
    );
    let status = stdout(&d.tokd(&["status", "s"]));
    for issuer in [configured.as_str(), idp.issuer()] {
        assert!(status.contains(issuer), "status lacks {issuer}:\n{status}");
    }
    // Neither this refresh nor a later look sends the refresh token anywhere.
    let _ = d.tokd(&["refresh", "s"]);
    let _ = d.get("s", &["--min-valid", "1h", "--wait", "2s"]);
    assert_eq!(idp.stats().expect("stats").token_requests, 0);
}

/// A provider whose OpenID document lacks `revocation_endpoint` while its RFC 8414 document
/// names one (django-oauth-toolkit does this). Revocation requests' bodies are recorded.
fn split_metadata_provider(revoked: Arc<Mutex<Vec<String>>>) -> Server {
    let base = Arc::new(Mutex::new(String::new()));
    let issuer = base.clone();
    let server = Server::start(move |r: &Request| {
        let base = issuer.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/.well-known/openid-configuration") => Response::new(
                200,
                format!(
                    r#"{{"issuer":"{base}","token_endpoint":"{base}/token","authorization_endpoint":"{base}/authorize"}}"#
                ),
            ),
            ("GET", "/.well-known/oauth-authorization-server") => Response::new(
                200,
                format!(
                    r#"{{"issuer":"{base}","token_endpoint":"{base}/token","revocation_endpoint":"{base}/revoke"}}"#
                ),
            ),
            ("POST", "/revoke") => {
                revoked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(String::from_utf8_lossy(&r.body).into_owned());
                Response::new(200, "")
            }
            _ => Response::new(404, ""),
        }
    })
    .expect("mock starts");
    *base.lock().unwrap_or_else(PoisonError::into_inner) =
        format!("http://127.0.0.1:{}", server.port());
    server
}

#[test]
fn logout_revokes_at_an_endpoint_only_the_rfc8414_document_names() {
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let server = split_metadata_provider(revoked.clone());
    let d = TestDaemon::start_with(&format!(
        "[providers.dot]\nissuer = \"http://127.0.0.1:{}\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        server.port()
    ))
    .expect("daemon");
    d.add_as(
        "s",
        "dot",
        &token_response("at-1", "rt-to-revoke-3c1d", 600),
    );
    let out = d.tokd(&["logout", "s"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), d.log());
    assert!(stdout(&out).contains("revoked"), "{}", stdout(&out));
    let bodies = revoked
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].contains("token=rt-to-revoke-3c1d"), "{bodies:?}");
    assert_eq!(hits(&server, "/token"), 0);
}

#[test]
fn a_json_error_code_echoing_the_refresh_token_never_reaches_status_or_the_log() {
    const RT: &str = "rt-echoed-back-7f3a9c51";
    let echoed = Arc::new(Mutex::new(Vec::new()));
    let record = echoed.clone();
    let server = Server::start(move |r: &Request| {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let rt = body["refreshToken"].as_str().unwrap_or_default().to_owned();
        record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(rt.clone());
        Response::new(400, serde_json::json!({ "code": rt }).to_string())
    })
    .expect("mock starts");
    let d = TestDaemon::start_with(&format!(
        "[providers.j]\nkind = \"json\"\nrefresh_url = \"http://127.0.0.1:{}/refresh\"\n",
        server.port()
    ))
    .expect("daemon");
    d.add_as(
        "j",
        "j",
        &format!(
            r#"{{"token":"at-j","refreshToken":"{RT}","expiresAt":{}}}"#,
            now_ms() + 600_000
        ),
    );
    let out = d.tokd(&["refresh", "j"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(
        *echoed.lock().unwrap_or_else(PoisonError::into_inner),
        [RT],
        "the mock echoed the refresh token it was sent"
    );
    let status = d.tokd(&["status"]);
    let json = d.tokd(&["status", "--json"]);
    assert!(
        stdout(&json).contains("<redacted>"),
        "the error is still reported: {}",
        stdout(&json)
    );
    for (what, text) in [
        ("refresh", stderr(&out)),
        ("status", stdout(&status)),
        ("status --json", stdout(&json)),
        ("the log", d.log()),
    ] {
        assert!(
            !text.contains(RT),
            "{what} shows the refresh token:\n{text}"
        );
    }
}

/// A daemon with an oauth2 provider `o` (`/token`) and a json provider `j` (`/refresh`)
/// on `server`, and a session of each.
fn two_kinds(server: &Server) -> TestDaemon {
    let base = format!("http://127.0.0.1:{}", server.port());
    let d = TestDaemon::start_with(&format!(
        "[providers.o]\ntoken_endpoint = \"{base}/token\"\nclient_id = \"c\"\n\
         client_secret = \"s\"\n\n\
         [providers.j]\nkind = \"json\"\nrefresh_url = \"{base}/refresh\"\n"
    ))
    .expect("daemon");
    d.add_as("o", "o", &token_response("at-o", "rt-o", 600));
    d.add_as(
        "j",
        "j",
        &format!(
            r#"{{"token":"at-j","refreshToken":"rt-j","expiresAt":{}}}"#,
            now_ms() + 600_000
        ),
    );
    d
}

#[test]
fn a_200_carrying_invalid_grant_is_needs_login_after_one_request() {
    let server = Server::start(|_: &Request| Response::new(200, r#"{"error":"invalid_grant"}"#))
        .expect("mock starts");
    let mut d = two_kinds(&server);
    let out = d.tokd(&["refresh", "o"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let s = d.session_json("o");
    assert_eq!(s["state"], "needs_login", "{s}");
    assert_eq!(s["has_refresh_token"], false, "{s}");
    assert!(
        s["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid_grant"),
        "{s}"
    );
    // The dead refresh token is never sent again: not when asked, not after a restart.
    let _ = d.tokd(&["refresh", "o"]);
    let _ = d.get("o", &["--min-valid", "1h", "--wait", "2s"]);
    let log_before = d.log().len();
    d.restart().expect("restarts");
    assert!(!d.log()[log_before..].contains(IN_FLIGHT), "{}", d.log());
    let _ = d.tokd(&["refresh", "o"]);
    assert_eq!(hits(&server, "/token"), 1);
    assert_eq!(d.session_json("o")["state"], "needs_login");
}

#[test]
fn a_502_or_504_keeps_the_refresh_marked_in_flight_across_a_restart() {
    for status in [502, 504] {
        let server =
            Server::start(move |_: &Request| Response::new(status, "<html>gateway</html>"))
                .expect("mock starts");
        let mut d = two_kinds(&server);
        for name in ["o", "j"] {
            let out = d.tokd(&["refresh", name]);
            assert!(!out.status.success(), "{status} {name}: {}", stdout(&out));
            let error = d.session_json(name)["last_error"].to_string();
            assert!(
                error.contains(&status.to_string()),
                "{status} {name}: {error}"
            );
        }
        let before = (hits(&server, "/token"), hits(&server, "/refresh"));
        let log_before = d.log().len();
        d.restart().expect("restarts");
        let restart_log = d.log()[log_before..].to_owned();
        for name in ["o", "j"] {
            assert!(
                restart_log
                    .lines()
                    .any(|l| l.contains(IN_FLIGHT) && l.contains(&format!("session={name}"))),
                "{status}: {name} was not marked in flight:\n{restart_log}"
            );
        }
        // And it is retried at once.
        wait_for(
            Duration::from_secs(20),
            "the retries after the restart",
            || {
                (hits(&server, "/token") > before.0 && hits(&server, "/refresh") > before.1)
                    .then_some(())
            },
        );
    }
}
