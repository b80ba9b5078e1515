//! Harness for the end-to-end tests: builds the real `tokd-daemon` and `tokd` binaries once,
//! starts the daemon in a temp dir (own socket, state dir, key, config), waits for it by
//! probing the socket (never by sleeping), and stops it with SIGTERM on drop.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokd_protocol::frame::{DEFAULT_MAX_FRAME, encode_frame, read_frame_blocking};
use tokd_protocol::{Hello, HelloAck};
pub mod githttp;
pub mod httpd;
pub mod idp;

/// Polls `check` every 20 ms until it returns `Some`, failing after `limit` with `what`.
///
/// # Panics
/// When the deadline passes.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A provider table for the test identity provider.
pub fn idp_provider(name: &str, issuer: &str, extra: &str) -> String {
    format!(
        "[providers.{name}]\nissuer = \"{issuer}\"\nclient_id = \"tokd-test\"\n\
         client_secret = \"tokd-test-secret\"\nscope = \"openid offline_access api\"\n{extra}\n"
    )
}

/// Paths of the freshly built binaries.
#[derive(Debug)]
pub struct Binaries {
    /// `tokd-daemon`.
    pub daemon: PathBuf,
    /// `tokd`.
    pub tokd: PathBuf,
    /// `docker-credential-tokd`, docker's credential helper.
    pub docker_credential: PathBuf,
}

/// Builds the binaries once per test process (cargo makes this a no-op when fresh) and
/// returns their paths. Building here, not relying on a previous `cargo build`, means the
/// tests never run stale binaries.
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| build_binaries().expect("building tokd binaries"))
}

fn build_binaries() -> Result<Binaries> {
    // The test executable lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot locate the target directory")?;
    build_binaries_in(profile_dir)
}

/// Builds `tokd-daemon`, `tokd` and `docker-credential-tokd` into `profile_dir` (`<target>/debug` or
/// `<target>/release`, whichever it is) and returns their paths.
///
/// # Errors
/// When cargo fails or a binary is missing afterwards.
pub fn build_binaries_in(profile_dir: &Path) -> Result<Binaries> {
    let target_dir = profile_dir
        .parent()
        .context("cannot locate the target directory")?;
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "tokd-daemon",
        "-p",
        "tokd",
        "--bins",
    ])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the tokd binaries failed: {status}");
    }
    let bins = Binaries {
        // `TOKD_E2E_DAEMON` runs the suite against another daemon build (an older one, to
        // see a new test fail against the code it fixes).
        daemon: std::env::var_os("TOKD_E2E_DAEMON")
            .map_or_else(|| profile_dir.join("tokd-daemon"), PathBuf::from),
        tokd: profile_dir.join("tokd"),
        docker_credential: profile_dir.join("docker-credential-tokd"),
    };
    for bin in [&bins.daemon, &bins.tokd, &bins.docker_credential] {
        if !bin.exists() {
            bail!("{} was not built", bin.display());
        }
    }
    Ok(bins)
}

/// A provider table every test daemon has, so sessions can be imported.
pub const DEFAULT_PROVIDERS: &str = r#"
[providers.corp]
token_endpoint = "http://127.0.0.1:9/token"
"#;

/// A daemon running in its own temp dir.
#[derive(Debug)]
pub struct TestDaemon {
    /// Holds everything: config, key, state, socket, log.
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra_config: String,
    launch: Launch,
}

/// How to start a daemon beyond its config: extra environment, a wrapper program.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Extra environment variables for the daemon (after the isolation).
    pub env: Vec<(String, std::ffi::OsString)>,
    /// A program (and its arguments) that starts the daemon, e.g. `systemd-socket-activate`;
    /// an argument `{socket}` becomes the daemon's socket path.
    pub wrapper: Vec<std::ffi::OsString>,
    /// Return without waiting for the daemon to answer.
    pub no_wait: bool,
    /// Start the daemon without `--socket`, so it picks its default place, which the test
    /// expects to be this path (probed for readiness, returned by [`TestDaemon::socket`]).
    pub default_socket: Option<PathBuf>,
    /// Variables removed from the daemon's environment after the isolation (e.g.
    /// `XDG_RUNTIME_DIR`, which [`isolate_env`] sets).
    pub env_remove: Vec<String>,
    /// The daemon binary to run instead of the freshly built one (a copy another uid may
    /// execute).
    pub program: Option<PathBuf>,
    /// The daemon's working directory (default: the test's).
    pub cwd: Option<PathBuf>,
}

impl TestDaemon {
    /// Starts a daemon with the default providers.
    ///
    /// # Errors
    /// When the daemon exits or does not answer within 20 s; the error holds its log.
    pub fn start() -> Result<TestDaemon> {
        Self::start_with(DEFAULT_PROVIDERS)
    }

    /// Starts a daemon whose config file has `extra_config` after the `[daemon]` table.
    ///
    /// # Errors
    /// See [`TestDaemon::start`].
    pub fn start_with(extra_config: &str) -> Result<TestDaemon> {
        Self::launch(extra_config, Launch::default(), |_| Ok(()))
    }

    /// Starts a daemon the way `launch` says, after `prepare` has seen its directory (to
    /// create a notify socket there, say).
    ///
    /// # Errors
    /// See [`TestDaemon::start`].
    pub fn launch(
        extra_config: &str,
        launch: Launch,
        prepare: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<TestDaemon> {
        let dir = tempfile::Builder::new().prefix("tokd-e2e-").tempdir()?;
        // A wrapper (systemd-socket-activate) binds the socket, so its directory must exist;
        // otherwise the daemon creates it, 0700, as it would for a user.
        if !launch.wrapper.is_empty() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.path().join("run"))?;
        }
        prepare(dir.path())?;
        let mut daemon = TestDaemon {
            dir,
            child: None,
            extra_config: extra_config.to_owned(),
            launch,
        };
        daemon.write_config()?;
        daemon.spawn()?;
        Ok(daemon)
    }

    fn write_config(&self) -> Result<()> {
        let d = self.dir.path();
        let text = format!(
            "[daemon]\nkey_file = \"{}\"\nstate_dir = \"{}\"\n{}",
            d.join("config/key").display(),
            d.join("state").display(),
            self.extra_config
        );
        std::fs::write(self.config_path(), text)?;
        Ok(())
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The socket.
    pub fn socket(&self) -> PathBuf {
        match &self.launch.default_socket {
            Some(path) => path.clone(),
            None => self.dir.path().join("run/tokd.sock"),
        }
    }

    /// The socket as the client library takes it (as if given with `--socket`).
    pub fn socket_path(&self) -> tokd_protocol::paths::SocketPath {
        tokd_protocol::paths::SocketPath {
            path: self.socket(),
            source: tokd_protocol::paths::SocketSource::Flag,
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The key file.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("config/key")
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// A `tokd-daemon` command with this daemon's flags and a clean environment.
    pub fn daemon_command(&self) -> Command {
        let d = self.dir.path();
        let daemon = self
            .launch
            .program
            .clone()
            .unwrap_or_else(|| binaries().daemon.clone());
        let mut cmd = match self.launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                let socket = self.socket().into_os_string();
                cmd.args(
                    args.iter()
                        .map(|a| if a == "{socket}" { &socket } else { a }),
                )
                .arg(&daemon);
                cmd
            }
            None => Command::new(&daemon),
        };
        cmd.arg("--config").arg(self.config_path());
        if self.launch.default_socket.is_none() {
            cmd.arg("--socket").arg(self.socket());
        }
        isolate_env(&mut cmd, d);
        cmd.env("TOKD_LOG", "info,tokd_daemon=debug");
        if let Some(cwd) = &self.launch.cwd {
            cmd.current_dir(cwd);
        }
        for (k, v) in &self.launch.env {
            cmd.env(k, v);
        }
        for k in &self.launch.env_remove {
            cmd.env_remove(k);
        }
        cmd
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: rustix::process::Signal) {
        if let Some(child) = &self.child {
            signal(child, sig);
        }
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))?;
        let child = self
            .daemon_command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning tokd-daemon")?;
        self.child = Some(child);
        if self.launch.no_wait {
            return Ok(());
        }
        self.wait_ready()
    }

    /// Polls the socket with a real hello until the daemon answers.
    ///
    /// # Errors
    /// When the daemon exits or does not answer within 20 s.
    pub fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if probe(&self.socket()) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "tokd-daemon exited with {status} before serving:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                bail!("tokd-daemon did not answer within 20 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits (at most 15 s) for the exit status.
    ///
    /// # Errors
    /// When the daemon was not running or did not stop in time.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(child) = &self.child {
            signal(child, rustix::process::Signal::TERM);
        }
        self.wait_exit()
    }

    /// Waits (at most 15 s) for a daemon that was told to stop to exit; sends nothing (a
    /// second SIGTERM would make it exit at once, with status 1).
    ///
    /// # Errors
    /// When the daemon was not running or did not stop in time.
    pub fn wait_exit(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("the daemon is not running")?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "tokd-daemon did not stop within 15 s after SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the daemon with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon and starts it again on the same directory.
    ///
    /// # Errors
    /// See [`TestDaemon::stop`] and [`TestDaemon::start`].
    pub fn restart(&mut self) -> Result<()> {
        let status = self.stop()?;
        if !status.success() {
            bail!(
                "tokd-daemon exited with {status} on SIGTERM:\n{}",
                self.log()
            );
        }
        self.spawn()
    }

    /// Starts the daemon again after [`TestDaemon::stop`] or [`TestDaemon::kill`].
    ///
    /// # Errors
    /// See [`TestDaemon::start`].
    pub fn start_again(&mut self) -> Result<()> {
        self.spawn()
    }

    /// Runs `tokd ARGS…` against this daemon.
    pub fn tokd(&self, args: &[&str]) -> Output {
        self.tokd_with_stdin(args, None)
    }

    /// A `tokd ARGS…` command against this daemon, with a clean environment.
    fn tokd_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&binaries().tokd);
        cmd.arg("--socket").arg(self.socket()).args(args);
        isolate_env(&mut cmd, self.dir.path());
        cmd
    }

    /// Starts `tokd ARGS…` in the background (output discarded), e.g. a `refresh` that the
    /// test interrupts.
    ///
    /// # Panics
    /// When the binary cannot be started.
    pub fn spawn_tokd(&self, args: &[&str]) -> Child {
        self.spawn_tokd_with(args, Stdio::null)
    }

    /// Starts `tokd ARGS…` in the background with stdout and stderr piped, for a test that
    /// reads what it says while it runs (`login` prompts, `watch` events).
    ///
    /// # Panics
    /// When the binary cannot be started.
    pub fn spawn_tokd_piped(&self, args: &[&str]) -> Child {
        self.spawn_tokd_with(args, Stdio::piped)
    }

    /// Starts `tokd ARGS…` with stdin, stdout and stderr piped (a user typing into it).
    pub fn spawn_tokd_typed(&self, args: &[&str]) -> Child {
        self.tokd_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tokd")
    }

    fn spawn_tokd_with(&self, args: &[&str], output: fn() -> Stdio) -> Child {
        self.tokd_command(args)
            .stdin(Stdio::null())
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("starting tokd")
    }

    /// Runs `tokd ARGS…` with `stdin` piped in.
    pub fn tokd_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_with_stdin(self.tokd_command(args), stdin)
    }

    /// Imports a session of provider `corp` from a token-response JSON; panics with the
    /// output on failure.
    pub fn add(&self, name: &str, token_response: &str) {
        self.add_as(name, "corp", token_response);
    }

    /// Imports a session of `provider`; panics with the output on failure.
    pub fn add_as(&self, name: &str, provider: &str, token_response: &str) {
        let out =
            self.tokd_with_stdin(&["add", name, "--provider", provider], Some(token_response));
        assert!(
            out.status.success(),
            "tokd add {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Rewrites the config file with new extra tables (takes effect at the next start).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn set_extra_config(&mut self, extra_config: &str) -> Result<()> {
        extra_config.clone_into(&mut self.extra_config);
        self.write_config()
    }

    /// `tokd status NAME --json`'s session object.
    pub fn session_json(&self, name: &str) -> serde_json::Value {
        let out = self.tokd(&["status", name, "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status of {name} is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        json["sessions"][0].clone()
    }

    /// Opens the socket to every local user (directories 0755, socket 0666), so that
    /// SO_PEERCRED — not file permissions — decides who is served, and returns a copy of
    /// `tokd` that any user can execute. Tests then run it as another uid with [`as_uid`].
    ///
    /// # Panics
    /// When a permission cannot be changed or the copy fails.
    pub fn open_to_other_users(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let socket = self.socket();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
        };
        mode(self.dir.path(), 0o755);
        mode(socket.parent().expect("socket dir"), 0o755);
        mode(&socket, 0o666);
        let client = self.dir.path().join("tokd-for-others");
        std::fs::copy(&binaries().tokd, &client).expect("copy tokd");
        mode(&client, 0o755);
        client
    }

    /// `tokd get NAME ARGS…`: the token, or the error output.
    pub fn get(&self, name: &str, args: &[&str]) -> std::result::Result<String, String> {
        let mut all = vec!["get", name];
        all.extend_from_slice(args);
        let out = self.tokd(&all);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
        } else {
            Err(format!(
                "exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// Points every XDG/tokd variable of `cmd` into `dir`, so nothing touches the real home, and
/// removes the proxy variables, so none of the runner's proxies is used.
pub fn isolate_env(cmd: &mut Command, dir: &Path) {
    for var in [
        "TOKD_SOCKET",
        "TOKD_CONFIG",
        "CREDENTIALS_DIRECTORY",
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "RUST_LOG",
        // The runner's proxies must not decide where a test daemon's requests go.
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .env("XDG_STATE_HOME", dir.join("xdg-state"))
        .env("XDG_RUNTIME_DIR", dir.join("xdg-run"))
        .env("HOME", dir.join("home"));
}

/// Runs a command with optional stdin and collects its output.
pub fn run_with_stdin(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning a command");
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        // A command that ends before it reads its input (a refusal) closes the pipe first.
        if let Err(e) = pipe.write_all(input.as_bytes()) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing stdin: {e}"
            );
        }
    }
    child.wait_with_output().expect("waiting for a command")
}

/// True when a daemon on `socket` accepts a hello.
pub fn probe(socket: &Path) -> bool {
    hello_answer(socket).is_ok_and(|ack| ack.outcome.is_ok())
}

/// Connects, sends a current hello and returns the daemon's answer.
///
/// # Errors
/// Connection and protocol failures.
pub fn hello_answer(socket: &Path) -> Result<HelloAck> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    greet(&mut stream)
}

/// A framed hello of the current protocol version, as the tests' client sends it.
///
/// # Panics
/// Never in practice: a hello is far below the frame limit.
pub fn hello_frame() -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(
        &Hello::current("tokd-e2e").encode(),
        DEFAULT_MAX_FRAME,
        &mut out,
    )
    .expect("a hello fits in a frame");
    out
}

/// Sends a current hello on `stream` and returns the daemon's answer (within the stream's
/// read timeout).
///
/// # Errors
/// Connection and protocol failures.
pub fn greet(stream: &mut UnixStream) -> Result<HelloAck> {
    stream.write_all(&hello_frame())?;
    let ack = read_frame_blocking(stream, DEFAULT_MAX_FRAME)?;
    Ok(HelloAck::decode(&ack)?)
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// A token response with an opaque access token valid for `secs` and a refresh token.
pub fn token_response(access: &str, refresh: &str, secs: i64) -> String {
    format!(
        r#"{{"access_token":"{access}","token_type":"Bearer","expires_in":{secs},"refresh_token":"{refresh}"}}"#
    )
}

/// stdout of a command as a string.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a command as a string.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every regular file under `dir` with its bytes, sorted by path.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// The `refresh_token` of a token-response JSON.
///
/// # Panics
/// When the JSON has none.
pub fn refresh_token_of(token_response: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(token_response).expect("token response json");
    v["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

/// `setpriv` arguments that run a program as `uid` (and gid `uid`, no other groups).
pub fn setpriv_args(uid: u32) -> Vec<String> {
    vec![
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".to_owned(),
    ]
}

/// A copy of `binary` in `dir` that any user may execute (the build's own may sit in a
/// directory other users cannot enter).
///
/// # Panics
/// When the copy fails.
pub fn copy_for_others(binary: &Path, dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let name = binary.file_name().expect("a file name");
    let copy = dir.join(name);
    std::fs::copy(binary, &copy).expect("copy the binary");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

/// Runs `program ARGS…` as `uid` (needs root; `setpriv` drops the ids and the groups).
pub fn as_uid(uid: u32, program: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(program)
        .args(args)
        .env_remove("TOKD_SOCKET");
    run_with_stdin(cmd, None)
}
