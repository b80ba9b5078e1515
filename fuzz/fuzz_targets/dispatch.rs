//! Arbitrary requests dispatched against a real in-process daemon state (store opened on a
//! temp state dir, providers pointing at 127.0.0.1:9 so nothing reaches the network).
//!
//! The input is a stream of frames, each payload decoded as a `Request` (payloads that do not
//! decode are skipped, as the daemon answers them `invalid` without dispatching). Every
//! request runs through `handlers::dispatch` as the owner, or, when the first input byte is
//! odd, as a uid admitted only for `get`. Waits in the requests are capped so an input
//! cannot stall the fuzzer; a dispatch that still takes longer than `HANG` is a finding.
//!
//! Before each input the state is reset to one session, `work`, with a valid token, so
//! inputs replay the same way.

#![no_main]

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use tokd_daemon::DaemonState;
use tokd_daemon::handlers::{Caller, Reply, Writer, dispatch};
use tokd_daemon::server::access::Peer;
use tokd_daemon::testing::Fixture;
use tokd_protocol::frame::{DEFAULT_MAX_FRAME, decode_frame, decode_payload};
use tokd_protocol::verbs::add::AddRequest;
use tokd_protocol::verbs::list::ListRequest;
use tokd_protocol::verbs::login::LoginMethod;
use tokd_protocol::verbs::remove::RemoveRequest;
use tokd_protocol::{Request, Response, Secret};

/// Longest a capped request may wait for a refresh.
const MAX_WAIT_MS: u64 = 20;
/// How long a streamed answer (watch, login) is read before the client "hangs up".
const STREAM_READ: Duration = Duration::from_millis(20);
/// How many frames of a stream are read at most.
const STREAM_ITEMS: usize = 4;
/// A dispatch taking longer than this is reported as a hang.
const HANG: Duration = Duration::from_secs(10);
/// Requests per input.
const MAX_REQUESTS: usize = 16;

const CONFIG: &str = r#"
[providers.corp]
token_endpoint = "http://127.0.0.1:9/token"
device_authorization_endpoint = "http://127.0.0.1:9/device"
authorization_endpoint = "http://127.0.0.1:9/authorize"
revocation_endpoint = "http://127.0.0.1:9/revoke"
client_id = "fuzz"
client_secret = "fuzz-client-secret"
scope = "openid offline_access"
request_timeout = "1s"

[providers.machines]
token_endpoint = "http://127.0.0.1:9/token"
grant = "client_credentials"
client_id = "fuzz"
client_secret = "fuzz-client-secret"
request_timeout = "1s"

[providers.chat]
kind = "json"
refresh_url = "http://127.0.0.1:9/refresh"
request = { refreshToken = "{refresh_token}", user_id = "{attr.user_id}" }
response = { access_token = "token", refresh_token = "refreshToken", expires_at = "expiresAt" }
expires_at_unit = "ms"
request_timeout = "1s"
"#;

const SEED_SESSION: &str = "work";
/// The secrets the daemon holds: the seed session's tokens and the client secret.
const SECRETS: [&str; 3] = ["fuzz-at", "fuzz-rt", "fuzz-client-secret"];
const SEED_TOKEN: &str = r#"{"access_token":"fuzz-at","token_type":"Bearer","expires_in":3600,"refresh_token":"fuzz-rt"}"#;

struct World {
    runtime: tokio::runtime::Runtime,
    state: Arc<DaemonState>,
    owner: Peer,
    guest: Peer,
    /// One end of a socket pair: the connection the requests "came on".
    socket: UnixStream,
    _peer_end: UnixStream,
    _fixture: Fixture,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        // tmpfs where there is one: the reset writes the store on every input.
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        remove_stale_dirs(&base);
        let fixture = Fixture::open(
            Some(&base),
            &format!("{DIR_PREFIX}{}-", std::process::id()),
            CONFIG,
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let state = fixture.state.clone();
        // The background refresh scheduler runs, as in the daemon.
        runtime.block_on(async { state.engine().start(None) });
        let (socket, peer_end) = UnixStream::pair().expect("socket pair");
        let uid = tokd_protocol::paths::current_uid();
        let pid = i32::try_from(std::process::id()).ok();
        World {
            runtime,
            state,
            owner: Peer {
                uid,
                pid,
                owner: true,
                start_time: None,
            },
            guest: Peer {
                uid: uid.wrapping_add(1),
                pid,
                owner: false,
                start_time: None,
            },
            socket,
            _peer_end: peer_end,
            _fixture: fixture,
        }
    })
}

/// State dirs are named `tokd-fuzz-PID-…`.
const DIR_PREFIX: &str = "tokd-fuzz-";

/// libFuzzer ends the process with `exit`, so the temp dir of a finished run is never
/// dropped: remove those of processes that are gone.
fn remove_stale_dirs(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let requests = requests(stream);
    if requests.is_empty() {
        return;
    }
    let w = world();
    let peer = if control & 1 == 0 { &w.owner } else { &w.guest };
    w.runtime.block_on(async {
        reset(w).await;
        for (request, echoes) in requests {
            let verb = request.verb();
            let Ok(()) = tokio::time::timeout(HANG, run(w, peer, request, echoes)).await else {
                panic!("dispatching a {verb} request took more than {HANG:?}");
            };
        }
    });
});

/// The requests in the input's frames, waits capped, each with whether it carries one of
/// the seed secrets itself (an error message may then quote it back).
fn requests(mut stream: &[u8]) -> Vec<(Request, bool)> {
    let mut out = Vec::new();
    while out.len() < MAX_REQUESTS {
        let Ok(Some((start, end))) = decode_frame(stream, DEFAULT_MAX_FRAME) else {
            break;
        };
        let payload = &stream[start..end];
        if let Ok(request) = decode_payload::<Request>(payload) {
            let echoes = SECRETS
                .iter()
                .any(|s| payload.windows(s.len()).any(|w| w == s.as_bytes()));
            out.push((cap(request), echoes));
        }
        stream = &stream[end..];
    }
    out
}

fn cap(request: Request) -> Request {
    match request {
        Request::Get(mut r) => {
            r.wait_ms = r.wait_ms.min(MAX_WAIT_MS);
            Request::Get(r)
        }
        Request::Get2(mut r) => {
            r.wait_ms = r.wait_ms.min(MAX_WAIT_MS);
            Request::Get2(r)
        }
        Request::Refresh(mut r) => {
            r.wait_ms = r.wait_ms.min(MAX_WAIT_MS);
            Request::Refresh(r)
        }
        Request::Login2(mut r) => {
            if let LoginMethod::Browser { open_browser } = &mut r.method {
                *open_browser = false;
            }
            r.timeout_ms = r.timeout_ms.map(|t| t.min(MAX_WAIT_MS));
            Request::Login2(r)
        }
        // The browser flow waits for a redirect to a loopback port; the stream is dropped
        // after STREAM_READ, which cancels it. Nothing here opens a browser (the client does).
        Request::Login(mut r) => {
            if let LoginMethod::Browser { open_browser } = &mut r.method {
                *open_browser = false;
            }
            Request::Login(r)
        }
        other => other,
    }
}

async fn run(w: &World, peer: &Peer, request: Request, echoes: bool) {
    let from = Caller {
        peer,
        writer: &Writer::Unknown,
        socket: w.socket.as_fd(),
    };
    match dispatch(request, &w.state, from).await {
        Reply::One(response) => check_one(&response, echoes),
        Reply::Stream(mut stream) | Reply::Conversation(mut stream, _) => {
            for _ in 0..STREAM_ITEMS {
                match tokio::time::timeout(STREAM_READ, stream.next()).await {
                    Ok(Some(response)) => check_one(&response, echoes),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}

/// Every answer must be sendable: it encodes, and within the daemon's frame limit (or the
/// connection layer's `too_large` fallback applies, which is fine too).
fn check_one(response: &Response, echoes: bool) {
    let payload = tokd_protocol::frame::encode_payload(response).expect("an answer encodes");
    let back: Response = decode_payload(&payload).expect("an answer decodes");
    assert_eq!(&back, response);
    if let Response::Error(e) = response
        && !echoes
    {
        // Error messages are shown to users and logged: never a secret the daemon holds.
        for secret in SECRETS {
            assert!(
                !e.message.contains(secret),
                "an error message shows a secret: {}",
                e.message
            );
        }
    }
}

/// Back to one session, `work`, with a fresh token.
async fn reset(w: &World) {
    let from = Caller {
        peer: &w.owner,
        writer: &Writer::Unknown,
        socket: w.socket.as_fd(),
    };
    let Reply::One(Response::List(list)) =
        dispatch(Request::List(ListRequest {}), &w.state, from).await
    else {
        panic!("list did not answer a list");
    };
    for entry in list.sessions {
        let _ = dispatch(
            Request::Remove(RemoveRequest { name: entry.name }),
            &w.state,
            from,
        )
        .await;
    }
    let add = Request::Add(AddRequest {
        name: SEED_SESSION.to_owned(),
        provider: "corp".to_owned(),
        attrs: Vec::new(),
        replace: true,
        token_response: Some(Secret::new(SEED_TOKEN)),
    });
    match dispatch(add, &w.state, from).await {
        Reply::One(Response::Added(_) | Response::Added2(_)) => {}
        Reply::One(other) => panic!("the seed session was not added: {other:?}"),
        Reply::Stream(_) | Reply::Conversation(..) => panic!("add answered a stream"),
    }
}
