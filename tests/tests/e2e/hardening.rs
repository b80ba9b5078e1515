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
