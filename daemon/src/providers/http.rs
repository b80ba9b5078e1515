//! Where HTTP happens: one client for every provider, no redirects, the design's timeouts,
//! bodies capped at 1 MiB, and transport failures classified.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use url::Url;

use super::ProviderError;

/// Connect timeout of every provider request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Total timeout of a token request: long enough that a slow provider is not cut off after
/// it has already rotated the refresh token.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read from a provider.
pub const MAX_BODY: usize = 1024 * 1024;

/// Builds the shared HTTP client: rustls (ring), no redirects (a refresh token must never
/// travel to another host), the design's timeouts, a User-Agent naming tokd, and only the
/// proxy of [`proxy_settings`] (https through `HTTPS_PROXY`; plain http and loopback never
/// through any proxy).
///
/// # Errors
/// When the TLS backend cannot be initialised or `HTTPS_PROXY` is unusable.
pub fn client() -> Result<reqwest::Client, String> {
    client_with(proxy_settings()?)
}

/// [`client`] with the given proxy settings.
fn client_with(proxy: &ProxySettings) -> Result<reqwest::Client, String> {
    static PROVIDER: OnceLock<()> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        // Fails only if another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    // No proxy from the environment unless added here: reqwest's own reading of it would
    // send plain-http requests (refresh tokens included) to `HTTP_PROXY` / `ALL_PROXY`.
    let mut builder = reqwest::Client::builder().no_proxy();
    if let Some(proxy) = proxy.reqwest_proxy()? {
        builder = builder.proxy(proxy);
    }
    builder
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("tokd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Proxy variables tokd never follows: they would carry plain http (loopback refreshes
/// with their refresh tokens and client secrets) to a proxy in clear text.
pub const IGNORED_PROXY_VARS: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

/// Destinations never sent through a proxy, whatever `NO_PROXY` says: the bytes must stay
/// on the machine.
const LOOPBACK_NO_PROXY: &str = "localhost, 127.0.0.0/8, ::1";

/// The proxy configuration read from the environment: `HTTPS_PROXY` (or `https_proxy`) for
/// https requests, `NO_PROXY` (or `no_proxy`) for exceptions, and the names of the proxy
/// variables that were set but are ignored.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// The https proxy; may hold credentials, so never printed as is.
    https: Option<Url>,
    /// The `NO_PROXY` list as given.
    no_proxy: Option<String>,
    /// Variables that are set (non-empty) but not followed.
    ignored: Vec<&'static str>,
}

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The proxy URL may carry a user and password.
        f.debug_struct("ProxySettings")
            .field("description", &self.description())
            .field("ignored", &self.ignored)
            .finish()
    }
}

impl ProxySettings {
    /// Reads the settings through `var` (the process environment in the daemon).
    ///
    /// # Errors
    /// When `HTTPS_PROXY` is set but is not an http(s) proxy URL (the value is not quoted:
    /// it may hold credentials).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<ProxySettings, String> {
        let first = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|n| var(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let https = first(["HTTPS_PROXY", "https_proxy"])
            .map(|(name, value)| parse_proxy(name, value.trim()))
            .transpose()?;
        let no_proxy = first(["NO_PROXY", "no_proxy"]).map(|(_, v)| v.trim().to_owned());
        let ignored = IGNORED_PROXY_VARS
            .into_iter()
            .filter(|n| var(n).is_some_and(|v| !v.trim().is_empty()))
            .collect();
        Ok(ProxySettings {
            https,
            no_proxy,
            ignored,
        })
    }

    /// A printable, credential-free description of the proxy in force, e.g.
    /// `https via http://proxy.corp:3128 (no_proxy: .corp)`; `None` when every request goes
    /// direct.
    pub fn description(&self) -> Option<String> {
        let proxy = self.https.as_ref()?;
        let host = proxy.host_str().unwrap_or_default();
        let port = proxy
            .port_or_known_default()
            .map_or_else(String::new, |p| format!(":{p}"));
        let mut text = format!("https via {}://{host}{port}", proxy.scheme());
        if let Some(list) = self.no_proxy.as_deref() {
            let clean: String = list.chars().filter(|c| !c.is_control()).take(200).collect();
            text.push_str(&format!(" (no_proxy: {clean})"));
        }
        Some(text)
    }

    /// The reqwest proxy: https destinations only, `NO_PROXY` and loopback excepted.
    fn reqwest_proxy(&self) -> Result<Option<reqwest::Proxy>, String> {
        let Some(url) = &self.https else {
            return Ok(None);
        };
        let except = match self.no_proxy.as_deref() {
            Some(list) => format!("{list}, {LOOPBACK_NO_PROXY}"),
            None => LOOPBACK_NO_PROXY.to_owned(),
        };
        let proxy = reqwest::Proxy::https(url.as_str())
            .map_err(|_| "HTTPS_PROXY is not a usable proxy URL".to_owned())?;
        Ok(Some(proxy.no_proxy(reqwest::NoProxy::from_string(&except))))
    }
}

/// Parses a proxy variable's value: `http://` or `https://` URL, or `host:port` (http).
fn parse_proxy(name: &str, value: &str) -> Result<Url, String> {
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| {
        format!("{name} is not a proxy URL ({e}); use http://HOST:PORT or https://HOST:PORT")
    })?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "http" | "https" => Err(format!("{name} names no proxy host")),
        other => Err(format!(
            "{name} uses {other:?}, which tokd does not support; use an http or https proxy"
        )),
    }
}

/// The proxy settings of this process, read from its environment once.
///
/// # Errors
/// When `HTTPS_PROXY` is unusable (see [`ProxySettings::from_lookup`]).
pub fn proxy_settings() -> Result<&'static ProxySettings, String> {
    static SETTINGS: OnceLock<Result<ProxySettings, String>> = OnceLock::new();
    SETTINGS
        .get_or_init(|| ProxySettings::from_lookup(|n| std::env::var(n).ok()))
        .as_ref()
        .map_err(Clone::clone)
}

/// A printable, credential-free description of the proxy in force (for `tokd status` and
/// the start-up log); `None` when requests go direct.
pub fn proxy_description() -> Option<String> {
    proxy_settings().ok().and_then(ProxySettings::description)
}

/// Logs, once at start, the proxy in force and the proxy variables that are ignored (by
/// name, never their values).
pub fn log_proxy_settings() {
    let Ok(settings) = proxy_settings() else {
        return;
    };
    if !settings.ignored.is_empty() {
        tracing::warn!(
            ignored = %settings.ignored.join(", "),
            "proxy variables ignored: tokd never sends plain http through a proxy; \
             https uses HTTPS_PROXY only"
        );
    }
    if let Some(proxy) = settings.description() {
        tracing::info!(proxy = %proxy, "proxy for identity providers");
    }
}

/// An HTTP answer, body read in full (up to [`MAX_BODY`]).
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

/// Sends a request and reads the whole answer.
///
/// # Errors
/// [`ProviderError::Retryable`] for connect failures, timeouts (marked "sent, no answer"
/// when the request had left), and bodies over [`MAX_BODY`].
pub async fn send(request: RequestBuilder, what: &str) -> Result<Answer, ProviderError> {
    let mut response = request
        .send()
        .await
        .map_err(|e| transport_error(&e, what))?;
    let status = response.status();
    let headers = response.headers().clone();
    // An oversize answer to a successful request: the provider acted on it.
    let too_large = |message: String| {
        if status.is_success() {
            ProviderError::unusable_answer(message)
        } else {
            ProviderError::retryable(message)
        }
    };
    if let Some(len) = response.content_length()
        && len > MAX_BODY as u64
    {
        return Err(too_large(format!(
            "{what}: the answer is {len} bytes, over the 1 MiB limit"
        )));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(too_large(format!(
                        "{what}: the answer is over the 1 MiB limit"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport_error(&e, what)),
        }
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn transport_error(e: &reqwest::Error, what: &str) -> ProviderError {
    // Built from the error's kind and the (query-free) URL: reqwest's own text names the URL
    // with its query, and nothing here may carry a secret.
    let at = e
        .url()
        .map_or_else(String::new, |u| format!(" ({})", safe_url(u)));
    if e.is_connect() {
        let why = std::error::Error::source(e)
            .and_then(std::error::Error::source)
            .map_or_else(String::new, |s| format!(": {s}"));
        ProviderError::retryable(format!("{what}: cannot connect{at}{why}"))
    } else if e.is_timeout() || e.is_request() || e.is_body() || e.is_decode() {
        let kind = if e.is_timeout() {
            "timed out"
        } else {
            "connection lost"
        };
        ProviderError::Retryable {
            message: format!(
                "{what}: request sent, no answer ({kind}{at}); the provider may have acted on it"
            ),
            retry_after: None,
            sent_no_answer: true,
        }
    } else {
        ProviderError::retryable(format!("{what}: request failed{at}"))
    }
}

/// A URL as it may appear in logs: scheme, host, port and path, no query or credentials.
pub fn safe_url(url: &Url) -> String {
    let mut clean = url.clone();
    clean.set_query(None);
    clean.set_fragment(None);
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.to_string()
}

/// Whether `status` comes from a gateway that may have forwarded the request before the
/// upstream failed or timed out (502, 504): the provider may have acted on it, so its
/// outcome is as unknown as with no answer.
pub fn from_gateway(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
    )
}

/// The `Retry-After` header as a duration (delta-seconds or an HTTP-date).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Checks that `url` may receive secrets: https, or plain http to a loopback address.
///
/// # Errors
/// A message saying why the URL is refused.
pub fn check_secure(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "{} uses plain http; https is required except to loopback addresses",
            safe_url(url)
        )),
        other => Err(format!("{}: unsupported scheme {other:?}", safe_url(url))),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The origin (`scheme://host:port`) a refresh token is bound to.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// An answer with `status` and `body`, for the providers' classification tests.
#[cfg(test)]
pub(crate) fn test_answer(status: u16, body: &str) -> Answer {
    Answer {
        status: StatusCode::from_u16(status).expect("status"),
        headers: HeaderMap::new(),
        body: body.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_urls() {
        let ok = [
            "https://id.example.com/token",
            "http://127.0.0.1:8080/t",
            "http://[::1]/t",
            "http://localhost/t",
        ];
        for u in ok {
            assert!(check_secure(&Url::parse(u).expect("url")).is_ok(), "{u}");
        }
        for u in [
            "http://id.example.com/token",
            "ftp://x/y",
            "http://10.0.0.1/t",
        ] {
            assert!(check_secure(&Url::parse(u).expect("url")).is_err(), "{u}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "120".parse().expect("value"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        let later = std::time::SystemTime::now() + Duration::from_secs(3600);
        h.insert(
            RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().expect("value"),
        );
        let got = retry_after(&h).expect("date parsed");
        assert!(got > Duration::from_secs(3500) && got <= Duration::from_secs(3600));
        h.insert(RETRY_AFTER, "soon".parse().expect("value"));
        assert_eq!(retry_after(&h), None);
    }

    fn settings(vars: &[(&str, &str)]) -> Result<ProxySettings, String> {
        ProxySettings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn proxy_settings_follow_https_proxy_only_and_never_print_credentials() {
        let s = settings(&[
            ("HTTPS_PROXY", "http://alice:pa55word@proxy.corp:3128"),
            ("https_proxy", "http://other:1"),
            ("no_proxy", "idp.corp, .internal"),
            ("HTTP_PROXY", "http://bob:hunter2@plain:8080"),
            ("all_proxy", "socks5://x:1"),
            ("ALL_PROXY", ""),
        ])
        .expect("usable");
        let text = s.description().expect("a proxy");
        assert_eq!(
            text,
            "https via http://proxy.corp:3128 (no_proxy: idp.corp, .internal)"
        );
        assert_eq!(s.ignored, ["HTTP_PROXY", "all_proxy"]);
        let debug = format!("{s:?}");
        for secret in ["alice", "pa55word", "bob", "hunter2"] {
            assert!(!debug.contains(secret) && !text.contains(secret), "{debug}");
        }
        let bare = settings(&[("https_proxy", "proxy.corp:8080")]).expect("usable");
        assert_eq!(
            bare.description().as_deref(),
            Some("https via http://proxy.corp:8080")
        );
        let none = settings(&[("http_proxy", "http://p:1"), ("NO_PROXY", "x")]).expect("ok");
        assert_eq!(none.description(), None);
        assert_eq!(none.ignored, ["http_proxy"]);
        let err = settings(&[("HTTPS_PROXY", "socks5://carol:s3cr3t@p:1080")]).expect_err("socks");
        assert!(
            err.contains("HTTPS_PROXY") && !err.contains("s3cr3t"),
            "{err}"
        );
    }

    /// A proxy on 127.0.0.1 that records the first line of every connection and answers
    /// 502, so requests through it fail fast.
    async fn recording_proxy() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let mut reader = BufReader::new(conn);
                let mut line = String::new();
                let _ = reader.read_line(&mut line).await;
                record
                    .lock()
                    .expect("lock")
                    .push(line.trim_end().to_owned());
                let _ = reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        (port, seen)
    }

    #[tokio::test]
    async fn plain_http_and_loopback_never_go_through_the_proxy() {
        let (proxy_port, seen) = recording_proxy().await;
        let (direct_port, direct) = recording_proxy().await;
        let proxy = format!("http://127.0.0.1:{proxy_port}");
        let s = settings(&[
            ("HTTPS_PROXY", &proxy),
            ("HTTP_PROXY", &proxy),
            ("ALL_PROXY", &proxy),
            ("NO_PROXY", "skipped.invalid.test"),
        ])
        .expect("usable");
        let client = client_with(&s).expect("client");
        for url in [
            format!("http://127.0.0.1:{direct_port}/token"),
            format!("http://localhost:{direct_port}/token"),
            format!("https://localhost:{direct_port}/token"),
            "http://plain.invalid.test/token".to_owned(),
            "https://skipped.invalid.test/token".to_owned(),
        ] {
            let _ = client.post(&url).body("refresh_token=rt").send().await;
        }
        assert_eq!(
            direct.lock().expect("lock").len(),
            3,
            "loopback went direct"
        );
        assert!(seen.lock().expect("lock").is_empty(), "{seen:?}");
        let _ = client.get("https://idp.invalid.test/token").send().await;
        let lines = seen.lock().expect("lock").clone();
        assert_eq!(
            lines,
            ["CONNECT idp.invalid.test:443 HTTP/1.1"],
            "{lines:?}"
        );
    }

    #[test]
    fn safe_url_drops_query_and_credentials() {
        let u = Url::parse("https://u:p@id.example.com/token?code=secret#x").expect("url");
        assert_eq!(safe_url(&u), "https://id.example.com/token");
    }
}
