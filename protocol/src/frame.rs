//! The one framing implementation: a 4-byte big-endian length, then the payload.
//!
//! These functions are pure and synchronous so that the tokio codec
//! ([`crate::codec::FrameCodec`]), the blocking client and the fuzz targets all share
//! them: there is exactly one place that decides what a frame is.

use serde::{Serialize, de::DeserializeOwned};

use crate::error::ProtocolError;

/// Length of the frame header: a big-endian `u32` payload length.
pub const HEADER_LEN: usize = 4;

/// Default maximum payload size of one frame (256 KiB). Larger frames are refused before
/// any allocation, and the connection that sent one is closed.
pub const DEFAULT_MAX_FRAME: usize = 256 * 1024;

/// Maximum payload of a frame the daemon sends (64 MiB). Answers such as `status` with
/// 100k sessions are far larger than any request, and clients trust their own daemon.
pub const MAX_RESPONSE_FRAME: usize = 64 * 1024 * 1024;

/// Appends one frame holding `payload` to `out`.
///
/// # Errors
/// [`ProtocolError::FrameTooLarge`] when the payload exceeds `max`.
pub fn encode_frame(payload: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    if payload.len() > max {
        return Err(ProtocolError::FrameTooLarge {
            len: payload.len(),
            max,
        });
    }
    let len = u32::try_from(payload.len()).map_err(|_| ProtocolError::FrameTooLarge {
        len: payload.len(),
        max,
    })?;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Looks for one complete frame at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((start, end)))` with the payload's
/// byte range when a whole frame is there (the frame occupies `buf[..end]`).
///
/// # Errors
/// [`ProtocolError::FrameTooLarge`] as soon as the header announces more than `max`, before
/// the payload has arrived: a peer cannot make us buffer an oversize frame.
pub fn decode_frame(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, ProtocolError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; HEADER_LEN];
    len_bytes.copy_from_slice(header);
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > max {
        return Err(ProtocolError::FrameTooLarge { len, max });
    }
    let end = HEADER_LEN + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((HEADER_LEN, end)))
}

fn bincode_config() -> impl bincode::config::Config {
    // The decode limit bounds allocations made while decoding, whatever a length field inside
    // the payload claims.
    bincode::config::standard().with_limit::<{ MAX_RESPONSE_FRAME * 2 }>()
}

/// Encodes a message's payload (without the frame header).
///
/// Kept behind this function so the payload format (bincode 2) can be swapped in one place.
///
/// # Errors
/// [`ProtocolError::Encode`] if serde refuses the value.
pub fn encode_payload<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    bincode::serde::encode_to_vec(msg, bincode_config())
        .map_err(|e| ProtocolError::Encode(e.to_string()))
}

/// Decodes a message from a whole payload; trailing bytes are an error.
///
/// # Errors
/// [`ProtocolError::Decode`] for anything that is not a valid `T`,
/// [`ProtocolError::TrailingBytes`] when the payload is longer than the message.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtocolError> {
    decode_whole(payload, bincode_config())
}

/// Decodes one message that must use every byte of `payload`.
fn decode_whole<T: DeserializeOwned, C: bincode::config::Config>(
    payload: &[u8],
    config: C,
) -> Result<T, ProtocolError> {
    let (msg, used) = bincode::serde::decode_from_slice(payload, config)
        .map_err(|e| ProtocolError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(ProtocolError::TrailingBytes(payload.len() - used));
    }
    Ok(msg)
}

/// The most decoding one request may claim (allocate): 64 × the default frame limit, 16 MiB.
/// Requests are small; without this a 15-byte payload whose length fields claim a huge
/// string makes the decoder allocate that much before reading a byte of it.
/// It equals the largest request frame the daemon can be configured to accept
/// (`daemon.max_frame_bytes`), so every frame that passes the size check can decode.
pub const REQUEST_DECODE_LIMIT: usize = 64 * DEFAULT_MAX_FRAME;

/// [`decode_payload`] for requests, with the tighter [`REQUEST_DECODE_LIMIT`].
///
/// # Errors
/// As [`decode_payload`]; a payload claiming more than the limit is a `Decode` error.
pub fn decode_request<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtocolError> {
    decode_whole(
        payload,
        bincode::config::standard().with_limit::<REQUEST_DECODE_LIMIT>(),
    )
}

/// Appends a message as one frame to `out`.
///
/// # Errors
/// See [`encode_payload`] and [`encode_frame`].
pub fn encode_message<T: Serialize>(
    msg: &T,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    let payload = encode_payload(msg)?;
    encode_frame(&payload, max, out)
}

/// Reads one frame's payload from a blocking reader.
///
/// # Errors
/// [`ProtocolError::Truncated`] when the stream ends inside a frame, `Io` for read errors,
/// `FrameTooLarge` before reading an oversize payload.
pub fn read_frame_blocking(
    reader: &mut impl std::io::Read,
    max: usize,
) -> Result<Vec<u8>, ProtocolError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_or_truncated(reader, &mut header)?;
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(ProtocolError::FrameTooLarge { len, max });
    }
    let mut payload = vec![0u8; len];
    read_exact_or_truncated(reader, &mut payload)?;
    Ok(payload)
}

fn read_exact_or_truncated(
    reader: &mut impl std::io::Read,
    buf: &mut [u8],
) -> Result<(), ProtocolError> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProtocolError::Truncated
        } else {
            ProtocolError::Io(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_partial_input() {
        let mut out = Vec::new();
        encode_frame(b"hello", 16, &mut out).expect("fits");
        assert_eq!(&out[..4], &[0, 0, 0, 5]);
        for cut in 0..out.len() {
            assert!(decode_frame(&out[..cut], 16).expect("no error").is_none());
        }
        let (start, end) = decode_frame(&out, 16).expect("ok").expect("complete");
        assert_eq!(&out[start..end], b"hello");
    }

    #[test]
    fn oversize_is_refused_on_both_sides() {
        let mut out = Vec::new();
        assert!(matches!(
            encode_frame(&[0; 17], 16, &mut out),
            Err(ProtocolError::FrameTooLarge { len: 17, max: 16 })
        ));
        // Only the header has arrived: the refusal must not wait for the payload.
        assert!(matches!(
            decode_frame(&[0, 0, 0, 17], 16),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            decode_frame(&[0xff, 0xff, 0xff, 0xff], DEFAULT_MAX_FRAME),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut payload = encode_payload(&42u32).expect("encodes");
        payload.push(0);
        assert!(matches!(
            decode_payload::<u32>(&payload),
            Err(ProtocolError::TrailingBytes(1))
        ));
    }

    #[test]
    fn blocking_reader_reports_truncation() {
        let mut out = Vec::new();
        encode_frame(b"abcdef", 64, &mut out).expect("fits");
        let mut cut = &out[..7];
        assert!(matches!(
            read_frame_blocking(&mut cut, 64),
            Err(ProtocolError::Truncated)
        ));
        let mut whole = &out[..];
        assert_eq!(
            read_frame_blocking(&mut whole, 64).expect("reads"),
            b"abcdef"
        );
    }
}

#[cfg(test)]
mod request_limit_tests {
    use super::*;

    #[test]
    fn a_tiny_request_claiming_a_huge_name_is_refused_before_allocating() {
        // A `Get` whose name claims 32 MiB (varint 0xFC: a u32 length follows): under the
        // general limit, over the request limit.
        let mut payload = vec![0u8]; // Request::Get
        payload.push(0xFC);
        payload.extend_from_slice(&(32u32 << 20).to_le_bytes());
        let err = decode_request::<crate::Request>(&payload).expect_err("refused");
        assert!(
            matches!(&err, ProtocolError::Decode(m) if m.contains("LimitExceeded")),
            "{err:?}"
        );
    }

    #[test]
    fn a_request_as_large_as_the_largest_allowed_frame_decodes() {
        // 10 MiB of name: within the 16 MiB `max_frame_bytes` ceiling, so it must decode
        // (the handler, not the decoder, judges the name).
        let name = "n".repeat(10 << 20);
        let req = crate::Request::Get(crate::v0::GetRequest {
            name,
            min_valid_ms: 0,
            wait_ms: 0,
            include_id_token: false,
        });
        let payload = encode_payload(&req).expect("encode");
        assert!(payload.len() < REQUEST_DECODE_LIMIT);
        assert_eq!(
            decode_request::<crate::Request>(&payload).expect("decode"),
            req
        );
    }

    #[test]
    fn an_ordinary_request_still_decodes() {
        let req = crate::Request::Ping(crate::verbs::ping::PingRequest {});
        let payload = encode_payload(&req).expect("encode");
        assert_eq!(
            decode_request::<crate::Request>(&payload).expect("decode"),
            req
        );
    }
}
