//! Turning a token response (what `tokd add` reads on stdin) into a [`TokenSet`].
//!
//! Two shapes are understood: RFC 6749 §5.1 (`access_token`, `token_type`, `expires_in`,
//! `refresh_token`, `scope`, `refresh_expires_in`, `id_token`) and the common non-standard
//! `{token, refreshToken, expiresAt}` with `expiresAt` in epoch milliseconds.

use std::time::Duration;

use serde::Deserialize;
use tokd_protocol::{EpochMs, Secret};

use super::jwt;

/// The tokens of one grant and when they expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    /// The bearer.
    pub access_token: Secret,
    /// `Bearer` unless the provider said otherwise.
    pub token_type: String,
    /// When the access token expires (wall clock).
    pub expires_at_ms: EpochMs,
    /// The refresh token, if any.
    pub refresh_token: Option<Secret>,
    /// When the refresh token expires, if known.
    pub refresh_expires_at_ms: Option<EpochMs>,
    /// The id_token, if any.
    pub id_token: Option<Secret>,
    /// The granted scope, if the provider said.
    pub scope: Option<String>,
}

/// The latest expiry tokd accepts (the end of the year 9999): a provider's wilder numbers are
/// clamped into `[0, MAX_EPOCH_MS]`, so no arithmetic on them can overflow.
pub const MAX_EPOCH_MS: EpochMs = 253_402_300_799_999;

impl TokenSet {
    /// Clamps every expiry into `[0, MAX_EPOCH_MS]`.
    #[must_use]
    pub fn clamped(mut self) -> TokenSet {
        self.expires_at_ms = self.expires_at_ms.clamp(0, MAX_EPOCH_MS);
        self.refresh_expires_at_ms = self.refresh_expires_at_ms.map(|t| t.clamp(0, MAX_EPOCH_MS));
        self
    }
}

/// Expiry when an answer says nothing about it: the access token's JWT `exp`, else
/// `sent_at + default_lifetime`.
pub fn fallback_expiry(
    access_token: &Secret,
    sent_at: EpochMs,
    default_lifetime: Option<Duration>,
) -> Option<EpochMs> {
    jwt::exp_seconds(access_token.expose())
        .map(|exp| exp.saturating_mul(1000))
        .or_else(|| {
            default_lifetime
                .map(|d| sent_at.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        })
}

/// A number that some providers send as a string (`"expires_in": "3600"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Number {
    fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(*i),
            Number::Float(f) if f.is_finite() => Some(*f as i64),
            Number::Float(_) => None,
            Number::Text(t) => t.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct Raw {
    access_token: Option<Secret>,
    token: Option<Secret>,
    token_type: Option<String>,
    expires_in: Option<Number>,
    expires_at: Option<Number>,
    #[serde(rename = "expiresAt")]
    expires_at_camel: Option<Number>,
    #[serde(rename = "expiresIn")]
    expires_in_camel: Option<Number>,
    refresh_token: Option<Secret>,
    #[serde(rename = "refreshToken")]
    refresh_token_camel: Option<Secret>,
    refresh_expires_in: Option<Number>,
    id_token: Option<Secret>,
    scope: Option<String>,
}

/// Why a token response could not be imported. Never contains token text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    /// Not a JSON object.
    #[error("the token response is not a JSON object: {0}")]
    NotJson(String),
    /// No access token in it.
    #[error("the token response has no access_token (or token) field")]
    NoAccessToken,
    /// No way to tell when the token expires.
    #[error(
        "the token response says nothing about expiry (no expires_in or expiresAt) and the \
         access token is not a JWT with an exp claim; set default_lifetime on the provider"
    )]
    NoExpiry,
    /// An expiry field is not a usable number.
    #[error("the token response's {0} is not a number of seconds")]
    BadExpiry(&'static str),
}

/// Parses a token response received at `now_ms`.
///
/// Expiry comes from, in order: `expires_in` (from `now_ms`), an absolute `expiresAt` /
/// `expires_at` (epoch ms when it is that large, else epoch seconds), the access token's JWT
/// `exp`, then `default_lifetime`.
///
/// # Errors
/// An [`ImportError`] saying what is missing; it never quotes the input.
pub fn parse_token_response(
    json: &str,
    now_ms: EpochMs,
    default_lifetime: Option<Duration>,
) -> Result<TokenSet, ImportError> {
    let raw: Raw = serde_json::from_str(json).map_err(|e| {
        // serde_json's own messages can quote values of the input; describe by position only.
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Data => "a field has the wrong type",
            Category::Eof => "it ends early",
            Category::Syntax | Category::Io => "syntax error",
        };
        ImportError::NotJson(format!(
            "{what} at line {}, column {}",
            e.line(),
            e.column()
        ))
    })?;
    let access_token = raw
        .access_token
        .clone()
        .or_else(|| raw.token.clone())
        .filter(|t| !t.is_empty())
        .ok_or(ImportError::NoAccessToken)?;
    let times = Times { now_ms };
    let expires_at_ms = times.expiry(&raw, &access_token, default_lifetime)?;
    let refresh_token = raw
        .refresh_token
        .clone()
        .or_else(|| raw.refresh_token_camel.clone())
        .filter(|t| !t.is_empty());
    let refresh_expires_at_ms = times.refresh_expiry(&raw, refresh_token.as_ref())?;
    Ok(TokenSet {
        access_token,
        token_type: raw
            .token_type
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "Bearer".into()),
        expires_at_ms,
        refresh_token,
        refresh_expires_at_ms,
        id_token: raw.id_token.filter(|t| !t.is_empty()),
        scope: raw.scope,
    }
    .clamped())
}

/// Reads the expiry fields of a token response received at `now_ms`.
struct Times {
    now_ms: EpochMs,
}

impl Times {
    /// Seconds from now.
    fn relative(
        &self,
        n: Option<&Number>,
        field: &'static str,
    ) -> Result<Option<EpochMs>, ImportError> {
        n.map(|n| {
            let secs = n.as_i64().ok_or(ImportError::BadExpiry(field))?;
            Ok(self.now_ms.saturating_add(secs.saturating_mul(1000)))
        })
        .transpose()
    }

    /// An epoch time, in milliseconds when it is that large, else seconds.
    fn absolute(n: Option<&Number>, field: &'static str) -> Result<Option<EpochMs>, ImportError> {
        n.map(|n| {
            let v = n.as_i64().ok_or(ImportError::BadExpiry(field))?;
            // 10^11 seconds is the year 5138; anything larger is milliseconds.
            Ok(if v > 100_000_000_000 {
                v
            } else {
                v.saturating_mul(1000)
            })
        })
        .transpose()
    }

    /// The access token's expiry, from the first source that says.
    fn expiry(
        &self,
        raw: &Raw,
        access_token: &Secret,
        default_lifetime: Option<Duration>,
    ) -> Result<EpochMs, ImportError> {
        // In order; a field is only read when the ones before it are absent.
        let given = match self.relative(raw.expires_in.as_ref(), "expires_in")? {
            Some(t) => Some(t),
            None => match self.relative(raw.expires_in_camel.as_ref(), "expiresIn")? {
                Some(t) => Some(t),
                None => match Self::absolute(raw.expires_at_camel.as_ref(), "expiresAt")? {
                    Some(t) => Some(t),
                    None => Self::absolute(raw.expires_at.as_ref(), "expires_at")?,
                },
            },
        };
        given
            .or_else(|| fallback_expiry(access_token, self.now_ms, default_lifetime))
            .ok_or(ImportError::NoExpiry)
    }

    /// The refresh token's expiry, when the response or the token says.
    fn refresh_expiry(
        &self,
        raw: &Raw,
        refresh_token: Option<&Secret>,
    ) -> Result<Option<EpochMs>, ImportError> {
        let given = raw.refresh_expires_in.as_ref();
        // Keycloak sends refresh_expires_in = 0 for offline tokens that do not expire.
        if given.and_then(Number::as_i64) == Some(0) {
            return Ok(None);
        }
        Ok(self.relative(given, "refresh_expires_in")?.or_else(|| {
            refresh_token
                .and_then(|t| jwt::exp_seconds(t.expose()))
                .map(|s| s.saturating_mul(1000))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::jwt::make_test_jwt;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn rfc6749_response() {
        let t = parse_token_response(
            r#"{"access_token":"at","token_type":"bearer","expires_in":3600,
                "refresh_token":"rt","scope":"openid","refresh_expires_in":"7200","id_token":"it"}"#,
            NOW,
            None,
        )
        .expect("parses");
        assert_eq!(t.access_token.expose(), "at");
        assert_eq!(t.token_type, "bearer");
        assert_eq!(t.expires_at_ms, NOW + 3_600_000);
        assert_eq!(t.refresh_token.as_ref().map(Secret::expose), Some("rt"));
        assert_eq!(t.refresh_expires_at_ms, Some(NOW + 7_200_000));
        assert_eq!(t.id_token.as_ref().map(Secret::expose), Some("it"));
        assert_eq!(t.scope.as_deref(), Some("openid"));
    }

    #[test]
    fn camel_case_backend_response() {
        let t = parse_token_response(
            r#"{"token":"at","refreshToken":"rt","user":{"id":1},"expiresAt":1800000123456}"#,
            NOW,
            None,
        )
        .expect("parses");
        assert_eq!(t.expires_at_ms, 1_800_000_123_456);
        assert_eq!(t.token_type, "Bearer");
        assert_eq!(t.refresh_token.as_ref().map(Secret::expose), Some("rt"));
    }

    #[test]
    fn expiry_falls_back_to_jwt_then_default() {
        let jwt = make_test_jwt(1_900_000_000);
        let t = parse_token_response(&format!(r#"{{"access_token":"{jwt}"}}"#), NOW, None)
            .expect("parses");
        assert_eq!(t.expires_at_ms, 1_900_000_000_000);
        let t = parse_token_response(
            r#"{"access_token":"opaque"}"#,
            NOW,
            Some(Duration::from_secs(60)),
        )
        .expect("parses");
        assert_eq!(t.expires_at_ms, NOW + 60_000);
        assert_eq!(
            parse_token_response(r#"{"access_token":"opaque"}"#, NOW, None),
            Err(ImportError::NoExpiry)
        );
    }

    #[test]
    fn wild_numbers_are_clamped() {
        let t = parse_token_response(
            r#"{"access_token":"a","expires_in":-9223372036854775808}"#,
            NOW,
            None,
        )
        .expect("parses");
        assert_eq!(t.expires_at_ms, 0);
        let t = parse_token_response(r#"{"access_token":"a","expires_in":9e300}"#, NOW, None)
            .expect("parses");
        assert_eq!(t.expires_at_ms, MAX_EPOCH_MS);
    }

    #[test]
    fn bad_input_is_a_clear_error_without_the_token() {
        for (input, want) in [
            ("not json", "not a JSON object"),
            ("[1,2]", "not a JSON object"),
            (
                r#"{"access_token":"at-secret","token_type":["at-secret"]}"#,
                "wrong type",
            ),
            (r#"{"refresh_token":"rt-secret"}"#, "no access_token"),
            (r#"{"access_token":"","expires_in":5}"#, "no access_token"),
            (
                r#"{"access_token":"at-secret","expires_in":"soon"}"#,
                "expires_in",
            ),
        ] {
            let err = parse_token_response(input, NOW, None).expect_err(input);
            let msg = err.to_string();
            assert!(msg.contains(want), "{input}: {msg}");
            assert!(!msg.contains("secret"), "{msg}");
        }
    }
}
