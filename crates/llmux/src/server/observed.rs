//! Every response carries its request's `x-request-id` (the client's when usable, else a new one), and every
//! API request's record ends when its answer's body does: at its last byte, or when the client goes away and
//! the body is dropped unread. Ending it there, at the outermost layer, covers every protocol and every way a
//! request ends — whole answers, streams, keep-alive streams and errors alike.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::observe::{RequestId, Trace};

/// The header a request's id travels in, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of a request with `headers`: the client's `x-request-id` when usable, otherwise a new one.
pub fn request_id(headers: &HeaderMap) -> RequestId {
    RequestId::from_client(headers.get(X_REQUEST_ID).map(HeaderValue::as_bytes))
}

/// `response` with the request's id, unchanged otherwise.
pub fn with_id(mut response: Response, id: &RequestId) -> Response {
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// `response` with the request's id, its body ending `trace` when it ends or is dropped.
pub fn observed(response: Response, id: &RequestId, trace: Trace) -> Response {
    let (parts, body) = with_id(response, id).into_parts();
    let status = parts.status.as_u16();
    Response::from_parts(parts, Body::new(Observed { inner: body, trace, status, ended: false }))
}

/// A response body that ends its request's record.
struct Observed {
    inner: Body,
    trace: Trace,
    status: u16,
    ended: bool,
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.end(true),
            Poll::Ready(Some(Err(e))) => {
                this.trace.broke_off(&format!("the answer broke off: {e}"));
                this.end(true);
            }
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.end(true),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Observed {
    fn end(&mut self, completed: bool) {
        if !self.ended {
            self.ended = true;
            self.trace.finish(self.status, completed);
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // Dropped before its end: the client went away (or the connection broke). A body that had nothing to
        // send is not polled at all.
        let empty = http_body::Body::is_end_stream(&self.inner);
        self.end(empty);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usable_client_id_is_kept_and_any_other_replaced() {
        let id = |sent: &[u8]| RequestId::from_client(Some(sent)).0;
        assert_eq!(id(b"abc-123_XYZ.9"), "abc-123_XYZ.9");
        let fresh = id(b"has space");
        assert_ne!(fresh, "has space");
        assert_eq!(fresh.len(), 36, "a UUID: {fresh}");
        assert_ne!(id(b""), "");
        assert_ne!(id(&[b'a'; RequestId::MAX_LEN + 1]), "a".repeat(RequestId::MAX_LEN + 1));
        assert_eq!(id(&[b'a'; RequestId::MAX_LEN]), "a".repeat(RequestId::MAX_LEN));
        assert_ne!(id("caf\u{e9}".as_bytes()), "caf\u{e9}", "not ASCII");
        assert_ne!(id(b"a\x1b[2Jb"), "a\x1b[2Jb", "a control character");
        assert_ne!(RequestId::new(), RequestId::new());
    }
}
