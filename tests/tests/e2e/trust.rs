//! The client checks who listens on the socket (SO_PEERCRED) before it sends anything: a
//! process of another user sitting on the path gets not a byte, unless `TOKD_DAEMON_UID`
//! names that user.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use tokd_e2e::{
    binaries, copy_for_others, isolate_env, run_with_stdin, setpriv_args, stderr, stdout, wait_for,
};

/// The uid the impostor runs as.
const IMPOSTOR: u32 = 42431;

/// `socket-recorder` (tests/src/bin), run as [`IMPOSTOR`] on a socket in a world-writable
/// directory: it logs every connection's bytes, one line each.
struct Recorder {
    child: Child,
    _stdout: ChildStdout,
    socket: PathBuf,
    log: PathBuf,
    _dirs: [tempfile::TempDir; 2],
}

impl Recorder {
    fn start() -> Recorder {
        let dir = tempfile::tempdir().expect("tempdir");
        // A shared directory, as /tmp is.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod");
        let socket = dir.path().join("tokd.sock");
        let log = dir.path().join("recorded");
        let bin = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let recorder =
            copy_for_others(Path::new(env!("CARGO_BIN_EXE_socket-recorder")), bin.path());
        let mut child = Command::new("setpriv")
            .args(setpriv_args(IMPOSTOR))
            .arg(&recorder)
            .arg(&socket)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let out = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        reader.read_line(&mut line).expect("the recorder speaks");
        assert_eq!(line.trim(), "ready", "the recorder did not start");
        Recorder {
            child,
            _stdout: reader.into_inner(),
            socket,
            log,
            _dirs: [dir, bin],
        }
    }

    /// The byte counts of the first `n` connections, once the recorder has logged them.
    fn connections(&self, n: usize) -> Vec<(usize, String)> {
        wait_for(Duration::from_secs(10), "the recorder's log", || {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<(usize, String)> = text
                .lines()
                .filter_map(|l| {
                    let bytes = l.split(" bytes=").nth(1)?.split(' ').next()?.parse().ok()?;
                    let hex = l.split(" hex=").nth(1)?.to_owned();
                    Some((bytes, hex))
                })
                .collect();
            (lines.len() >= n).then_some(lines)
        })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tokd ARGS…` as root, the socket given with `--socket` or `TOKD_SOCKET`, and
/// `TOKD_DAEMON_UID` when `opt_in`; `stdin` piped in.
fn tokd(
    socket: &Path,
    via_env: bool,
    opt_in: Option<u32>,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(&binaries().tokd);
    isolate_env(&mut cmd, dir.path());
    cmd.env_remove("TOKD_DAEMON_UID");
    if via_env {
        cmd.env("TOKD_SOCKET", socket);
    } else {
        cmd.arg("--socket").arg(socket);
    }
    cmd.args(args);
    if let Some(uid) = opt_in {
        cmd.env("TOKD_DAEMON_UID", uid.to_string());
    }
    run_with_stdin(cmd, stdin)
}

const TOKEN_RESPONSE: &str = r#"{"access_token":"at-for-the-impostor","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-for-the-impostor"}"#;

#[test]
fn a_socket_held_by_another_user_gets_nothing_unless_its_uid_is_named() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run a listener as another uid (CI runs as root)");
        return;
    }
    let recorder = Recorder::start();
    let add = ["add", "work", "--provider", "corp"];

    // `tokd add` (async client) via --socket and via TOKD_SOCKET, `tokd get` (the blocking
    // one-shot): refused before a byte is sent.
    let attempts = [
        tokd(&recorder.socket, false, None, &add, Some(TOKEN_RESPONSE)),
        tokd(&recorder.socket, true, None, &add, Some(TOKEN_RESPONSE)),
        tokd(&recorder.socket, false, None, &["get", "work"], None),
    ];
    for out in &attempts {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        let err = stderr(out);
        assert!(
            err.contains(&format!("runs as uid {IMPOSTOR}"))
                && err.contains("nothing was sent")
                && err.contains(&format!("TOKD_DAEMON_UID={IMPOSTOR}")),
            "{err}"
        );
        assert!(!err.contains("at-for-the-impostor"), "{err}");
        assert!(stdout(out).is_empty());
    }

    // The library refuses the same way: the async `Client` and the blocking `Agent`.
    let socket = tokd::protocol::paths::SocketPath {
        path: recorder.socket.clone(),
        source: tokd::protocol::paths::SocketSource::Flag,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let async_err = runtime
        .block_on(tokd::Client::connect_to(&socket))
        .expect_err("refused");
    let blocking_err = tokd::blocking::Agent::with_socket(socket)
        .retry_policy(tokd::RetryPolicy::NO_WAIT)
        .ping()
        .expect_err("refused");
    for e in [async_err, blocking_err] {
        assert!(
            e.to_string().contains(&format!("runs as uid {IMPOSTOR}")),
            "{e}"
        );
        assert_eq!(e.exit_code(), 1);
    }
    let seen = recorder.connections(5);
    assert!(
        seen.iter().all(|(bytes, _)| *bytes == 0),
        "the impostor received bytes: {seen:?}"
    );

    // A bad TOKD_DAEMON_UID is a usage error, and nothing is sent either.
    let mut cmd = Command::new(&binaries().tokd);
    let dir = tempfile::tempdir().expect("tempdir");
    isolate_env(&mut cmd, dir.path());
    cmd.arg("--socket")
        .arg(&recorder.socket)
        .args(["get", "work"])
        .env("TOKD_DAEMON_UID", "impostor");
    let out = run_with_stdin(cmd, None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("TOKD_DAEMON_UID"), "{}", stderr(&out));
    let seen = recorder.connections(6);
    assert_eq!(seen[5].0, 0, "{seen:?}");

    // Named in TOKD_DAEMON_UID, the same listener is talked to: it reads the hello.
    let out = tokd(
        &recorder.socket,
        false,
        Some(IMPOSTOR),
        &add,
        Some(TOKEN_RESPONSE),
    );
    assert_ne!(out.status.code(), Some(0), "the recorder answers nothing");
    assert!(!stderr(&out).contains("runs as uid"), "{}", stderr(&out));
    let seen = recorder.connections(7);
    let (bytes, hex) = &seen[6];
    assert!(*bytes > 0, "{seen:?}");
    // The hello's magic, `TOKD`.
    assert!(hex.contains("544f4b44"), "{hex}");
}
