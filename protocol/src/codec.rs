//! The tokio codec: [`crate::frame`]'s functions behind `Decoder`/`Encoder`.

use std::marker::PhantomData;

use bytes::{Buf, BytesMut};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::ProtocolError;
use crate::frame::{decode_frame, encode_frame};

/// Raw frames: the payload bytes of each frame. Used for the hello, and by code that wants
/// to decode payloads itself (to answer a malformed message without dropping the connection).
#[derive(Debug, Clone)]
pub struct FrameCodec {
    decode_max: usize,
    encode_max: usize,
}

impl FrameCodec {
    /// A codec refusing incoming frames over `decode_max` and outgoing frames over
    /// `encode_max` bytes (a daemon takes small requests and may send large answers).
    pub fn new(decode_max: usize, encode_max: usize) -> Self {
        FrameCodec {
            decode_max,
            encode_max,
        }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
        match decode_frame(src, self.decode_max)? {
            None => {
                // Reserve for the rest of a frame whose header has arrived; the header was
                // already checked against the limit.
                if let Some(header) = src.get(..4) {
                    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                    src.reserve((len as usize + 4).saturating_sub(src.len()));
                }
                Ok(None)
            }
            Some((start, end)) => {
                let mut frame = src.split_to(end);
                frame.advance(start);
                Ok(Some(frame))
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtocolError::Truncated),
        }
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let mut out = Vec::new();
        encode_frame(payload, self.encode_max, &mut out)?;
        dst.extend_from_slice(&out);
        Ok(())
    }
}

/// Typed frames: decodes `In` and encodes `Out` with the crate's payload format.
#[derive(Debug, Clone)]
pub struct MessageCodec<In, Out> {
    frames: FrameCodec,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> MessageCodec<In, Out> {
    /// A codec with the limits of [`FrameCodec::new`].
    pub fn new(decode_max: usize, encode_max: usize) -> Self {
        MessageCodec {
            frames: FrameCodec::new(decode_max, encode_max),
            _types: PhantomData,
        }
    }
}

impl<In: DeserializeOwned, Out> Decoder for MessageCodec<In, Out> {
    type Item = In;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtocolError> {
        match self.frames.decode(src)? {
            Some(payload) => crate::frame::decode_payload(&payload).map(Some),
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtocolError> {
        match self.frames.decode_eof(src)? {
            Some(payload) => crate::frame::decode_payload(&payload).map(Some),
            None => Ok(None),
        }
    }
}

impl<In, Out: Serialize> Encoder<&Out> for MessageCodec<In, Out> {
    type Error = ProtocolError;

    fn encode(&mut self, msg: &Out, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let payload = crate::frame::encode_payload(msg)?;
        self.frames.encode(payload.as_slice(), dst)
    }
}
