//! One connection: body-less `GET` and `HEAD` requests answered here with no buffer kept
//! between writes; anything else handed, with the bytes read so far, to hyper.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Request, Response, StatusCode, Version};
use http_body::Body;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower_service::Service;

use super::body::RequestBody;
use super::head::{self, Head, LeanRequest};
use super::io::Prefixed;
use super::response::{chunk_head, encode_head, framing, Framing};
use super::{HttpService, ResponseBody, Shared};
use crate::BoxError;

/// How many bytes one read of a request head asks for.
const READ_CHUNK: usize = 2048;

/// The connection is over: the client went away, broke the protocol, or the response
/// could not be completed.
struct Ended;

enum Next {
    Request(Box<LeanRequest>),
    Delegate,
    Refuse(StatusCode),
    Close,
}

struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet used: part of a head, or a request pipelined behind the one
    /// being answered. Empty (and unallocated) while a stream is idle.
    pending: Vec<u8>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
}

pub(super) async fn serve<S, B>(
    stream: TcpStream,
    mut service: S,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) where
    S: HttpService<B>,
    B: ResponseBody,
{
    let mut connection = Connection {
        stream,
        pending: Vec::new(),
        shared,
        shutdown,
    };
    // Until a request is answered, the bytes read are the connection's first.
    let mut at_start = true;
    loop {
        match connection.read_head(at_start).await {
            Next::Request(request) => {
                at_start = false;
                let keep_alive = request.keep_alive;
                match connection.answer(&mut service, request).await {
                    Ok(reusable) if keep_alive && reusable && !*connection.shutdown.borrow() => {}
                    Ok(_) => return connection.close().await,
                    Err(Ended) => return,
                }
            }
            // Boxed: hyper's connection state is large, and kept inline it would be part of
            // every connection's task, idle streams' included.
            Next::Delegate => return Box::pin(connection.delegate(service)).await,
            Next::Refuse(status) => return connection.refuse(status).await,
            Next::Close => return,
        }
    }
}

impl Connection {
    /// Reads until `pending` starts with a whole head, the client leaves, the head takes
    /// longer than the header read timeout, or (between requests) the server shuts down.
    /// `at_start`: no request was answered yet, so `pending` starts at the first byte.
    async fn read_head(&mut self, at_start: bool) -> Next {
        let deadline = Instant::now() + self.shared.header_read_timeout;
        let mut timeout = pin!(tokio::time::sleep_until(deadline));
        loop {
            if !self.pending.is_empty() {
                match head::parse(&self.pending, at_start) {
                    Head::Partial if self.pending.len() >= self.shared.max_head_size => {
                        return Next::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                    }
                    Head::Partial => {}
                    Head::Lean(request) => {
                        self.pending.drain(..request.head_len);
                        if self.pending.is_empty() {
                            // An idle stream keeps no read buffer.
                            self.pending = Vec::new();
                        }
                        return Next::Request(request);
                    }
                    Head::Delegate => return Next::Delegate,
                    Head::Refuse(status) => return Next::Refuse(status),
                }
            }
            let between_requests = self.pending.is_empty();
            let Connection { stream, shutdown, .. } = self;
            let mut stop = pin!(shutdown_signal(shutdown));
            let woke = poll_fn(|cx| {
                if between_requests && stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(()));
                }
                if timeout.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(()));
                }
                stream.poll_read_ready(cx).map_err(drop)
            })
            .await;
            if woke.is_err() {
                return Next::Close;
            }
            let start = self.pending.len();
            let want = READ_CHUNK.min(self.shared.max_head_size.saturating_sub(start).max(1));
            self.pending.resize(start + want, 0);
            let read = self.stream.try_read(&mut self.pending[start..]);
            self.pending.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Next::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Next::Close,
            }
        }
    }

    /// Answers one request. `Ok(false)`: the body was delimited by closing the connection.
    ///
    /// Blocks scope what is only needed before the body streams (the service's future, the
    /// response head), so that the state kept while a stream waits stays small: it is the
    /// memory of every idle connection.
    async fn answer<S, B>(&mut self, service: &mut S, request: Box<LeanRequest>) -> Result<bool, Ended>
    where
        S: Service<Request<RequestBody>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        let (keep_alive, head_only) = (request.keep_alive, request.head_only);
        let chunked_allowed = request.request.version() == Version::HTTP_11;
        // A service that fails gets the connection closed, as hyper does.
        poll_fn(|cx| service.poll_ready(cx)).await.map_err(|_| Ended)?;
        let response = {
            let call = pin!(service.call(request.request));
            self.until_client_gone(call).await?.map_err(|_| Ended)?
        };
        let (head, body, framing) = {
            let (parts, body) = response.into_parts();
            let framing = framing(&parts, &body.size_hint(), head_only, chunked_allowed);
            let mut head = Vec::with_capacity(256);
            // A server shutting down says so to the requests it still answers.
            let closing = !keep_alive || *self.shutdown.borrow();
            encode_head(&parts, framing, closing, &mut head);
            (head, body, framing)
        };
        match framing {
            Some(Framing::None) => {
                drop(body);
                self.write_all(&mut [IoSlice::new(&head)]).await?;
                Ok(true)
            }
            Some(framing) => self.write_body(head, body, Some(framing)).await.map(|()| true),
            None => self.write_body(head, body, None).await.map(|()| false),
        }
    }

    /// Streams `body` after `head`, framed as `framing` (`None`: until the connection closes).
    ///
    /// The head goes out with the first chunk when the body has one ready at once (an SSE
    /// stream's opening), otherwise alone before waiting.
    async fn write_body<B>(&mut self, head: Vec<u8>, body: B, framing: Option<Framing>) -> Result<(), Ended>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let mut body = pin!(body);
        let mut unsent_head = Some(head);
        let mut remaining = match framing {
            Some(Framing::Length(length)) => length,
            _ => u64::MAX,
        };
        loop {
            let piece = if unsent_head.is_some() {
                match poll_fn(|cx| Poll::Ready(poll_piece(body.as_mut(), cx))).await {
                    Poll::Ready(piece) => piece,
                    Poll::Pending => {
                        let head = unsent_head.take().unwrap_or_default();
                        self.write_all(&mut [IoSlice::new(&head)]).await?;
                        continue;
                    }
                }
            } else {
                let next = pin!(poll_fn(|cx| poll_piece(body.as_mut(), cx)));
                self.until_client_gone(next).await?
            };
            let head = unsent_head.take().unwrap_or_default();
            let mut bytes = match piece {
                Piece::End => {
                    let trailer: &[u8] = match framing {
                        Some(Framing::Chunked) => b"0\r\n\r\n",
                        _ => b"",
                    };
                    self.write_all(&mut [IoSlice::new(&head), IoSlice::new(trailer)])
                        .await?;
                    // A body shorter than its declared length leaves the client waiting:
                    // only closing tells it the response is over.
                    let short = matches!(framing, Some(Framing::Length(_))) && remaining != 0;
                    return if short { Err(Ended) } else { Ok(()) };
                }
                // The client sees an unfinished body, so it knows the response failed.
                Piece::Failed => return Err(Ended),
                Piece::Trailers => {
                    self.write_all(&mut [IoSlice::new(&head)]).await?;
                    continue;
                }
                Piece::Data(bytes) => bytes,
            };
            match framing {
                Some(Framing::Chunked) if !bytes.is_empty() => {
                    let mut size = [0; 18];
                    let size = chunk_head(bytes.len(), &mut size);
                    self.write_all(&mut [
                        IoSlice::new(&head),
                        IoSlice::new(size),
                        IoSlice::new(&bytes),
                        IoSlice::new(b"\r\n"),
                    ])
                    .await?;
                }
                Some(Framing::Length(_)) => {
                    let overlong = bytes.len() as u64 > remaining;
                    bytes.truncate(remaining.min(bytes.len() as u64) as usize);
                    remaining -= bytes.len() as u64;
                    self.write_all(&mut [IoSlice::new(&head), IoSlice::new(&bytes)])
                        .await?;
                    if overlong {
                        return Err(Ended);
                    }
                }
                _ => {
                    self.write_all(&mut [IoSlice::new(&head), IoSlice::new(&bytes)])
                        .await?
                }
            }
        }
    }

    /// Runs `work` until it completes or the client goes away (then `work` is dropped, which
    /// ends a held long poll or a stream's subscription at once).
    ///
    /// `work` is pinned by the caller, so that this future holds no second copy of it.
    async fn until_client_gone<F: Future>(&mut self, mut work: Pin<&mut F>) -> Result<F::Output, Ended> {
        poll_fn(|cx| {
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            self.poll_client_gone(cx).map(|()| Err(Ended))
        })
        .await
    }

    /// Ready when the client has closed its side or the socket failed. Bytes it sends
    /// meanwhile (a pipelined request) are kept for later, up to the head size limit;
    /// past that the socket is no longer read, so the client is held back by TCP.
    fn poll_client_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            // Never past the limit: a head longer than it must not be parsed whole.
            let room = self.shared.max_head_size.saturating_sub(self.pending.len());
            if room == 0 {
                return Poll::Pending;
            }
            match self.stream.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
            }
            let mut scratch = [0u8; 512];
            let scratch = &mut scratch[..room.min(512)];
            match self.stream.try_read(scratch) {
                Ok(0) => return Poll::Ready(()),
                Ok(n) => self.pending.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(()),
            }
        }
    }

    async fn write_all(&mut self, mut slices: &mut [IoSlice<'_>]) -> Result<(), Ended> {
        // Drops leading empty slices (an already sent head), so that nothing left to write
        // means no slices left, not a zero-length write taken for a closed socket.
        IoSlice::advance_slices(&mut slices, 0);
        while !slices.is_empty() {
            let written = poll_fn(|cx| Pin::new(&mut self.stream).poll_write_vectored(cx, slices))
                .await
                .map_err(|_| Ended)?;
            if written == 0 {
                return Err(Ended);
            }
            IoSlice::advance_slices(&mut slices, written);
        }
        Ok(())
    }

    /// Answers a head that is not HTTP, then closes, as hyper does.
    async fn refuse(mut self, status: StatusCode) {
        let response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_LENGTH, "0")
            .body(())
            .unwrap_or_default();
        let mut head = Vec::with_capacity(128);
        encode_head(
            &response.into_parts().0,
            Some(Framing::Length(0)),
            true,
            &mut head,
        );
        if self.write_all(&mut [IoSlice::new(&head)]).await.is_ok() {
            self.close().await;
        }
    }

    /// Ends the connection after a complete response.
    async fn close(mut self) {
        let _ = poll_fn(|cx| Pin::new(&mut self.stream).poll_shutdown(cx)).await;
    }

    /// Hands the connection, and what was read of it, to hyper (HTTP/1 or HTTP/2 by its
    /// first bytes, upgrades allowed), shutting it down gracefully with the server.
    async fn delegate<S, B>(self, service: S)
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let Connection {
            stream,
            pending,
            shared,
            mut shutdown,
        } = self;
        let io = TokioIo::new(Prefixed::new(Bytes::from(pending), stream));
        let service = TowerToHyperService::new(FromHyper(service));
        let mut connection = pin!(shared.hyper.serve_connection_with_upgrades(io, service));
        let mut stop = pin!(shutdown_signal(&mut shutdown));
        let finished = poll_fn(|cx| {
            if connection.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            stop.as_mut().poll(cx).map(|()| false)
        })
        .await;
        if !finished {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// What a body yields next, reduced to what the wire needs. Trailers are dropped (a
/// chunked body ends without them), and so is an error, whatever it says: that keeps both
/// out of the connection's state (they need not be `Send`).
enum Piece {
    Data(Bytes),
    Trailers,
    End,
    Failed,
}

fn poll_piece<B: Body>(body: Pin<&mut B>, cx: &mut Context<'_>) -> Poll<Piece> {
    body.poll_frame(cx).map(|frame| match frame {
        None => Piece::End,
        Some(Err(_)) => Piece::Failed,
        Some(Ok(frame)) => match frame.into_data() {
            Ok(mut data) => Piece::Data(data.copy_to_bytes(data.remaining())),
            Err(_) => Piece::Trailers,
        },
    })
}

/// Completes when the server starts shutting down; never, if the server was dropped
/// without shutting down (its connections then live on, as tokio tasks do).
async fn shutdown_signal(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The service seen from hyper: hyper's request body wrapped in [`RequestBody`].
#[derive(Clone)]
struct FromHyper<S>(S);

impl<S> Service<Request<hyper::body::Incoming>> for FromHyper<S>
where
    S: Service<Request<RequestBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<hyper::body::Incoming>) -> Self::Future {
        self.0.call(request.map(RequestBody::incoming))
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
