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
/// travel to another host), the design's timeouts, a User-Agent naming tokd.
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn client() -> Result<reqwest::Client, String> {
    static PROVIDER: OnceLock<()> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        // Fails only if another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("tokd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
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

    #[test]
    fn safe_url_drops_query_and_credentials() {
        let u = Url::parse("https://u:p@id.example.com/token?code=secret#x").expect("url");
        assert_eq!(safe_url(&u), "https://id.example.com/token");
    }
}
