//! Per-session access lists: `allow_exe` checked against the peer's executable, and
//! `allow_uids` admitting another user to the sessions that name it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use tokd_e2e::{
    DEFAULT_PROVIDERS, TestDaemon, as_uid, binaries, isolate_env, run_with_stdin, stderr, stdout,
    token_response,
};

const NOBODY: u32 = 65534;

/// `program --socket SOCK get NAME` with a clean environment.
fn get_with(program: &Path, d: &TestDaemon, name: &str) -> std::process::Output {
    let mut cmd = Command::new(program);
    cmd.arg("--socket").arg(d.socket()).args(["get", name]);
    isolate_env(&mut cmd, d.dir.path());
    run_with_stdin(cmd, None)
}

#[test]
fn allow_exe_hands_the_token_only_to_the_listed_program() {
    // A second executable: a copy of tokd under another path, reached through a symlink in
    // the config (the kernel reports executables with symlinks resolved).
    let bin = tempfile::tempdir().expect("tempdir");
    let other = bin.path().join("other-client");
    std::fs::copy(&binaries().tokd, &other).expect("copy");
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let link = bin.path().join("link-to-other");
    std::os::unix::fs::symlink(&other, &link).expect("symlink");

    let config = format!(
        "{DEFAULT_PROVIDERS}[sessions.locked]\nallow_exe = [\"{}\"]\n",
        link.display()
    );
    let d = TestDaemon::start_with(&config).expect("daemon starts");
    d.add("locked", &token_response("at-locked", "rt-locked", 3600));
    d.add("open", &token_response("at-open", "rt-open", 3600));

    // The tokd binary itself is not on the list.
    let out = get_with(&binaries().tokd, &d, "locked");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "no token for an unlisted program");
    assert!(stderr(&out).contains("allow_exe"), "{}", stderr(&out));

    // The listed program gets it, over the same socket.
    let out = get_with(&other, &d, "locked");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "at-locked\n");

    // A session without a list is open to both; management verbs stay open to the owner.
    assert_eq!(stdout(&get_with(&binaries().tokd, &d, "open")), "at-open\n");
    assert_eq!(stdout(&get_with(&other, &d, "open")), "at-open\n");
    assert_eq!(d.session_json("locked")["state"], "valid");

    let log = d.log();
    assert!(
        log.contains("token refused by the session's access list"),
        "{log}"
    );
    assert!(!log.contains("at-locked"), "the log never holds a token");
}

#[test]
fn allow_uids_admits_another_user_to_the_sessions_that_list_it_only() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to connect as another uid (CI runs as root)");
        return;
    }
    let config = format!("{DEFAULT_PROVIDERS}[sessions.shared]\nallow_uids = [{NOBODY}]\n");
    let d = TestDaemon::start_with(&config).expect("daemon starts");
    d.add("shared", &token_response("at-shared", "rt-shared", 3600));
    d.add("private", &token_response("at-private", "rt-private", 3600));
    let client = d.open_to_other_users();
    let socket = d.socket().display().to_string();

    let out = as_uid(NOBODY, &client, &["--socket", &socket, "get", "shared"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "at-shared\n");

    let out = as_uid(NOBODY, &client, &["--socket", &socket, "get", "private"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "a token leaked to another uid");
    assert!(stderr(&out).contains("allow_uids"), "{}", stderr(&out));

    // Tokens only: the listed uid cannot see or change the owner's sessions.
    for verb in [&["status"][..], &["rm", "shared"], &["list"]] {
        let mut args = vec!["--socket", socket.as_str()];
        args.extend_from_slice(verb);
        let out = as_uid(NOBODY, &client, &args);
        assert_ne!(out.status.code(), Some(0), "{verb:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("allow_uids"),
            "{verb:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(d.get("shared", &[]).as_deref(), Ok("at-shared"));

    // A uid no session lists is refused at the hello, as before.
    let out = as_uid(NOBODY - 1, &client, &["--socket", &socket, "get", "shared"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("peer_rejected"), "{}", stderr(&out));
}

#[test]
fn a_guest_is_answered_from_the_cache_and_never_makes_the_daemon_refresh() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to connect as another uid (CI runs as root)");
        return;
    }
    let idp = tokd_e2e::idp::TestIdp::start().expect("idp");
    idp.set_access_ttl(3600).expect("ttl");
    // Before the fix, guests asking for more validity than the token has left each waited
    // on a refresh (holding a slot each, never evicted) and made the daemon spend the grant.
    // Eight slots: the four guests fit in their half.
    let config = format!(
        "max_connections = 8\n{}[sessions.shared]\nallow_uids = [{NOBODY}]\n",
        tokd_e2e::idp_provider("idp", idp.issuer(), "")
    );
    let d = TestDaemon::start_with(&config).expect("daemon starts");
    d.add_as(
        "shared",
        "idp",
        &idp.mint("tokd-test", "openid offline_access api")
            .expect("mint"),
    );
    let before = d.get("shared", &[]).expect("owner get");
    idp.reset_stats().expect("reset");
    let client = d.open_to_other_users();
    let socket = d.socket().display().to_string();
    // The token lives exactly 1 h, so it always has a little less than 1 h left: a refresh
    // could meet the ask, the cache cannot.
    let guests: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            let socket = socket.clone();
            std::thread::spawn(move || {
                as_uid(
                    NOBODY,
                    &client,
                    &[
                        "--socket",
                        &socket,
                        "get",
                        "shared",
                        "--min-valid",
                        "1h",
                        "--wait",
                        "60s",
                    ],
                )
            })
        })
        .collect();
    for guest in guests {
        let out = guest.join().expect("guest thread");
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim_end(), before, "the cached token");
        assert!(
            stderr(&out).contains("less than"),
            "says the token has less left than asked: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        idp.stats().expect("stats").refresh_requests,
        0,
        "a guest never makes the daemon refresh"
    );
    // The owner may: the same ask refreshes.
    let out = d.tokd(&["get", "shared", "--min-valid", "1h", "--wait", "30s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(idp.stats().expect("stats").refresh_requests, 1);
}

/// Two copies of tokd under different paths (two files, two inodes).
fn two_clients(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut copies = ["allowed-client", "other-client"].map(|name| {
        let path = dir.join(name);
        std::fs::copy(&binaries().tokd, &path).expect("copy");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::canonicalize(&path).expect("canonical")
    });
    let other = std::mem::take(&mut copies[1]);
    let allowed = std::mem::take(&mut copies[0]);
    (allowed, other)
}

#[test]
fn allow_exe_compares_the_executable_by_identity_not_by_the_path_it_shows() {
    let probe = Command::new("unshare").args(["-m", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot create a mount namespace here (CI runs as root)");
        return;
    }
    let bin = tempfile::tempdir().expect("tempdir");
    let (allowed, other) = two_clients(bin.path());
    let config = format!(
        "{DEFAULT_PROVIDERS}[sessions.locked]\nallow_exe = [\"{}\"]\n",
        allowed.display()
    );
    let d = TestDaemon::start_with(&config).expect("daemon starts");
    d.add("locked", &token_response("at-locked", "rt-locked", 3600));
    assert_eq!(stdout(&get_with(&allowed, &d, "locked")), "at-locked\n");

    // In its own mount namespace a process lays another program over the allowed path;
    // /proc/PID/exe then shows the allowed path, but the file is another one.
    let script = format!(
        "mount --bind '{}' '{}' && exec '{}' --socket '{}' get locked",
        other.display(),
        allowed.display(),
        allowed.display(),
        d.socket().display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script]);
    isolate_env(&mut cmd, d.dir.path());
    let out = run_with_stdin(cmd, None);
    assert!(
        stdout(&out).is_empty(),
        "a bind-mounted program got the token"
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("allow_exe"), "{}", stderr(&out));
}

#[test]
fn allow_exe_judges_the_process_that_wrote_the_request_not_the_one_that_connected() {
    use tokd_protocol::frame::{DEFAULT_MAX_FRAME, encode_frame, encode_message};
    let bin = tempfile::tempdir().expect("tempdir");
    let src = bin.path().join("fork_write.c");
    let attacker = bin.path().join("fork_write");
    std::fs::write(&src, include_str!("fork_write.c")).expect("write source");
    let cc = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&attacker)
        .arg(&src)
        .output()
        .expect("cc");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    // The allowed program: a copy of sleep, which never touches the socket it inherits.
    let sleep = bin.path().join("allowed-sleep");
    let system_sleep = std::fs::canonicalize("/bin/sleep").expect("sleep");
    std::fs::copy(system_sleep, &sleep).expect("copy sleep");
    let sleep = std::fs::canonicalize(&sleep).expect("canonical");

    let config = format!(
        "{DEFAULT_PROVIDERS}[sessions.locked]\nallow_exe = [\"{}\"]\n",
        sleep.display()
    );
    let d = TestDaemon::start_with(&config).expect("daemon starts");
    d.add("locked", &token_response("at-locked", "rt-locked", 3600));

    let mut frames = Vec::new();
    encode_frame(
        &tokd_protocol::Hello::current("fork-write").encode(),
        DEFAULT_MAX_FRAME,
        &mut frames,
    )
    .expect("hello");
    let get = tokd_protocol::Request::Get(tokd_protocol::v0::GetRequest {
        name: "locked".to_owned(),
        min_valid_ms: 0,
        wait_ms: 1000,
        include_id_token: false,
    });
    encode_message(&get, DEFAULT_MAX_FRAME, &mut frames).expect("get");
    let hex: String = frames.iter().map(|b| format!("{b:02x}")).collect();

    let mut cmd = Command::new(&attacker);
    cmd.arg(d.socket()).arg(&hex).arg(&sleep);
    isolate_env(&mut cmd, d.dir.path());
    let out = run_with_stdin(cmd, None);
    assert_eq!(
        stdout(&out),
        "refused\n",
        "the child that wrote the request is not the allowed program: {}",
        stderr(&out)
    );
    let log = d.log();
    assert!(
        log.contains("token refused by the session's access list"),
        "{log}"
    );
}
