//! Hostile peers against one live daemon: property tests (proptest) that open raw socket
//! connections and send random bytes before the hello, random frames after it, truncated
//! bodies, mutated requests and huge length fields. After every case a well-formed client
//! must still get its token promptly, the daemon must be alive, and its log must show no
//! panic. Every answer the daemon gives is checked against what it must be for those bytes.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokd_e2e::{TestDaemon, greet, token_response};
use tokd_protocol::frame::{
    DEFAULT_MAX_FRAME, HEADER_LEN, MAX_RESPONSE_FRAME, decode_frame, decode_payload, encode_frame,
    encode_payload, read_frame_blocking,
};
use tokd_protocol::verbs::{add, list, logout, ping, refresh, remove, status};
use tokd_protocol::{ErrorCode, Hello, HelloAck, PROTOCOL_MAJOR, ProtocolError, Request, Response};

/// Cases per property (six properties share one daemon).
const CASES: u32 = 200;
/// The session every case checks afterwards, and its access token.
const SESSION: &str = "work";
const TOKEN: &str = "at-fuzz-work";
/// How long any answer may take: a daemon that makes a client wait this long has a problem.
const PROMPT: Duration = Duration::from_secs(5);

type Outcome = Result<(), TestCaseError>;

macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($fmt)+)));
        }
    };
}

#[test]
fn hostile_bytes_never_stop_the_daemon_or_a_good_client() {
    let d = TestDaemon::start().expect("daemon starts");
    d.add(SESSION, &token_response(TOKEN, "rt-fuzz-work", 3600));
    assert_eq!(d.get(SESSION, &[]).as_deref(), Ok(TOKEN));

    property(&d, "random bytes before the hello", bytes_before_hello());
    property(&d, "a hello, then a random byte stream", random_stream());
    property(&d, "a hello, then random frames", random_frames());
    property(&d, "a truncated frame body, then close", truncated_body());
    property(&d, "mutated well-formed requests", mutated_request());
    property(&d, "huge length fields", huge_length());

    // The real client, too, after everything.
    assert_eq!(d.get(SESSION, &[]).as_deref(), Ok(TOKEN));
    let log = d.log();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
}

/// Runs `CASES` cases of one property, each followed by the health check.
fn property<S: Strategy>(d: &TestDaemon, name: &str, strategy: S)
where
    S::Value: Sendable,
{
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |input| {
        input.send(d)?;
        healthy(d)
    });
    if let Err(e) = result {
        panic!("property {name:?} failed: {e}\ndaemon log:\n{}", d.log());
    }
}

/// One generated case: what to send, and what to check about the answers.
trait Sendable: std::fmt::Debug {
    fn send(&self, d: &TestDaemon) -> Outcome;
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn connect(d: &TestDaemon) -> UnixStream {
    let s = UnixStream::connect(d.socket()).expect("connect");
    s.set_read_timeout(Some(PROMPT)).expect("read timeout");
    s.set_write_timeout(Some(PROMPT)).expect("write timeout");
    s
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(payload, usize::MAX, &mut out).expect("frame");
    out
}

/// A connection that has said hello and read the daemon's acceptance (within `PROMPT`).
fn greeted(d: &TestDaemon) -> Result<UnixStream, TestCaseError> {
    let mut s = connect(d);
    let ack = greet(&mut s).map_err(|e| TestCaseError::fail(format!("saying hello: {e:#}")))?;
    check!(ack.outcome.is_ok(), "hello refused: {:?}", ack.outcome);
    Ok(s)
}

/// Writes what it can: the daemon may hang up half way, which is its right.
fn write_some(s: &mut UnixStream, bytes: &[u8]) {
    let _ = s.write_all(bytes);
}

/// The next answer: `Some` response, `None` when the daemon closed the connection.
fn next_answer(s: &mut UnixStream) -> Result<Option<Response>, TestCaseError> {
    match read_frame_blocking(s, MAX_RESPONSE_FRAME) {
        Ok(payload) => decode_payload::<Response>(&payload)
            .map(Some)
            .map_err(|e| TestCaseError::fail(format!("the daemon sent an undecodable frame: {e}"))),
        Err(ProtocolError::Truncated) => Ok(None),
        Err(ProtocolError::Io(e)) if e.kind() == ErrorKind::ConnectionReset => Ok(None),
        Err(ProtocolError::Io(e))
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            Err(TestCaseError::fail(format!(
                "no answer and no hang-up within {PROMPT:?}: the connection hangs"
            )))
        }
        Err(e) => Err(TestCaseError::fail(format!("reading an answer: {e}"))),
    }
}

/// Everything until the daemon closes the connection (it must, within `PROMPT`).
fn read_until_closed(s: &mut UnixStream) -> Result<Vec<u8>, TestCaseError> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(all),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "the daemon did not close the connection within {PROMPT:?} ({e})"
                )));
            }
        }
    }
}

fn expect_ping(s: &mut UnixStream) -> Outcome {
    let mut out = Vec::new();
    encode_frame(
        &encode_payload(&Request::Ping(ping::PingRequest {})).expect("payload"),
        DEFAULT_MAX_FRAME,
        &mut out,
    )
    .expect("frame");
    s.write_all(&out)
        .map_err(|e| TestCaseError::fail(format!("the connection was dropped: {e}")))?;
    let answer = next_answer(s)?;
    check!(
        matches!(answer, Some(Response::Pong(_))),
        "the connection does not go on after a malformed request: {answer:?}"
    );
    Ok(())
}

/// A well-formed client gets its token promptly; the daemon is alive and has not panicked.
/// "Promptly" is the socket's read timeout (`PROMPT`): the hello and the get must each be
/// answered before it runs out (`greeted` and `next_answer` fail the case on a timeout), and
/// the answer must be the cached token, which needs no refresh to wait for.
fn healthy(d: &TestDaemon) -> Outcome {
    let mut s = greeted(d)?;
    let get = Request::Get(tokd_protocol::v0::GetRequest {
        name: SESSION.into(),
        min_valid_ms: 10_000,
        wait_ms: 1_000,
        include_id_token: false,
    });
    s.write_all(&frame(&encode_payload(&get).expect("payload")))
        .map_err(|e| TestCaseError::fail(format!("writing a get: {e}")))?;
    match next_answer(&mut s)? {
        Some(Response::Token2(t)) => {
            check!(
                t.access_token.expose() == TOKEN,
                "a good client got another token"
            );
            check!(
                t.meets_min_valid,
                "a good client was served a token that does not meet its min_valid: {t:?}"
            );
        }
        other => check!(false, "a good client was not served: {other:?}"),
    }
    check!(daemon_alive(d), "the daemon process is gone");
    check!(
        !d.log().contains("panicked"),
        "the daemon log shows a panic"
    );
    Ok(())
}

/// The daemon process exists and is not a zombie.
fn daemon_alive(d: &TestDaemon) -> bool {
    let Some(pid) = d.pid() else { return false };
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// Whether the daemon would take `payload` as a request that the tests must not send: a
/// stream (`watch`, `login`: the connection then belongs to it) or one that changes the
/// session every case checks.
fn unsendable(payload: &[u8]) -> bool {
    match decode_payload::<Request>(payload) {
        Ok(Request::Watch(_) | Request::Login(_)) => true,
        Ok(Request::Remove(r)) => r.name == SESSION,
        Ok(Request::Logout(r)) => r.name == SESSION,
        Ok(Request::Add(r)) => r.name == SESSION,
        _ => false,
    }
}

/// What the daemon must answer to one whole frame after the hello.
fn check_answer(payload: &[u8], answer: Option<Response>) -> Outcome {
    let Some(answer) = answer else {
        return Err(TestCaseError::fail(
            "the daemon hung up instead of answering a whole frame",
        ));
    };
    match decode_payload::<Request>(payload) {
        // Malformed: `invalid`, and the connection goes on.
        Err(_) => check!(
            matches!(&answer, Response::Error(e) if e.code == ErrorCode::Invalid),
            "a malformed request was answered {answer:?}"
        ),
        // Well-formed: a real answer, never a framing error.
        Ok(request) => check!(
            !matches!(&answer, Response::Error(e) if e.code == ErrorCode::TooLarge),
            "{request:?} was answered {answer:?}"
        ),
    }
    Ok(())
}

/// How a byte stream splits into frames, as the daemon reads it.
#[derive(Debug, PartialEq)]
enum Tail {
    /// Ends on a frame boundary.
    Clean,
    /// Ends inside a header or a body.
    Truncated,
    /// A header announces more than the limit.
    TooLarge,
}

fn split_frames(mut stream: &[u8]) -> (Vec<&[u8]>, Tail) {
    let mut frames = Vec::new();
    loop {
        match decode_frame(stream, DEFAULT_MAX_FRAME) {
            Ok(Some((start, end))) => {
                frames.push(&stream[start..end]);
                stream = &stream[end..];
            }
            Ok(None) if stream.is_empty() => return (frames, Tail::Clean),
            Ok(None) => return (frames, Tail::Truncated),
            Err(_) => return (frames, Tail::TooLarge),
        }
    }
}

/// Random bytes, biased towards what a decoder looks at: frame headers with small lengths,
/// the hello magic, bincode variant indices.
fn junk(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max),
        (0u32..64, prop::collection::vec(any::<u8>(), 0..max)).prop_map(|(len, rest)| {
            let mut v = len.to_be_bytes().to_vec();
            v.extend(rest);
            v
        }),
        (0u8..12, prop::collection::vec(any::<u8>(), 0..max)).prop_map(|(variant, rest)| {
            let mut v = vec![variant];
            v.extend(rest);
            v
        }),
    ]
}

// ---------------------------------------------------------------------------------------
// Random bytes before the hello.

#[derive(Debug)]
struct BeforeHello {
    bytes: Vec<u8>,
    /// Close without reading (an abrupt hang-up) instead of reading the answer.
    hang_up: bool,
}

fn bytes_before_hello() -> impl Strategy<Value = BeforeHello> {
    let hello = Hello::current("tokd-e2e-fuzz").encode();
    let mutated_hello = (
        prop::collection::vec((0..hello.len(), any::<u8>()), 1..4),
        0..=hello.len(),
    )
        .prop_map(move |(changes, cut)| {
            let mut h = hello.clone();
            for (i, b) in changes {
                h[i] = b;
            }
            h.truncate(cut.max(1));
            frame(&h)
        });
    (prop_oneof![junk(600), mutated_hello], any::<bool>())
        .prop_map(|(bytes, hang_up)| BeforeHello { bytes, hang_up })
}

impl Sendable for BeforeHello {
    fn send(&self, d: &TestDaemon) -> Outcome {
        let mut s = connect(d);
        write_some(&mut s, &self.bytes);
        if self.hang_up {
            return Ok(());
        }
        let _ = s.shutdown(Shutdown::Write);
        let answer = read_until_closed(&mut s)?;
        let (frames, _) = split_frames(&self.bytes);
        if let Some(first) = frames.first()
            && Hello::decode(first).is_ok_and(|h| h.major == PROTOCOL_MAJOR)
        {
            // A valid hello by chance: served like any client.
            return Ok(());
        }
        if self.bytes.is_empty() {
            check!(answer.is_empty(), "an empty connection was answered");
            return Ok(());
        }
        // Exactly one refusal in the fixed hello layout, then the hang-up.
        let mut reader = answer.as_slice();
        let ack = read_frame_blocking(&mut reader, DEFAULT_MAX_FRAME)
            .map_err(|e| TestCaseError::fail(format!("no refusal frame ({e}): {answer:?}")))?;
        check!(reader.is_empty(), "more than a refusal: {answer:?}");
        let ack = HelloAck::decode(&ack)
            .map_err(|e| TestCaseError::fail(format!("the refusal is not a hello answer: {e}")))?;
        check!(ack.outcome.is_err(), "junk was accepted as a hello");
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// A valid hello, then an arbitrary byte stream: the daemon answers each whole frame, then
// what the tail calls for, then hangs up.

#[derive(Debug)]
struct Stream {
    bytes: Vec<u8>,
}

fn random_stream() -> impl Strategy<Value = Stream> {
    prop::collection::vec(junk(80), 0..6).prop_map(|parts| Stream {
        bytes: parts.concat(),
    })
}

impl Sendable for Stream {
    fn send(&self, d: &TestDaemon) -> Outcome {
        let (frames, tail) = split_frames(&self.bytes);
        if frames.iter().any(|f| unsendable(f)) {
            return Err(TestCaseError::reject("a stream or a change of the session"));
        }
        let mut s = greeted(d)?;
        write_some(&mut s, &self.bytes);
        let _ = s.shutdown(Shutdown::Write);
        for payload in &frames {
            check_answer(payload, next_answer(&mut s)?)?;
        }
        let last = next_answer(&mut s)?;
        match tail {
            Tail::Clean => check!(last.is_none(), "an answer to nothing: {last:?}"),
            Tail::Truncated => check!(
                matches!(&last, Some(Response::Error(e)) if e.code == ErrorCode::Invalid),
                "a truncated frame was answered {last:?}"
            ),
            Tail::TooLarge => check!(
                matches!(&last, Some(Response::Error(e)) if e.code == ErrorCode::TooLarge),
                "an oversize frame was answered {last:?}"
            ),
        }
        check!(
            read_until_closed(&mut s)?.is_empty(),
            "more answers than frames"
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// A valid hello, then well-framed random payloads: each gets one answer, and the connection
// goes on.

#[derive(Debug)]
struct Frames {
    payloads: Vec<Vec<u8>>,
}

fn random_frames() -> impl Strategy<Value = Frames> {
    prop::collection::vec(junk(120), 1..8).prop_map(|payloads| Frames { payloads })
}

impl Sendable for Frames {
    fn send(&self, d: &TestDaemon) -> Outcome {
        let payloads: Vec<&Vec<u8>> = self.payloads.iter().filter(|p| !unsendable(p)).collect();
        let mut s = greeted(d)?;
        // All at once: answers come in request order.
        let out: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
        write_some(&mut s, &out);
        for payload in payloads {
            check_answer(payload, next_answer(&mut s)?)?;
        }
        expect_ping(&mut s)
    }
}

// ---------------------------------------------------------------------------------------
// A valid hello, a header, part of the body, then the client goes.

#[derive(Debug)]
struct Truncated {
    announced: u32,
    body: Vec<u8>,
    hang_up: bool,
}

fn truncated_body() -> impl Strategy<Value = Truncated> {
    (
        1u32..=65_536,
        prop::collection::vec(any::<u8>(), 0..512),
        any::<bool>(),
    )
        .prop_map(|(announced, mut body, hang_up)| {
            body.truncate((announced - 1) as usize);
            Truncated {
                announced,
                body,
                hang_up,
            }
        })
}

impl Sendable for Truncated {
    fn send(&self, d: &TestDaemon) -> Outcome {
        let mut s = greeted(d)?;
        let mut out = self.announced.to_be_bytes().to_vec();
        out.extend_from_slice(&self.body);
        write_some(&mut s, &out);
        if self.hang_up {
            return Ok(());
        }
        let _ = s.shutdown(Shutdown::Write);
        let answer = next_answer(&mut s)?;
        check!(
            matches!(&answer, Some(Response::Error(e)) if e.code == ErrorCode::Invalid),
            "a truncated body was answered {answer:?}"
        );
        check!(
            read_until_closed(&mut s)?.is_empty(),
            "more after the error"
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Real requests, encoded, then bits flipped, bytes inserted, deleted, overwritten or cut.

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Set(usize, u8),
    Cut(usize),
}

#[derive(Debug)]
struct Mutated {
    payload: Vec<u8>,
}

fn base_requests() -> Vec<Request> {
    vec![
        Request::Get(tokd_protocol::v0::GetRequest {
            name: SESSION.into(),
            min_valid_ms: 10_000,
            wait_ms: 2_000,
            include_id_token: true,
        }),
        Request::Status(status::StatusRequest {
            name: Some(SESSION.into()),
        }),
        Request::Status(status::StatusRequest { name: None }),
        Request::List(list::ListRequest {}),
        Request::Ping(ping::PingRequest {}),
        Request::Add(add::AddRequest {
            name: "fuzzed".into(),
            provider: "corp".into(),
            attrs: vec![("user_id".into(), "42".into())],
            replace: true,
            token_response: Some(token_response("at-fuzzed", "rt-fuzzed", 3600).into()),
        }),
        Request::Refresh(refresh::RefreshRequest {
            name: "nosuch".into(),
            wait_ms: 1_000,
        }),
        Request::Remove(remove::RemoveRequest {
            name: "nosuch".into(),
        }),
        Request::Logout(logout::LogoutRequest {
            name: "nosuch".into(),
        }),
    ]
}

fn mutated_request() -> impl Strategy<Value = Mutated> {
    let bases: Vec<Vec<u8>> = base_requests()
        .iter()
        .map(|r| encode_payload(r).expect("payload"))
        .collect();
    let mutation = prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
    ];
    (
        prop::sample::select(bases),
        prop::collection::vec(mutation, 1..5),
    )
        .prop_map(|(mut payload, mutations)| {
            for m in mutations {
                apply(&mut payload, m);
            }
            Mutated { payload }
        })
}

fn apply(p: &mut Vec<u8>, m: Mutation) {
    let len = p.len();
    match m {
        Mutation::Flip(i, bit) if len > 0 => p[i % len] ^= 1 << bit,
        Mutation::Insert(i, b) => p.insert(i % (len + 1), b),
        Mutation::Delete(i) if len > 0 => {
            p.remove(i % len);
        }
        Mutation::Set(i, b) if len > 0 => p[i % len] = b,
        Mutation::Cut(i) => p.truncate(i % (len + 1)),
        _ => {}
    }
}

impl Sendable for Mutated {
    fn send(&self, d: &TestDaemon) -> Outcome {
        if unsendable(&self.payload) {
            return Err(TestCaseError::reject("a stream or a change of the session"));
        }
        let mut s = greeted(d)?;
        write_some(&mut s, &frame(&self.payload));
        check_answer(&self.payload, next_answer(&mut s)?)?;
        expect_ping(&mut s)
    }
}

// ---------------------------------------------------------------------------------------
// Length fields that claim far more than was sent: in the frame header (refused before any
// allocation, then the hang-up) and inside a payload (a bincode length: `invalid`, and the
// connection goes on).

#[derive(Debug)]
enum Huge {
    Header(u32),
    Inner { variant: u8, marker: u8, len: u64 },
}

fn huge_length() -> impl Strategy<Value = Huge> {
    prop_oneof![
        (DEFAULT_MAX_FRAME as u32 + 1..=u32::MAX).prop_map(Huge::Header),
        // bincode varints: 0xfb u16, 0xfc u32, 0xfd u64, 0xfe u128 follow.
        (0u8..10, 0xfbu8..=0xfe, any::<u64>()).prop_map(|(variant, marker, len)| {
            Huge::Inner {
                variant,
                marker,
                len,
            }
        }),
    ]
}

impl Sendable for Huge {
    fn send(&self, d: &TestDaemon) -> Outcome {
        let mut s = greeted(d)?;
        match *self {
            Huge::Header(len) => {
                let mut out = len.to_be_bytes().to_vec();
                out.extend_from_slice(&[0u8; 64]);
                write_some(&mut s, &out);
                let answer = next_answer(&mut s)?;
                check!(
                    matches!(&answer, Some(Response::Error(e)) if e.code == ErrorCode::TooLarge),
                    "a {len}-byte header was answered {answer:?}"
                );
                check!(
                    read_until_closed(&mut s)?.is_empty(),
                    "more after too_large"
                );
                Ok(())
            }
            Huge::Inner {
                variant,
                marker,
                len,
            } => {
                let mut payload = vec![variant, marker];
                let width = match marker {
                    0xfb => 2,
                    0xfc => 4,
                    0xfd => 8,
                    _ => 16,
                };
                payload.extend_from_slice(&u128::from(len).to_le_bytes()[..width]);
                payload.extend_from_slice(b"short");
                if unsendable(&payload) {
                    return Err(TestCaseError::reject("a stream or a change of the session"));
                }
                write_some(&mut s, &frame(&payload));
                check_answer(&payload, next_answer(&mut s)?)?;
                expect_ping(&mut s)
            }
        }
    }
}

#[test]
fn frame_headers_are_split_as_the_daemon_splits_them() {
    // The oracle the properties rely on.
    let mut bytes = frame(b"ab");
    bytes.extend_from_slice(&[0, 0]);
    assert_eq!(split_frames(&bytes), (vec![&b"ab"[..]], Tail::Truncated));
    assert_eq!(split_frames(&frame(b"")), (vec![&b""[..]], Tail::Clean));
    let oversize = (DEFAULT_MAX_FRAME as u32 + 1).to_be_bytes();
    assert_eq!(split_frames(&oversize), (vec![], Tail::TooLarge));
    assert_eq!(HEADER_LEN, 4);
}
