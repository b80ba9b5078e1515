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
