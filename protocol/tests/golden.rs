//! Frames of this protocol version, committed as fixtures, must keep decoding forever.
//!
//! Run with `TOKD_BLESS=1` to write fixtures for new variants; never rewrite existing ones.

mod samples;

use std::path::PathBuf;

use tokd_protocol::frame::{decode_payload, encode_payload};
use tokd_protocol::{Request, Response};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.bin"))
}

fn check<T>(name: &str, msg: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let path = fixture(name);
    let encoded = encode_payload(msg).expect("encodes");
    if std::env::var_os("TOKD_BLESS").is_some() && !path.exists() {
        std::fs::write(&path, &encoded).expect("write fixture");
    }
    let golden =
        std::fs::read(&path).unwrap_or_else(|e| panic!("missing fixture {}: {e}", path.display()));
    let decoded: T = decode_payload(&golden).expect(name);
    assert_eq!(
        &decoded, msg,
        "{name}: golden frame decodes to something else"
    );
    assert_eq!(encoded, golden, "{name}: this version encodes differently");
}

#[test]
fn golden_requests_decode() {
    for (name, req) in samples::requests() {
        check::<Request>(name, &req);
    }
}

#[test]
fn golden_responses_decode() {
    for (name, resp) in samples::responses() {
        check::<Response>(name, &resp);
    }
}

#[test]
fn golden_hello_layout() {
    let hello = tokd_protocol::Hello {
        major: 1,
        minor: 0,
        client_name: "tokd-cli/0.1.0".into(),
    };
    check_raw("hello-1.0", &hello.encode());
    let decoded =
        tokd_protocol::Hello::decode(&std::fs::read(fixture("hello-1.0")).expect("fixture"))
            .expect("decodes");
    assert_eq!(decoded, hello);
}

fn check_raw(name: &str, bytes: &[u8]) {
    let path = fixture(name);
    if std::env::var_os("TOKD_BLESS").is_some() && !path.exists() {
        std::fs::write(&path, bytes).expect("write fixture");
    }
    assert_eq!(std::fs::read(&path).expect("fixture"), bytes, "{name}");
}
