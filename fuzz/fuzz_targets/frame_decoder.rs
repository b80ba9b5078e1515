//! Arbitrary bytes through every decoding path a peer's bytes take: the pure frame functions,
//! the tokio `FrameCodec` and `MessageCodec` (fed in chunks, as a socket delivers them), the
//! blocking reader, the fixed-layout hello and its answer, and the bincode payloads of
//! `Request` and `Response`.
//!
//! Asserts: nothing panics; the three frame decoders agree frame by frame and on how the
//! stream ends; whatever decodes re-encodes to an equal value, and that encoding is stable.
//!
//! Input layout: one control byte (frame limit and chunk size), then the byte stream.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokd_protocol::codec::{FrameCodec, MessageCodec};
use tokd_protocol::frame::{
    DEFAULT_MAX_FRAME, HEADER_LEN, decode_frame, decode_payload, encode_frame, encode_payload,
    read_frame_blocking,
};
use tokd_protocol::{Hello, HelloAck, ProtocolError, Request, Response};
use tokio_util::codec::Decoder;

/// How a stream of frames ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Exactly at a frame boundary.
    Clean,
    /// Inside a header or a payload.
    Truncated,
    /// A header announced more than the limit.
    TooLarge,
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    // Small limits make the oversize path reachable with small inputs.
    let max = match control & 3 {
        0 => DEFAULT_MAX_FRAME,
        1 => 64,
        2 => 1,
        _ => 0,
    };
    let chunk = usize::from(control >> 2) + 1;

    let (frames, end) = pure_frames(stream, max);
    let (codec_frames, codec_end) = codec_frames(stream, max, chunk);
    assert_eq!(
        frames, codec_frames,
        "FrameCodec disagrees with decode_frame"
    );
    assert_eq!(end, codec_end, "FrameCodec ends differently");
    let (blocking_frames, blocking_end) = blocking_frames(stream, max);
    assert_eq!(frames, blocking_frames, "read_frame_blocking disagrees");
    assert_eq!(end, blocking_end, "read_frame_blocking ends differently");

    for payload in &frames {
        check_frame(payload, max);
        check_hello(payload);
        check_message::<Request>(payload);
        check_message::<Response>(payload);
        check_message_codec(payload);
    }
    // The whole stream as one payload too: the fuzzer need not learn the frame header to
    // reach the message decoders.
    check_hello(stream);
    check_message::<Request>(stream);
    check_message::<Response>(stream);
});

fn pure_frames(stream: &[u8], max: usize) -> (Vec<Vec<u8>>, End) {
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        match decode_frame(rest, max) {
            Ok(Some((start, end))) => {
                assert_eq!(start, HEADER_LEN);
                assert!(end <= rest.len() && end - start <= max);
                frames.push(rest[start..end].to_vec());
                rest = &rest[end..];
            }
            Ok(None) if rest.is_empty() => return (frames, End::Clean),
            Ok(None) => {
                assert!(
                    rest.len() < HEADER_LEN
                        || rest.len() < HEADER_LEN + announced(rest).unwrap_or(0)
                );
                return (frames, End::Truncated);
            }
            Err(ProtocolError::FrameTooLarge { len, max: m }) => {
                assert!(len > m && m == max);
                return (frames, End::TooLarge);
            }
            Err(e) => panic!("decode_frame failed with an unexpected error: {e}"),
        }
    }
}

fn announced(buf: &[u8]) -> Option<usize> {
    let header: [u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(header) as usize)
}

/// The stream delivered `chunk` bytes at a time, as reads from a socket would.
fn codec_frames(stream: &[u8], max: usize, chunk: usize) -> (Vec<Vec<u8>>, End) {
    let mut codec = FrameCodec::new(max, max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame.to_vec()),
                Ok(None) => break,
                Err(ProtocolError::FrameTooLarge { .. }) => return (frames, End::TooLarge),
                Err(e) => panic!("FrameCodec::decode failed with an unexpected error: {e}"),
            }
        }
    }
    match codec.decode_eof(&mut buf) {
        Ok(None) => (frames, End::Clean),
        Ok(Some(_)) => panic!("decode_eof found a frame that decode had left behind"),
        Err(ProtocolError::Truncated) => (frames, End::Truncated),
        Err(ProtocolError::FrameTooLarge { .. }) => (frames, End::TooLarge),
        Err(e) => panic!("FrameCodec::decode_eof failed with an unexpected error: {e}"),
    }
}

fn blocking_frames(stream: &[u8], max: usize) -> (Vec<Vec<u8>>, End) {
    let mut reader = stream;
    let mut frames = Vec::new();
    loop {
        let before = reader.len();
        match read_frame_blocking(&mut reader, max) {
            Ok(frame) => frames.push(frame),
            Err(ProtocolError::Truncated) if before == 0 => return (frames, End::Clean),
            Err(ProtocolError::Truncated) => return (frames, End::Truncated),
            Err(ProtocolError::FrameTooLarge { .. }) => return (frames, End::TooLarge),
            Err(e) => panic!("read_frame_blocking failed with an unexpected error: {e}"),
        }
    }
}

/// A payload that came out of a frame goes back into one and out again unchanged.
fn check_frame(payload: &[u8], max: usize) {
    let mut out = Vec::new();
    encode_frame(payload, max, &mut out).expect("a payload within the limit encodes");
    assert_eq!(
        decode_frame(&out, max).expect("re-decodes"),
        Some((HEADER_LEN, out.len()))
    );
    assert_eq!(&out[HEADER_LEN..], payload);
}

fn check_hello(payload: &[u8]) {
    if let Ok(hello) = Hello::decode(payload) {
        // The layout is fixed and has one spelling per value.
        assert_eq!(
            hello.encode(),
            payload,
            "a decoded hello re-encodes differently"
        );
        assert_eq!(Hello::decode(&hello.encode()).ok(), Some(hello));
    }
    if let Ok(ack) = HelloAck::decode(payload) {
        let again = HelloAck::decode(&ack.encode()).expect("a decoded hello answer re-decodes");
        assert_eq!(again, ack);
        assert_eq!(again.encode(), ack.encode());
    }
}

fn check_message<T>(payload: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(msg) = decode_payload::<T>(payload) else {
        return;
    };
    let encoded = encode_payload(&msg).expect("a decoded message encodes");
    let again: T = decode_payload(&encoded).expect("a re-encoded message decodes");
    assert_eq!(again, msg, "the message changed through encode/decode");
    assert_eq!(
        encode_payload(&again).expect("encodes"),
        encoded,
        "the encoding is not stable"
    );
}

/// The typed codec (the client's and the daemon's view) agrees with `decode_payload`.
fn check_message_codec(payload: &[u8]) {
    let mut framed = Vec::new();
    if encode_frame(payload, DEFAULT_MAX_FRAME, &mut framed).is_err() {
        return;
    }
    let mut buf = BytesMut::from(framed.as_slice());
    let mut codec = MessageCodec::<Request, Response>::new(DEFAULT_MAX_FRAME, DEFAULT_MAX_FRAME);
    let typed = codec.decode(&mut buf);
    let direct = decode_payload::<Request>(payload);
    match (typed, direct) {
        (Ok(Some(a)), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (typed, direct) => panic!("MessageCodec says {typed:?}, decode_payload {direct:?}"),
    }
    assert!(
        buf.is_empty(),
        "MessageCodec left bytes of a whole frame behind"
    );
}
