//! HTTP/3 over QUIC (tokio-quiche) on the HTTPS port's UDP side.
//!
//! This module owns only what is HTTP/3's: the QUIC listener and its connection loop
//! (here), the field-section conversion (`headers`) and the session adapter (`session`).
//! Each request stream becomes a Pingora custom downstream session and runs through the
//! SAME `HttpProxy<EdgeProxy>` as h1 and h2 — the same route table, policy chain,
//! upstream pool, retries, failure classifier and request record. Certificates come from
//! the shared `CertStore` through a BoringSSL select-certificate callback.

pub(crate) mod early_data;
pub mod handoff;
mod handoff_wire;
pub(crate) mod headers;
mod session;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use gateway_plugins::{EarlyData, TlsInfo};
use pingora_core::apps::HttpServerApp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use quiche::h3::Header;
use tokio::sync::oneshot;
use tokio_quiche::http3::driver::{H3Event, IncomingH3Headers, OutboundFrame, ServerH3Event};
use tokio_quiche::http3::settings::Http3Settings;
use tokio_quiche::metrics::DefaultMetrics;
use tokio_quiche::quic::ConnectionHook;
use tokio_quiche::settings::{CertificateKind, Hooks, QuicSettings, TlsCertificatePaths};
use tokio_quiche::socket::{QuicListener, SocketCapabilities};
use tokio_quiche::{ConnectionParams, ServerH3Driver};

use crate::certs::CertStore;
use crate::config::Http3Section;
use crate::connections::{Admitted, ConnectionGate, Transport};
use crate::metrics::{ConnectionGauge, EdgeMetrics};
use crate::proxy::EdgeHttpProxy;
use crate::state::EdgeState;

use early_data::{ConnectionEarlyData, ReplayRecord};
use handoff::QuicHandoff;
use headers::request_from_h3;
pub use session::H3Session;

/// What the QUIC handshake established, attached to each request of the connection as a
/// request-header extension (the custom session has no TLS digest Pingora can fill).
#[derive(Debug, Clone)]
pub struct H3RequestInfo {
    pub tls: TlsInfo,
    /// Whether the request arrived in 0-RTT early data (RFC 8470: it may be a replay), and
    /// what the replay record said of its connection.
    pub early_data: EarlyData,
}

/// The QUIC listener; started and stopped with the TCP listener by `front::HttpsFront`.
pub struct Http3Service {
    state: Arc<EdgeState>,
    proxy: Arc<EdgeHttpProxy>,
    connections: Arc<ConnectionGate>,
    address: SocketAddr,
    handoff: Arc<QuicHandoff>,
    settings: Http3Section,
    graceful_timeout: Duration,
}

impl Http3Service {
    /// The listener of `address`, whose socket `handoff` holds (bound or inherited).
    pub fn new(
        state: Arc<EdgeState>,
        proxy: Arc<EdgeHttpProxy>,
        connections: Arc<ConnectionGate>,
        address: SocketAddr,
        handoff: Arc<QuicHandoff>,
        settings: Http3Section,
        graceful_timeout: Duration,
    ) -> Self {
        Self {
            state,
            proxy,
            connections,
            address,
            handoff,
            settings,
            graceful_timeout,
        }
    }
}

/// SO_REUSEPORT only for an upgrade from an edge that did not hand its UDP socket over
/// (it bound with SO_REUSEPORT); a handoff shares the one socket instead.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
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

    /// Path changes (connection migration, RFC 9000 §9) are counted; quiche validates the
    /// new path before it sends more than the anti-amplification limit to it.
    fn on_path_event(
        &self,
        _connection: &mut tokio_quiche::quic::QuicheConnection,
        event: &quiche::PathEvent,
    ) {
        let event = match event {
            quiche::PathEvent::New(..) => "new",
            quiche::PathEvent::Validated(..) => "validated",
            quiche::PathEvent::FailedValidation(..) => "failed_validation",
            quiche::PathEvent::Closed(..) => "closed",
            quiche::PathEvent::ReusedSourceConnectionId(..) => "reused_connection_id",
            quiche::PathEvent::PeerMigrated(..) => "peer_migrated",
            _ => "other",
        };
        self.metrics
            .quic_path_events
            .with_label_values(&[event])
            .inc();
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
    settings.disable_active_migration = !config.active_migration;
    settings.enable_dgram = false;
    settings
}

impl Http3Service {
    /// Runs the QUIC listener until `shutdown`, then drains (GOAWAY, in-flight requests
    /// get `graceful_timeout`). Started by `front::HttpsFront` on the HTTPS service's
    /// runtime.
    pub async fn serve(&self, mut shutdown: ShutdownWatch) {
        let Some(std_socket) = self.handoff.take_socket(self.address) else {
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
        let mut listener = QuicListener {
            socket,
            cid_generator: self.handoff.cid_generator(),
            capabilities: SocketCapabilities::default(),
        };
        listener.apply_max_capabilities();
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
        let steering = self.handoff.steering(self.address);
        let mut incoming =
            match tokio_quiche::listen_with_steering(listener, params, DefaultMetrics, steering) {
                Ok(incoming) => incoming,
                Err(err) => {
                    tracing::error!(%err, "cannot start the QUIC listener");
                    return;
                }
            };
        tracing::info!(address = ?local, generation = self.handoff.generation(), "HTTP/3 listening (QUIC over UDP)");

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
        let replay_record = Arc::new(ReplayRecord::new(self.settings.early_data_replay_entries));
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                next = incoming.next() => match next {
                    Some(Ok(mut initial)) => {
                        // Over the per-IP cap (or far over the global one): dropped before
                        // a driver is started; the client's handshake times out.
                        let Some(admitted) = self
                            .connections
                            .admit(Transport::Quic, Some(initial.peer_addr()))
                        else {
                            continue;
                        };
                        // The ClientHello is in the first flight: SNI is known already.
                        let sni = initial
                            .ssl_mut()
                            .servername(boring::ssl::NameType::HOST_NAME)
                            .map(Arc::from);
                        let connection = Connection {
                            peer: initial.peer_addr(),
                            local: initial.local_addr(),
                            tls: TlsInfo {
                                version: Some("TLSv1.3"),
                                sni,
                                alpn: Some("h3".into()),
                            },
                            early_data: ConnectionEarlyData::attach(
                                initial.ssl_mut(),
                                replay_record.clone(),
                            ),
                        };
                        let (driver, controller) = ServerH3Driver::new(h3_settings.clone());
                        initial.start(driver);
                        self.state.metrics.quic_connections.inc();
                        connections.spawn(serve_connection(
                            self.state.clone(),
                            self.proxy.clone(),
                            controller,
                            connection,
                            admitted,
                            drain_rx.clone(),
                            shutdown.clone(),
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
        // New connections are the successor's from now on (and nobody's on a plain
        // shutdown): the listener stops accepting once its stream is gone.
        self.handoff.start_draining();
        drop(incoming);
        let close_margin = (self.graceful_timeout / 4).min(Duration::from_secs(5));
        let drain_for = if self.handoff.has_successor() {
            // A graceful upgrade: the successor steers this process's packets here, so
            // its connections go on serving — new requests included — until they end or
            // the grace period is nearly over; only then are they asked to go.
            tracing::info!(
                open = connections.len(),
                "HTTP/3: a successor took the socket; this process serves its QUIC connections until they end"
            );
            let keep_until =
                tokio::time::Instant::now() + self.graceful_timeout.saturating_sub(close_margin);
            let _ = tokio::time::timeout_at(keep_until, async {
                while connections.join_next().await.is_some() {}
            })
            .await;
            close_margin
        } else {
            self.graceful_timeout
        };
        // GOAWAY on every connection, then in-flight requests get `drain_for`.
        let _ = drain_tx.send(true);
        let open = connections.len();
        tracing::info!(open, "HTTP/3 draining");
        let drained = tokio::time::timeout(drain_for, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(remaining = connections.len(), "HTTP/3 drain timed out");
            connections.abort_all();
        }
    }
}

/// The transport facts of one QUIC connection.
struct Connection {
    peer: SocketAddr,
    local: SocketAddr,
    tls: TlsInfo,
    early_data: ConnectionEarlyData,
}

async fn serve_connection(
    state: Arc<EdgeState>,
    proxy: Arc<EdgeHttpProxy>,
    mut controller: tokio_quiche::ServerH3Controller,
    connection: Connection,
    _admitted: Admitted,
    mut drain: tokio::sync::watch::Receiver<bool>,
    shutdown: ShutdownWatch,
) {
    let connection = Arc::new(connection);
    let peer = connection.peer;
    let _open = ConnectionGauge::open(
        state
            .metrics
            .downstream_connections
            .with_label_values(&["quic"]),
    );
    let mut events = controller.take_event_receiver();
    // The connection's requests run on this task, not one task each: spawning, joining
    // and scheduling a task per request was a measured share of HTTP/3's extra cost over
    // h2 (perf/README.md, "Profiling"). A request that panics is caught here, so it
    // still ends alone, as a task of its own would.
    let mut requests = FuturesUnordered::new();
    // Per open request stream: tells its session the client reset it. At most the
    // connection's stream limit of entries, so a scan beats hashing client-chosen ids.
    let mut resets: Vec<(u64, oneshot::Sender<()>)> = Vec::new();
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
            Some(stream_id) = requests.next(), if !requests.is_empty() => {
                take_reset(&mut resets, stream_id);
                if draining && requests.is_empty() {
                    break;
                }
            }
            event = events.recv() => match event {
                None => break,
                Some(ServerH3Event::Headers { incoming_headers, is_in_early_data, .. }) => {
                    let early = connection.early_data.classify(*is_in_early_data);
                    let (reset_tx, reset_rx) = oneshot::channel();
                    let stream_id = incoming_headers.stream_id;
                    resets.push((stream_id, reset_tx));
                    let request = serve_request(
                        state.clone(),
                        proxy.clone(),
                        incoming_headers,
                        connection.clone(),
                        early,
                        reset_rx,
                        shutdown.clone(),
                    );
                    requests.push(AssertUnwindSafe(request).catch_unwind().map(move |served| {
                        if served.is_err() {
                            tracing::error!(stream_id, %peer, "an HTTP/3 request panicked; its stream is dropped");
                        }
                        stream_id
                    }));
                }
                Some(ServerH3Event::Core(H3Event::ResetStream { stream_id })) => {
                    if let Some(reset) = take_reset(&mut resets, stream_id) {
                        let _ = reset.send(());
                    }
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
    // The connection is gone or drained: requests still waiting on their client end now.
    drop(resets);
    while requests.next().await.is_some() {}
}

/// Removes and returns the reset signal of `stream_id`, if its request is still open.
fn take_reset(
    resets: &mut Vec<(u64, oneshot::Sender<()>)>,
    stream_id: u64,
) -> Option<oneshot::Sender<()>> {
    let at = resets.iter().position(|(id, _)| *id == stream_id)?;
    Some(resets.swap_remove(at).1)
}

/// Hands one request stream to the shared proxy as a custom downstream session.
async fn serve_request(
    state: Arc<EdgeState>,
    proxy: Arc<EdgeHttpProxy>,
    incoming: IncomingH3Headers,
    connection: Arc<Connection>,
    early_data: EarlyData,
    reset: oneshot::Receiver<()>,
    shutdown: ShutdownWatch,
) {
    let IncomingH3Headers {
        headers,
        send,
        recv,
        read_fin,
        ..
    } = incoming;
    let mut send: session::FrameSink = Box::pin(send.sink_map_err(|_| ()));
    let mut request = match request_from_h3(&headers) {
        Ok(request) => request,
        Err(problem) => {
            // No request exists for the proxy to answer (RFC 9114 section 4.1.2: a
            // malformed request is a stream error); a 400 tells the client why.
            state
                .metrics
                .quic_stream_errors
                .with_label_values(&["malformed_request"])
                .inc();
            reject_malformed(&mut send, problem).await;
            return;
        }
    };
    request.extensions_mut().insert(H3RequestInfo {
        tls: connection.tls.clone(),
        early_data,
    });
    let session = H3Session::new(
        request,
        send,
        recv,
        read_fin,
        connection.peer,
        connection.local,
    )
    .with_reset_signal(reset);
    proxy
        .process_new_http(ServerSession::new_custom(Box::new(session)), &shutdown)
        .await;
}

async fn reject_malformed(send: &mut session::FrameSink, problem: &str) {
    let body = gateway_plugins::error_shape::error_response(
        gateway_plugins::ErrorKind::BadRequest,
        "malformed_request",
        problem,
        false,
    )
    .body;
    let headers = vec![
        Header::new(b":status", b"400"),
        Header::new(b"content-type", b"application/json"),
        Header::new(b"content-length", body.len().to_string().as_bytes()),
    ];
    if send
        .send(OutboundFrame::Headers(headers, None))
        .await
        .is_ok()
    {
        let _ = send.send(OutboundFrame::Body(body, true)).await;
    }
}
