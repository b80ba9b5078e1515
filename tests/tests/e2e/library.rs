//! The client library for long-running programs: `tokd::Agent` and `tokd::blocking::Agent`
//! reconnect across daemon restarts and crashes, `Watch` resumes with a `resync`, retries
//! are bounded and never replay a request that may have taken effect, and
//! `tokd::reqwest::BearerClient` retries a `401` exactly once with a refreshed token.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokd::protocol::frame::{
    DEFAULT_MAX_FRAME, decode_payload, encode_frame, encode_message, read_frame_blocking,
};
use tokd::protocol::paths::{SocketPath, SocketSource};
use tokd::protocol::verbs::ping::PongReply;
use tokd::protocol::verbs::watch::{WatchEvent, WatchEventKind};
use tokd::protocol::{ErrorCode, HelloAck, Request, Response, Secret};
use tokd::reqwest::BearerClient;
use tokd::{Agent, ClientError, RetryPolicy, Watch};
use tokd_e2e::idp::TestIdp;
use tokd_e2e::{TestDaemon, idp_provider, token_response, wait_for};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// How long a single step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Awaits `fut`, failing the test if it takes longer than [`STEP`].
async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("the step finished in time")
}

fn socket_of(d: &TestDaemon) -> SocketPath {
    d.socket_path()
}

/// Generous, so that a loaded machine restarting a daemon never runs out of budget.
fn patient() -> RetryPolicy {
    RetryPolicy::default().with_budget(Duration::from_secs(60))
}

/// Enough for a stand-in daemon that is always there, short if a wrong retry loops on it.
fn short() -> RetryPolicy {
    RetryPolicy::default().with_budget(Duration::from_secs(5))
}

/// Quick, for the tests that expect the retries to give up.
fn impatient() -> RetryPolicy {
    RetryPolicy::default().with_budget(Duration::from_millis(300))
}

fn agent(d: &TestDaemon) -> Agent {
    Agent::with_socket(socket_of(d))
        .retry_policy(patient())
        .client_name("tokd-e2e-library")
}

const MIN_VALID: Duration = Duration::from_secs(10);

#[test]
fn token_survives_a_restart_and_a_crash_on_the_same_agent() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.add("s", &token_response("at-one", "rt-one", 3600));
    let rt = runtime();
    let mut agent = agent(&d);

    let first = rt.block_on(within(agent.token("s", MIN_VALID)));
    assert_eq!(first.expect("token").access_token.expose(), "at-one");
    let before = rt.block_on(within(agent.ping())).expect("ping").pid;

    // A daemon answer is returned as it is, not retried, and the connection stays.
    let missing = rt.block_on(within(agent.token("missing", MIN_VALID)));
    assert!(
        matches!(&missing, Err(ClientError::Daemon(e)) if e.code == ErrorCode::NotFound),
        "{missing:?}"
    );
    assert!(agent.is_connected());

    // A clean restart: the old connection is dead, the same agent carries on.
    d.restart().expect("restart");
    let again = rt.block_on(within(agent.token("s", MIN_VALID)));
    assert_eq!(
        again.expect("token after a restart").access_token.expose(),
        "at-one"
    );
    let after = rt.block_on(within(agent.ping())).expect("ping").pid;
    assert_ne!(before, after, "a new daemon answered");
    assert_eq!(Some(after), d.pid());

    // A crash, and the call is made while the daemon is down: it waits for the new one.
    d.kill();
    let pending = rt.spawn(async move {
        let token = agent.token("s", MIN_VALID).await;
        (agent, token)
    });
    d.start_again().expect("start again");
    let (mut agent, token) = rt.block_on(within(pending)).expect("task");
    assert_eq!(
        token.expect("token after a crash").access_token.expose(),
        "at-one"
    );
    assert_eq!(
        Some(rt.block_on(within(agent.ping())).expect("ping").pid),
        d.pid()
    );
}

async fn next_event(watch: &mut Watch) -> WatchEvent {
    within(watch.next()).await.expect("an event")
}

#[test]
fn watch_resumes_with_a_resync_after_a_restart_then_delivers_live_events() {
    let mut d = TestDaemon::start().expect("daemon starts");
    let rt = runtime();
    let agent = agent(&d);
    // `watch` returns once subscribed: the adds below cannot be missed.
    let mut watch = rt.block_on(within(agent.watch())).expect("subscribed");

    d.add("before", &token_response("at-b", "rt-b", 3600));
    let event = rt.block_on(next_event(&mut watch));
    assert_eq!(event.kind, WatchEventKind::Added);
    assert_eq!(event.session.as_deref(), Some("before"));

    d.restart().expect("restart");
    let event = rt.block_on(next_event(&mut watch));
    assert_eq!(event.kind, WatchEventKind::Resync, "{event:?}");
    assert_eq!(event.session, None);

    // Resubscribed before the resync was yielded: a live event after it arrives, read here
    // through the `Stream` implementation.
    d.add("after", &token_response("at-a", "rt-a", 3600));
    let event = rt
        .block_on(within(futures_util::StreamExt::next(&mut watch)))
        .expect("the stream goes on")
        .expect("an event");
    assert_eq!(event.kind, WatchEventKind::Added, "{event:?}");
    assert_eq!(event.session.as_deref(), Some("after"));
}

#[test]
fn blocking_agent_reconnects_after_a_restart_and_a_crash() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.add("s", &token_response("at-one", "rt-one", 3600));
    let mut agent = tokd::blocking::Agent::with_socket(socket_of(&d)).retry_policy(patient());

    let token = agent.token("s", MIN_VALID).expect("token");
    assert_eq!(token.access_token.expose(), "at-one");
    let status = agent.status(Some("s")).expect("status");
    assert_eq!(status.sessions.len(), 1);
    assert_eq!(status.sessions[0].name, "s");
    let before = status.daemon.pid;

    d.restart().expect("restart");
    let token = agent.token("s", MIN_VALID).expect("token after a restart");
    assert_eq!(token.access_token.expose(), "at-one");
    let after = agent.status(None).expect("status").daemon.pid;
    assert_ne!(before, after, "a new daemon answered");

    // Crash, then ask from another thread while the daemon is down.
    d.kill();
    let asking = std::thread::spawn(move || {
        let token = agent.token("s", MIN_VALID);
        (agent, token)
    });
    d.start_again().expect("start again");
    let (mut agent, token) = asking.join().expect("thread");
    assert_eq!(
        token.expect("token after a crash").access_token.expose(),
        "at-one"
    );
    assert_eq!(
        agent.status(None).expect("status").daemon.pid,
        d.pid().expect("running")
    );
}

fn assert_not_running<T: std::fmt::Debug>(result: Result<T, ClientError>, d: &TestDaemon) {
    let e = result.expect_err("the daemon is down");
    assert!(
        matches!(&e, ClientError::NotRunning { path, .. } if *path == d.socket()),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 3);
    assert!(e.to_string().contains("not running"), "{e}");
}

#[test]
fn bounded_retry_gives_up_with_not_running_when_the_daemon_stays_down() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.add("s", &token_response("at-one", "rt-one", 3600));
    let rt = runtime();
    let mut connected = Agent::with_socket(socket_of(&d)).retry_policy(impatient());
    rt.block_on(within(connected.token("s", MIN_VALID)))
        .expect("token");
    let mut watch = rt.block_on(within(connected.watch())).expect("subscribed");
    let mut blocking = tokd::blocking::Agent::with_socket(socket_of(&d)).retry_policy(impatient());
    blocking.token("s", MIN_VALID).expect("token");

    d.kill();
    // An agent that was connected, one that never was, the blocking one, and the watch.
    assert_not_running(rt.block_on(within(connected.token("s", MIN_VALID))), &d);
    let mut never = Agent::with_socket(socket_of(&d)).retry_policy(impatient());
    assert_not_running(rt.block_on(within(never.ping())), &d);
    assert_not_running(blocking.token("s", MIN_VALID), &d);
    assert_not_running(rt.block_on(within(watch.next())), &d);

    // Giving up is not the end: once the daemon is back, the same values work again, and
    // the watch first says `resync`.
    d.start_again().expect("start again");
    let token = rt.block_on(within(connected.token("s", MIN_VALID)));
    assert_eq!(token.expect("token").access_token.expose(), "at-one");
    assert_eq!(
        blocking
            .token("s", MIN_VALID)
            .expect("token")
            .access_token
            .expose(),
        "at-one"
    );
    let event = rt.block_on(next_event(&mut watch));
    assert_eq!(event.kind, WatchEventKind::Resync);
}

/// What a [`FakeDaemon`] does with the `n`th request (counted from 0) it reads: answer it, or
/// hang up without answering.
type Script = dyn FnMut(usize, &Request) -> Option<Response> + Send;

/// A stand-in daemon that greets every connection and then follows a script, recording each
/// request as (connection number, verb). Lets a test break a connection exactly between a
/// request and its answer.
struct FakeDaemon {
    _dir: tempfile::TempDir,
    socket: SocketPath,
    seen: Arc<Mutex<Vec<(usize, &'static str)>>>,
}

impl FakeDaemon {
    fn start(mut script: Box<Script>) -> FakeDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        // Serves one connection at a time, as the agents use one; the thread ends with the
        // test process.
        std::thread::spawn(move || {
            let mut requests = 0;
            for (conn, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                if read_frame_blocking(&mut stream, DEFAULT_MAX_FRAME).is_err() {
                    continue;
                }
                let mut ack = Vec::new();
                encode_frame(
                    &HelloAck::accept("fake").encode(),
                    DEFAULT_MAX_FRAME,
                    &mut ack,
                )
                .expect("ack");
                if stream.write_all(&ack).is_err() {
                    continue;
                }
                while let Ok(frame) = read_frame_blocking(&mut stream, DEFAULT_MAX_FRAME) {
                    let request: Request = decode_payload(&frame).expect("a request");
                    log.lock().expect("log").push((conn, request.verb()));
                    let answer = script(requests, &request);
                    requests += 1;
                    let Some(answer) = answer else { break };
                    let mut out = Vec::new();
                    encode_message(&answer, DEFAULT_MAX_FRAME, &mut out).expect("encode");
                    if stream.write_all(&out).is_err() {
                        break;
                    }
                }
            }
        });
        FakeDaemon {
            socket: SocketPath {
                path,
                source: SocketSource::Flag,
            },
            _dir: dir,
            seen,
        }
    }

    fn seen(&self) -> Vec<(usize, &'static str)> {
        self.seen.lock().expect("log").clone()
    }
}

fn pong() -> Response {
    Response::Pong(PongReply {
        daemon_version: "fake".into(),
        pid: 1,
    })
}

fn fake_token() -> Response {
    Response::Token(tokd_protocol::v0::TokenReply {
        access_token: Secret::new("fake-token"),
        token_type: "Bearer".into(),
        expires_at_ms: i64::MAX,
        id_token: None,
        meets_min_valid: true,
    })
}

#[test]
fn one_connection_serves_many_calls_and_only_reads_are_replayed() {
    let rt = runtime();

    // Calls share one connection.
    let fake = FakeDaemon::start(Box::new(|_, _| Some(pong())));
    let mut agent = Agent::with_socket(fake.socket.clone()).retry_policy(short());
    for _ in 0..3 {
        rt.block_on(within(agent.ping())).expect("pong");
    }
    assert_eq!(fake.seen(), [(0, "ping"), (0, "ping"), (0, "ping")]);

    // A `get` whose connection breaks before the answer is asked again, on a new connection.
    let fake = FakeDaemon::start(Box::new(|n, _| (n > 0).then(fake_token)));
    let mut agent = Agent::with_socket(fake.socket.clone()).retry_policy(short());
    let token = rt.block_on(within(agent.token("s", MIN_VALID)));
    assert_eq!(token.expect("token").access_token.expose(), "fake-token");
    assert_eq!(fake.seen(), [(0, "get"), (1, "get")]);

    // Same for the blocking agent.
    let fake = FakeDaemon::start(Box::new(|n, _| (n > 0).then(fake_token)));
    let mut blocking =
        tokd::blocking::Agent::with_socket(fake.socket.clone()).retry_policy(short());
    let token = blocking.token("s", MIN_VALID).expect("token");
    assert_eq!(token.access_token.expose(), "fake-token");
    assert_eq!(fake.seen(), [(0, "get"), (1, "get")]);

    // A `refresh` or a `remove` may have taken effect: never sent twice, reported instead.
    let fake = FakeDaemon::start(Box::new(|_, _| None));
    let mut agent = Agent::with_socket(fake.socket.clone()).retry_policy(short());
    let refresh = rt.block_on(within(agent.refresh("s")));
    assert!(
        matches!(
            &refresh,
            Err(ClientError::Interrupted {
                verb: "refresh",
                ..
            })
        ),
        "{refresh:?}"
    );
    let remove = rt.block_on(within(agent.remove("s")));
    assert!(
        matches!(
            &remove,
            Err(ClientError::Interrupted { verb: "remove", .. })
        ),
        "{remove:?}"
    );
    let mut blocking =
        tokd::blocking::Agent::with_socket(fake.socket.clone()).retry_policy(short());
    let refresh = blocking.refresh("s");
    assert!(
        matches!(
            &refresh,
            Err(ClientError::Interrupted {
                verb: "refresh",
                ..
            })
        ),
        "{refresh:?}"
    );
    assert_eq!(fake.seen(), [(0, "refresh"), (1, "remove"), (2, "refresh")]);
}

fn idp() -> TestIdp {
    let idp = TestIdp::start().expect("the test provider starts");
    // Long-lived tokens: nothing refreshes unless a test asks.
    idp.set_access_ttl(600).expect("ttl");
    idp
}

fn mint(idp: &TestIdp) -> String {
    idp.mint("tokd-test", "openid offline_access api")
        .expect("mint")
}

#[test]
fn a_refresh_interrupted_by_a_crash_is_not_sent_again() {
    let idp = idp();
    let mut d = TestDaemon::start_with(&idp_provider("idp", idp.issuer(), "")).expect("daemon");
    d.add_as("s", "idp", &mint(&idp));
    let rt = runtime();
    let mut agent = agent(&d);
    rt.block_on(within(agent.ping())).expect("connected");

    // The refresh reaches the provider, which holds it; the daemon dies meanwhile and a new
    // one is up at once, so a client that replayed the refresh would get an answer.
    idp.set_token_delay(3000).expect("delay");
    let pending = rt.spawn(async move {
        let refreshed = agent.refresh("s").await;
        (agent, refreshed)
    });
    wait_for(STEP, "the refresh at the provider", || {
        (idp.stats().expect("stats").in_flight > 0).then_some(())
    });
    d.kill();
    idp.set_token_delay(0).expect("delay");
    d.start_again().expect("start again");
    let (mut agent, refreshed) = rt.block_on(within(pending)).expect("task");
    match refreshed {
        Err(ClientError::Interrupted { verb, source }) => {
            assert_eq!(verb, "refresh");
            assert!(source.is_transport(), "{source:?}");
        }
        other => panic!("expected Interrupted, got {other:?}"),
    }
    // The agent itself carries on with the new daemon.
    assert_eq!(
        Some(rt.block_on(within(agent.ping())).expect("ping").pid),
        d.pid()
    );
}

fn bearer_of(request: &wiremock::Request) -> String {
    request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("a bearer")
        .to_owned()
}

#[test]
fn reqwest_helper_retries_a_401_once_with_a_refreshed_token() {
    let idp = idp();
    let d = TestDaemon::start_with(&idp_provider("idp", idp.issuer(), "")).expect("daemon");
    d.add_as("api", "idp", &mint(&idp));
    d.add_as("api2", "idp", &mint(&idp));
    let rt = runtime();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut agent = agent(&d);
    let stale = rt
        .block_on(within(agent.token("api", MIN_VALID)))
        .expect("token")
        .access_token;

    // The API refuses the token tokd holds now and accepts any other.
    let server = rt.block_on(MockServer::start());
    rt.block_on(
        Mock::given(method("GET"))
            .and(path("/v1/me"))
            .and(header(
                "authorization",
                format!("Bearer {}", stale.expose()),
            ))
            .respond_with(ResponseTemplate::new(401))
            .with_priority(1)
            .mount(&server),
    );
    rt.block_on(
        Mock::given(method("GET"))
            .and(path("/v1/me"))
            .respond_with(ResponseTemplate::new(200).set_body_string("hello alice"))
            .mount(&server),
    );
    idp.reset_stats().expect("reset");

    let api = BearerClient::new(reqwest::Client::new(), agent, "api");
    let url = format!("{}/v1/me", server.uri());
    let response = rt.block_on(within(api.send(api.get(&url)))).expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(
        rt.block_on(within(response.text())).expect("body"),
        "hello alice"
    );

    let seen = rt.block_on(server.received_requests()).expect("recording");
    assert_eq!(seen.len(), 2, "one refused request, one retry");
    assert_eq!(bearer_of(&seen[0]), stale.expose());
    let fresh = bearer_of(&seen[1]);
    assert_ne!(fresh, stale.expose());
    // The retry carried the token tokd serves now, from one forced refresh at the provider.
    let now = rt
        .block_on(within(async {
            api.agent().lock().await.token("api", MIN_VALID).await
        }))
        .expect("token")
        .access_token;
    assert_eq!(now.expose(), fresh);
    assert_eq!(idp.stats().expect("stats").refresh_requests, 1);
    assert!(idp.is_active(&fresh).expect("introspect"));

    // An API that refuses every token: the second 401 is the answer, with no third try.
    // The retry repeats the body, too.
    let refusing = rt.block_on(MockServer::start());
    rt.block_on(
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&refusing),
    );
    let api2 = BearerClient::with_shared_agent(reqwest::Client::new(), api.agent().clone(), "api2");
    let response = rt
        .block_on(within(
            api2.send(api2.post(refusing.uri()).body("the payload")),
        ))
        .expect("sent");
    assert_eq!(response.status(), 401);
    let seen = rt
        .block_on(refusing.received_requests())
        .expect("recording");
    assert_eq!(seen.len(), 2, "exactly one retry");
    assert_ne!(
        bearer_of(&seen[0]),
        bearer_of(&seen[1]),
        "a refreshed token"
    );
    assert!(seen.iter().all(|r| r.body == b"the payload"));
}
