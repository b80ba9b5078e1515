//! Non-standard JSON refresh endpoints: a backend that takes e.g.
//! `POST {"refreshToken": "…", "user_id": "…"}` and answers
//! `{token, refreshToken, user, expiresAt}`.
//!
//! The request body is built from the provider's `request` table, whose values are templates
//! (`{refresh_token}`, `{attr.NAME}`, or literal text); the answer is read through the
//! `response` table (field names, dotted paths allowed) and `expires_at_unit`.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::Value;
use tokd_protocol::{EpochMs, Secret};
use url::Url;

use super::http::{self, Answer};
use super::{Provider, ProviderError};
use crate::config::{ExpiryUnit, ProviderConfig};
use crate::sessions::import::{TokenSet, fallback_expiry};
use crate::sessions::jwt;

/// The error code some backends use to say a refresh token was already used.
pub const TOKEN_REUSE_DISABLED: &str = "TOKEN_REUSE_DISABLED";

/// Where the answer's fields are, with the defaults of the common
/// `{token, refreshToken, expiresAt}` shape.
#[derive(Debug, Clone)]
pub struct ResponseMap {
    access_token: String,
    refresh_token: String,
    expires_at: Option<String>,
    expires_in: Option<String>,
    id_token: Option<String>,
    unit: ExpiryUnit,
}

impl ResponseMap {
    /// The mapping of a provider's config.
    pub fn of(cfg: &ProviderConfig) -> ResponseMap {
        let get = |k: &str| cfg.response.get(k).cloned();
        let expires_in = get("expires_in");
        ResponseMap {
            access_token: get("access_token").unwrap_or_else(|| "token".into()),
            refresh_token: get("refresh_token").unwrap_or_else(|| "refreshToken".into()),
            expires_at: get("expires_at")
                .or_else(|| expires_in.is_none().then(|| "expiresAt".to_owned())),
            expires_in,
            id_token: get("id_token"),
            unit: cfg.expires_at_unit.unwrap_or_default(),
        }
    }

    /// Reads tokens from an answer body received for a request sent at `sent_at`.
    ///
    /// # Errors
    /// Retryable for a body that is not the expected JSON; NeedsConfig when nothing says
    /// when the token expires.
    pub fn parse(
        &self,
        body: &[u8],
        sent_at: EpochMs,
        default_lifetime: Option<std::time::Duration>,
    ) -> Result<TokenSet, ProviderError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ProviderError::retryable(format!(
                "refresh endpoint: the answer is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let text = |path: &str| -> Option<Secret> {
            lookup(&value, path)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(Secret::from)
        };
        let access_token = text(&self.access_token).ok_or_else(|| {
            ProviderError::retryable(format!(
                "refresh endpoint: the answer has no {:?} field",
                self.access_token
            ))
        })?;
        let number = |path: &str| -> Result<Option<i64>, ProviderError> {
            match lookup(&value, path) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))),
                Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
                    ProviderError::retryable(format!("refresh endpoint: {path:?} is not a number"))
                }),
                Some(_) => Err(ProviderError::retryable(format!(
                    "refresh endpoint: {path:?} is not a number"
                ))),
            }
        };
        let from_unit = |v: i64, unit: ExpiryUnit| match unit {
            ExpiryUnit::Ms => v,
            ExpiryUnit::S => v.saturating_mul(1000),
            ExpiryUnit::SecondsFromNow => sent_at.saturating_add(v.saturating_mul(1000)),
        };
        let mut expires_at_ms = None;
        if let Some(path) = &self.expires_in {
            expires_at_ms = number(path)?.map(|v| from_unit(v, ExpiryUnit::SecondsFromNow));
        }
        if expires_at_ms.is_none()
            && let Some(path) = &self.expires_at
        {
            expires_at_ms = number(path)?.map(|v| from_unit(v, self.unit));
        }
        let expires_at_ms = expires_at_ms
            .or_else(|| fallback_expiry(&access_token, sent_at, default_lifetime))
            .ok_or_else(|| {
                ProviderError::NeedsConfig(
                    "refresh endpoint: the answer says nothing about expiry and the token is \
                     not a JWT; set response.expires_at or default_lifetime"
                        .into(),
                )
            })?;
        let refresh_token = text(&self.refresh_token);
        let refresh_expires_at_ms = refresh_token
            .as_ref()
            .and_then(|t| jwt::exp_seconds(t.expose()))
            .map(|s| s.saturating_mul(1000));
        Ok(TokenSet {
            access_token,
            token_type: "Bearer".into(),
            expires_at_ms,
            refresh_token,
            refresh_expires_at_ms,
            id_token: self.id_token.as_deref().and_then(text),
            scope: None,
        }
        .clamped())
    }
}

/// A field by dotted path (`data.token`).
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// Builds the request body from the provider's `request` templates.
///
/// # Errors
/// NeedsConfig when a template names an attribute the session does not have.
pub fn request_body(
    cfg: &ProviderConfig,
    refresh_token: &Secret,
    attrs: &[(String, String)],
) -> Result<zeroize::Zeroizing<Vec<u8>>, ProviderError> {
    let default: BTreeMap<String, String> =
        [("refreshToken".to_owned(), "{refresh_token}".to_owned())].into();
    let templates = if cfg.request.is_empty() {
        &default
    } else {
        &cfg.request
    };
    let mut body = serde_json::Map::new();
    for (field, template) in templates {
        body.insert(
            field.clone(),
            Value::String(expand(template, refresh_token, attrs)?),
        );
    }
    let bytes = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| ProviderError::NeedsConfig(format!("cannot build the request: {e}")))?;
    Ok(zeroize::Zeroizing::new(bytes))
}

fn expand(
    template: &str,
    refresh_token: &Secret,
    attrs: &[(String, String)],
) -> Result<String, ProviderError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let key = &rest[start + 1..start + len];
        if key == "refresh_token" {
            out.push_str(refresh_token.expose());
        } else if let Some(attr) = key.strip_prefix("attr.") {
            let value = attrs
                .iter()
                .find(|(k, _)| k == attr)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| {
                    ProviderError::NeedsConfig(format!(
                        "the request template needs attribute {attr:?}; add the session with \
                         --attr {attr}=VALUE"
                    ))
                })?;
            out.push_str(value);
        } else {
            out.push_str(&rest[start..=start + len]);
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Sends the refresh request and classifies the answer.
///
/// # Errors
/// A classified [`ProviderError`].
pub async fn refresh(
    provider: &Provider,
    client: &reqwest::Client,
    url: &Url,
    refresh_token: &Secret,
    attrs: &[(String, String)],
    headers: &BTreeMap<String, String>,
    sent_at: EpochMs,
) -> Result<TokenSet, ProviderError> {
    let cfg = &provider.config;
    let body = request_body(cfg, refresh_token, attrs)?;
    let mut request = client
        .post(url.clone())
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .timeout(provider.request_timeout());
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let answer = http::send(request.body(body.to_vec()), "refresh endpoint").await?;
    let mut secrets = vec![refresh_token.expose()];
    secrets.extend(provider.client_secret.as_ref().map(Secret::expose));
    secrets.extend(super::secret_header_values(headers));
    interpret(
        &answer,
        &ResponseMap::of(cfg),
        sent_at,
        provider.default_lifetime(),
        &secrets,
    )
}

/// Classifies a JSON refresh endpoint's answer (see the table in docs/refreshing.md). `secrets` (what
/// the request carried: the refresh token, secret-like header values) are blanked out of
/// the error code before it reaches a message.
///
/// # Errors
/// A classified [`ProviderError`].
pub fn interpret(
    answer: &Answer,
    map: &ResponseMap,
    sent_at: EpochMs,
    default_lifetime: Option<std::time::Duration>,
    secrets: &[&str],
) -> Result<TokenSet, ProviderError> {
    let status = answer.status;
    let code = error_code(&answer.body, secrets);
    let detail = code
        .as_deref()
        .map_or_else(String::new, |c| format!(" ({c})"));
    if code.as_deref() == Some(TOKEN_REUSE_DISABLED) {
        return Err(ProviderError::NeedsLogin(format!(
            "the refresh endpoint answered {status} ({TOKEN_REUSE_DISABLED}): the refresh token \
             was already used"
        )));
    }
    if status.is_success() {
        return map
            .parse(&answer.body, sent_at, default_lifetime)
            .map_err(|e| match e {
                ProviderError::Retryable { message, .. } => ProviderError::unusable_answer(message),
                other => other,
            });
    }
    if status.is_redirection() {
        return Err(ProviderError::Retryable {
            message: format!("refresh endpoint redirected ({status}); redirects are not followed"),
            retry_after: http::retry_after(&answer.headers),
            sent_no_answer: false,
        });
    }
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(ProviderError::NeedsLogin(
            format!("the refresh endpoint refused the refresh token: {status}{detail}"),
        )),
        StatusCode::NOT_FOUND => Err(ProviderError::NeedsConfig(format!(
            "the refresh endpoint answered {status}{detail}: check refresh_url"
        ))),
        _ => Err(ProviderError::Retryable {
            message: format!("refresh endpoint answered {status}{detail}"),
            retry_after: http::retry_after(&answer.headers),
            sent_no_answer: http::from_gateway(status),
        }),
    }
}

/// The error code in a JSON error body (`code` or `error`), `secrets` blanked out (some
/// backends echo what they were sent), then sanitised and bounded.
fn error_code(body: &[u8], secrets: &[&str]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut code = ["code", "error"]
        .iter()
        .find_map(|k| value.get(*k).and_then(Value::as_str))?
        .to_owned();
    // Before the filter and the bound: a secret must not survive as a cut-down copy.
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        code = code.replace(secret, "<redacted>");
    }
    Some(
        code.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '<' | '>'))
            .take(64)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::http::test_answer as answer;

    fn cfg(toml_text: &str) -> ProviderConfig {
        let file = crate::config::Config::parse(
            &format!(
                "[providers.p]\nkind = \"json\"\nrefresh_url = \"http://127.0.0.1/r\"\n{toml_text}"
            ),
            std::path::Path::new("/t.toml"),
        )
        .expect("parses");
        file.providers["p"].clone()
    }

    #[test]
    fn templates_fill_the_body() {
        let c = cfg(
            r#"request = { refreshToken = "{refresh_token}", user_id = "{attr.user_id}", kind = "admin" }"#,
        );
        let body =
            request_body(&c, &Secret::new("rt"), &[("user_id".into(), "42".into())]).expect("body");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"refreshToken": "rt", "user_id": "42", "kind": "admin"})
        );
        let err = request_body(&c, &Secret::new("rt"), &[]).expect_err("missing attr");
        assert!(matches!(err, ProviderError::NeedsConfig(m) if m.contains("--attr user_id")));
    }

    #[test]
    fn default_shape_and_units() {
        let c = cfg("");
        let t = interpret(
            &answer(
                200,
                r#"{"token":"at","refreshToken":"rt2","user":{},"expiresAt":1800000000000}"#,
            ),
            &ResponseMap::of(&c),
            0,
            None,
            &[],
        )
        .expect("tokens");
        assert_eq!(t.expires_at_ms, 1_800_000_000_000);
        assert_eq!(t.refresh_token.as_ref().map(Secret::expose), Some("rt2"));
        let c = cfg("response = { access_token = \"data.jwt\", expires_in = \"data.ttl\" }");
        let t = interpret(
            &answer(200, r#"{"data":{"jwt":"at","ttl":60}}"#),
            &ResponseMap::of(&c),
            1000,
            None,
            &[],
        )
        .expect("tokens");
        assert_eq!(t.expires_at_ms, 61_000);
        assert!(t.refresh_token.is_none());
        let c = cfg("expires_at_unit = \"s\"");
        let t = interpret(
            &answer(200, r#"{"token":"a","expiresAt":1800000000}"#),
            &ResponseMap::of(&c),
            0,
            None,
            &[],
        )
        .expect("tokens");
        assert_eq!(t.expires_at_ms, 1_800_000_000_000);
    }

    #[test]
    fn classification() {
        let m = ResponseMap::of(&cfg(""));
        let kind = |status, body: &str| match interpret(&answer(status, body), &m, 0, None, &[]) {
            Ok(_) => "ok",
            Err(ProviderError::NeedsLogin(_)) => "login",
            Err(ProviderError::NeedsConfig(_)) => "config",
            Err(ProviderError::Retryable { .. }) => "retry",
        };
        assert_eq!(kind(403, r#"{"code":"TOKEN_REUSE_DISABLED"}"#), "login");
        assert_eq!(kind(400, r#"{"error":"TOKEN_REUSE_DISABLED"}"#), "login");
        assert_eq!(kind(401, ""), "login");
        assert_eq!(kind(403, "<html>"), "login");
        assert_eq!(kind(404, ""), "config");
        assert_eq!(kind(500, ""), "retry");
        assert_eq!(kind(429, ""), "retry");
        assert_eq!(kind(200, "<html>"), "retry");
        assert_eq!(kind(200, r#"{"refreshToken":"x"}"#), "retry");
        assert_eq!(kind(200, r#"{"token":"x"}"#), "config");
    }

    #[test]
    fn gateway_errors_keep_the_outcome_unknown() {
        let m = ResponseMap::of(&cfg(""));
        for (status, unknown) in [(502, true), (504, true), (503, false), (500, false)] {
            let err = interpret(&answer(status, ""), &m, 0, None, &[]).expect_err("error");
            assert_eq!(err.outcome_unknown(), unknown, "{status}");
        }
    }

    #[test]
    fn echoed_secrets_are_blanked_out_of_the_code() {
        let m = ResponseMap::of(&cfg(""));
        // Longer than the 64-character bound and with characters the filter drops: neither
        // a cut-down nor a filtered copy may survive.
        let rt = format!("rt/{}+Z", "A1b2".repeat(30));
        let filtered: String = rt.chars().filter(char::is_ascii_alphanumeric).collect();
        for body in [
            format!(r#"{{"code":"{rt}"}}"#),
            format!(r#"{{"error":"unknown token {rt}"}}"#),
        ] {
            let err = interpret(&answer(400, &body), &m, 0, None, &[&rt]).expect_err("error");
            let text = err.to_string();
            assert!(!text.contains(&filtered[..20]), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
        let err = interpret(&answer(403, r#"{"code":"k-123"}"#), &m, 0, None, &["k-123"])
            .expect_err("error");
        assert!(!err.to_string().contains("k-123"), "{err}");
    }
}
