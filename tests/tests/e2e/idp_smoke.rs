//! The test OpenID provider behaves as the refresh-engine and login tests need: rotation,
//! reuse detection, client authentication methods, client credentials, runtime controls, the
//! device authorization grant, the authorization code flow with PKCE to a loopback redirect
//! URI, revocation. These tests talk to it directly over http; no daemon is involved.

use std::io::Read;
use std::sync::{Arc, Barrier, Mutex, PoisonError};

use serde_json::Value;
use tokd_e2e::httpd::{Request, Response, Server};
use tokd_e2e::idp::{IdpStats, TestIdp, base64url, basic_auth};

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

/// A refresh_token grant by the public client `tokd-public` (client id in the form).
fn refresh_public(idp: &TestIdp, refresh_token: &str) -> (u16, Value) {
    idp.token_request(
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "tokd-public"),
        ],
    )
    .expect("token endpoint answers")
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
    let (status, body) = refresh_public(&idp, rt);
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
            device_code_requests: 0,
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

// ---------------------------------------------------------------------------------------
// Login flows: discovery, device authorization grant, authorization code + PKCE, revocation.

const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// HTTP Basic credentials, and the form fields that authenticate a client.
type ClientAuth = (
    Option<(&'static str, &'static str)>,
    Vec<(&'static str, &'static str)>,
);

/// Client authentication as each test client is registered: HTTP Basic for `tokd-test`, the
/// secret in the form for `tokd-post`, just the id for the public `tokd-public`.
fn client_auth(client_id: &'static str) -> ClientAuth {
    match client_id {
        "tokd-test" => (Some(("tokd-test", SECRET)), vec![]),
        "tokd-post" => (
            None,
            vec![("client_id", "tokd-post"), ("client_secret", SECRET)],
        ),
        "tokd-public" => (None, vec![("client_id", "tokd-public")]),
        other => panic!("no test client {other}"),
    }
}

/// A device authorization request; asserts success and returns the answer.
fn device_authorization(idp: &TestIdp, client_id: &'static str, scope: &str) -> Value {
    let (basic, mut form) = client_auth(client_id);
    form.push(("scope", scope));
    let (status, body) = idp
        .device_authorization_request(basic, &form)
        .expect("device authorization endpoint answers");
    assert_eq!(status, 200, "{body}\n{}", idp.log());
    body
}

/// Polls the token endpoint for `device_code`.
fn poll(idp: &TestIdp, client_id: &'static str, device_code: &str) -> (u16, Value) {
    let (basic, mut form) = client_auth(client_id);
    form.extend([("grant_type", DEVICE_CODE), ("device_code", device_code)]);
    idp.token_request(basic, &form)
        .expect("token endpoint answers")
}

fn assert_error(answer: &(u16, Value), error: &str, idp: &TestIdp) {
    assert_eq!(answer.0, 400, "{}\n{}", answer.1, idp.log());
    assert_eq!(answer.1["error"], error, "{}", answer.1);
}

/// SHA-256 (FIPS 180-4), for the PKCE S256 challenge; the tests crate has no hash crate.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let bit_len = u64::try_from(data.len()).expect("small input") * 8;
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for (k, w) in K.iter().zip(w) {
            let [a, b, c, d, e, f, g, hh] = v;
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(*k)
                .wrapping_add(w);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            v = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
        }
        for (x, y) in h.iter_mut().zip(v) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(h) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))).
fn s256(verifier: &str) -> String {
    base64url(&sha256(verifier.as_bytes()))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A query parameter of a request target or URL, percent- and `+`-decoded.
fn query_param(target: &str, name: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            let bytes = v.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'%' if i + 2 < bytes.len() => {
                        let hexpair = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                        out.push(u8::from_str_radix(hexpair, 16).expect("hex escape"));
                        i += 3;
                    }
                    b'+' => {
                        out.push(b' ');
                        i += 1;
                    }
                    b => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            String::from_utf8(out).expect("utf-8")
        })
    })
}

/// What the loopback callback received.
struct CallbackRequest {
    /// The request target, `/callback?code=...&state=...&iss=...`.
    target: String,
}

/// A stand-in for the daemon's loopback redirect URI: the harness's [`Server`] on
/// `http://127.0.0.1:<ephemeral port>/callback`, answering 200 "closed" and keeping each
/// request.
struct Callback {
    redirect_uri: String,
    requests: Arc<Mutex<Vec<Request>>>,
    /// Serves until the callback is dropped.
    _server: Server,
}

impl Callback {
    fn listen() -> Callback {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&requests);
        let server = Server::start(move |request| {
            kept.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(request.clone());
            Response::new(200, "closed").header("Content-Type", "text/plain")
        })
        .expect("the callback server starts");
        Callback {
            redirect_uri: format!("http://127.0.0.1:{}/callback", server.port()),
            requests,
            _server: server,
        }
    }

    /// Plays the browser through `url` (which must end at this callback) and returns what the
    /// callback received.
    fn receive(self, idp: &TestIdp, url: &str) -> CallbackRequest {
        let body = idp
            .play_browser(url)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", idp.log()));
        assert_eq!(body, "closed", "the callback's answer is the final body");
        let requests =
            std::mem::take(&mut *self.requests.lock().unwrap_or_else(PoisonError::into_inner));
        let [request] = requests.as_slice() else {
            panic!("one request at the callback, not {requests:?}");
        };
        assert_eq!(request.method, "GET", "{request:?}");
        let target = format!("{}?{}", request.path, request.query);
        assert!(
            request.path == "/callback" && !request.query.is_empty(),
            "{target}"
        );
        assert!(
            request.header("cookie").is_none(),
            "the provider's cookies stay with the provider: {:?}",
            request.headers
        );
        CallbackRequest { target }
    }
}

/// The authorization request URL the daemon sends the user to.
fn authorization_url(
    idp: &TestIdp,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    challenge: Option<&str>,
    extra: &[(&str, &str)],
) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", SCOPE),
        ("state", state),
    ];
    if let Some(challenge) = challenge {
        params.extend([
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ]);
    }
    params.extend_from_slice(extra);
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{}?{}", idp.authorization_endpoint(), query.join("&"))
}

/// The outcome of a browser login up to the callback.
struct Login {
    code: String,
    verifier: String,
    redirect_uri: String,
}

/// A complete browser login with PKCE for `client_id`; asserts the callback got a code, the
/// state and the issuer (RFC 9207).
fn browser_login(idp: &TestIdp, client_id: &str, extra: &[(&str, &str)]) -> Login {
    let callback = Callback::listen();
    let redirect_uri = callback.redirect_uri.clone();
    let verifier = base64url(&random_bytes(32));
    assert_eq!(verifier.len(), 43, "RFC 7636 §4.1 length");
    let state = base64url(&random_bytes(16));
    let url = authorization_url(
        idp,
        client_id,
        &redirect_uri,
        &state,
        Some(&s256(&verifier)),
        extra,
    );
    let request = callback.receive(idp, &url);
    let target = &request.target;
    assert_eq!(
        query_param(target, "state").as_deref(),
        Some(state.as_str()),
        "{target}"
    );
    assert_eq!(
        query_param(target, "iss").as_deref(),
        Some(idp.issuer()),
        "{target}"
    );
    assert_eq!(
        query_param(target, "error"),
        None,
        "{target}\n{}",
        idp.log()
    );
    let code = query_param(target, "code").unwrap_or_else(|| panic!("no code: {target}"));
    Login {
        code,
        verifier,
        redirect_uri,
    }
}

/// The authorization_code grant for `login`, with `verifier` and `redirect_uri` as given.
fn exchange(
    idp: &TestIdp,
    client_id: &'static str,
    login: &Login,
    verifier: &str,
    redirect_uri: &str,
) -> (u16, Value) {
    let (basic, mut form) = client_auth(client_id);
    form.extend([
        ("grant_type", "authorization_code"),
        ("code", login.code.as_str()),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ]);
    idp.token_request(basic, &form)
        .expect("token endpoint answers")
}

#[test]
fn pkce_s256_matches_rfc7636() {
    assert_eq!(
        hex(&sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // Two blocks (56 bytes: the length no longer fits the first).
    assert_eq!(
        hex(&sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    // RFC 7636 Appendix B.
    assert_eq!(
        s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    assert_eq!(base64url(b"fo"), "Zm8", "no padding");
    assert_eq!(base64url(&[0xfb, 0xff]), "-_8", "url-safe alphabet");
}

#[test]
fn discovery_lists_the_login_flow_endpoints() {
    let idp = start();
    let issuer = idp.issuer();
    assert_eq!(idp.authorization_endpoint(), format!("{issuer}/auth"));
    assert_eq!(
        idp.device_authorization_endpoint(),
        format!("{issuer}/device/auth")
    );
    assert_eq!(
        idp.revocation_endpoint(),
        format!("{issuer}/token/revocation")
    );
    let url = format!("{issuer}/.well-known/openid-configuration");
    let mut resp = tokd_e2e::idp::agent()
        .get(&url)
        .call()
        .expect("discovery answers");
    assert_eq!(resp.status().as_u16(), 200);
    let meta: Value = resp.body_mut().read_json().expect("discovery is JSON");
    assert_eq!(meta["authorization_endpoint"], format!("{issuer}/auth"));
    assert_eq!(
        meta["device_authorization_endpoint"],
        format!("{issuer}/device/auth")
    );
    assert_eq!(
        meta["revocation_endpoint"],
        format!("{issuer}/token/revocation")
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let grant_types = meta["grant_types_supported"]
        .as_array()
        .unwrap_or_else(|| panic!("grant_types_supported: {meta}"));
    for gty in ["authorization_code", "refresh_token", DEVICE_CODE] {
        assert!(grant_types.iter().any(|g| g == gty), "{gty}: {meta}");
    }
}

#[test]
fn device_flow_issues_tokens_once_the_user_approves() {
    let idp = start();
    let mut polls = 0;
    for client_id in ["tokd-test", "tokd-post", "tokd-public"] {
        let dar = device_authorization(&idp, client_id, SCOPE);
        assert_eq!(dar["interval"], 1, "{dar}");
        assert_eq!(dar["expires_in"], 600, "{dar}");
        assert_eq!(dar["verification_uri"], format!("{}/device", idp.issuer()));
        let user_code = str_field(&dar, "user_code");
        let device_code = str_field(&dar, "device_code");
        assert!(
            str_field(&dar, "verification_uri_complete")
                .ends_with(&format!("?user_code={user_code}")),
            "{dar}"
        );

        assert_error(
            &poll(&idp, client_id, device_code),
            "authorization_pending",
            &idp,
        );
        // The user may type the code in lower case and without the dash.
        let typed = if client_id == "tokd-post" {
            user_code.replace('-', "").to_lowercase()
        } else {
            user_code.to_owned()
        };
        idp.approve_device(&typed)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", idp.log()));
        let (status, tr) = poll(&idp, client_id, device_code);
        assert_eq!(status, 200, "{tr}\n{}", idp.log());
        assert_eq!(tr["token_type"], "Bearer");
        assert_eq!(tr["scope"], SCOPE);
        assert_eq!(tr["expires_in"], 10);
        assert_eq!(str_field(&tr, "id_token").split('.').count(), 3);
        let rt = str_field(&tr, "refresh_token");
        assert!(idp.is_active(rt).expect("introspect"));
        assert!(
            idp.is_active(str_field(&tr, "access_token"))
                .expect("introspect")
        );

        let rt = if client_id == "tokd-test" {
            let (status, body) = refresh_basic(&idp, rt);
            assert_eq!(status, 200, "{body}\n{}", idp.log());
            assert_ne!(str_field(&body, "refresh_token"), rt);
            str_field(&body, "refresh_token").to_owned()
        } else {
            rt.to_owned()
        };

        // The device code is spent and cannot be approved again; polling it once more
        // revokes the grant it produced (as reusing an authorization code does).
        assert_invalid_grant(&poll(&idp, client_id, device_code), &idp);
        assert!(idp.approve_device(user_code).is_err());
        assert!(!idp.is_active(&rt).expect("introspect"), "grant revoked");
        polls += 3;
    }
    assert_eq!(idp.stats().expect("stats").device_code_requests, polls);

    // Without offline_access: tokens, but no refresh token.
    let dar = device_authorization(&idp, "tokd-test", "openid api");
    idp.approve_device(str_field(&dar, "user_code"))
        .expect("approving");
    let (status, tr) = poll(&idp, "tokd-test", str_field(&dar, "device_code"));
    assert_eq!(status, 200, "{tr}");
    assert_eq!(tr["scope"], "openid api");
    assert!(tr.get("refresh_token").is_none(), "{tr}");

    assert!(
        idp.approve_device("BCDF-GHJK").is_err(),
        "unknown user code"
    );
}

#[test]
fn device_flow_answers_access_denied_when_the_user_refuses() {
    let idp = start();
    let dar = device_authorization(&idp, "tokd-test", SCOPE);
    let user_code = str_field(&dar, "user_code");
    let device_code = str_field(&dar, "device_code");
    assert_error(
        &poll(&idp, "tokd-test", device_code),
        "authorization_pending",
        &idp,
    );
    idp.deny_device(user_code)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", idp.log()));
    assert!(idp.deny_device(user_code).is_err(), "already denied");
    assert!(idp.approve_device(user_code).is_err(), "already denied");
    assert_error(&poll(&idp, "tokd-test", device_code), "access_denied", &idp);
    assert!(idp.deny_device("BCDF-GHJK").is_err(), "unknown user code");
}

#[test]
fn device_flow_interval_and_slow_down_are_adjustable() {
    let idp = start();
    idp.set_device_slow_down(2).expect("config");
    let dar = device_authorization(&idp, "tokd-public", SCOPE);
    let device_code = str_field(&dar, "device_code");
    assert_error(&poll(&idp, "tokd-public", device_code), "slow_down", &idp);
    assert_error(&poll(&idp, "tokd-public", device_code), "slow_down", &idp);
    assert_error(
        &poll(&idp, "tokd-public", device_code),
        "authorization_pending",
        &idp,
    );
    let stats = idp.stats().expect("stats");
    assert_eq!(stats.device_code_requests, 3, "{stats:?}");
    assert_eq!(stats.failed_requests, 3, "{stats:?}");

    idp.set_device_interval(0).expect("config");
    let dar = device_authorization(&idp, "tokd-test", SCOPE);
    assert!(dar.get("interval").is_none(), "{dar}");
    idp.set_device_interval(3).expect("config");
    assert_eq!(
        device_authorization(&idp, "tokd-test", SCOPE)["interval"],
        3
    );

    // The device authorization endpoint insists on the registered client authentication.
    let (status, body) = idp
        .device_authorization_request(
            None,
            &[
                ("client_id", "tokd-test"),
                ("client_secret", SECRET),
                ("scope", SCOPE),
            ],
        )
        .expect("device authorization endpoint answers");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
}

#[test]
fn browser_flow_with_pkce_issues_tokens() {
    let idp = start();
    // prompt=consent: OpenID Connect Core §11, or offline_access is dropped.
    let login = browser_login(&idp, "tokd-public", &[("prompt", "consent")]);

    // A wrong verifier or redirect_uri is refused (and does not spend the code).
    let wrong_verifier = base64url(&random_bytes(32));
    assert_invalid_grant(
        &exchange(
            &idp,
            "tokd-public",
            &login,
            &wrong_verifier,
            &login.redirect_uri,
        ),
        &idp,
    );
    // (Port 1 is never ephemeral.)
    let other_port = "http://127.0.0.1:1/callback";
    assert_invalid_grant(
        &exchange(&idp, "tokd-public", &login, &login.verifier, other_port),
        &idp,
    );

    let (status, tr) = exchange(
        &idp,
        "tokd-public",
        &login,
        &login.verifier,
        &login.redirect_uri,
    );
    assert_eq!(status, 200, "{tr}\n{}", idp.log());
    assert_eq!(tr["token_type"], "Bearer");
    assert_eq!(tr["scope"], SCOPE);
    assert_eq!(str_field(&tr, "id_token").split('.').count(), 3);
    let rt = str_field(&tr, "refresh_token");
    assert!(idp.is_active(rt).expect("introspect"));
    assert!(
        idp.is_active(str_field(&tr, "access_token"))
            .expect("introspect")
    );

    // The refresh token works for the public client.
    let (status, body) = refresh_public(&idp, rt);
    assert_eq!(status, 200, "{body}\n{}", idp.log());
    let rotated = str_field(&body, "refresh_token");

    // Codes are single-use; reusing one revokes the grant it produced (RFC 6749 §4.1.2).
    assert_invalid_grant(
        &exchange(
            &idp,
            "tokd-public",
            &login,
            &login.verifier,
            &login.redirect_uri,
        ),
        &idp,
    );
    assert!(
        !idp.is_active(rotated).expect("introspect"),
        "grant revoked"
    );
}

#[test]
fn browser_flow_for_the_confidential_client_and_offline_access() {
    let idp = start();
    // Without prompt=consent oidc-provider drops offline_access: no refresh token.
    let login = browser_login(&idp, "tokd-test", &[]);
    let (status, tr) = exchange(
        &idp,
        "tokd-test",
        &login,
        &login.verifier,
        &login.redirect_uri,
    );
    assert_eq!(status, 200, "{tr}\n{}", idp.log());
    assert_eq!(tr["scope"], "openid api");
    assert!(tr.get("refresh_token").is_none(), "{tr}");

    // Lenient like providers that do not enforce it: offline_access without prompt works.
    idp.set_offline_access_needs_consent_prompt(false)
        .expect("config");
    let second = browser_login(&idp, "tokd-test", &[]);
    assert_ne!(second.redirect_uri, login.redirect_uri, "another port");
    let (status, tr) = exchange(
        &idp,
        "tokd-test",
        &second,
        &second.verifier,
        &second.redirect_uri,
    );
    assert_eq!(status, 200, "{tr}\n{}", idp.log());
    assert_eq!(tr["scope"], SCOPE);
    let rt = str_field(&tr, "refresh_token");
    assert_eq!(refresh_basic(&idp, rt).0, 200);

    // The confidential client must authenticate at the token endpoint.
    let third = browser_login(&idp, "tokd-test", &[]);
    let (status, body) = idp
        .token_request(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "tokd-test"),
                ("code", third.code.as_str()),
                ("redirect_uri", third.redirect_uri.as_str()),
                ("code_verifier", third.verifier.as_str()),
            ],
        )
        .expect("token endpoint answers");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
}

#[test]
fn browser_flow_errors_reach_the_client_or_stop_at_the_provider() {
    let idp = start();
    let challenge = s256(&base64url(&random_bytes(32)));

    // Unregistered redirect URIs (another path; localhost is not 127.0.0.1): the provider
    // answers an error page itself and redirects nowhere.
    for redirect_uri in ["http://127.0.0.1:9/other", "http://localhost:9/callback"] {
        let url = authorization_url(&idp, "tokd-test", redirect_uri, "s", Some(&challenge), &[]);
        let visit = idp.browse(&url).expect("the provider answers");
        assert_eq!(visit.status, 400, "{visit:?}");
        assert!(visit.redirects.is_empty(), "{visit:?}");
        assert!(
            visit.url.starts_with(&idp.authorization_endpoint()),
            "{visit:?}"
        );
        assert!(visit.body.contains("invalid_redirect_uri"), "{visit:?}");
        assert!(idp.play_browser(&url).is_err(), "not a 2xx ending");
    }

    // The public client without PKCE: the error goes to the client.
    let callback = Callback::listen();
    let url = authorization_url(&idp, "tokd-public", &callback.redirect_uri, "s1", None, &[]);
    let request = callback.receive(&idp, &url);
    assert_eq!(
        query_param(&request.target, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&request.target, "state").as_deref(), Some("s1"));
    assert_eq!(query_param(&request.target, "code"), None);

    // The user refuses.
    idp.set_interaction_denied(true).expect("config");
    let callback = Callback::listen();
    let url = authorization_url(
        &idp,
        "tokd-public",
        &callback.redirect_uri,
        "s2",
        Some(&challenge),
        &[],
    );
    let request = callback.receive(&idp, &url);
    assert_eq!(
        query_param(&request.target, "error").as_deref(),
        Some("access_denied"),
        "{}",
        request.target
    );
    assert_eq!(query_param(&request.target, "state").as_deref(), Some("s2"));
    assert_eq!(query_param(&request.target, "code"), None);
}

#[test]
fn revocation_makes_a_refresh_token_inactive() {
    let idp = start();
    let tr = mint(&idp, "tokd-test", SCOPE);
    let rt = str_field(&tr, "refresh_token");
    let at = str_field(&tr, "access_token");

    // Wrong secret: refused, nothing revoked.
    let (status, body) = idp
        .revocation_request(
            Some(("tokd-test", "wrong")),
            &[("token", rt), ("token_type_hint", "refresh_token")],
        )
        .expect("revocation endpoint answers");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_client"), "{body}");
    assert!(idp.is_active(rt).expect("introspect"));

    let (status, body) = idp
        .revocation_request(
            Some(("tokd-test", SECRET)),
            &[("token", rt), ("token_type_hint", "refresh_token")],
        )
        .expect("revocation endpoint answers");
    assert_eq!((status, body.as_str()), (200, ""), "{}", idp.log());
    assert!(!idp.is_active(rt).expect("introspect"));
    // Revoking a refresh token revokes its grant: the access token dies with it.
    assert!(!idp.is_active(at).expect("introspect"));
    assert_invalid_grant(&refresh_basic(&idp, rt), &idp);
    // RFC 7009 §2.2: an unknown (here: already revoked) token is answered 200.
    let (status, _) = idp
        .revocation_request(Some(("tokd-test", SECRET)), &[("token", rt)])
        .expect("revocation endpoint answers");
    assert_eq!(status, 200);

    // Another client's token: refused (oidc-provider's default policy), not revoked.
    let other = mint(&idp, "tokd-post", SCOPE);
    let other_rt = str_field(&other, "refresh_token");
    let (status, body) = idp
        .revocation_request(Some(("tokd-test", SECRET)), &[("token", other_rt)])
        .expect("revocation endpoint answers");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_request"), "{body}");
    assert!(idp.is_active(other_rt).expect("introspect"));
    // tokd-post authenticates its registered way only, here too.
    let (status, body) = idp
        .revocation_request(Some(("tokd-post", SECRET)), &[("token", other_rt)])
        .expect("revocation endpoint answers");
    assert_eq!(status, 401, "{body}");
    assert!(idp.is_active(other_rt).expect("introspect"));
    let (status, _) = idp
        .revocation_request(
            None,
            &[
                ("token", other_rt),
                ("client_id", "tokd-post"),
                ("client_secret", SECRET),
            ],
        )
        .expect("revocation endpoint answers");
    assert_eq!(status, 200);
    assert!(!idp.is_active(other_rt).expect("introspect"));

    // The public client revokes with just its id.
    let public = mint(&idp, "tokd-public", SCOPE);
    let public_rt = str_field(&public, "refresh_token");
    let (status, _) = idp
        .revocation_request(None, &[("token", public_rt), ("client_id", "tokd-public")])
        .expect("revocation endpoint answers");
    assert_eq!(status, 200);
    assert!(!idp.is_active(public_rt).expect("introspect"));
}
