//! The credential-helper adapters with the real clients: git (clone over smart HTTP through
//! `git http-backend`), kubectl (exec credential plugin), and `docker-credential-tokd`
//! spoken to exactly as docker does.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use tokd_e2e::githttp::{GitServer, create_repo, git};
use tokd_e2e::httpd::{Connection, Response, Server};
use tokd_e2e::idp::{TestIdp, base64url};
use tokd_e2e::{
    TestDaemon, binaries, idp_provider, isolate_env, run_with_stdin, stderr, stdout, token_response,
};

// ---------------------------------------------------------------------------------------
// Shared set-up

/// The session's refresh count.
fn refresh_count(d: &TestDaemon, name: &str) -> u64 {
    d.session_json(name)["refresh_count"]
        .as_u64()
        .expect("refresh_count")
}

/// A daemon on the test provider with session `name` minted there (tokens live 10 min).
fn idp_daemon(idp: &TestIdp, name: &str, helpers: &str) -> TestDaemon {
    idp.set_access_ttl(600).expect("ttl");
    let d = TestDaemon::start_with(&format!(
        "{}{helpers}",
        idp_provider("idp", idp.issuer(), "")
    ))
    .expect("daemon starts");
    let minted = idp
        .mint("tokd-test", "openid offline_access api")
        .expect("mint");
    d.add_as(name, "idp", &minted);
    d
}

/// `date -u -d @SECS`, in RFC 3339: an independent check of the plugin's timestamps.
fn rfc3339(secs: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    stdout(&out).trim().to_owned()
}

// ---------------------------------------------------------------------------------------
// git

/// The `credential.helper` value that runs this test's `tokd` against `d`.
fn helper_command(d: &TestDaemon) -> String {
    format!(
        "!'{}' --socket '{}' git-credential --config '{}'",
        binaries().tokd.display(),
        d.socket().display(),
        d.config_path().display()
    )
}

/// `git clone URL` into a fresh directory under `home`, with only tokd as credential helper
/// (and the `-c` options in `config`); the clone's directory and git's output.
fn clone(d: &TestDaemon, home: &Path, url: &str, config: &[&str]) -> (PathBuf, Output) {
    let target = home.join(format!("clone-{}", next_number()));
    let mut cmd = git(home);
    // An empty helper first clears any inherited list.
    cmd.args(["-c", "credential.helper="])
        .arg("-c")
        .arg(format!("credential.helper={}", helper_command(d)));
    for c in config {
        cmd.args(["-c", c]);
    }
    let out = cmd
        .args(["clone", "--quiet", url])
        .arg(&target)
        .output()
        .expect("git runs");
    (target, out)
}

/// A fresh number per clone, so clones never collide.
fn next_number() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

/// `tokd git-credential OP` with git's lines on stdin.
fn git_credential(d: &TestDaemon, args: &[&str], input: &str) -> Output {
    let config = d.config_path();
    let mut all = vec![
        "git-credential",
        "--config",
        config.to_str().expect("utf-8"),
    ];
    all.extend_from_slice(args);
    d.tokd_with_stdin(&all, Some(input))
}

#[test]
fn git_clones_with_the_sessions_token_and_unmapped_hosts_get_nothing() {
    let repos = tempfile::tempdir().expect("tempdir");
    create_repo(repos.path(), "repo.git", "README", "hello from tokd\n").expect("repo");
    let server = GitServer::start(repos.path()).expect("server");
    let port = server.port();
    // The test server speaks plain http, which only a key that says so may answer.
    let d = TestDaemon::start_with(&format!(
        "{}\n[helpers.git.\"http://127.0.0.1:{port}\"]\nsession = \"git\"\n",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("daemon");
    d.add("git", &token_response("git-token-1", "r1", 3600));
    // No username in the mapping: 127.0.0.1 is no known forge, so `oauth2`.
    server.accept("oauth2", "git-token-1");
    let home = tempfile::tempdir().expect("home");

    let (dir, out) = clone(
        &d,
        home.path(),
        &format!("http://127.0.0.1:{port}/repo.git"),
        &[],
    );
    assert!(out.status.success(), "clone failed: {}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.join("README")).expect("cloned file"),
        "hello from tokd\n"
    );
    let seen = server.seen();
    assert_eq!(seen[0].status, 401, "git asks without credentials first");
    assert!(
        seen.iter()
            .any(|s| s.status == 200 && s.authorization.is_some()),
        "{seen:?}"
    );

    // `localhost` is not mapped: the helper answers nothing, git has no credential.
    let before = server.seen().len();
    let (_, out) = clone(
        &d,
        home.path(),
        &format!("http://localhost:{port}/repo.git"),
        &[],
    );
    assert!(!out.status.success(), "unmapped host cloned");
    let err = stderr(&out);
    assert!(
        err.contains("could not read Username") || err.contains("Authentication failed"),
        "{err}"
    );
    assert!(!err.contains("git-token-1"), "{err}");
    let later = &server.seen()[before..];
    assert!(!later.is_empty(), "git reached the server");
    assert!(later.iter().all(|s| s.authorization.is_none()), "{later:?}");
}

#[test]
fn a_key_without_a_scheme_never_sends_the_token_over_plain_http() {
    let repos = tempfile::tempdir().expect("tempdir");
    create_repo(repos.path(), "repo.git", "README", "plain\n").expect("repo");
    let server = GitServer::start(repos.path()).expect("server");
    let port = server.port();
    // No scheme: https only. The server is plain http.
    let mut d = TestDaemon::start_with(&format!(
        "{}\n[helpers.git.\"127.0.0.1:{port}\"]\nsession = \"git\"\n",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("daemon");
    d.add("git", &token_response("plain-http-token", "r1", 3600));
    server.accept("oauth2", "plain-http-token");
    let home = tempfile::tempdir().expect("home");
    let url = format!("http://127.0.0.1:{port}/repo.git");

    let (_, out) = clone(&d, home.path(), &url, &[]);
    assert!(
        !out.status.success(),
        "cloned over plain http with the token"
    );
    let seen = server.seen();
    assert!(!seen.is_empty(), "git reached the server");
    assert!(
        seen.iter().all(|s| s.authorization.is_none()),
        "the bearer went over plain http: {seen:?}"
    );
    let err = stderr(&out);
    assert!(!err.contains("plain-http-token"), "{err}");
    // The helper says why it kept quiet, naming the entry.
    assert!(
        err.contains("over plain http") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    // The same by hand, and with `--session` (for https remotes only).
    let input = format!("protocol=http\nhost=127.0.0.1:{port}\n\n");
    for args in [&["get"][..], &["--session", "git", "get"]] {
        let out = git_credential(&d, args, &input);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    let out = git_credential(
        &d,
        &["get"],
        &format!("protocol=https\nhost=127.0.0.1:{port}\n"),
    );
    assert!(
        stdout(&out).contains("password=plain-http-token"),
        "https is answered: {}",
        stdout(&out)
    );

    // A key that says http:// allows it.
    d.set_extra_config(&format!(
        "{}\n[helpers.git.\"http://127.0.0.1:{port}\"]\nsession = \"git\"\n",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("config");
    let (dir, out) = clone(&d, home.path(), &url, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.join("README")).expect("cloned"),
        "plain\n"
    );
}

#[test]
fn git_picks_the_longest_path_prefix_with_use_http_path() {
    let repos = tempfile::tempdir().expect("tempdir");
    create_repo(repos.path(), "acme/tools.git", "acme", "acme\n").expect("repo");
    create_repo(repos.path(), "misc/x.git", "misc", "misc\n").expect("repo");
    let server = GitServer::start(repos.path()).expect("server");
    let port = server.port();
    let d = TestDaemon::start_with(&format!(
        "{}\n[helpers.git.\"http://127.0.0.1:{port}\"]\nsession = \"personal\"\n\
         [helpers.git.\"http://127.0.0.1:{port}/acme\"]\nsession = \"acme\"\n\
         username = \"x-access-token\"\n",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("daemon");
    d.add("personal", &token_response("personal-token", "r1", 3600));
    d.add("acme", &token_response("acme-token", "r2", 3600));
    let home = tempfile::tempdir().expect("home");
    let base = format!("http://127.0.0.1:{port}");
    let use_path = ["credential.useHttpPath=true"];

    server.accept("x-access-token", "acme-token");
    let (dir, out) = clone(
        &d,
        home.path(),
        &format!("{base}/acme/tools.git"),
        &use_path,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.join("acme").exists());

    server.accept("oauth2", "personal-token");
    let (dir, out) = clone(&d, home.path(), &format!("{base}/misc/x.git"), &use_path);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.join("misc").exists());

    // Without useHttpPath git sends no path: only the host entry can answer.
    server.accept("x-access-token", "acme-token");
    let (_, out) = clone(&d, home.path(), &format!("{base}/acme/tools.git"), &[]);
    assert!(
        !out.status.success(),
        "the path entry answered without a path"
    );
}

#[test]
fn a_refused_token_is_erased_and_the_session_refreshed() {
    let idp = TestIdp::start().expect("the test provider starts");
    let repos = tempfile::tempdir().expect("tempdir");
    create_repo(repos.path(), "repo.git", "README", "fresh\n").expect("repo");
    let server = GitServer::start(repos.path()).expect("server");
    let port = server.port();
    let d = idp_daemon(
        &idp,
        "s",
        &format!(
            "[helpers.git.\"http://127.0.0.1:{port}\"]\nsession = \"s\"\nusername = \"bot\"\n"
        ),
    );
    let first = d.get("s", &[]).expect("token");
    assert_eq!(refresh_count(&d, "s"), 0);
    let url = format!("http://127.0.0.1:{port}/repo.git");
    let home = tempfile::tempdir().expect("home");

    // An erase of a password tokd did not give changes nothing.
    let out = git_credential(
        &d,
        &["erase"],
        &format!("protocol=http\nhost=127.0.0.1:{port}\nusername=bot\npassword=someone-elses\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(refresh_count(&d, "s"), 0);

    // The server refuses the current token: git erases it, tokd refreshes.
    server.accept("bot", "a-token-the-server-wants");
    let (_, out) = clone(&d, home.path(), &url, &[]);
    assert!(!out.status.success(), "the server refused the token");
    assert!(!stderr(&out).contains(&first), "token in git's output");
    assert_eq!(refresh_count(&d, "s"), 1, "{}", stderr(&out));
    let second = d.get("s", &[]).expect("token");
    assert_ne!(first, second, "a new token after the erase");
    assert!(idp.is_active(&second).expect("introspect"));

    // The next clone gets the new token.
    server.accept("bot", &second);
    let (dir, out) = clone(&d, home.path(), &url, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.join("README")).expect("file"),
        "fresh\n"
    );
}

#[test]
fn git_credential_speaks_the_helper_protocol() {
    let mut d = TestDaemon::start().expect("daemon");
    d.set_extra_config(&format!(
        "{}\n[helpers.git.\"github.com/acme\"]\nsession = \"gh\"\n\
         [helpers.git.\"git.example.com\"]\nsession = \"missing\"\n\
         [helpers.git.\"expired.example.com\"]\nsession = \"old\"\n",
        tokd_e2e::DEFAULT_PROVIDERS
    ))
    .expect("config");
    d.add("gh", &token_response("gh-token", "r1", 3600));
    let expires_s = d.session_json("gh")["expires_at"]
        .as_i64()
        .expect("expiry")
        .div_euclid(1000);

    // A mapped remote: username (github's default), bearer, expiry.
    let input = "protocol=https\nhost=github.com\npath=acme/tools.git\n\n";
    let out = git_credential(&d, &["get"], input);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("username=x-access-token\npassword=gh-token\npassword_expiry_utc={expires_s}\n")
    );
    let out = git_credential(&d, &["--username", "me", "get"], input);
    assert!(
        stdout(&out).starts_with("username=me\npassword=gh-token\n"),
        "{}",
        stdout(&out)
    );

    // Not mapped (another org; no path at all): nothing, success, so git asks elsewhere.
    for input in [
        "protocol=https\nhost=github.com\npath=other/x.git\n",
        "protocol=https\nhost=github.com\n",
        "protocol=https\nhost=gitlab.com\n",
    ] {
        let out = git_credential(&d, &["get"], input);
        assert!(out.status.success(), "{input}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{input}");
        assert_eq!(stderr(&out), "", "{input}");
    }

    // `--session` answers for every remote, without the config.
    let out = d.tokd_with_stdin(
        &["git-credential", "--session", "gh", "get"],
        Some("protocol=https\nhost=bitbucket.org\n"),
    );
    assert!(
        stdout(&out).starts_with("username=x-token-auth\npassword=gh-token\n"),
        "{}",
        stdout(&out)
    );

    // store and unknown operations: nothing to do.
    for op in ["store", "frobnicate"] {
        let out = git_credential(
            &d,
            &[op],
            "protocol=https\nhost=github.com\nusername=u\npassword=gh-token\n",
        );
        assert!(out.status.success(), "{op}");
        assert_eq!(stdout(&out), "", "{op}");
    }

    // A mapped session that does not exist: exit 4, says how to create it.
    let out = git_credential(&d, &["get"], "protocol=https\nhost=git.example.com\n");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("tokd login missing"),
        "{}",
        stderr(&out)
    );

    // A session whose token expired without a refresh token: exit 1, says to log in.
    d.add(
        "old",
        r#"{"access_token":"old-token","token_type":"Bearer","expires_in":1}"#,
    );
    tokd_e2e::wait_for(
        std::time::Duration::from_secs(10),
        "the token to expire",
        || d.get("old", &["--min-valid", "0s"]).err(),
    );
    let out = git_credential(&d, &["get"], "protocol=https\nhost=expired.example.com\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("tokd login old"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("old-token"), "{}", stderr(&out));

    // Garbage on stdin and a broken [helpers] table are usage errors naming the problem.
    let out = git_credential(&d, &["get"], "protocol=https\nnot a pair\n");
    assert_eq!(out.status.code(), Some(2));
    d.set_extra_config("[helpers.git.\"github.com\"]\nsesion = \"gh\"\n")
        .expect("config");
    let out = git_credential(&d, &["get"], "protocol=https\nhost=github.com\n");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&d.config_path().display().to_string()) && err.contains("sesion"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// kubectl

/// A throwaway self-signed certificate for 127.0.0.1 (made by `openssl`), as a TLS wrapper
/// for [`Server::start_with`]: client-go sends credentials only over TLS (kubectl#744).
fn tls(dir: &Path) -> impl Fn(TcpStream) -> Option<Box<dyn Connection>> + Send + Sync + 'static {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl: {}", stderr(&out));
    let certs = CertificateDer::pem_file_iter(&cert)
        .expect("cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_file(&key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let config = Arc::new(config);
    move |tcp| {
        let session = rustls::ServerConnection::new(Arc::clone(&config)).ok()?;
        Some(Box::new(rustls::StreamOwned::new(session, tcp)))
    }
}

/// An API server (https) that answers `/version` to `Bearer <token>` only.
fn api_server(dir: &Path, token: &str) -> Server {
    let expected = format!("Bearer {token}");
    Server::start_with(
        move |req| {
            if req.header("authorization") != Some(expected.as_str()) {
                return Response::new(
                    401,
                    r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}"#,
                )
                .header("Content-Type", "application/json");
            }
            match req.path.as_str() {
                "/version" => Response::new(
                    200,
                    r#"{"major":"1","minor":"32","gitVersion":"v1.32.0-tokd-test"}"#,
                )
                .header("Content-Type", "application/json"),
                _ => Response::new(404, "not found"),
            }
        },
        tls(dir),
    )
    .expect("api server")
}

/// A kubeconfig whose user runs `tokd kubectl SESSION` as its exec plugin.
fn kubeconfig(
    dir: &Path,
    d: &TestDaemon,
    server: &Server,
    session: &str,
    version: &str,
) -> PathBuf {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": format!("https://127.0.0.1:{}", server.port()),
            // The certificate is a throwaway; what is tested is the exec plugin.
            "insecure-skip-tls-verify": true,
        }}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "tokd"}}],
        "current-context": "test",
        "users": [{"name": "tokd", "user": {"exec": {
            "apiVersion": format!("client.authentication.k8s.io/{version}"),
            "command": binaries().tokd,
            "args": ["--socket", d.socket(), "kubectl", session],
            "interactiveMode": "Never",
        }}}],
    });
    let path = dir.join(format!("kubeconfig-{session}-{version}"));
    std::fs::write(&path, config.to_string()).expect("kubeconfig");
    path
}

fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs")
}

#[test]
fn kubectl_authenticates_with_the_exec_plugin() {
    let d = TestDaemon::start().expect("daemon");
    d.add("k8s", &token_response("k8s-token", "r1", 3600));
    d.add("wrong", &token_response("not-the-k8s-token", "r2", 3600));
    let home = tempfile::tempdir().expect("home");
    let server = api_server(home.path(), "k8s-token");

    for version in ["v1", "v1beta1"] {
        let config = kubeconfig(home.path(), &d, &server, "k8s", version);
        let out = kubectl(home.path(), &config, &["get", "--raw", "/version"]);
        assert!(out.status.success(), "{version}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("v1.32.0-tokd-test"),
            "{}",
            stdout(&out)
        );
    }
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s.path == "/version" && s.status == 200),
        "client-go sent the plugin's token"
    );

    // Another session's token is refused by the server, and kubectl fails.
    let before = server.seen().len();
    let config = kubeconfig(home.path(), &d, &server, "wrong", "v1");
    let out = kubectl(home.path(), &config, &["get", "--raw", "/version"]);
    assert!(!out.status.success(), "a wrong token was accepted");
    let later = &server.seen()[before..];
    assert!(
        later
            .iter()
            .any(|s| s.authorization.as_deref() == Some("Bearer not-the-k8s-token")),
        "{later:?}"
    );
    assert!(later.iter().all(|s| s.status == 401), "{later:?}");
}

/// `tokd kubectl ARGS…` with `KUBERNETES_EXEC_INFO` set (or not), parsed.
fn plugin(d: &TestDaemon, args: &[&str], exec_info: Option<&str>) -> serde_json::Value {
    let mut cmd = Command::new(&binaries().tokd);
    cmd.arg("--socket")
        .arg(d.socket())
        .arg("kubectl")
        .args(args);
    isolate_env(&mut cmd, d.dir.path());
    cmd.env_remove("KUBERNETES_EXEC_INFO");
    if let Some(info) = exec_info {
        cmd.env("KUBERNETES_EXEC_INFO", info);
    }
    let out = run_with_stdin(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("an ExecCredential")
}

#[test]
fn the_kubectl_plugin_prints_an_exec_credential() {
    let d = TestDaemon::start().expect("daemon");
    // The id_token expires in 2 h, the access token in 1 h: each reports its own expiry.
    let id_exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        + 7200;
    let id_token = format!(
        "{}.{}.c2ln",
        base64url(br#"{"alg":"RS256","typ":"JWT"}"#),
        base64url(
            format!(r#"{{"iss":"https://id.example.com","sub":"alice","exp":{id_exp}}}"#)
                .as_bytes()
        )
    );
    d.add(
        "k8s",
        &format!(
            r#"{{"access_token":"k8s-access","token_type":"Bearer","expires_in":3600,"refresh_token":"r-k8s","id_token":"{id_token}"}}"#
        ),
    );
    let expires_s = d.session_json("k8s")["expires_at"]
        .as_i64()
        .expect("expiry")
        .div_euclid(1000);

    let cred = plugin(&d, &["k8s"], None);
    assert_eq!(
        cred,
        serde_json::json!({
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {"token": "k8s-access", "expirationTimestamp": rfc3339(expires_s)},
        })
    );
    let info = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}"#;
    let cred = plugin(&d, &["k8s"], Some(info));
    assert_eq!(cred["apiVersion"], "client.authentication.k8s.io/v1beta1");
    assert_eq!(cred["status"]["token"], "k8s-access");

    let cred = plugin(&d, &["k8s", "--id-token"], None);
    assert_eq!(cred["status"]["token"], id_token.as_str());
    assert_eq!(cred["status"]["expirationTimestamp"], rfc3339(id_exp));

    // No id_token stored: a clear error, nothing on stdout.
    d.add("plain", &token_response("plain", "r", 3600));
    let out = d.tokd(&["kubectl", "plain", "--id-token"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("no id_token"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------
// docker

/// `docker-credential-tokd VERB` as docker runs it: no flags, the daemon and config from the
/// environment, the input on stdin.
fn docker_helper(d: &TestDaemon, verb: &str, input: &str) -> Output {
    let mut cmd = Command::new(&binaries().docker_credential);
    isolate_env(&mut cmd, d.dir.path());
    cmd.env("TOKD_SOCKET", d.socket())
        .env("TOKD_CONFIG", d.config_path())
        .arg(verb);
    run_with_stdin(cmd, Some(input))
}

const DOCKER_HELPERS: &str = "
[helpers.docker.\"registry.example.com\"]
session = \"registry\"
username = \"robot\"
[helpers.docker.\"http://localhost:5000\"]
session = \"registry\"
";

#[test]
fn docker_credential_tokd_speaks_the_helper_protocol() {
    let d = TestDaemon::start_with(&format!("{}{DOCKER_HELPERS}", tokd_e2e::DEFAULT_PROVIDERS))
        .expect("daemon");
    d.add("registry", &token_response("registry-token", "r1", 3600));

    for url in [
        "https://registry.example.com/v1/",
        "registry.example.com",
        "registry.example.com\n",
    ] {
        let out = docker_helper(&d, "get", url);
        assert!(out.status.success(), "{url:?}: {}", stdout(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"ServerURL": url.trim(), "Username": "robot", "Secret": "registry-token"}),
            "{url:?}"
        );
    }
    // `localhost:5000` allows plain http (its key says so); registry.example.com does not.
    for url in ["http://localhost:5000", "localhost:5000"] {
        let out = docker_helper(&d, "get", url);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["Username"], "oauth2", "{url}");
        assert_eq!(json["Secret"], "registry-token", "{url}");
    }
    let out = docker_helper(&d, "get", "http://registry.example.com");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "credentials not found in native keychain"
    );
    assert!(stderr(&out).contains("over plain http"), "{}", stderr(&out));

    // Unknown registries are docker's "not found".
    let out = docker_helper(&d, "get", "https://index.docker.io/v1/");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "credentials not found in native keychain"
    );

    let out = docker_helper(&d, "list", "");
    assert!(out.status.success(), "{}", stdout(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"registry.example.com": "robot", "localhost:5000": "oauth2"})
    );

    // store: accepted (and ignored) for mapped registries, refused for others.
    let store = |url: &str| {
        docker_helper(
            &d,
            "store",
            &format!(r#"{{"ServerURL":"{url}","Username":"u","Secret":"docker-secret"}}"#),
        )
    };
    let out = store("registry.example.com");
    assert!(out.status.success(), "{}", stdout(&out));
    let out = store("other.example.com");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("not mapped"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("docker-secret"));
    // The token is still tokd's.
    let out = docker_helper(&d, "get", "registry.example.com");
    assert!(stdout(&out).contains("registry-token"));

    let out = docker_helper(&d, "version", "");
    assert!(
        stdout(&out).starts_with("docker-credential-tokd (tokd) "),
        "{}",
        stdout(&out)
    );

    // Unmapped erase: nothing to do.
    let out = docker_helper(&d, "erase", "other.example.com");
    assert!(out.status.success(), "{}", stdout(&out));

    // A mapped registry whose session is missing: an error, on stdout as docker reads it.
    d.tokd(&["rm", "registry"]);
    let out = docker_helper(&d, "get", "registry.example.com");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("tokd login registry"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn docker_erase_refreshes_the_session() {
    let idp = TestIdp::start().expect("the test provider starts");
    let d = idp_daemon(&idp, "registry", DOCKER_HELPERS);
    let first = d.get("registry", &[]).expect("token");
    let out = docker_helper(&d, "erase", "https://registry.example.com/v1/");
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(refresh_count(&d, "registry"), 1);
    let out = docker_helper(&d, "get", "registry.example.com");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let second = json["Secret"].as_str().expect("secret");
    assert_ne!(second, first);
    assert!(idp.is_active(second).expect("introspect"));
}
