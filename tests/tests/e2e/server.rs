//! The socket: permissions, peers, hostile bytes, limits.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokd_e2e::{TestDaemon, hello_answer, stderr, stdout, token_response};
use tokd_protocol::frame::{DEFAULT_MAX_FRAME, encode_frame, read_frame_blocking};
use tokd_protocol::{ErrorCode, Hello, HelloAck};

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
    let mut out = Vec::new();
    encode_frame(&Hello::current("e2e").encode(), DEFAULT_MAX_FRAME, &mut out).expect("frame");
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
    let mut out = Vec::new();
    encode_frame(&Hello::current("e2e").encode(), DEFAULT_MAX_FRAME, &mut out).expect("frame");
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

    // Two greeted connections fill the cap; a third is told `busy`.
    let held: Vec<UnixStream> = (0..2)
        .map(|_| {
            let mut s = connect(&d);
            let mut out = Vec::new();
            encode_frame(&Hello::current("e2e").encode(), DEFAULT_MAX_FRAME, &mut out)
                .expect("frame");
            s.write_all(&out).expect("write");
            let ack = read_frame_blocking(&mut s, DEFAULT_MAX_FRAME).expect("ack");
            assert!(HelloAck::decode(&ack).expect("layout").outcome.is_ok());
            s
        })
        .collect();
    let ack = hello_answer(&d.socket()).expect("answer");
    assert_eq!(ack.outcome.expect_err("refused").code, ErrorCode::Busy);
    drop(held);
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
    let socket = d.socket();
    for dir in [d.dir.path(), socket.parent().expect("dir")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    // A copy of the client that `nobody` can execute wherever the build tree is.
    let client = d.dir.path().join("tokd-client");
    std::fs::copy(&tokd_e2e::binaries().tokd, &client).expect("copy");
    std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&client)
        .arg("--socket")
        .arg(&socket)
        .args(["get", "work"])
        .env_remove("TOKD_SOCKET")
        .output()
        .expect("setpriv runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "a token leaked to another uid");
    assert!(stderr(&out).contains("peer_rejected"), "{}", stderr(&out));
    assert!(d.log().contains("rejected a connection from another user"));
    // The owner is still served.
    assert_eq!(stdout(&d.tokd(&["get", "work"])), "at-peer\n");
}
