//! The adapter driven the way Pingora's proxy drives a downstream session, with channels
//! standing in for tokio-quiche's stream ends (the end-to-end tests in `edge/tests` run
//! real QUIC clients through it).

use super::*;
use bytes::BytesMut;
use futures::channel::mpsc as fmpsc;
use tokio::sync::mpsc;

struct Harness {
    session: H3Session,
    /// What the client sends on the request stream.
    client_tx: Option<mpsc::Sender<InboundFrame>>,
    /// What the session sent towards the client.
    sent: fmpsc::Receiver<OutboundFrame>,
}

fn request(method: &str, path: &str) -> RequestHeader {
    let mut request = RequestHeader::build(method, path.as_bytes(), None).expect("request");
    request.set_version(http::Version::HTTP_3);
    request
}

fn harness(read_fin: bool, sink_capacity: usize) -> Harness {
    let (client_tx, recv) = mpsc::channel(8);
    let (send, sent) = fmpsc::channel(sink_capacity);
    let session = H3Session::new(
        request("POST", "/upload"),
        Box::pin(send.sink_map_err(|_| ())),
        recv,
        read_fin,
        "192.0.2.7:4433".parse().expect("addr"),
        "127.0.0.1:8443".parse().expect("addr"),
    );
    Harness {
        session,
        client_tx: Some(client_tx),
        sent,
    }
}

fn chunk(data: &str, fin: bool) -> InboundFrame {
    InboundFrame::Body(BytesMut::from(data), fin)
}

impl Harness {
    async fn client_sends(&self, frame: InboundFrame) {
        self.client_tx
            .as_ref()
            .expect("client side open")
            .send(frame)
            .await
            .expect("session side open");
    }

    fn sent_frames(&mut self) -> Vec<OutboundFrame> {
        let mut frames = Vec::new();
        while let Ok(frame) = self.sent.try_recv() {
            frames.push(frame);
        }
        frames
    }
}

fn describe(frame: &OutboundFrame) -> String {
    use quiche::h3::NameValue;
    match frame {
        OutboundFrame::Headers(fields, _) => format!(
            "headers({})",
            fields
                .iter()
                .map(|f| String::from_utf8_lossy(f.name()).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        ),
        OutboundFrame::Body(data, fin) => format!("body({:?},fin={fin})", data),
        OutboundFrame::Trailers(..) => "trailers".into(),
        OutboundFrame::PeerStreamError => "reset".into(),
        _ => "other".into(),
    }
}

#[tokio::test]
async fn streams_the_request_body_until_fin() {
    let mut h = harness(false, 8);
    h.session.enable_retry_buffering();
    assert!(!h.session.is_body_done());
    assert!(!h.session.is_body_empty());
    h.client_sends(chunk("hello ", false)).await;
    h.client_sends(InboundFrame::Body(BytesMut::new(), false))
        .await;
    h.client_sends(chunk("world", true)).await;
    let mut body = Vec::new();
    while let Some(part) = h.session.read_body_bytes().await.expect("read") {
        body.extend_from_slice(&part);
    }
    assert_eq!(body, b"hello world");
    assert!(h.session.is_body_done());
    assert_eq!(h.session.body_bytes_read(), 11);
    assert_eq!(
        h.session.get_retry_buffer().as_deref(),
        Some(&b"hello world"[..])
    );
    // Further reads after FIN are a clean end, not a wait.
    assert_eq!(h.session.read_body_bytes().await.expect("read"), None);
}

#[tokio::test]
async fn a_request_with_fin_on_its_headers_has_an_empty_body() {
    let mut h = harness(true, 8);
    assert!(h.session.is_body_empty());
    assert!(h.session.is_body_done());
    assert_eq!(h.session.read_body_bytes().await.expect("read"), None);
    h.session.drain_request_body().await.expect("drain");
}

#[tokio::test]
async fn a_client_reset_mid_body_is_a_downstream_error() {
    let mut h = harness(false, 8);
    h.client_sends(chunk("part", false)).await;
    h.client_tx.take();
    assert!(h.session.read_body_bytes().await.expect("first").is_some());
    let err = h.session.read_body_bytes().await.expect_err("reset");
    assert_eq!(err.etype(), &ErrorType::ConnectionClosed);
    assert_eq!(err.esource(), &pingora_error::ErrorSource::Downstream);
}

#[tokio::test]
async fn a_stalled_body_times_out_with_the_read_timeout() {
    let mut h = harness(false, 8);
    h.session.set_read_timeout(Some(Duration::from_millis(50)));
    assert_eq!(
        h.session.get_read_timeout(),
        Some(Duration::from_millis(50))
    );
    let err = h.session.read_body_bytes().await.expect_err("stalled");
    assert_eq!(err.etype(), &ErrorType::ReadTimedout);
}

#[tokio::test]
async fn a_client_that_stops_reading_times_out_with_the_write_timeout() {
    // A zero-capacity sink completes a send only once the client side reads it.
    let mut h = harness(true, 0);
    h.session.set_write_timeout(Some(Duration::from_millis(50)));
    let header = ResponseHeader::build(200, None).expect("header");
    let err = h
        .session
        .write_response_header(Box::new(header), false)
        .await
        .expect_err("client not reading");
    assert_eq!(err.etype(), &ErrorType::WriteTimedout);
    assert_eq!(err.esource(), &pingora_error::ErrorSource::Downstream);
}

#[tokio::test]
async fn a_body_less_response_is_headers_then_fin() {
    let mut h = harness(true, 8);
    let mut header = ResponseHeader::build(200, None).expect("header");
    header.insert_header("grpc-status", "16").expect("header");
    header
        .insert_header("transfer-encoding", "chunked")
        .expect("header");
    h.session
        .response_duplex_vec(vec![HttpTask::Header(Box::new(header), true)])
        .await
        .expect("write");
    let frames: Vec<String> = h.sent_frames().iter().map(describe).collect();
    assert_eq!(
        frames,
        ["headers(:status,grpc-status)", "body(b\"\",fin=true)"]
    );
    assert_eq!(
        h.session.response_written().map(|r| r.status.as_u16()),
        Some(200)
    );
}

#[tokio::test]
async fn headers_body_and_trailers_end_the_stream_once() {
    let mut h = harness(true, 8);
    let header = ResponseHeader::build(200, None).expect("header");
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let ended = h
        .session
        .response_duplex_vec(vec![
            HttpTask::Header(Box::new(header), false),
            HttpTask::Body(Some(Bytes::from_static(b"abc")), false),
            HttpTask::Trailer(Some(Box::new(trailers))),
        ])
        .await
        .expect("write");
    assert!(ended);
    // Ended: later writes are dropped, as in Pingora's h2 session.
    h.session
        .write_body(Bytes::from_static(b"late"), true)
        .await
        .expect("ignored");
    h.session.finish().await.expect("finish");
    let frames: Vec<String> = h.sent_frames().iter().map(describe).collect();
    assert_eq!(
        frames,
        ["headers(:status)", "body(b\"abc\",fin=false)", "trailers"]
    );
    assert_eq!(h.session.body_bytes_sent(), 3);
}

#[tokio::test]
async fn the_last_chunk_and_the_end_of_the_response_are_one_frame() {
    let mut h = harness(true, 8);
    let header = ResponseHeader::build(200, None).expect("header");
    h.session
        .response_duplex_vec(vec![
            HttpTask::Header(Box::new(header), false),
            HttpTask::Body(Some(Bytes::from_static(b"one")), false),
            HttpTask::Body(Some(Bytes::from_static(b"two")), false),
        ])
        .await
        .expect("first batch");
    let ended = h
        .session
        .response_duplex_vec(vec![HttpTask::Body(None, true), HttpTask::Done])
        .await
        .expect("second batch");
    assert!(ended);
    let frames: Vec<String> = h.sent_frames().iter().map(describe).collect();
    // A batch without the end flushes what it holds; the end then costs one empty frame.
    assert_eq!(
        frames,
        [
            "headers(:status)",
            "body(b\"one\",fin=false)",
            "body(b\"two\",fin=false)",
            "body(b\"\",fin=true)"
        ]
    );

    let mut h = harness(true, 8);
    let header = ResponseHeader::build(200, None).expect("header");
    h.session
        .response_duplex_vec(vec![
            HttpTask::Header(Box::new(header), false),
            HttpTask::Body(Some(Bytes::from_static(b"ok")), false),
            HttpTask::Body(None, true),
        ])
        .await
        .expect("one batch");
    let frames: Vec<String> = h.sent_frames().iter().map(describe).collect();
    assert_eq!(frames, ["headers(:status)", "body(b\"ok\",fin=true)"]);
    assert_eq!(h.session.body_bytes_sent(), 2);
}

#[tokio::test]
async fn informational_headers_are_not_forwarded() {
    let mut h = harness(true, 8);
    let informational = ResponseHeader::build(103, None).expect("header");
    h.session
        .write_response_header(Box::new(informational), false)
        .await
        .expect("write");
    assert!(h.session.response_written().is_none());
    assert!(h.sent_frames().is_empty());
}

#[tokio::test]
async fn body_before_header_is_an_error() {
    let mut h = harness(true, 8);
    assert!(h
        .session
        .write_body(Bytes::from_static(b"x"), true)
        .await
        .is_err());
}

#[tokio::test]
async fn an_abandoned_response_resets_the_stream() {
    let mut h = harness(true, 8);
    let header = ResponseHeader::build(200, None).expect("header");
    h.session
        .write_response_header(Box::new(header), false)
        .await
        .expect("write");
    h.session.abandon("upstream failed mid-body").await;
    h.session
        .finish()
        .await
        .expect("finish after abandon is a no-op");
    let frames: Vec<String> = h.sent_frames().iter().map(describe).collect();
    assert_eq!(frames, ["headers(:status)", "reset"]);
}

#[tokio::test]
async fn addresses_and_summary_describe_the_stream() {
    let h = harness(true, 8);
    assert_eq!(
        h.session.client_addr().and_then(|a| a.as_inet()).copied(),
        Some("192.0.2.7:4433".parse().expect("addr"))
    );
    assert!(h.session.server_addr().is_some());
    assert!(h.session.request_summary().starts_with("POST /upload"));
    assert!(h.session.digest().is_some());
}

#[tokio::test]
async fn a_body_read_after_fin_never_waits_in_read_body_or_idle() {
    let mut h = harness(false, 8);
    h.client_sends(chunk("x", true)).await;
    assert_eq!(
        h.session
            .read_body_or_idle(false)
            .await
            .expect("read")
            .as_deref(),
        Some(&b"x"[..])
    );
    // Body done: read_body_or_idle now waits (for the upstream side to finish).
    let idle = tokio::time::timeout(
        Duration::from_millis(20),
        h.session.read_body_or_idle(false),
    );
    assert!(idle.await.is_err(), "idle must wait, not end the request");
}
