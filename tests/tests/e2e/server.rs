//! The socket: permissions, peers, hostile bytes, limits.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokd_e2e::{TestDaemon, greet, hello_answer, hello_frame, stderr, stdout, token_response};
use tokd_protocol::frame::{
    DEFAULT_MAX_FRAME, MAX_RESPONSE_FRAME, decode_payload, encode_frame, encode_message,
    read_frame_blocking,
};
use tokd_protocol::verbs::ping::PingRequest;
use tokd_protocol::verbs::watch::WatchRequest;
use tokd_protocol::{ErrorCode, Hello, HelloAck, Request, Response};

fn connect(d: &TestDaemon) -> UnixStream {
    let s = UnixStream::connect(d.socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

#[test]
fn the_socket_is_private() {
    let d = TestDaemon::start().expect("daemon starts");
    let meta = std::fs::symlink_metadata(d.socket()).expect("socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(d.socket().parent().expect("dir")).expect("dir");
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
}

#[test]
fn garbage_does_not_stop_the_daemon() {
    let d = TestDaemon::start().expect("daemon starts");
    d.add("work", &token_response("at-garbage", "rt-garbage", 3600));

    // Not a hello at all: answered with an `invalid` refusal in the fixed layout, then closed.
    let mut s = connect(&d);
    s.write_all(b"\x00\x00\x00\x10GET / HTTP/1.1\r\n\r\n")
        .expect("write");
    let ack = HelloAck::decode(&read_frame_blocking(&mut s, DEFAULT_MAX_FRAME).expect("frame"))
        .expect("hello layout");
    assert_eq!(ack.outcome.expect_err("refused").code, ErrorCode::Invalid);

    // A valid hello, then a frame of random bytes: `invalid`, and the connection goes on.
    let mut s = connect(&d);
    let mut out = hello_frame();
    encode_frame(
        &[0xde, 0xad, 0xbe, 0xef, 0x99, 0x01],
        DEFAULT_MAX_FRAME,
        &mut out,
    )
    .expect("frame");
    s.write_all(&out).expect("write");
    let _ack = read_frame_blocking(&mut s, DEFAULT_MAX_FRAME).expect("ack");
    let answer = read_frame_blocking(&mut s, DEFAULT_MAX_FRAME).expect("answer");
    match tokd_protocol::frame::decode_payload::<tokd_protocol::Response>(&answer) {
        Ok(tokd_protocol::Response::Error(e)) => assert_eq!(e.code, ErrorCode::Invalid),
        other => panic!("expected an invalid error, got {other:?}"),
    }

    // An oversize frame header: `too_large`, then the daemon hangs up.
    let mut s = connect(&d);
    let mut out = hello_frame();
    out.extend_from_slice(&u32::MAX.to_be_bytes());
    s.write_all(&out).expect("write");
    let _ack = read_frame_blocking(&mut s, DEFAULT_MAX_FRAME).expect("ack");
    let answer = read_frame_blocking(&mut s, DEFAULT_MAX_FRAME).expect("answer");
    match tokd_protocol::frame::decode_payload::<tokd_protocol::Response>(&answer) {
        Ok(tokd_protocol::Response::Error(e)) => assert_eq!(e.code, ErrorCode::TooLarge),
        other => panic!("expected too_large, got {other:?}"),
    }
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).expect("eof"),
        0,
        "connection closed"
    );

    // Truncated frames and abrupt hang-ups.
    for bytes in [&b"\x00\x00"[..], b"\x00\x00\x00\x09TOKD", b"TOKD"] {
        let mut s = connect(&d);
        s.write_all(bytes).expect("write");
        drop(s);
    }

    // After all that, the next client is served.
    let out = d.tokd(&["get", "work"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "at-garbage\n");
}

#[test]
fn an_incompatible_client_gets_a_clear_version_mismatch() {
    let d = TestDaemon::start().expect("daemon starts");
    let mut s = connect(&d);
    let hello = Hello {
        major: 99,
        minor: 0,
        client_name: "future-tokd".into(),
    };
    let mut out = Vec::new();
    encode_frame(&hello.encode(), DEFAULT_MAX_FRAME, &mut out).expect("frame");
    s.write_all(&out).expect("write");
    let ack = HelloAck::decode(&read_frame_blocking(&mut s, DEFAULT_MAX_FRAME).expect("frame"))
        .expect("hello layout");
    let err = ack.outcome.expect_err("refused");
    assert_eq!(err.code, ErrorCode::VersionMismatch);
    assert!(err.message.contains("restart tokd"), "{}", err.message);
}

#[test]
fn handshake_timeout_and_connection_cap() {
    let d = TestDaemon::start_with(&format!(
        "handshake_timeout = \"300ms\"\nmax_connections = 2\n{}",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("daemon starts");
    // A connection that never says hello is refused with `timeout`.
    let mut silent = connect(&d);
    let ack =
        HelloAck::decode(&read_frame_blocking(&mut silent, DEFAULT_MAX_FRAME).expect("frame"))
            .expect("layout");
    assert_eq!(ack.outcome.expect_err("refused").code, ErrorCode::Timeout);

    // Two watch streams fill the cap and cannot be evicted: a third is told `busy`.
    let held: Vec<UnixStream> = (0..2).map(|_| watching(&d)).collect();
    let ack = hello_answer(&d.socket()).expect("answer");
    assert_eq!(ack.outcome.expect_err("refused").code, ErrorCode::Busy);
    drop(held);
}

#[test]
fn the_idle_timeout_counts_from_the_last_request() {
    let d = TestDaemon::start_with(&format!(
        "idle_timeout = \"2s\"\n{}",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("daemon starts");
    let mut busy = greeted(&d);
    // Requests every 200 ms for three times the idle timeout: the connection is never idle
    // for 2 s, so it stays open past the timer's first expiry (2 s after the hello).
    for i in 0..30 {
        assert!(pings(&mut busy), "ping {i}: a busy connection was closed");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Then silent: the daemon closes it, without a word, once it has been idle for 2 s (the
    // read timeout of 10 s would say Open instead).
    assert_eq!(fate(&mut busy), Fate::Closed);
}

/// A connection that has said hello and read the daemon's acceptance.
fn greeted(d: &TestDaemon) -> UnixStream {
    let mut s = connect(d);
    let ack = greet(&mut s).expect("a hello answer");
    assert!(ack.outcome.is_ok(), "{:?}", ack.outcome);
    s
}

/// Sends `request` and reads one answer; `None` when the connection is gone.
fn ask(s: &mut UnixStream, request: &Request) -> Option<Response> {
    let mut out = Vec::new();
    encode_message(request, DEFAULT_MAX_FRAME, &mut out).expect("frame");
    s.write_all(&out).ok()?;
    let frame = read_frame_blocking(s, MAX_RESPONSE_FRAME).ok()?;
    decode_payload(&frame).ok()
}

fn pings(s: &mut UnixStream) -> bool {
    matches!(
        ask(s, &Request::Ping(PingRequest {})),
        Some(Response::Pong(_))
    )
}

/// A greeted connection carrying a `watch` stream.
fn watching(d: &TestDaemon) -> UnixStream {
    let mut s = greeted(d);
    let answer = ask(&mut s, &Request::Watch(WatchRequest {}));
    assert!(matches!(answer, Some(Response::Watching(_))), "{answer:?}");
    s
}

/// What became of a held connection, as its client sees it.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// The daemon hung up without a word: EOF (or a reset). Eviction does exactly this
    /// (`connection::serve` returns when the slot's evict token fires, sending nothing).
    Closed,
    /// Nothing to read: the connection is still open.
    Open,
    /// The daemon sent bytes (e.g. a handshake-timeout refusal): something other than
    /// eviction happened.
    Sent(Vec<u8>),
}

/// Reads `s` once: blocks for at most its read timeout, so a connection the daemon is about
/// to close gets the time to be closed; a timeout means it is still open.
fn fate(s: &mut UnixStream) -> Fate {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => Fate::Closed,
        Ok(n) => Fate::Sent(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Fate::Open,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Fate::Closed,
        Err(e) => panic!("reading a held connection: {e}"),
    }
}

/// [`fate`] without waiting: whether `s` is open at this moment.
fn fate_now(s: &mut UnixStream) -> Fate {
    s.set_nonblocking(true).expect("nonblocking");
    let fate = fate(s);
    s.set_nonblocking(false).expect("blocking");
    fate
}

#[test]
fn at_the_cap_ungreeted_then_idle_connections_make_room_never_streams() {
    // A handshake timeout far beyond the test, so only eviction can close an ungreeted
    // connection (and an idle timeout of 300 s by default, so only eviction closes an idle one).
    let d = TestDaemon::start_with(&format!(
        "max_connections = 16\nhandshake_timeout = \"60s\"\n{}",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("daemon starts");
    d.add("work", &token_response("at-cap", "rt-cap", 3600));
    let mut watch = watching(&d);
    let mut idle: Vec<UnixStream> = (0..7).map(|_| greeted(&d)).collect();
    // Eight ungreeted connections fill the table (1 + 7 + 8 = 16).
    let mut silent: Vec<UnixStream> = (0..8).map(|_| connect(&d)).collect();
    // Each newcomer evicts the oldest ungreeted connection, not an idle or streaming one.
    let got = d.get("work", &[]).expect("a client at the cap is served");
    assert_eq!(got, "at-cap");
    assert_eq!(
        fate(&mut silent[0]),
        Fate::Closed,
        "the oldest ungreeted made room"
    );
    assert_eq!(
        fate_now(&mut silent[7]),
        Fate::Open,
        "the newest ungreeted stays"
    );
    for s in &mut idle {
        assert!(
            pings(s),
            "greeted idle connections stay while ungreeted ones remain"
        );
    }
    // With no ungreeted connection left, the one idle the longest goes next.
    drop(silent);
    let mut fresh: Vec<UnixStream> = (0..9).map(|_| greeted(&d)).collect();
    let newest_idle_first = idle.len() - 1;
    assert!(pings(&mut idle[newest_idle_first]), "recently used: kept");
    let got = d.get("work", &[]).expect("served again");
    assert_eq!(got, "at-cap");
    assert_eq!(
        fate(&mut idle[0]),
        Fate::Closed,
        "the longest idle made room"
    );
    assert!(fresh.iter_mut().all(pings), "the fresh ones are kept");
    let log = d.log();
    for phase in ["phase=Greeting", "phase=Idle"] {
        assert!(
            log.lines()
                .any(|l| l.contains("evicted a connection") && l.contains(phase)),
            "no eviction with {phase} in the log:\n{log}"
        );
    }
    // The watch stream was never touched: it still delivers events.
    d.add("other", &token_response("at-other", "rt-other", 3600));
    watch
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let event = read_frame_blocking(&mut watch, MAX_RESPONSE_FRAME).expect("an event");
    assert!(matches!(
        decode_payload::<Response>(&event),
        Ok(Response::Event(_))
    ));
}

#[test]
fn five_thousand_idle_connections_slow_writers_and_half_open_sockets_do_not_stop_a_client() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // The test holds thousands of sockets itself.
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
    let d = TestDaemon::start().expect("daemon starts");
    d.add("work", &token_response("at-flood", "rt-flood", 3600));
    let mut held = Vec::new();
    let hello = hello_frame();
    for i in 0..5000 {
        let Ok(mut s) = UnixStream::connect(d.socket()) else {
            // The test's own descriptor limit; the daemon is what is under test.
            break;
        };
        match i % 4 {
            // Never says anything.
            0 => {}
            // A slow writer: the first bytes of a hello, the rest never comes.
            1 => {
                let _ = s.write_all(&hello[..3]);
            }
            // Half-open: a partial hello, then the write side shut.
            2 => {
                let _ = s.write_all(&hello[..6]);
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            // Greeted, then idle (the answer is left unread).
            _ => {
                let _ = s.write_all(&hello);
            }
        }
        held.push(s);
    }
    assert!(held.len() >= 2000, "only {} connections opened", held.len());
    for _ in 0..5 {
        assert_eq!(d.get("work", &[]).as_deref(), Ok("at-flood"));
    }
    // The table stays bounded: the daemon holds about max_connections sockets, not 5000.
    let pid = d.pid().expect("pid");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count());
    assert!(fds < 1024 + 200, "the daemon holds {fds} descriptors");
    drop(held);
    assert!(d.log().lines().all(|l| !l.contains("panicked")));
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.add("work", &token_response("at-stale", "rt-stale", 3600));
    // A crash leaves the socket file behind.
    d.kill();
    assert!(d.socket().exists(), "SIGKILL leaves the socket file");
    d.start_again().expect("starts over a stale socket");
    assert_eq!(stdout(&d.tokd(&["get", "work"])), "at-stale\n");
    // A clean stop removes the socket it bound.
    d.stop().expect("stops");
    assert!(!d.socket().exists(), "socket left behind after SIGTERM");
}

#[test]
fn a_peer_of_another_uid_is_rejected() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: needs root to connect as another uid (CI runs as root)");
        return;
    }
    let d = TestDaemon::start().expect("daemon starts");
    d.add("work", &token_response("at-peer", "rt-peer", 3600));
    // Make the socket reachable for `nobody`, so the SO_PEERCRED check itself is what
    // refuses (a connect refused by file permissions would not test it).
    let client = d.open_to_other_users();
    let socket = d.socket().display().to_string();
    let out = tokd_e2e::as_uid(65534, &client, &["--socket", &socket, "get", "work"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "a token leaked to another uid");
    assert!(stderr(&out).contains("peer_rejected"), "{}", stderr(&out));
    assert!(d.log().contains("rejected a connection from another user"));
    // The owner is still served.
    assert_eq!(stdout(&d.tokd(&["get", "work"])), "at-peer\n");
}
