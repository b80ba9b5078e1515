//! Sealing and opening of stored values with XChaCha20-Poly1305.
//!
//! A sealed value is `[envelope version = 1][24-byte random nonce][ciphertext ++ 16-byte tag]`.
//! The associated data names what the value is (a session record of a given name, or the
//! key check), so a value moved to another key, or into another role, fails to open.

use chacha20poly1305::aead::{Aead, Generate, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::key::KeyBytes;

/// Envelope version 1: XChaCha20-Poly1305, random 24-byte nonce, tag appended.
pub(crate) const ENVELOPE_V1: u8 = 1;
/// Nonce length of envelope v1.
pub(crate) const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Smallest possible v1 envelope (empty plaintext).
const MIN_V1_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

/// Associated-data prefix of session records; the session name follows it.
const SESSION_AAD_PREFIX: &[u8] = b"tokd/session/v1\0";
/// Associated data of the key-check file.
pub(crate) const KEYCHECK_AAD: &[u8] = b"tokd/keycheck/v1\0";
/// The plaintext sealed in the key-check file. Not secret: only the tag matters.
pub(crate) const KEYCHECK_PLAINTEXT: &[u8] = b"tokd key check v1";

/// The associated data that binds a record to the session name it is stored under.
pub(crate) fn session_aad(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SESSION_AAD_PREFIX.len() + name.len());
    aad.extend_from_slice(SESSION_AAD_PREFIX);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Why a sealed value did not open. Never carries plaintext or key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Shorter than the smallest envelope.
    #[error("sealed value is truncated ({0} bytes)")]
    Truncated(usize),
    /// An envelope version this daemon does not know.
    #[error("unknown envelope version {0}")]
    UnknownEnvelope(u8),
    /// The tag did not verify: wrong key, altered bytes, or a value moved from another key.
    #[error("authentication failed (wrong key, altered bytes, or value moved between records)")]
    Authentication,
}

/// Why sealing failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    /// The operating system's random generator failed (no nonce, so no write).
    #[error("random nonce unavailable: {0}")]
    Random(getrandom::Error),
    /// The AEAD refused the message (only for absurd sizes).
    #[error("encryption failed")]
    Encrypt,
}

/// The store's cipher: the only holder of the key once the store is open.
///
/// The wrapped `XChaCha20Poly1305` zeroizes its key on drop (crate feature `zeroize`) and
/// its `Debug` shows nothing.
pub(crate) struct RecordCipher {
    aead: XChaCha20Poly1305,
}

impl RecordCipher {
    /// Builds the cipher from the resolved key.
    pub(crate) fn new(key: &KeyBytes) -> Self {
        let bytes: &[u8; 32] = key.expose();
        RecordCipher {
            aead: XChaCha20Poly1305::new(bytes.into()),
        }
    }

    /// Seals `plaintext` under a fresh random nonce.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = XNonce::try_generate().map_err(SealError::Random)?;
        let nonce: [u8; NONCE_LEN] = nonce.into();
        self.seal_with_nonce(&nonce, aad, plaintext)
    }

    /// Seals with a caller-chosen nonce. Only [`RecordCipher::seal`] and tests (golden
    /// fixtures) call this: a nonce must never repeat under one key.
    pub(crate) fn seal_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let ciphertext = self
            .aead
            .encrypt(
                nonce.into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(ENVELOPE_V1);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a sealed value; the plaintext is zeroized on drop.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let (&version, rest) = sealed
            .split_first()
            .ok_or(OpenError::Truncated(sealed.len()))?;
        match version {
            ENVELOPE_V1 => {
                if sealed.len() < MIN_V1_LEN {
                    return Err(OpenError::Truncated(sealed.len()));
                }
                let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
                let nonce =
                    XNonce::try_from(nonce).map_err(|_| OpenError::Truncated(sealed.len()))?;
                self.aead
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: ciphertext,
                            aad,
                        },
                    )
                    .map(Zeroizing::new)
                    .map_err(|_| OpenError::Authentication)
            }
            other => Err(OpenError::UnknownEnvelope(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(byte: u8) -> RecordCipher {
        RecordCipher::new(&KeyBytes::from_array([byte; 32]))
    }

    #[test]
    fn seal_open_round_trip_and_layout() {
        let c = cipher(1);
        let sealed = c.seal(&session_aad("a"), b"hello").expect("seal");
        assert_eq!(sealed[0], ENVELOPE_V1);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(
            c.open(&session_aad("a"), &sealed).expect("open").as_slice(),
            b"hello"
        );
        // Fresh nonce every time.
        let again = c.seal(&session_aad("a"), b"hello").expect("seal");
        assert_ne!(sealed[1..1 + NONCE_LEN], again[1..1 + NONCE_LEN]);
    }

    #[test]
    fn wrong_key_name_or_bytes_fail() {
        let c = cipher(1);
        let sealed = c.seal(&session_aad("a"), b"hello").expect("seal");
        assert_eq!(
            cipher(2).open(&session_aad("a"), &sealed),
            Err(OpenError::Authentication)
        );
        assert_eq!(
            c.open(&session_aad("b"), &sealed),
            Err(OpenError::Authentication)
        );
        assert_eq!(
            c.open(KEYCHECK_AAD, &sealed),
            Err(OpenError::Authentication)
        );
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                c.open(&session_aad("a"), &bad),
                Err(OpenError::Authentication),
                "byte {i}"
            );
        }
    }

    #[test]
    fn envelope_errors() {
        let c = cipher(1);
        let mut sealed = c.seal(&session_aad("a"), b"").expect("seal");
        assert_eq!(sealed.len(), MIN_V1_LEN);
        assert!(c.open(&session_aad("a"), &sealed).is_ok());
        sealed[0] = 7;
        assert_eq!(
            c.open(&session_aad("a"), &sealed),
            Err(OpenError::UnknownEnvelope(7))
        );
        assert_eq!(c.open(b"", &[]), Err(OpenError::Truncated(0)));
        assert_eq!(
            c.open(b"", &[ENVELOPE_V1; 10]),
            Err(OpenError::Truncated(10))
        );
    }
}
