//! One HTTP/3 request stream as a Pingora custom downstream session.
//!
//! `HttpSession::new_custom(Box::new(H3Session { .. }))` hands the stream to the same
//! `HttpProxy<EdgeProxy>` that serves h1 and h2, so every `ProxyHttp` phase, the upstream
//! pool, retries, `fail_to_proxy` and `logging` run once for all three protocols. This
//! type only moves bytes: the request arrives from tokio-quiche's `InboundFrameStream`,
//! the response leaves through its `OutboundFrameSender`. It mirrors Pingora's h2 server
//! session (`protocols/http/v2/server.rs`) method by method.
//!
//! The trait is `#[doc(hidden)]` in pingora-core 0.9.1 (pinned `=0.9.1` in the workspace);
//! `tests` below drive every method the proxy calls, so an upgrade shows what moved.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, Stream};
use http::HeaderMap;
use pingora_core::protocols::http::body_buffer::FixedBuffer;
use pingora_core::protocols::http::custom::server::Session;
use pingora_core::protocols::http::custom::CustomMessageWrite;
use pingora_core::protocols::http::HttpTask;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::Digest;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use tokio_quiche::http3::driver::{InboundFrame, InboundFrameStream, OutboundFrame};

use super::headers::{h3_fields, h3_response_headers};

/// How much of a request body is kept for a retry, as in Pingora's h1/h2 sessions.
const RETRY_BUFFER_LIMIT: usize = 64 * 1024;

/// Where response frames go: tokio-quiche's per-stream sender in production, a plain
/// channel in tests.
pub(crate) type FrameSink =
    std::pin::Pin<Box<dyn futures::Sink<OutboundFrame, Error = ()> + Send + Sync>>;

/// An HTTP/3 request stream.
pub struct H3Session {
    request: RequestHeader,
    send: FrameSink,
    recv: InboundFrameStream,
    /// The client's FIN on the request stream has been seen.
    body_done: bool,
    /// The request announced no body (FIN with the headers).
    body_empty: bool,
    body_read: usize,
    body_sent: usize,
    response_written: Option<Box<ResponseHeader>>,
    /// FIN sent (or the stream reset): nothing more may be written.
    ended: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    total_drain_timeout: Option<Duration>,
    retry_buffer: Option<FixedBuffer>,
    digest: Digest,
    client_addr: SocketAddr,
    server_addr: SocketAddr,
    /// Fires when the client resets the stream (tokio-quiche reports resets on the
    /// connection's event channel, which `h3::serve_connection` routes here).
    reset: Option<tokio::sync::oneshot::Receiver<()>>,
    client_gone: bool,
}

impl H3Session {
    pub(crate) fn new(
        request: RequestHeader,
        send: FrameSink,
        recv: InboundFrameStream,
        read_fin: bool,
        client_addr: std::net::SocketAddr,
        server_addr: std::net::SocketAddr,
    ) -> Self {
        Self {
            request,
            send,
            recv,
            body_done: read_fin,
            body_empty: read_fin,
            body_read: 0,
            body_sent: 0,
            response_written: None,
            ended: false,
            read_timeout: None,
            write_timeout: None,
            total_drain_timeout: None,
            retry_buffer: None,
            digest: Digest::default(),
            client_addr: SocketAddr::Inet(client_addr),
            server_addr: SocketAddr::Inet(server_addr),
            reset: None,
            client_gone: false,
        }
    }

    /// Lets a client's stream reset (or the connection's end) abort the request: the proxy
    /// waits on `read_body_or_idle` while the upstream answers, as it does for h2.
    pub(crate) fn with_reset_signal(mut self, reset: tokio::sync::oneshot::Receiver<()>) -> Self {
        self.reset = Some(reset);
        self
    }

    /// Sends one frame, bounded by the write timeout (a client that stops reading must not
    /// hold the request forever).
    async fn send_frame(&mut self, frame: OutboundFrame, what: &'static str) -> Result<()> {
        let send = self.send.send(frame);
        let sent = match self.write_timeout {
            Some(limit) => tokio::time::timeout(limit, send).await.map_err(|_| {
                Error::explain(
                    ErrorType::WriteTimedout,
                    format!("writing {what} to the HTTP/3 client, timeout {limit:?}"),
                )
                .into_down()
            })?,
            None => send.await,
        };
        sent.map_err(|()| {
            Error::explain(ErrorType::WriteError, "the HTTP/3 client stream is gone").into_down()
        })
    }

    async fn recv_frame(&mut self) -> Result<Option<InboundFrame>> {
        match self.read_timeout {
            Some(limit) => tokio::time::timeout(limit, self.recv.recv())
                .await
                .map_err(|_| {
                    Error::explain(
                        ErrorType::ReadTimedout,
                        format!("reading the HTTP/3 request body, timeout {limit:?}"),
                    )
                    .into_down()
                }),
            None => Ok(self.recv.recv().await),
        }
    }

    async fn end_stream(&mut self) -> Result<()> {
        if !self.ended {
            self.send_frame(
                OutboundFrame::Body(Bytes::new(), true),
                "the end of the stream",
            )
            .await?;
            self.ended = true;
        }
        Ok(())
    }

    async fn do_drain(&mut self) -> Result<()> {
        while self.read_body().await?.is_some() {}
        Ok(())
    }

    // The `Session` methods below delegate to these: async_trait boxes the future of every
    // trait-method call, so `response_duplex_vec` (one call per response) calls these
    // directly instead of paying a boxed future per header, body chunk and end.
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        while !self.body_done {
            match self.recv_frame().await? {
                Some(InboundFrame::Body(chunk, fin)) => {
                    self.body_done = fin;
                    if chunk.is_empty() {
                        continue;
                    }
                    let chunk = chunk.freeze();
                    self.body_read += chunk.len();
                    if let Some(buffer) = self.retry_buffer.as_mut() {
                        buffer.write_to_buffer(&chunk);
                    }
                    return Ok(Some(chunk));
                }
                Some(InboundFrame::Datagram(_)) => {}
                // The driver dropped the stream before FIN: the client reset it.
                None => {
                    return Err(Error::explain(
                        ErrorType::ConnectionClosed,
                        "the HTTP/3 client reset the request stream mid-body",
                    )
                    .into_down());
                }
            }
        }
        Ok(None)
    }

    async fn send_response_header(&mut self, resp: Box<ResponseHeader>, end: bool) -> Result<()> {
        if self.ended || self.response_written.is_some() {
            return Ok(());
        }
        // 1xx other than 101 would need a second HEADERS frame before the final one;
        // like Pingora's h2 session, the edge does not forward them.
        if resp.status.is_informational() {
            return Ok(());
        }
        let fields = h3_response_headers(&resp);
        self.send_frame(OutboundFrame::Headers(fields, None), "response headers")
            .await?;
        self.response_written = Some(resp);
        if end {
            self.end_stream().await?;
        }
        Ok(())
    }

    async fn send_body(&mut self, data: Bytes, end: bool) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        if self.response_written.is_none() {
            return Error::e_explain(ErrorType::H2Error, "HTTP/3 body before the response header");
        }
        let len = data.len();
        if len == 0 && !end {
            return Ok(());
        }
        self.send_frame(OutboundFrame::Body(data, end), "the response body")
            .await?;
        self.body_sent += len;
        self.ended |= end;
        Ok(())
    }

    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        if self.response_written.is_none() {
            return Error::e_explain(
                ErrorType::H2Error,
                "HTTP/3 trailers before the response header",
            );
        }
        // Trailers end the stream (RFC 9114 section 4.1).
        self.send_frame(
            OutboundFrame::Trailers(h3_fields(&trailers), None),
            "trailers",
        )
        .await?;
        self.ended = true;
        Ok(())
    }

    async fn end_response(&mut self) -> Result<()> {
        if self.response_written.is_some() {
            self.end_stream().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Session for H3Session {
    fn req_header(&self) -> &RequestHeader {
        &self.request
    }

    fn req_header_mut(&mut self) -> &mut RequestHeader {
        &mut self.request
    }

    async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        self.read_body().await
    }

    async fn drain_request_body(&mut self) -> Result<()> {
        if self.body_done {
            return Ok(());
        }
        match self.total_drain_timeout {
            Some(limit) => tokio::time::timeout(limit, self.do_drain())
                .await
                .map_err(|_| {
                    Error::explain(
                        ErrorType::ReadTimedout,
                        format!("draining the HTTP/3 request body, timeout {limit:?}"),
                    )
                })?,
            None => self.do_drain().await,
        }
    }

    async fn write_response_header(&mut self, resp: Box<ResponseHeader>, end: bool) -> Result<()> {
        self.send_response_header(resp, end).await
    }

    async fn write_response_header_ref(&mut self, resp: &ResponseHeader, end: bool) -> Result<()> {
        self.send_response_header(Box::new(resp.clone()), end).await
    }

    async fn write_body(&mut self, data: Bytes, end: bool) -> Result<()> {
        self.send_body(data, end).await
    }

    async fn write_trailers(&mut self, trailers: HeaderMap) -> Result<()> {
        self.send_trailers(trailers).await
    }

    /// Writes a batch of the proxy's tasks. The last body chunk is held back until the
    /// batch shows whether the response ends there, so a final chunk and the end of the
    /// stream leave as ONE frame (DATA with FIN) instead of a DATA frame and an empty one —
    /// a channel send and a driver wake-up less per response.
    async fn response_duplex_vec(&mut self, tasks: Vec<HttpTask>) -> Result<bool> {
        let mut end_stream = false;
        let mut held: Option<Bytes> = None;
        for task in tasks {
            match task {
                HttpTask::Header(header, end) => {
                    self.send_response_header(header, end).await?;
                    end_stream |= end;
                }
                HttpTask::Body(data, end) => {
                    if let Some(data) = data.filter(|d| !d.is_empty()) {
                        if let Some(previous) = held.replace(data) {
                            self.send_body(previous, false).await?;
                        }
                    }
                    if end {
                        end_stream = true;
                        if let Some(last) = held.take() {
                            self.send_body(last, true).await?;
                        }
                    }
                }
                HttpTask::UpgradedBody(..) => {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "upgraded body on an HTTP/3 session",
                    );
                }
                HttpTask::Trailer(trailers) => {
                    if let Some(previous) = held.take() {
                        self.send_body(previous, false).await?;
                    }
                    if let Some(trailers) = trailers {
                        self.send_trailers(*trailers).await?;
                    }
                    end_stream = true;
                }
                HttpTask::Done => {
                    end_stream = true;
                    if let Some(last) = held.take() {
                        self.send_body(last, true).await?;
                    }
                }
                HttpTask::Failed(e) => return Err(e),
            }
        }
        if let Some(rest) = held.take() {
            self.send_body(rest, end_stream).await?;
        }
        if end_stream {
            self.end_response().await?;
        }
        Ok(end_stream)
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    fn get_read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    fn get_write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    fn set_total_drain_timeout(&mut self, timeout: Option<Duration>) {
        self.total_drain_timeout = timeout;
    }

    fn get_total_drain_timeout(&self) -> Option<Duration> {
        self.total_drain_timeout
    }

    fn request_summary(&self) -> String {
        format!(
            "{} {}, Host: {} (h3)",
            self.request.method,
            self.request
                .uri
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or_default(),
            self.request
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
        )
    }

    fn response_written(&self) -> Option<&ResponseHeader> {
        self.response_written.as_deref()
    }

    async fn shutdown(&mut self, _code: u32, _ctx: &str) {
        self.abandon("shutdown").await;
    }

    /// Resets the stream (H3_REQUEST_INCOMPLETE towards the client) so a response cut
    /// short is never taken for a complete one.
    async fn abandon(&mut self, _ctx: &str) {
        if !self.ended {
            self.ended = true;
            let _ = self.send.send(OutboundFrame::PeerStreamError).await;
        }
    }

    fn is_body_done(&mut self) -> bool {
        self.body_done
    }

    async fn finish(&mut self) -> Result<()> {
        self.end_response().await
    }

    fn is_body_empty(&mut self) -> bool {
        self.body_empty
            || (self.body_read == 0
                && self
                    .request
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .is_some_and(|cl| cl.as_bytes() == b"0"))
    }

    async fn read_body_or_idle(&mut self, no_body_expected: bool) -> Result<Option<Bytes>> {
        if no_body_expected || self.body_done {
            // As Pingora's h2 session: wait here until the client goes away, which
            // aborts the upstream side of the request.
            if !self.client_gone {
                match self.reset.as_mut() {
                    // A reset, or the connection's task dropping the sender: gone either way.
                    Some(reset) => {
                        let _ = reset.await;
                    }
                    None => std::future::pending::<()>().await,
                }
                self.client_gone = true;
                self.reset = None;
            }
            Err(Error::explain(
                ErrorType::ConnectionClosed,
                "the HTTP/3 client reset the request stream",
            )
            .into_down())
        } else {
            self.read_body().await
        }
    }

    fn body_bytes_sent(&self) -> usize {
        self.body_sent
    }

    fn body_bytes_read(&self) -> usize {
        self.body_read
    }

    fn digest(&self) -> Option<&Digest> {
        Some(&self.digest)
    }

    fn digest_mut(&mut self) -> Option<&mut Digest> {
        Some(&mut self.digest)
    }

    fn client_addr(&self) -> Option<&SocketAddr> {
        Some(&self.client_addr)
    }

    fn server_addr(&self) -> Option<&SocketAddr> {
        Some(&self.server_addr)
    }

    fn pseudo_raw_h1_request_header(&self) -> Bytes {
        // Pingora logs it; subrequests (stale-while-revalidate refreshes) are built from
        // `req_header()` instead (vendor/pingora-core patch 7), so a summary is enough.
        Bytes::from(format!(
            "{} {} HTTP/1.1\r\n\r\n",
            self.request.method,
            self.request.uri.path()
        ))
    }

    fn enable_retry_buffering(&mut self) {
        if self.retry_buffer.is_none() {
            self.retry_buffer = Some(FixedBuffer::new(RETRY_BUFFER_LIMIT));
        }
    }

    fn retry_buffer_truncated(&self) -> bool {
        self.retry_buffer
            .as_ref()
            .is_some_and(FixedBuffer::is_truncated)
    }

    fn get_retry_buffer(&self) -> Option<Bytes> {
        self.retry_buffer
            .as_ref()
            .filter(|b| !b.is_truncated())
            .and_then(FixedBuffer::get_buffer)
    }

    async fn finish_custom(&mut self) -> Result<()> {
        Ok(())
    }

    fn take_custom_message_reader(
        &mut self,
    ) -> Option<Box<dyn Stream<Item = Result<Bytes>> + Unpin + Send + Sync + 'static>> {
        None
    }

    fn restore_custom_message_reader(
        &mut self,
        _reader: Box<dyn Stream<Item = Result<Bytes>> + Unpin + Send + Sync + 'static>,
    ) -> Result<()> {
        Ok(())
    }

    fn take_custom_message_writer(&mut self) -> Option<Box<dyn CustomMessageWrite>> {
        None
    }

    fn restore_custom_message_writer(
        &mut self,
        _writer: Box<dyn CustomMessageWrite>,
    ) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
