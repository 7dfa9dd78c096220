//! The request body handed to the service.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::BoxError;

/// The body of a request served by [`Server`](super::Server).
///
/// Requests the lean path answers (`GET` and `HEAD` without a body) carry an empty body;
/// requests with a body are served by hyper and carry hyper's streaming body.
#[derive(Debug, Default)]
pub struct RequestBody {
    incoming: Option<hyper::body::Incoming>,
}

impl RequestBody {
    pub(super) fn empty() -> Self {
        RequestBody { incoming: None }
    }

    pub(super) fn incoming(incoming: hyper::body::Incoming) -> Self {
        RequestBody {
            incoming: Some(incoming),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match &mut self.get_mut().incoming {
            None => Poll::Ready(None),
            Some(incoming) => Pin::new(incoming).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
