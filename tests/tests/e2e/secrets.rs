//! Secrets never leak, even at trace level: a full run against the real provider with
//! `TOKD_LOG=trace` (add, get in every form, refresh with rotation, status, list, watch, a
//! device login, a refresh the provider refuses, logout, rm, a bad add, a reload, a stop),
//! then every credential the provider issued, every token `tokd` printed and the client
//! secret are searched for in the daemon's log, every command's stderr, the outputs of the
//! commands that must show no token, and the raw bytes of the state directory.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Output};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokd_e2e::idp::TestIdp;
use tokd_e2e::{Launch, TestDaemon, idp_provider, snapshot, token_response, wait_for};

/// The test provider's client secret (`idp_provider` configures it).
const CLIENT_SECRET: &str = "tokd-test-secret";
const SCOPE: &str = "openid offline_access api";
/// How long to wait for a line of a child's output.
const LINE_WAIT: Duration = Duration::from_secs(20);

/// Everything the run showed that must hold no secret, each with what it was.
#[derive(Default)]
struct Shown {
    texts: Vec<(String, String)>,
    /// Tokens printed on purpose (`get`): secrets to look for elsewhere.
    printed: Vec<String>,
}

impl Shown {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.texts.push((what.into(), text.into()));
    }

    /// Runs `tokd ARGS…` and keeps its stderr and, unless it prints a token on purpose, its
    /// stdout.
    fn run(&mut self, d: &TestDaemon, args: &[&str], stdin: Option<&str>) -> Output {
        let out = d.tokd_with_stdin(args, stdin);
        let what = format!("tokd {}", args.join(" "));
        self.add(format!("{what} (stderr)"), lossy(&out.stderr));
        if args.first() != Some(&"get") {
            self.add(format!("{what} (stdout)"), lossy(&out.stdout));
        }
        out
    }

    /// `tokd get ARGS…`: what it printed; the tokens in it become secrets to look for.
    fn get(&mut self, d: &TestDaemon, args: &[&str]) -> String {
        let out = self.run(d, args, None);
        assert!(
            out.status.success(),
            "tokd {args:?} failed: {}",
            lossy(&out.stderr)
        );
        let printed = lossy(&out.stdout).trim_end().to_owned();
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&printed) {
            for field in ["access_token", "id_token"] {
                if let Some(token) = json[field].as_str() {
                    self.printed.push(token.to_owned());
                }
            }
        } else if let Some(token) = printed.strip_prefix("Authorization: Bearer ") {
            self.printed.push(token.to_owned());
        } else {
            self.printed.push(printed.clone());
        }
        printed
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `tokd` child whose stdout and stderr are read into buffers line by line; each line is
/// also sent on a channel, so the test can wait for one.
struct Watched {
    child: Child,
    lines: Receiver<String>,
    stdout: Buffer,
    stderr: Buffer,
}

/// Output read so far, shared with the thread reading it.
type Buffer = Arc<Mutex<String>>;

impl Watched {
    fn spawn(d: &TestDaemon, args: &[&str]) -> Watched {
        let mut child = d.spawn_tokd_piped(args);
        let (tx, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipes: [(Box<dyn Read + Send>, &Buffer); 2] = [
            (Box::new(child.stdout.take().expect("stdout")), &stdout),
            (Box::new(child.stderr.take().expect("stderr")), &stderr),
        ];
        for (pipe, buffer) in pipes {
            let (tx, buffer) = (tx.clone(), Arc::clone(buffer));
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut b) = buffer.lock() {
                        b.push_str(&line);
                        b.push('\n');
                    }
                    let _ = tx.send(line);
                }
            });
        }
        Watched {
            child,
            lines,
            stdout,
            stderr,
        }
    }

    /// Waits for a line (stdout or stderr) that `pick` accepts.
    fn line(&self, what: &str, pick: impl Fn(&str) -> Option<String>) -> String {
        loop {
            match self.lines.recv_timeout(LINE_WAIT) {
                Ok(line) => {
                    if let Some(found) = pick(&line) {
                        return found;
                    }
                }
                Err(e) => panic!(
                    "no line for {what} ({e}); stdout: {}; stderr: {}",
                    self.stdout(),
                    self.stderr()
                ),
            }
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits for the child to exit on its own; returns its status code.
    fn finish(&mut self) -> Option<i32> {
        self.child.wait().expect("tokd exits").code()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The strings to look for: the secret itself and, for long ones, pieces a truncating or
/// splitting log line would still show (each part of a JWT but its shared header; the first
/// and last 16 characters of an opaque token).
fn needles(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_owned()];
    let parts: Vec<&str> = secret.split('.').collect();
    if parts.len() == 3 {
        out.extend(
            parts[1..]
                .iter()
                .filter(|p| p.len() >= 16)
                .map(|p| (*p).to_owned()),
        );
    } else if secret.len() >= 32 && secret.is_ascii() {
        out.push(secret[..16].to_owned());
        out.push(secret[secret.len() - 16..].to_owned());
    }
    out
}

fn json_field(json: &str, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v[field].as_str().map(str::to_owned)
}

#[test]
fn no_secret_reaches_the_log_outputs_or_disk_even_at_trace_level() {
    let idp = TestIdp::start().expect("the test provider starts");
    idp.set_access_ttl(600).expect("ttl");
    let config = idp_provider("idp", idp.issuer(), "");
    assert!(
        config.contains(CLIENT_SECRET),
        "the provider table has changed its client secret: {config}"
    );
    let mut d = TestDaemon::launch(
        &config,
        Launch {
            env: vec![("TOKD_LOG".into(), "trace".into())],
            ..Launch::default()
        },
        |_| Ok(()),
    )
    .expect("daemon starts");
    let mut shown = Shown::default();
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.to_owned()];

    // A session from a minted token response.
    let minted = idp.mint("tokd-test", SCOPE).expect("mint");
    for field in ["access_token", "refresh_token", "id_token"] {
        secrets.push(json_field(&minted, field).unwrap_or_else(|| panic!("minted {field}")));
    }
    let minted_rt = json_field(&minted, "refresh_token").expect("refresh token");
    let out = shown.run(&d, &["add", "work", "--provider", "idp"], Some(&minted));
    assert!(out.status.success(), "add: {}", lossy(&out.stderr));

    // A watcher for the whole run.
    let mut watch = Watched::spawn(&d, &["watch"]);
    watch.line("watch to start", |l| {
        l.contains("watching").then(String::new)
    });
    let mut watch_json = Watched::spawn(&d, &["watch", "--json"]);
    watch_json.line("watch --json to start", |l| {
        l.contains("watching").then(String::new)
    });

    // Every form of get.
    let first = shown.get(&d, &["get", "work"]);
    let json = shown.get(&d, &["get", "work", "--json"]);
    assert_eq!(json_field(&json, "access_token").as_deref(), Some(&*first));
    let header = shown.get(&d, &["get", "work", "--header"]);
    assert!(header.ends_with(&first), "{header}");
    shown.get(&d, &["get", "work", "--id-token"]);

    // A refresh: the refresh token rotates, a new access and ID token come.
    let out = shown.run(&d, &["refresh", "work"], None);
    assert!(out.status.success(), "refresh: {}", lossy(&out.stderr));
    watch.line("the refreshed event", |l| {
        l.contains("refreshed").then(String::new)
    });
    watch_json.line("the refreshed event (json)", |l| {
        l.contains("\"refreshed\"").then(String::new)
    });
    let second = shown.get(&d, &["get", "work"]);
    assert_ne!(second, first, "the refresh brought a new access token");
    shown.get(&d, &["get", "work", "--id-token"]);

    // What shows sessions.
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["status", "work", "--json"],
        &["list"],
    ] {
        shown.run(&d, args, None);
    }

    // A device-flow login.
    let mut login = Watched::spawn(&d, &["login", "dev", "--provider", "idp"]);
    let code = login.line("the user code", |l| {
        l.strip_prefix("and enter the code:")
            .map(|c| c.trim().to_owned())
    });
    idp.approve_device(&code).expect("approve");
    assert_eq!(login.finish(), Some(0), "login: {}", login.stderr());
    shown.get(&d, &["get", "dev"]);
    shown.get(&d, &["get", "dev", "--id-token"]);
    shown.get(&d, &["get", "dev", "--json"]);

    // A refresh the provider refuses: the grant is revoked, the session needs a login.
    idp.revoke_grant(&minted_rt).expect("revoke the grant");
    let out = shown.run(&d, &["refresh", "work"], None);
    assert_eq!(out.status.code(), Some(1), "{}", lossy(&out.stderr));
    watch.line("the needs_login event", |l| {
        l.contains("needs_login").then(String::new)
    });
    assert_eq!(d.session_json("work")["state"], "needs_login");
    shown.run(&d, &["status", "--json"], None);

    // Logout (revocation at the provider) and rm.
    let out = shown.run(&d, &["logout", "dev"], None);
    assert!(out.status.success(), "logout: {}", lossy(&out.stderr));
    let out = shown.run(&d, &["rm", "work"], None);
    assert!(out.status.success(), "rm: {}", lossy(&out.stderr));
    watch.line("the removed event", |l| {
        l.contains("removed").then(String::new)
    });

    // Bad adds whose input holds token-looking values.
    let fake_at = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJsZWFrIn0.bad-add-access-token-must-not-show";
    let fake_rt = "bad-add-refresh-token-must-never-be-shown-anywhere";
    secrets.extend([fake_at.to_owned(), fake_rt.to_owned()]);
    let truncated = format!(r#"{{"access_token":"{fake_at}","refresh_token":"{fake_rt}","#);
    let out = shown.run(&d, &["add", "bad", "--provider", "idp"], Some(&truncated));
    assert_eq!(out.status.code(), Some(2), "{}", lossy(&out.stderr));
    let no_access = format!(r#"{{"token":{{"value":"{fake_at}"}},"refresh_token":"{fake_rt}"}}"#);
    let out = shown.run(&d, &["add", "bad", "--provider", "idp"], Some(&no_access));
    assert_eq!(out.status.code(), Some(2), "{}", lossy(&out.stderr));
    let fine = token_response(fake_at, fake_rt, 3600);
    let out = shown.run(&d, &["add", "bad", "--provider", "nope"], Some(&fine));
    assert_eq!(out.status.code(), Some(2), "{}", lossy(&out.stderr));

    // A reload and a stop.
    let before = d.log().matches("config reloaded").count();
    d.signal(rustix::process::Signal::HUP);
    wait_for(Duration::from_secs(15), "the reload", || {
        (d.log().matches("config reloaded").count() > before).then_some(())
    });
    for w in [&mut watch, &mut watch_json] {
        w.kill();
    }
    shown.add("tokd watch (stdout)", watch.stdout());
    shown.add("tokd watch (stderr)", watch.stderr());
    shown.add("tokd watch --json (stdout)", watch_json.stdout());
    shown.add("tokd watch --json (stderr)", watch_json.stderr());
    shown.add("tokd login (stdout)", login.stdout());
    shown.add("tokd login (stderr)", login.stderr());
    let status = d.stop().expect("the daemon stops");
    assert!(status.success(), "exit status {status}");

    // Every credential the provider handed out, rotated and revoked ones included.
    let issued = idp.issued().expect("issued tokens");
    for token in [&first, &second] {
        assert!(
            issued.contains(token),
            "the provider's list misses a token it issued"
        );
    }
    assert!(
        issued.contains(&minted_rt),
        "the provider's list misses the minted refresh token"
    );
    // Two refresh tokens of `work` (minted, rotated), one of `dev`, the device code, at
    // least three access tokens: the rotated refresh token is in the list.
    assert!(
        issued.len() >= 7,
        "only {} issued tokens listed",
        issued.len()
    );
    secrets.extend(issued);
    secrets.extend(shown.printed.iter().cloned());
    secrets.sort();
    secrets.dedup();

    let log = d.log();
    assert!(
        log.contains(" TRACE "),
        "the daemon did not log at trace level, so this test proves nothing:\n{log}"
    );
    let files = snapshot(&d.state_dir());
    assert!(!files.is_empty(), "nothing on disk under the state dir");
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(path, bytes)| (path.display().to_string(), lossy(bytes)))
        .collect();
    let mut leaks = Vec::new();
    for secret in &secrets {
        for needle in needles(secret) {
            if log.contains(&needle) {
                leaks.push(format!("the daemon log holds {needle:?}"));
            }
            for (what, text) in &shown.texts {
                if text.contains(&needle) {
                    leaks.push(format!("{what} holds {needle:?}"));
                }
            }
            for (path, text) in &files {
                if text.contains(&needle) {
                    leaks.push(format!("{path} holds {needle:?}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
