//! The hello exchange: a fixed-layout frame pair that never changes.
//!
//! Everything after the hello is bincode and may evolve; the hello itself must stay readable
//! by every past and future tokd so that a version mismatch is always a clear message and
//! never a decode error. Layouts (all integers big-endian, inside a normal frame):
//!
//! ```text
//! Hello:    "TOKD" | major u16 | minor u16 | name_len u8 | name (UTF-8, ≤ 64 bytes)
//! HelloAck: "TOKD" | major u16 | minor u16 | status u8 | text_len u16 | text (UTF-8)
//! ```
//!
//! `status` is 0 when the daemon serves the client (then `text` is the daemon's software
//! version), else an [`ErrorCode`] wire number (then `text` is the message), for example
//! `peer_rejected` or `version_mismatch`.

use crate::error::ProtocolError;
use crate::error_code::{ErrorCode, ErrorReply};

/// The four bytes every hello and hello answer start with.
pub const MAGIC: [u8; 4] = *b"TOKD";

/// Protocol major version: bumped only when old clients cannot be served any more.
pub const PROTOCOL_MAJOR: u16 = 1;

/// Protocol minor version: bumped when variants are appended. The daemon serves every older
/// minor of its major.
pub const PROTOCOL_MINOR: u16 = 1;

/// The longest client name a hello may carry.
pub const MAX_CLIENT_NAME: usize = 64;

/// The first frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The client's protocol major version.
    pub major: u16,
    /// The client's protocol minor version.
    pub minor: u16,
    /// A short name for logs, e.g. `tokd-cli/0.1.0`.
    pub client_name: String,
}

impl Hello {
    /// A hello for this build's protocol version.
    pub fn current(client_name: &str) -> Self {
        let mut name = client_name.to_owned();
        truncate_utf8(&mut name, MAX_CLIENT_NAME);
        Hello {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            client_name: name,
        }
    }

    /// The fixed-layout payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut name = self.client_name.clone();
        truncate_utf8(&mut name, MAX_CLIENT_NAME);
        let mut out = Vec::with_capacity(9 + name.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.major.to_be_bytes());
        out.extend_from_slice(&self.minor.to_be_bytes());
        // truncate_utf8 bounded the name to 64 bytes.
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out
    }

    /// Parses a hello payload.
    ///
    /// # Errors
    /// [`ProtocolError::BadHello`] for anything that is not exactly a hello.
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader(payload);
        r.magic()?;
        let major = r.u16()?;
        let minor = r.u16()?;
        let len = usize::from(r.u8()?);
        if len > MAX_CLIENT_NAME {
            return Err(ProtocolError::BadHello("client name too long"));
        }
        let name = r.text(len)?;
        r.end()?;
        Ok(Hello {
            major,
            minor,
            client_name: name,
        })
    }
}

/// The daemon's answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloAck {
    /// The daemon's protocol major version.
    pub major: u16,
    /// The daemon's protocol minor version.
    pub minor: u16,
    /// `Ok(daemon software version)` or the reason the connection is refused.
    pub outcome: Result<String, ErrorReply>,
}

impl HelloAck {
    /// An answer accepting the client, from a daemon of this build.
    pub fn accept(daemon_version: &str) -> Self {
        HelloAck {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            outcome: Ok(daemon_version.to_owned()),
        }
    }

    /// An answer refusing the client, from a daemon of this build.
    pub fn refuse(code: ErrorCode, message: impl Into<String>) -> Self {
        HelloAck {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            outcome: Err(ErrorReply::new(code, message)),
        }
    }

    /// The fixed-layout payload.
    pub fn encode(&self) -> Vec<u8> {
        let (status, text) = match &self.outcome {
            Ok(version) => (0u8, version.as_str()),
            Err(e) => (e.code.wire_number(), e.message.as_str()),
        };
        let mut text = text.to_owned();
        truncate_utf8(&mut text, usize::from(u16::MAX));
        let mut out = Vec::with_capacity(11 + text.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.major.to_be_bytes());
        out.extend_from_slice(&self.minor.to_be_bytes());
        out.push(status);
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// Parses a hello answer.
    ///
    /// # Errors
    /// [`ProtocolError::BadHello`] for anything that is not exactly a hello answer.
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader(payload);
        r.magic()?;
        let major = r.u16()?;
        let minor = r.u16()?;
        let status = r.u8()?;
        let len = usize::from(r.u16()?);
        let text = r.text(len)?;
        r.end()?;
        let outcome = if status == 0 {
            Ok(text)
        } else {
            Err(ErrorReply::new(ErrorCode::from_wire_number(status), text))
        };
        Ok(HelloAck {
            major,
            minor,
            outcome,
        })
    }
}

/// How a daemon of protocol `(daemon_major, _)` should treat a client's hello.
///
/// Returns the refusal message when the majors differ; the message tells the user which side
/// to restart or upgrade. Any minor of the same major is served: the daemon serves older
/// minors, and a newer client learns the daemon's minor from the answer.
pub fn compatibility(hello: &Hello, daemon_major: u16) -> Result<(), String> {
    use std::cmp::Ordering;
    match hello.major.cmp(&daemon_major) {
        Ordering::Equal => Ok(()),
        Ordering::Greater => Err(format!(
            "the running tokd daemon speaks protocol {daemon_major}, older than this client's {}: \
             restart tokd (e.g. `systemctl --user restart tokd`) so the new version runs",
            hello.major
        )),
        Ordering::Less => Err(format!(
            "this client speaks protocol {} but the running tokd daemon speaks {daemon_major}: \
             upgrade the client",
            hello.major
        )),
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ProtocolError> {
        if self.0.len() < n {
            return Err(ProtocolError::BadHello("too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn magic(&mut self) -> Result<(), ProtocolError> {
        if self.take(4)? != MAGIC {
            return Err(ProtocolError::BadHello("wrong magic bytes"));
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn text(&mut self, len: usize) -> Result<String, ProtocolError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ProtocolError::BadHello("text is not UTF-8"))
    }
    fn end(&self) -> Result<(), ProtocolError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::BadHello("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_layout_is_fixed() {
        let hello = Hello {
            major: 1,
            minor: 2,
            client_name: "ab".into(),
        };
        // This byte string is the contract with every past and future tokd; never change it.
        assert_eq!(hello.encode(), b"TOKD\x00\x01\x00\x02\x02ab");
        assert_eq!(Hello::decode(&hello.encode()).expect("decodes"), hello);
    }

    #[test]
    fn ack_layout_is_fixed() {
        let ack = HelloAck {
            major: 1,
            minor: 0,
            outcome: Ok("0.1.0".into()),
        };
        assert_eq!(ack.encode(), b"TOKD\x00\x01\x00\x00\x00\x00\x050.1.0");
        assert_eq!(HelloAck::decode(&ack.encode()).expect("decodes"), ack);
        let refused = HelloAck::refuse(ErrorCode::PeerRejected, "uid 65534 is not served");
        let back = HelloAck::decode(&refused.encode()).expect("decodes");
        assert_eq!(
            back.outcome.expect_err("refusal").code,
            ErrorCode::PeerRejected
        );
    }

    #[test]
    fn bad_hellos_are_errors() {
        for bad in [
            &b""[..],
            b"TOK",
            b"XOKD\x00\x01\x00\x00\x00",
            b"TOKD\x00\x01\x00\x00\x05ab",
            b"TOKD\x00\x01\x00\x00\x00extra",
            b"TOKD\x00\x01\x00\x00\x02\xff\xfe",
        ] {
            assert!(Hello::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn long_names_are_truncated_on_a_char_boundary() {
        let hello = Hello::current(&"é".repeat(40));
        assert!(hello.client_name.len() <= MAX_CLIENT_NAME);
        assert!(Hello::decode(&hello.encode()).is_ok());
    }

    #[test]
    fn majors_must_match() {
        let mut hello = Hello::current("t");
        assert!(compatibility(&hello, PROTOCOL_MAJOR).is_ok());
        hello.minor += 7;
        assert!(compatibility(&hello, PROTOCOL_MAJOR).is_ok());
        hello.major += 1;
        let msg = compatibility(&hello, PROTOCOL_MAJOR).expect_err("mismatch");
        assert!(msg.contains("restart tokd"), "{msg}");
    }
}
