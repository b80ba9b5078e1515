//! What a request handler answers: one frame, or a stream of frames (`watch`, `login`).
//! Kept apart from the handlers so that the flows that stream (the login) depend on this
//! type, not on the dispatcher.

use std::pin::Pin;

use futures_util::Stream;
use tokd_protocol::{Request, Response};
use tokio::sync::mpsc;

/// A streamed answer (`watch`, `login`): frames until the stream ends.
pub type ResponseStream = Pin<Box<dyn Stream<Item = Response> + Send>>;

/// What a handler answers: one frame, or a stream of them.
// `One` carries the hot path's answer by value: boxing it would cost an allocation per
// request to save a move.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// A single answer frame.
    One(Response),
    /// A stream of answer frames; the connection ends with it.
    Stream(ResponseStream),
    /// A stream of answer frames that also takes the client's frames while it runs (a
    /// login: the address a browser on another machine was redirected to).
    Conversation(ResponseStream, mpsc::Sender<Request>),
}
