//! The daemon protects its own memory: non-dumpable (no core dumps, no ptrace by the same
//! user) unless configured otherwise, and its descriptor limit raised.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokd_e2e::{binaries, hello_answer, wait_for};

const NOBODY: u32 = 65534;

/// Runs the daemon as `nobody` (so /proc ownership tells dumpability apart) and returns the
/// owner uid of its /proc/PID/environ.
fn proc_owner_as_nobody(extra: &str) -> Option<u32> {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let config = d.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nkey_file = \"{}\"\nstate_dir = \"{}\"\n{extra}\n",
            d.join("key").display(),
            d.join("state").display()
        ),
    )
    .expect("config");
    let daemon = d.join("tokd-daemon");
    std::fs::copy(&binaries().daemon, &daemon).expect("copy");
    std::fs::set_permissions(&daemon, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    rustix::fs::chown(d, Some(rustix::fs::Uid::from_raw(NOBODY)), None).expect("chown");
    rustix::fs::chown(&config, Some(rustix::fs::Uid::from_raw(NOBODY)), None).expect("chown");
    let socket = d.join("tokd.sock");
    /// Kills the daemon however the test ends.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&daemon)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .env("HOME", d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Reap)
        .expect("setpriv runs");
    // setpriv execs the daemon: same pid. It answers root's hello with a refusal: root is
    // not served unless allow_root is set.
    let ack = wait_for(Duration::from_secs(20), "the daemon as nobody", || {
        hello_answer(&socket).ok()
    });
    assert_eq!(
        ack.outcome.expect_err("root is refused").code,
        tokd_protocol::ErrorCode::PeerRejected
    );
    std::fs::metadata(format!("/proc/{}/environ", child.0.id()))
        .ok()
        .map(|m| m.uid())
}

#[test]
fn the_daemon_is_not_dumpable_unless_allowed() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run the daemon as another user (CI runs as root)");
        return;
    }
    assert_eq!(
        proc_owner_as_nobody(""),
        Some(0),
        "non-dumpable: /proc files belong to root"
    );
    assert_eq!(
        proc_owner_as_nobody("allow_core_dumps = true"),
        Some(NOBODY),
        "allow_core_dumps keeps it dumpable"
    );
}

/// What became of one session after a SIGKILL and a restart.
#[derive(Debug, Default)]
struct CrashOutcomes {
    /// Not in flight at the kill; served an active token afterwards.
    untouched: usize,
    /// In flight at the kill; the retry with the stored refresh token worked.
    recovered: usize,
    /// In flight at the kill; the provider had rotated, so `needs_login` ("refresh interrupted").
    lost: usize,
}

/// A small xorshift generator: the kill moments are random but the seed is printed, so a
/// failing run can be replayed with `TOKD_CRASH_SEED`.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkills_during_a_refresh_storm_never_leave_a_dead_token_or_an_endless_retry() {
    use tokd_e2e::idp::TestIdp;
    use tokd_e2e::{TestDaemon, idp_provider, stderr};

    const CYCLES: usize = 50;
    const SESSIONS: usize = 8;
    let idp = TestIdp::start().expect("idp");
    idp.set_access_ttl(3600).expect("ttl");
    // Each token request takes a moment, so a good share of kills lands mid-flight.
    idp.set_token_delay(40).expect("delay");
    let mut d =
        TestDaemon::start_with(&idp_provider("idp", idp.issuer(), "")).expect("daemon starts");
    let mint = || {
        idp.mint("tokd-test", "openid offline_access api")
            .expect("mint")
    };
    let names: Vec<String> = (0..SESSIONS).map(|i| format!("s{i}")).collect();
    for name in &names {
        d.add_as(name, "idp", &mint());
    }
    let mut seed = std::env::var("TOKD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x5eed, |t| t.as_nanos() as u64)
                | 1
        });
    eprintln!("crash loop seed: TOKD_CRASH_SEED={seed}");
    let mut outcomes = CrashOutcomes::default();

    for cycle in 0..CYCLES {
        let count = |status: &serde_json::Value| {
            status["refresh_count"]
                .as_u64()
                .unwrap_or_else(|| panic!("no refresh_count: {status}"))
        };
        let counts_before: Vec<u64> = names.iter().map(|n| count(&d.session_json(n))).collect();
        idp.reset_stats().expect("reset");
        let storm: Vec<_> = names
            .iter()
            .map(|n| d.spawn_tokd(&["refresh", n]))
            .collect();
        // The kill moment is the experiment, not a synchronisation: anywhere from before
        // the first request leaves to after the last answer is stored.
        let moment = next_random(&mut seed) % 250;
        std::thread::sleep(Duration::from_millis(moment));
        d.kill();
        for mut child in storm {
            let _ = child.wait();
        }
        // The provider finishes (and rotates on) whatever reached it.
        wait_for(Duration::from_secs(20), "the provider to go quiet", || {
            (idp.stats().expect("stats").in_flight == 0).then_some(())
        });
        // What the storm did at the provider: each refresh that reached it rotated one
        // session's refresh token, whether or not the daemon lived to store the new one.
        let storm_stats = idp.stats().expect("stats");
        assert_eq!(
            storm_stats.failed_requests, 0,
            "cycle {cycle}: the storm presented a refresh token the provider refused"
        );
        let rotated = storm_stats.refresh_requests;
        idp.reset_stats().expect("reset");

        let log_before = d.log().len();
        d.start_again().expect("restarts");
        let restart_log = || d.log()[log_before..].to_owned();
        let names_in = |log: &str, marker: &str| -> Vec<String> {
            log.lines()
                .filter(|l| l.contains(marker))
                .flat_map(|l| l.split_whitespace())
                .filter_map(|w| w.strip_prefix("session="))
                .map(str::to_owned)
                .collect()
        };
        let interrupted = names_in(
            &restart_log(),
            "a refresh was in flight when the daemon stopped",
        );
        // Each interrupted refresh is retried at once; wait for its verdict in the audit log.
        for name in &interrupted {
            wait_for(Duration::from_secs(30), "the retried refresh", || {
                let log = restart_log();
                let done = names_in(&log, "session refreshed")
                    .into_iter()
                    .chain(names_in(&log, "session needs a login"))
                    .any(|n| &n == name);
                done.then_some(())
            });
        }
        let retry_stats = idp.stats().expect("stats");
        let settled: Vec<serde_json::Value> = names.iter().map(|n| d.session_json(n)).collect();

        let mut lost = Vec::new();
        // Refreshes of the storm the daemon stored before it died.
        let mut stored = 0;
        for ((name, status), before) in names.iter().zip(&settled).zip(&counts_before) {
            let was_in_flight = interrupted.contains(name);
            let refreshed = count(status)
                .checked_sub(*before)
                .unwrap_or_else(|| panic!("cycle {cycle}: {name}'s refresh_count went down"));
            if status["state"] == "valid" {
                let token = d
                    .get(name, &["--min-valid", "0s"])
                    .expect("a valid session serves");
                assert!(
                    idp.is_active(&token).expect("introspect"),
                    "cycle {cycle}: {name} served a token the provider calls inactive: {status}"
                );
                if was_in_flight {
                    assert_eq!(
                        refreshed, 1,
                        "cycle {cycle}: {name} recovered without the retry storing a refresh: \
                         {status}"
                    );
                    outcomes.recovered += 1;
                } else {
                    assert!(
                        refreshed <= 1,
                        "cycle {cycle}: {name} refreshed {refreshed} times for one request"
                    );
                    stored += refreshed;
                    outcomes.untouched += 1;
                }
            } else {
                assert!(
                    was_in_flight,
                    "cycle {cycle}: {name} lost without a refresh in flight: {status}"
                );
                assert!(
                    status["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("refresh interrupted")),
                    "cycle {cycle}: {name}: {status}"
                );
                assert_eq!(refreshed, 0, "cycle {cycle}: {name}: {status}");
                assert!(
                    d.get(name, &[]).is_err(),
                    "a needs_login session serves nothing"
                );
                lost.push(name);
            }
        }
        outcomes.lost += lost.len();
        let lost_now = u64::try_from(lost.len()).expect("count");
        let interrupted_now = u64::try_from(interrupted.len()).expect("count");
        // Every rotation the daemon did not store left it holding a spent refresh token: that
        // session, and only that one, is lost. The others were in flight but never reached the
        // provider, and their retry works.
        assert_eq!(
            rotated,
            stored + lost_now,
            "cycle {cycle}: the provider rotated {rotated} refresh tokens, the daemon stored \
             {stored} and lost {lost_now} sessions: {storm_stats:?}"
        );
        // Each interrupted refresh was retried exactly once, and each loss is the provider's
        // refusal of that retry.
        assert_eq!(
            (retry_stats.token_requests, retry_stats.refresh_requests),
            (interrupted_now, interrupted_now),
            "cycle {cycle}: retries for {interrupted:?}"
        );
        assert_eq!(
            retry_stats.failed_requests, lost_now,
            "cycle {cycle}: refused retries vs lost sessions {lost:?}"
        );
        // Nothing retries a lost session: neither asking for its token nor a refresh sends a
        // request once it needs a login.
        idp.reset_stats().expect("reset");
        for name in &lost {
            assert!(d.get(name, &["--min-valid", "1h"]).is_err());
            let out = d.tokd(&["refresh", name]);
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        }
        assert_eq!(
            idp.stats().expect("stats").token_requests,
            0,
            "cycle {cycle}: a lost session was tried again: {lost:?}"
        );
        for name in &lost {
            // Log in again (a fresh grant) so the storm keeps its size.
            let out = d.tokd_with_stdin(
                &["add", name, "--provider", "idp", "--replace"],
                Some(&mint()),
            );
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    eprintln!(
        "{CYCLES} SIGKILLs, {SESSIONS} sessions: {} untouched, {} in flight and recovered, \
         {} in flight and lost (needs_login: refresh interrupted)",
        outcomes.untouched, outcomes.recovered, outcomes.lost
    );
    assert!(
        outcomes.lost > 0,
        "no kill ever landed between a rotation and its storing; the test tested nothing"
    );
}
