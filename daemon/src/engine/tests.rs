//! The engine in-process, against a mock token endpoint: each transition of a session's
//! refresh state, observed through the engine's API, the store and the mock.

use std::time::Duration;

use tokd_protocol::verbs::get::GetRequest;
use tokd_protocol::{ErrorCode, SessionState, TokenTarget};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::sessions::NewSession;
use crate::sessions::import::parse_token_response;
use crate::testing::Fixture;

fn provider(server: &MockServer, extra: &str) -> String {
    format!(
        "[providers.p]\ntoken_endpoint = \"{}/token\"\nclient_id = \"c\"\n{extra}\n",
        server.uri()
    )
}

async fn with_session(server: &MockServer, extra: &str) -> Fixture {
    let fixture = Fixture::open(None, "tokd-engine-", &provider(server, extra));
    let tokens = parse_token_response(
        r#"{"access_token":"at-0","expires_in":3600,"refresh_token":"rt-0"}"#,
        fixture.state.clock().now_ms(),
        None,
    )
    .expect("tokens");
    fixture
        .state
        .engine()
        .add(NewSession {
            name: "s".into(),
            provider: "p".into(),
            attrs: vec![],
            replace: false,
            tokens,
            origin: None,
        })
        .await
        .expect("added");
    fixture
}

fn answer(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("Content-Type", "application/json")
        .set_body_string(body.to_owned())
}

async fn mount(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(response)
        .mount(server)
        .await;
}

fn status(fixture: &Fixture) -> tokd_protocol::SessionStatus {
    let snapshot = fixture.state.settings();
    fixture
        .state
        .sessions()
        .status(Some("s"), &snapshot.config)
        .expect("status")
        .remove(0)
}

/// The session as the store keeps it (its state folded into the record).
fn as_persisted(fixture: &Fixture) -> crate::store::SessionRecord {
    let s = fixture.state.sessions().find("s").expect("session");
    s.with_live(|live| live.persisted()).expect("live")
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_refresh_rotates_persists_and_plans_the_next() {
    let server = MockServer::start().await;
    mount(
        &server,
        answer(r#"{"access_token":"at-1","expires_in":3600,"refresh_token":"rt-1"}"#),
    )
    .await;
    let f = with_session(&server, "").await;
    f.state
        .engine()
        .refresh_now("s", WAIT)
        .await
        .expect("refreshed");
    let st = status(&f);
    assert_eq!(st.state, SessionState::Valid);
    assert_eq!(st.refresh_count, 1);
    assert!(
        st.next_refresh_at_ms.is_some(),
        "the next refresh is planned"
    );
    let record = as_persisted(&f);
    assert_eq!(
        record.refresh_token.as_ref().map(|t| t.expose()),
        Some("rt-1")
    );
    assert_eq!(record.in_flight_since_ms, None, "the mark is cleared");
}

#[tokio::test]
async fn concurrent_refreshes_share_one_request() {
    let server = MockServer::start().await;
    mount(
        &server,
        answer(r#"{"access_token":"at-1","expires_in":3600}"#)
            .set_delay(Duration::from_millis(200)),
    )
    .await;
    let f = with_session(&server, "").await;
    let engine = f.state.engine().clone();
    let (a, b) = tokio::join!(engine.refresh_now("s", WAIT), engine.refresh_now("s", WAIT));
    a.expect("first");
    b.expect("second");
    assert_eq!(server.received_requests().await.map_or(0, |r| r.len()), 1);
}

#[tokio::test]
async fn a_retryable_failure_backs_off_and_a_get_does_not_start_one_before_the_retry() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(503).insert_header("Retry-After", "90"),
    )
    .await;
    let f = with_session(&server, "").await;
    let err = f
        .state
        .engine()
        .refresh_now("s", WAIT)
        .await
        .expect_err("503");
    assert_eq!(err.code, ErrorCode::RefreshFailed);
    let st = status(&f);
    assert_eq!(st.state, SessionState::Backoff);
    assert_eq!(st.consecutive_failures, 1);
    let retry_at = st.next_refresh_at_ms.expect("a retry is planned");
    assert!(
        retry_at >= f.state.clock().now_ms() + 85_000,
        "Retry-After is honoured"
    );
    // A get that would like a fresher token does not start a refresh before the retry.
    let token = f
        .state
        .engine()
        .get(&GetRequest {
            name: "s".into(),
            min_valid_ms: 7_200_000,
            wait_ms: 1_000,
            include_id_token: false,
            target: TokenTarget::default(),
        })
        .await
        .expect("the cached token is served");
    assert!(!token.meets_min_valid);
    assert_eq!(server.received_requests().await.map_or(0, |r| r.len()), 1);
}

#[tokio::test]
async fn invalid_grant_needs_a_login_and_the_verdict_is_persisted() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(400).set_body_string(r#"{"error":"invalid_grant"}"#),
    )
    .await;
    let f = with_session(&server, "").await;
    let err = f
        .state
        .engine()
        .refresh_now("s", WAIT)
        .await
        .expect_err("refused");
    assert_eq!(err.code, ErrorCode::NeedsLogin);
    assert_eq!(status(&f).state, SessionState::NeedsLogin);
    let record = as_persisted(&f);
    assert!(
        record.refresh_token.is_none(),
        "the dead refresh token is dropped"
    );
    assert!(record.terminal.is_some(), "a restart knows");
    // Nothing is retried.
    let again = f.state.engine().refresh_now("s", WAIT).await;
    assert_eq!(again.expect_err("terminal").code, ErrorCode::NeedsLogin);
    assert_eq!(server.received_requests().await.map_or(0, |r| r.len()), 1);
}

#[tokio::test]
async fn a_gateway_error_leaves_the_refresh_unsettled_with_its_mark_in_the_store() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(502)).await;
    let f = with_session(&server, "").await;
    let _ = f.state.engine().refresh_now("s", WAIT).await;
    assert_eq!(status(&f).state, SessionState::Backoff);
    assert!(
        as_persisted(&f).in_flight_since_ms.is_some(),
        "the provider may have rotated: the mark stays"
    );
}

#[tokio::test]
async fn a_client_rejection_needs_config_and_a_reload_tries_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(401).set_body_string(r#"{"error":"invalid_client"}"#))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount(
        &server,
        answer(r#"{"access_token":"at-1","expires_in":3600}"#),
    )
    .await;
    let f = with_session(&server, "").await;
    let err = f
        .state
        .engine()
        .refresh_now("s", WAIT)
        .await
        .expect_err("rejected");
    assert_eq!(err.code, ErrorCode::NeedsConfig);
    assert_eq!(status(&f).state, SessionState::NeedsConfig);
    f.reload_with(&provider(&server, "")).expect("reloads");
    let st = status(&f);
    assert_eq!(st.state, SessionState::Valid, "tried again");
    assert!(st.next_refresh_at_ms.is_some(), "and planned");
    assert!(as_persisted(&f).terminal.is_none());
}

#[tokio::test]
async fn an_attempt_keeps_the_settings_it_started_with() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("X-Gen", "1"))
        .and(body_string_contains("refresh_token=rt-0"))
        .respond_with(answer(r#"{"access_token":"at-1","expires_in":3600}"#))
        .mount(&server)
        .await;
    let gen1 = "[sessions.s]\nheaders = { \"X-Gen\" = \"1\" }\n";
    let f = with_session(&server, gen1).await;
    // Hold every permit of the provider so the attempt waits, then reload in between.
    let snapshot = f.state.settings();
    let semaphore = snapshot
        .providers
        .get("p")
        .expect("provider")
        .semaphore
        .clone();
    let held = semaphore
        .acquire_many(u32::try_from(semaphore.available_permits()).expect("permits"))
        .await
        .expect("permits");
    let engine = f.state.engine().clone();
    let refresh = tokio::spawn(async move { engine.refresh_now("s", WAIT).await });
    tokio::task::yield_now().await;
    f.reload_with(&provider(
        &server,
        "[sessions.s]\nheaders = { \"X-Gen\" = \"2\" }\n",
    ))
    .expect("reloads");
    drop(held);
    refresh
        .await
        .expect("task")
        .expect("sent with the headers of the generation it started with");
}

#[tokio::test]
async fn a_session_removed_during_its_refresh_is_not_brought_back() {
    let server = MockServer::start().await;
    mount(
        &server,
        answer(r#"{"access_token":"at-1","expires_in":3600}"#)
            .set_delay(Duration::from_millis(300)),
    )
    .await;
    let f = with_session(&server, "").await;
    let engine = f.state.engine().clone();
    let refresh = tokio::spawn(async move { engine.refresh_now("s", WAIT).await });
    // Wait until the request is at the mock, then remove the session.
    for _ in 0..200 {
        if server
            .received_requests()
            .await
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f.state.engine().remove("s", None).await.expect("removed");
    let _ = refresh.await.expect("task");
    assert!(f.state.sessions().find("s").is_none(), "not brought back");
}
