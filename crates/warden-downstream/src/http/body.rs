//! Response bodies and the JSON-RPC error responses of the HTTP face.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};
use warden_proto::error::error_response;
use warden_proto::{ErrorCode, Id};

/// An SSE comment: keeps proxies from closing an idle stream; clients ignore it.
const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// The body of every response: a complete buffer, or an event stream.
#[derive(Debug)]
pub(crate) enum ResponseBody {
    /// A complete body (`None` once sent, or for an empty body).
    Full(Option<Bytes>),
    /// A server-sent event stream.
    Sse(SseBody),
}

impl ResponseBody {
    pub(crate) fn empty() -> Self {
        ResponseBody::Full(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Sse(sse) => sse.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Sse(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::Sse(_) => SizeHint::default(),
        }
    }
}

/// An event stream: first the `pending` events (priming, replay), then live events from `live`
/// until its senders are gone, with keep-alive comments whenever the stream is idle.
///
/// Dropping the body (the client disconnected) drops the receiver, which the producer sees as
/// a closed channel.
#[derive(Debug)]
pub(crate) struct SseBody {
    pending: VecDeque<Bytes>,
    live: Option<mpsc::Receiver<Bytes>>,
    keepalive: Interval,
}

impl SseBody {
    pub(crate) fn new(
        pending: VecDeque<Bytes>,
        live: Option<mpsc::Receiver<Bytes>>,
        keepalive: Duration,
    ) -> Self {
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            pending,
            live,
            keepalive,
        }
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(event) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(event))));
        }
        let Some(live) = self.live.as_mut() else {
            return Poll::Ready(None);
        };
        match live.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                self.keepalive.reset();
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if self.keepalive.poll_tick(cx).is_ready() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(KEEPALIVE)))));
        }
        Poll::Pending
    }
}

/// A request refused before or instead of reaching the handler.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) message: Cow<'static, str>,
    pub(crate) data: Option<Value>,
}

impl Rejection {
    pub(crate) fn new(
        status: StatusCode,
        code: ErrorCode,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            data: None,
        }
    }

    /// A `-32600` Invalid Request rejection with `status`.
    pub(crate) fn invalid(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(status, ErrorCode::InvalidRequest, message)
    }

    pub(crate) fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The HTTP response: `status` with a JSON-RPC error body carrying `id` (null if none).
    pub(crate) fn response(self, id: Option<&Id>) -> Response<ResponseBody> {
        let id = id.map_or(Value::Null, Id::to_value);
        let body = error_response(&id, self.code, &self.message, self.data);
        json_value(self.status, &body)
    }
}

/// A JSON response with the given bytes.
pub(crate) fn json(status: StatusCode, bytes: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Full(Some(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON response serialised from `value`.
pub(crate) fn json_value(status: StatusCode, value: &Value) -> Response<ResponseBody> {
    // A `Value` always serialises.
    json(
        status,
        Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
    )
}

/// A response without a body.
pub(crate) fn empty(status: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    response
}

/// A `text/event-stream` response with the headers every stream gets.
pub(crate) fn sse(body: SseBody) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Sse(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx and similar proxies buffer responses unless told not to; SSE must flow at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
