//! HTTP/3 over QUIC (tokio-quiche) on the HTTPS port's UDP side.
//!
//! Pingora has no HTTP/3, so this front end converts each request into the same
//! `http::request::Parts` the h1/h2 path uses, runs the same [`pipeline::admit`] (route
//! table, policy chain), and reaches the same clusters' backends through a Pingora
//! `Connector` pool (h1 or h2 upstream). Certificates come from the shared `CertStore`.
//!
//! Limits: request bodies are streamed upstream before the response is read, so gRPC
//! bidirectional streaming is not full-duplex over h3; request trailers are dropped by
//! the H3 driver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use gateway_plugins::{ErrorKind, PolicyResponse, Protocol, TlsInfo};
use http::{HeaderMap, HeaderValue};
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_http::{RequestHeader, ResponseHeader};
use quiche::h3::{Header, NameValue};
use tokio_quiche::http3::driver::{
    H3Event, InboundFrame, IncomingH3Headers, OutboundFrame, OutboundFrameSender, ServerH3Event,
};
use tokio_quiche::http3::settings::Http3Settings;
use tokio_quiche::metrics::DefaultMetrics;
use tokio_quiche::quic::ConnectionHook;
use tokio_quiche::settings::{CertificateKind, Hooks, QuicSettings, TlsCertificatePaths};
use tokio_quiche::{ConnectionParams, ServerH3Driver};

use crate::access_log::{self, AccessRecord};
use crate::certs::CertStore;
use crate::config::Http3Section;
use crate::metrics::{ConnectionGauge, EdgeMetrics};
use crate::pipeline::{self, Admission, Downstream, Forward};
use crate::state::{EdgeState, Snapshot};
use crate::trace::RequestSpan;

/// Response headers that are connection-specific and forbidden in HTTP/3 (RFC 9114
/// section 4.2).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// The QUIC listener, run by Pingora as a background service so it starts and stops
/// with the rest of the edge.
pub struct Http3Service {
    state: Arc<EdgeState>,
    socket: std::sync::Mutex<Option<std::net::UdpSocket>>,
    settings: Http3Section,
    graceful_timeout: Duration,
}

impl Http3Service {
    /// Binds the UDP socket now, so a port problem fails start-up loudly.
    pub fn bind(
        state: Arc<EdgeState>,
        addr: SocketAddr,
        settings: Http3Section,
        graceful_timeout: Duration,
    ) -> std::io::Result<Self> {
        let socket = bind_udp(addr)?;
        Ok(Self {
            state,
            socket: std::sync::Mutex::new(Some(socket)),
            settings,
            graceful_timeout,
        })
    }
}

/// SO_REUSEPORT lets a new process (graceful upgrade) bind the port while the old one
/// drains its QUIC connections.
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

struct QuicCertificates {
    certs: Arc<CertStore>,
    metrics: Arc<EdgeMetrics>,
}

impl ConnectionHook for QuicCertificates {
    fn create_custom_ssl_context_builder(
        &self,
        _settings: TlsCertificatePaths<'_>,
    ) -> Option<boring::ssl::SslContextBuilder> {
        match crate::tls::quic_ssl_context(self.certs.clone(), self.metrics.clone()) {
            Ok(builder) => Some(builder),
            Err(err) => {
                tracing::error!(%err, "cannot build the QUIC TLS context");
                None
            }
        }
    }
}

fn quic_settings(config: &Http3Section) -> QuicSettings {
    let mut settings = QuicSettings::default();
    settings.max_idle_timeout = Some(config.idle_timeout);
    settings.handshake_timeout = Some(config.handshake_timeout);
    settings.initial_max_streams_bidi = config.max_streams_bidi;
    // Clients open control + QPACK streams; a few more is plenty.
    settings.initial_max_streams_uni = 8;
    settings.initial_max_data = config.initial_max_data;
    settings.initial_max_stream_data_bidi_remote = config.initial_max_stream_data;
    settings.initial_max_stream_data_bidi_local = config.initial_max_stream_data;
    settings.initial_max_stream_data_uni = config.initial_max_stream_data;
    settings.max_recv_udp_payload_size = config.max_udp_payload;
    settings.max_send_udp_payload_size = config.max_udp_payload;
    settings.enable_early_data = config.enable_0rtt;
    settings.enable_dgram = false;
    settings
}

#[async_trait]
impl BackgroundService for Http3Service {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_socket) = self.socket.lock().ok().and_then(|mut s| s.take()) else {
            tracing::error!("HTTP/3 service started twice");
            return;
        };
        let socket = match tokio::net::UdpSocket::from_std(std_socket) {
            Ok(socket) => socket,
            Err(err) => {
                tracing::error!(%err, "cannot register the QUIC socket");
                return;
            }
        };
        let local = socket.local_addr().ok();
        let hooks = Hooks {
            connection_hook: Some(Arc::new(QuicCertificates {
                certs: self.state.certs.clone(),
                metrics: self.state.metrics.clone(),
            })),
        };
        // The paths are required by the API but unused: the hook supplies the context.
        let params = ConnectionParams::new_server(
            quic_settings(&self.settings),
            TlsCertificatePaths {
                cert: "unused-certificates-come-from-the-cert-store",
                private_key: "unused-certificates-come-from-the-cert-store",
                kind: CertificateKind::X509,
            },
            hooks,
        );
        let mut listeners = match tokio_quiche::listen([socket], params, DefaultMetrics) {
            Ok(listeners) => listeners,
            Err(err) => {
                tracing::error!(%err, "cannot start the QUIC listener");
                return;
            }
        };
        let Some(mut incoming) = listeners.pop() else {
            return;
        };
        tracing::info!(address = ?local, "HTTP/3 listening (QUIC over UDP)");

        let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        let mut h3_settings = Http3Settings::default();
        // Generous at the protocol layer; the exact limit answers 431 in the pipeline.
        h3_settings.max_header_list_size = Some(
            self.state
                .snapshot()
                .config()
                .limits
                .max_request_header_bytes as u64
                * 2,
        );
        h3_settings.post_accept_timeout = Some(self.settings.handshake_timeout);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                next = incoming.next() => match next {
                    Some(Ok(initial)) => {
                        let peer = initial.peer_addr();
                        let (driver, controller) = ServerH3Driver::new(h3_settings.clone());
                        initial.start(driver);
                        self.state.metrics.quic_connections.inc();
                        connections.spawn(serve_connection(
                            self.state.clone(),
                            controller,
                            peer,
                            drain_rx.clone(),
                            self.settings.enable_0rtt,
                        ));
                    }
                    Some(Err(err)) => {
                        self.state.metrics.quic_handshake_failures.inc();
                        tracing::debug!(%err, "QUIC connection failed before it started");
                    }
                    None => break,
                },
                // Reap finished connection tasks so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // Graceful shutdown: GOAWAY on every connection, then let in-flight requests finish.
        let _ = drain_tx.send(true);
        let open = connections.len();
        tracing::info!(open, "HTTP/3 draining");
        let drained = tokio::time::timeout(self.graceful_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(remaining = connections.len(), "HTTP/3 drain timed out");
            connections.abort_all();
        }
    }
}

async fn serve_connection(
    state: Arc<EdgeState>,
    mut controller: tokio_quiche::ServerH3Controller,
    peer: SocketAddr,
    mut drain: tokio::sync::watch::Receiver<bool>,
    early_data_enabled: bool,
) {
    let _open = ConnectionGauge::open(
        state
            .metrics
            .downstream_connections
            .with_label_values(&["quic"]),
    );
    let mut events = controller.take_event_receiver();
    let mut requests = tokio::task::JoinSet::new();
    let mut draining = *drain.borrow();
    if draining {
        controller.send_goaway();
    }
    loop {
        tokio::select! {
            changed = drain.changed(), if !draining => {
                if changed.is_err() || *drain.borrow() {
                    draining = true;
                    controller.send_goaway();
                    if requests.is_empty() {
                        break;
                    }
                }
            }
            Some(_) = requests.join_next(), if !requests.is_empty() => {
                if draining && requests.is_empty() {
                    break;
                }
            }
            event = events.recv() => match event {
                None => break,
                Some(ServerH3Event::Headers { incoming_headers, is_in_early_data, .. }) => {
                    let early = *is_in_early_data && early_data_enabled;
                    requests.spawn(handle_request(state.clone(), incoming_headers, peer, early));
                }
                Some(ServerH3Event::Core(H3Event::ResetStream { .. })) => {
                    state.metrics.quic_stream_errors.with_label_values(&["reset_by_client"]).inc();
                }
                Some(ServerH3Event::Core(H3Event::ConnectionError(err))) => {
                    state.metrics.quic_stream_errors.with_label_values(&["connection_error"]).inc();
                    tracing::debug!(%err, %peer, "HTTP/3 connection error");
                }
                Some(ServerH3Event::Core(_)) => {}
            },
        }
    }
    // Let requests already running finish writing their responses.
    while requests.join_next().await.is_some() {}
}

/// Per-request facts for metrics and the access log.
struct RequestRecord {
    started: Instant,
    method: http::Method,
    path: String,
    route: Option<Arc<str>>,
    cluster: Option<Arc<str>>,
    status: u16,
    grpc_status: Option<String>,
    upstream_started: Option<Instant>,
    upstream_reused: Option<bool>,
    request_bytes: u64,
    response_bytes: u64,
    client: Option<std::net::IpAddr>,
    request_id: Option<String>,
    answered: Option<&'static str>,
    error: Option<&'static str>,
}

async fn handle_request(
    state: Arc<EdgeState>,
    incoming: IncomingH3Headers,
    peer: SocketAddr,
    in_early_data: bool,
) {
    let IncomingH3Headers {
        headers,
        send,
        recv,
        read_fin,
        ..
    } = incoming;
    let mut sender = send;
    let snapshot = state.snapshot();
    let mut record = RequestRecord {
        started: Instant::now(),
        method: http::Method::GET,
        path: String::new(),
        route: None,
        cluster: None,
        status: 0,
        grpc_status: None,
        upstream_started: None,
        upstream_reused: None,
        request_bytes: 0,
        response_bytes: 0,
        client: Some(peer.ip()),
        request_id: None,
        answered: None,
        error: None,
    };

    let request = match request_from_h3(&headers) {
        Ok(request) => request,
        Err(problem) => {
            record.answered = Some("malformed_request");
            let response =
                pipeline::edge_error(ErrorKind::BadRequest, "malformed_request", problem, false);
            send_edge_response(&mut sender, &state, &snapshot, &response, &mut record).await;
            finish(&state, &snapshot, &record);
            return;
        }
    };
    record.method = request.method.clone();
    record.path = request.uri.path().to_string();
    let span = state
        .tracer
        .as_ref()
        .map(|tracer| RequestSpan::start(tracer, &request, Protocol::Http3, Some(peer)));

    // 0-RTT data can be replayed by an attacker: only safe methods may act on it
    // (RFC 8470 section 5.2, 425 Too Early).
    if in_early_data
        && !matches!(
            request.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        )
    {
        record.answered = Some("too_early");
        let mut response = pipeline::edge_error(
            ErrorKind::BadRequest,
            "too_early",
            "retry after the handshake completes",
            false,
        );
        response.status = http::StatusCode::TOO_EARLY;
        send_edge_response(&mut sender, &state, &snapshot, &response, &mut record).await;
        finish(&state, &snapshot, &record);
        return;
    }

    let downstream = Downstream {
        peer_addr: Some(peer),
        protocol: Protocol::Http3,
        tls: Some(TlsInfo {
            version: Some("TLSv1.3"),
            sni: None,
            alpn: Some("h3".into()),
        }),
    };
    match pipeline::admit(&snapshot, &request, &downstream).await {
        Admission::Answer(answer) => {
            record.answered = Some(answer.reason);
            record.route = answer.route.as_ref().map(|r| r.id.clone());
            send_edge_response(
                &mut sender,
                &state,
                &snapshot,
                &answer.response,
                &mut record,
            )
            .await;
        }
        Admission::Forward(forward) => {
            record.route = Some(forward.route.id.clone());
            record.cluster = Some(forward.route.cluster.name.clone());
            record.client = Some(forward.client_ip);
            record.request_id = forward
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            proxy(
                &state,
                &snapshot,
                request,
                forward,
                peer,
                (recv, read_fin),
                span.as_ref(),
                &mut sender,
                &mut record,
            )
            .await;
        }
    }
    if let Some(span) = span {
        span.finish(
            record.status,
            record.route.as_deref(),
            record.cluster.as_deref(),
            record.error,
        );
    }
    finish(&state, &snapshot, &record);
}

/// HTTP/3 request headers -> a Pingora request header (RFC 9114 section 4.3.1).
fn request_from_h3(headers: &[Header]) -> Result<RequestHeader, &'static str> {
    let mut method = None;
    let mut path = None;
    let mut authority = None;
    let mut scheme = None;
    let mut regular = Vec::with_capacity(headers.len());
    for header in headers {
        match header.name() {
            b":method" => method = Some(header.value()),
            b":path" => path = Some(header.value()),
            b":authority" => authority = Some(header.value()),
            b":scheme" => scheme = Some(header.value()),
            name if name.starts_with(b":") => return Err("unknown pseudo-header"),
            name => regular.push((name, header.value())),
        }
    }
    let method = method.ok_or("missing :method")?;
    let path = path.ok_or("missing :path")?;
    if scheme.is_none() {
        return Err("missing :scheme");
    }
    if path.is_empty() || path[0] != b'/' {
        return Err(":path must start with '/'");
    }
    let mut request = RequestHeader::build(method, path, Some(regular.len() + 1))
        .map_err(|_| "invalid :method or :path")?;
    request.set_version(http::Version::HTTP_3);
    let mut has_host = false;
    for (name, value) in regular {
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err("upper-case header name");
        }
        if HOP_BY_HOP.contains(&std::str::from_utf8(name).unwrap_or("")) && name != b"te" {
            return Err("connection-specific header");
        }
        has_host |= name == b"host";
        let name = http::HeaderName::from_bytes(name).map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_bytes(value).map_err(|_| "invalid header value")?;
        request
            .append_header(name, value)
            .map_err(|_| "invalid header")?;
    }
    if let Some(authority) = authority {
        if !has_host {
            let value = HeaderValue::from_bytes(authority).map_err(|_| "invalid :authority")?;
            request
                .insert_header(http::header::HOST, value)
                .map_err(|_| "invalid :authority")?;
        }
    }
    Ok(request)
}

fn h3_response_headers(response: &ResponseHeader) -> Vec<Header> {
    let mut out = Vec::with_capacity(response.headers.len() + 1);
    out.push(Header::new(b":status", response.status.as_str().as_bytes()));
    for (name, value) in &response.headers {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        out.push(Header::new(name.as_str().as_bytes(), value.as_bytes()));
    }
    out
}

async fn send_edge_response(
    sender: &mut OutboundFrameSender,
    state: &EdgeState,
    snapshot: &Snapshot,
    response: &PolicyResponse,
    record: &mut RequestRecord,
) {
    let mut headers = response.headers.clone();
    pipeline::decorate_response(
        &mut headers,
        snapshot,
        state,
        &HeaderMap::new(),
        Protocol::Http3,
    );
    let grpc_trailers_only = headers.contains_key("grpc-status");
    if !grpc_trailers_only {
        headers.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(response.body.len()),
        );
    }
    let mut h3 = vec![Header::new(b":status", response.status.as_str().as_bytes())];
    for (name, value) in &headers {
        h3.push(Header::new(name.as_str().as_bytes(), value.as_bytes()));
    }
    record.status = response.status.as_u16();
    record.grpc_status = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = if record.method == http::Method::HEAD {
        Bytes::new()
    } else {
        response.body.clone()
    };
    record.response_bytes = body.len() as u64;
    if sender.send(OutboundFrame::Headers(h3, None)).await.is_err()
        || sender.send(OutboundFrame::Body(body, true)).await.is_err()
    {
        record.error = Some("client_gone");
    }
}

#[allow(clippy::too_many_arguments)]
async fn proxy(
    state: &EdgeState,
    snapshot: &Snapshot,
    mut request: RequestHeader,
    forward: Forward,
    peer: SocketAddr,
    (mut body, read_fin): (tokio::sync::mpsc::Receiver<InboundFrame>, bool),
    span: Option<&RequestSpan>,
    sender: &mut OutboundFrameSender,
    record: &mut RequestRecord,
) {
    let grpc = forward.grpc;
    let cluster = forward.route.cluster.clone();
    let fail = |kind: ErrorKind, code: &'static str, message: String| {
        (pipeline::edge_error(kind, code, &message, grpc), code)
    };
    if let Err(err) = pipeline::prepare_upstream_request(&mut request, &forward, Some(peer)) {
        let (response, code) = fail(ErrorKind::BadRequest, "bad_request", err.to_string());
        record.error = Some(code);
        send_edge_response(sender, state, snapshot, &response, record).await;
        return;
    }
    if let Some(span) = span {
        span.inject(&mut request);
    }
    if cluster.config.protocol.is_h2() {
        // h2 carries the body length in frames; a connection header is illegal there.
        request.remove_header(&http::header::TRANSFER_ENCODING);
    } else {
        // The request line to an HTTP/1.1 backend carries the version.
        request.set_version(http::Version::HTTP_11);
        if !read_fin && !request.headers.contains_key(http::header::CONTENT_LENGTH) {
            // HTTP/3 bodies may come without a length; HTTP/1.1 then needs chunked framing.
            let _ = request.insert_header(http::header::TRANSFER_ENCODING, "chunked");
        }
    }

    // Connect, retrying elsewhere on connect failures for idempotent requests.
    let mut tried = Vec::new();
    let mut retries_left = cluster.config.retries;
    let (mut session, upstream_peer, _in_flight) = loop {
        let Some((index, in_flight)) = cluster.select(&tried) else {
            state
                .metrics
                .upstream_errors
                .with_label_values(&[&*cluster.name, "no_healthy_backend"])
                .inc();
            let (response, code) = fail(
                ErrorKind::Unavailable,
                "no_healthy_upstream",
                format!("no healthy backend in cluster '{}'", cluster.name),
            );
            record.error = Some(code);
            send_edge_response(sender, state, snapshot, &response, record).await;
            return;
        };
        tried.push(index);
        let upstream_peer = in_flight.backend().peer();
        match state
            .upstream_connector
            .get_http_session(&upstream_peer)
            .await
        {
            Ok((session, reused)) => {
                record.upstream_reused = Some(reused);
                state
                    .metrics
                    .upstream_connections
                    .with_label_values(&[&*cluster.name, if reused { "true" } else { "false" }])
                    .inc();
                break (session, upstream_peer, in_flight);
            }
            Err(err) => {
                state
                    .metrics
                    .upstream_errors
                    .with_label_values(&[&*cluster.name, "connect"])
                    .inc();
                tracing::debug!(%err, cluster = %cluster.name, "upstream connect failed");
                if retries_left > 0
                    && pipeline::is_idempotent(&request.method)
                    && cluster.has_untried_backend(&tried)
                {
                    retries_left -= 1;
                    continue;
                }
                let (response, code) = fail(
                    ErrorKind::BadGateway,
                    "upstream_unreachable",
                    format!("cannot connect to cluster '{}'", cluster.name),
                );
                record.error = Some(code);
                send_edge_response(sender, state, snapshot, &response, record).await;
                return;
            }
        }
    };
    record.upstream_started = Some(Instant::now());

    match exchange(
        state,
        &mut session,
        request,
        &mut body,
        read_fin,
        forward.route.max_body_bytes,
        sender,
        snapshot,
        &forward,
        record,
    )
    .await
    {
        Ok(()) => {
            let idle = upstream_peer.options.idle_timeout;
            state
                .upstream_connector
                .release_http_session(session, &upstream_peer, idle)
                .await;
        }
        Err(Failure::BeforeResponse(kind, code, message)) => {
            session.shutdown().await;
            if kind == ErrorKind::GatewayTimeout {
                state
                    .metrics
                    .upstream_errors
                    .with_label_values(&[&*cluster.name, "timeout"])
                    .inc();
            }
            let (response, code) = fail(kind, code, message);
            record.error = Some(code);
            send_edge_response(sender, state, snapshot, &response, record).await;
        }
        Err(Failure::AfterResponse(code)) => {
            session.shutdown().await;
            record.error = Some(code);
            state
                .metrics
                .quic_stream_errors
                .with_label_values(&[code])
                .inc();
            let _ = sender.send(OutboundFrame::PeerStreamError).await;
        }
    }
}

enum Failure {
    /// Nothing sent to the client yet: answer with an error response.
    BeforeResponse(ErrorKind, &'static str, String),
    /// Response headers went out: the stream can only be reset.
    AfterResponse(&'static str),
}

fn upstream_failure(err: &pingora_error::Error, cluster: &str) -> Failure {
    use pingora_error::ErrorType;
    match err.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failure::BeforeResponse(
            ErrorKind::GatewayTimeout,
            "upstream_timeout",
            format!("cluster '{cluster}' did not answer in time"),
        ),
        _ => Failure::BeforeResponse(
            ErrorKind::BadGateway,
            "upstream_error",
            format!("cluster '{cluster}' failed: {}", err.etype().as_str()),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
async fn exchange(
    state: &EdgeState,
    session: &mut HttpSession,
    request: RequestHeader,
    body: &mut tokio::sync::mpsc::Receiver<InboundFrame>,
    read_fin: bool,
    max_body_bytes: u64,
    sender: &mut OutboundFrameSender,
    snapshot: &Snapshot,
    forward: &Forward,
    record: &mut RequestRecord,
) -> Result<(), Failure> {
    let cluster = forward.route.cluster.name.clone();
    session
        .write_request_header(Box::new(request))
        .await
        .map_err(|e| upstream_failure(&e, &cluster))?;

    // Stream the request body up.
    let mut finished = read_fin;
    while !finished {
        match body.recv().await {
            Some(InboundFrame::Body(chunk, fin)) => {
                record.request_bytes += chunk.len() as u64;
                if record.request_bytes > max_body_bytes {
                    return Err(Failure::BeforeResponse(
                        ErrorKind::PayloadTooLarge,
                        "payload_too_large",
                        format!("request body exceeds the limit of {max_body_bytes} bytes"),
                    ));
                }
                session
                    .write_request_body(chunk.freeze(), fin)
                    .await
                    .map_err(|e| upstream_failure(&e, &cluster))?;
                finished = fin;
            }
            Some(InboundFrame::Datagram(_)) => {}
            None => {
                // The client reset the stream mid-body.
                return Err(Failure::AfterResponse("client_reset"));
            }
        }
    }
    session
        .finish_request_body()
        .await
        .map_err(|e| upstream_failure(&e, &cluster))?;

    session
        .read_response_header()
        .await
        .map_err(|e| upstream_failure(&e, &cluster))?;
    let Some(upstream_response) = session.response_header() else {
        return Err(Failure::BeforeResponse(
            ErrorKind::BadGateway,
            "upstream_error",
            "no response header".into(),
        ));
    };
    let mut response = upstream_response.clone();
    if let Some(started) = record.upstream_started {
        state
            .metrics
            .upstream_duration
            .with_label_values(&[&*cluster])
            .observe(started.elapsed().as_secs_f64());
    }
    pipeline::decorate_response(
        &mut response,
        snapshot,
        state,
        &forward.response_headers,
        Protocol::Http3,
    );
    record.status = response.status.as_u16();
    record.grpc_status = response
        .headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    sender
        .send(OutboundFrame::Headers(h3_response_headers(&response), None))
        .await
        .map_err(|_| Failure::AfterResponse("client_gone"))?;

    // Stream the response body down; gRPC trailers close the stream when present.
    loop {
        let chunk = session
            .read_response_body()
            .await
            .map_err(|_| Failure::AfterResponse("upstream_body_error"))?;
        let Some(chunk) = chunk else {
            break;
        };
        record.response_bytes += chunk.len() as u64;
        sender
            .send(OutboundFrame::Body(chunk, false))
            .await
            .map_err(|_| Failure::AfterResponse("client_gone"))?;
    }
    let trailers = match session {
        HttpSession::H2(h2) => h2
            .read_trailers()
            .await
            .map_err(|_| Failure::AfterResponse("upstream_trailer_error"))?,
        _ => None,
    };
    let end = match trailers {
        Some(trailers) => {
            if let Some(status) = trailers.get("grpc-status").and_then(|v| v.to_str().ok()) {
                record.grpc_status = Some(status.to_owned());
            }
            let h3: Vec<Header> = trailers
                .iter()
                .map(|(name, value)| Header::new(name.as_str().as_bytes(), value.as_bytes()))
                .collect();
            OutboundFrame::Trailers(h3, None)
        }
        None => OutboundFrame::Body(Bytes::new(), true),
    };
    sender
        .send(end)
        .await
        .map_err(|_| Failure::AfterResponse("client_gone"))?;
    Ok(())
}

fn finish(state: &EdgeState, snapshot: &Snapshot, record: &RequestRecord) {
    let route = record.route.as_deref().unwrap_or("-");
    let elapsed = record.started.elapsed();
    state
        .metrics
        .observe_request(route, &record.method, record.status, "h3", elapsed);
    if snapshot.config().logging.access_log {
        access_log::emit(&AccessRecord {
            protocol: Protocol::Http3,
            method: record.method.as_str(),
            path: &record.path,
            route,
            cluster: record.cluster.as_deref(),
            status: record.status,
            grpc_status: record.grpc_status.as_deref(),
            duration: elapsed,
            upstream_duration: record.upstream_started.map(|s| s.elapsed()),
            upstream_reused: record.upstream_reused,
            request_bytes: record.request_bytes,
            response_bytes: record.response_bytes,
            client: record.client,
            request_id: record.request_id.as_deref(),
            answered_by_edge: record.answered,
            error: record.error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header::new(name.as_bytes(), value.as_bytes())
    }

    #[test]
    fn converts_pseudo_headers_and_sets_host() {
        let request = request_from_h3(&[
            h(":method", "POST"),
            h(":scheme", "https"),
            h(":authority", "record.local:8443"),
            h(":path", "/api/records?x=1"),
            h("content-type", "application/json"),
        ])
        .expect("valid");
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(request.uri.path(), "/api/records");
        assert_eq!(request.uri.query(), Some("x=1"));
        assert_eq!(request.headers["host"], "record.local:8443");
        assert_eq!(request.headers["content-type"], "application/json");
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert_eq!(
            request_from_h3(&[h(":scheme", "https"), h(":path", "/")]).err(),
            Some("missing :method")
        );
        assert_eq!(
            request_from_h3(&[h(":method", "GET"), h(":scheme", "https")]).err(),
            Some("missing :path")
        );
        assert_eq!(
            request_from_h3(&[
                h(":method", "GET"),
                h(":scheme", "https"),
                h(":path", "/"),
                h(":protocol", "x")
            ])
            .err(),
            Some("unknown pseudo-header")
        );
        assert_eq!(
            request_from_h3(&[
                h(":method", "GET"),
                h(":scheme", "https"),
                h(":path", "/"),
                h("connection", "close")
            ])
            .err(),
            Some("connection-specific header")
        );
        assert_eq!(
            request_from_h3(&[
                h(":method", "GET"),
                h(":scheme", "https"),
                h(":path", "/"),
                h("X-Upper", "1")
            ])
            .err(),
            Some("upper-case header name")
        );
    }

    #[test]
    fn hop_by_hop_response_headers_are_dropped() {
        let mut response = ResponseHeader::build(200, None).expect("response");
        response
            .insert_header("transfer-encoding", "chunked")
            .expect("header");
        response
            .insert_header("content-type", "text/plain")
            .expect("header");
        let h3 = h3_response_headers(&response);
        let names: Vec<&[u8]> = h3.iter().map(|h| h.name()).collect();
        assert_eq!(names, [&b":status"[..], b"content-type"]);
    }
}
