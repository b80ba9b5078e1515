//! Every message survives encode → frame → decode, and random bytes never panic the decoder.

mod samples;

use proptest::prelude::*;
use tokd_protocol::frame::{
    DEFAULT_MAX_FRAME, decode_frame, decode_payload, encode_message, encode_payload,
};
use tokd_protocol::{Hello, HelloAck, ProtocolError, Request, Response};

#[test]
fn every_request_round_trips() {
    let all = samples::requests();
    assert_eq!(all.len(), 13, "one sample per request variant");
    for (name, req) in all {
        let mut framed = Vec::new();
        encode_message(&req, DEFAULT_MAX_FRAME, &mut framed).expect(name);
        let (start, end) = decode_frame(&framed, DEFAULT_MAX_FRAME)
            .expect(name)
            .expect(name);
        assert_eq!(end, framed.len());
        let back: Request = decode_payload(&framed[start..end]).expect(name);
        assert_eq!(back, req, "{name}");
    }
}

#[test]
fn every_response_round_trips() {
    for (name, resp) in samples::responses() {
        let payload = encode_payload(&resp).expect(name);
        let back: Response = decode_payload(&payload).expect(name);
        assert_eq!(back, resp, "{name}");
    }
}

/// The 13 variants of protocol 1.0 come first; bincode's standard config writes the index
/// as its first byte while it is below 251.
const RESPONSE_VARIANTS_1_0: u8 = 13;

#[test]
fn a_1_0_client_is_only_sent_what_1_0_decodes() {
    for (name, resp) in samples::responses() {
        let newest = resp.clone().for_minor(1);
        assert_eq!(
            newest.as_ref(),
            Some(&resp),
            "{name}: 1.1 clients get it as it is"
        );
        let Some(old) = resp.for_minor(0) else {
            continue;
        };
        let payload = encode_payload(&old).expect(name);
        assert!(
            payload[0] < RESPONSE_VARIANTS_1_0,
            "{name}: a 1.0 client would be sent variant {}",
            payload[0]
        );
    }
    // A 1.0 answer is the 1.1 answer minus what 1.1 added.
    let status = samples::session_status2();
    let old: tokd_protocol::v0::SessionStatus = status.clone().into();
    assert_eq!(old, samples::session_status());
}

#[test]
fn truncated_payloads_are_errors() {
    for (name, resp) in samples::responses() {
        let payload = encode_payload(&resp).expect(name);
        for cut in 0..payload.len() {
            assert!(
                decode_payload::<Response>(&payload[..cut]).is_err(),
                "{name} cut at {cut} decoded"
            );
        }
    }
}

#[test]
fn a_request_is_not_a_response() {
    // Unknown variant indexes (e.g. a newer client's verb) are errors, not panics.
    let payload = encode_payload(&(200u32, 1u8)).expect("encodes");
    assert!(matches!(
        decode_payload::<Request>(&payload),
        Err(ProtocolError::Decode(_) | ProtocolError::TrailingBytes(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_payload::<Request>(&bytes);
        let _ = decode_payload::<Response>(&bytes);
        let _ = Hello::decode(&bytes);
        let _ = HelloAck::decode(&bytes);
        let _ = decode_frame(&bytes, DEFAULT_MAX_FRAME);
    }

    #[test]
    fn mutated_messages_never_panic(
        index in 0usize..10,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let (_, req) = samples::requests().swap_remove(index);
        let mut payload = encode_payload(&req).expect("encodes");
        for (pos, byte) in flips {
            let len = payload.len();
            payload[pos % len] ^= byte;
        }
        let _ = decode_payload::<Request>(&payload);
    }

    #[test]
    fn huge_length_fields_are_bounded(len in 0u64..u64::MAX) {
        // A vec/string length prefix claiming gigabytes must fail, not allocate.
        let mut payload = vec![0u8]; // Request::Get
        payload.push(0xfd); // bincode varint: u64 follows
        payload.extend_from_slice(&len.to_le_bytes());
        let _ = decode_payload::<Request>(&payload);
    }
}
