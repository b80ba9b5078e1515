//! What is on disk: encrypted records, key handling, quarantine, the state-directory lock.

use std::os::unix::fs::PermissionsExt;

use tokd_e2e::{TestDaemon, snapshot, stderr, stdout, token_response};

#[test]
fn database_files_hold_no_plaintext_token() {
    let mut d = TestDaemon::start().expect("daemon starts");
    let secrets = [
        "at-plaintext-probe-7f3a",
        "rt-plaintext-probe-91c2",
        "id-plaintext-probe-55e0",
    ];
    d.add(
        "work",
        &format!(
            r#"{{"access_token":"{}","refresh_token":"{}","id_token":"{}","expires_in":3600}}"#,
            secrets[0], secrets[1], secrets[2]
        ),
    );
    d.stop().expect("stops");
    let files = snapshot(&d.state_dir());
    assert!(!files.is_empty());
    for (path, bytes) in &files {
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} contains {secret} in plaintext",
                path.display()
            );
        }
    }
    // And none in the log either.
    let log = d.log();
    for secret in secrets {
        assert!(!log.contains(secret), "the log contains {secret}");
    }
}

#[test]
fn a_wrong_key_refuses_to_start_and_touches_nothing() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.add(
        "work",
        &token_response("at-wrong-key", "rt-wrong-key", 3600),
    );
    d.stop().expect("stops");

    std::fs::write(d.key_file(), [0x42u8; 32]).expect("write another key");
    let before = snapshot(&d.state_dir());
    let out = d.daemon_command().output().expect("runs");
    assert!(!out.status.success(), "started with a wrong key");
    let err = stderr(&out);
    assert!(
        err.contains("key") && err.contains(&d.key_file().display().to_string()),
        "{err}"
    );
    assert_eq!(before, snapshot(&d.state_dir()), "files changed");
}

#[test]
fn a_missing_key_with_a_database_is_an_error_not_a_new_key() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.add(
        "work",
        &token_response("at-missing-key", "rt-missing-key", 3600),
    );
    d.stop().expect("stops");
    std::fs::remove_file(d.key_file()).expect("remove key");
    let out = d.daemon_command().output().expect("runs");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("never minted"), "{}", stderr(&out));
    assert!(
        !d.key_file().exists(),
        "a new key was created over existing data"
    );
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.stop().expect("stops");
    std::fs::set_permissions(d.key_file(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = d.daemon_command().output().expect("runs");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn a_flipped_byte_quarantines_one_record_only() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.add("alice", &token_response("at-alice", "rt-alice", 3600));
    d.add("bob", &token_response("at-bob", "rt-bob", 3600));
    d.stop().expect("stops");

    {
        let db = sled::open(d.state_dir().join("db")).expect("open sled");
        let tree = db.open_tree("sessions").expect("tree");
        let mut value = tree.get("bob").expect("read").expect("bob stored").to_vec();
        let i = value.len() - 20; // inside the ciphertext
        value[i] ^= 0x01;
        tree.insert("bob", value).expect("write");
        db.flush().expect("flush");
    }

    d.start_again().expect("starts with one bad record");
    assert_eq!(stdout(&d.tokd(&["get", "alice"])), "at-alice\n");
    let out = d.tokd(&["get", "bob"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
    let status = d.tokd(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(json["sessions"][0]["state"], "valid");
    assert_eq!(json["sessions"][1]["name"], "bob");
    assert_eq!(json["sessions"][1]["state"], "corrupt");
    assert!(d.log().contains("quarantined"), "{}", d.log());

    // Never overwritten by an add, even with --replace…
    let out = d.tokd_with_stdin(
        &["add", "bob", "--provider", "corp", "--replace"],
        Some(&token_response("at-bob2", "rt-bob2", 3600)),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("tokd rm bob"), "{}", stderr(&out));
    // …but `rm` moves it aside, and the name is usable again.
    assert!(d.tokd(&["rm", "bob"]).status.success());
    d.add("bob", &token_response("at-bob2", "rt-bob2", 3600));
    d.restart().expect("restarts");
    assert_eq!(stdout(&d.tokd(&["get", "bob"])), "at-bob2\n");
    assert_eq!(stdout(&d.tokd(&["get", "alice"])), "at-alice\n");
}

#[test]
fn a_second_daemon_refuses_to_start() {
    let d = TestDaemon::start().expect("daemon starts");
    // Same socket: the live daemon answers, the second one says so.
    let out = d.daemon_command().output().expect("runs");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));

    // Another socket, same state directory: the store's lock refuses it.
    let mut cmd = d.daemon_command();
    let other_socket = d.dir.path().join("other.sock");
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut second = std::process::Command::new(cmd.get_program());
    second.args(&args[..2]).arg("--socket").arg(&other_socket);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => second.env(k, v),
            None => second.env_remove(k),
        };
    }
    let _ = &mut cmd;
    let out = second.output().expect("runs");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another tokd-daemon is using"),
        "{}",
        stderr(&out)
    );
    // The first one is unharmed.
    assert!(d.tokd(&["status"]).status.success());
}

/// Five sessions, stopped cleanly; returns the daemon (stopped) and the session names.
fn five_sessions() -> (TestDaemon, Vec<String>) {
    let mut d = TestDaemon::start().expect("daemon starts");
    let names: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        d.add(
            name,
            &token_response(&format!("at-{i}"), &format!("rt-{i}"), 3600),
        );
    }
    d.stop().expect("stops");
    (d, names)
}

/// Every session is still accounted for: served with its own token, or listed as corrupt
/// with a reason. Returns how many are corrupt.
fn all_accounted_for(d: &TestDaemon, names: &[String]) -> usize {
    let out = d.tokd(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let sessions = json["sessions"].as_array().expect("sessions");
    let mut corrupt = 0;
    for (i, name) in names.iter().enumerate() {
        let s = sessions
            .iter()
            .find(|s| s["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} was silently dropped: {json}"));
        if s["state"] == "corrupt" {
            corrupt += 1;
            assert!(
                d.get(name, &[]).is_err(),
                "a corrupt session serves nothing"
            );
        } else {
            assert_eq!(d.get(name, &[]).as_deref(), Ok(format!("at-{i}").as_str()));
        }
    }
    corrupt
}

#[test]
fn a_truncated_database_never_forgets_a_session() {
    for keep in [0u64, 50, 90] {
        let (mut d, names) = five_sessions();
        let db = d.state_dir().join("db/db");
        let len = std::fs::metadata(&db).expect("db file").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&db)
            .expect("open");
        file.set_len(len * keep / 100).expect("truncate");
        drop(file);
        match d.start_again() {
            Ok(()) => {
                let corrupt = all_accounted_for(&d, &names);
                if keep == 0 {
                    assert_eq!(corrupt, names.len(), "an empty database lost them all");
                }
                if corrupt > 0 {
                    assert!(d.log().contains("missing from the database"), "{}", d.log());
                    let lost = d.tokd(&["status", "--json"]).stdout;
                    let text = String::from_utf8_lossy(&lost);
                    assert!(text.contains("truncated or damaged"), "{text}");
                }
                // A lost session can be cleared and added again.
                let victim = &names[0];
                if d.session_json(victim)["state"] == "corrupt" {
                    assert!(d.tokd(&["rm", victim]).status.success());
                    d.add(victim, &token_response("at-0", "rt-0", 3600));
                    d.restart().expect("restarts");
                    assert_eq!(d.get(victim, &[]).as_deref(), Ok("at-0"));
                }
            }
            Err(e) => {
                let text = format!("{e:#}");
                assert!(text.contains("database"), "unclear refusal: {text}");
            }
        }
    }
}

#[test]
fn flipped_bytes_anywhere_in_the_database_files_lose_nothing_silently() {
    let (mut d, names) = five_sessions();
    let pristine = snapshot(&d.state_dir());
    let db_files: Vec<_> = pristine
        .iter()
        .filter(|(p, bytes)| p.starts_with(d.state_dir().join("db")) && !bytes.is_empty())
        .cloned()
        .collect();
    assert!(!db_files.is_empty());
    let mut outcomes = (0, 0, 0);
    for (path, bytes) in &db_files {
        for step in 1..8 {
            // Restore everything, then flip one bit at a spread of offsets.
            for (p, b) in &pristine {
                std::fs::write(p, b).expect("restore");
            }
            let at = bytes.len() * step / 8;
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            std::fs::write(path, &damaged).expect("flip");
            match d.start_again() {
                Ok(()) => {
                    if all_accounted_for(&d, &names) == 0 {
                        outcomes.0 += 1;
                    } else {
                        outcomes.1 += 1;
                    }
                    d.stop().expect("stops");
                }
                Err(e) => {
                    let text = format!("{e:#}");
                    assert!(
                        text.contains("is damaged") && text.contains("restore the state directory"),
                        "unclear refusal after a flip in {} at {at}: {text}",
                        path.display()
                    );
                    if outcomes.2 == 0 {
                        eprintln!("first refusal: {}", text.lines().last().unwrap_or_default());
                    }
                    outcomes.2 += 1;
                }
            }
        }
    }
    eprintln!(
        "bit flips: {} harmless, {} caught as corrupt sessions, {} refused at start",
        outcomes.0, outcomes.1, outcomes.2
    );
}

#[test]
fn every_path_is_private_whatever_the_umask() {
    let launch = tokd_e2e::Launch {
        wrapper: ["sh", "-c", "umask 000; exec \"$@\"", "sh"]
            .map(std::ffi::OsString::from)
            .to_vec(),
        ..Default::default()
    };
    // The harness makes the socket directory for wrappers; here the daemon must make it.
    let d = TestDaemon::launch(tokd_e2e::DEFAULT_PROVIDERS, launch, |dir| {
        Ok(std::fs::remove_dir(dir.join("run"))?)
    })
    .expect("daemon starts under umask 000");
    d.add("work", &token_response("at-umask", "rt-umask", 3600));
    let mode = |p: &std::path::Path| {
        std::fs::symlink_metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&d.state_dir()), 0o700, "state directory");
    assert_eq!(
        mode(d.key_file().parent().expect("key dir")),
        0o700,
        "key directory"
    );
    assert_eq!(mode(&d.key_file()), 0o600, "key file");
    assert_eq!(
        mode(d.socket().parent().expect("socket dir")),
        0o700,
        "socket directory"
    );
    assert_eq!(mode(&d.socket()), 0o600, "socket");
    for (path, _) in snapshot(&d.state_dir()) {
        assert_eq!(
            mode(&path) & 0o077,
            0,
            "{} is open to others",
            path.display()
        );
    }
}

#[test]
fn a_state_directory_open_to_others_is_refused_with_the_fix() {
    let mut d = TestDaemon::start().expect("daemon starts");
    d.stop().expect("stops");
    std::fs::set_permissions(d.state_dir(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = d.daemon_command().output().expect("runs");
    assert!(
        !out.status.success(),
        "started with an open state directory"
    );
    let err = stderr(&out);
    assert!(err.contains("chmod 700"), "{err}");
    assert!(err.contains(&d.state_dir().display().to_string()), "{err}");
}

/// sled's seven permanent I/O threads each woke once a second upstream (seven wake-ups a
/// second for an idle daemon); the vendored copy (vendor/README.md) lets them sleep until
/// there is work.
#[test]
fn the_database_threads_of_an_idle_daemon_do_not_wake() {
    let d = TestDaemon::start().expect("daemon starts");
    // The first write starts sled's thread pool.
    d.add("work", &token_response("at-idle", "rt-idle", 3600));
    let pid = d.pid().expect("the daemon runs");
    // Readiness: every database thread has gone back to sleep after that write.
    let settled = std::time::Instant::now();
    let before = loop {
        let threads = database_threads(pid);
        if !threads.is_empty() && threads.values().all(|(state, _)| *state == 'S') {
            break threads;
        }
        assert!(
            settled.elapsed() < std::time::Duration::from_secs(10),
            "sled's I/O threads never went to sleep: {threads:?}"
        );
        std::thread::yield_now();
    };
    // The window observed (not a synchronisation): upstream, each thread wakes twice in it.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let after = database_threads(pid);
    for (tid, (_, switches)) in &before {
        if let Some((_, now)) = after.get(tid) {
            assert_eq!(
                now, switches,
                "sled I/O thread {tid} woke while the daemon was idle"
            );
        }
    }
    assert!(
        before.keys().any(|tid| after.contains_key(tid)),
        "the database threads are gone"
    );
}

/// sled's I/O threads of `pid`: thread id → (scheduler state, context switches so far).
fn database_threads(pid: u32) -> std::collections::BTreeMap<String, (char, u64)> {
    let mut threads = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("sled-io") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        let state = field("State:").chars().next().unwrap_or('?');
        let switches = field("voluntary_ctxt_switches:")
            .parse::<u64>()
            .unwrap_or(0)
            + field("nonvoluntary_ctxt_switches:")
                .parse::<u64>()
                .unwrap_or(0);
        threads.insert(
            task.file_name().to_string_lossy().into_owned(),
            (state, switches),
        );
    }
    threads
}
