//! Proxies: plain http (loopback refreshes, refresh tokens and client secrets in the clear)
//! never goes through one; https identity providers are reached through `HTTPS_PROXY` by
//! CONNECT, TLS end to end, except the hosts `NO_PROXY` names. A recording proxy on
//! 127.0.0.1 shows what would have left.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokd_e2e::idp::TestIdp;
use tokd_e2e::{Launch, TestDaemon, idp_provider, stderr, stdout, token_response};

/// Credentials in the proxy URLs: they must never be printed.
const PROXY_USER: &str = "proxyuser";
const PROXY_PASSWORD: &str = "proxypass-9d41";
const REFRESH_TOKEN: &str = "rt-never-through-a-proxy-5e07";
const CLIENT_SECRET: &str = "cs-never-through-a-proxy-81aa";
const HOST: &str = "idp.invalid.test";

/// A proxy that records every byte each connection sends. A CONNECT is answered `200` and
/// what follows (a TLS ClientHello) is recorded before the connection is closed; anything
/// else is closed unanswered.
struct Recorder {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (flag, record) = (stop.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let record = record.clone();
                    std::thread::spawn(move || record_one(conn, &record));
                }
            }
        });
        Recorder {
            port,
            stop,
            connections,
        }
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT`.
    fn url(&self) -> String {
        format!(
            "http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{}",
            self.port
        )
    }

    fn connections(&self) -> Vec<Vec<u8>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn record_one(mut conn: TcpStream, record: &Mutex<Vec<Vec<u8>>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The request head, up to the blank line (or whatever arrives before the timeout).
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    if seen.starts_with(b"CONNECT ") {
        let _ = conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        if let Ok(n) = conn.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
    }
    record
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(seen);
}

fn env(vars: &[(&str, String)]) -> Launch {
    Launch {
        env: vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.into()))
            .collect(),
        ..Launch::default()
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn plain_http_to_loopback_never_goes_through_a_proxy() {
    let idp = TestIdp::start().expect("the test provider starts");
    let proxy = Recorder::start();
    let url = proxy.url();
    let d = TestDaemon::launch(
        &idp_provider("idp", idp.issuer(), ""),
        env(&[
            ("http_proxy", url.clone()),
            ("HTTP_PROXY", url.clone()),
            ("ALL_PROXY", url.clone()),
            ("all_proxy", url.clone()),
            ("HTTPS_PROXY", url),
        ]),
        |_| Ok(()),
    )
    .expect("daemon starts");
    d.add_as(
        "s",
        "idp",
        &idp.mint("tokd-test", "openid offline_access api")
            .expect("mint"),
    );
    idp.reset_stats().expect("reset");
    // Discovery and the refresh, both plain http to 127.0.0.1.
    let out = d.tokd(&["refresh", "s"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), d.log());
    assert_eq!(idp.stats().expect("stats").refresh_requests, 1);
    assert_eq!(d.session_json("s")["refresh_count"], 1);
    assert!(
        proxy.connections().is_empty(),
        "the proxy received {:?}",
        proxy
            .connections()
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
    );
    // What is ignored is named at start; what is followed is described without credentials.
    let log = d.log();
    let warning = log
        .lines()
        .find(|l| l.contains("proxy variables ignored"))
        .unwrap_or_else(|| panic!("no warning about the ignored variables:\n{log}"));
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        assert!(warning.contains(var), "{warning}");
    }
    assert!(
        log.contains(&format!("https via http://127.0.0.1:{}", proxy.port)),
        "{log}"
    );
    for secret in [PROXY_USER, PROXY_PASSWORD] {
        assert!(!log.contains(secret), "the log names {secret}:\n{log}");
    }
}

/// A daemon with one https provider (`https://idp.invalid.test/token`), a session of it,
/// and `vars` in its environment; returns it after one forced refresh, and that refresh's
/// error output.
fn https_refresh(vars: &[(&str, String)]) -> (TestDaemon, String) {
    let config = format!(
        "[providers.corp]\ntoken_endpoint = \"https://{HOST}/token\"\nclient_id = \"c\"\n\
         client_secret = \"{CLIENT_SECRET}\"\nrequest_timeout = \"5s\"\n"
    );
    let d = TestDaemon::launch(&config, env(vars), |_| Ok(())).expect("daemon starts");
    d.add("s", &token_response("at-1", REFRESH_TOKEN, 600));
    let out = d.tokd(&["refresh", "s"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    (d, stderr(&out))
}

#[test]
fn https_goes_through_https_proxy_by_connect_with_tls_end_to_end() {
    let proxy = Recorder::start();
    let (d, _) = https_refresh(&[("HTTPS_PROXY", proxy.url())]);
    let connections = proxy.connections();
    let first = connections
        .first()
        .expect("the refresh went through the proxy");
    let head = String::from_utf8_lossy(first);
    assert!(
        head.starts_with(&format!("CONNECT {HOST}:443 HTTP/1.1\r\n")),
        "{head}"
    );
    // After the proxy's 200, the client speaks TLS: a handshake record, never the form.
    let end = first
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete CONNECT head")
        + 4;
    assert_eq!(
        first.get(end),
        Some(&0x16),
        "a TLS handshake follows the CONNECT"
    );
    for c in &connections {
        for secret in [REFRESH_TOKEN, CLIENT_SECRET, "refresh_token"] {
            assert!(!contains(c, secret), "the proxy saw {secret} in clear");
        }
    }
    let shown = format!("https via http://127.0.0.1:{}", proxy.port);
    assert!(d.log().contains(&shown), "{}", d.log());
    // `tokd status` shows the proxy in force too, in both forms.
    let status = d.tokd(&["status"]);
    assert!(
        stdout(&status).contains(&format!("proxy: {shown}")),
        "{}",
        stdout(&status)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&d.tokd(&["status", "--json"]).stdout).expect("json");
    assert!(
        json["daemon"]["proxy"]
            .as_str()
            .is_some_and(|p| p.starts_with(&shown)),
        "{json}"
    );
}

#[test]
fn no_proxy_names_a_host_that_is_reached_directly() {
    let proxy = Recorder::start();
    let (_d, error) = https_refresh(&[
        ("HTTPS_PROXY", proxy.url()),
        ("NO_PROXY", format!("example.com, {HOST}")),
    ]);
    // Direct: the name does not resolve, and the proxy hears nothing.
    assert!(error.contains("cannot connect"), "{error}");
    assert!(proxy.connections().is_empty(), "the proxy was used");
}
