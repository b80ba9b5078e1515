//! The test OpenID provider behaves as the refresh-engine tests need: rotation, reuse
//! detection, client authentication methods, client credentials, runtime controls. These
//! tests talk to it directly over http; no daemon is involved.

use std::sync::{Arc, Barrier};

use serde_json::Value;
use tokd_e2e::idp::{IdpStats, TestIdp, basic_auth};

const SECRET: &str = "tokd-test-secret";
const SCOPE: &str = "openid offline_access api";

fn start() -> TestIdp {
    TestIdp::start().expect("the test provider starts")
}

/// Mints a grant and returns the parsed token response.
fn mint(idp: &TestIdp, client_id: &str, scope: &str) -> Value {
    let text = idp.mint(client_id, scope).expect("minting a grant");
    serde_json::from_str(&text).expect("the minted token response is JSON")
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// A refresh_token grant by `tokd-test` with HTTP Basic authentication.
fn refresh_basic(idp: &TestIdp, refresh_token: &str) -> (u16, Value) {
    idp.token_request(
        Some(("tokd-test", SECRET)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .expect("token endpoint answers")
}

fn assert_invalid_grant(answer: &(u16, Value), idp: &TestIdp) {
    assert_eq!(answer.0, 400, "{}\n{}", answer.1, idp.log());
    assert_eq!(answer.1["error"], "invalid_grant", "{}", answer.1);
}

#[test]
fn basic_auth_encodes_like_rfc4648() {
    // "tokd-test:tokd-test-secret" (26 bytes, one padding char) and the RFC 4648 §10 vectors
    // of every padding length.
    assert_eq!(
        basic_auth("tokd-test", SECRET),
        "Basic dG9rZC10ZXN0OnRva2QtdGVzdC1zZWNyZXQ="
    );
    assert_eq!(basic_auth("f", "o"), "Basic Zjpv");
    assert_eq!(basic_auth("fo", "ob"), "Basic Zm86b2I=");
    assert_eq!(basic_auth("", ""), "Basic Og==");
}

#[test]
fn mint_answers_a_usable_token_response() {
    let idp = start();
    assert!(
        idp.issuer().starts_with("http://127.0.0.1:"),
        "{}",
        idp.issuer()
    );
    assert_eq!(idp.token_endpoint(), format!("{}/token", idp.issuer()));

    let tr = mint(&idp, "tokd-test", SCOPE);
    assert_eq!(tr["token_type"], "Bearer");
    assert_eq!(tr["expires_in"], 10, "default access ttl: {tr}");
    assert_eq!(tr["scope"], SCOPE);
    let id_token = str_field(&tr, "id_token");
    assert_eq!(id_token.split('.').count(), 3, "a JWS: {id_token}");
    assert!(
        idp.is_active(str_field(&tr, "access_token"))
            .expect("introspect")
    );
    assert!(
        idp.is_active(str_field(&tr, "refresh_token"))
            .expect("introspect")
    );
    assert!(!idp.is_active("no-such-token").expect("introspect"));

    // No offline_access: no refresh token; no openid: no id_token.
    let tr = mint(&idp, "tokd-test", "api");
    assert!(tr.get("refresh_token").is_none(), "{tr}");
    assert!(tr.get("id_token").is_none(), "{tr}");
    assert!(idp.mint("no-such-client", SCOPE).is_err());
}

#[test]
fn refresh_rotates_and_reuse_revokes_the_grant() {
    let idp = start();
    let tr = mint(&idp, "tokd-test", SCOPE);
    let old_rt = str_field(&tr, "refresh_token");

    let (status, fresh) = refresh_basic(&idp, old_rt);
    assert_eq!(status, 200, "{fresh}\n{}", idp.log());
    assert_eq!(fresh["token_type"], "Bearer");
    assert_eq!(fresh["expires_in"], 10);
    assert_eq!(fresh["scope"], SCOPE);
    let new_rt = str_field(&fresh, "refresh_token");
    let new_at = str_field(&fresh, "access_token");
    assert_ne!(new_rt, old_rt, "the refresh token rotates");
    assert_ne!(new_at, str_field(&tr, "access_token"));
    assert!(fresh["id_token"].is_string(), "openid scope: {fresh}");
    assert!(idp.is_active(new_rt).expect("introspect"));
    assert!(!idp.is_active(old_rt).expect("introspect"), "rotated away");

    // Presenting the rotated token again: refused, and the whole grant dies.
    assert_invalid_grant(&refresh_basic(&idp, old_rt), &idp);
    assert!(!idp.is_active(new_rt).expect("introspect"));
    assert!(!idp.is_active(new_at).expect("introspect"));
    assert_invalid_grant(&refresh_basic(&idp, new_rt), &idp);
}

#[test]
fn concurrent_use_of_one_refresh_token_lets_one_win_and_kills_the_grant() {
    let idp = start();
    idp.set_token_delay(300).expect("config");
    let tr = mint(&idp, "tokd-test", SCOPE);
    let rt = str_field(&tr, "refresh_token").to_owned();
    let idp = Arc::new(idp);
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (idp, barrier, rt) = (Arc::clone(&idp), Arc::clone(&barrier), rt.clone());
            std::thread::spawn(move || {
                barrier.wait();
                refresh_basic(&idp, &rt)
            })
        })
        .collect();
    let answers: Vec<(u16, Value)> = handles
        .into_iter()
        .map(|h| h.join().expect("request thread"))
        .collect();
    let stats = idp.stats().expect("stats");
    assert_eq!(stats.refresh_requests, 2, "{stats:?}");
    let winners: Vec<_> = answers.iter().filter(|a| a.0 == 200).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    let loser = answers.iter().find(|a| a.0 != 200).expect("one loser");
    assert_invalid_grant(loser, &idp);
    let winner_rt = str_field(&winners[0].1, "refresh_token");
    assert!(!idp.is_active(winner_rt).expect("introspect"));
}

#[test]
fn each_client_authenticates_only_its_registered_way() {
    let idp = start();
    let tr = mint(&idp, "tokd-post", SCOPE);
    let rt = str_field(&tr, "refresh_token");
    // tokd-post is registered for client_secret_post: Basic is refused (oidc-provider alone
    // would accept either; idp.mjs insists on the registered method).
    let (status, body) = idp
        .token_request(
            Some(("tokd-post", SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .expect("token endpoint answers");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    let (status, body) = idp
        .token_request(
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", "tokd-post"),
                ("client_secret", SECRET),
            ],
        )
        .expect("token endpoint answers");
    assert_eq!(status, 200, "{body}\n{}", idp.log());
    assert_ne!(str_field(&body, "refresh_token"), rt);

    // And tokd-test, registered for client_secret_basic, refuses a secret in the body.
    let (status, body) = idp
        .token_request(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "tokd-test"),
                ("client_secret", SECRET),
            ],
        )
        .expect("token endpoint answers");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");

    let tr = mint(&idp, "tokd-public", SCOPE);
    let rt = str_field(&tr, "refresh_token");
    let (status, body) = idp
        .token_request(
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", "tokd-public"),
            ],
        )
        .expect("token endpoint answers");
    assert_eq!(status, 200, "{body}\n{}", idp.log());
    assert_ne!(str_field(&body, "refresh_token"), rt);
}

#[test]
fn client_credentials_issue_an_access_token() {
    let idp = start();
    let (status, body) = idp
        .token_request(
            Some(("tokd-test", SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "api")],
        )
        .expect("token endpoint answers");
    assert_eq!(status, 200, "{body}\n{}", idp.log());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 10);
    assert_eq!(body["scope"], "api");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(
        idp.is_active(str_field(&body, "access_token"))
            .expect("introspect")
    );

    // A wrong secret is refused.
    let (status, body) = idp
        .token_request(
            Some(("tokd-test", "wrong")),
            &[("grant_type", "client_credentials"), ("scope", "api")],
        )
        .expect("token endpoint answers");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    let stats = idp.stats().expect("stats");
    assert_eq!(stats.client_credentials_requests, 2, "{stats:?}");
    assert_eq!(stats.failed_requests, 1, "{stats:?}");
}

#[test]
fn access_ttl_applies_to_the_next_tokens() {
    let idp = start();
    let before = mint(&idp, "tokd-test", SCOPE);
    assert_eq!(before["expires_in"], 10);
    idp.set_access_ttl(1).expect("config");
    assert_eq!(mint(&idp, "tokd-test", SCOPE)["expires_in"], 1);
    let (status, body) = refresh_basic(&idp, str_field(&before, "refresh_token"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 1);
    let (_, body) = idp
        .token_request(
            Some(("tokd-test", SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "api")],
        )
        .expect("token endpoint answers");
    assert_eq!(body["expires_in"], 1, "{body}");
    assert!(idp.set_access_ttl(0).is_err(), "a zero ttl is refused");
}

#[test]
fn token_delay_makes_requests_overlap() {
    let idp = Arc::new(start());
    idp.set_token_delay(500).expect("config");
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (idp, barrier) = (Arc::clone(&idp), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                idp.token_request(
                    Some(("tokd-test", SECRET)),
                    &[("grant_type", "client_credentials"), ("scope", "api")],
                )
                .expect("token endpoint answers")
            })
        })
        .collect();
    for h in handles {
        let (status, body) = h.join().expect("request thread");
        assert_eq!(status, 200, "{body}");
    }
    let stats = idp.stats().expect("stats");
    assert_eq!(stats.token_requests, 2, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert!(stats.max_in_flight >= 2, "{stats:?}");
}

#[test]
fn openid_configuration_can_be_switched_off() {
    let idp = start();
    let agent = tokd_e2e::idp::agent();
    let oidc = format!("{}/.well-known/openid-configuration", idp.issuer());
    let oauth = format!("{}/.well-known/oauth-authorization-server", idp.issuer());
    let get = |url: &str| -> (u16, Value) {
        let mut resp = agent.get(url).call().expect("discovery answers");
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_json().unwrap_or(Value::Null);
        (status, body)
    };

    let (status, meta) = get(&oidc);
    assert_eq!(status, 200);
    assert_eq!(meta["issuer"], idp.issuer());
    assert_eq!(meta["token_endpoint"], idp.token_endpoint().as_str());

    idp.set_openid_configuration(false).expect("config");
    assert_eq!(get(&oidc).0, 404);
    let (status, meta) = get(&oauth);
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["issuer"], idp.issuer());
    assert_eq!(meta["token_endpoint"], idp.token_endpoint().as_str());

    idp.set_openid_configuration(true).expect("config");
    assert_eq!(get(&oidc).0, 200);
}

#[test]
fn revoke_grant_kills_its_tokens() {
    let idp = start();
    let tr = mint(&idp, "tokd-test", SCOPE);
    let other = mint(&idp, "tokd-test", SCOPE);
    let rt = str_field(&tr, "refresh_token");
    idp.revoke_grant(rt).expect("revoking");
    assert!(!idp.is_active(rt).expect("introspect"));
    assert!(
        !idp.is_active(str_field(&tr, "access_token"))
            .expect("introspect")
    );
    assert_invalid_grant(&refresh_basic(&idp, rt), &idp);
    assert!(idp.revoke_grant(rt).is_err(), "already revoked");
    // Other grants live on.
    let (status, body) = refresh_basic(&idp, str_field(&other, "refresh_token"));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn stats_count_token_endpoint_requests() {
    let idp = start();
    let tr = mint(&idp, "tokd-test", SCOPE);
    assert_eq!(refresh_basic(&idp, str_field(&tr, "refresh_token")).0, 200);
    assert_invalid_grant(&refresh_basic(&idp, "bogus"), &idp);
    let (status, _) = idp
        .token_request(
            Some(("tokd-test", SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "api")],
        )
        .expect("token endpoint answers");
    assert_eq!(status, 200);
    assert_eq!(
        idp.stats().expect("stats"),
        IdpStats {
            token_requests: 3,
            refresh_requests: 2,
            client_credentials_requests: 1,
            failed_requests: 1,
            in_flight: 0,
            max_in_flight: 1,
        }
    );
    idp.reset_stats().expect("reset");
    let zero = idp.stats().expect("stats");
    assert_eq!(zero.token_requests, 0, "{zero:?}");
    assert_eq!(zero.refresh_requests, 0, "{zero:?}");
    assert_eq!(zero.max_in_flight, 0, "{zero:?}");
}
