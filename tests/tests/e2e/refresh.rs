//! The refresh engine against the real OpenID provider (rotation and reuse detection on).

use std::time::{Duration, Instant};

use tokd_e2e::idp::TestIdp;
use tokd_e2e::{TestDaemon, idp_provider, refresh_token_of, stderr, wait_for};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn idp() -> TestIdp {
    TestIdp::start().expect("the test provider starts")
}

fn daemon(idp: &TestIdp, extra: &str) -> TestDaemon {
    TestDaemon::start_with(&idp_provider("idp", idp.issuer(), extra)).expect("daemon starts")
}

fn mint(idp: &TestIdp) -> String {
    idp.mint("tokd-test", "openid offline_access api")
        .expect("mint")
}

#[test]
fn sessions_stay_valid_across_many_lifetimes_without_clients() {
    let idp = idp();
    idp.set_access_ttl(3).expect("ttl");
    let d = daemon(&idp, "");
    d.add_as("s", "idp", &mint(&idp));

    // Nobody asks for a token; the engine alone keeps it fresh for 5+ lifetimes. Meanwhile
    // every token handed out is one the provider calls active.
    let mut seen = std::collections::HashSet::new();
    wait_for(Duration::from_secs(60), "5 background refreshes", || {
        let token = d.get("s", &["--min-valid", "0s"]).expect("a valid token");
        assert!(
            idp.is_active(&token).expect("introspect"),
            "served an inactive token"
        );
        seen.insert(token);
        let n = d.session_json("s")["refresh_count"]
            .as_u64()
            .expect("count");
        (n >= 5).then_some(())
    });
    let stats = idp.stats().expect("stats");
    assert!(stats.refresh_requests >= 5, "{stats:?}");
    assert_eq!(stats.failed_requests, 0, "{stats:?}: {}", d.log());
    assert!(seen.len() >= 2, "the served token changed over time");
    let s = d.session_json("s");
    assert_eq!(s["state"], "valid");
    assert!(s["next_refresh_at"].as_i64().is_some(), "{s}");
    assert!(d.log().contains("event=\"refreshed\""), "audit lines");
}

#[test]
fn a_cached_token_that_suffices_causes_no_refresh() {
    let idp = idp();
    idp.set_access_ttl(600).expect("ttl");
    let d = daemon(&idp, "");
    d.add_as("s", "idp", &mint(&idp));
    idp.reset_stats().expect("reset");
    for _ in 0..30 {
        d.get("s", &["--min-valid", "60s"]).expect("token");
    }
    assert_eq!(idp.stats().expect("stats").token_requests, 0);
}

#[test]
fn concurrent_gets_cause_exactly_one_refresh() {
    let idp = idp();
    idp.set_access_ttl(6).expect("ttl");
    let d = daemon(&idp, "");
    let first = mint(&idp);
    d.add_as("s", "idp", &first);
    // New tokens live 2 min; each refresh takes 600 ms at the provider.
    idp.set_access_ttl(120).expect("ttl");
    idp.set_token_delay(600).expect("delay");
    idp.reset_stats().expect("reset");

    // 50 processes demand 60 s of validity: more than is left, less than a lifetime.
    let tokens: Vec<Result<String, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| scope.spawn(|| d.get("s", &["--min-valid", "60s", "--wait", "20s"])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let stats = idp.stats().expect("stats");
    assert_eq!(stats.refresh_requests, 1, "{stats:?}");
    let tokens: Vec<String> = tokens
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every get served");
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "one token for all");
    assert!(
        idp.is_active(&tokens[0]).expect("introspect"),
        "grant not revoked"
    );
    // The rotated refresh token was stored: the next refresh works too.
    idp.set_token_delay(0).expect("delay");
    let out = d.tokd(&["refresh", "s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(idp.stats().expect("stats").failed_requests, 0);
}

#[test]
fn restarts_between_refreshes_and_after_expiry_keep_the_session() {
    let idp = idp();
    idp.set_access_ttl(2).expect("ttl");
    let mut d = daemon(&idp, "");
    d.add_as("s", "idp", &mint(&idp));
    wait_for(Duration::from_secs(30), "a rotation", || {
        (d.session_json("s")["refresh_count"].as_u64() >= Some(1)).then_some(())
    });
    d.restart().expect("restarts");
    let token = d
        .get("s", &["--min-valid", "0s"])
        .expect("served after restart");
    assert!(idp.is_active(&token).expect("introspect"));

    // Down while the token expires: on start the stored (rotated) refresh token still works.
    let expires_at = d.session_json("s")["expires_at"].as_i64().expect("expiry");
    d.stop().expect("stops");
    wait_for(Duration::from_secs(10), "the token to expire", || {
        (now_ms() > expires_at).then_some(())
    });
    d.start_again().expect("starts");
    let token = d
        .get("s", &["--min-valid", "1s"])
        .expect("served after expiry");
    assert!(idp.is_active(&token).expect("introspect"));
    assert_eq!(
        idp.stats().expect("stats").failed_requests,
        0,
        "{}",
        idp.log()
    );
}

/// A daemon killed while its refresh of "s" is at the provider (3 s delay); the provider
/// still finishes that request (and rotates) although nobody listens any more.
fn killed_during_a_refresh() -> (TestIdp, TestDaemon) {
    let idp = idp();
    idp.set_access_ttl(300).expect("ttl");
    let mut d = daemon(&idp, "");
    d.add_as("s", "idp", &mint(&idp));
    idp.set_token_delay(3000).expect("delay");
    let mut refresh = d.spawn_tokd(&["refresh", "s"]);
    wait_for(
        Duration::from_secs(20),
        "the refresh to reach the provider",
        || (idp.stats().expect("stats").in_flight >= 1).then_some(()),
    );
    d.kill();
    let _ = refresh.wait();
    (idp, d)
}

#[test]
fn a_kill_during_a_refresh_recovers_or_needs_login_never_serves_a_dead_token() {
    let (idp, mut d) = killed_during_a_refresh();
    idp.set_token_delay(0).expect("delay");
    wait_for(Duration::from_secs(20), "the provider to finish", || {
        (idp.stats().expect("stats").in_flight == 0).then_some(())
    });

    d.start_again().expect("starts");
    let settled = wait_for(
        Duration::from_secs(30),
        "the interrupted refresh to settle",
        || {
            let s = d.session_json("s");
            (s["state"] != "refreshing" && s["state"] != "backoff").then_some(s)
        },
    );
    eprintln!("after the kill: {settled}");
    match d.get("s", &["--min-valid", "0s"]) {
        Ok(token) => {
            assert!(
                idp.is_active(&token).expect("introspect"),
                "served a dead token"
            );
            assert_eq!(settled["state"], "valid");
        }
        Err(e) => {
            assert_eq!(settled["state"], "needs_login", "{settled}");
            assert!(
                settled["last_error"]
                    .as_str()
                    .is_some_and(|m| m.contains("refresh interrupted")),
                "{settled}"
            );
            assert_eq!(settled["has_refresh_token"], false);
            assert!(e.contains("needs a login"), "{e}");
        }
    }
    // Either way, nothing retries forever.
    idp.reset_stats().expect("reset");
    let out = d.tokd(&["refresh", "s"]);
    if settled["state"] == "needs_login" {
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(idp.stats().expect("stats").token_requests, 0);
    }
}

#[test]
fn after_a_kill_a_get_waits_for_the_interrupted_refresh_to_settle() {
    let (idp, mut d) = killed_during_a_refresh();
    wait_for(Duration::from_secs(20), "the provider to finish", || {
        (idp.stats().expect("stats").in_flight == 0).then_some(())
    });
    // The retry at start takes a second at the provider; a `get` right after the start
    // must be answered by its outcome, not with the token stored before the kill (still
    // unexpired, and revoked by the retry if the provider detects the reuse).
    idp.set_token_delay(1000).expect("delay");
    d.start_again().expect("starts");
    let answer = d.get("s", &["--min-valid", "0s"]);
    let s = d.session_json("s");
    match answer {
        Ok(token) => {
            assert_eq!(s["state"], "valid", "{s}");
            assert_eq!(s["refresh_count"], 1, "answered before the retry: {s}");
            assert!(idp.is_active(&token).expect("introspect"), "{s}");
        }
        Err(e) => {
            assert!(e.contains("needs a login"), "{e}");
            assert_eq!(s["state"], "needs_login", "{s}");
        }
    }
}

#[test]
fn a_request_longer_than_the_idle_timeout_keeps_its_connection() {
    let idp = idp();
    let d = TestDaemon::start_with(&format!(
        "idle_timeout = \"2s\"\n{}",
        idp_provider("idp", idp.issuer(), "")
    ))
    .expect("daemon starts");
    d.add_as("s", "idp", &mint(&idp));
    // The refresh takes twice the idle timeout at the provider; the idle time counts from
    // the answer, so the same connection still serves a request sent a quarter of the idle
    // timeout after it (counted from the refresh request, it would be closed by then).
    idp.set_token_delay(4000).expect("delay");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut client = tokd::Client::connect_named(&d.socket_path(), "idle-test")
            .await
            .expect("connects");
        let refreshed = client.refresh("s").await.expect("refreshed");
        assert_eq!(refreshed.session.refresh_count, 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let token = client
            .get("s", Duration::from_secs(0))
            .await
            .expect("the same connection still serves");
        assert!(!token.access_token.expose().is_empty());
    });
}

#[test]
fn a_revoked_grant_needs_login_and_is_never_tried_again() {
    let idp = idp();
    let d = daemon(&idp, "");
    let minted = mint(&idp);
    d.add_as("s", "idp", &minted);
    idp.revoke_grant(&refresh_token_of(&minted))
        .expect("revoke");
    let out = d.tokd(&["refresh", "s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs a login"), "{}", stderr(&out));
    let s = d.session_json("s");
    assert_eq!(s["state"], "needs_login", "{s}");
    assert_eq!(s["has_refresh_token"], false);
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid_grant")),
        "{s}"
    );
    assert!(!stderr(&out).contains(&refresh_token_of(&minted)));

    idp.reset_stats().expect("reset");
    let out = d.tokd(&["refresh", "s"]);
    assert_eq!(out.status.code(), Some(1));
    let _ = d.get("s", &["--min-valid", "1h"]);
    assert_eq!(
        idp.stats().expect("stats").token_requests,
        0,
        "no request after needs_login"
    );
    assert_eq!(d.tokd(&["status"]).status.code(), Some(1));
}

#[test]
fn a_wrong_client_secret_needs_config_and_a_fixed_config_revives_it() {
    let idp = idp();
    let bad = format!(
        "[providers.idp]\nissuer = \"{}\"\nclient_id = \"tokd-test\"\nclient_secret = \"wrong\"\n",
        idp.issuer()
    );
    let mut d = TestDaemon::start_with(&bad).expect("daemon starts");
    d.add_as("s", "idp", &mint(&idp));
    let out = d.tokd(&["refresh", "s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("config"), "{}", stderr(&out));
    let s = d.session_json("s");
    assert_eq!(s["state"], "needs_config", "{s}");
    assert_eq!(s["has_refresh_token"], true);
    assert!(!d.log().contains("tokd-test-secret"));

    // Fix the config and reload it (SIGHUP): the session is tried again.
    d.set_extra_config(&idp_provider("idp", idp.issuer(), ""))
        .expect("fix config");
    d.signal(rustix::process::Signal::HUP);
    wait_for(Duration::from_secs(10), "the reload", || {
        d.log().contains("config reloaded").then_some(())
    });
    wait_for(Duration::from_secs(20), "the revived session", || {
        (d.session_json("s")["state"] == "valid").then_some(())
    });
    d.restart().expect("restarts");
    let out = d.tokd(&["refresh", "s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d.session_json("s")["state"], "valid");
}

#[test]
fn client_credentials_sessions_need_no_login() {
    let idp = idp();
    idp.set_access_ttl(300).expect("ttl");
    let config = format!(
        "[providers.cc]\ntoken_endpoint = \"{}\"\ngrant = \"client_credentials\"\n\
         client_id = \"tokd-test\"\nclient_secret = \"tokd-test-secret\"\nscope = \"api\"\n",
        idp.token_endpoint()
    );
    let d = TestDaemon::start_with(&config).expect("daemon starts");
    let out = d.tokd(&["add", "svc", "--provider", "cc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = d.get("svc", &[]).expect("token");
    assert!(idp.is_active(&first).expect("introspect"));
    let out = d.tokd(&["refresh", "svc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = d.get("svc", &[]).expect("token");
    assert_ne!(first, second, "a refresh is a new grant");
    assert_eq!(idp.stats().expect("stats").client_credentials_requests, 2);
    assert_eq!(d.session_json("svc")["state"], "valid");
}

#[test]
fn discovery_uses_either_well_known_path() {
    let idp = idp();
    let d = daemon(&idp, "");
    d.add_as("a", "idp", &mint(&idp));
    assert!(d.tokd(&["refresh", "a"]).status.success(), "{}", d.log());
    assert!(d.log().contains("openid-configuration"), "{}", d.log());

    idp.set_openid_configuration(false).expect("switch off");
    let d2 = daemon(&idp, "");
    d2.add_as("b", "idp", &mint(&idp));
    let out = d2.tokd(&["refresh", "b"]);
    assert!(out.status.success(), "{}: {}", stderr(&out), d2.log());
    assert!(
        d2.log().contains("oauth-authorization-server"),
        "{}",
        d2.log()
    );
}

#[test]
fn expires_in_one_second_cannot_drive_a_hot_loop() {
    let idp = idp();
    idp.set_access_ttl(1).expect("ttl");
    let d = daemon(&idp, "");
    d.add_as("s", "idp", &mint(&idp));
    idp.reset_stats().expect("reset");
    // Clients keep demanding more validity than any token ever has.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let _ = d.get("s", &["--min-valid", "30s", "--wait", "0s"]);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = idp.stats().expect("stats");
    // Lifetime 1 s → minimum interval 1 s: at most one refresh per second (+1 at the edge).
    assert!(
        (stats.refresh_requests as f64) <= elapsed + 1.0,
        "{} refreshes in {elapsed:.1} s",
        stats.refresh_requests
    );
    assert!(stats.refresh_requests >= 1, "the engine still refreshes");
}

#[test]
fn refreshes_in_flight_stay_within_the_provider_limit() {
    let idp = idp();
    idp.set_access_ttl(600).expect("ttl");
    let d = daemon(&idp, "max_concurrent_refreshes = 2");
    for i in 0..8 {
        d.add_as(&format!("s{i}"), "idp", &mint(&idp));
    }
    idp.set_token_delay(300).expect("delay");
    idp.reset_stats().expect("reset");
    std::thread::scope(|scope| {
        for i in 0..8 {
            let d = &d;
            scope.spawn(move || {
                let out = d.tokd(&["refresh", &format!("s{i}")]);
                assert!(out.status.success(), "{}", stderr(&out));
            });
        }
    });
    let stats = idp.stats().expect("stats");
    assert_eq!(stats.refresh_requests, 8, "{stats:?}");
    assert!(stats.max_in_flight <= 2, "{stats:?}");
    assert!(stats.max_in_flight >= 1);
}

#[test]
fn sigterm_waits_for_a_refresh_that_was_sent_and_keeps_its_result() {
    let idp = idp();
    idp.set_access_ttl(600).expect("ttl");
    let mut d = daemon(&idp, "");
    d.add_as("s", "idp", &mint(&idp));
    idp.set_token_delay(2000).expect("delay");
    let mut refresh = d.spawn_tokd(&["refresh", "s"]);
    wait_for(
        Duration::from_secs(20),
        "the refresh to reach the provider",
        || (idp.stats().expect("stats").in_flight >= 1).then_some(()),
    );
    let status = d.stop().expect("stops");
    assert!(status.success(), "exit {status}: {}", d.log());
    let _ = refresh.wait();
    assert_eq!(
        idp.stats().expect("stats").in_flight,
        0,
        "the answer was awaited"
    );
    idp.set_token_delay(0).expect("delay");

    // The rotated refresh token was persisted before the daemon exited.
    d.start_again().expect("starts");
    assert_eq!(d.session_json("s")["refresh_count"], 1);
    let out = d.tokd(&["refresh", "s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        idp.stats().expect("stats").failed_requests,
        0,
        "{}",
        idp.log()
    );
}

#[test]
fn a_refresh_token_is_never_sent_to_another_origin() {
    let idp = idp();
    let endpoint = idp.token_endpoint();
    let table = |url: &str| {
        format!(
            "[providers.idp]\ntoken_endpoint = \"{url}\"\nclient_id = \"tokd-test\"\n\
             client_secret = \"tokd-test-secret\"\n"
        )
    };
    let mut d = TestDaemon::start_with(&table(&endpoint)).expect("daemon starts");
    d.add_as("s", "idp", &mint(&idp));
    // Same server, other origin (localhost instead of 127.0.0.1).
    let moved = endpoint.replace("127.0.0.1", "localhost");
    d.set_extra_config(&table(&moved)).expect("config");
    d.restart().expect("restarts");
    idp.reset_stats().expect("reset");
    let out = d.tokd(&["refresh", "s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("never sent elsewhere"),
        "{}",
        stderr(&out)
    );
    assert_eq!(idp.stats().expect("stats").token_requests, 0);
    assert_eq!(d.session_json("s")["state"], "needs_config");
}
