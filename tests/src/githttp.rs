//! A git smart-HTTP server for the credential-helper tests: [`crate::httpd`] in front of the
//! real `git http-backend` (run as a CGI program per request), behind HTTP Basic auth that
//! accepts exactly one username and password, which the test sets and changes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, bail};

use crate::httpd::{Request, Response, Seen, Server};

/// The realm in the `WWW-Authenticate` challenge.
const REALM: &str = "tokd-test";

/// A git server over plain http on 127.0.0.1.
#[derive(Debug)]
pub struct GitServer {
    server: Server,
    accepted: Arc<Mutex<Option<(String, String)>>>,
}

impl GitServer {
    /// Serves the repositories under `project_root` (all exported); nothing is accepted
    /// until [`GitServer::accept`].
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn start(project_root: &Path) -> Result<GitServer> {
        let accepted: Arc<Mutex<Option<(String, String)>>> = Arc::new(Mutex::new(None));
        let root = project_root.to_path_buf();
        let server = {
            let accepted = Arc::clone(&accepted);
            Server::start(move |req| {
                let expected = accepted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let user = expected.as_ref().and_then(|(user, password)| {
                    (req.header("authorization") == Some(&crate::idp::basic_auth(user, password)))
                        .then(|| user.clone())
                });
                match user {
                    Some(user) => http_backend(&root, req, &user),
                    None => Response::new(401, "credentials missing or wrong\n")
                        .header("WWW-Authenticate", &format!("Basic realm=\"{REALM}\"")),
                }
            })?
        };
        Ok(GitServer { server, accepted })
    }

    /// From now on, accepts exactly `username` and `password`.
    pub fn accept(&self, username: &str, password: &str) {
        *self.accepted.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((username.to_owned(), password.to_owned()));
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.server.seen()
    }
}

/// Creates the bare repository `<root>/<path>` (e.g. `acme/tools.git`) holding one commit on
/// `main` with `file` containing `content`, and returns its directory.
///
/// # Errors
/// When a git command fails.
pub fn create_repo(root: &Path, path: &str, file: &str, content: &str) -> Result<PathBuf> {
    let bare = root.join(path);
    let work = tempfile::tempdir()?;
    std::fs::create_dir_all(&bare)?;
    run(git(work.path())
        .args(["init", "--quiet", "--bare", "-b", "main"])
        .arg(&bare))?;
    run(git(work.path()).args(["init", "--quiet", "-b", "main", "."]))?;
    std::fs::write(work.path().join(file), content)?;
    run(git(work.path()).args(["add", file]))?;
    run(git(work.path()).args([
        "-c",
        "user.name=tokd test",
        "-c",
        "user.email=test@tokd.invalid",
        "commit",
        "--quiet",
        "-m",
        "first",
    ]))?;
    run(git(work.path())
        .args(["push", "--quiet"])
        .arg(&bare)
        .arg("main"))?;
    Ok(bare)
}

/// A `git` command in `dir` that reads no system or user configuration and never prompts.
pub fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().context("running git")?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(())
}

/// Runs `git http-backend` for one request (RFC 3875 CGI) and turns its output into a
/// response, `Status:` header included.
fn http_backend(root: &Path, req: &Request, user: &str) -> Response {
    let mut cmd = git(root);
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", &req.path)
        .env("QUERY_STRING", &req.query)
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .env("CONTENT_TYPE", req.header("content-type").unwrap_or(""))
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", "127.0.0.1");
    // Every request header as HTTP_*, as CGI says (http-backend reads HTTP_GIT_PROTOCOL and
    // HTTP_CONTENT_ENCODING).
    for (name, value) in &req.headers {
        if name != "authorization" {
            cmd.env(
                format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_")),
                value,
            );
        }
    }
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return Response::new(500, "cannot start git http-backend\n");
    };
    if let Some(mut stdin) = child.stdin.take() {
        let body = req.body.clone();
        // A writer thread: the backend may answer before it has read everything.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
    }
    let Ok(out) = child.wait_with_output() else {
        return Response::new(500, "git http-backend failed\n");
    };
    cgi_response(&out.stdout).unwrap_or_else(|| {
        Response::new(
            500,
            format!(
                "git http-backend answered no CGI headers: {}\n",
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
}

/// Splits CGI output into headers and body; `Status: 404 Not Found` becomes the status.
fn cgi_response(output: &[u8]) -> Option<Response> {
    let (head, body) = [&b"\r\n\r\n"[..], b"\n\n"].iter().find_map(|sep| {
        output
            .windows(sep.len())
            .position(|w| w == *sep)
            .map(|i| (&output[..i], &output[i + sep.len()..]))
    })?;
    let mut response = Response::new(200, body);
    for line in String::from_utf8_lossy(head).lines() {
        let (k, v) = line.split_once(':')?;
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            response.status = v.split(' ').next()?.parse().ok()?;
        } else {
            response.headers.push((k.to_owned(), v.to_owned()));
        }
    }
    Some(response)
}
