//! Where client and daemon look for the socket without `XDG_RUNTIME_DIR` (cron, plain ssh):
//! `/run/user/$UID` when it is the user's, then the temp dir. Each test runs daemon and
//! client as a uid of its own, with a `/run/user/<uid>` it creates and removes.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tokd_e2e::{
    DEFAULT_PROVIDERS, Launch, TestDaemon, binaries, copy_for_others, isolate_env, run_with_stdin,
    setpriv_args, stderr, stdout,
};

/// `/run/user/<uid>`, owned by `uid` and 0700 as logind makes it; removed on drop.
struct RunUserDir {
    dir: PathBuf,
}

impl RunUserDir {
    fn create(uid: u32) -> RunUserDir {
        let base = Path::new("/run/user");
        if !base.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(base)
                .expect("/run/user");
        }
        let dir = base.join(uid.to_string());
        // A leftover of an earlier, interrupted run.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("/run/user/<uid>");
        chown(&dir, uid);
        RunUserDir { dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("tokd/tokd.sock")
    }
}

impl Drop for RunUserDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn chown(path: &Path, uid: u32) {
    rustix::fs::chown(
        path,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(uid)),
    )
    .expect("chown");
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Everything a test needs to run tokd as `uid`: a home for daemon and client (owned by
/// `uid`), copies of the binaries that `uid` may execute, and the temp dir both use.
struct AsUser {
    uid: u32,
    home: tempfile::TempDir,
    bin: tempfile::TempDir,
}

impl AsUser {
    fn new(uid: u32) -> AsUser {
        let home = tempfile::tempdir().expect("tempdir");
        chown(home.path(), uid);
        let bin = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        copy_for_others(&binaries().tokd, bin.path());
        copy_for_others(&binaries().daemon, bin.path());
        AsUser { uid, home, bin }
    }

    /// `$TMPDIR` of daemon and client.
    fn tmpdir(&self) -> PathBuf {
        self.home.path().join("tmp")
    }

    /// The temp-dir fallback's socket.
    fn temp_socket(&self) -> PathBuf {
        self.tmpdir()
            .join(format!("tokd-{}", self.uid))
            .join("tokd.sock")
    }

    /// Starts the daemon as the user, without `--socket`, expecting it on `socket`; with
    /// `xdg` as its `XDG_RUNTIME_DIR`, or none.
    fn daemon(&self, socket: PathBuf, xdg: Option<&Path>) -> TestDaemon {
        let mut env = vec![("TMPDIR".to_owned(), self.tmpdir().into_os_string())];
        let mut env_remove = Vec::new();
        match xdg {
            Some(dir) => env.push(("XDG_RUNTIME_DIR".to_owned(), dir.into())),
            None => env_remove.push("XDG_RUNTIME_DIR".to_owned()),
        }
        let mut wrapper: Vec<std::ffi::OsString> = vec!["setpriv".into()];
        wrapper.extend(setpriv_args(self.uid).into_iter().map(Into::into));
        let uid = self.uid;
        // The harness probes the socket as root.
        let config = format!("allow_root = true\n{DEFAULT_PROVIDERS}");
        TestDaemon::launch(
            &config,
            Launch {
                env,
                env_remove,
                wrapper,
                default_socket: Some(socket),
                program: Some(self.bin.path().join("tokd-daemon")),
                ..Launch::default()
            },
            |dir| {
                chown(dir, uid);
                Ok(())
            },
        )
        .expect("the daemon starts as the test user")
    }

    /// `tokd ARGS…` as the user, without `XDG_RUNTIME_DIR`, `TOKD_SOCKET` or `--socket`, as
    /// cron runs it.
    fn tokd(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("setpriv");
        cmd.args(setpriv_args(self.uid))
            .arg(self.bin.path().join("tokd"))
            .args(args);
        isolate_env(&mut cmd, self.home.path());
        cmd.env_remove("XDG_RUNTIME_DIR")
            .env("TMPDIR", self.tmpdir());
        run_with_stdin(cmd, None)
    }
}

#[test]
fn without_xdg_runtime_dir_client_and_daemon_meet_in_the_users_run_dir() {
    if !is_root() {
        eprintln!("skipped: needs root for /run/user/<uid> and another uid (CI runs as root)");
        return;
    }
    let user = AsUser::new(42421);
    let run = RunUserDir::create(user.uid);

    // systemd starts the daemon with XDG_RUNTIME_DIR=/run/user/<uid>; cron's client has none.
    let mut d = user.daemon(run.socket(), Some(&run.dir));
    let out = user.tokd(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("socket {};", run.socket().display())),
        "{}",
        stdout(&out)
    );
    d.stop().expect("stops");

    // A daemon started without XDG_RUNTIME_DIR follows the same rule.
    let mut d = user.daemon(run.socket(), None);
    let out = user.tokd(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&run.socket().display().to_string()),
        "{}",
        stdout(&out)
    );
    assert!(!user.temp_socket().exists(), "nothing in the temp dir");
    d.stop().expect("stops");

    // Nobody listens: the error names both places, and why each was tried.
    let out = user.tokd(&["list"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    for place in [run.socket(), user.temp_socket()] {
        assert!(err.contains(&place.display().to_string()), "{err}");
    }
    assert!(err.contains("XDG_RUNTIME_DIR is unset"), "{err}");
    assert!(err.contains("temp-dir fallback"), "{err}");
}

#[test]
fn a_daemon_started_before_the_run_dir_existed_is_found_in_the_temp_dir() {
    if !is_root() {
        eprintln!("skipped: needs root for /run/user/<uid> and another uid (CI runs as root)");
        return;
    }
    let user = AsUser::new(42422);
    // No /run/user/<uid> yet (a daemon started from cron before the first login).
    let _ = std::fs::remove_dir_all(format!("/run/user/{}", user.uid));
    let d = user.daemon(user.temp_socket(), None);
    let out = user.tokd(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The user logs in: /run/user/<uid> appears, empty. The client tries it first, finds
    // nothing and goes on to the temp dir.
    let run = RunUserDir::create(user.uid);
    let out = user.tokd(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&user.temp_socket().display().to_string()),
        "{}",
        stdout(&out)
    );
    assert!(!run.socket().exists());
    drop(d);

    // A /run/user/<uid> of another owner is skipped, and the error says so.
    chown(&run.dir, 0);
    let out = user.tokd(&["list"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{} belongs to uid 0", run.dir.display())),
        "{err}"
    );
    assert!(
        err.contains(&user.temp_socket().display().to_string()),
        "{err}"
    );
    assert!(!err.contains(&run.socket().display().to_string()), "{err}");
}
