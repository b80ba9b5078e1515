//! The persisted shape of a session and its versioned plaintext encoding.
//!
//! The plaintext sealed into every record is `[schema version byte][bincode body]`. The
//! version byte says how to read the body; [`decode`] keeps a match arm for every version
//! ever written, so a database written by an old daemon always loads in a new one. To
//! change the record: add `SessionRecordV2` (or similar), bump [`CURRENT_SCHEMA`], make
//! [`encode`] write the new version and add an arm to [`decode`] that converts the old
//! struct. Never edit a struct whose version has shipped, and never change its bincode
//! configuration ([`v1_config`]).
//!
//! bincode is not self-describing, so the persisted structs must not use serde attributes
//! that need one (`default`, `skip_serializing_if`, `flatten`, `untagged`).

use serde::{Deserialize, Serialize};
use tokd_protocol::Secret;
use zeroize::Zeroizing;

/// Schema version 1: [`SessionRecord`] as defined in this file, bincode standard config.
pub(crate) const SCHEMA_V1: u8 = 1;

/// The schema version [`encode`] writes.
pub(crate) const CURRENT_SCHEMA: u8 = SCHEMA_V1;

/// Upper bound on one record's encoded body (bytes). Tokens are a few KiB at most; this
/// bounds what a corrupt or hostile length prefix can make the decoder allocate, and
/// [`encode`] refuses anything larger so that every accepted write can be read back.
pub(crate) const MAX_RECORD_BYTES: usize = 1 << 20;

/// One OAuth2 session as the daemon persists it (schema v1).
///
/// It exists so that a daemon restart resumes every session where it was: tokens, expiry
/// clocks, refresh bookkeeping and terminal states all survive. Secrets are [`Secret`]s,
/// so `Debug` output of a record never shows token text.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SessionRecord {
    /// Session name; also the database key the record is bound to.
    pub name: String,
    /// Name of the configured provider the session belongs to.
    pub provider: String,
    /// Free-form attributes the client attached to the session (ordered, may repeat).
    pub attrs: Vec<(String, String)>,
    /// The current access token.
    pub access_token: Secret,
    /// Token type from the token response (usually `Bearer`).
    pub token_type: String,
    /// When the access token expires, epoch milliseconds (wall clock).
    pub expires_at_ms: i64,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<Secret>,
    /// When the refresh token expires, epoch milliseconds, if the provider said.
    pub refresh_expires_at_ms: Option<i64>,
    /// The ID token, if one was issued.
    pub id_token: Option<Secret>,
    /// Granted scope, if the provider reported it.
    pub scope: Option<String>,
    /// When the session was created, epoch milliseconds.
    pub created_at_ms: i64,
    /// When the last successful refresh happened, epoch milliseconds.
    pub last_refresh_at_ms: Option<i64>,
    /// Number of successful refreshes so far.
    pub refresh_count: u64,
    /// Persisted terminal state: the session can't refresh until a person acts.
    pub terminal: Option<Terminal>,
    /// Origin of the token endpoint the refresh token is bound to.
    pub refresh_origin: Option<String>,
    /// Crash-window mark: a refresh request was sent at this time (epoch ms) and its
    /// outcome was not yet persisted.
    pub in_flight_since_ms: Option<i64>,
}

/// Why a session stopped refreshing for good; persisted so a restart does not retry it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// The grant is gone (e.g. `invalid_grant`); a person has to log in again.
    NeedsLogin {
        /// Human-readable cause, safe to show and log.
        reason: String,
    },
    /// The provider configuration is wrong (e.g. `invalid_client`); it has to be fixed.
    NeedsConfig {
        /// Human-readable cause, safe to show and log.
        reason: String,
    },
}

/// Why a plaintext could not be turned back into a record. Messages never contain
/// record bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SchemaError {
    /// The plaintext was empty: no version byte.
    #[error("empty record plaintext")]
    Empty,
    /// A version byte this daemon does not know (written by a newer daemon, or garbage).
    #[error("unknown schema version {0}")]
    UnknownVersion(u8),
    /// The body is larger than [`MAX_RECORD_BYTES`].
    #[error("record body is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Body size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// bincode rejected the body.
    #[error("schema v{version} body does not decode: {reason}")]
    Body {
        /// Schema version being decoded.
        version: u8,
        /// bincode's description (structural, no data).
        reason: String,
    },
    /// The body decoded but bytes were left over.
    #[error("schema v{version} body has {extra} trailing bytes")]
    Trailing {
        /// Schema version being decoded.
        version: u8,
        /// Number of unread bytes.
        extra: usize,
    },
    /// bincode could not encode the record.
    #[error("record does not encode: {0}")]
    Encode(String),
}

/// The bincode configuration of schema v1. Frozen: changing it changes the v1 format.
pub(crate) fn v1_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `record` as the current schema: `[CURRENT_SCHEMA][bincode body]`.
///
/// The buffer is zeroized on drop because it holds token text.
pub(crate) fn encode(record: &SessionRecord) -> Result<Zeroizing<Vec<u8>>, SchemaError> {
    // Pre-size the buffer so that (usually) no reallocation leaves an unzeroized copy of
    // the token text behind in freed memory.
    let estimate = 64
        + record.name.len()
        + record.provider.len()
        + record
            .attrs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 16)
            .sum::<usize>()
        + record.access_token.len()
        + record.token_type.len()
        + record.refresh_token.as_ref().map_or(0, Secret::len)
        + record.id_token.as_ref().map_or(0, Secret::len)
        + record.scope.as_ref().map_or(0, String::len)
        + record.refresh_origin.as_ref().map_or(0, String::len)
        + record.terminal.as_ref().map_or(0, |t| match t {
            Terminal::NeedsLogin { reason } | Terminal::NeedsConfig { reason } => reason.len(),
        })
        + 128;
    let mut buf = Zeroizing::new(Vec::with_capacity(estimate));
    buf.push(CURRENT_SCHEMA);
    bincode::serde::encode_into_std_write(record, &mut *buf, v1_config())
        .map_err(|e| SchemaError::Encode(e.to_string()))?;
    let size = buf.len() - 1;
    if size > MAX_RECORD_BYTES {
        return Err(SchemaError::TooLarge {
            size,
            max: MAX_RECORD_BYTES,
        });
    }
    Ok(buf)
}

/// Decodes a plaintext written by any schema version this daemon has ever written.
pub(crate) fn decode(plaintext: &[u8]) -> Result<SessionRecord, SchemaError> {
    let (&version, body) = plaintext.split_first().ok_or(SchemaError::Empty)?;
    if body.len() > MAX_RECORD_BYTES {
        return Err(SchemaError::TooLarge {
            size: body.len(),
            max: MAX_RECORD_BYTES,
        });
    }
    match version {
        SCHEMA_V1 => decode_v1(body),
        other => Err(SchemaError::UnknownVersion(other)),
    }
}

/// Schema v1 body: bincode (standard config) of [`SessionRecord`], nothing after it.
fn decode_v1(body: &[u8]) -> Result<SessionRecord, SchemaError> {
    let config = v1_config().with_limit::<MAX_RECORD_BYTES>();
    let (record, read): (SessionRecord, usize) = bincode::serde::decode_from_slice(body, config)
        .map_err(|e| SchemaError::Body {
            version: SCHEMA_V1,
            reason: describe_decode_error(&e),
        })?;
    if read != body.len() {
        return Err(SchemaError::Trailing {
            version: SCHEMA_V1,
            extra: body.len() - read,
        });
    }
    Ok(record)
}

/// A structural description of a bincode error. bincode's own `Display` is its `Debug`,
/// and serde's custom messages may quote decoded data, so only shapes are kept.
fn describe_decode_error(e: &bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as E;
    match e {
        E::UnexpectedEnd { .. } => "unexpected end of data".to_owned(),
        E::LimitExceeded => "size limit exceeded".to_owned(),
        E::UnexpectedVariant {
            type_name, found, ..
        } => format!("unknown variant {found} of {type_name}"),
        E::Utf8 { .. } => "a string is not UTF-8".to_owned(),
        E::InvalidBooleanValue(v) => format!("invalid boolean {v}"),
        E::OutsideUsizeRange(_) => "a length is out of range".to_owned(),
        _ => "malformed data".to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record with every optional field set, used by several tests and the fixture.
    pub(crate) fn full_record(name: &str) -> SessionRecord {
        SessionRecord {
            name: name.to_owned(),
            provider: "example".to_owned(),
            attrs: vec![
                ("account".to_owned(), "alice@example.com".to_owned()),
                ("env".to_owned(), "prod".to_owned()),
            ],
            access_token: Secret::new(format!("at-{name}-0123456789")),
            token_type: "Bearer".to_owned(),
            expires_at_ms: 1_700_000_360_000,
            refresh_token: Some(Secret::new(format!("rt-{name}-abcdef"))),
            refresh_expires_at_ms: Some(1_702_592_000_000),
            id_token: Some(Secret::new("eyJhbGciOiJub25lIn0.e30.")),
            scope: Some("openid offline_access".to_owned()),
            created_at_ms: 1_700_000_000_000,
            last_refresh_at_ms: Some(1_700_000_300_000),
            refresh_count: 7,
            terminal: Some(Terminal::NeedsLogin {
                reason: "invalid_grant: token revoked".to_owned(),
            }),
            refresh_origin: Some("https://login.example.com".to_owned()),
            in_flight_since_ms: Some(-5),
        }
    }

    /// A record with every optional field empty.
    pub(crate) fn minimal_record(name: &str) -> SessionRecord {
        SessionRecord {
            name: name.to_owned(),
            provider: "p".to_owned(),
            attrs: Vec::new(),
            access_token: Secret::new(format!("at-{name}")),
            token_type: "Bearer".to_owned(),
            expires_at_ms: 0,
            refresh_token: None,
            refresh_expires_at_ms: None,
            id_token: None,
            scope: None,
            created_at_ms: 0,
            last_refresh_at_ms: None,
            refresh_count: 0,
            terminal: None,
            refresh_origin: None,
            in_flight_since_ms: None,
        }
    }

    #[test]
    fn round_trip() {
        for r in [full_record("a"), minimal_record("b")] {
            let bytes = encode(&r).expect("encode");
            assert_eq!(bytes[0], CURRENT_SCHEMA);
            assert_eq!(decode(&bytes).expect("decode"), r);
        }
    }

    #[test]
    fn rejects_unknown_version_empty_and_trailing() {
        assert_eq!(decode(&[]), Err(SchemaError::Empty));
        let mut bytes = encode(&minimal_record("x")).expect("encode").to_vec();
        bytes[0] = 99;
        assert_eq!(decode(&bytes), Err(SchemaError::UnknownVersion(99)));
        bytes[0] = SCHEMA_V1;
        bytes.push(0);
        assert_eq!(
            decode(&bytes),
            Err(SchemaError::Trailing {
                version: 1,
                extra: 1
            })
        );
        bytes.truncate(bytes.len() - 3);
        assert!(matches!(decode(&bytes), Err(SchemaError::Body { .. })));
    }

    #[test]
    fn hostile_length_prefix_is_bounded() {
        // A v1 body whose first string claims an enormous length must fail without
        // trying to allocate it.
        let mut bytes = vec![SCHEMA_V1, 0xFD];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(SchemaError::Body { .. })));
    }

    #[test]
    fn refuses_to_encode_what_it_could_not_decode() {
        let mut r = minimal_record("big");
        r.access_token = Secret::new("x".repeat(MAX_RECORD_BYTES));
        assert!(matches!(encode(&r), Err(SchemaError::TooLarge { .. })));
    }

    #[test]
    fn debug_does_not_show_secrets() {
        let shown = format!("{:?}", full_record("dbg"));
        assert!(!shown.contains("at-dbg"), "{shown}");
        assert!(!shown.contains("rt-dbg"), "{shown}");
        assert!(!shown.contains("eyJhbGci"), "{shown}");
    }
}
