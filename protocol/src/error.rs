//! `ProtocolError`: everything that can go wrong turning bytes into messages and back.

use thiserror::Error;

/// Why bytes could not become a message, or a message could not become bytes.
///
/// Every decode path returns one of these instead of panicking: the daemon reads bytes
/// from any local process, and a hostile or confused peer must cost one error, not a crash.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// The length prefix announces more than the frame limit allows.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The payload is not a valid message of the expected type.
    #[error("malformed message: {0}")]
    Decode(String),
    /// The payload decoded, but bytes were left over after the message.
    #[error("malformed message: {0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A message could not be encoded (for example it exceeds the frame limit).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The hello frame is not a tokd hello (wrong magic, bad layout).
    #[error("not a tokd hello: {0}")]
    BadHello(&'static str),
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// Reading or writing the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
